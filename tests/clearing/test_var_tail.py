"""The pruned tail search of the VaR regimes gives exactly what sorting every scenario loss gives.

``top_losses`` with scenario groups skips the groups whose loss bound cannot reach the tail; the
control is the plain computation -- every portfolio's loss in every scenario through
``segment_sums_t`` (the path the regime took before the pruning) and a full sort.
"""

from __future__ import annotations

import numpy as np
import pytest

from clearing.margin.base import Positions, segment_sums_t
from clearing.margin import var
from clearing.margin.var import LotSlots, group_size, scenario_groups, tail_count, tail_measure, top_losses


def _reference(lots: np.ndarray, loss: np.ndarray, k: int) -> np.ndarray:
    """(A, k) k largest losses by the segment path and a full sort (0 for a flat book)."""
    pos = Positions(lots)
    seg, summed_t = segment_sums_t(pos, np.ascontiguousarray(-loss.T), np.zeros(lots.shape[1], dtype=np.int64), 1)
    out = np.zeros((lots.shape[0], k))
    if seg.n:
        out[seg.row] = np.sort(-summed_t, axis=0)[::-1][:k].T
    return out


@pytest.fixture(autouse=True)
def always_prune(monkeypatch):
    """These books are small: take the pruned search anyway (in production it starts at
    ``PRUNE_MIN_BOOKS`` distinct books), so that it is what these tests check."""
    monkeypatch.setattr(var, "PRUNE_MIN_BOOKS", 0)


def _book(rng, a: int, i: int) -> np.ndarray:
    lots = rng.integers(-3, 4, (a, i)).astype(float) * (rng.random((a, i)) < 0.45)
    lots[: a // 10] = lots[a // 10: 2 * (a // 10)]  # duplicated books
    lots[-3:] = 0.0  # flat books
    return lots


def _losses(rng, returns: np.ndarray, i: int) -> np.ndarray:
    """Per-lot losses that depend on one underlying each, some convex (option-like)."""
    u = rng.integers(0, returns.shape[1], i)
    scale = rng.uniform(10, 1_000, i)
    convex = rng.random(i) < 0.5
    r = returns[:, u].T
    return np.where(convex[:, None], scale[:, None] * (np.maximum(r, 0) * 3 - r), -scale[:, None] * r)


@pytest.mark.parametrize("s,u,conf", [(365, 2, 0.99), (1003, 2, 0.99), (2520, 3, 0.99), (250, 1, 0.975),
                                      (97, 2, 0.9), (40, 2, 0.99), (70, 2, 0.97), (80, 2, 0.99)])
def test_pruned_tail_equals_the_full_sort_bit_for_bit(s, u, conf):
    rng = np.random.default_rng(s + u)
    returns = rng.standard_t(4, (s, u)) * 0.03
    lots = _book(rng, 700, 7)
    loss = _losses(rng, returns, 7)
    k = tail_count(s, conf)
    groups = scenario_groups(returns, group_size(k))
    got = top_losses(LotSlots(lots), loss, k, groups)
    want = _reference(lots, loss, k)
    np.testing.assert_array_equal(got, want)  # the same bits, not merely close
    np.testing.assert_array_equal(top_losses(lots, loss, k, None), want)


def test_ties_and_a_degenerate_scenario_set():
    rng = np.random.default_rng(5)
    returns = np.repeat(rng.normal(0, 0.02, (30, 2)), 12, axis=0)  # every scenario 12 times: ties everywhere
    lots = _book(rng, 200, 4)
    loss = _losses(rng, returns, 4)
    k = tail_count(returns.shape[0], 0.99)
    got = top_losses(lots, loss, k, scenario_groups(returns, group_size(k)))
    np.testing.assert_array_equal(got, _reference(lots, loss, k))


def test_var_figure_is_the_old_tail_measure():
    rng = np.random.default_rng(11)
    returns = rng.normal(0, 0.03, (500, 2))
    lots = _book(rng, 300, 5)
    loss = _losses(rng, returns, 5)
    k = tail_count(500, 0.99)
    top = top_losses(lots, loss, k, scenario_groups(returns, group_size(k)))
    summed = lots @ loss  # a different summation order: close, not equal
    np.testing.assert_allclose(np.maximum(top[:, k - 1], 0.0), tail_measure(summed.T, 0.99, "var"), rtol=1e-12,
                               atol=1e-9)
    # ES (mean of the k largest): the same k losses, summed in another order -- equal to rounding
    np.testing.assert_allclose(np.maximum(top.mean(axis=1), 0.0), tail_measure(summed.T, 0.99, "es"), rtol=1e-12,
                               atol=1e-9)


def test_flat_books_and_no_scenarios_give_zero():
    loss = np.ones((3, 0))
    assert top_losses(np.zeros((4, 3)), np.ones((3, 50)), 1).tolist() == [[0.0]] * 4
    assert top_losses(np.eye(3), loss, 1).shape == (3, 1)


def test_groups_hold_every_scenario_once():
    rng = np.random.default_rng(2)
    for s, u in [(365, 2), (1000, 1), (77, 4), (16, 2)]:
        g = scenario_groups(rng.normal(size=(s, u)), 16)
        flat = g.ravel()
        assert sorted(flat[flat < s].tolist()) == list(range(s)) and np.all(flat[s:] == s)


def test_few_books_take_the_plain_partition_with_the_same_figures(monkeypatch):
    rng = np.random.default_rng(3)
    returns = rng.standard_t(4, (1003, 2)) * 0.03
    lots = _book(rng, 120, 6)
    loss = _losses(rng, returns, 6)
    k = tail_count(1003, 0.99)
    groups = scenario_groups(returns, group_size(k))
    pruned = top_losses(lots, loss, k, groups)
    calls = []
    monkeypatch.setattr(var, "PRUNE_MIN_BOOKS", 2048)
    monkeypatch.setattr(var, "_pruned_top", lambda *a: calls.append(a))
    plain = top_losses(lots, loss, k, groups)
    assert not calls  # 120 books: below the threshold, the bounds are never built
    np.testing.assert_array_equal(plain, pruned)


# ------------------------------------------------- the previous run's tail as the search's start
def _noise_books(rng, loss: np.ndarray, a: int) -> tuple[np.ndarray, np.ndarray]:
    """Instruments 0 and 1 cancel to rounding noise (a perpetual against a deep in-the-money
    option): books holding both have losses of ~1e-12 in every scenario, all reaching tau."""
    loss = loss.copy()
    loss[1] = -loss[0] * (1.0 + rng.normal(0, 1e-14, loss.shape[1]))
    lots = _book(rng, a, loss.shape[0])
    lots[: a // 8, :2] = [2.0, 2.0]
    return lots, loss


@pytest.mark.parametrize("s,conf,slide", [(365, 0.99, 1), (1003, 0.99, 0), (250, 0.975, 3), (60, 0.99, 1),
                                           (97, 0.9, 5)])
def test_hinted_tails_along_a_path_equal_the_full_sort(s, conf, slide):
    """Consecutive margin runs: the scenario set slides (``slide`` returns a run) or grows (0), the
    per-lot losses drift with the market, and each run starts from the previous run's tail
    (``_hint``): every run's tail is bit-for-bit the full sort's, with ties (repeated returns),
    flat and duplicated books, single-scenario tails (s=60: k=1) and books hedged to noise."""
    rng = np.random.default_rng(s + slide)
    runs = 12
    returns = rng.standard_t(4, (s + runs * max(slide, 1), 2)) * 0.03
    returns[5:30] = returns[5]  # ties: one return 25 times
    base = _losses(rng, returns, 7)
    lots, base = _noise_books(rng, base, 600)
    book = LotSlots(lots)
    memo = None
    for t in range(runs):
        first, end = (t * slide, t * slide + s) if slide else (0, s + t)
        drift = 1.0 + 0.03 * rng.standard_normal((7, 1))  # the market moved: every loss changed
        loss = base[:, first:end] * drift
        n = end - first
        k = tail_count(n, conf)
        groups = scenario_groups(returns[first:end], group_size(k))
        hint = None if memo is None else var._hint(*memo, first, n, k)
        top, ids = var.tail_of(book, loss, k, groups, hint)
        assert ids is not None  # the pruned search ran
        want = _reference(book.dense, loss, k)
        np.testing.assert_array_equal(top, want)
        # the ids are k distinct scenarios holding the tail's losses
        got = book.losses(None, book.terms(np.concatenate([loss, np.zeros((7, 1))], axis=1)), ids)
        assert all(np.unique(r).size == k for r in ids)
        np.testing.assert_array_equal(-np.sort(-got, axis=1), want)
        unordered, _ = var.tail_of(book, loss, k, groups, hint, ordered=False)
        np.testing.assert_array_equal(unordered.min(axis=1), want[:, -1])
        memo = (ids + first, end)


def test_every_book_hedged_to_noise():
    """No book leaves a group out (all computed in full rows): the same tails as the full sort."""
    rng = np.random.default_rng(12)
    returns = rng.standard_t(4, (300, 2)) * 0.03
    lots, loss = _noise_books(rng, _losses(rng, returns, 4), 80)
    lots[:, 0] = lots[:, 1] = rng.integers(1, 4, 80)  # three distinct books, each long both
    lots[:, 2:] = 0.0
    k = tail_count(300, 0.99)
    book = LotSlots(lots)
    top, ids = var.tail_of(book, loss, k, scenario_groups(returns, group_size(k)))
    np.testing.assert_array_equal(top, _reference(book.dense, loss, k))


def test_any_hint_gives_the_same_tail():
    """The hint only sets where the search starts: random, partly invalid or stale hints give the
    same figures as none."""
    rng = np.random.default_rng(8)
    s = 500
    returns = rng.standard_t(4, (s, 2)) * 0.03
    lots = _book(rng, 400, 6)
    loss = _losses(rng, returns, 6)
    k = tail_count(s, 0.99)
    groups = scenario_groups(returns, group_size(k))
    book = LotSlots(lots)
    want = _reference(book.dense, loss, k)
    a_n = book.dense.shape[0]
    random_ids = np.argsort(rng.random((a_n, s)), axis=1)[:, :k]  # k distinct scenarios a row
    partly = random_ids.copy()
    partly[::3, 0] = -1  # those rows start from the highest-bound groups instead
    for hint in (None, random_ids, partly, np.full((a_n, k), -1)):
        np.testing.assert_array_equal(var.tail_of(book, loss, k, groups, hint)[0], want)


def test_hint_maps_the_previous_tail_onto_the_new_set():
    ids = np.array([[10, 11, 12], [3, 11, 12], [3, 4, 12]])  # history return indices
    # the set slid from [3, 13) to [5, 15): 3 and 4 left, 13 and 14 are new
    h = var._hint(ids, 13, 5, 10, 3)
    assert h.tolist() == [[5, 6, 7], [8, 6, 7], [8, 9, 7]]  # returns 13 and 14 take the places of 3 and 4
    # k grew by one: the newest return fills the tail; nothing new: no hint for that row
    assert var._hint(ids[:1], 13, 3, 11, 4).tolist() == [[7, 8, 9, 10]]
    assert var._hint(ids[1:2], 13, 5, 8, 3).tolist() == [[-1, 6, 7]]


def _regime_path(config, monkeypatch, prune: bool) -> np.ndarray:
    """Margins of 600 random books on two underlyings' perpetuals and options along 30 daily runs
    (the history grows a row a run), one regime and one Positions object as the backtest has."""
    from clearing.margin.examples import make_instrument, make_market
    from clearing.margin.registry import build_regime
    from sim.core.instruments import InstrumentTable

    monkeypatch.setattr(var, "PRUNE_MIN_BOOKS", 0 if prune else 10 ** 9)
    rng = np.random.default_rng(21)
    table = InstrumentTable.from_instruments([
        make_instrument(0, "A-PERP", "perpetual", "A"), make_instrument(1, "A-P", "option", "A", 1.0, 14, 90.0, False),
        make_instrument(2, "A-C", "option", "A", 1.0, 14, 110.0, True), make_instrument(3, "B-PERP", "perpetual", "B"),
        make_instrument(4, "B-C", "option", "B", 1.0, 30, 100.0, True)])
    steps = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], 700) * 0.03
    steps[200:230] *= 3.0  # a stressed month
    prices = 100.0 * np.exp(np.cumsum(steps, axis=0))
    lots = _book(rng, 600, 5)
    pos = Positions(lots)
    regime = build_regime(config, table, history=prices[:670])
    out = []
    for t in range(670, 700):
        regime.set_history(prices[: t + 1])
        market = make_market(table, {"A": prices[t, 0], "B": prices[t, 1]}, {"A": 0.6, "B": 0.7})
        out.append(regime.requirements(pos, market).im)
    return np.array(out)


@pytest.mark.parametrize("config", [
    {"regime": "var_apc"},
    {"regime": "var_apc", "lookback_days": 120, "floor_lookback_days": 400},  # the floor slides too
    {"regime": "var_apc", "lookback_days": 800},  # a short history: the three sets are one, measured once
    {"regime": "var", "method": "filtered", "stressed_weight": 0.25},
    {"regime": "var", "measure": "es", "floor_lookback_days": 600},
], ids=str)
def test_regime_margins_along_a_path_equal_the_plain_partition(config, monkeypatch):
    """Through the regime, as a backtest calls it: the pruned search started from each run's
    previous tail gives the plain partition's margins, bit for bit."""
    pruned = _regime_path(config, monkeypatch, prune=True)
    plain = _regime_path(config, monkeypatch, prune=False)
    assert np.mean(pruned > 0) > 0.8  # (flat books: 0)
    np.testing.assert_array_equal(pruned, plain)


def test_overlapping_sets_priced_once_equal_each_set_priced_alone():
    """The lookback and stressed sets lie inside the floor's returns: priced as one stretch, each
    set's P&L has the bits of pricing its own returns."""
    from clearing.margin.examples import make_instrument, make_market
    from clearing.margin.config import VaRConfig
    from clearing.margin.var import SECONDS_PER_YEAR, VaRRegime
    from sim.core.instruments import InstrumentTable

    rng = np.random.default_rng(4)
    table = InstrumentTable.from_instruments([
        make_instrument(0, "A-PERP", "perpetual", "A"), make_instrument(1, "A-C", "option", "A", 1.0, 7, 105.0, True),
        make_instrument(2, "B-P", "option", "B", 1.0, 30, 95.0, False)])
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.03, (900, 2)), axis=0))
    market = make_market(table, {"A": prices[-1, 0], "B": prices[-1, 1]}, {"A": 0.5, "B": 0.9})
    for cfg in (VaRConfig(regime="var_apc"), VaRConfig(regime="var_apc", floor_lookback_days=300),
                VaRConfig(regime="var_apc", method="filtered")):
        regime = VaRRegime(table, cfg, history=prices)
        aged = regime.mpor * regime.row_interval / SECONDS_PER_YEAR
        mats = regime.pnl_matrices(market)
        assert set(mats) == {"base", "stressed", "floor"}
        for name, r in regime.scenario_sets().items():
            alone = regime.rev.relative(market, r.T[table.underlying_index], years_shift=aged)
            np.testing.assert_array_equal(mats[name], alone)
