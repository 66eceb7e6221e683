"""Margining each distinct (account, underlying) segment once (clearing.margin.base
``Segments.distinct``, ``segment_reduce_distinct``): the figures equal those of every segment
margined on its own, to the bit; and the distinct (instrument, lots) entries (``distinct_entries``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.margin.base import (Positions, distinct_entries, segment_reduce_distinct, segment_reduce_t,
                                  segments_by_group)
from clearing.margin.config import PortfolioConfig
from clearing.margin.examples import benchmark_book
from clearing.margin.portfolio import PortfolioRegime


def _reducer(block_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return block_t.min(axis=0), block_t.sum(axis=0)


def test_repeated_segments_are_counted_once() -> None:
    # accounts 0 and 2 hold the same lots; account 1 holds the same instruments, other lots;
    # account 3 repeats account 0's instrument-0 segment (group 0) and adds one in group 1
    dense = np.array([[1.0, 2.0, 0.0, 0.0],
                      [1.0, 3.0, 0.0, 0.0],
                      [1.0, 2.0, 0.0, 0.0],
                      [1.0, 2.0, 0.0, -1.0],
                      [0.0, 0.0, 0.0, -1.0]])
    groups = np.array([0, 0, 1, 1])
    seg = segments_by_group(Positions(dense), groups, 2)
    assert seg.n == 6
    # 6 segments, 3 distinct: {0:1, 1:2} (x3), {0:1, 1:3}, {3:-1} (x2) -- half are repeats
    unique, inverse = seg.distinct()
    assert inverse is not None and unique.n == 3
    assert seg.distinct()[0] is unique  # cached
    key = lambda s, i: tuple((int(c[i]), float(l[i])) for c, l, n in zip(s.slot_cols, s.slot_lots, s.slot_count)
                             if i < n)
    for i in range(seg.n):
        assert key(seg, i) == key(unique, int(inverse[i]))


def test_no_repeats_keep_the_segments() -> None:
    dense = np.diag(np.arange(1.0, 6.0))
    seg = segments_by_group(Positions(dense), np.zeros(5, dtype=np.int64), 1)
    unique, inverse = seg.distinct()
    assert inverse is None and unique is seg
    empty = segments_by_group(Positions(np.zeros((3, 5))), np.zeros(5, dtype=np.int64), 1)
    assert empty.n == 0 and empty.distinct()[1] is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_distinct_reduce_equals_the_per_segment_reduce_bit_for_bit(dtype) -> None:
    table, market, acc, ins, lots = benchmark_book(n_accounts=5000, n_instruments=21, seed=5)
    pos = Positions.from_coo(5000, len(table), acc, ins, lots)
    rng = np.random.default_rng(1)
    matrix_t = np.ascontiguousarray(rng.normal(size=(len(table), 9)).T, dtype=dtype)
    groups = table.underlying_index.astype(np.int64)
    seg, outs = segment_reduce_t(pos, matrix_t, groups, 3, _reducer, 2, block=256)
    seg2, inverse, unique_outs = segment_reduce_distinct(pos, matrix_t, groups, 3, _reducer, 2, block=256)
    assert seg2 is seg and inverse is not None and unique_outs[0].size < seg.n
    for a, b in zip(outs, unique_outs):
        assert a.tobytes() == b[inverse].tobytes()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_portfolio_figures_equal_the_per_slot_sums_with_zero_scenarios(dtype) -> None:
    """The sparse product starts its sums from 0 (a -0.0 sum comes out +0.0): with scenario
    columns of zeros and negative zeros the per-account figures still equal the per-slot path's."""
    from clearing.margin import base
    table, market, acc, ins, lots = benchmark_book(n_accounts=2000, n_instruments=21, seed=8)
    pos = Positions.from_coo(2000, len(table), acc, ins, lots)
    regime = PortfolioRegime(table, PortfolioConfig(dtype=dtype))
    regime.pnl_matrix(market)
    m = regime._matrix.copy()
    m[:, ::3] = 0.0
    m[::2, 1::3] = -0.0
    regime._matrix, regime._matrix_t = m, np.ascontiguousarray(m.T)
    got = regime.components(pos, market)
    seg, figures = base.segment_reduce_t(pos, regime._matrix_t, regime._groups, regime._n_groups, regime._reduce, 4)
    core, ext, delta, roll = figures
    risk = np.maximum(core, ext)
    for name, v in (("core", core), ("extended", ext), ("risk", risk), ("delta_shock", delta),
                    ("roll_shock", roll), ("im", risk + delta + roll)):
        assert got[name].tobytes() == np.bincount(seg.row, weights=v, minlength=2000).tobytes(), name


@pytest.mark.parametrize("cross_asset", ["sum", "joint"])
def test_portfolio_requirements_equal_each_account_alone(cross_asset: str) -> None:
    # few lots per account, so that whole accounts repeat too (one segment per account when joint)
    table, market, acc, ins, lots = benchmark_book(n_accounts=3000, n_instruments=21, per_account=1.0, seed=9)
    pos = Positions.from_coo(3000, len(table), acc, ins, lots)
    regime = PortfolioRegime(table, PortfolioConfig(cross_asset=cross_asset))
    seg = segments_by_group(pos, regime._groups, regime._n_groups)
    assert seg.distinct()[1] is not None  # the book repeats segments: the distinct path is taken
    req = regime.requirements(pos, market)
    comp = regime.components(pos, market)
    for a in range(0, 3000, 97):
        alone = PortfolioRegime(table, PortfolioConfig(cross_asset=cross_asset))
        one = alone.requirements(Positions(pos.dense[a:a + 1].copy()), market)
        assert one.im[0].tobytes() == req.im[a].tobytes()
        assert alone.components(Positions(pos.dense[a:a + 1].copy()), market)["core"][0] == comp["core"][a]


def test_later_calls_on_the_same_market_take_known_segments_bit_for_bit() -> None:
    table, market, acc, ins, lots = benchmark_book(n_accounts=4000, n_instruments=21, seed=2)
    pos = Positions.from_coo(4000, len(table), acc, ins, lots)
    regime = PortfolioRegime(table)
    regime.requirements(pos, market)  # the whole book: its distinct segments are kept
    memo = regime._workspace["distinct"]
    # changed rows: some as they were, some with a lot more or a new instrument, a new account
    rows = pos.dense[::7].copy()
    rows[::3, 4] += 1.0
    rows[1::5, 0] -= 2.0
    rows = np.vstack([rows, np.full((1, len(table)), 1.0)])
    later = regime.requirements(Positions(rows), market)
    assert regime._workspace["distinct"] is memo  # a smaller call looks up, keeps the table
    fresh = PortfolioRegime(table).requirements(Positions(rows.copy()), market)
    assert later.im.tobytes() == fresh.im.tobytes()
    seg = segments_by_group(Positions(rows.copy()), regime._groups, regime._n_groups)
    from clearing.margin.base import _segment_hashes
    known = np.isin(_segment_hashes(seg), memo[4])
    assert 0 < known.sum() < seg.n  # both paths were taken
    # a caller writing into its figures leaves the kept ones alone
    again = regime.requirements(Positions(rows.copy()), market)
    assert again.im.tobytes() == fresh.im.tobytes()


def test_a_larger_call_replaces_the_kept_table() -> None:
    table, market, acc, ins, lots = benchmark_book(n_accounts=2000, n_instruments=21, seed=4)
    pos = Positions.from_coo(2000, len(table), acc, ins, lots)
    regime = PortfolioRegime(table)
    small = regime.requirements(Positions(pos.dense[:10].copy()), market)  # a pre-trade check first
    whole = regime.requirements(pos, market)
    assert regime._workspace["distinct"][2] == segments_by_group(pos, regime._groups, regime._n_groups).n
    fresh = PortfolioRegime(table).requirements(Positions(pos.dense.copy()), market)
    assert whole.im.tobytes() == fresh.im.tobytes()
    assert small.im.tobytes() == fresh.im[:10].tobytes()


def test_the_same_grouping_on_the_same_market_is_not_reduced_again(monkeypatch) -> None:
    import clearing.margin.base as base
    table, market, acc, ins, lots = benchmark_book(n_accounts=2000, n_instruments=21, seed=6)
    pos = Positions.from_coo(2000, len(table), acc, ins, lots)
    regime = PortfolioRegime(table)
    first = regime.requirements(pos, market)
    calls = []
    # the portfolio regime reduces through _reduce_sparse (segment_reduce_distinct), not _reduce_blocks
    reduce = base._reduce_sparse
    monkeypatch.setattr(base, "_reduce_sparse", lambda seg, *a: calls.append(seg.n) or reduce(seg, *a))
    second = regime.requirements(pos, market)  # the same Positions (its grouping cached on it)
    assert calls == [] and second.im.tobytes() == first.im.tobytes()
    assert second.im is not first.im


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-50, 50).map(float), st.sampled_from([0.0, -0.0, 5e-324, -1e300]))), max_size=300))
def test_distinct_entries_are_np_unique_of_the_pairs(pairs) -> None:
    """The fast grouping (two 1-d uniques) gives ``np.unique(axis=0)``'s pairs of (instrument, lots
    bits), in its order, with the same index of each entry -- lots compared by their bits."""
    cols = np.array([c for c, _ in pairs], dtype=np.int64)
    lots = np.array([x for _, x in pairs], dtype=np.float64)
    got_cols, got_lots, got_inverse = distinct_entries(cols, lots)
    key = np.stack([cols, lots.view(np.int64)], axis=1).reshape(-1, 2)
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    assert np.array_equal(got_cols, uniq[:, 0])
    assert np.array_equal(got_lots.view(np.int64), uniq[:, 1])
    assert np.array_equal(got_inverse, inverse.reshape(-1))
    assert np.array_equal(got_cols[got_inverse], cols) and np.array_equal(got_lots[got_inverse].view(np.int64),
                                                                         lots.view(np.int64))
