"""Stateful property test: OrderBook against a deliberately naive reference book.

The reference keeps every resting order in one Python list, finds the next order to match by a
full scan, and decides FOK by *trying* the match on a copy and checking that everything traded --
an independent definition of the rule OrderBook implements by counting. After every step the two
books must agree on results (fills, rejects, resting and cancelled sizes, STP effects) and on the
resting orders in priority order; the book's own indexes are re-derived (``check_integrity``), it
is never crossed at rest, and lots are conserved over the whole run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

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

ACCOUNTS = st.integers(0, 3)


@dataclass
class RefOrder:
    order_id: int
    account: int
    side: int
    price: int
    size: int
    tif: TimeInForce
    reduce_only: bool
    flags: FillFlag
    seq: int  # arrival (or re-queue) number: time priority


class ReferenceBook:
    """O(n) everything; the specification written as plainly as possible."""

    def __init__(self, instrument, tick, lot, stp, position_of):
        self.instrument, self.tick, self.lot, self.stp = instrument, tick, lot, stp
        self.position_of = position_of
        self.resting: list[RefOrder] = []
        self.halted = False
        self.seq = 0

    def find(self, order_id):
        for order in self.resting:
            if order.order_id == order_id:
                return order
        return None

    def queue(self, side):
        """Resting orders of ``side`` in priority order."""
        return sorted(
            (o for o in self.resting if o.side == side), key=lambda o: (-side * o.price, o.seq)
        )

    def best_price(self, side):
        q = self.queue(side)
        return q[0].price if q else None

    def crosses(self, side, price):
        best = self.best_price(-side)
        return best is not None and (best <= price if side == BUY else best >= price)

    def rest(self, order):
        self.seq += 1
        order.seq = self.seq
        self.resting.append(order)

    def reduce_only_ok(self, account, side, size, exclude_id=None):
        position = self.position_of(account)
        if position == 0 or (position > 0) == (side > 0):
            return False
        others = sum(
            o.size
            for o in self.resting
            if o.account == account and o.side == side and o.reduce_only
            and o.order_id != exclude_id
        )
        return size + others <= abs(position)

    def match(self, taker_id, account, side, price, size, flags, mode, result):
        remaining = size
        stp_reduced = []
        while remaining > 0:
            makers = [
                o for o in self.queue(-side)
                if (o.price <= price if side == BUY else o.price >= price)
            ]
            if not makers:
                break
            maker = makers[0]
            if maker.account == account:
                if mode == STPMode.CANCEL_NEWEST:
                    result.cancelled_size += remaining
                    remaining = 0
                    break
                if mode == STPMode.CANCEL_OLDEST:
                    cut = maker.size
                else:
                    cut = min(maker.size, remaining)
                    remaining -= cut
                    result.cancelled_size += cut
                maker.size -= cut
                stp_reduced.append((maker.order_id, cut))
                if maker.size == 0:
                    self.resting.remove(maker)
                    result.stp_cancelled.append(maker.order_id)
                continue
            traded = min(maker.size, remaining)
            result.fills.append(
                Fill(self.instrument, maker.price, traded, side, maker.order_id, taker_id,
                     maker.account, account, flags)
            )
            maker.size -= traded
            remaining -= traded
            if maker.size == 0:
                self.resting.remove(maker)
        if stp_reduced:
            result.stp_reduced = tuple(stp_reduced)
        return remaining

    def bad_price_or_size(self, price, size):
        if price <= 0 or price % self.tick:
            return RejectReason.BAD_TICK
        if size <= 0:
            return RejectReason.NON_POSITIVE_SIZE
        if size % self.lot:
            return RejectReason.BAD_LOT
        return None

    def submit(self, order_id, account, side, price, size, tif, reduce_only, flags, stp):
        if self.halted:
            return SubmitResult(order_id, RejectReason.HALTED)
        if self.find(order_id) is not None:
            return SubmitResult(order_id, RejectReason.DUPLICATE_ORDER_ID)
        reason = self.bad_price_or_size(price, size)
        if reason is not None:
            return SubmitResult(order_id, reason)
        if reduce_only and not self.reduce_only_ok(account, side, size):
            return SubmitResult(order_id, RejectReason.REDUCE_ONLY_WOULD_INCREASE)
        if tif == TimeInForce.POST_ONLY and self.crosses(side, price):
            return SubmitResult(order_id, RejectReason.POST_ONLY_WOULD_CROSS)
        mode = self.stp if stp is None else stp
        if tif == TimeInForce.FOK:
            trial = copy.deepcopy(self)
            trial_result = SubmitResult(order_id)
            trial.match(order_id, account, side, price, size, flags, mode, trial_result)
            if trial_result.filled_size < size:
                return SubmitResult(order_id, RejectReason.FOK_CANNOT_FILL)
        result = SubmitResult(order_id)
        remaining = self.match(order_id, account, side, price, size, flags, mode, result)
        if remaining:
            if tif in (TimeInForce.GTC, TimeInForce.POST_ONLY):
                self.rest(
                    RefOrder(order_id, account, side, price, remaining, tif, reduce_only, flags, 0)
                )
                result.resting_size = remaining
            else:
                result.cancelled_size += remaining
        return result

    def cancel(self, order_id):
        order = self.find(order_id)
        if order is not None:
            self.resting.remove(order)
        return order

    def cancel_all(self, account):
        mine = sorted((o for o in self.resting if o.account == account), key=lambda o: o.seq)
        for order in mine:
            self.resting.remove(order)
        return mine

    def amend(self, order_id, new_price, new_size, stp):
        if self.halted:
            return SubmitResult(order_id, RejectReason.HALTED)
        order = self.find(order_id)
        if order is None:
            return SubmitResult(order_id, RejectReason.UNKNOWN_ORDER)
        price = order.price if new_price is None else new_price
        size = order.size if new_size is None else new_size
        reason = self.bad_price_or_size(price, size)
        if reason is not None:
            return SubmitResult(order_id, reason)
        if price == order.price and size <= order.size:
            order.size = size
            return SubmitResult(order_id, None, [], size)
        if order.reduce_only and not self.reduce_only_ok(order.account, order.side, size, order_id):
            return SubmitResult(order_id, RejectReason.REDUCE_ONLY_WOULD_INCREASE)
        crosses = self.crosses(order.side, price)
        if crosses and order.tif == TimeInForce.POST_ONLY:
            return SubmitResult(order_id, RejectReason.POST_ONLY_WOULD_CROSS)
        self.resting.remove(order)
        result = SubmitResult(order_id)
        mode = self.stp if stp is None else stp
        remaining = self.match(
            order_id, order.account, order.side, price, size, order.flags, mode, result
        )
        if remaining:
            order.price, order.size = price, remaining
            self.rest(order)
            result.resting_size = remaining
        return result

    def depth(self, n):
        def levels(side):
            totals: dict[int, int] = {}
            for o in self.queue(side):
                totals[o.price] = totals.get(o.price, 0) + o.size
            return list(totals.items())[:n]

        return levels(BUY), levels(SELL)

    def sweep_cost(self, side, size):
        filled = cost = 0
        for o in self.queue(-side):
            take = min(o.size, size - filled)
            filled += take
            cost += take * o.price
        return filled, cost, (cost / filled if filled else None)


def as_rows(orders):
    return [
        (o.order_id, o.account, o.side, o.price, o.size, o.tif, o.reduce_only, o.flags)
        for o in orders
    ]


class BookMachine(RuleBasedStateMachine):
    @initialize(
        stp=st.sampled_from(STPMode),
        tick=st.sampled_from([1, 2]),
        lot=st.sampled_from([1, 5]),
        opening=st.lists(
            st.tuples(
                ACCOUNTS, st.sampled_from([BUY, SELL]), st.integers(48, 52), st.integers(1, 6)
            ),
            max_size=12,
        ),
    )
    def setup(self, stp, tick, lot, opening):
        self.tick, self.lot = tick, lot
        self.positions: dict[int, int] = {}
        position_of = lambda account: self.positions.get(account, 0)  # noqa: E731
        self.book = OrderBook(3, tick=tick, lot=lot, stp=stp, position_of=position_of)
        self.ref = ReferenceBook(3, tick, lot, stp, position_of)
        self.next_id = 1
        # Lot ledger: what entered the book = both sides of every fill + resting + every way out.
        self.lots_in = 0
        self.lots_traded_twice = 0
        self.lots_cancelled = 0
        # Start from a populated book (crossing ones trade), so that queues behind the touch,
        # STP against resting orders and positions for reduce-only exist from the first step.
        for account, side, price_steps, lots in opening:
            order_id = self.next_id
            self.next_id += 1
            args = (order_id, account, side, price_steps * tick, lots * lot)
            before = self.book_rows()
            self.apply(
                self.book.submit(*args),
                self.ref.submit(*args, TimeInForce.GTC, False, FillFlag.NONE, None),
                lots * lot,
                before,
            )

    # ---------------------------------------------------------------- helpers

    def book_rows(self):
        return [as_rows(self.book.resting_orders(side)) for side in (BUY, SELL)]

    def apply(self, result: SubmitResult, ref_result: SubmitResult, size_in: int, before) -> None:
        """Compare a submit/amend result with the reference's and book its lots and positions;
        ``before`` is the book's resting state before the call (a reject must leave it as is)."""
        assert result == ref_result
        if not result.accepted:
            assert self.book_rows() == before
            return
        self.lots_in += size_in
        filled = result.filled_size
        self.lots_traded_twice += 2 * filled
        self.lots_cancelled += result.cancelled_size + sum(lots for _, lots in result.stp_reduced)
        for fill in result.fills:
            self.positions[fill.taker_account] = (
                self.positions.get(fill.taker_account, 0) + fill.aggressor_side * fill.size
            )
            self.positions[fill.maker_account] = (
                self.positions.get(fill.maker_account, 0) - fill.aggressor_side * fill.size
            )

    def pick(self, index: int, among: list[int]) -> int:
        return among[index % len(among)] if among else 10**9

    def live_ids(self) -> list[int]:
        return [o.order_id for o in self.ref.resting]

    # ---------------------------------------------------------------- rules

    @rule(
        account=ACCOUNTS,
        side=st.sampled_from([BUY, SELL]),
        price_steps=st.integers(48, 52),
        raw_price=st.one_of(st.none(), st.none(), st.none(), st.integers(-2, 120)),
        lots=st.integers(1, 6),
        raw_size=st.one_of(st.none(), st.none(), st.none(), st.integers(-2, 30)),
        tif=st.sampled_from(TimeInForce),
        reduce_only=st.sampled_from([False, False, False, True]),
        flags=st.sampled_from([FillFlag.NONE, FillFlag.LIQUIDATION]),
        stp=st.one_of(st.none(), st.sampled_from(STPMode)),
        reuse=st.one_of(st.none(), st.none(), st.none(), st.none(), st.integers(0, 50)),
    )
    def submit(self, account, side, price_steps, raw_price, lots, raw_size, tif, reduce_only,
               flags, stp, reuse):
        price = price_steps * self.tick if raw_price is None else raw_price
        size = lots * self.lot if raw_size is None else raw_size
        if reuse is not None and self.live_ids():
            order_id = self.pick(reuse, self.live_ids())
        else:
            order_id = self.next_id
            self.next_id += 1
        args = (order_id, account, side, price, size, tif, reduce_only, flags, stp)
        before = self.book_rows()
        result = self.book.submit(*args[:-1], stp=stp)
        self.apply(result, self.ref.submit(*args), size, before)

    @rule(
        account=ACCOUNTS,
        side=st.sampled_from([BUY, SELL]),
        price_steps=st.integers(48, 52),
        lots=st.integers(1, 6),
        tif=st.sampled_from(
            [TimeInForce.GTC] * 3 + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.MARKET,
                                     TimeInForce.POST_ONLY]
        ),
        reduce_only=st.booleans(),
        stp=st.one_of(st.none(), st.sampled_from(STPMode)),
    )
    def submit_well_formed(self, account, side, price_steps, lots, tif, reduce_only, stp):
        """A valid order with a fresh id; reduce-only ones aimed against the account's actual
        position so that they are often accepted (and then rest, fill and get amended)."""
        position = self.positions.get(account, 0)
        if reduce_only and position:
            side = -1 if position > 0 else 1
            lots = max(1, min(lots, abs(position) // self.lot))
        order_id = self.next_id
        self.next_id += 1
        price, size = price_steps * self.tick, lots * self.lot
        args = (order_id, account, side, price, size, tif, reduce_only, FillFlag.NONE)
        before = self.book_rows()
        self.apply(self.book.submit(*args, stp=stp), self.ref.submit(*args, stp), size, before)

    @rule(index=st.integers(0, 10**6), account=ACCOUNTS, everything=st.booleans())
    def cancel(self, index, account, everything):
        if everything:
            removed = self.book.cancel_all(account)
            expected = self.ref.cancel_all(account)
            assert [(o.order_id, o.size) for o in removed] == [
                (o.order_id, o.size) for o in expected
            ]
            self.lots_cancelled += sum(o.size for o in removed)
            return
        order_id = self.pick(index, list(range(1, self.next_id)))  # live, finished or unknown
        cancelled = self.book.cancel(order_id)
        expected = self.ref.cancel(order_id)
        if expected is None:
            assert cancelled is None
        else:
            assert (cancelled.order_id, cancelled.size) == (expected.order_id, expected.size)
            self.lots_cancelled += cancelled.size

    @rule(
        index=st.integers(0, 10**6),
        price_steps=st.one_of(st.none(), st.integers(48, 52)),
        raw_price=st.one_of(st.none(), st.none(), st.none(), st.integers(-2, 120)),
        lots=st.one_of(st.none(), st.integers(1, 6)),
        raw_size=st.one_of(st.none(), st.none(), st.none(), st.integers(-2, 30)),
        stp=st.one_of(st.none(), st.sampled_from(STPMode)),
    )
    def amend(self, index, price_steps, raw_price, lots, raw_size, stp):
        live = self.live_ids()
        order_id = self.pick(index, live) if index % 10 else 10**9  # sometimes unknown
        new_price = raw_price if raw_price is not None else (
            None if price_steps is None else price_steps * self.tick
        )
        new_size = raw_size if raw_size is not None else (None if lots is None else lots * self.lot)
        before = self.ref.find(order_id)
        old_size = before.size if before is not None else 0
        before_rows = self.book_rows()
        result = self.book.amend(order_id, new_price, new_size, stp=stp)
        expected = self.ref.amend(order_id, new_price, new_size, stp)
        size_in = (old_size if new_size is None else new_size) - old_size
        # The amended order's old size left and its new size re-entered: net inflow size_in.
        self.apply(result, expected, size_in, before_rows)

    @rule(draw=st.integers(0, 9))
    def halt_or_resume(self, draw):
        # Halts are rare and short, so most steps exercise a trading book.
        if self.book.halted and draw < 6:
            self.book.resume()
            self.ref.halted = False
        elif not self.book.halted and draw == 0:
            self.book.halt()
            self.ref.halted = True

    # ---------------------------------------------------------------- invariants

    @invariant()
    def same_resting_orders(self):
        for side in (BUY, SELL):
            assert as_rows(self.book.resting_orders(side)) == as_rows(self.ref.queue(side))
        assert self.book.depth(4) == self.ref.depth(4)
        assert self.book.best_bid() == self.ref.best_price(BUY)
        assert self.book.best_ask() == self.ref.best_price(SELL)
        for side in (BUY, SELL):
            for size in (1, 7, 40):
                assert self.book.sweep_cost(side, size) == self.ref.sweep_cost(side, size)
        for account in range(4):
            assert [o.order_id for o in self.book.orders_of(account)] == [
                o.order_id for o in sorted(self.ref.resting, key=lambda o: o.seq)
                if o.account == account
            ]

    @invariant()
    def indexes_consistent_and_not_crossed(self):
        self.book.check_integrity()  # level totals, indexes, reduce-only totals, never crossed
        bid, ask = self.book.best_bid(), self.book.best_ask()
        assert bid is None or ask is None or bid < ask

    @invariant()
    def lots_conserved(self):
        resting = self.book.resting_size()
        assert self.lots_in == self.lots_traded_twice + resting + self.lots_cancelled


BookMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None, derandomize=True
)
TestOrderBookAgainstReference = BookMachine.TestCase
