"""The pre-trade margin check and the bounds that let most orders and fills skip a margin computation.

The venue asks ``check`` before accepting an order that increases risk: the order is accepted only
if equity, less what it and the account's resting orders would lose against the mark if filled at
their limit prices (their open loss), covers IM with the order in the worst case.

Per account two lower bounds are kept: of equity above the cancel level (``slack``) and of equity
above IM (``headroom``; -inf for an account that was not healthy). Each valuation sets them
(``valued``); fills lower them by what they cost (trading away from the mark, fees: ``spend``) and
every accepted order by the IM and open loss it adds (its IM bounds its rise of the cancel level
too: MM never exceeds IM). Marks move only on publications, which re-value everyone, and fills
never raise worst-case exposure, so an account with slack left cannot have crossed a threshold
(only the others are re-checked after fills), and an order that fits in the headroom is accepted
without a margin computation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from clearing.exposure import margined_states
from clearing.ledger import FIRST_TRADER

if TYPE_CHECKING:
    from clearing.causality import Liquidator
    from clearing.ledger import Ledger
    from clearing.margin.base import MarginRegime, Requirements
    from sim.core.instruments import InstrumentTable
    from sim.market.mark import MarkPricer
    from sim.market.venue import Venue

# Orders priced through the marks at a full re-valuation up to which the hold-back loops in Python:
# below it numpy's calls cost more than the loop (a calm day has a handful; a crash, thousands).
SMALL_HOLD_BACK = 64


class ValuedAccounts(Protocol):
    """What the bounds read of the clearing house (``clearing.house.ClearingHouse``), declared here
    so that the house, which holds the bounds, is not imported by them."""

    ledger: "Ledger"
    venue: "Venue"
    marks: "MarkPricer"
    table: "InstrumentTable"
    regime: "MarginRegime"
    scale: float
    health: np.ndarray
    liquidations: "Liquidator | None"

    def exposure(self, rows: slice | np.ndarray, order: tuple[int, int, int] | None = None) -> np.ndarray: ...

    def account_equity(self, account: int) -> float: ...

    def requirements(self, exposure: np.ndarray, full: bool = False) -> "Requirements": ...

__all__ = ["PreTradeBounds"]


class PreTradeBounds:
    """The clearing house's pre-trade check (``check``, ``would_accept``) and its per-account bounds."""

    def __init__(self, house: ValuedAccounts) -> None:
        self.house = house
        self.ledger, self.venue, self.marks, self.table = house.ledger, house.venue, house.marks, house.table
        self.scale = house.scale
        self._one_instrument = len(house.table) == 1  # one-account sums have one term: plain scalars
        cap = house.ledger.cash.shape[0]
        self.slack = np.zeros(cap)  # zero until valued: any fill re-checks
        self.headroom = np.full(cap, -np.inf)  # until valued, orders take the exact check
        self._entry_im = getattr(house.regime, "entry_im", None)

    def grow(self, cap: int) -> None:
        for name, fill in (("slack", 0.0), ("headroom", -np.inf)):
            old = getattr(self, name)
            if old.shape[0] < cap:
                new = np.full(cap, fill)
                new[: old.shape[0]] = old
                setattr(self, name, new)

    def valued(self, rows: slice | np.ndarray, equity: np.ndarray, im: np.ndarray, cancel_at: np.ndarray,
               state: np.ndarray) -> None:
        """New valuations of ``rows``: the bounds start again from them (headroom only for the
        healthy), less the open loss of resting orders priced through the marks."""
        self.slack[rows] = equity - cancel_at
        headroom = equity - im
        np.putmask(headroom, state != 0, -np.inf)  # np.where(state == 0, equity - im, -inf) in one call fewer
        self.headroom[rows] = headroom
        self._hold_back_open_losses(rows)

    def spend(self, account: int, cost: float) -> bool:
        """A fill cost ``account`` this much (trading away from the mark, fees): lower its bounds;
        True when its slack is used up (it must be re-checked)."""
        slack = self.slack.item(account) - cost
        self.slack[account] = slack
        self.headroom[account] = self.headroom.item(account) - cost
        return slack <= 0.0

    def check(self, account: int, instrument: int, side: int, price: int, lots: int) -> bool:
        """The venue's hook: accept only if equity, less what the order and the account's resting
        orders would lose against the mark if filled at their limit prices (their open loss; a
        gain is not counted -- until an order fills it is not equity), covers IM with the order in
        the worst case. An accepted order becomes part of the account's exposure, so the bounds
        the shortcut reads are lowered."""
        if account < FIRST_TRADER:
            return True
        liquidations = self.house.liquidations
        if liquidations is not None and liquidations.is_active(account):
            return False
        if self._entry_im is not None and account < self.headroom.shape[0]:
            decided = self._entry_check(account, instrument, side, price, lots)
            if decided is not None:
                return decided
        return self._check_exactly(account, instrument, side, price, lots)

    def _check_exactly(self, account: int, instrument: int, side: int, price: int, lots: int,
                       im: float | None = None) -> bool:
        """The exact check; an accepted order's bound -- equity now (less the resting orders' open
        loss), less the order's open loss, minus IM with the order -- becomes the account's
        headroom and slack (the cancel level is at most IM)."""
        ok, equity, open_loss, im = self.exact_check(account, instrument, side, price, lots, im)
        if ok and account < self.headroom.shape[0]:
            bound = equity - open_loss - im
            self.slack[account] = bound
            self.headroom[account] = bound if self.house.health.item(account) == 0 else -np.inf
        return ok

    def would_accept(self, account: int, instrument: int, side: int, price: int, lots: int) -> bool:
        """A what-if margin query (an exchange's margin calculator): the pre-trade check's answer
        now, changing nothing."""
        if self.house.liquidations is not None and self.house.liquidations.is_active(account):
            return False
        return self.exact_check(account, instrument, side, price, lots)[0]

    def exact_check(self, account: int, instrument: int, side: int, price: int, lots: int,
                     im: float | None = None) -> tuple[bool, float, float, float]:
        """(accepted, equity now less its resting orders' open loss, the order's open loss, IM with
        the order -- computed unless given, minor units) for one account."""
        if im is None:
            exposure = self.house.exposure(np.array([account]), (instrument, side, lots))
            summed = self._summed_im(exposure[0].tolist()) if self._entry_im is not None else None
            im = (self._worst_im(account, exposure[0], instrument, side, lots) if summed is None else summed) \
                * self.scale
        equity = self.house.account_equity(account) - self.resting_open_loss(account)
        open_loss = self.open_loss(instrument, side, price, lots, self.marks.ticks.item(instrument))
        return equity - open_loss >= im, equity, open_loss, im

    def _worst_im(self, account: int, exposure: np.ndarray, instrument: int, side: int, lots: int) -> float:
        """IM (quote units) of the account with the order resting, as the valuation margins it
        (``clearing.exposure.margined_states``): the largest of the larger-lots side, the other
        side, and the positions alone -- found by the episode fuzzer: a sell accepted as if a
        resting bid made the worst case a long, then filled into a short needing 250x the IM
        checked."""
        held = self.ledger.position[account].astype(np.float64)
        bids = self.venue.open_bids[account].astype(np.float64)
        asks = self.venue.open_asks[account].astype(np.float64)
        if side > 0:
            bids[instrument] += lots
        else:
            asks[instrument] += lots
        other, held = margined_states(exposure, held, bids, asks)
        if np.array_equal(other, exposure):
            return float(self.house.requirements(exposure[None, :]).im[0])
        return float(self.house.requirements(np.vstack([exposure, other, held])).im.max())

    def _hold_back_open_losses(self, rows: slice | np.ndarray) -> None:
        """Take the open loss of resting orders priced through the marks off the headroom of the
        re-valued accounts: the exact pre-trade check holds it back, so the shortcut must too.

        Per account the sums are those of ``resting_open_loss`` (a few rows: the same call) or, on
        a full re-valuation, of each book's orders through the mark in the book's order, times the
        tick value, then over the books in instrument order -- added in that order by ``bincount``
        (which adds its weights one by one from 0.0), so the headroom is the same to the bit as a
        loop over the orders would leave it."""
        headroom = self.headroom
        if not isinstance(rows, slice):
            # only accounts with resting orders can have an open loss
            bids, asks = self.venue.open_bids, self.venue.open_asks
            with_orders = rows[((bids[rows] + asks[rows]) != 0).any(axis=1)] if rows.size else rows
            for account in with_orders.tolist():
                loss = self.resting_open_loss(account)
                if loss:
                    headroom[account] -= loss
            return
        # a full re-valuation: only the orders priced through each mark have an open loss (in a
        # crash, thousands: every bid left above the falling mark)
        ticks, tick_value = self.marks.ticks, self.ledger.tick_value
        books = [(i, through) for i, book in enumerate(self.venue.books)
                 if (through := book.orders_through(ticks.item(i)))]
        if sum(len(through) for _i, through in books) <= SMALL_HOLD_BACK:
            # a handful (most publications of a calm day): the loop costs less than numpy's calls,
            # and adds in the same order from 0.0, so the bits are the same
            per_account: dict[int, float] = {}
            for i, through in books:
                mark = ticks.item(i)
                in_ticks: dict[int, float] = {}
                for order in through:
                    in_ticks[order.account] = in_ticks.get(order.account, 0.0) + order.side * (order.price - mark) * order.size
                for account, loss in in_ticks.items():
                    per_account[account] = per_account.get(account, 0.0) + loss * tick_value.item(i)
            for account, loss in per_account.items():
                if rows.start <= account < rows.stop:
                    headroom[account] -= loss
            return
        accounts: list[np.ndarray] = []
        losses: list[np.ndarray] = []
        for i, through in books:
            mark = ticks.item(i)
            owner = np.array([o.account for o in through], dtype=np.int64)
            side = np.array([o.side for o in through], dtype=np.int64)
            price = np.array([o.price for o in through], dtype=np.int64)
            size = np.array([o.size for o in through], dtype=np.int64)
            in_book, where = np.unique(owner, return_inverse=True)
            accounts.append(in_book)
            losses.append(np.bincount(where, weights=side * (price - mark) * size) * tick_value.item(i))
        if not accounts:
            return
        owners, where = np.unique(np.concatenate(accounts), return_inverse=True)
        total = np.bincount(where, weights=np.concatenate(losses))
        inside = (owners >= rows.start) & (owners < rows.stop)
        headroom[owners[inside]] -= total[inside]

    def resting_open_loss(self, account: int) -> float:
        """The open loss of the account's resting orders at the current marks (minor units)."""
        total = 0.0
        ticks, tick_value = self.marks.ticks, self.ledger.tick_value
        for i, book in enumerate(self.venue.books):
            orders = book.orders_of(account)
            if orders:
                mark = ticks.item(i)
                loss_ticks = sum(max(o.side * (o.price - mark), 0.0) * o.size for o in orders)
                total += loss_ticks * tick_value.item(i)
        return total

    def open_loss(self, instrument: int, side: int, price: int, lots: int, mark: float) -> float:
        """What an order filled at ``price`` would lose against the mark at once (minor units): a
        buy above the mark, a sell below it; zero otherwise (Binance's "open loss")."""
        return max(side * (price - mark), 0.0) * lots * self.ledger.tick_value.item(instrument)

    def _summed_im(self, lots: list[float]) -> float | None:
        """One account's IM as the sum of its positions' requirements, in instrument order, in plain
        Python (regimes with ``entry_im``); None if any position needs the full computation."""
        entry_im = self._entry_im
        assert entry_im is not None
        marks, tick = self.marks.ticks, self.table.tick_size
        total = 0.0
        for i, size in enumerate(lots):
            if size:
                im = entry_im(i, float(size), float(marks[i]) * float(tick[i]))
                if im is None:
                    return None
                total += im
        return total

    def _entry_check(self, account: int, instrument: int, side: int, price: int, lots: int) -> bool | None:
        """The pre-trade check for regimes whose IM is a sum over positions (``entry_im``), in plain
        Python; None when an entry needs the full computation.

        First from the account's ``headroom`` (see ``__init__``), without a margin computation; when
        it does not cover the order, the account's equity and IM are computed exactly."""
        entry_im = self._entry_im
        assert entry_im is not None
        resting = self.venue.resting  # its arrays directly: the venue's open_bids/open_asks are properties
        position, bids_of, asks_of = self.ledger.position, resting.bids, resting.asks
        held, bids, asks = position.item(account, instrument), bids_of.item(account, instrument), \
            asks_of.item(account, instrument)
        before = max(abs(held + bids), abs(held - asks))
        if side > 0:
            up, down = held + bids + lots, held - asks
        else:
            up, down = held + bids, held - asks - lots
        after = up if abs(up) >= abs(down) else down
        mark = self.marks.ticks.item(instrument)
        price_mark = mark * self.table.tick_size.item(instrument)
        im_after = entry_im(instrument, abs(after), price_mark)
        if im_after is None:
            return None
        added = (im_after - entry_im(instrument, before, price_mark)) * self.scale
        # open_loss, inlined (once per order)
        open_loss = max(side * (price - mark), 0.0) * lots * self.ledger.tick_value.item(instrument)
        headroom = self.headroom.item(account)
        if headroom - open_loss >= added:
            # the open loss is held back as well until the next valuation (a fill charges it again)
            self.headroom[account] = headroom - added - open_loss
            self.slack[account] = self.slack.item(account) - added - open_loss
            return True
        if self._one_instrument:
            im = im_after * self.scale
        else:
            rows = zip(position[account].tolist(), bids_of[account].tolist(), asks_of[account].tolist(), strict=True)
            exposure = [p + b if abs(p + b) >= abs(p - a) else p - a for p, b, a in rows]
            exposure[instrument] = after
            summed = self._summed_im(exposure)
            if summed is None:
                return None
            im = summed * self.scale
        return self._check_exactly(account, instrument, side, price, lots, im)
