"""The resting side of an order book: price levels in priority order, the indexes that serve
cancels, cancel-all and reduce-only checks, and everything that can be read of them.

``BookLevels`` holds the state and its bookkeeping (resting, removing and shrinking an order keep
every index and running total exact); ``sim.market.book.OrderBook`` adds the rules that change it
(matching, self-trade prevention, amends). See ``sim.market.book`` for the structure and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from sortedcontainers import SortedDict

from sim.core.orders import BUY, SELL, Order


@dataclass(slots=True)
class PriceLevel:
    """The resting orders at one price, oldest first, and their total size (kept, never summed).

    ``deletions`` counts removals since ``orders`` was last rebuilt. CPython leaves a dead slot
    for each removed key and iteration -- which every match starts from the front -- steps over
    them, while only insertions ever compact the table. A level drained from the front and
    rarely added to would make each match scan every order ever removed (quadratic: 50k
    one-lot takes from one 50k-order level cost ~17 us each instead of ~2). So a match about to
    scan a level first rebuilds its dict if the removals since the last rebuild are at least
    ``sim.market.book._COMPACT_FLOOR`` and at least 4 * sqrt(live orders): skipping a dead slot costs ~1 ns and
    copying a live entry ~20 ns, and that threshold balances the two. Cancels only count; a level
    that is never matched never pays for a rebuild.
    """

    price: int
    orders: dict[int, Order]
    total_size: int
    deletions: int = 0


class BookLevels:
    """Both sides of one book: ``SortedDict`` from priority key (price for asks, -price for bids)
    to ``PriceLevel``, the best key of each side cached, sizes kept as running totals."""

    __slots__ = (
        "_bids",
        "_asks",
        "_bid_keys",
        "_ask_keys",
        "_best_bid_key",
        "_best_ask_key",
        "_bid_size",
        "_ask_size",
        "_orders",
        "_account_orders",
        "_reduce_only_resting",
    )

    def __init__(self) -> None:
        self._bids: SortedDict = SortedDict()  # -price -> PriceLevel
        self._asks: SortedDict = SortedDict()  # price -> PriceLevel
        self._bid_keys = self._bids.keys()  # live views: [0] is the best key
        self._ask_keys = self._asks.keys()
        self._best_bid_key: int | None = None
        self._best_ask_key: int | None = None
        self._bid_size = 0
        self._ask_size = 0
        self._orders: dict[int, Order] = {}
        self._account_orders: dict[int, dict[int, Order]] = {}
        self._reduce_only_resting: dict[tuple[int, int], int] = {}

    # ------------------------------------------------------------------ queries

    def best_bid(self) -> int | None:
        key = self._best_bid_key
        return None if key is None else -key

    def best_ask(self) -> int | None:
        return self._best_ask_key

    def mid(self) -> float | None:
        """Midpoint in ticks (may be a half tick); None unless both sides have orders."""
        bid_key, ask = self._best_bid_key, self._best_ask_key
        if bid_key is None or ask is None:
            return None
        return (ask - bid_key) / 2

    def top_of_book(self) -> tuple[int | None, int, int | None, int]:
        """``(best_bid, bid_size, best_ask, ask_size)``; sizes are 0 on an empty side. O(1)."""
        bid_key, ask = self._best_bid_key, self._best_ask_key
        bid_size = 0 if bid_key is None else self._bids[bid_key].total_size
        ask_size = 0 if ask is None else self._asks[ask].total_size
        return (None if bid_key is None else -bid_key), bid_size, ask, ask_size

    def depth(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Top ``n`` levels of each side as ``(price, total size)``, best first."""
        bids = [(level.price, level.total_size) for level in islice(self._bids.values(), n)]
        asks = [(level.price, level.total_size) for level in islice(self._asks.values(), n)]
        return bids, asks

    def sweep_cost(
        self, side: int, size: int, limit_price: int | None = None
    ) -> tuple[int, int, float | None]:
        """What taking ``size`` lots on ``side`` would cost now, without touching the book.

        Walks the opposite side best first (up to ``limit_price`` if given) and returns
        ``(filled_size, cost, avg_price)`` where ``cost`` is the sum of price * lots in
        tick-lots and ``avg_price`` is ``cost / filled_size`` (None when nothing fills). Ignores
        STP: it prices liquidity, whoever owns it. O(levels walked).
        """
        if side == BUY:
            levels = self._asks
        elif side == SELL:
            levels = self._bids
        else:
            raise ValueError(f"side must be BUY (+1) or SELL (-1), got {side!r}")
        limit_key = None if limit_price is None else side * limit_price
        filled = 0
        cost = 0
        for key in levels.irange(maximum=limit_key):
            if filled >= size:
                break
            level = levels[key]
            take = min(level.total_size, size - filled)
            filled += take
            cost += take * level.price
        return filled, cost, (cost / filled if filled else None)

    def order(self, order_id: int) -> Order | None:
        """The live resting order with this id (the book's own object: do not mutate it)."""
        return self._orders.get(order_id)

    def orders_through(self, price: float) -> list[Order]:
        """Resting orders priced through ``price`` (ticks): bids above it and asks below it -- the
        orders that, filled at their own prices, would lose against it. O(orders returned)."""
        through: list[Order] = []
        best_bid, best_ask = self._best_bid_key, self._best_ask_key
        # the levels from the best one while still through: a walk of the keys costs less than
        # irange's set-up (a few levels at most, at every publication)
        if best_bid is not None and -best_bid > price:  # usually neither side is: O(1) then
            bids, below = self._bids, -price
            for key in self._bid_keys:
                if key >= below:
                    break
                through.extend(bids[key].orders.values())
        if best_ask is not None and best_ask < price:
            asks = self._asks
            for key in self._ask_keys:
                if key >= price:
                    break
                through.extend(asks[key].orders.values())
        return through

    def orders_of(self, account: int) -> list[Order]:
        """The account's resting orders, in the order they (re-)entered the book (an amend that
        loses priority re-enters)."""
        mine = self._account_orders.get(account)
        return list(mine.values()) if mine else []

    def resting_orders(self, side: int) -> list[Order]:
        """Every resting order on ``side`` in matching priority (best price, then oldest). O(n);
        for snapshots and tests."""
        levels = self._bids if side == BUY else self._asks
        return [order for level in levels.values() for order in level.orders.values()]

    def resting_size(self, side: int | None = None) -> int:
        """Total resting lots on ``side`` (BUY or SELL), or on both sides when None. O(1)."""
        if side is None:
            return self._bid_size + self._ask_size
        return self._bid_size if side == BUY else self._ask_size

    def level_count(self, side: int) -> int:
        return len(self._bids if side == BUY else self._asks)

    def __len__(self) -> int:
        """Number of resting orders."""
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def check_integrity(self) -> None:
        """Recompute every cached total and index from scratch and raise AssertionError on a
        mismatch. O(n); for tests and debugging, never the hot path."""
        seen: dict[int, Order] = {}
        reduce_only: dict[tuple[int, int], int] = {}
        for side, levels, best_key, side_total in (
            (BUY, self._bids, self._best_bid_key, self._bid_size),
            (SELL, self._asks, self._best_ask_key, self._ask_size),
        ):
            total = 0
            assert best_key == (levels.keys()[0] if levels else None), "stale best key"
            for key, level in levels.items():
                assert key == -side * level.price, f"level {level.price} filed under key {key}"
                assert level.orders, f"empty level {level.price} left in the book"
                level_sum = 0
                for order_id, order in level.orders.items():
                    assert order.order_id == order_id and order.side == side
                    assert order.price == level.price and order.size > 0
                    assert order_id not in seen, f"order {order_id} rests twice"
                    seen[order_id] = order
                    level_sum += order.size
                    if order.reduce_only:
                        ro_key = (order.account, side)
                        reduce_only[ro_key] = reduce_only.get(ro_key, 0) + order.size
                assert level_sum == level.total_size, f"level {level.price} total drifted"
                total += level_sum
            assert total == side_total, "side total drifted"
        assert seen == self._orders, "order index out of step with the levels"
        by_account = {a: d for a, d in self._account_orders.items() if d}
        regrouped: dict[int, dict[int, Order]] = {}
        for order_id, order in seen.items():
            regrouped.setdefault(order.account, {})[order_id] = order
        assert by_account == regrouped, "account index out of step with the levels"
        kept = {k: v for k, v in self._reduce_only_resting.items() if v}
        assert kept == reduce_only, "reduce-only totals drifted"
        if self._best_bid_key is not None and self._best_ask_key is not None:
            assert -self._best_bid_key < self._best_ask_key, "book crossed at rest"

    def _rest(self, order: Order) -> None:
        """Append ``order`` at the back of its price level (creating the level if needed)."""
        order_id = order.order_id
        size = order.size
        if order.side == BUY:
            key = -order.price
            level = self._bids.get(key)
            if level is None:
                level = PriceLevel(order.price, {order_id: order}, size)
                self._bids[key] = level
                best = self._best_bid_key
                if best is None or key < best:
                    self._best_bid_key = key
            else:
                level.orders[order_id] = order
                level.total_size += size
            self._bid_size += size
        else:
            key = order.price
            level = self._asks.get(key)
            if level is None:
                level = PriceLevel(key, {order_id: order}, size)
                self._asks[key] = level
                best = self._best_ask_key
                if best is None or key < best:
                    self._best_ask_key = key
            else:
                level.orders[order_id] = order
                level.total_size += size
            self._ask_size += size
        self._orders[order_id] = order
        mine = self._account_orders.get(order.account)
        if mine is None:
            self._account_orders[order.account] = {order_id: order}
        else:
            mine[order_id] = order
        if order.reduce_only:
            ro_key = (order.account, order.side)
            self._reduce_only_resting[ro_key] = self._reduce_only_resting.get(ro_key, 0) + size

    def _unrest(self, order: Order) -> None:
        """Take a resting order out of its level and every index (its fields are left as is)."""
        order_id = order.order_id
        size = order.size
        del self._orders[order_id]
        del self._account_orders[order.account][order_id]
        if order.reduce_only:
            self._reduce_only_resting[(order.account, order.side)] -= size
        if order.side == BUY:
            key = -order.price
            levels = self._bids
            self._bid_size -= size
        else:
            key = order.price
            levels = self._asks
            self._ask_size -= size
        level = levels[key]
        queue = level.orders
        del queue[order_id]
        if queue:
            level.total_size -= size
            level.deletions += 1
            return
        del levels[key]
        if key == self._best_bid_key and order.side == BUY:
            self._best_bid_key = self._bid_keys[0] if levels else None
        elif key == self._best_ask_key and order.side == SELL:
            self._best_ask_key = self._ask_keys[0] if levels else None

    def _shrink_resting(self, order: Order, lots: int) -> None:
        """Reduce a resting order in place (keeps its priority); ``lots`` < its size."""
        order.size -= lots
        if order.side == BUY:
            self._bids[-order.price].total_size -= lots
            self._bid_size -= lots
        else:
            self._asks[order.price].total_size -= lots
            self._ask_size -= lots
        if order.reduce_only:
            self._reduce_only_resting[(order.account, order.side)] -= lots
