"""The backtest's batch path (``requirements_along``) against the per-run ``regime.requirements``
call: the same figures to the bit for every non-VaR regime, on the benchmark's book (BTC and ETH
perpetuals and options, random books) over ~60 margin runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clearing.margin.base import MarketPath, Positions, RowSums
from clearing.margin.config import parse_margin_config
from clearing.margin.registry import build_regime
from sim.experiment.backtest.engine import marks_along, requirement_series, run_days
from sim.experiment.backtest.run import path_of, prepare

ROOT = Path(__file__).resolve().parents[2]
REGIMES = ["standard", "standard_isolated", "span", "tims", "portfolio", "portfolio_joint"]


@pytest.fixture(scope="module")
def case():
    cfg = {
        "name": "along", "seed": 3, "days": 130, "warmup_days": 70,
        "paths": {"models": [{"kind": "gbm", "correlation": [[1.0, 0.8], [0.8, 1.0]], "underlyings": [
            {"name": "BTC", "s0": 60000.0, "vol": 0.6}, {"name": "ETH", "s0": 3000.0, "vol": 0.75}]}]},
        "portfolios": {"file": str(ROOT / "configs" / "portfolios" / "short_strangle_two_underlyings.yaml"),
                       "random": {"count": 300, "seed": 11}, "include_file_accounts": True},
        "regimes": {r: r for r in REGIMES}, "horizon_days": 2, "step_days": 1, "report": False,
    }
    plan = prepare(cfg)
    prices, vols = path_of(plan.config, plan.book.table)
    runs = run_days(prices.shape[0], 70, 2, 1)
    return plan, prices, vols, runs


def _run_by_run(regime, book, prices, vols, runs, which):
    marks = marks_along(book.table, prices[runs], vols[runs])
    path = MarketPath(0.0, prices[runs], vols[runs], marks, vols[runs][:, book.table.underlying_index])
    out = np.empty((runs.size, book.positions.n_accounts))
    for k in range(runs.size):
        req = regime.requirements(book.positions, path.at(k))
        out[k] = req.im if which == "im" else req.mm
    return out


@pytest.mark.parametrize("name", REGIMES)
def test_batch_path_equals_a_call_per_run_to_the_bit(case, name):
    plan, prices, vols, runs = case
    book = plan.book
    assert runs.size >= 55 and book.positions.n_accounts > 300
    for which in ("im", "mm"):
        # fresh regimes: the batch path must not lean on anything the per-run calls left behind
        batch = requirement_series(build_regime(name, book.table, **book.context), book, prices, vols, runs, which)
        single = _run_by_run(build_regime(name, book.table, **book.context), book, prices, vols, runs, which)
        assert np.array_equal(batch, single), (name, which, np.abs(batch - single).max())
        assert (batch > 0).any()


def test_batch_path_with_liquidity_add_on_and_tiers_equals_a_call_per_run(case):
    """Regimes without a batch path of their own (the liquidity wrapper), SPAN netting option value
    or crediting inter-commodity spreads and multi-tier standard margin with open-interest caps go
    through the same comparison."""
    plan, prices, vols, runs = case
    book = plan.book
    specs = [
        {"regime": "span", "liquidity": {"mode": "sqrt", "imf": 0.001}},
        {"regime": "span", "net_option_value": True, "price_scan_mode": "relative", "price_scan": 0.1},
        {"regime": "span", "inter_commodity": [{"leg_a": "BTC", "leg_b": "ETH", "ratio_b": 2.0, "credit_rate": 0.5},
                                               {"leg_a": "ETH", "leg_b": "BTC", "credit_rate": 0.3,
                                                "opposite": False}]},
        {"regime": "standard", "tiers": [{"max_notional": 100000.0, "im_rate": 0.05, "mm_rate": 0.025},
                                         {"im_rate": 0.1, "mm_rate": 0.05}],
         "open_interest_caps": {"lower": 1.0e6, "upper": 5.0e6}},
    ]
    for spec in specs:
        cfg = parse_margin_config(spec)
        batch = requirement_series(build_regime(cfg, book.table, **book.context), book, prices, vols, runs, "mm")
        single = _run_by_run(build_regime(cfg, book.table, **book.context), book, prices, vols, runs, "mm")
        assert np.array_equal(batch, single), spec


def test_row_sums_are_bincount_to_the_bit():
    rng = np.random.default_rng(4)
    rows = np.sort(rng.integers(0, 50, 400))
    rng.shuffle(rows[:100])  # entries of a row need not be adjacent
    weights = rng.normal(size=(7, rows.size)) * 10.0 ** rng.integers(-3, 6, rows.size)
    got = RowSums(rows, 60)(weights)
    want = np.stack([np.bincount(rows, weights=w, minlength=60) for w in weights])
    assert np.array_equal(got, want)
    assert not got[:, 50:].any()  # rows with no entry: zero
    assert RowSums(np.zeros(0, dtype=np.int64), 3)(np.zeros((2, 0))).tolist() == [[0.0] * 3] * 2


def test_market_path_rows_are_the_run_market_states(case):
    plan, prices, vols, runs = case
    marks = marks_along(plan.book.table, prices[runs], vols[runs])
    path = MarketPath(0.0, prices[runs], vols[runs], marks, vols[runs][:, plan.book.table.underlying_index])
    assert len(path) == runs.size and len(path.rows(5, 9)) == 4
    m = path.at(3)
    assert np.array_equal(m.marks, marks[3]) and np.array_equal(m.underlying_prices, prices[runs[3]])
    assert np.array_equal(m.vols, vols[runs[3]][plan.book.table.underlying_index])
    assert Positions.of([[1.0, 0, 0, 0, 0, 0]]).n_accounts == 1
