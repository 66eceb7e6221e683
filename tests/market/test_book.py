"""Unit tests for sim.market.book.OrderBook: order types, STP, rejects, amend priority, queries, halts."""

from __future__ import annotations

import pytest

from sim.market.book import OrderBook
from sim.core.orders import (
    BUY,
    SELL,
    Fill,
    FillFlag,
    RejectReason,
    STPMode,
    SubmitResult,
    TimeInForce,
)

GTC, IOC, FOK, POST_ONLY, MARKET = (
    TimeInForce.GTC,
    TimeInForce.IOC,
    TimeInForce.FOK,
    TimeInForce.POST_ONLY,
    TimeInForce.MARKET,
)

# Accounts
ALICE, BOB, CAROL = 1, 2, 3


def snapshot(book: OrderBook) -> tuple:
    """Everything observable about the book's resting state, for 'a reject changes nothing'."""
    book.check_integrity()
    orders = tuple(
        (o.order_id, o.account, o.side, o.price, o.size, o.tif, o.reduce_only, o.flags)
        for side in (BUY, SELL)
        for o in book.resting_orders(side)
    )
    return orders, book.depth(100), book.resting_size(), len(book), book.top_of_book()


def assert_conserved(result: SubmitResult, size: int) -> None:
    assert result.accepted
    assert result.filled_size + result.resting_size + result.cancelled_size == size


def ids(orders) -> list[int]:
    return [o.order_id for o in orders]


@pytest.fixture
def book() -> OrderBook:
    return OrderBook(instrument=7)


def ladder(book: OrderBook) -> OrderBook:
    """Bids 99x5 (id 1, ALICE), 98x5 (id 2, ALICE); asks 101x5 (id 3, BOB), 102x5 (id 4, BOB)."""
    book.submit(1, ALICE, BUY, 99, 5)
    book.submit(2, ALICE, BUY, 98, 5)
    book.submit(3, BOB, SELL, 101, 5)
    book.submit(4, BOB, SELL, 102, 5)
    return book


# ---------------------------------------------------------------- GTC and priority


def test_gtc_rests_when_not_crossing(book):
    result = book.submit(1, ALICE, BUY, 100, 7)
    assert result == SubmitResult(1, None, [], 7)
    assert book.best_bid() == 100 and book.best_ask() is None
    assert book.order(1).size == 7 and len(book) == 1 and 1 in book


def test_gtc_crossing_trades_at_maker_price_then_rests_remainder(book):
    ladder(book)
    result = book.submit(10, CAROL, BUY, 102, 12)
    assert [(f.price, f.size, f.maker_order_id) for f in result.fills] == [(101, 5, 3), (102, 5, 4)]
    assert result.resting_size == 2 and result.cancelled_size == 0
    assert_conserved(result, 12)
    assert book.best_bid() == 102 and book.best_ask() is None
    assert book.order(10).size == 2
    book.check_integrity()


def test_fill_carries_ids_accounts_side_and_flags(book):
    book.submit(1, ALICE, SELL, 100, 3)
    result = book.submit(2, BOB, BUY, 100, 3, IOC, flags=FillFlag.LIQUIDATION)
    assert result.fills == [
        Fill(
            instrument=7,
            price=100,
            size=3,
            aggressor_side=BUY,
            maker_order_id=1,
            taker_order_id=2,
            maker_account=ALICE,
            taker_account=BOB,
            flags=FillFlag.LIQUIDATION,
        )
    ]


def test_price_then_time_priority(book):
    book.submit(1, ALICE, SELL, 101, 2)
    book.submit(2, BOB, SELL, 100, 2)
    book.submit(3, CAROL, SELL, 100, 2)
    book.submit(4, ALICE, SELL, 100, 2)
    result = book.submit(5, 9, BUY, 101, 7)
    assert [f.maker_order_id for f in result.fills] == [2, 3, 4, 1]
    assert [f.size for f in result.fills] == [2, 2, 2, 1]
    assert book.order(1).size == 1
    book.check_integrity()


def test_sell_side_walks_bids_from_highest(book):
    ladder(book)
    result = book.submit(10, CAROL, SELL, 98, 7, IOC)
    assert [(f.price, f.size) for f in result.fills] == [(99, 5), (98, 2)]
    assert book.best_bid() == 98 and book.depth(5)[0] == [(98, 3)]


# ---------------------------------------------------------------- IOC, FOK, POST_ONLY, MARKET


def test_ioc_fills_what_crosses_and_cancels_rest(book):
    ladder(book)
    result = book.submit(10, CAROL, BUY, 101, 8, IOC)
    assert [f.size for f in result.fills] == [5]
    assert result.cancelled_size == 3 and result.resting_size == 0
    assert 10 not in book and book.best_ask() == 102


def test_ioc_without_liquidity_is_accepted_and_cancelled(book):
    ladder(book)
    result = book.submit(10, CAROL, BUY, 100, 4, IOC)
    assert result == SubmitResult(10, None, [], 0, 4)
    assert 10 not in book


def test_fok_fills_entirely(book):
    ladder(book)
    result = book.submit(10, CAROL, BUY, 102, 10, FOK)
    assert result.filled_size == 10 and result.cancelled_size == 0
    assert book.best_ask() is None


@pytest.mark.parametrize("limit,size", [(101, 6), (102, 11), (100, 1)])
def test_fok_that_cannot_fill_is_rejected_and_changes_nothing(book, limit, size):
    ladder(book)
    before = snapshot(book)
    result = book.submit(10, CAROL, BUY, limit, size, FOK)
    assert result.reject is RejectReason.FOK_CANNOT_FILL and not result.fills
    assert snapshot(book) == before


@pytest.mark.parametrize(
    "mode,accepted",
    [
        (STPMode.CANCEL_NEWEST, False),  # own order would cut the FOK short
        (STPMode.DECREMENT_BOTH, False),  # ditto: decrement is not a fill
        (STPMode.CANCEL_OLDEST, True),  # own order would be removed, others suffice
    ],
)
def test_fok_counts_only_what_stp_lets_it_trade(book, mode, accepted):
    book.submit(1, BOB, SELL, 100, 2)
    book.submit(2, CAROL, SELL, 100, 3)  # CAROL's own order, between BOB's
    book.submit(3, BOB, SELL, 101, 5)
    before = snapshot(book)
    result = book.submit(10, CAROL, BUY, 101, 7, FOK, stp=mode)
    if accepted:
        assert result.filled_size == 7 and result.stp_cancelled == [2]
        assert result.stp_reduced == ((2, 3),)
        assert book.best_ask() is None
    else:
        assert result.reject is RejectReason.FOK_CANNOT_FILL
        assert snapshot(book) == before


def test_fok_stops_at_own_order_but_succeeds_if_enough_before_it(book):
    book.submit(1, BOB, SELL, 100, 5)
    book.submit(2, CAROL, SELL, 100, 3)
    result = book.submit(10, CAROL, BUY, 100, 5, FOK)  # CANCEL_NEWEST default
    assert result.filled_size == 5 and book.order(2).size == 3


def test_post_only_rests_below_the_ask(book):
    ladder(book)
    result = book.submit(10, CAROL, BUY, 100, 3, POST_ONLY)
    assert result.resting_size == 3 and book.best_bid() == 100
    assert book.order(10).tif == POST_ONLY


@pytest.mark.parametrize("side,price", [(BUY, 101), (BUY, 150), (SELL, 99), (SELL, 1)])
def test_post_only_that_would_take_is_rejected(book, side, price):
    ladder(book)
    before = snapshot(book)
    result = book.submit(10, CAROL, side, price, 3, POST_ONLY)
    assert result.reject is RejectReason.POST_ONLY_WOULD_CROSS
    assert snapshot(book) == before


def test_market_never_fills_beyond_protection_price(book):
    ladder(book)
    book.submit(5, BOB, SELL, 110, 50)
    result = book.submit(10, CAROL, BUY, 102, 100, MARKET)
    assert [f.price for f in result.fills] == [101, 102]
    assert result.cancelled_size == 90 and result.resting_size == 0
    assert 10 not in book and book.best_ask() == 110


def test_market_sell(book):
    ladder(book)
    result = book.submit(10, CAROL, SELL, 1, 7, MARKET)
    assert [(f.price, f.size) for f in result.fills] == [(99, 5), (98, 2)]
    assert_conserved(result, 7)


# ---------------------------------------------------------------- rejects


@pytest.mark.parametrize(
    "kwargs,reason",
    [
        (dict(price=0), RejectReason.BAD_TICK),
        (dict(price=-5), RejectReason.BAD_TICK),
        (dict(price=101), RejectReason.BAD_TICK),  # tick is 2
        (dict(size=0), RejectReason.NON_POSITIVE_SIZE),
        (dict(size=-10), RejectReason.NON_POSITIVE_SIZE),
        (dict(size=7), RejectReason.BAD_LOT),  # lot is 5
        (dict(order_id=1), RejectReason.DUPLICATE_ORDER_ID),
        (dict(reduce_only=True), RejectReason.REDUCE_ONLY_WOULD_INCREASE),
        (dict(tif=POST_ONLY, price=104), RejectReason.POST_ONLY_WOULD_CROSS),
        (dict(tif=FOK, price=104, size=50), RejectReason.FOK_CANNOT_FILL),
    ],
)
def test_every_reject_reason_changes_nothing(kwargs, reason):
    book = OrderBook(0, tick=2, lot=5)
    book.submit(1, ALICE, BUY, 98, 10)
    book.submit(2, BOB, SELL, 104, 10)
    before = snapshot(book)
    order = dict(order_id=10, account=CAROL, side=BUY, price=100, size=5) | kwargs
    result = book.submit(**order)
    assert result.reject is reason and not result.accepted
    assert result.fills == [] and result.resting_size == 0
    assert snapshot(book) == before


def test_reject_precedence_halted_first_then_static_checks():
    book = OrderBook(0, tick=2, lot=5)
    book.submit(1, ALICE, BUY, 98, 10)
    book.halt()
    assert book.submit(1, ALICE, BUY, 0, 0).reject is RejectReason.HALTED
    book.resume()
    assert book.submit(1, ALICE, BUY, 0, 0).reject is RejectReason.DUPLICATE_ORDER_ID
    assert book.submit(2, ALICE, BUY, 0, 0).reject is RejectReason.BAD_TICK
    assert book.submit(2, ALICE, BUY, 100, 0).reject is RejectReason.NON_POSITIVE_SIZE
    assert book.submit(2, ALICE, BUY, 100, 3).reject is RejectReason.BAD_LOT
    result = book.submit(2, ALICE, BUY, 100, 5, POST_ONLY, reduce_only=True)
    assert result.reject is RejectReason.REDUCE_ONLY_WOULD_INCREASE


def test_bad_side_is_a_programming_error(book):
    with pytest.raises(ValueError):
        book.submit(1, ALICE, 0, 100, 1)
    assert len(book) == 0


def test_finished_order_id_may_be_reused(book):
    book.submit(1, ALICE, BUY, 100, 1)
    book.cancel(1)
    assert book.submit(1, ALICE, BUY, 100, 1).accepted


# ---------------------------------------------------------------- reduce-only


def positions_book(positions: dict[int, int]) -> OrderBook:
    return OrderBook(0, position_of=lambda account: positions.get(account, 0))


def test_reduce_only_against_position_and_resting_reduce_only():
    positions = {ALICE: 10}
    book = positions_book(positions)
    assert book.submit(1, ALICE, SELL, 105, 6, reduce_only=True).resting_size == 6
    assert book.submit(2, ALICE, SELL, 106, 4, reduce_only=True).resting_size == 4
    before = snapshot(book)
    result = book.submit(3, ALICE, SELL, 107, 1, reduce_only=True)
    assert result.reject is RejectReason.REDUCE_ONLY_WOULD_INCREASE
    assert snapshot(book) == before
    # Non-reduce-only orders do not use up reduce-only capacity.
    assert book.submit(4, ALICE, SELL, 108, 50).accepted
    book.cancel(2)
    assert book.submit(3, ALICE, SELL, 107, 4, reduce_only=True).accepted


@pytest.mark.parametrize(
    "position,side,size",
    [(0, SELL, 1), (0, BUY, 1), (10, BUY, 1), (-10, SELL, 1), (10, SELL, 11), (-3, BUY, 4)],
)
def test_reduce_only_rejects(position, side, size):
    book = positions_book({ALICE: position})
    book.submit(1, BOB, BUY, 90, 100)
    book.submit(2, BOB, SELL, 110, 100)
    before = snapshot(book)
    result = book.submit(3, ALICE, side, 100, size, IOC, reduce_only=True)
    assert result.reject is RejectReason.REDUCE_ONLY_WOULD_INCREASE
    assert snapshot(book) == before


def test_reduce_only_without_position_callback_treats_accounts_as_flat(book):
    assert book.submit(1, ALICE, SELL, 100, 1, reduce_only=True).reject is (
        RejectReason.REDUCE_ONLY_WOULD_INCREASE
    )


def test_reduce_only_capacity_freed_as_resting_reduce_only_fills():
    positions = {ALICE: -8}
    book = positions_book(positions)
    book.submit(1, ALICE, BUY, 100, 8, reduce_only=True)
    book.submit(2, BOB, SELL, 100, 5, IOC)  # fills 5 of ALICE's reduce-only bid
    positions[ALICE] = -3
    assert book.submit(3, ALICE, BUY, 99, 1, reduce_only=True).reject is not None  # 3 + 1 > 3
    book.cancel(1)
    assert book.submit(3, ALICE, BUY, 99, 3, reduce_only=True).accepted
    book.check_integrity()


# ---------------------------------------------------------------- self-trade prevention


def stp_book(mode: STPMode) -> OrderBook:
    """Asks: 100: BOB 2 (id 1), ALICE 3 (id 2), BOB 4 (id 3); 101: ALICE 5 (id 4), BOB 5 (id 5)."""
    book = OrderBook(0, stp=mode)
    book.submit(1, BOB, SELL, 100, 2)
    book.submit(2, ALICE, SELL, 100, 3)
    book.submit(3, BOB, SELL, 100, 4)
    book.submit(4, ALICE, SELL, 101, 5)
    book.submit(5, BOB, SELL, 101, 5)
    return book


def test_stp_cancel_newest_cancels_incoming_remainder():
    book = stp_book(STPMode.CANCEL_NEWEST)
    result = book.submit(10, ALICE, BUY, 101, 10)
    assert [(f.maker_order_id, f.size) for f in result.fills] == [(1, 2)]
    assert result.cancelled_size == 8 and result.resting_size == 0
    assert result.stp_cancelled == [] and result.stp_reduced == ()
    assert book.order(2).size == 3 and 10 not in book
    book.check_integrity()


def test_stp_cancel_oldest_removes_own_resting_and_continues():
    book = stp_book(STPMode.CANCEL_OLDEST)
    result = book.submit(10, ALICE, BUY, 101, 10)
    assert [(f.maker_order_id, f.size) for f in result.fills] == [(1, 2), (3, 4), (5, 4)]
    assert result.stp_cancelled == [2, 4]
    assert result.stp_reduced == ((2, 3), (4, 5))
    assert 2 not in book and 4 not in book and book.order(5).size == 1
    assert_conserved(result, 10)
    book.check_integrity()


def test_stp_decrement_both_shrinks_both_without_trade():
    book = stp_book(STPMode.DECREMENT_BOTH)
    result = book.submit(10, ALICE, BUY, 101, 10)
    # 2 trade with id 1; 3 cancelled against id 2 (removed); 4 trade with id 3; 1 left meets
    # id 4 (ALICE 5) -> both shrink by 1, no trade; incoming done.
    assert [(f.maker_order_id, f.size) for f in result.fills] == [(1, 2), (3, 4)]
    assert result.stp_reduced == ((2, 3), (4, 1))
    assert result.stp_cancelled == [2]
    assert result.cancelled_size == 4 and result.resting_size == 0
    assert book.order(4).size == 4 and book.depth(5)[1] == [(101, 9)]
    assert_conserved(result, 10)
    book.check_integrity()


def test_stp_decrement_both_keeps_shrunk_resting_order_priority():
    book = OrderBook(0, stp=STPMode.DECREMENT_BOTH)
    book.submit(1, ALICE, SELL, 100, 5)
    book.submit(2, BOB, SELL, 100, 5)
    book.submit(3, ALICE, BUY, 100, 2)
    assert book.order(1).size == 3
    assert ids(book.resting_orders(SELL)) == [1, 2]


def test_stp_mode_overridable_per_submit():
    book = stp_book(STPMode.CANCEL_NEWEST)
    result = book.submit(10, ALICE, BUY, 100, 6, IOC, stp=STPMode.CANCEL_OLDEST)
    assert result.stp_cancelled == [2] and result.filled_size == 6
    assert book.stp is STPMode.CANCEL_NEWEST


def test_stp_only_triggers_on_same_account():
    book = stp_book(STPMode.CANCEL_NEWEST)
    result = book.submit(10, CAROL, BUY, 101, 19)
    assert result.filled_size == 19 and book.best_ask() is None


# ---------------------------------------------------------------- cancel / cancel_all


def test_cancel_returns_order_and_unknown_is_none(book):
    ladder(book)
    cancelled = book.cancel(1)
    assert cancelled.order_id == 1 and cancelled.size == 5
    assert book.best_bid() == 98 and book.cancel(1) is None and book.cancel(999) is None
    book.check_integrity()


def test_cancel_all_removes_only_that_account(book):
    ladder(book)
    book.submit(5, BOB, BUY, 97, 1)
    removed = book.cancel_all(BOB)
    assert ids(removed) == [3, 4, 5]
    assert book.best_ask() is None and ids(book.orders_of(ALICE)) == [1, 2]
    assert book.cancel_all(BOB) == [] and book.cancel_all(12345) == []
    book.check_integrity()


def test_cancel_allowed_while_halted(book):
    ladder(book)
    book.halt()
    assert book.cancel(1).order_id == 1
    assert ids(book.cancel_all(BOB)) == [3, 4]
    assert book.halted


# ---------------------------------------------------------------- amend


def queue_at(book: OrderBook, side: int, price: int) -> list[int]:
    return [o.order_id for o in book.resting_orders(side) if o.price == price]


def test_amend_size_down_keeps_priority(book):
    book.submit(1, ALICE, BUY, 100, 5)
    book.submit(2, BOB, BUY, 100, 5)
    result = book.amend(1, new_size=2)
    assert result == SubmitResult(1, None, [], 2)
    assert queue_at(book, BUY, 100) == [1, 2] and book.depth(1)[0] == [(100, 7)]
    book.check_integrity()


def test_amend_size_up_loses_priority(book):
    book.submit(1, ALICE, BUY, 100, 5)
    book.submit(2, BOB, BUY, 100, 5)
    assert book.amend(1, new_size=6).resting_size == 6
    assert queue_at(book, BUY, 100) == [2, 1] and book.depth(1)[0] == [(100, 11)]


def test_amend_price_change_loses_priority_even_back_and_forth(book):
    book.submit(1, ALICE, BUY, 100, 5)
    book.submit(2, BOB, BUY, 100, 5)
    book.amend(1, new_price=99)
    book.amend(1, new_price=100)
    assert queue_at(book, BUY, 100) == [2, 1]


def test_amend_same_values_is_a_no_op(book):
    book.submit(1, ALICE, BUY, 100, 5)
    book.submit(2, BOB, BUY, 100, 5)
    assert book.amend(1, new_price=100, new_size=5).accepted
    assert book.amend(1).accepted
    assert queue_at(book, BUY, 100) == [1, 2]


def test_amend_price_that_crosses_trades_as_incoming_limit(book):
    ladder(book)
    result = book.amend(1, new_price=101, new_size=7)
    assert [(f.maker_order_id, f.taker_order_id, f.price, f.size) for f in result.fills] == [
        (3, 1, 101, 5)
    ]
    assert result.resting_size == 2 and book.best_bid() == 101 and book.order(1).size == 2
    book.check_integrity()


def test_amend_crossing_fully_filled_leaves_book(book):
    ladder(book)
    result = book.amend(1, new_price=101, new_size=5)
    assert result.filled_size == 5 and 1 not in book


def test_amend_crossing_applies_stp(book):
    ladder(book)
    book.submit(5, ALICE, SELL, 101, 1)  # behind BOB's 101
    result = book.amend(1, new_price=101, new_size=9, stp=STPMode.CANCEL_NEWEST)
    assert result.filled_size == 5 and result.cancelled_size == 4 and 1 not in book


def test_post_only_amend_that_would_cross_is_rejected(book):
    ladder(book)
    book.submit(10, CAROL, BUY, 100, 3, POST_ONLY)
    before = snapshot(book)
    assert book.amend(10, new_price=101).reject is RejectReason.POST_ONLY_WOULD_CROSS
    assert snapshot(book) == before


@pytest.mark.parametrize(
    "kwargs,reason",
    [
        (dict(order_id=999), RejectReason.UNKNOWN_ORDER),
        (dict(new_price=0), RejectReason.BAD_TICK),
        (dict(new_price=97), RejectReason.BAD_TICK),
        (dict(new_size=0), RejectReason.NON_POSITIVE_SIZE),
        (dict(new_size=12), RejectReason.BAD_LOT),
    ],
)
def test_amend_rejects_change_nothing(kwargs, reason):
    book = OrderBook(0, tick=2, lot=5)
    book.submit(1, ALICE, BUY, 98, 10)
    book.submit(2, BOB, SELL, 104, 10)
    before = snapshot(book)
    result = book.amend(**(dict(order_id=1) | kwargs))
    assert result.reject is reason
    assert snapshot(book) == before


def test_amend_refused_while_halted(book):
    ladder(book)
    book.halt()
    before = snapshot(book)
    assert book.amend(1, new_size=1).reject is RejectReason.HALTED
    assert snapshot(book) == before


def test_reduce_only_amend_rechecked_on_size_up_not_on_size_down():
    positions = {ALICE: 10}
    book = positions_book(positions)
    book.submit(1, ALICE, SELL, 105, 6, reduce_only=True)
    book.submit(2, ALICE, SELL, 106, 4, reduce_only=True)
    before = snapshot(book)
    assert book.amend(1, new_size=7).reject is RejectReason.REDUCE_ONLY_WOULD_INCREASE
    assert snapshot(book) == before
    assert book.amend(1, new_price=104).accepted  # same size, other orders 4: 6 + 4 <= 10
    positions[ALICE] = 0  # position closed elsewhere: shrinking is still allowed
    assert book.amend(1, new_size=1).accepted
    assert book.amend(2, new_price=107).reject is RejectReason.REDUCE_ONLY_WOULD_INCREASE
    book.check_integrity()


# ---------------------------------------------------------------- queries


def test_empty_book_queries(book):
    assert book.best_bid() is None and book.best_ask() is None and book.mid() is None
    assert book.depth(5) == ([], [])
    assert book.top_of_book() == (None, 0, None, 0)
    assert book.sweep_cost(BUY, 10) == (0, 0, None)
    assert len(book) == 0 and book.resting_size() == 0 and book.orders_of(ALICE) == []


def test_orders_through_a_price_are_the_bids_above_and_asks_below_it(book):
    ladder(book)  # bids 99 (5), 98 (5); asks 101 (5), 102 (5)
    book.submit(5, CAROL, BUY, 99, 2)
    assert book.orders_through(100.0) == []
    assert sorted(o.order_id for o in book.orders_through(98.5)) == [1, 5]  # the bids at 99
    assert sorted(o.order_id for o in book.orders_through(98.0)) == [1, 5]  # 98 itself is not through
    assert sorted(o.order_id for o in book.orders_through(101.5)) == [3]  # the ask at 101
    assert sorted(o.order_id for o in book.orders_through(97.0)) == [1, 2, 5]


def test_depth_top_of_book_mid_and_totals(book):
    ladder(book)
    book.submit(5, CAROL, BUY, 99, 2)
    assert book.depth(1) == ([(99, 7)], [(101, 5)])
    assert book.depth(10) == ([(99, 7), (98, 5)], [(101, 5), (102, 5)])
    assert book.top_of_book() == (99, 7, 101, 5)
    assert book.mid() == 100.0
    book.submit(6, CAROL, BUY, 100, 1)
    assert book.mid() == 100.5
    assert book.resting_size(BUY) == 13 and book.resting_size(SELL) == 10
    assert book.resting_size() == 23 and len(book) == 6
    assert book.level_count(BUY) == 3 and book.level_count(SELL) == 2


def test_sweep_cost_walks_opposite_side_without_changing_it(book):
    ladder(book)
    before = snapshot(book)
    assert book.sweep_cost(BUY, 7) == (7, 5 * 101 + 2 * 102, (5 * 101 + 2 * 102) / 7)
    assert book.sweep_cost(BUY, 100) == (10, 5 * 101 + 5 * 102, 101.5)
    assert book.sweep_cost(SELL, 6) == (6, 5 * 99 + 98, (5 * 99 + 98) / 6)
    assert book.sweep_cost(BUY, 100, limit_price=101) == (5, 505, 101.0)
    assert book.sweep_cost(SELL, 100, limit_price=99) == (5, 495, 99.0)
    assert book.sweep_cost(SELL, 100, limit_price=100) == (0, 0, None)
    assert snapshot(book) == before


def test_orders_of_in_entry_order(book):
    ladder(book)
    book.amend(1, new_size=6)  # re-queued: re-enters last
    assert ids(book.orders_of(ALICE)) == [2, 1]
    assert ids(book.orders_of(BOB)) == [3, 4]


def test_best_prices_follow_level_removal(book):
    ladder(book)
    book.submit(10, CAROL, SELL, 98, 10, IOC)
    assert book.best_bid() is None
    book.cancel(3)
    assert book.best_ask() == 102
    book.cancel(4)
    assert book.best_ask() is None
    book.check_integrity()


def test_halt_and_resume(book):
    book.halt()
    assert book.halted
    assert book.submit(1, ALICE, BUY, 100, 1).reject is RejectReason.HALTED
    assert len(book) == 0
    book.resume()
    assert not book.halted and book.submit(1, ALICE, BUY, 100, 1).accepted


def test_constructor_rejects_bad_increments():
    with pytest.raises(ValueError):
        OrderBook(0, tick=0)
    with pytest.raises(ValueError):
        OrderBook(0, lot=-1)


# ---------------------------------------------------------------- level dict rebuilds


def test_deep_level_keeps_priority_across_dict_rebuilds(book):
    for order_id in range(1, 301):
        book.submit(order_id, ALICE if order_id % 2 else BOB, SELL, 100, 1)
    for order_id in range(1, 201, 3):  # cancels scattered through the front of the queue
        book.cancel(order_id)
    expected = [i for i in range(1, 301) if not (i % 3 == 1 and i < 201)]  # arrival order, less the cancels
    taken = []
    for taker_id in range(1000, 1000 + len(expected)):
        result = book.submit(taker_id, CAROL, BUY, 100, 1, IOC)
        taken += [f.maker_order_id for f in result.fills]
        if taker_id % 50 == 0:
            book.check_integrity()
    assert taken == expected and book.best_ask() is None


def test_rebuilding_level_dicts_after_every_removal_changes_nothing(monkeypatch):
    import sim.market.book

    monkeypatch.setattr(sim.market.book, "_COMPACT_FLOOR", 1)
    book = OrderBook(0)
    for order_id in range(1, 41):
        book.submit(order_id, order_id % 3, SELL, 100 + order_id % 2, 2)
    book.cancel(5)
    book.amend(7, new_size=1)
    book.amend(9, new_size=3)  # re-queued at the back of 101
    result = book.submit(100, 9, BUY, 101, 78, IOC)  # everything: 40 lots at 100, 38 at 101
    at_101 = [1, 3, 7] + list(range(11, 40, 2)) + [9]  # 5 cancelled, 7 shrunk in place, 9 re-queued
    assert [f.maker_order_id for f in result.fills] == list(range(2, 41, 2)) + at_101
    assert sum(f.size for f in result.fills) == 78 and book.best_ask() is None
    book.check_integrity()
