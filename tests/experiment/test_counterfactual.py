"""The no-feedback twin (``outputs.counterfactual``): the same episode -- paths, agents, random
streams, account ids -- with every liquidation order filled outside the market at the mark
(``clearing.liquidation.absorb_outside``), and the ``counterfactual`` block it feeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.experiment.api import compare
from sim.experiment.variants import counterfactual_config, run_variant
from sim.experiment.runs import resolve
from sim.experiment.config import load_episode, parse_episode
from sim.experiment.schema.episode import EpisodeConfig
from sim.experiment.episode import run as run_episode
from sim.core.orders import FillFlag

ROOT = Path(__file__).resolve().parents[2]
LIQ, EXTERNAL = int(FillFlag.LIQUIDATION), int(FillFlag.EXTERNAL)


def test_twin_config_differs_only_in_where_liquidations_go():
    cfg = resolve(None)
    twin = counterfactual_config(cfg)
    a, b = cfg.model_dump(mode="json"), twin.model_dump(mode="json")
    assert b["clearing"]["liquidation"].pop("absorb_outside") is True
    assert a["clearing"]["liquidation"].pop("absorb_outside") is False
    assert (a["outputs"].pop("counterfactual"), b["outputs"].pop("counterfactual")) == (True, False)
    assert a == b


@pytest.fixture(scope="module")
def pair():
    """The default episode cut after its crash legs (its first liquidations), and its twin."""
    cfg = load_episode(ROOT / "configs/default.yaml", {"duration": 2700.0, "outputs": {"counterfactual": False}})
    return run_episode(cfg, keep_episode=True), run_episode(counterfactual_config(cfg), keep_episode=True)


def test_twin_book_never_prints_a_liquidation(pair):
    main, twin = pair
    main_flags, twin_flags = main.tables["trades"]["flags"], twin.tables["trades"]["flags"]
    assert ((main_flags & LIQ) != 0).sum() > 0, "the control: the main run does liquidate through the book"
    assert ((twin_flags & LIQ) != 0).sum() == 0
    assert ((twin_flags & EXTERNAL) != 0).sum() > 0, "the twin did liquidate, outside the market"
    steps = twin.tables["liquidation_steps"]
    on_book_policies = {"book", "takeover"}
    assert not on_book_policies & set(steps["policy"].tolist())
    # every outside fill is at the mark, rounded to a whole tick against the liquidated account
    ext = np.asarray(steps["policy"]) == "external"
    assert ext.any()
    assert np.all(np.abs(np.asarray(steps["avg_price"])[ext] - np.asarray(steps["mark"])[ext]) < 1.0)


def test_twin_has_the_same_exogenous_paths_agents_and_accounts(pair):
    main, twin = pair
    m, t = main.episode, twin.episode
    assert m.paths.prices.tobytes() == t.paths.prices.tobytes()
    assert m.paths.vols.tobytes() == t.paths.vols.tobytes()
    for column in ("time", "true", "index"):  # an external index: the twin's publications are the same
        assert main.tables["oracle"][column].tobytes() == twin.tables["oracle"][column].tobytes()
    # a group acting as one agent (noise, leveraged) is its member accounts; its ``account`` is
    # whichever member acted last
    def members(ep):
        return [(a.name, a.accounts.tolist() if hasattr(a, "accounts") else [a.account]) for a in ep.agents]

    assert members(m) == members(t)
    assert m.backstop_account == t.backstop_account
    assert m.external_account is None
    assert t.external_account == m.ledger.n_accounts  # opened after everyone else


def test_twin_is_deterministic():
    crash = [{"kind": "crash", "underlyings": ["BTC", "ETH"], "start": 1800.0, "drop": 0.12, "duration": 300.0}]
    cfg = load_episode(ROOT / "configs/default.yaml", {"duration": 2100.0, "outputs": {"counterfactual": True},
                                                       "paths": {"shocks": crash}})  # shocks after the end are refused
    a, _ = run_variant(cfg)
    b, _ = run_variant(cfg)
    assert a["counterfactual"] == b["counterfactual"]


def _through_the_crash(episode: str, duration: float, regimes: int | None = None) -> EpisodeConfig:
    """The shipped episode cut a little after its crash legs start (the liquidations begin there) and
    with a quarter of each large group (the full runs take minutes per regime and twin): shocks that
    would start after the cut are dropped. ``regimes``: only the first so many of its
    ``compare_regimes``."""
    data = load_episode(ROOT / episode).model_dump(mode="json")
    data["duration"] = duration
    if regimes is not None:
        data["compare_regimes"] = data["compare_regimes"][:regimes]
    for group in data["population"]["groups"]:  # a quarter of each crowd: minutes become seconds
        if group.get("count", 1) > 8:
            group["count"] //= 4
    data["paths"]["shocks"] = [sh for sh in data["paths"].get("shocks", []) if sh["start"] < duration]
    return parse_episode(data, episode)


# The default episode under every regime it compares; May 2021 (a second market: the mark's median,
# no backstop, liquidations at the bankruptcy price) under its first two: its 7,800 s under all four,
# each with its twin, were the suite's longest test (222 s of a 9.6-minute run on a 2.1 GHz Xeon), and
# the twin's rows do not depend on the regime beyond the liquidations it sets off
@pytest.mark.slow
@pytest.mark.parametrize(("episode", "duration", "regimes"), [("configs/may_2021.yaml", 7800.0, 2),
                                                              ("configs/default.yaml", 2700.0, None)])
def test_compare_fills_the_counterfactual_rows_for_every_regime(episode, duration, regimes):
    cfg = _through_the_crash(episode, duration, regimes)
    assert cfg.outputs.counterfactual and cfg.oracle.mark_method == "median"
    out = compare(cfg, write=False, workers=2)  # each regime and its twin in a worker of a local pool
    assert set(out.summaries) == {r.regime for r in cfg.compare_regimes}
    for label, s in out.summaries.items():
        c = s["counterfactual"]
        for key in ("venue_drawdown", "twin_venue_drawdown", "venue_drawdown_amplification", "mark_drawdown",
                    "twin_mark_drawdown", "liquidated_notional", "twin_liquidated_notional",
                    "liquidated_notional_ratio", "bad_debt", "twin_bad_debt", "bad_debt_difference"):
            assert c[key] is not None, f"{episode} {label}: counterfactual.{key}"
        assert c["twin_liquidation_fills_on_book"] == 0
        assert c["liquidations"] > 0 and c["twin_liquidations"] > 0
        # the run's side is the run's own summary, and each ratio / difference is of the two figures shown
        assert c["liquidations"] == s["liquidations"]["count"]
        assert c["liquidated_notional"] == s["liquidations"]["notional"]
        assert c["bad_debt"] == s["bad_debt"]["total"]
        for name, ratio in (("venue_drawdown", "amplification"), ("mark_drawdown", "amplification"),
                            ("liquidated_notional", "ratio"), ("bad_debt", "ratio")):
            main, twin = c[name], c[f"twin_{name}"]  # each rounded to 10 significant digits in the summary
            assert c[f"{name}_difference"] == pytest.approx(main - twin, rel=1e-9, abs=1e-9 * max(abs(main), abs(twin)))
            if twin:
                assert c[f"{name}_{ratio}"] == pytest.approx(main / twin, rel=1e-9)
        assert s["price"]["amplification_vs_counterfactual"] is not None
        assert c["bad_debt_ratio"] is not None or any(n.startswith("bad_debt") for n in c["notes"])


# ------------------------------------------------------------------ a scenario with a known answer
def _contagion(absorb_outside: bool, mark: dict):
    """The attribution scenario's thin book (tests/scenarios/test_attribution.py): A breaches on a 6%
    index drop and is liquidated; B, healthy after the drop, breaches before the second drop at
    t=200 only if A's forced sale drags the mark down. In the twin A's sale happens outside."""
    from tests.scenarios.harness import Scenario

    shocks = {"paths": {"shocks": [{"kind": "crash", "start": 100.0, "drop": 0.06, "duration": 1.0},
                                   {"kind": "crash", "start": 200.0, "drop": 0.10, "duration": 1.0}]}}
    s = Scenario(shocks, {"oracle": mark, "clearing": {"liquidation": {"absorb_outside": absorb_outside}}})
    whale = s.account(10_000_000)
    a, b = s.account(1_000), s.account(1_100)
    s.position(a, whale, 19)
    s.position(b, whale, 19)
    s.ask(whale, 50_100.0, 1000)
    s.bid(whale, 49_900.0, 1000)

    def requote_after_the_crash() -> None:
        s.ep.venue.cancel_all_now(whale)
        s.ask(whale, 47_100.0, 1000)
        s.bid(whale, 46_900.0, 1)
        s.bid(whale, 40_000.0, 1000)

    s.ep.world.call_later(102.0, requote_after_the_crash)
    s.run(300.0)
    first_b = min(e.breach_time for e in s.events if e.account == b)
    return s, first_b


MARKS = {"index_basis": {"mark_basis_cap": 0.05, "mark_basis_window": 1.0},
         "median": {"mark_basis_cap": 0.05, "mark_basis_window": 1.0, "mark_method": "median",
                    "mark_impact_notional": 100.0}}  # one lot: the thin bid level is the impact bid


@pytest.mark.parametrize("method", sorted(MARKS))
def test_twin_removes_the_contagion_a_forced_sale_causes(method):
    main, b_main = _contagion(False, MARKS[method])
    twin, b_twin = _contagion(True, MARKS[method])
    assert b_main < 200.0, "the run: A's sale into the thin book drags the mark through B's maintenance"
    assert b_twin >= 200.0, "the twin: only the second index drop breaches B"
    trades = twin.recorder.tables()["trades"]
    assert not (trades["flags"] & LIQ).any() and (trades["flags"] & EXTERNAL).any()
    c = summarise_pair(main, twin)
    assert c["mark_drawdown_amplification"] > 1.0 and c["twin_liquidation_fills_on_book"] == 0


def summarise_pair(main, twin) -> dict:
    from sim.experiment.metrics import summarise

    return summarise(main.config, main.recorder.tables(), counterfactual=twin.recorder.tables())["counterfactual"]
