"""The venue: routes orders to books with latency, charges fees, enforces bands and halts.

Agents talk to the venue through ``submit``/``cancel``/``cancel_all``/``amend``; each message
arrives after a latency draw and the reply returns after another. Each account has its own pair of
latency streams (``venue/latency-in/<account>``, ``venue/latency-out/<account>``), so adding an
agent never changes another agent's delays -- but a group acting as one agent shares one pair
among its members (``share_links``). The clearing house is
co-located: it uses ``execute`` (no latency) for liquidations and plugs in as the pre-trade
``risk_check`` and as the first trade listener, which settles fills into the ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sim.market.book import OrderBook
from sim.core.kernel import World
from sim.market.latency import Latency
from sim.core.phases import Subscribers
from sim.core.orders import BUY, Fill, FillFlag, RejectReason, STPMode, SubmitResult, TimeInForce
from sim.market.resting import RestingSize
from sim.market.venue_config import VenueConfig

RiskCheck = Callable[[int, int, int, int, int], bool]  # (account, instrument, side, price, lots) -> accept?
TradeListener = Callable[[Fill, int, int], None]  # (fill, maker fee, taker fee)
Reply = Callable[[SubmitResult], None]

# enum members read once: an enum class's attribute lookup costs ~0.4 us, once per order here
_MARKET = TimeInForce.MARKET
_UNKNOWN_INSTRUMENT, _HALTED = RejectReason.UNKNOWN_INSTRUMENT, RejectReason.HALTED
_OUTSIDE_BAND, _REFUSED = RejectReason.OUTSIDE_PRICE_BAND, RejectReason.RISK_CHECK_FAILED
_UNKNOWN_ORDER = RejectReason.UNKNOWN_ORDER

_STP = {"cancel_newest": STPMode.CANCEL_NEWEST, "cancel_oldest": STPMode.CANCEL_OLDEST,
        "decrement_both": STPMode.DECREMENT_BOTH}


def permissive(account: int, instrument: int, side: int, price: int, lots: int) -> bool:
    """The default pre-trade check: accept everything (until a clearing house plugs in)."""
    return True


def fee_minor(notional: int, pips: int) -> int:
    """Fee in minor units for ``pips`` hundredths of a basis point; charges round up, rebates toward zero."""
    if pips >= 0:
        return -((-notional * pips) // 1_000_000)
    return -((notional * -pips) // 1_000_000)


def _position_in(position_of: Callable[[int, int], int], instrument: int) -> Callable[[int], int]:
    """``position_of`` for one instrument: a book asks by account alone (its reduce-only check)."""
    return lambda account: position_of(account, instrument)


class Venue:
    """One order book per instrument behind latency, fees, bands, halts and a risk check."""

    def __init__(self, world: World, config: VenueConfig, tick_values: list[int],
                 position_of: Callable[[int, int], int] | None = None) -> None:
        self.world = world
        self.config = config
        self.tick_values = tick_values
        stp = _STP[config.self_trade_prevention]
        self.books = [
            OrderBook(i, stp=stp, position_of=(None if position_of is None else _position_in(position_of, i)))
            for i in range(len(tick_values))
        ]
        # account -> its latency to the venue, and to the agent: each opened at its first message
        # (an account that never gets a reply -- a noise trader's one market order -- never opens
        # the second, whose stream would cost more than the order's whole trip)
        self._links_in: dict[int, Latency] = {}
        self._links_out: dict[int, Latency] = {}
        self.maker_pips = int(round(config.maker_fee_bps * 100))
        self.taker_pips = int(round(config.taker_fee_bps * 100))
        self.reference: list[float | None] = [None] * len(tick_values)  # ticks, set by the oracle/mark
        # the last trade printed on each book (ticks; None before the first): off-book transfers
        # (backstop, auction, ADL) are not market prices and do not set it
        self.last_price: list[int | None] = [None] * len(tick_values)
        self.risk_check: RiskCheck = permissive
        self.position_of = position_of
        # who hears of fills and rejects, phase by phase (sim.core.phases)
        self.trade_listeners: Subscribers[TradeListener] = Subscribers()
        self.reject_listeners: Subscribers[Callable[[int, SubmitResult], None]] = Subscribers()
        self.resting = RestingSize(len(tick_values))
        self._next_id = 1
        self.counts = {"orders": 0, "cancels": 0, "amends": 0, "fills": 0, "rejects": 0}

    # ------------------------------------------------------------- agent-facing (with latency)
    def share_links(self, accounts: list[int], name: str) -> None:
        """One pair of links (to the venue, and back) for a whole group of accounts, drawing from
        the streams ``venue/latency-in|out/group/{name}``: delays are drawn independently per
        message either way, so a member's messages are delayed as by links of its own, in
        distribution. Two numpy Generators and two ``Latency`` objects per account (~4 kB) were
        most of an account's memory at a million accounts, and seeding them lazily between events
        ~6% of the crash leg's time at 100k. An account that already has a link keeps it."""
        links_in = Latency(self.config.to_venue_latency, self.world.stream(f"venue/latency-in/group/{name}"))
        links_out = Latency(self.config.to_agent_latency, self.world.stream(f"venue/latency-out/group/{name}"))
        for account in accounts:
            self._links_in.setdefault(account, links_in)
            self._links_out.setdefault(account, links_out)

    def _to_venue(self, account: int) -> Latency:
        link = self._links_in.get(account)
        if link is None:  # streams are keyed by name: when one is opened changes none of its draws
            link = self._links_in[account] = Latency(self.config.to_venue_latency,
                                                     self.world.stream(f"venue/latency-in/{account}"))
        return link

    def _to_agent(self, account: int) -> Latency:
        link = self._links_out.get(account)
        if link is None:
            link = self._links_out[account] = Latency(self.config.to_agent_latency,
                                                      self.world.stream(f"venue/latency-out/{account}"))
        return link

    def new_order_id(self) -> int:
        oid = self._next_id
        self._next_id += 1
        return oid

    def submit(self, account: int, instrument: int, side: int, price: int, lots: int,
               tif: TimeInForce = TimeInForce.GTC, reduce_only: bool = False, reply: Reply | None = None) -> int:
        """Send an order; it reaches the book after a latency draw. Returns the order id at once."""
        oid = self._next_id  # new_order_id and the link's look-up inlined: once per order
        self._next_id = oid + 1
        delay = (self._links_in.get(account) or self._to_venue(account)).next()
        if reply is None:  # nothing to send back: the message runs the order through the book itself
            self.world.call_later(delay, self.execute, oid, account, instrument, side, price, lots,
                                  tif, reduce_only)
        else:
            self.world.call_later(delay, self._arrive, oid, account, instrument, side, price, lots,
                                  tif, reduce_only, reply)
        return oid

    def _known(self, instrument: int | None) -> bool:
        return instrument is None or 0 <= instrument < len(self.books)

    def cancel(self, account: int, order_id: int, instrument: int) -> None:
        """``account`` cancels its order ``order_id`` (the message travels on the account's link)."""
        self.world.call_later((self._links_in.get(account) or self._to_venue(account)).next(), self._cancel_now,
                              account, order_id, instrument)

    def cancel_all(self, account: int, instrument: int | None = None) -> None:
        self.world.call_later(self._to_venue(account).next(), self.cancel_all_now, account, instrument)

    def amend(self, account: int, order_id: int, instrument: int, new_price: int | None = None,
              new_lots: int | None = None, reply: Reply | None = None) -> None:
        """``account`` amends its order ``order_id``; the reply returns on the account's link."""
        self.world.call_later((self._links_in.get(account) or self._to_venue(account)).next(), self._amend_now,
                              account, order_id, instrument, new_price, new_lots, reply)

    # ------------------------------------------------------------- arrival at the matching engine
    def _arrive(self, oid: int, account: int, instrument: int, side: int, price: int, lots: int,
                tif: TimeInForce, reduce_only: bool, reply: Reply) -> None:
        result = self.execute(oid, account, instrument, side, price, lots, tif, reduce_only)
        self.world.call_later((self._links_out.get(account) or self._to_agent(account)).next(), reply, result)

    def execute(self, oid: int, account: int, instrument: int, side: int, price: int, lots: int,
                tif: TimeInForce = TimeInForce.GTC, reduce_only: bool = False,
                flags: FillFlag = FillFlag.NONE, check_risk: bool = True) -> SubmitResult:
        """Run an order through the checks and the book now (no latency)."""
        self.counts["orders"] += 1
        if not 0 <= instrument < len(self.books):
            return self._reject(oid, account, _UNKNOWN_INSTRUMENT)
        book = self.books[instrument]
        if book.halted:
            return self._reject(oid, account, _HALTED)
        ref = self.reference[instrument]
        if tif == _MARKET:
            protected = self._protected_price(book, side, ref)
            if protected is None:
                return self._reject(oid, account, _OUTSIDE_BAND)
            price = protected
        elif not flags and self._outside_band(ref, price):
            return self._reject(oid, account, _OUTSIDE_BAND)
        # A reduce-only order is exempt: the book refuses one that could flip the position and
        # ``_trim_reduce_only`` cuts resting ones back as the position shrinks, so it never adds risk.
        if check_risk and not reduce_only and self._increases_risk(account, instrument, side, lots):
            if not self.risk_check(account, instrument, side, price, lots):
                return self._reject(oid, account, _REFUSED)
        result = book.submit(oid, account, side, price, lots, tif, reduce_only, flags)
        if result.reject is not None:
            return self._rejected(account, result)
        self.resting.apply(instrument, account, side, result)
        if result.fills:
            self._settle(result.fills)
        return result

    def _protected_price(self, book: OrderBook, side: int, ref: float | None) -> int | None:
        """A market order's limit: ``market_protection`` beyond the reference (the mark; with none,
        the best opposite price). None when there is neither."""
        if ref is None:
            ref = book.best_ask() if side == BUY else book.best_bid()
        if ref is None:
            return None
        band = self.config.market_protection
        return int(ref * (1.0 + band)) if side == BUY else max(1, -int(-ref * (1.0 - band) // 1))

    def can_fill(self, instrument: int, side: int, price: int, tif: TimeInForce = TimeInForce.IOC,
                 flags: FillFlag = FillFlag.NONE) -> bool:
        """Whether an order would meet the opposite side of the book now, by ``execute``'s own price
        rules (a market order's protection limit, the band for an unflagged limit), without sending
        it: a taker that reads the top of the book before it sends an IOC. False also when the book
        is halted or the order would be refused for its price."""
        book = self.books[instrument]
        if book.halted:
            return False
        ref = self.reference[instrument]
        if tif == _MARKET:
            limit = self._protected_price(book, side, ref)
            if limit is None:
                return False
            price = limit
        elif not flags and self._outside_band(ref, price):
            return False
        return book.crosses(side, price)

    def _outside_band(self, ref: float | None, price: int) -> bool:
        """True if a limit ``price`` lies outside the band around the reference ``ref`` (none: no
        band) -- the one band rule for new orders and amends."""
        if ref is None:
            return False
        band = self.config.price_band
        return price > ref * (1.0 + band) or price < ref * (1.0 - band)

    def _increases_risk(self, account: int, instrument: int, side: int, lots: int) -> bool:
        """True unless the order, together with the account's resting orders on the same side, can
        only reduce its position (so a stack of small reducing orders cannot flip it unchecked)."""
        if self.position_of is None:
            return True
        held = self.position_of(account, instrument)
        if held == 0 or (held > 0) == (side > 0):
            return True
        resting = self.resting
        if account < resting.bids.shape[0]:
            same_side = int(resting.bids[account, instrument] if side > 0 else resting.asks[account, instrument])
        else:
            same_side = 0
        return same_side + lots > abs(held)

    def _settle(self, fills: list[Fill]) -> None:
        tick_value = self.tick_values
        maker_pips, taker_pips = self.maker_pips, self.taker_pips
        self.counts["fills"] += len(fills)
        self.last_price[fills[-1].instrument] = fills[-1].price  # one order's fills share one book
        for fill in fills:
            notional = fill.price * fill.size * tick_value[fill.instrument]
            # no fee schedule (the RMSC04-like day): 0, what fee_minor gives, without two calls a fill
            maker_fee = fee_minor(notional, maker_pips) if maker_pips else 0
            taker_fee = fee_minor(notional, taker_pips) if taker_pips else 0
            for listener in self.trade_listeners.calls:
                listener(fill, maker_fee, taker_fee)
        if self.books[fills[-1].instrument].has_reduce_only:  # none ever rested: nothing to trim (2 calls a fill)
            for fill in fills:
                self._trim_reduce_only(fill.instrument, fill.maker_account)
                self._trim_reduce_only(fill.instrument, fill.taker_account)

    def off_book_trade(self, fill: Fill) -> None:
        """Publish a trade made outside the book (backstop transfer, auction, ADL): no fees."""
        self.counts["fills"] += 1
        for listener in self.trade_listeners.calls:
            listener(fill, 0, 0)
        self._trim_reduce_only(fill.instrument, fill.maker_account)
        self._trim_reduce_only(fill.instrument, fill.taker_account)

    def _trim_reduce_only(self, instrument: int, account: int) -> None:
        """After ``account``'s position on ``instrument`` changed, cut its resting reduce-only
        orders back so they can at most close it (never flip it)."""
        if not 0 <= instrument < len(self.books):
            return
        book = self.books[instrument]
        touched = book.trim_reduce_only(account)
        if not touched:
            return
        for order, lots, cancelled in touched:
            self.resting.add(account, instrument, order.side, -lots)
            self.counts["cancels"] += cancelled

    def _reject(self, oid: int, account: int, reason: RejectReason) -> SubmitResult:
        return self._rejected(account, SubmitResult(oid, reason))

    def _rejected(self, account: int, result: SubmitResult) -> SubmitResult:
        """Count a reject and tell the reject listeners; returns ``result``."""
        self.counts["rejects"] += 1
        for listener in self.reject_listeners.calls:
            listener(account, result)
        return result

    def _cancel_now(self, sender: int, order_id: int, instrument: int) -> Any:
        """Cancel ``sender``'s order now; an order of another account is left alone (as unknown)."""
        self.counts["cancels"] += 1
        if not self._known(instrument):
            return None
        book = self.books[instrument]
        mine = book.order(order_id)
        order = book.cancel(order_id) if mine is not None and mine.account == sender else None
        if order is not None:
            self.resting.add(order.account, instrument, order.side, -order.size)
        return order

    def cancel_all_now(self, account: int, instrument: int | None = None) -> int:
        """Cancel an account's resting orders now (all instruments, or one). Returns how many."""
        if not self._known(instrument):
            return 0
        books = self.books if instrument is None else [self.books[instrument]]
        cancelled = 0
        for book in books:
            removed = book.cancel_all(account)
            if removed:
                cancelled += len(removed)
                lots: dict[int, int] = {}  # side -> cancelled lots: one resting update per side
                for order in removed:
                    lots[order.side] = lots.get(order.side, 0) + order.size
                for side, size in lots.items():
                    self.resting.add(account, book.instrument, side, -size)
        self.counts["cancels"] += cancelled
        return cancelled

    def _amend_now(self, sender: int, order_id: int, instrument: int, new_price: int | None,
                   new_lots: int | None, reply: Reply | None) -> None:
        self.counts["amends"] += 1
        if not self._known(instrument):
            # counted, not told to the reject listeners: the message names no book, so no account
            result = SubmitResult(order_id, _UNKNOWN_INSTRUMENT)
            self.counts["rejects"] += 1
            if reply is not None:
                self.world.call_later(self._to_agent(sender).next(), reply, result)
            return
        book = self.books[instrument]
        order = book.order(order_id)
        if order is not None and order.account != sender:  # another account's order: unknown to the sender
            result = SubmitResult(order_id, _UNKNOWN_ORDER)
            self._rejected(sender, result)
        elif order is None:
            result = book.amend(order_id, new_price, new_lots)  # the book's UNKNOWN_ORDER reject
        else:
            account, side, before = order.account, order.side, order.size
            price = order.price if new_price is None else new_price
            if new_price is not None and not order.flags and self._outside_band(self.reference[instrument], new_price):
                # a modification is banded as a new order is: no walking a resting order through it
                result = SubmitResult(order_id, _OUTSIDE_BAND)
            elif (new_lots is not None and new_lots > before
                    and self._increases_risk(account, instrument, side, new_lots - before)
                    and not self.risk_check(account, instrument, side, price, new_lots - before)):
                result = SubmitResult(order_id, _REFUSED)
            else:
                result = book.amend(order_id, new_price, new_lots)
                if result.reject is None:
                    self.resting.apply(instrument, account, side, result, before)
            if result.reject is not None:
                self._rejected(account, result)
        if result.fills:
            self._settle(result.fills)
        if reply is not None:
            self.world.call_later((self._links_out.get(sender) or self._to_agent(sender)).next(), reply, result)

    @property
    def open_bids(self) -> "np.ndarray":
        return self.resting.bids

    @property
    def open_asks(self) -> "np.ndarray":
        return self.resting.asks

    def accounts_with_orders(self, instrument: int) -> list[int]:
        r = self.resting
        return [int(a) for a in np.flatnonzero(r.bids[:, instrument] + r.asks[:, instrument])]

    # ------------------------------------------------------------- market control
    def halt(self, instrument: int) -> None:
        self.books[instrument].halt()

    def resume(self, instrument: int) -> None:
        self.books[instrument].resume()
