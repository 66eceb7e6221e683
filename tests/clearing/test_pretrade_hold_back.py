"""The pre-trade bounds' hold-back of resting orders' open losses after a re-valuation
(``PreTradeBounds._hold_back_open_losses``): its small path (a loop over the orders priced through
the marks) and its numpy path leave the same headroom to the bit, with fractional marks, many
accounts and several books; both agree with an independent per-account reference to rounding; and
a known answer: one bid above the mark."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from clearing import pretrade
from clearing.pretrade import SMALL_HOLD_BACK, PreTradeBounds
from sim.core.orders import BUY, SELL
from sim.market.book import OrderBook
from sim.market.resting import RestingSize

N_ACCOUNTS = 400


def _bounds(marks: list[float], tick_value: list[int]):
    n_ins = len(marks)
    resting = RestingSize(n_ins, N_ACCOUNTS)
    venue = SimpleNamespace(books=[OrderBook(i) for i in range(n_ins)], resting=resting,
                            open_bids=resting.bids, open_asks=resting.asks)
    house = SimpleNamespace(ledger=SimpleNamespace(cash=np.zeros((N_ACCOUNTS, 1)),
                                                   tick_value=np.array(tick_value, dtype=np.int64)),
                            venue=venue, marks=SimpleNamespace(ticks=np.array(marks)), table=[None] * n_ins,
                            regime=SimpleNamespace(), scale=100.0)
    bounds = PreTradeBounds(house)
    bounds.headroom[:] = np.linspace(-5.0, 1e6, N_ACCOUNTS)
    return bounds, venue


def _rest(venue, book: int, oid: int, account: int, side: int, price: int, lots: int) -> None:
    result = venue.books[book].submit(oid, account, side, price, lots)
    assert result.reject is None and not result.fills
    venue.resting.apply(book, account, side, result)


def _per_account(bounds: PreTradeBounds, rows) -> np.ndarray:
    """An independent reference: each account's own resting orders (``resting_open_loss``, which
    sums per account rather than per book), taken off a copy of the headroom. Its additions come in
    another order, so it agrees with the hold-back to rounding, not to the bit."""
    headroom = bounds.headroom.copy()
    accounts = range(rows.start, rows.stop) if isinstance(rows, slice) else rows.tolist()
    for account in accounts:
        headroom[account] -= bounds.resting_open_loss(account)
    return headroom


def _hold_back(bounds: PreTradeBounds, rows, small: int, monkeypatch) -> np.ndarray:
    """The hold-back with the small path's threshold at ``small``, on a copy of the headroom."""
    before = bounds.headroom.copy()
    monkeypatch.setattr(pretrade, "SMALL_HOLD_BACK", small)
    bounds._hold_back_open_losses(rows)
    got = bounds.headroom.copy()
    bounds.headroom[:] = before
    return got


@pytest.mark.parametrize("per_book", [1_500, 12])  # the numpy path's usual size, and the small path's
def test_hold_back_paths_agree(per_book: int, monkeypatch) -> None:
    """The small path's loop and the numpy path leave the same headroom to the bit, whichever size
    the orders through the marks come in, and both agree with the per-account reference."""
    marks = [10_000.37, 2_999.91, 501.5]
    bounds, venue = _bounds(marks, [1, 10, 7])
    rng = np.random.default_rng(2)
    oid = 0
    for book, mark in enumerate(marks):
        for _ in range(per_book):  # bids up to 3% either side of the mark, asks above every bid
            oid += 1
            account = int(rng.integers(1, N_ACCOUNTS))
            if rng.random() < 0.6:
                _rest(venue, book, oid, account, BUY, int(mark * rng.uniform(0.97, 1.03)), int(rng.integers(1, 50)))
            else:
                _rest(venue, book, oid, account, SELL, int(mark * rng.uniform(1.031, 1.06)), int(rng.integers(1, 50)))
    bounds.marks.ticks[2] = 501.5 * 1.05  # and asks below the third mark
    through = sum(len(b.orders_through(bounds.marks.ticks.item(i))) for i, b in enumerate(venue.books))
    assert (through > SMALL_HOLD_BACK) == (per_book > 100)  # the default takes the path the case names
    for rows in (slice(1, N_ACCOUNTS), slice(50, 200), np.array([3, 7, 11, 250]), np.arange(1, N_ACCOUNTS)):
        before = bounds.headroom.copy()
        by_loop = _hold_back(bounds, rows, through, monkeypatch)  # forced onto the small path
        by_numpy = _hold_back(bounds, rows, -1, monkeypatch)  # forced onto the numpy path
        assert by_loop.tobytes() == by_numpy.tobytes()
        np.testing.assert_allclose(by_numpy, _per_account(bounds, rows), rtol=1e-12, atol=1e-6)
        if per_book > 100 or isinstance(rows, slice) and rows == slice(1, N_ACCOUNTS):
            assert (by_numpy < before).any()  # the case is not vacuous


def test_one_bid_above_the_mark() -> None:
    """Known answer: a bid of 3 lots at 105 against a mark of 100.5, 10 minor units a tick: 135
    held back; an order at or below the mark holds nothing back; no orders at all: nothing."""
    bounds, venue = _bounds([100.5], [10])
    _rest(venue, 0, 1, 5, BUY, 105, 3)
    _rest(venue, 0, 2, 6, BUY, 100, 4)
    before = bounds.headroom.copy()
    bounds._hold_back_open_losses(slice(1, N_ACCOUNTS))
    assert bounds.headroom[5] == before[5] - 135.0
    assert np.array_equal(np.delete(bounds.headroom, 5), np.delete(before, 5))
    bounds.headroom[:] = before
    bounds._hold_back_open_losses(np.array([5, 6, 9]))
    assert bounds.headroom[5] == before[5] - 135.0 and bounds.headroom[6] == before[6]
    empty, _venue = _bounds([100.5], [10])
    before = empty.headroom.copy()
    empty._hold_back_open_losses(slice(1, N_ACCOUNTS))
    assert empty.headroom.tobytes() == before.tobytes()
