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
                                      (97, 2, 0.9), (40, 2, 0.99)])
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
