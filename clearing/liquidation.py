"""The liquidation engine: what happens to an account below maintenance margin.

Each liquidation is one ``LiquidationEvent`` made of ``LiquidationStep``s:

1. cancel the account's open orders and re-value it (that alone may restore it);
2. if it is still below MM, by policy:
   * ``book`` -- an IOC reduce-only order sized to restore MM x (1 + buffer) (the Drift formula),
     capped to a slice of large positions, with a worst price between the mark and the
     bankruptcy price; further steps after a cool-down. The engine reads the top of the book
     first and sends no order nothing could fill; a step whose inputs are those of an earlier
     step that filled nothing repeats it without re-valuing (``_step``);
   * ``backstop`` -- (also, under any policy, when equity < ``equity_fraction_of_mm`` x MM) the
     positions move to the backstop vault at the mark less a discount;
   * ``auction`` -- the positions are offered to registered bidders for ``duration`` seconds;
     the best bid wins, a zero bid is possible; with no bid the engine closes them itself;
3. a bankrupt account (equity <= 0) is closed by the engine itself: through the book when the
   insurance fund can stand behind it, otherwise by auto-deleveraging at the bankruptcy price;
   any deficit left after the positions are gone goes to ``LossAbsorber``.

With ``absorb_outside`` (the no-feedback twin) every order of steps 2-3 that would go to the book
is filled instead, in full, at the mark (rounded to a whole tick against the liquidated account)
by an external absorber account: the same decisions, sizes, times and fees, but no liquidation
ever trades on the book, so none moves a price anyone else sees.

The liquidation fee goes to the insurance fund out of what the fill beat the bankruptcy price by;
a fill worse than bankruptcy leaves a deficit the fund (or the next layer) pays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from clearing.adl import AdlQueue, adl_candidates, select_pro_rata
from clearing.attribution import BreachExplanation
from clearing.causality import Cause, CauseKind, LiquidationEvent, LiquidationStep
from clearing.liquidation_math import (
    bankruptcy_price,
    fillable_price,
    liquidation_fee,
    lots_to_restore,
    settle_liquidation_fee,
    worst_fill_price,
)
from sim.core.orders import BUY, SELL, Fill, FillFlag, TimeInForce
from clearing.config import LiquidationConfig

if TYPE_CHECKING:
    from clearing.absorption import LossAbsorber
    from clearing.ledger import Ledger
    from sim.core.kernel import World
    from sim.market.mark import MarkPricer
    from sim.market.venue import Venue


class LiquidatingHouse(Protocol):
    """What the liquidation engine reads of, and asks of, the clearing house
    (``clearing.house.ClearingHouse``), declared here so that the engine names the duties it relies
    on rather than the house's whole surface."""

    world: "World"
    ledger: "Ledger"
    venue: "Venue"
    marks: "MarkPricer"
    scale: float  # quote units -> minor units
    oracle_seq: int  # publications so far
    valuation_epoch: int  # moves whenever any account's valuation may have

    def grow(self) -> None: ...

    def asset_prices(self) -> np.ndarray: ...

    def equities(self, rows: slice | np.ndarray) -> np.ndarray: ...

    def account_equity(self, account: int) -> float: ...

    def account_valuation(self, account: int) -> tuple[float, float, float]: ...

    def covers_im_with(self, account: int, lots: np.ndarray) -> bool: ...

    def note_charge(self, account: int, liq_id: int, equity_effect: float) -> None: ...

    def revalue_accounts(self, accounts: "Iterable[int]") -> None: ...


class AuctionBidder(Protocol):
    """Something that bids for liquidated positions (an agent with finite capital)."""

    account: int

    def auction_discount(self, lots: np.ndarray, marks_value: np.ndarray) -> float | None:
        """Discount off mark (0..1) at which it takes over ``lots`` (the liquidated account's signed
        position per instrument, which becomes the bidder's); None: no bid."""


@dataclass(slots=True)
class _UnfilledStep:
    """A book step that sent nothing the book could fill, and what it read: while ``inputs``
    (``LiquidationEngine._inputs_of``) are unchanged the next step would value the account the
    same, size and price the same order, and find the book unable to fill it unless the book moved."""

    inputs: tuple
    instrument: int
    side: int
    price: int  # ticks: the order's limit
    tif: TimeInForce
    equity: float
    mm: float
    wait: float  # seconds to the next step


class LiquidationEngine:
    """Runs liquidations as timed steps on the world's clock."""

    def __init__(self, house: LiquidatingHouse, config: LiquidationConfig, absorber: "LossAbsorber",
                 backstop_account: int | None, adl: str = "ranked", external_account: int | None = None) -> None:
        if config.absorb_outside and external_account is None:
            raise ValueError("liquidation.absorb_outside needs an external absorber account")
        self.house = house
        self.config = config
        self.absorber = absorber
        self.backstop_account = backstop_account
        self.external_account = external_account
        self.adl = adl
        # ranked once per price update, not per bankrupt account
        self.adl_queue = AdlQueue(house.ledger, self._adl_equities, self._valuation_version)
        self.active: dict[int, LiquidationEvent] = {}
        self._by_account: dict[int, set[int]] = {}
        self.events: list[LiquidationEvent] = []
        self.steps: list[LiquidationStep] = []
        self.bidders: list[AuctionBidder] = []
        self.auction_outcomes: list[tuple[float, int, float | None]] = []  # time, liq id, winning discount
        # (liq id, time, equity, MM) at every decision to move a liquidated account's positions:
        # ``sim.experiment.episode.verify`` proves each was taken below MM
        self.health_checks: list[tuple[int, float, float, float]] = []
        # liq id -> its last book step when that filled nothing (see ``_step``)
        self._unfilled: dict[int, _UnfilledStep] = {}

    def register_bidder(self, bidder: AuctionBidder) -> None:
        """Auction bidders join here (once each), in the order they register."""
        if bidder not in self.bidders:
            self.bidders.append(bidder)

    def _adl_equities(self, rows: np.ndarray | slice) -> np.ndarray:
        """Equities the ADL queue ranks with: the house's own (``ClearingHouse.equities``: the
        canonical sum, so a row's bits do not depend on the other rows valued with it)."""
        return self.house.equities(rows)

    def _valuation_version(self) -> tuple:
        """What moves every holder's equity outside the ledger: the publication, the marks, the
        collateral prices and haircuts. The ADL queue sorts afresh when it changes."""
        house = self.house
        return (house.oracle_seq, house.marks.ticks.tobytes(), house.asset_prices().tobytes(),
                house.ledger.haircut_keep.tobytes())

    # ------------------------------------------------------------------ lifecycle
    def is_active(self, account: int) -> bool:
        return account in self.active

    def liquidations_of(self, account: int) -> set[int]:
        """Ids of every liquidation of ``account`` so far."""
        return self._by_account.get(account, set())

    def start(self, account: int, equity: float, mm: float, cause: Cause,
              why: BreachExplanation | None = None) -> None:
        now = self.house.world.now
        parent, generation = -1, 0
        if cause.kind in (CauseKind.LIQUIDATION, CauseKind.LOSS_ALLOCATION) and 0 <= cause.ref < len(self.events):
            parent = cause.ref
            generation = self.events[parent].generation + 1
        event = LiquidationEvent(liq_id=len(self.events), account=account, breach_time=now, start_time=now,
                                 cause=cause, parent=parent, generation=generation,
                                 equity_at_breach=equity, mm_at_breach=mm)
        if why is not None:
            event.why = why
        self.events.append(event)
        self._by_account.setdefault(account, set()).add(event.liq_id)
        self.active[account] = event
        self.house.world.call_later(self.config.book.latency, self._step, event, True)

    def _finish(self, event: LiquidationEvent, outcome: str) -> None:
        event.outcome = outcome
        event.end_time = self.house.world.now
        self.active.pop(event.account, None)

    # ------------------------------------------------------------------ one step
    def _value(self, account: int) -> tuple[float, float, float]:
        return self.house.account_valuation(account)

    def _still_unhealthy(self, event: LiquidationEvent) -> tuple[float, float] | None:
        """Re-value the account before moving its positions: (equity, MM) if it is still below MM
        and holds positions (recorded for ``verify``); otherwise the event is concluded (restored,
        closed or bankrupt) and None is returned."""
        self.house.ledger.now = self.house.world.now
        equity, _im, mm = self._value(event.account)
        if equity >= mm or not self.house.ledger.position[event.account].any():
            self._after(event, progressed=True)
            return None
        self.health_checks.append((event.liq_id, self.house.world.now, equity, mm))
        return equity, mm

    def _inputs_of(self, account: int) -> tuple:
        """Everything a book step of ``account`` reads besides the book: the house's valuation epoch
        (marks, prices, haircuts, the regime's state) and the rows of the account and of the
        backstop vault (positions, cash, resting orders)."""
        house = self.house
        ledger, venue = house.ledger, house.venue
        inputs: list = [house.valuation_epoch]
        for row in (account, self.backstop_account):
            if row is not None:
                inputs += (ledger.position[row].tobytes(), ledger.cash[row].tobytes(),
                           venue.open_bids[row].tobytes(), venue.open_asks[row].tobytes())
        return tuple(inputs)

    def _step(self, event: LiquidationEvent, first: bool = False) -> None:
        house, account = self.house, event.account
        house.ledger.now = house.world.now
        unfilled = self._unfilled.pop(event.liq_id, None)
        if unfilled is not None and not house.venue.can_fill(unfilled.instrument, unfilled.side, unfilled.price,
                                                             unfilled.tif, FillFlag.LIQUIDATION) \
                and unfilled.inputs == self._inputs_of(account):
            # Most book steps in a crash fill nothing (the book is below the limit) and retry after
            # a second. When nothing the step reads has changed and the book still cannot fill the
            # same order, this step would repeat the last one to the bit -- the same valuation (as
            # recorded for ``verify``), no order sent, the same wait -- so that is all it does:
            # O(1) instead of a valuation, the vault check and the order's sizing.
            self.health_checks.append((event.liq_id, house.world.now, unfilled.equity, unfilled.mm))
            self._unfilled[event.liq_id] = unfilled
            house.world.call_later(unfilled.wait, self._step, event)
            return
        cancelled = False
        if first:
            event.start_time = house.world.now
            cancelled = house.venue.cancel_all_now(account) > 0
        equity, _im, mm = self._value(account)
        if equity >= mm:
            self._finish(event, "restored_by_cancel" if cancelled else "restored")
            return
        if not house.ledger.position[account].any():
            if equity < 0:
                self.absorber.absorb(account, event, market=self._market_of(event), vault=self.backstop_account)
                self._finish(event, "bankrupt")
            else:
                self._finish(event, "closed")
            return
        self.health_checks.append((event.liq_id, house.world.now, equity, mm))
        if equity <= 0:
            self._bankrupt(event, equity)
            return
        cfg = self.config
        if cfg.policy == "backstop" or (cfg.backstop.enabled and equity < cfg.backstop.equity_fraction_of_mm * mm):
            if self._backstop(event):
                self._after(event, progressed=True)
                return
        if cfg.policy == "auction":
            self._start_auction(event)
            return
        self._book_step(event, equity, mm)

    def _market_of(self, event: LiquidationEvent) -> int:
        """The instrument ``event``'s last step closed (0 if it took none): the market whose loss
        layers pay for its deficit."""
        for step in reversed(self.steps):
            if step.liq_id == event.liq_id:
                return step.instrument
        return 0

    def _after(self, event: LiquidationEvent, progressed: bool, delay: float | None = None,
               unchanged: tuple[float, float] | None = None) -> None:
        """Decide what follows a step: done, bankrupt, or another step later. ``unchanged``: the
        step's own (equity, MM) when the step moved nothing (the same instant, nothing filled), so
        the account need not be re-valued."""
        equity, mm = (self._value(event.account)[::2]) if unchanged is None else unchanged
        flat = not self.house.ledger.position[event.account].any()
        if flat:
            if equity < 0:
                self.absorber.absorb(event.account, event, market=self._market_of(event), vault=self.backstop_account)
                self._finish(event, "bankrupt")
            else:
                self._finish(event, "closed")
            return
        if equity >= mm:
            self._finish(event, "restored")
            return
        self.house.world.call_later(self._wait(delay, progressed), self._step, event)

    def _wait(self, delay: float | None, progressed: bool) -> float:
        """Seconds to the next step: ``delay`` (default: the cool-down), at least a second after a
        step that moved nothing (never a re-try at the same instant: with ``cooldown: 0`` that
        spun forever at one time)."""
        wait = self.config.book.cooldown if delay is None else delay
        return wait if progressed else max(wait, 1.0)

    # ------------------------------------------------------------------ policies
    def _largest_position(self, account: int) -> tuple[int, int]:
        # np.argmax(np.abs(position * ticks * tick_value)) in plain Python (the same products; the
        # first of equal largest): a step's one row costs less than the array calls
        ledger = self.house.ledger
        held, ticks = ledger.position[account].tolist(), self.house.marks.ticks.tolist()
        notional = [abs(p * t * v) for p, t, v in zip(held, ticks, ledger.tick_value.tolist())]
        i = notional.index(max(notional))
        return i, held[i]

    def _book_step(self, event: LiquidationEvent, equity: float, mm: float) -> None:
        house, cfg = self.house, self.config
        account = event.account
        instrument, held = self._largest_position(account)
        tv = int(house.ledger.tick_value[instrument])
        mark = float(house.marks.ticks[instrument])
        per_lot = mark * tv
        gross = float(np.abs(house.ledger.position[account]) @ (house.marks.ticks * house.ledger.tick_value))
        ratio = mm / gross if gross > 0 else 1.0
        try:
            lots = lots_to_restore(equity, mm, cfg.book.buffer, per_lot, ratio, contract_units=1.0,
                                   liquidation_fee=cfg.fee_rate, position_lots=held)
        except ValueError:
            lots = abs(held)  # the fee exceeds the margin ratio: partial steps cannot restore it
        lots = max(1, min(abs(held), lots))
        if abs(held) * per_lot > cfg.book.slice_notional * house.scale:
            lots = min(lots, max(1, math.ceil(cfg.book.slice_fraction * abs(held))))
        side = SELL if held > 0 else BUY
        bankruptcy = bankruptcy_price(equity, held, tv, mark)
        tif = TimeInForce.IOC
        if cfg.book.worst_price == "bankruptcy":
            limit = bankruptcy
        elif cfg.book.worst_price == "between":
            limit = worst_fill_price(mark, bankruptcy, cfg.book.worst_fraction)
        elif cfg.book.worst_price == "fillable":
            # the position's share of the maintenance requirement (mm x its share of gross notional);
            # no requirement at all leaves no spread to give up: the limit is the mark
            limit = mark if mm <= 0 else fillable_price(
                mark, held, tv, equity, mm, ratio * abs(held) * per_lot,
                cfg.book.bankruptcy_adjustment, cfg.book.spread_to_mm_ratio)
        else:
            limit, tif = mark, TimeInForce.MARKET
        filled = self._through_book(event, instrument, side, lots, limit, tif, bankruptcy, "book")
        # a sliced position waits out the cool-down; otherwise the next step follows after the
        # liquidation latency (never at the same instant: the book must get a chance to refill)
        delay = cfg.book.cooldown if lots < abs(held) else max(cfg.book.latency, 0.01)
        if not filled and self.external_account is None:
            self._unfilled[event.liq_id] = _UnfilledStep(self._inputs_of(account), instrument, side,
                                                         _limit_ticks(side, limit), tif, equity, mm,
                                                         self._wait(delay, progressed=False))
        # most steps in a crash fill nothing (95% at 100k accounts: the book is below the limit):
        # nothing moved since this step valued the account, so that valuation stands (an order that
        # does not fill changes nothing else: the account's only resting orders can be reduce-only
        # ones on this order's own side -- anything else was cancelled at the first step and is
        # refused while it is liquidated -- so self-trade prevention has nothing to cut)
        self._after(event, progressed=filled != 0, delay=delay, unchanged=None if filled else (equity, mm))

    def _through_book(self, event: LiquidationEvent, instrument: int, side: int, lots: int, limit: float,
                      tif: TimeInForce, bankruptcy: float, policy: str) -> int:
        """Send one IOC/MARKET liquidation order; record the step; collect the fee. Returns lots filled."""
        house = self.house
        account = event.account
        tv = int(house.ledger.tick_value[instrument])
        if self.external_account is not None:
            # the no-feedback twin: filled in full at the mark, outside the market
            mark = float(house.marks.ticks[instrument])
            price = max(1, math.floor(mark) if side == SELL else math.ceil(mark))
            house.venue.off_book_trade(Fill(instrument, price, lots, side, 0, 0, self.external_account, account,
                                            FillFlag.EXTERNAL))
            filled, notional, policy = lots, price * lots * tv, "external"
        else:
            limit_ticks = _limit_ticks(side, limit)
            if not house.venue.can_fill(instrument, side, limit_ticks, tif, FillFlag.LIQUIDATION):
                # the engine reads the top of the book first: an order nothing can fill is not sent
                return 0
            oid = house.venue.new_order_id()
            book = house.venue.books[instrument]
            mid_before = book.mid()
            result = house.venue.execute(oid, account, instrument, side, limit_ticks, lots, tif,
                                         reduce_only=True, flags=FillFlag.LIQUIDATION, check_risk=False)
            filled = sum(f.size for f in result.fills)
            if not filled:
                return 0
            if mid_before is not None:
                # this order's own displacement of the book (nothing else trades inside one execution);
                # a side it emptied leaves no mid: its last fill is where the price went
                mid_after = book.mid()
                moved_to = result.fills[-1].price if mid_after is None else mid_after
                house.marks.impact.record(instrument, event.liq_id, moved_to - mid_before)
            notional = sum(f.price * f.size for f in result.fills) * tv
        avg = notional / (filled * tv)
        # the fee comes out of what the fill beat the bankruptcy price by, never out of a deficit;
        # a bankrupt account's takeover (no finite bankruptcy price) pays none
        fee = 0
        if math.isfinite(bankruptcy):
            surplus = math.floor(((avg - bankruptcy) if side == SELL else (bankruptcy - avg)) * filled * tv)
            owed = liquidation_fee(notional, self.config.fee_rate, int(self.config.fee_cap * house.scale))
            fee = settle_liquidation_fee(surplus, owed)[0]
        if fee > 0:
            self.absorber.fund.collect(account, fee, instrument, "liquidation_fee")
        self._record(event, instrument, policy, side * filled, notional, avg, bankruptcy, fee)
        return filled

    def _record(self, event: LiquidationEvent, instrument: int, policy: str, lots: int, notional: int,
                avg: float, bankruptcy: float, fee: int) -> None:
        house = self.house
        event.notional += abs(notional)
        self.steps.append(LiquidationStep(event.liq_id, house.world.now, event.account, instrument, policy, lots,
                                          abs(notional), avg, float(house.marks.ticks[instrument]), bankruptcy, fee))

    def _off_book(self, event: LiquidationEvent, counterparty: int, instrument: int, lots_closed: int,
                  price_ticks: int, policy: str, flags: FillFlag, bankruptcy: float) -> None:
        """Move ``lots_closed`` (signed change of the liquidated account) to ``counterparty`` at a price."""
        account = event.account
        side = BUY if lots_closed > 0 else SELL
        size = abs(lots_closed)
        fill = Fill(instrument, price_ticks, size, side, 0, 0, counterparty, account, flags)
        self.house.venue.off_book_trade(fill)
        tv = int(self.house.ledger.tick_value[instrument])
        self._record(event, instrument, policy, lots_closed, price_ticks * size * tv, float(price_ticks), bankruptcy, 0)

    def _backstop(self, event: LiquidationEvent) -> bool:
        """Hand every position to the backstop vault at mark less the discount. False if it cannot take it."""
        vault = self.backstop_account
        if vault is None:
            return False
        house = self.house
        account = event.account
        pos = house.ledger.position[account].copy()
        if not self._vault_can_take(pos):
            return False
        self._hand_over(event, vault, pos, self.config.backstop.discount, "backstop", FillFlag.BACKSTOP, 1)
        return True

    def _hand_over(self, event: LiquidationEvent, taker: int, pos: np.ndarray, discount: float, policy: str,
                   flags: FillFlag, min_price: int) -> None:
        """Move every position in ``pos`` to ``taker`` at mark less ``discount`` (longs are sold
        below mark, shorts bought above it)."""
        marks = self.house.marks.ticks
        for instrument in np.flatnonzero(pos):
            held = int(pos[instrument])
            mark = float(marks[instrument])
            price = math.floor(mark * (1 - discount)) if held > 0 else math.ceil(mark * (1 + discount))
            self._off_book(event, taker, int(instrument), -held, max(price, min_price), policy, flags, float("nan"))

    def _vault_can_take(self, lots: np.ndarray) -> bool:
        assert self.backstop_account is not None
        return self.house.covers_im_with(self.backstop_account, lots)

    # ------------------------------------------------------------------ auctions
    def _start_auction(self, event: LiquidationEvent) -> None:
        self.house.world.call_later(self.config.auction.duration, self._settle_auction, event)

    def _settle_auction(self, event: LiquidationEvent) -> None:
        """Settle an auction ``duration`` after it opened -- re-valued first: an account that has
        recovered meanwhile is released, not sold at the auction discount."""
        house = self.house
        account = event.account
        health = self._still_unhealthy(event)
        if health is None:
            return
        equity, _mm = health
        pos = house.ledger.position[account].copy()
        marks_value = house.marks.ticks * house.ledger.tick_value
        best: tuple[float, int] | None = None
        bids = 0
        for bidder in self.bidders:
            if bidder.account == account:
                continue
            discount = bidder.auction_discount(pos, marks_value)
            if discount is None:
                continue
            bids += 1
            discount = min(max(float(discount), 0.0), 1.0)
            if best is None or discount < best[0]:
                best = (discount, bidder.account)
        if bids < self.config.auction.min_bidders:
            best = None  # too few bidders for a valid auction
        self.auction_outcomes.append((house.world.now, event.liq_id, None if best is None else best[0]))
        if best is None:
            self._bankrupt(event, equity) if equity <= 0 else self._takeover(event)
            return
        discount, winner = best
        self._hand_over(event, winner, pos, discount, "auction", FillFlag.AUCTION, 0)  # a zero bid is a price of 0
        self._after(event, progressed=True)

    # ------------------------------------------------------------------ bankruptcy
    def _bankrupt(self, event: LiquidationEvent, equity: float) -> None:
        """Equity at or below zero with positions left: close them via the fund or ADL."""
        instrument, _held = self._largest_position(event.account)
        if self.adl == "off" or self.absorber.fund.available(instrument) >= -equity:
            self._takeover(event)
        else:
            self._deleverage(event)

    def _takeover(self, event: LiquidationEvent, allow_adl: bool = True) -> None:
        """Close every position through the book at the venue's protection band; ADL or the vault
        take what the book cannot absorb."""
        house = self.house
        account = event.account
        if self._still_unhealthy(event) is None:
            return
        moved = 0
        for instrument in np.flatnonzero(house.ledger.position[account]):
            held = int(house.ledger.position[account, instrument])
            side = SELL if held > 0 else BUY
            moved += self._through_book(event, int(instrument), side, abs(held),
                                        float(house.marks.ticks[instrument]), TimeInForce.MARKET, float("nan"),
                                        "takeover")
        if house.ledger.position[account].any():
            if self.adl != "off" and allow_adl:
                self._deleverage(event)
                return
            if self._backstop(event):
                self._after(event, progressed=True)
                return
        # nothing filled and no layer could take it: wait for the book (at least a second, never a
        # re-try at the same instant -- with ``cooldown: 0`` that spun forever at one time)
        self._after(event, progressed=moved > 0, delay=self.config.book.cooldown)

    def _deleverage(self, event: LiquidationEvent) -> None:
        """Auto-deleverage: close the bankrupt's positions against profitable opposite holders at the
        bankruptcy price (the largest position at its bankruptcy price, the rest at mark)."""
        house = self.house
        account = event.account
        ledger = house.ledger
        house.grow()
        # pro rata allocates over every profitable holder: O(holders) by definition, so a full
        # vector costs nothing more. The ranked queue values only the rows it (re)ranks, and the
        # bankrupt account by the one-account path the engine judged it bankrupt with
        equity_all = house.equities(slice(0, ledger.n_accounts)) if self.adl == "pro_rata" else None
        bankrupt_equity = float(equity_all[account]) if equity_all is not None else house.account_equity(account)
        # the counterparties' equities before this deleverage's own fills moved them: a second
        # instrument is ranked with them, as with one vector taken at the start
        before: dict[int, float] = {}
        several = int(np.count_nonzero(ledger.position[account])) > 1
        first = True
        charged: set[int] = set()
        for instrument in np.argsort(-np.abs(ledger.position[account] * house.marks.ticks * ledger.tick_value)):
            held = int(ledger.position[account, instrument])
            if held == 0:
                continue
            tv = int(ledger.tick_value[instrument])
            mark = float(house.marks.ticks[instrument])
            equity = bankrupt_equity if first else 0.0
            bankruptcy = bankruptcy_price(equity, held, tv, mark)
            price = max(1, math.ceil(bankruptcy) if held > 0 else math.floor(bankruptcy))
            if equity_all is not None:
                cands = adl_candidates(ledger, int(instrument), int(round(mark)), equity_all, exclude=account)
                chosen = select_pro_rata(held, cands.accounts, cands.lots, cands.pnl)
            else:
                chosen = self.adl_queue.select(held, int(instrument), int(round(mark)), exclude=account,
                                               equity_override=before or None)
                if several:
                    new = sorted(c for c, _ in chosen if c not in before)
                    if new:
                        rows = np.array(new, dtype=np.int64)
                        before.update(zip(new, self._adl_equities(rows).tolist()))
            tv = int(ledger.tick_value[instrument])
            for counterparty, lots in chosen:
                bought = lots if held > 0 else -lots  # the counterparty's side of the trade
                self._off_book(event, counterparty, int(instrument), -bought, price, "adl", FillFlag.ADL, bankruptcy)
                # closed at the bankruptcy price instead of the mark: what that cost the counterparty
                house.note_charge(counterparty, event.liq_id, -bought * (price - mark) * tv)
                charged.add(counterparty)
            first = False
        house.revalue_accounts(charged)
        if ledger.position[account].any():
            # nobody profitable enough on the other side: fall back to the book and the vault
            self._takeover(event, allow_adl=False)
            return
        self._after(event, progressed=True)


def _limit_ticks(side: int, limit: float) -> int:
    """A liquidation order's limit in whole ticks, never worse than ``limit`` (a sale's rounded up,
    a purchase's down), at least one tick."""
    return max(1, math.ceil(limit) if side == SELL else math.floor(limit))
