"""The episode configs in configs/: every one validates, and the stylised episodes show their mechanism.

The fast part loads every episode YAML under configs/ (sweep grids and margin portfolio files have
other schemas and are left out) and checks the header comment of each stylised episode. The slow
part (``-m slow``) runs shortened versions -- fewer agents, a shorter clock -- of the episodes whose
mechanism can be asserted in a few seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clearing.ledger import FIRST_TRADER, SystemAccount
from sim.experiment.config import load_episode, parse_episode
from sim.experiment.io import read_yaml
from sim.experiment.schema.episode import EpisodeConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
OTHER_SCHEMAS = ("sweeps", "portfolios", "backtest", "reverse_stress")  # sweep grids, `clearsim margin`
# portfolio files, backtest and reverse-stress files (their own tests validate those)
STYLISED = ("black_thursday", "may_2021", "luna", "ftx", "mango", "oct_2025", "correlation_breakdown",
            "hedged_options", "ccp_default_fund")


def _episode_files() -> list[Path]:
    return sorted(p for p in CONFIGS.rglob("*.yaml")
                  if not any(part in OTHER_SCHEMAS for part in p.relative_to(CONFIGS).parts[:-1]))


@pytest.mark.parametrize("path", _episode_files(), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_episode_config_validates(path: Path) -> None:
    config = load_episode(path)
    assert isinstance(config, EpisodeConfig)
    assert config.duration > 0 and config.population.total_agents > 0


def test_episode_files_found() -> None:
    names = {p.stem for p in _episode_files()}
    assert set(STYLISED) <= names
    assert {"base_crypto", "default"} <= names
    assert any(p.parent.name == "regimes" for p in _episode_files())


@pytest.mark.parametrize("name", STYLISED)
def test_stylised_episode_header(name: str) -> None:
    """The leading comment says which episode it stylises, the mechanism, and what to look at."""
    lines = (CONFIGS / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert header and header[0].startswith("# Stylises:"), f"{name}: header must start with '# Stylises:'"
    assert "Mechanism" in text, f"{name}: header must name the mechanism"
    assert "Look at" in text, f"{name}: header must say what to look at"


@pytest.mark.parametrize("name", STYLISED)
def test_stylised_episode_compare_regimes_validate(name: str) -> None:
    from sim.experiment.variants import regime_variants

    config = load_episode(CONFIGS / f"{name}.yaml")
    assert config.compare_regimes, f"{name}: no compare_regimes"
    assert len(regime_variants(config, None)) == len(config.compare_regimes)


# ----------------------------------------------------------------------------------- slow: mechanisms
def _shortened(name: str, duration: float | None = None, counts: dict[str, int] | None = None,
               **overrides: Any) -> EpisodeConfig:
    """``configs/<name>.yaml`` with a shorter clock and fewer agents per named group (lists replace
    on merge, so group counts are edited on the loaded mapping)."""
    data = read_yaml(CONFIGS / f"{name}.yaml")
    if duration is not None:
        data["duration"] = duration
    for group in data["population"]["groups"]:
        key = group.get("name", group["type"])
        if counts and key in counts:
            group["count"] = counts[key]
    data.setdefault("outputs", {})["counterfactual"] = False
    data.update(overrides)
    return parse_episode(data, name)


@pytest.mark.slow
def test_mango_manipulator_leaves_bad_debt() -> None:
    from sim.experiment.episode import run
    from sim.experiment.metrics import summarise

    config = _shortened("mango", duration=4200.0, counts={"noise": 10, "value": 10})
    result = run(config, keep_episode=True)
    summary = summarise(config, result.tables, result.stats)
    ep = result.episode
    manipulator = next(a for a in ep.agents if a.name.startswith("manipulator/"))
    price = summary["price"]["by_underlying"]["MNGO"]
    assert price["index_runup"] > 2.0 > 0.2 > price["true_runup"]  # the index was pumped, the true path was not
    assert manipulator.withdrawn > manipulator.start_equity  # it took out more than it put in
    losses = result.tables["losses"]
    bad = (losses["layer"] == "bad_debt") & (losses["amount"] > 0)
    assert summary["bad_debt"]["total"] > 0
    assert manipulator.account in set(losses["account"][bad].tolist())
    assert ep.ledger.bad_debt() > 0


@pytest.mark.slow
def test_luna_floor_keeps_index_above_true_price() -> None:
    from sim.experiment.episode import run
    from sim.experiment.metrics import summarise

    config = _shortened("luna", duration=100_000.0,
                        counts={"mm_btc": 1, "mm_eth": 1, "noise": 5, "basis_arb": 1, "usd_traders": 10,
                                "luna_borrowers": 40})
    result = run(config, keep_episode=True)
    ep = result.episode
    solvency = summarise(config, result.tables, result.stats)["solvency"]
    # accounts insolvent at the true LUNA price that the floored oracle shows as solvent
    assert solvency["insolvent_accounts_at_true_prices"] > solvency["insolvent_accounts"]
    assert solvency["hidden_loss"] > 0
    floor = config.oracle.floor["LUNA"]
    o = result.tables["oracle"]
    luna = ep.oracle.underlyings.index("LUNA")
    m = o["underlying"] == luna
    index, true = o["index"][m], o["true"][m]
    assert index.min() >= floor - 1e-12  # never published below the floor
    stuck = true < floor
    assert stuck.any() and (index[stuck] >= floor - 1e-12).all()
    assert true[-1] < floor / 2 and index[-1] >= floor  # the market is well below what the oracle says
    # the clearing house values LUNA at the floor: equity at true prices is lower for every holder
    k = [a.name for a in ep.ledger.assets].index("LUNA")
    asset = ep.ledger.assets[k]
    n = ep.ledger.n_accounts
    units = ep.ledger.cash[FIRST_TRADER:n, k].astype(np.float64) / 10**asset.decimals
    true_now = float(ep.paths.at(config.duration)[list(ep.paths.names).index("LUNA")])
    published = float(ep.house.asset_prices()[k])
    assert published == pytest.approx(floor)
    hidden = units * (published - true_now) * (1.0 - asset.haircut)  # quote units the floor adds to equity
    assert hidden.max() > 0
    # and whatever collateral the insurance fund bought from bankrupt accounts it paid the floor for
    fund_units = ep.ledger.cash[SystemAccount.INSURANCE_FUND, k] / 10**asset.decimals
    assert fund_units > 0  # the episode makes the fund buy seized LUNA
    paid = result.tables["losses"]["amount"][result.tables["losses"]["layer"] == "collateral_sold"].sum()
    assert paid / 10**ep.ledger.assets[0].decimals > fund_units * true_now


@pytest.mark.slow
def test_hedged_options_portfolio_needs_less_im_than_standard() -> None:
    from sim.experiment.api import compare

    config = _shortened("hedged_options", duration=1200.0,
                        counts={"noise": 4, "covered_call": 3, "iron_condor": 4, "hedged_straddle": 4})
    out = compare(config, ["standard", "portfolio"], write=False)
    std, pm = out.summaries["standard"]["margin"], out.summaries["portfolio"]["margin"]
    assert pm["im_peak"] < 0.8 * std["im_peak"]
    assert pm["im_final"] < 0.8 * std["im_final"]
    for regime in ("standard", "portfolio"):
        assert out.summaries[regime]["liquidations"]["count"] == 0  # a calm market


@pytest.mark.slow
def test_black_thursday_zero_bids_leave_a_deficit() -> None:
    from sim.experiment.episode import run
    from sim.experiment.metrics import summarise

    config = _shortened("black_thursday", counts={"noise": 5})  # all 150 vaults: the keepers must run dry
    result = run(config)
    summary = summarise(config, result.tables, result.stats)
    steps = result.tables["liquidation_steps"]
    auction = steps["policy"] == "auction"
    zero = auction & (steps["avg_price"] <= 0)
    assert auction.sum() > 10
    assert 0 < zero.sum() < auction.sum()  # the zero bidder wins some auctions, the keepers the rest
    assert summary["bad_debt"]["total"] > 0
    o = result.tables["oracle"]
    assert (o["index"] / o["true"]).max() > 1.02  # the lagging oracle sits above the falling market


@pytest.mark.slow
def test_ccp_default_fund_is_sized_before_the_crash_and_absorbs_defaults_in_waterfall_order() -> None:
    from clearing.ledger import QUOTE, SystemAccount
    from sim.experiment.episode import run

    config = _shortened("ccp_default_fund", duration=2700.0, counts={"noise": 20, "value": 5})
    result = run(config, keep_episode=True)
    ep = result.episode
    wf = ep.waterfall
    assert wf.sizing["time"] == 1500.0 and len(wf.sizing["member_uncovered"]) == 10
    top2 = sorted(wf.sizing["member_uncovered"], reverse=True)[:2]
    assert wf.sizing["fund"] == sum(int(np.ceil(x)) for x in top2) > 0  # Cover-2 of member shortfalls
    assert sum(wf.contributions.values()) == wf.sizing["fund"]
    assert set(wf.member_of.values()) <= set(range(10))
    used = [name for _, _, layers in wf.log for name, _ in layers]
    assert used, "the crash defaults nobody: the episode shows no waterfall"
    order = ["defaulter_default_fund", "ccp_skin_in_game", "survivors_default_fund", "assessments",
             "vm_gains_haircut", "uncovered"]
    for _, _, layers in wf.log:
        names = [n for n, _ in layers]
        assert names == sorted(names, key=order.index)
    paid = sum(a for _, _, layers in wf.log for n, a in layers if n != "uncovered")
    spent = wf.sizing["fund"] - sum(wf.remaining.values())
    # the fund holds exactly what members have left (assessments pass through it)
    assert int(ep.ledger.cash[SystemAccount.DEFAULT_FUND, QUOTE]) == sum(wf.remaining.values())
    assert paid >= spent >= 0


@pytest.mark.slow
def test_standard_and_standard_isolated_differ_in_the_crypto_regime_set() -> None:
    """Issue 15: `clearsim compare configs/regimes/crypto.yaml` gave byte-identical trades for the
    two; with isolated positions in their own sub-accounts they trade and liquidate differently."""
    from sim.experiment.episode import run

    data = read_yaml(CONFIGS / "regimes" / "crypto.yaml")
    trades, subs = [], []
    for k in (0, 1):
        variant = dict(data, margin=data["compare_regimes"][k], duration=2400.0)
        variant["paths"] = dict(data["paths"], shocks=[sh for sh in data["paths"].get("shocks", [])
                                                       if sh["start"] < 2400.0])  # none may start after the end
        variant["outputs"] = dict(data.get("outputs", {}), counterfactual=False)
        result = run(parse_episode(variant, "crypto"), keep_episode=True)
        trades.append(result.tables["trades"])
        subs.append(result.episode.isolated)
    assert subs[0] is None and subs[1] is not None and len(subs[1].sub) > 0
    same = len(trades[0]["price"]) == len(trades[1]["price"]) and all(
        np.array_equal(trades[0][c], trades[1][c]) for c in trades[0])
    assert not same
    # every isolated position is a sub-account: no owner account trades on its own
    owners = {owner for owner, _ in subs[1].sub}
    assert owners.isdisjoint(set(trades[1]["maker"].tolist()) | set(trades[1]["taker"].tolist()))
