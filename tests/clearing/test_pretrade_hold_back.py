"""The pre-trade bounds' hold-back of resting orders' open losses after a re-valuation
(``PreTradeBounds._hold_back_open_losses``), vectorised over the orders priced through the marks,
leaves the headroom a loop over the orders leaves -- to the bit, with fractional marks, many
accounts and several books -- and a known answer: one bid above the mark."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

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


def _loop(bounds: PreTradeBounds, rows) -> np.ndarray:
    """The hold-back as a loop over the orders (the code it replaced), on a copy of the headroom."""
    headroom = bounds.headroom.copy()
    ticks, tick_value = bounds.marks.ticks, bounds.ledger.tick_value
    if not isinstance(rows, slice):
        for account in rows.tolist():
            loss = bounds.resting_open_loss(account)
            if loss:
                headroom[account] -= loss
        return headroom
    losses: dict[int, float] = {}
    for i, book in enumerate(bounds.venue.books):
        mark = ticks.item(i)
        in_ticks: dict[int, float] = {}
        for order in book.orders_through(mark):
            in_ticks[order.account] = in_ticks.get(order.account, 0.0) + order.side * (order.price - mark) * order.size
        for account, loss in in_ticks.items():
            losses[account] = losses.get(account, 0.0) + loss * tick_value.item(i)
    for account, loss in losses.items():
        if rows.start <= account < rows.stop:
            headroom[account] -= loss
    return headroom


@pytest.mark.parametrize("per_book", [1_500, 12])  # the numpy path, and the small path's loop
def test_hold_back_equals_the_loop_over_orders(per_book: int) -> None:
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
    assert (through > SMALL_HOLD_BACK) == (per_book > 100)  # each case takes the path it names
    for rows in (slice(1, N_ACCOUNTS), slice(50, 200), np.array([3, 7, 11, 250]), np.arange(1, N_ACCOUNTS)):
        want = _loop(bounds, rows)
        before = bounds.headroom.copy()
        bounds._hold_back_open_losses(rows)
        assert bounds.headroom.tobytes() == want.tobytes()
        if per_book > 100 or isinstance(rows, slice) and rows == slice(1, N_ACCOUNTS):
            assert (bounds.headroom < before).any()  # the case is not vacuous
        bounds.headroom[:] = before


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
