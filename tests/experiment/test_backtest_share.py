"""VaR regimes backtested together share the scenario sets they have in common (``var`` and
``var_apc`` at the registry defaults: the lookback set), measured once: every figure is the same
bits as each regime backtested alone, and regimes with no set in common share nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clearing.margin.base import Positions
from clearing.margin.config import parse_margin_config
from clearing.margin.registry import build_regime
from clearing.margin.var import SharedMeasures
from sim.experiment.backtest.engine import backtest_regimes, realised_losses, run_days
from sim.experiment.backtest.run import backtest, path_of, prepare, task_units

ROOT = Path(__file__).resolve().parents[2]


def config(regimes: dict, count: int = 2500, days: int = 420, warmup: int = 380) -> dict:
    # 2,500 random books: above var.PRUNE_MIN_BOOKS, so the pruned tail search (and its hints) runs
    return {
        "name": "share", "seed": 4, "days": days, "warmup_days": warmup,
        "paths": {"models": [{"kind": "gbm", "correlation": [[1.0, 0.8], [0.8, 1.0]], "underlyings": [
            {"name": "BTC", "s0": 60000.0, "vol": 0.6}, {"name": "ETH", "s0": 3000.0, "vol": 0.75}]}]},
        "portfolios": {"file": str(ROOT / "configs" / "portfolios" / "short_strangle_two_underlyings.yaml"),
                       "random": {"count": count, "seed": 5}, "include_file_accounts": True},
        "regimes": regimes, "horizon_days": 2, "step_days": 1, "report": False, "report_portfolios": 4,
    }


def assert_same(a, b) -> None:
    for key in a.per_portfolio:
        assert np.array_equal(a.per_portfolio[key], b.per_portfolio[key], equal_nan=True), key
    for key in ("margin_total", "loss_total", "exceeding", "shown_margin", "shown_loss"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key


def test_var_and_var_apc_together_are_the_bits_of_each_alone():
    together = backtest(config({"var": "var", "span": "span", "var_apc": "var_apc"}), write=False)
    for label in ("var", "var_apc", "span"):
        alone = backtest(config({label: label}), write=False)
        assert_same(together.results[label], alone.results[label])
        assert together.summary["regimes"][label] == alone.summary["regimes"][label]


def _shared_run(regimes: dict, count: int = 2500):
    """The unit's regimes through ``backtest_regimes`` with a store, on the test book: (results, store)."""
    plan = prepare(config(regimes, count))
    prices, vols = path_of(plan.config, plan.book.table)
    runs = run_days(prices.shape[0], plan.config.warmup_days, 2, 1)
    loss = realised_losses(plan.book, prices, vols, runs, 2)
    built = [build_regime(m, plan.book.table, history=prices[: runs[0] + 1]) for m, _ in plan.regimes.values()]
    share = SharedMeasures()
    out = backtest_regimes(list(plan.regimes), built, plan.book, prices, vols, runs, loss, share=share,
                           shown=np.arange(plan.config.report_portfolios))
    return out, share, runs, dict(zip(plan.regimes, built))


@pytest.mark.parametrize("first", ["var", "var_apc"])
def test_the_common_set_is_measured_once_a_run(first):
    regimes = {"var": "var", "var_apc": "var_apc"}
    if first == "var_apc":
        regimes = {"var_apc": "var_apc", "var": "var"}
    out, share, runs, built = _shared_run(regimes)
    # var's lookback set is var_apc's: handed over on every run; var_apc measures its floor and,
    # when the most volatile window is not the lookback, its stressed set itself
    assert share.taken == runs.size
    if first == "var_apc":  # var took its one set on every run: it never priced a scenario
        assert built["var"]._key is None and built["var_apc"]._key is not None
    for res in out:
        alone = backtest(config({res.label: res.label}), write=False).results[res.label]
        assert_same(res, alone)


def test_regimes_with_no_set_in_common_share_nothing():
    """Control: var on a 300-day lookback and var_apc (365 days, floor over the whole history, a
    stressed window of 365 days) run together with a store: it hands nothing over, and each is
    still its own bits; the backtest does not even put them in one task."""
    regimes = {"var_300": {"regime": "var", "lookback_days": 300}, "var_apc": "var_apc"}
    out, share, _, _ = _shared_run(regimes)
    assert share.taken == 0 and share.measured > 0
    for res in out:
        alone = backtest(config({res.label: regimes[res.label]}), write=False).results[res.label]
        assert_same(res, alone)
    assert task_units({label: (parse_margin_config(spec), 1.0) for label, spec in regimes.items()}) == [
        ["var_300"], ["var_apc"]]


def test_task_units_group_var_regimes_with_a_fixed_set_in_common():
    def units(regimes: dict) -> list[list[str]]:
        return task_units({label: (parse_margin_config(spec), 1.0) for label, spec in regimes.items()})

    # var_apc first: its sets include var's, which then prices and searches nothing
    assert units({"var": "var", "span": "span", "var_apc": "var_apc", "std": "standard"}) == [
        ["var_apc", "var"], ["span"], ["std"]]
    # a floor of 500 days is the same set as a 500-day lookback; es, 97.5% or filtered returns are not
    assert units({"a": {"regime": "var", "lookback_days": 500},
                  "b": {"regime": "var_apc", "floor_lookback_days": 500},
                  "c": "var_apc"}) == [["b", "c", "a"]]
    assert units({"a": "var", "b": {"regime": "var", "measure": "es"}, "c": {"regime": "var", "confidence": 0.975},
                  "d": {"regime": "var", "method": "filtered"}}) == [["a"], ["b"], ["c"], ["d"]]


def test_a_store_hands_a_measure_only_to_the_same_positions_and_table():
    plan = prepare(config({"var": "var"}, count=20))
    prices, _ = path_of(plan.config, plan.book.table)
    table, positions = plan.book.table, plan.book.positions
    share = SharedMeasures()
    value = np.arange(3.0)
    share.put(("k",), positions, table, value)
    assert share.get(("k",), positions, table) is value and not value.flags.writeable
    assert share.get(("k",), Positions(positions.dense.copy()), table) is None
    assert share.get(("other",), positions, table) is None
    share.clear()
    assert share.get(("k",), positions, table) is None and share.taken == 1


@pytest.mark.parametrize("measure", ["var", "es"])
def test_the_set_key_is_the_set_not_the_regime(measure):
    """var's lookback set and var_apc's have one key on the same market; a shifted history, other
    positions or another confidence change it."""
    plan = prepare(config({"var": "var"}, count=20))
    prices, vols = path_of(plan.config, plan.book.table)
    table, positions = plan.book.table, plan.book.positions
    from sim.experiment.backtest.engine import marks_along
    from sim.core.instruments import MarketState

    row = 400
    marks = marks_along(table, prices[row:row + 1], vols[row:row + 1])[0]
    market = MarketState(0.0, prices[row], vols[row], marks, vols[row][table.underlying_index])

    def key(spec: dict, history=prices[: row + 1], pos=positions) -> tuple:
        regime = build_regime({"measure": measure} | spec, table, history=history)
        regime.pnl_matrices(market)
        return regime.set_key("base", pos, market)

    base = key({"regime": "var"})
    assert key({"regime": "var_apc"}) == base
    assert key({"regime": "var"}, history=prices[1: row + 1]) == base  # the same last 365 returns
    assert key({"regime": "var"}, history=prices[: row]) != base
    assert key({"regime": "var", "confidence": 0.98}) != base
    assert key({"regime": "var", "lookback_days": 364}) != base
    assert key({"regime": "var"}, pos=Positions(positions.dense.copy())) != base
