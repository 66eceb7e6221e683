"""The clearing house: settles fills, re-values accounts, enforces margin and starts liquidations.

On every oracle publication (``cadence='continuous'``) every account is re-valued at once:
equity (collateral after haircuts + positions at mark) against the regime's IM and MM, computed
on the *worst-case* positions (position plus resting orders on whichever side makes it larger), so
that cancelling orders can restore an account. On every fill the two parties are re-valued. With
``cadence='interval'`` the whole book of accounts is re-valued every ``interval`` seconds instead.

The house is valuation and enforcement; two components do the rest: ``bounds``
(``clearing.pretrade.PreTradeBounds``), the venue's pre-trade check -- an order that increases risk
is accepted only if equity, less what it would lose against the mark if filled at its limit price,
covers IM with the order in the worst case -- with the bounds that let most orders and fills skip a
margin computation; and ``settlement`` (``clearing.settlement.Settlement``): funding, expiry,
variation-margin runs and withdrawals. The house keeps its position matrices between
re-valuations (``book``, ``clearing.exposure.ExposureBook``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from clearing.attribution import BreachAttribution, BreachExplanation
from clearing.causality import Cause, CauseKind, Liquidator
from clearing.exposure import ExposureBook, margined_states, worst_case
from clearing.health import Health, cancel_threshold, classify
from sim.core.instruments import InstrumentTable
from clearing.ledger import FIRST_TRADER, QUOTE, Ledger, mark_value_of, row_equities
from clearing.margin.base import HistoryRegime, MarginRegime, Positions, Requirements
from clearing.pretrade import PreTradeBounds
from clearing.settlement import Settlement
from sim.core.orders import Fill, FillFlag
from clearing.config import ClearingConfig
from sim.core.phases import Phase

if TYPE_CHECKING:
    from sim.core.kernel import World
    from sim.market.mark import MarkPricer
    from sim.market.oracle import Oracle
    from sim.market.venue import Venue


_BELOW_CANCEL, _BELOW_MM = int(Health.BELOW_CANCEL), int(Health.BELOW_MM)  # numpy compares plain ints faster
# fills the clearing house forced (its own liquidations and ADL): their parties are handled by the
# liquidation engine, not re-checked. A plain int: IntFlag arithmetic runs in Python, per fill
_FORCED_FILL = int(FillFlag.LIQUIDATION | FillFlag.ADL)


# up to this many rows a valuation goes account by account in plain Python (where the regime has a
# one-account path): a fill's parties, a loss allocation's few counterparties. Measured on 12
# instruments, half the accounts with orders: 0.03 ms vs 0.23 ms for 2 rows, 0.18 vs 0.26 for 16,
# 0.41 vs 0.29 for 32 (process CPU, 200 calls each)
_FEW_ROWS = 16


def _larger(a: float, b: float) -> float:
    """``np.maximum(a, b)`` on two floats: the larger, NaN if either is NaN."""
    return b if (b > a or b != b) else a


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
        # moves whenever anything that values accounts may have changed outside their own ledger
        # rows and resting orders: a publication (marks, collateral prices, haircuts, the market
        # snapshot), a full re-valuation (a stateful regime's memory), a history row. A reader that
        # saw an account's rows, orders and this number unchanged knows its valuation is unchanged
        self.valuation_epoch = 0
        self.liquidations: "Liquidator | None" = None
        # at every full re-valuation: time, total IM, total MM, total equity, gross notional of the
        # worst-case lots IM is computed on (minor units)
        self.margin_samples: list[tuple[float, float, float, float, float]] = []
        assets = ledger.assets
        self._asset_source = [None if a.price_source is None else list(oracle.underlyings).index(a.price_source)
                              for a in assets]
        self._dirty: set[int] = set()  # fill parties waiting for their re-check
        self._continuous = config.enforcement.cadence == "continuous"
        self._one_instrument = len(table) == 1  # one-account sums have one term: plain scalars
        self._worst_case_dominates = bool(getattr(regime, "worst_case_dominates", False))
        # the regime has a one-account path (MarginRegime.account_requirements; it may still decline)
        self._one_account = type(regime).account_requirements is not MarginRegime.account_requirements
        # every account's worst-case lots, positions and order flags, kept between re-valuations
        # and rewritten only in the rows fills and orders touched (clearing.exposure)
        self.book = ExposureBook(ledger, venue.resting, regime)
        self.bounds = PreTradeBounds(self)  # the pre-trade check and its per-account bounds
        self.settlement = Settlement(self)  # funding, expiry, variation margin, withdrawals

    @property
    def revaluations(self) -> int:
        """Full re-valuations so far (each records one margin sample)."""
        return len(self.margin_samples)

    # ------------------------------------------------------------------ wiring
    def attach(self, liquidations: Liquidator) -> None:
        self.liquidations = liquidations
        self.venue.trade_listeners.add(self.on_fill, Phase.SETTLE)
        if self.config.enforcement.pre_trade_check:
            self.venue.risk_check = self.bounds.check
        self.oracle.listeners.add(self.on_publication, Phase.ENFORCE)
        if self.config.enforcement.cadence == "interval":
            iv = self.config.enforcement.interval
            self.world.every(iv, lambda: self.revalue_all(Cause(CauseKind.INTERVAL, self.oracle_seq, self.world.now)),
                             start=iv)
        self.settlement.schedule()
        if hasattr(self.regime, "update_history"):
            iv = self.config.history.row_interval
            self.world.every(iv, partial(self._append_history, self.regime), start=iv)

    def _append_history(self, regime: HistoryRegime) -> None:
        """A history-based regime's margin run: the new row moves every requirement, so under
        continuous enforcement everyone is re-valued now -- not at the next publication, which a
        flat price and a long heartbeat can put off past the end of the episode. ``regime``: the
        house's own, scheduled by :meth:`attach` only when it has ``update_history``."""
        self.valuation_epoch += 1
        regime.update_history(self.marks.index.copy())
        if self._continuous:
            self.revalue_all(Cause(CauseKind.INTERVAL, self.oracle_seq, self.world.now))

    def grow(self) -> None:
        """Size the house's per-account arrays to the ledger's: accounts opened after the house was
        built (the population, the no-feedback twin's absorber) get rows."""
        cap = self.ledger.cash.shape[0]
        if self.health.shape[0] < cap:
            for name in ("health", "equity", "im", "mm"):
                old = getattr(self, name)
                new = np.zeros(cap, dtype=old.dtype)
                new[: old.shape[0]] = old
                setattr(self, name, new)
            self.bounds.grow(cap)
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

    def requirements(self, exposure: np.ndarray, full: bool = False) -> Requirements:
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

    def account_valuation(self, account: int) -> tuple[float, float, float]:
        """``valuation(np.array([account]))`` as three floats, to the bit, in plain Python where the
        regime has a one-account path (``MarginRegime.account_requirements``): a liquidation
        re-values its one account at every step, and on one-row arrays the general path is ~30
        numpy calls of overhead (tests/clearing/test_account_valuation.py compares the two)."""
        values = self._account_values(account)
        if values is None:
            equity, im, mm = self.valuation(np.array([account]))
            return float(equity[0]), float(im[0]), float(mm[0])
        return values[0], values[1], values[2]

    def _account_values(self, account: int, with_equity: bool = True
                        ) -> tuple[float, float, float, list[float]] | None:
        """(equity, IM, MM, worst-case lots) of one account by ``_value_rows``' arithmetic on one
        row, in plain Python (equity 0.0 unless ``with_equity``); None when the regime has no
        one-account path."""
        if not self._one_account:
            return None
        market = self.marks.market_state(self.world.now)
        held, bids, asks, exposure = self._account_lots(account)
        regime, scale = self.regime, self.scale
        req = regime.account_requirements(exposure, market)
        if req is None:
            return None
        im, mm = req[0] * scale, req[1] * scale
        if not self._worst_case_dominates and any((b + a) != 0 for b, a in zip(bids, asks)):
            # an account with orders: also the other side and the positions alone (margined_states)
            other = [float(p - a) if e == p + b else float(p + b) for e, p, b, a in zip(exposure, held, bids, asks)]
            for alternative in (other, [float(p) for p in held]):
                alt = regime.account_requirements(alternative, market)
                if alt is None:
                    return None
                im, mm = _larger(im, alt[0] * scale), _larger(mm, alt[1] * scale)
        return self.account_equity(account) if with_equity else 0.0, im, mm, exposure

    def _account_lots(self, account: int) -> tuple[list[int], list[int], list[int], list[float]]:
        """One account's positions, resting bids and asks and worst-case lots (``worst_case`` on
        its row), as lists over instruments, in plain Python."""
        self.venue.resting.ensure(self.ledger.n_accounts)
        held = self.ledger.position[account].tolist()
        bids, asks = self.venue.open_bids[account].tolist(), self.venue.open_asks[account].tolist()
        # worst_case: up = held + bids, down = held - asks; |up| >= |down| exactly when up + down >= 0
        exposure = [float(p + b) if (p + b) + (p - a) >= 0 else float(p - a) for p, b, a in zip(held, bids, asks)]
        return held, bids, asks, exposure

    def _few_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """``_value_rows`` of a few rows (a fill's two parties, an ADL's counterparties): IM and MM
        account by account in plain Python (each row's requirement is its own arithmetic), equity
        by the same array call as the general path; None when the regime has no one-account path."""
        values = []
        for account in rows.tolist():
            v = self._account_values(account, with_equity=False)
            if v is None:
                return None
            values.append(v)
        _equity, im, mm, exposure = zip(*values)
        return (self.equities(rows), np.array(im, dtype=np.float64), np.array(mm, dtype=np.float64),
                np.array(exposure, dtype=np.float64).reshape(len(values), self.ledger.position.shape[1]))

    def covers_im_with(self, account: int, lots: np.ndarray) -> bool:
        """Whether ``account``'s equity covers the IM of its worst-case lots plus ``lots`` (a
        what-if: the backstop vault taking over a liquidated account's positions) -- the one-row
        array computation's answer, by the one-account path where the regime has one."""
        exposure = [e + extra for e, extra in zip(self._account_lots(account)[3], lots.tolist())]
        req = self.regime.account_requirements(exposure, self.marks.market_state(self.world.now))
        if req is None:
            rows = np.array([account])
            worst = self.exposure(rows)
            worst[0] += lots
            return bool(self.equities(rows)[0] >= self.requirements(worst).im[0] * self.scale)
        return self.account_equity(account) >= req[0] * self.scale

    def _value_rows(self, rows: slice | np.ndarray, full: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(equity, IM, MM, worst-case exposure) for the given ledger rows.

        Rows with orders are also margined (statelessly) on the other states of
        ``clearing.exposure.margined_states`` -- the other side, the positions alone -- and keep
        the largest requirement (unless the regime says those never need more:
        ``MarginRegime.worst_case_dominates``).

        A range of rows (a full re-valuation) reads the house's kept matrices (``self.book``)
        instead of building them from the ledger."""
        if not isinstance(rows, slice) and not full and 0 < rows.size <= _FEW_ROWS:
            few = self._few_rows(rows)
            if few is not None:
                return few
        if isinstance(rows, slice):
            book = self.book
            book.refresh()
            exposure = book.exposure[rows]
            req = book.requirements(rows, self.marks.market_state(self.world.now), full)
        else:
            exposure = self.exposure(rows)
            req = self.requirements(exposure, full)
        im, mm = req.im * self.scale, req.mm * self.scale
        if self._worst_case_dominates:  # the other states never need more (MarginRegime.worst_case_dominates)
            return self.equities(rows), im, mm, exposure
        if isinstance(rows, slice):
            with_orders = np.flatnonzero(self.book.has_orders[rows])
            accounts = with_orders + rows.start
        else:
            bids, asks = self.venue.open_bids[rows], self.venue.open_asks[rows]
            with_orders = np.flatnonzero(((bids + asks) != 0).any(axis=1))  # up != down somewhere
            accounts = rows[with_orders]
        if with_orders.size:
            held = self.ledger.position[accounts]
            for alternative in margined_states(exposure[with_orders], held, self.venue.open_bids[accounts],
                                               self.venue.open_asks[accounts]):
                alt = self.requirements(alternative.astype(np.float64))
                im[with_orders] = np.maximum(im[with_orders], alt.im * self.scale)
                mm[with_orders] = np.maximum(mm[with_orders], alt.mm * self.scale)
        return self.equities(rows), im, mm, exposure

    def equities(self, rows: slice | np.ndarray) -> np.ndarray:
        """Equity (collateral after haircuts + positions at mark) of the given ledger rows, minor
        units -- a new array. Each row's value has the bits ``account_equity`` gives its account:
        the same sums in the same order (``Ledger.value_cash`` / ``value_account_cash``,
        ``clearing.ledger.mark_value`` / ``mark_value_of``), the canonical ones, whichever rows
        are asked with it."""
        ledger = self.ledger
        held = None
        if isinstance(rows, slice):  # the kept float copy: the same product without converting the ints
            self.book.refresh()
            held = self.book.held[rows]
        prices = self.asset_prices() if ledger.cash.shape[1] > 1 else None
        return row_equities(ledger, rows, self.marks.ticks * ledger.tick_value, prices, held)

    def account_equity(self, account: int) -> float:
        """One account's equity (collateral after haircuts + positions at mark), minor units: to the
        bit ``equities``' value of its row (see there)."""
        ledger = self.ledger
        if ledger.cash.shape[1] == 1:
            collateral = float(ledger.cash.item(account, 0))
        else:
            index = self.oracle.index
            prices = [1.0 if column is None else index.item(column) for column in self._asset_source]
            collateral = ledger.value_account_cash(account, prices)
        if self._one_instrument:  # mark_value_of's one product, without its lists
            return collateral + ledger.position.item(account, 0) * (self.marks.ticks.item(0) * ledger.tick_value.item(0))
        return collateral + mark_value_of(ledger.position[account].tolist(),
                                          (self.marks.ticks * ledger.tick_value).tolist())

    # ------------------------------------------------------------------ events
    def on_publication(self, which: np.ndarray) -> None:
        self.oracle_seq += 1
        self.valuation_epoch += 1
        self.marks.sample_books()
        self.marks.update(self.world.now)
        self.book.refresh()  # the kept float positions, current (the re-valuation below reads them too)
        self.attribution.on_marks_moved(self.asset_prices() if self.ledger.cash.shape[1] > 1 else None,
                                        self.book.held)
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
        if maker_fee:  # charge_fee does nothing with a zero fee: two calls a fill spared without fees
            ledger.charge_fee(fill.maker_account, maker_fee)
        if taker_fee:
            ledger.charge_fee(fill.taker_account, taker_fee)
        if self._continuous and (int(fill.flags) & _FORCED_FILL or not self.config.enforcement.pre_trade_check):
            # the slack shortcut below counts what a fill cost, not how it moved the requirement;
            # that is safe only for fills the pre-trade check margined. A liquidation or ADL fill
            # (at a price away from the mark), or any fill with the check off, re-checks both
            # parties now -- not at the next publication, which may never come
            self._recheck(buyer)
            self._recheck(seller)
        elif self._continuous:
            if max(buyer, seller) >= self.health.shape[0]:
                self.grow()
            # what trading away from the mark cost each side, plus its fee, eats into its slack
            away = (price - self.marks.ticks.item(instrument)) * lots * ledger.tick_value.item(instrument)
            buyer_fee = maker_fee if buyer == fill.maker_account else taker_fee
            seller_fee = taker_fee if buyer == fill.maker_account else maker_fee
            bounds = self.bounds
            if bounds.spend(buyer, max(away, 0.0) + buyer_fee):
                self._recheck(buyer)
            if bounds.spend(seller, max(-away, 0.0) + seller_fee):
                self._recheck(seller)

    def _check_parties(self) -> None:
        dirty, self._dirty = self._dirty, set()
        self.revalue_accounts(dirty)

    def revalue_all(self, cause: Cause) -> None:
        """Re-value every trader account at once and act on the new states."""
        self.valuation_epoch += 1
        self.grow()
        rows = self.ledger.traders
        equity, im, mm, exposure = self._value_rows(rows, full=True)
        # gross notional of the same worst-case lots the IM was computed on: IM / gross is a rate.
        # From the book's kept per-instrument sums of |lots| (whole lots: exact), not a pass over
        # every row's lots at every publication
        gross = float(self.book.gross_lots(rows).dot(self.marks.ticks * self.ledger.tick_value))
        # np.add.reduce is what .sum() calls, without its Python wrapper
        total = np.add.reduce
        self.margin_samples.append((self.world.now, float(total(im)), float(total(mm)), float(total(equity)), gross))
        self._apply(rows, equity, im, mm, exposure, cause)

    def revalue_accounts(self, accounts: "Iterable[int]") -> None:
        """Re-value some accounts now and act on them: after something moved their equity outside
        a fill or a mark update (a loss allocation), so that a breach it causes is seen at once."""
        rows = np.array(sorted(a for a in set(accounts) if a >= FIRST_TRADER), dtype=np.int64)
        if rows.size:
            self.grow()
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
        acting = (state >= _BELOW_CANCEL).nonzero()[0]  # flatnonzero of a 1-d array, without its wrapper
        self.equity[rows], self.im[rows], self.mm[rows] = equity, im, mm
        self.bounds.valued(rows, equity, im, cancel_at, state)
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
        if account >= self.health.shape[0]:
            self.grow()
        if not self._dirty:  # one re-check per instant, however many accounts it covers
            self.world.call_soon(self._check_parties)
        self._dirty.add(account)

    def oracle_cause(self) -> Cause:
        """The cause of a re-valuation now that is not a breach's own: the latest publication."""
        return Cause(CauseKind.ORACLE, self.oracle_seq, self.world.now)

    # ------------------------------------------------------------------ a trader's margin desk
    # (agents.interfaces.MarginDesk: what agents may ask, beside would_accept, account_equity,
    # free_collateral and withdraw below)
    def in_liquidation(self, account: int) -> bool:
        return self.liquidations is not None and self.liquidations.is_active(account)

    def initial_margin_with(self, account: int, lots: np.ndarray) -> float:
        """The account's IM (minor units) if it also held ``lots``, taking the larger of +lots and
        -lots so an existing position is never assumed to net an offer down. Two what-if rows: the
        regime's market-wide memory (the VaR buffer, the open interest caps read) is read, not advanced."""
        held = self.exposure(np.array([account]))[0]
        return float(np.max(self.requirements(np.vstack([held + lots, held - lots])).im)) * self.scale

    def register_bidder(self, bidder: Any) -> None:
        """An auction bidder joins the engine's list (once)."""
        assert self.liquidations is not None, "bidders register after the liquidation engine is attached"
        self.liquidations.register_bidder(bidder)

    # ------------------------------------------------------------------ the components' public names
    def pre_trade_check(self, account: int, instrument: int, side: int, price: int, lots: int) -> bool:
        """The venue's pre-trade check (``PreTradeBounds.check``)."""
        return self.bounds.check(account, instrument, side, price, lots)

    def would_accept(self, account: int, instrument: int, side: int, price: int, lots: int) -> bool:
        """The pre-trade check's answer now, changing nothing (``PreTradeBounds.would_accept``)."""
        return self.bounds.would_accept(account, instrument, side, price, lots)

    def free_collateral(self, account: int) -> float:
        """What the account may withdraw now (``Settlement.free_collateral``)."""
        return self.settlement.free_collateral(account)

    def withdraw(self, account: int, amount: int) -> int:
        """Pay out within free collateral (``Settlement.withdraw``)."""
        return self.settlement.withdraw(account, amount)
