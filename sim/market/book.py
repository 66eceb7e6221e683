"""A price-time priority limit order book for one instrument, in integer ticks and integer lots.

Structure (and why):

* Each side is a ``SortedDict`` from a *priority key* to a :class:`PriceLevel`. The key is the
  price for asks and the negated price for bids, so on both sides the best level is the smallest
  key and "this level is acceptable to an incoming order at limit ``p`` on side ``s``" is the
  single comparison ``key <= s * p``. One matching loop serves both sides without branching.
* A level keeps its orders in a plain ``dict`` (order_id -> Order): insertion order is time
  priority, removal of any order is O(1), and ``total_size`` is adjusted on every change so that
  no query ever sums a level.
* The best key of each side is cached, so the touch (and crossing checks) cost one attribute read;
  it is refreshed only when the best level empties or a better level appears.
* ``_orders`` (order_id -> Order) serves cancel/amend; ``_account_orders`` (account -> {order_id:
  Order}) serves cancel-all and ``orders_of``; ``_reduce_only_resting`` ((account, side) -> lots)
  is the resting reduce-only size that the reduce-only check needs.

Complexity: adding to an existing level, cancelling an order that leaves its level non-empty and
reading the touch are O(1); creating or emptying a level is O(log L) for L levels on that side;
a match is O(levels touched + orders touched).

Semantics (decided here, relied on by the venue and the tests):

* **Reject precedence** (first that applies): HALTED, DUPLICATE_ORDER_ID (an id that is resting
  now; ids of finished orders are not remembered), BAD_TICK (price <= 0 or not a multiple of
  ``tick``), NON_POSITIVE_SIZE, BAD_LOT, REDUCE_ONLY_WOULD_INCREASE, POST_ONLY_WOULD_CROSS,
  FOK_CANNOT_FILL. A reject changes nothing. A side other than +1/-1 is a programming error and
  raises ``ValueError``.
* **Reduce-only**: accepted only if the account's position is on the opposite side of the order
  (a flat account cannot place reduce-only orders) and ``size`` plus the account's *other resting
  reduce-only size on the same side* is at most ``|position|`` -- so even if every reduce-only
  order fills, the position can reach zero but never flip. The check uses the position at submit
  (or amend) time; when the position later shrinks or flips, ``trim_reduce_only`` cuts the
  account's resting reduce-only orders back (newest first) so they still cannot flip it -- the
  venue calls it after every trade of the account.
* **STP** applies only when the incoming order meets a resting order of the same account:
  CANCEL_NEWEST cancels the incoming remainder (fills already made stand); CANCEL_OLDEST removes
  the resting order and matching continues; DECREMENT_BOTH shrinks both by the overlap without a
  trade, removing whichever reaches zero. Every resting order STP shrinks or removes is reported in
  ``SubmitResult.stp_reduced`` as ``(order_id, lots removed)``; the removed ones also appear in
  ``stp_cancelled``. Lots the incoming order loses to STP count in ``cancelled_size``, so for every
  accepted submit ``size == filled_size + resting_size + cancelled_size``.
* **FOK** is accepted only if the whole size would *trade*: counting resting size of other
  accounts at acceptable prices, in priority order, up to the first own resting order under
  CANCEL_NEWEST or DECREMENT_BOTH (that order would cut the incoming order short), or skipping own
  orders under CANCEL_OLDEST (they would be removed; a rejected FOK removes nothing).
* **POST_ONLY** is rejected if its price reaches the opposite best, whoever owns that order.
* **MARKET** is IOC with ``price`` as the protection price: it never trades beyond it.
* **Amend**: size down at the same price keeps time priority and is never refused for reduce-only
  reasons (it only lowers exposure). A price change or a size increase loses priority: the order
  leaves the book and re-enters at the back as a new incoming order with the same id, tif, flags
  and reduce-only flag, re-checked for reduce-only; a GTC amend that crosses trades like an
  incoming limit order (STP included) and rests any remainder, a POST_ONLY amend that would cross
  is rejected and the order stays as it was.
"""

from __future__ import annotations

from collections.abc import Callable

from sim.market.book_levels import BookLevels, PriceLevel
from sim.core.orders import (
    BUY,
    SELL,
    Fill,
    FillFlag,
    Order,
    RejectReason,
    STPMode,
    SubmitResult,
    TimeInForce,
)

__all__ = ["OrderBook", "PriceLevel"]  # PriceLevel: sim.market.book_levels

# Plain-int aliases: comparisons in the matching loop then never touch enum machinery.
_GTC = int(TimeInForce.GTC)
_FOK = int(TimeInForce.FOK)
_POST_ONLY = int(TimeInForce.POST_ONLY)
_CANCEL_NEWEST = int(STPMode.CANCEL_NEWEST)
_CANCEL_OLDEST = int(STPMode.CANCEL_OLDEST)
_NO_FLAGS = FillFlag.NONE
# A level's order dict is rebuilt after this many removals at least (see PriceLevel).
_COMPACT_FLOOR = 64

_HALTED = RejectReason.HALTED
_DUPLICATE = RejectReason.DUPLICATE_ORDER_ID
_BAD_TICK = RejectReason.BAD_TICK
_BAD_LOT = RejectReason.BAD_LOT
_NON_POSITIVE = RejectReason.NON_POSITIVE_SIZE
_REDUCE_ONLY = RejectReason.REDUCE_ONLY_WOULD_INCREASE
_POST_ONLY_CROSS = RejectReason.POST_ONLY_WOULD_CROSS
_FOK_FAIL = RejectReason.FOK_CANNOT_FILL
_UNKNOWN = RejectReason.UNKNOWN_ORDER


class OrderBook(BookLevels):
    """Price-time priority book of one instrument; prices in ticks, sizes in lots.

    ``tick`` and ``lot`` are the smallest price and size increments (in ticks and lots).
    ``position_of(account)`` returns the account's signed position in lots, for reduce-only
    checks; None means every account is flat. ``stp`` is the default self-trade prevention mode,
    which each ``submit``/``amend`` may override.
    """

    __slots__ = ("instrument", "tick", "lot", "stp", "position_of", "_halted")

    def __init__(
        self,
        instrument: int,
        tick: int = 1,
        lot: int = 1,
        stp: STPMode = STPMode.CANCEL_NEWEST,
        position_of: Callable[[int], int] | None = None,
    ) -> None:
        if tick <= 0 or lot <= 0:
            raise ValueError(f"tick and lot must be positive, got tick={tick} lot={lot}")
        self.instrument = instrument
        self.tick = tick
        self.lot = lot
        self.stp = stp
        self.position_of = position_of
        self._halted = False
        BookLevels.__init__(self)

    # ------------------------------------------------------------------ halts

    @property
    def halted(self) -> bool:
        return self._halted

    @property
    def has_reduce_only(self) -> bool:
        """False while no reduce-only order has ever rested here: ``trim_reduce_only`` then changes
        nothing, and the venue skips it."""
        return bool(self._reduce_only_resting)

    def crosses(self, side: int, price: int) -> bool:
        """Whether an order on ``side`` at ``price`` (ticks) meets the best opposite price now
        (the keys are signed: asks by price, bids by minus price)."""
        best_opposite = self._best_ask_key if side == BUY else self._best_bid_key
        return best_opposite is not None and best_opposite <= side * price

    def halt(self) -> None:
        """Refuse submits and amends (HALTED) until ``resume``; cancels still work."""
        self._halted = True

    def resume(self) -> None:
        self._halted = False

    # ------------------------------------------------------------------ submit

    def submit(
        self,
        order_id: int,
        account: int,
        side: int,
        price: int,
        size: int,
        tif: TimeInForce = TimeInForce.GTC,
        reduce_only: bool = False,
        flags: FillFlag = _NO_FLAGS,
        stp: STPMode | None = None,
    ) -> SubmitResult:
        """Match an incoming order and rest what the time in force allows; see the module doc."""
        if self._halted:
            return SubmitResult(order_id, _HALTED)
        if order_id in self._orders:
            return SubmitResult(order_id, _DUPLICATE)
        if price <= 0 or price % self.tick:
            return SubmitResult(order_id, _BAD_TICK)
        if size <= 0:
            return SubmitResult(order_id, _NON_POSITIVE)
        if size % self.lot:
            return SubmitResult(order_id, _BAD_LOT)
        if side == BUY:
            best_opposite = self._best_ask_key
            crosses = best_opposite is not None and best_opposite <= price
        elif side == SELL:
            best_opposite = self._best_bid_key
            crosses = best_opposite is not None and best_opposite <= -price
        else:
            raise ValueError(f"side must be BUY (+1) or SELL (-1), got {side!r}")
        if reduce_only and not self._reduce_only_allows(account, side, size, 0):
            return SubmitResult(order_id, _REDUCE_ONLY)

        if not crosses:
            if tif == _GTC or tif == _POST_ONLY:
                self._rest(Order(order_id, account, side, price, size, tif, reduce_only, flags))
                return SubmitResult(order_id, None, [], size)
            if tif == _FOK:
                return SubmitResult(order_id, _FOK_FAIL)
            return SubmitResult(order_id, None, [], 0, size)  # IOC / MARKET with nothing to take

        if tif == _POST_ONLY:
            return SubmitResult(order_id, _POST_ONLY_CROSS)
        stp_mode = self.stp if stp is None else stp
        if tif == _FOK and not self._can_fill_entirely(account, side, price, size, stp_mode):
            return SubmitResult(order_id, _FOK_FAIL)

        result = SubmitResult(order_id)
        remaining = self._match(order_id, account, side, price, size, flags, stp_mode, result)
        if remaining:
            if tif == _GTC:
                self._rest(
                    Order(order_id, account, side, price, remaining, tif, reduce_only, flags)
                )
                result.resting_size = remaining
            else:
                result.cancelled_size += remaining
        return result

    # ------------------------------------------------------------------ cancel / amend

    def cancel(self, order_id: int) -> Order | None:
        """Remove a resting order; return it (with the size it had left), or None if not resting."""
        order = self._orders.get(order_id)
        if order is None:
            return None
        self._unrest(order)
        return order

    def cancel_all(self, account: int) -> list[Order]:
        """Remove every resting order of ``account``; return them in the order they (re-)entered
        the book."""
        mine = self._account_orders.get(account)
        if not mine:
            return []
        removed = list(mine.values())
        for order in removed:
            self._unrest(order)
        return removed

    def amend(
        self,
        order_id: int,
        new_price: int | None = None,
        new_size: int | None = None,
        stp: STPMode | None = None,
    ) -> SubmitResult:
        """Change a resting order's price and/or size; see the module doc for priority rules."""
        if self._halted:
            return SubmitResult(order_id, _HALTED)
        order = self._orders.get(order_id)
        if order is None:
            return SubmitResult(order_id, _UNKNOWN)
        price = order.price if new_price is None else new_price
        size = order.size if new_size is None else new_size
        if price <= 0 or price % self.tick:
            return SubmitResult(order_id, _BAD_TICK)
        if size <= 0:
            return SubmitResult(order_id, _NON_POSITIVE)
        if size % self.lot:
            return SubmitResult(order_id, _BAD_LOT)
        side = order.side

        if price == order.price and size <= order.size:
            shrink = order.size - size
            if shrink:
                self._shrink_resting(order, shrink)
            return SubmitResult(order_id, None, [], size)

        if order.reduce_only and not self._reduce_only_allows(
            order.account, side, size, order.size
        ):
            return SubmitResult(order_id, _REDUCE_ONLY)
        crosses = self.crosses(side, price)
        if crosses and order.tif == _POST_ONLY:
            return SubmitResult(order_id, _POST_ONLY_CROSS)

        self._unrest(order)
        order.price = price
        if not crosses:
            order.size = size
            self._rest(order)
            return SubmitResult(order_id, None, [], size)
        result = SubmitResult(order_id)
        stp_mode = self.stp if stp is None else stp
        remaining = self._match(
            order_id, order.account, side, price, size, order.flags, stp_mode, result
        )
        if remaining:
            order.size = remaining
            self._rest(order)
            result.resting_size = remaining
        else:
            order.size = 0
        return result

    def trim_reduce_only(self, account: int) -> list[tuple[Order, int, bool]]:
        """Cut ``account``'s resting reduce-only orders so that, on each side, they sum to at most
        the position they may close (zero on the side that would add to it).

        Newest orders go first and a partial cut is a size-down in place, so the oldest keep their
        queue priority -- as BitMEX and Binance resize reduce-only orders when the position
        shrinks. Returns ``(order, lots removed, cancelled)`` for each order touched.
        """
        ro = self._reduce_only_resting
        if not (ro.get((account, BUY)) or ro.get((account, SELL))):
            return []
        position = 0 if self.position_of is None else self.position_of(account)
        touched: list[tuple[Order, int, bool]] = []
        for side in (BUY, SELL):
            excess = ro.get((account, side), 0) - (abs(position) if position * side < 0 else 0)
            if excess <= 0:
                continue
            mine = [o for o in self._account_orders[account].values() if o.reduce_only and o.side == side]
            for order in reversed(mine):
                if excess >= order.size:
                    excess -= order.size
                    self._unrest(order)
                    touched.append((order, order.size, True))
                else:
                    self._shrink_resting(order, excess)
                    touched.append((order, excess, False))
                    excess = 0
                if not excess:
                    break
        return touched

    # ------------------------------------------------------------------ internals

    def _reduce_only_allows(self, account: int, side: int, size: int, own_resting: int) -> bool:
        """True if a reduce-only order of ``size`` cannot flip the position even if all the
        account's reduce-only orders on ``side`` fill; ``own_resting`` is this order's current
        resting size when it is being amended (it must not count against itself)."""
        position = 0 if self.position_of is None else self.position_of(account)
        if position * side >= 0:
            return False
        others = self._reduce_only_resting.get((account, side), 0) - own_resting
        return size + others <= abs(position)

    def _can_fill_entirely(
        self, account: int, side: int, price: int, size: int, stp_mode: int
    ) -> bool:
        """Whether an FOK of ``size`` would trade in full (see the module doc for STP)."""
        levels = self._asks if side == BUY else self._bids
        mine = self._account_orders.get(account)
        # Without own orders opposite, level totals answer it; otherwise walk the queues.
        own_opposite = mine is not None and any(o.side != side for o in mine.values())
        available = 0
        for key in levels.irange(maximum=side * price):
            level = levels[key]
            if not own_opposite:
                available += level.total_size
            else:
                for order in level.orders.values():
                    if order.account == account:
                        if stp_mode == _CANCEL_OLDEST:
                            continue
                        return available >= size
                    available += order.size
                    if available >= size:
                        return True
            if available >= size:
                return True
        return False

    def _match(
        self,
        taker_id: int,
        account: int,
        side: int,
        price: int,
        size: int,
        flags: FillFlag,
        stp_mode: int,
        result: SubmitResult,
    ) -> int:
        """Trade an incoming order against the opposite side, best level first, oldest order
        first, at the makers' prices. Appends fills and STP effects to ``result`` (and lots lost
        to STP to ``result.cancelled_size``) and returns the size left to rest or cancel."""
        if side == BUY:
            levels = self._asks
            level_keys = self._ask_keys
            best_key = self._best_ask_key
        else:
            levels = self._bids
            level_keys = self._bid_keys
            best_key = self._best_bid_key
        limit_key = side * price
        fills = result.fills
        orders_index = self._orders
        account_orders = self._account_orders
        instrument = self.instrument
        remaining = size
        taken_from_side = 0  # lots leaving the opposite side: traded or removed by STP
        stp_reduced = None

        while best_key is not None and best_key <= limit_key:
            level = levels[best_key]
            deletions = level.deletions
            if deletions >= _COMPACT_FLOOR and deletions * deletions >= 16 * len(level.orders):
                level.orders = dict(level.orders)  # drop dead slots before scanning (PriceLevel)
                level.deletions = 0
            queue = level.orders
            level_price = level.price
            level_out = 0
            finished = None  # makers that reached zero; removed after the scan (no dict
            #                  mutation while iterating). They always form a prefix of the scan.
            stopped = False
            for maker_id, maker in queue.items():
                maker_size = maker.size
                if maker.account == account:
                    if stp_mode == _CANCEL_NEWEST:
                        result.cancelled_size += remaining
                        remaining = 0
                        stopped = True
                        break
                    if stp_mode == _CANCEL_OLDEST:
                        cut = maker_size
                    else:  # DECREMENT_BOTH
                        cut = maker_size if maker_size < remaining else remaining
                        remaining -= cut
                        result.cancelled_size += cut
                    if stp_reduced is None:
                        stp_reduced = []
                    stp_reduced.append((maker_id, cut))
                    traded = 0
                else:
                    cut = traded = maker_size if maker_size < remaining else remaining
                    remaining -= traded
                    fills.append(
                        Fill(
                            instrument,
                            level_price,
                            traded,
                            side,
                            maker_id,
                            taker_id,
                            maker.account,
                            account,
                            flags,
                        )
                    )
                maker.size = maker_size - cut
                level_out += cut
                if maker.reduce_only:
                    self._reduce_only_resting[(maker.account, maker.side)] -= cut
                if cut == maker_size:
                    if finished is None:
                        finished = [maker]
                    else:
                        finished.append(maker)
                    if not traded:
                        result.stp_cancelled.append(maker_id)
                if not remaining:
                    break

            level.total_size -= level_out
            taken_from_side += level_out
            if finished is not None:
                for maker in finished:
                    maker_id = maker.order_id
                    del queue[maker_id]
                    del orders_index[maker_id]
                    del account_orders[maker.account][maker_id]
                if not queue:
                    del levels[best_key]
                    best_key = level_keys[0] if levels else None
                else:
                    level.deletions += len(finished)
            if stopped or not remaining:
                break

        if side == BUY:
            self._best_ask_key = best_key
            self._ask_size -= taken_from_side
        else:
            self._best_bid_key = best_key
            self._bid_size -= taken_from_side
        if stp_reduced is not None:
            result.stp_reduced = tuple(stp_reduced)
        return remaining
