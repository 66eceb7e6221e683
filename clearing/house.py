"""The clearing house: settles fills, re-values accounts, enforces margin and starts liquidations.

On every oracle publication (``cadence='continuous'``) every account is re-valued at once:
equity (collateral after haircuts + positions at mark) against the regime's IM and MM, computed
on the *worst-case* positions (position plus resting orders on whichever side makes it larger), so
that cancelling orders can restore an account. On every fill the two parties are re-valued. With
``cadence='interval'`` the whole book of accounts is re-valued every ``interval`` seconds instead.

The venue asks ``pre_trade_check`` before accepting an order that increases risk: the order is
accepted only if equity, less what it would lose against the mark if filled at its limit price,
covers IM with the order in the worst case.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from clearing.attribution import BreachAttribution, BreachExplanation
from clearing.causality import Cause, CauseKind
from clearing.exposure import ExposureBook, worst_case
from clearing.health import Health, cancel_threshold, classify
from clearing.instruments import InstrumentKind, InstrumentTable
from clearing.ledger import FIRST_TRADER, QUOTE, Ledger
from clearing.margin.base import MarginRegime, Positions
from sim.orders import Fill, FillFlag
from sim.schema.clearing import ClearingConfig

if TYPE_CHECKING:
    from clearing.liquidation import LiquidationEngine
    from sim.kernel import World
    from sim.mark import MarkPricer
    from sim.oracle import Oracle
    from sim.venue import Venue


_BELOW_CANCEL, _BELOW_MM = int(Health.BELOW_CANCEL), int(Health.BELOW_MM)  # numpy compares plain ints faster
# fills the clearing house forced (its own liquidations and ADL): their parties are handled by the
# liquidation engine, not re-checked. A plain int: IntFlag arithmetic runs in Python, per fill
_FORCED_FILL = int(FillFlag.LIQUIDATION | FillFlag.ADL)


class ClearingHouse:
    """Continuous margin enforcement over a ledger, a venue, an oracle and a margin regime."""

    def __init__(self, world: "World", ledger: Ledger, venue: "Venue", oracle: "Oracle", marks: "MarkPricer",
                 table: InstrumentTable, regime: MarginRegime, config: ClearingConfig) -> None:
        self.world = world
        self.ledger = ledger
        self.venue = venue
        self.oracle = oracle
        self.marks = marks
        self.table = table
        self.regime = regime
        self.config = config
        self.scale = float(ledger.assets[QUOTE].minor_per_unit)  # quote units -> minor units
        cap = ledger.cash.shape[0]
        self.health = np.zeros(cap, dtype=np.int8)
        self.equity = np.zeros(cap)
        self.im = np.zeros(cap)
        self.mm = np.zeros(cap)
        # what moved each account's equity since it was last at or above maintenance (breach attribution)
        self.attribution = BreachAttribution(ledger, marks, cap, config.attribution.materiality)
        self.oracle_seq = 0
        self.liquidations: "LiquidationEngine | None" = None
        # at every full re-valuation: time, total IM, total MM, total equity, gross notional of the
        # worst-case lots IM is computed on (minor units)
        self.margin_samples: list[tuple[float, float, float, float, float]] = []
        assets = ledger.assets
        self._asset_source = [None if a.price_source is None else list(oracle.underlyings).index(a.price_source)
                              for a in assets]
        self._dirty: set[int] = set()  # fill parties waiting for their re-check
        # Lower bounds, per account, of equity above the cancel level (``slack``) and of equity
        # above IM (``headroom``; -inf for an account that was not healthy), set at each valuation
        # and lowered since by what fills cost (trading away from the mark, fees) and by the IM and
        # open loss every accepted order adds (its IM bounds its rise of the cancel level too: MM
        # never exceeds IM). Marks move only on publications, which re-value everyone, and fills
        # never raise worst-case exposure, so an account with slack left cannot have crossed a
        # threshold (only the others are re-checked after fills), and an order that fits in the
        # headroom is accepted without a margin computation.
        self.slack = np.zeros(cap)  # zero until valued: any fill re-checks
        self.headroom = np.full(cap, -np.inf)  # until valued, orders take the exact check
        self._entry_im = getattr(regime, "entry_im", None)
        self._continuous = config.enforcement.cadence == "continuous"
        self._one_instrument = len(table) == 1  # one-account sums have one term: plain scalars
        # every account's worst-case lots, positions and order flags, kept between re-valuations
        # and rewritten only in the rows fills and orders touched (clearing.exposure)
        self.book = ExposureBook(ledger, venue.resting, regime)

    @property
    def revaluations(self) -> int:
        """Full re-valuations so far (each records one margin sample)."""
        return len(self.margin_samples)

    # ------------------------------------------------------------------ wiring
    def attach(self, liquidations: "LiquidationEngine") -> None:
        self.liquidations = liquidations
        self.venue.trade_listeners.insert(0, self.on_fill)
        if self.config.enforcement.pre_trade_check:
            self.venue.risk_check = self.pre_trade_check
        self.oracle.listeners.append(self.on_publication)
        if self.config.enforcement.cadence == "interval":
            iv = self.config.enforcement.interval
            self.world.every(iv, lambda: self.revalue_all(Cause(CauseKind.INTERVAL, self.oracle_seq, self.world.now)),
                             start=iv)
        self._schedule_settlements()
        self.settled_ticks = self.marks.ticks.copy()  # marks at the last variation-margin run
        vm = self.config.settlement
        if vm.variation_margin == "interval":
            self.world.every(vm.interval, self.settle_variation_margin, start=vm.interval)
        if hasattr(self.regime, "update_history"):
            iv = self.config.history.row_interval
            self.world.every(iv, self._append_history, start=iv)

    def _append_history(self) -> None:
        """A history-based regime's margin run: the new row moves every requirement, so under
        continuous enforcement everyone is re-valued now -- not at the next publication, which a
        flat price and a long heartbeat can put off past the end of the episode."""
        self.regime.update_history(self.marks.index.copy())
        if self._continuous:
            self.revalue_all(Cause(CauseKind.INTERVAL, self.oracle_seq, self.world.now))

    def _schedule_settlements(self) -> None:
        for ins in self.table.instruments:
            if ins.kind == InstrumentKind.PERPETUAL and self.config.funding.enabled and ins.funding_interval:
                self.world.every(ins.funding_interval, lambda i=ins.id: self.pay_funding(i), start=ins.funding_interval)
            if ins.expiry is not None:
                self.world.call_later(ins.expiry, self.settle_expiry, ins.id)

    def _grow(self) -> None:
        cap = self.ledger.cash.shape[0]
        if self.health.shape[0] < cap:
            for name in ("health", "equity", "im", "mm", "slack", "headroom"):
                old = getattr(self, name)
                new = np.full(cap, -np.inf if name == "headroom" else 0, dtype=old.dtype)
                new[: old.shape[0]] = old
                setattr(self, name, new)
            self.attribution.ensure(cap)

    # ------------------------------------------------------------------ valuation
    def asset_prices(self) -> np.ndarray:
        """Price of each collateral asset in quote units (the quote asset is worth 1)."""
        prices = np.ones(len(self._asset_source))
        for k, column in enumerate(self._asset_source):
            if column is not None:
                prices[k] = self.oracle.index[column]
        return prices

    def exposure(self, rows: slice | np.ndarray, order: tuple[int, int, int] | None = None) -> np.ndarray:
        """Worst-case lots: position plus resting buys or minus resting sells, whichever is larger;
        with ``order`` = (instrument, side, lots), as if that order rested too."""
        self.venue.resting.ensure(self.ledger.n_accounts)
        pos = self.ledger.position[rows]
        bids = self.venue.open_bids[rows]
        asks = self.venue.open_asks[rows]
        if order is not None:
            instrument, side, lots = order
            if side > 0:
                bids = bids.copy()
                bids[:, instrument] += lots
            else:
                asks = asks.copy()
                asks[:, instrument] += lots
        return worst_case(pos, bids, asks)

    def requirements(self, exposure: np.ndarray, full: bool = False):
        """The regime's requirements for worst-case lots. Only a full re-valuation (every account,
        in ledger order) may advance a stateful regime's memory (the VaR buffer's previous margins);
        partial ones -- a pre-trade check, the two parties of a fill -- read it without changing it."""
        market = self.marks.market_state(self.world.now)
        if full:
            return self.regime.requirements(Positions(exposure), market)
        return self.regime.requirements_stateless(Positions(exposure), market)

    def valuation(self, rows: slice | np.ndarray, full: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(equity, IM, MM) in minor units for the given ledger rows."""
        return self._value_rows(rows, full)[:3]

    def _value_rows(self, rows: slice | np.ndarray, full: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(equity, IM, MM, worst-case exposure) for the given ledger rows.

        ``exposure`` takes, per instrument, the side with more lots. Under an asymmetric regime
        (VaR, SPAN or portfolio scenarios after a one-sided move, hedges across instruments) that
        is not always the state needing most margin: the other side can need more (a short after a
        gap up, with a resting bid that outsizes it), and so can the positions alone (orders that
        would hedge them may never fill). Rows with orders are therefore also margined on the
        other side and on their positions (statelessly) and keep the largest requirement -- found
        by the episode fuzzer: accounts sat below their own positions' MM, never liquidated.

        A range of rows (a full re-valuation) reads the house's kept matrices (``self.book``)
        instead of building them from the ledger."""
        if isinstance(rows, slice):
            book = self.book
            book.refresh()
            exposure = book.exposure[rows]
            req = book.requirements(rows, self.marks.market_state(self.world.now), full)
            with_orders = np.flatnonzero(book.has_orders[rows])
            accounts = with_orders + rows.start
        else:
            exposure = self.exposure(rows)
            req = self.requirements(exposure, full)
            bids, asks = self.venue.open_bids[rows], self.venue.open_asks[rows]
            with_orders = np.flatnonzero(((bids + asks) != 0).any(axis=1))  # up != down somewhere
            accounts = rows[with_orders]
        im, mm = req.im * self.scale, req.mm * self.scale
        if with_orders.size:
            chosen = exposure[with_orders]
            held = self.ledger.position[accounts]
            up = held + self.venue.open_bids[accounts]
            other = np.where(chosen == up, held - self.venue.open_asks[accounts], up)
            for alternative in (other, held):
                alt = self.requirements(alternative.astype(np.float64))
                im[with_orders] = np.maximum(im[with_orders], alt.im * self.scale)
                mm[with_orders] = np.maximum(mm[with_orders], alt.mm * self.scale)
        return self.equities(rows), im, mm, exposure

    def equities(self, rows: slice | np.ndarray) -> np.ndarray:
        """Equity (collateral after haircuts + positions at mark) of the given ledger rows, minor
        units -- a new array."""
        ledger = self.ledger
        cash = ledger.cash[rows]
        collateral = cash[:, 0].astype(np.float64) if cash.shape[1] == 1 else self._collateral(cash)
        if isinstance(rows, slice):  # the kept float copy: the same product without converting the ints
            self.book.refresh()
            held = self.book.held[rows]
        else:
            held = ledger.position[rows]
        # .dot: a fraction of @'s overhead on a matrix-vector product
        return collateral + held.dot(self.marks.ticks * ledger.tick_value)

    def _collateral(self, cash: np.ndarray) -> np.ndarray:
        """Collateral value in quote minor units at the published prices, after haircuts."""
        return self.ledger.value_cash(cash, self.asset_prices())

    def account_equity(self, account: int) -> float:
        """One account's equity (collateral after haircuts + positions at mark), minor units."""
        ledger = self.ledger
        if ledger.cash.shape[1] == 1:
            collateral = float(ledger.cash.item(account, 0))
        else:
            index = self.oracle.index
            prices = [1.0 if column is None else index.item(column) for column in self._asset_source]
            collateral = ledger.value_account_cash(account, prices)
        if self._one_instrument:  # the same product the dot below makes, without its array overhead
            mark_value = self.marks.ticks.item(0) * ledger.tick_value.item(0)
            return collateral + ledger.position.item(account, 0) * mark_value
        return collateral + float(ledger.position[account].dot(self.marks.ticks * ledger.tick_value))

    # ------------------------------------------------------------------ events
    def on_publication(self, which: np.ndarray) -> None:
        self.oracle_seq += 1
        self.marks.sample_books()
        self.marks.update(self.world.now)
        self.attribution.on_marks_moved(self.asset_prices() if self.ledger.cash.shape[1] > 1 else None)
        self.venue.reference[:] = self.marks.ticks.tolist()  # the venue's price bands follow the marks
        if self._continuous:
            self.revalue_all(Cause(CauseKind.ORACLE, self.oracle_seq, self.world.now))

    def on_fill(self, fill: Fill, maker_fee: int, taker_fee: int) -> None:
        """Settle a fill into the ledger, charge fees, and re-check both parties."""
        ledger = self.ledger
        if fill.aggressor_side > 0:
            buyer, seller = fill.taker_account, fill.maker_account
        else:
            buyer, seller = fill.maker_account, fill.taker_account
        instrument, price, lots = fill.instrument, fill.price, fill.size
        ledger.trade(buyer, seller, instrument, price, lots)
        ledger.charge_fee(fill.maker_account, maker_fee)
        ledger.charge_fee(fill.taker_account, taker_fee)
        if self._continuous and (int(fill.flags) & _FORCED_FILL or not self.config.enforcement.pre_trade_check):
            # the slack shortcut below counts what a fill cost, not how it moved the requirement;
            # that is safe only for fills the pre-trade check margined. A liquidation or ADL fill
            # (at a price away from the mark), or any fill with the check off, re-checks both
            # parties now -- not at the next publication, which may never come
            self._recheck(buyer)
            self._recheck(seller)
        elif self._continuous:
            if max(buyer, seller) >= self.slack.shape[0]:
                self._grow()
            # what trading away from the mark cost each side, plus its fee, eats into its slack
            away = (price - self.marks.ticks.item(instrument)) * lots * ledger.tick_value.item(instrument)
            buyer_fee = maker_fee if buyer == fill.maker_account else taker_fee
            seller_fee = taker_fee if buyer == fill.maker_account else maker_fee
            self._spend_slack(buyer, max(away, 0.0) + buyer_fee)
            self._spend_slack(seller, max(-away, 0.0) + seller_fee)

    def _spend_slack(self, account: int, cost: float) -> None:
        slack = self.slack.item(account) - cost
        self.slack[account] = slack
        self.headroom[account] = self.headroom.item(account) - cost
        if slack <= 0.0:
            self._recheck(account)

    def _check_parties(self) -> None:
        dirty, self._dirty = self._dirty, set()
        self.revalue_accounts(dirty)

    def revalue_all(self, cause: Cause) -> None:
        """Re-value every trader account at once and act on the new states."""
        self._grow()
        rows = self.ledger.traders
        equity, im, mm, exposure = self._value_rows(rows, full=True)
        # gross notional of the same worst-case lots the IM was computed on: IM / gross is a rate
        gross = float(self.book.abs_exposure[rows].dot(self.marks.ticks * self.ledger.tick_value).sum())
        self.margin_samples.append((self.world.now, float(im.sum()), float(mm.sum()), float(equity.sum()), gross))
        self._apply(rows, equity, im, mm, exposure, cause)

    def revalue_accounts(self, accounts: "list[int] | set[int]") -> None:
        """Re-value some accounts now and act on them: after something moved their equity outside
        a fill or a mark update (a loss allocation), so that a breach it causes is seen at once."""
        rows = np.array(sorted(a for a in set(accounts) if a >= FIRST_TRADER), dtype=np.int64)
        if rows.size:
            self._grow()
            self._apply(rows, *self._value_rows(rows), Cause(CauseKind.ORACLE, self.oracle_seq, self.world.now))

    def _apply(self, rows: slice | np.ndarray, equity: np.ndarray, im: np.ndarray, mm: np.ndarray,
               exposure: np.ndarray, cause: Cause) -> None:
        """Record the new valuations of ``rows`` (a slice for a full re-valuation: views, not
        copies) and act on them: cancel the orders of accounts below the cancel level, start the
        liquidation of accounts below maintenance."""
        # the worst case is zero exactly when there is neither a position nor an order
        exposed = self.book.exposed[rows] if isinstance(rows, slice) else (exposure != 0).any(axis=1)
        cancel_at = cancel_threshold(im, mm, self.config.enforcement.cancel_level)
        state = classify(equity, im, mm, cancel_at, exposed)
        acting = np.flatnonzero(state >= _BELOW_CANCEL)
        self.equity[rows], self.im[rows], self.mm[rows] = equity, im, mm
        self.slack[rows] = equity - cancel_at
        self.headroom[rows] = np.where(state == 0, equity - im, -np.inf)
        self._hold_back_open_losses(rows)
        self.health[rows] = state
        self.attribution.valued(rows, equity, mm)
        if not acting.size:
            return
        ledger, venue = self.ledger, self.venue
        accounts = (np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows)[acting]
        pos = ledger.position[accounts]
        has_position = (pos != 0).any(axis=1)
        has_orders = ((venue.open_bids[accounts] + venue.open_asks[accounts]) > 0).any(axis=1)
        breach = (state[acting] >= _BELOW_MM) & (has_position | (equity[acting] < 0))
        engine = self.liquidations
        assert engine is not None
        # accounts going to liquidation have their orders cancelled by the liquidation itself;
        # the others below the cancel level (below maintenance too, when orders are all they
        # have) lose their orders now
        for k in np.flatnonzero(~breach & has_orders).tolist():
            venue.cancel_all_now(int(accounts[k]))
        for k in np.flatnonzero(breach).tolist():
            account = int(accounts[k])
            if engine.is_active(account):
                continue
            at_breach, mm_at_breach = float(equity[acting[k]]), float(mm[acting[k]])
            why = self.attribution.explain(account, at_breach, mm_at_breach, pos[k], engine.liquidations_of(account))
            engine.start(account, at_breach, mm_at_breach, self._cause(why, cause), why)

    def _cause(self, why: BreachExplanation, exogenous: Cause) -> Cause:
        """The cause a breach is recorded with: its parent liquidation when the but-for rule makes it
        endogenous (see ``clearing.attribution``), otherwise what re-valued it."""
        if not why.endogenous:
            return exogenous
        kind = CauseKind.LOSS_ALLOCATION if why.parent_by_allocation else CauseKind.LIQUIDATION
        return Cause(kind, why.parent, self.world.now)

    def note_charge(self, account: int, liq_id: int, equity_effect: float) -> None:
        """A loss allocation for liquidation ``liq_id`` changed ``account``'s equity by
        ``equity_effect`` (minor units, negative = a loss). The caller re-values the charged accounts
        (``revalue_accounts``) once all are charged."""
        self.attribution.charge(account, liq_id, equity_effect)

    def _recheck(self, account: int) -> None:
        """Continuous enforcement: re-value ``account`` later in this instant (with the others)."""
        if not self._continuous or account < FIRST_TRADER:
            return
        if account >= self.slack.shape[0]:
            self._grow()
        if not self._dirty:  # one re-check per instant, however many accounts it covers
            self.world.call_soon(self._check_parties)
        self._dirty.add(account)

    # ------------------------------------------------------------------ pre-trade check
    def pre_trade_check(self, account: int, instrument: int, side: int, price: int, lots: int) -> bool:
        """The venue's hook: accept only if equity, less what the order and the account's resting
        orders would lose against the mark if filled at their limit prices (their open loss; a
        gain is not counted -- until an order fills it is not equity), covers IM with the order in
        the worst case. An accepted order becomes part of the account's exposure, so the bounds
        the shortcut reads are lowered."""
        if account < FIRST_TRADER:
            return True
        if self.liquidations is not None and self.liquidations.is_active(account):
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
        ok, equity, open_loss, im = self._exact_check(account, instrument, side, price, lots, im)
        if ok and account < self.headroom.shape[0]:
            bound = equity - open_loss - im
            self.slack[account] = bound
            self.headroom[account] = bound if self.health.item(account) == 0 else -np.inf
        return ok

    def would_accept(self, account: int, instrument: int, side: int, price: int, lots: int) -> bool:
        """A what-if margin query (an exchange's margin calculator): the pre-trade check's answer
        now, changing nothing."""
        if self.liquidations is not None and self.liquidations.is_active(account):
            return False
        return self._exact_check(account, instrument, side, price, lots)[0]

    def _exact_check(self, account: int, instrument: int, side: int, price: int, lots: int,
                     im: float | None = None) -> tuple[bool, float, float, float]:
        """(accepted, equity now less its resting orders' open loss, the order's open loss, IM with
        the order -- computed unless given, minor units) for one account."""
        if im is None:
            exposure = self.exposure(np.array([account]), (instrument, side, lots))
            summed = self._summed_im(exposure[0].tolist()) if self._entry_im is not None else None
            im = (self._worst_im(account, exposure[0], instrument, side, lots) if summed is None else summed) \
                * self.scale
        equity = self.account_equity(account) - self._resting_open_loss(account)
        open_loss = self._open_loss(instrument, side, price, lots, self.marks.ticks.item(instrument))
        return equity - open_loss >= im, equity, open_loss, im

    def _worst_im(self, account: int, exposure: np.ndarray, instrument: int, side: int, lots: int) -> float:
        """IM (quote units) of the account with the order resting, as the valuation margins it
        (``_value_rows``): the largest of the larger-lots side, the other side, and the positions
        alone -- under a regime that is not symmetric in lots the side with fewer lots can need
        more (found by the episode fuzzer: a sell accepted as if a resting bid made the worst case
        a long, then filled into a short needing 250x the IM checked)."""
        held = self.ledger.position[account].astype(np.float64)
        bids = self.venue.open_bids[account].astype(np.float64)
        asks = self.venue.open_asks[account].astype(np.float64)
        if side > 0:
            bids[instrument] += lots
        else:
            asks[instrument] += lots
        up = held + bids
        other = np.where(exposure == up, held - asks, up)
        if np.array_equal(other, exposure):
            return float(self.requirements(exposure[None, :]).im[0])
        return float(self.requirements(np.vstack([exposure, other, held])).im.max())

    def _hold_back_open_losses(self, rows: slice | np.ndarray) -> None:
        """Take the open loss of resting orders priced through the marks off the headroom of the
        re-valued accounts: the exact pre-trade check holds it back, so the shortcut must too."""
        if not isinstance(rows, slice):
            for account in rows.tolist():
                loss = self._resting_open_loss(account)
                if loss:
                    self.headroom[account] -= loss
            return
        # a full re-valuation: only the orders priced through each mark have an open loss
        ticks, tick_value = self.marks.ticks, self.ledger.tick_value
        losses: dict[int, float] = {}
        for i, book in enumerate(self.venue.books):
            mark = ticks.item(i)
            in_ticks: dict[int, float] = {}
            for order in book.orders_through(mark):
                loss = order.side * (order.price - mark) * order.size
                in_ticks[order.account] = in_ticks.get(order.account, 0.0) + loss
            for account, loss in in_ticks.items():
                losses[account] = losses.get(account, 0.0) + loss * tick_value.item(i)
        for account, loss in losses.items():
            if rows.start <= account < rows.stop:
                self.headroom[account] -= loss

    def _resting_open_loss(self, account: int) -> float:
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

    def _open_loss(self, instrument: int, side: int, price: int, lots: int, mark: float) -> float:
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
        position, bids_of, asks_of = self.ledger.position, self.venue.open_bids, self.venue.open_asks
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
        open_loss = self._open_loss(instrument, side, price, lots, mark)
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

    # ------------------------------------------------------------------ withdrawals
    def settle_variation_margin(self) -> None:
        """A variation-margin run: gains and losses since the last run are settled (become
        withdrawable)."""
        self.settled_ticks = self.marks.ticks.copy()

    def free_collateral(self, account: int) -> float:
        """What the account may withdraw now (minor units): equity above IM. With continuous
        variation margin that includes every unrealised gain -- as cross-margined venues allow, and as
        the Mango attack exploited; with interval settlement, gains since the last run are held back."""
        rows = np.array([account])
        equity, im, _mm = self.valuation(rows)
        free = float(equity[0] - im[0])
        if self.config.settlement.variation_margin == "interval":
            ledger = self.ledger
            unsettled = float(ledger.position[account] @ ((self.marks.ticks - self.settled_ticks) * ledger.tick_value))
            free -= max(unsettled, 0.0)
        return max(0.0, free)

    def withdraw(self, account: int, amount: int) -> int:
        """Pay out up to ``amount`` quote minor units within free collateral; returns what was paid."""
        if self.liquidations is not None and self.liquidations.is_active(account):
            return 0
        paid = min(int(amount), int(self.free_collateral(account)))
        if paid <= 0:
            return 0
        self.ledger.now = self.world.now
        self.ledger.withdraw(account, QUOTE, paid, allow_debt=True)
        self._apply(np.array([account]), *self._value_rows(np.array([account])),
                    Cause(CauseKind.ORACLE, self.oracle_seq, self.world.now))
        return paid

    # ------------------------------------------------------------------ funding and expiry
    def pay_funding(self, instrument: int) -> None:
        """Perpetual funding: longs pay shorts the premium of mark over index (less a dead band,
        capped at the contract's ``funding_cap``), as an integer amount per lot."""
        index_ticks = float(self.marks.index_ticks[instrument])
        if index_ticks <= 0:
            return
        premium = float(self.marks.basis_ticks[instrument]) / index_ticks
        dead = self.config.funding.premium_clamp
        rate = np.sign(premium) * max(abs(premium) - dead, 0.0)
        cap = self.table.instruments[instrument].funding_cap
        if cap is not None:
            rate = float(np.clip(rate, -cap, cap))
        per_lot = int(round(rate * index_ticks * int(self.ledger.tick_value[instrument])))
        self.ledger.now = self.world.now
        if self.ledger.pay_funding(instrument, per_lot):
            self.revalue_all(Cause(CauseKind.ORACLE, self.oracle_seq, self.world.now))

    def settle_expiry(self, instrument: int) -> None:
        """Final settlement at the index (options at intrinsic value); the book is closed."""
        ins = self.table.instruments[instrument]
        self.venue.halt(instrument)
        for account in self.venue.accounts_with_orders(instrument):
            self.venue.cancel_all_now(account, instrument)
        spot = float(self.oracle.index[self.table.underlying_index[instrument]])
        if ins.kind == InstrumentKind.OPTION:
            assert ins.strike is not None
            value = max(spot - ins.strike, 0.0) if ins.is_call else max(ins.strike - spot, 0.0)
        else:
            value = spot
        self.ledger.now = self.world.now
        self.ledger.settle_expiry(instrument, int(round(value / ins.tick_size)))
        self.revalue_all(Cause(CauseKind.ORACLE, self.oracle_seq, self.world.now))
