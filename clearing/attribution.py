"""But-for breach attribution: what took an account below maintenance, and was it another liquidation?

Every account's equity change since its last valuation at or above maintenance is split into
channels (docs/METHODOLOGY.md, "Breach attribution"), all in quote minor units:

* ``index``      -- index moves on the positions held at each mark update (exact: accumulated at
                    every update with the positions of that moment; option marks count here whole);
* ``collateral`` -- price and haircut moves of non-quote collateral (exact, likewise);
* ``impact``     -- mark moves caused by liquidations' own trades on the books (``sim.market.impact``),
                    other accounts' liquidations only: each liquidation's part of the mark's impact
                    component, change since the last healthy valuation, times the positions held at
                    the breach;
* ``allocation`` -- loss allocations (ADL closing the account at the bankruptcy price instead of the
                    mark, socialised loss, assessments), each charged against the liquidation it
                    paid for;
* ``other``      -- the rest, exactly: other traders' basis moves, funding, fees, the account's own
                    trading, its own liquidation's impact.

The endogenous channels are ``impact`` and ``allocation``. A breach is endogenous only if they
lost the account a material amount and, without that loss, it would have stayed at or above
maintenance: ``loss = -(impact + allocation) > 0``, ``loss >= materiality x mm`` and
``equity + loss >= mm`` at the breach (``endogenous_rule``). Its parent is the liquidation whose
impact and allocations together cost it the most.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from clearing.ledger import Ledger

if TYPE_CHECKING:
    from sim.market.mark import MarkPricer


@dataclass(frozen=True, slots=True)
class BreachExplanation:
    """One breach's equity change since the account's last healthy valuation, by channel (minor units)."""

    equity_change_index: float = 0.0
    equity_change_collateral: float = 0.0
    equity_change_impact: float = 0.0
    equity_change_allocation: float = 0.0
    equity_change_other: float = 0.0
    mm_change: float = 0.0
    endogenous: bool = False
    parent: int = -1  # the liquidation that cost it most (endogenous breaches only)
    parent_by_allocation: bool = False  # the parent's share came mostly from a loss allocation


def endogenous_rule(equity: float, mm: float, impact: float, allocation: float, materiality: float) -> bool:
    """The but-for rule: the endogenous channels lost the account at least ``materiality`` x MM, and
    without that loss it would have stayed at or above maintenance."""
    endogenous_loss = -(impact + allocation)
    return endogenous_loss > 0.0 and endogenous_loss >= materiality * mm and equity + endogenous_loss >= mm


class _LevelHistory:
    """A liquidation's impact on each instrument's mark (ticks) after each mark update that changed it."""

    __slots__ = ("seqs", "levels")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.levels: list[np.ndarray] = []

    def at(self, seq: int, n: int) -> np.ndarray:
        k = bisect.bisect_right(self.seqs, seq) - 1
        return self.levels[k] if k >= 0 else np.zeros(n)


class BreachAttribution:
    """Channel accumulators per account, reset at each valuation at or above maintenance."""

    # The per-account columns, one row an account: ``_grow_to`` creates them by name (``_resize``'s
    # setattr) in ``__init__`` and at every growth, so they are set before any use.
    index: np.ndarray  # float64: index P&L since the last healthy valuation
    collateral: np.ndarray  # float64: collateral price and haircut P&L since then
    equity0: np.ndarray  # float64: equity at the last healthy valuation
    mm0: np.ndarray  # float64: maintenance margin at the last healthy valuation
    seq0: np.ndarray  # int64: mark update of the last healthy valuation
    seen: np.ndarray  # bool: valued at or above maintenance at least once

    def __init__(self, ledger: Ledger, marks: "MarkPricer", capacity: int, materiality: float = 0.0) -> None:
        self.ledger = ledger
        self.marks = marks
        self.materiality = materiality
        self.updates = 0  # mark updates so far
        self._grow_to(capacity, fresh=True)
        self._index_ticks = marks.index_ticks.copy()
        self._collateral_price: np.ndarray | None = None  # effective price per asset (positive, negative balances)
        # liquidation id -> history of its impact on the marks; ids alive now, and ids whose impact
        # ended (with the update it ended at, in that order)
        self._history: dict[int, _LevelHistory] = {}
        self._alive: set[int] = set()
        self._ended: list[tuple[int, int]] = []
        # account -> {liquidation id: equity effect of the allocations charged for it (negative = loss)}
        self._charged: dict[int, dict[int, float]] = {}

    # ------------------------------------------------------------------ state
    _FLOAT_COLUMNS = ("index", "collateral", "equity0", "mm0")

    def _grow_to(self, capacity: int, fresh: bool = False) -> None:
        """(Re)size the per-account columns to ``capacity`` rows, keeping what they hold."""
        for name, dtype in ((n, np.float64) for n in self._FLOAT_COLUMNS):
            self._resize(name, capacity, dtype, fresh)
        self._resize("seq0", capacity, np.int64, fresh)  # mark update of the last healthy valuation
        self._resize("seen", capacity, np.bool_, fresh)  # valued at or above maintenance at least once

    def _resize(self, name: str, capacity: int, dtype: type, fresh: bool) -> None:
        new: np.ndarray = np.zeros(capacity, dtype=dtype)
        if not fresh:
            old = getattr(self, name)
            new[: old.shape[0]] = old
        setattr(self, name, new)

    def ensure(self, capacity: int) -> None:
        if self.index.shape[0] < capacity:
            self._grow_to(capacity)

    # ------------------------------------------------------------------ events
    def on_marks_moved(self, asset_prices: np.ndarray | None, held: np.ndarray) -> None:
        """The marks (and the oracle's collateral prices) just changed: add every account's index and
        collateral P&L on what it holds now, and note the liquidations' impact levels. ``held``: the
        ledger's positions as float64, rows from 0, current (the clearing house's kept copy,
        ``ExposureBook.held``) -- the ledger's int64 positions would be converted at every publication."""
        self.updates += 1
        ledger, marks = self.ledger, self.marks
        n = ledger.n_accounts
        self.ensure(ledger.cash.shape[0])
        d_index = marks.index_ticks - self._index_ticks
        if np.logical_or.reduce(d_index):  # .any() without its Python wrapper (once a publication)
            self.index[:n] += held[:n].dot(d_index * ledger.tick_value)
            self._index_ticks = marks.index_ticks.copy()
        if asset_prices is not None and ledger.cash.shape[1] > 1:
            self._collateral_moved(asset_prices)
        self._note_impact_levels()

    def _collateral_moved(self, asset_prices: np.ndarray) -> None:
        ledger = self.ledger
        per_minor = np.asarray(asset_prices, dtype=np.float64) * ledger.unit_scale
        price = np.stack([per_minor * ledger.haircut_keep, per_minor])  # what a balance is worth: held, owed
        before, self._collateral_price = self._collateral_price, price
        if before is None:
            return
        change = price - before
        if not change.any():
            return
        n = ledger.n_accounts
        cash = ledger.cash[:n].astype(np.float64)
        self.collateral[:n] += np.where(cash > 0, cash * change[0], cash * change[1]).sum(axis=1)

    def _note_impact_levels(self) -> None:
        marks = self.marks
        if not self._alive and not np.logical_or.reduce(marks.impact_ticks):
            return
        n = marks.impact_ticks.shape[0]
        now: dict[int, np.ndarray] = {}
        for i in np.flatnonzero(marks.impact_ticks).tolist():
            for liq_id, ticks in marks.impact_by_liquidation(i).items():
                now.setdefault(liq_id, np.zeros(n))[i] = ticks
        seq = self.updates
        for liq_id, level in now.items():
            history = self._history.get(liq_id)
            if history is None:
                history = self._history[liq_id] = _LevelHistory()
            if not history.levels or not np.array_equal(level, history.levels[-1]):
                history.seqs.append(seq)  # only when it changed: ``at`` finds the level in force
                history.levels.append(level)
        for liq_id in self._alive - now.keys():
            history = self._history[liq_id]
            history.seqs.append(seq)
            history.levels.append(np.zeros(n))
            self._ended.append((seq, liq_id))
        self._alive = set(now)

    def charge(self, account: int, liq_id: int, equity_effect: float) -> None:
        """A loss allocation for liquidation ``liq_id`` changed ``account``'s equity by
        ``equity_effect`` (minor units; negative = a loss)."""
        per = self._charged.setdefault(account, {})
        per[liq_id] = per.get(liq_id, 0.0) + equity_effect

    def valued(self, rows: slice | np.ndarray, equity: np.ndarray, mm: np.ndarray) -> None:
        """Accounts at or above maintenance in this valuation start their window again here."""
        ok = equity >= mm
        if isinstance(rows, slice) and rows.step is None and np.logical_and.reduce(ok):  # .all(), unwrapped
            # every account healthy (a calm market's every publication): the same values as the
            # selections below, stored without reading the old ones
            self.index[rows] = 0.0
            self.collateral[rows] = 0.0
            self.equity0[rows] = equity
            self.mm0[rows] = mm
            self.seq0[rows] = self.updates
            self.seen[rows] = True
            for account in [a for a in self._charged if rows.start <= a < rows.stop]:  # charged: few
                del self._charged[account]
            return
        self.index[rows] = np.where(ok, 0.0, self.index[rows])
        self.collateral[rows] = np.where(ok, 0.0, self.collateral[rows])
        self.equity0[rows] = np.where(ok, equity, self.equity0[rows])
        self.mm0[rows] = np.where(ok, mm, self.mm0[rows])
        self.seq0[rows] = np.where(ok, self.updates, self.seq0[rows])
        self.seen[rows] |= ok
        if self._charged:  # charged accounts are few: drop those valued healthy now
            accounts = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else np.asarray(rows)
            for account in np.intersect1d(accounts[ok], list(self._charged)).tolist():
                del self._charged[account]

    # ------------------------------------------------------------------ the rule
    def explain(self, account: int, equity: float, mm: float, position: np.ndarray,
                own_liquidations: set[int]) -> BreachExplanation:
        """Split ``account``'s equity change since its last healthy valuation and apply the rule."""
        if not self.seen.item(account):
            # never valued at or above maintenance: nothing to explain against
            return BreachExplanation()
        seq0 = self.seq0.item(account)
        tick_value = self.ledger.tick_value
        impact_by: dict[int, float] = {}
        n = tick_value.shape[0]
        for liq_id in self._moved_since(seq0):
            if liq_id in own_liquidations:
                continue  # an account's own liquidation moving the book is not contagion
            history = self._history[liq_id]
            change = history.at(self.updates, n) - history.at(seq0, n)
            effect = float(position.dot(change * tick_value))
            if effect:
                impact_by[liq_id] = effect
        charged = {k: v for k, v in self._charged.get(account, {}).items() if k not in own_liquidations}
        index, collateral = self.index.item(account), self.collateral.item(account)
        impact, allocation = sum(impact_by.values()), sum(charged.values())
        change = equity - self.equity0.item(account)
        endogenous = endogenous_rule(equity, mm, impact, allocation, self.materiality)
        parent, by_allocation = -1, False
        if endogenous:
            cost = {k: impact_by.get(k, 0.0) + charged.get(k, 0.0) for k in impact_by.keys() | charged.keys()}
            parent = min(cost, key=lambda k: (cost[k], k))
            by_allocation = charged.get(parent, 0.0) < impact_by.get(parent, 0.0)
        return BreachExplanation(
            equity_change_index=index,
            equity_change_collateral=collateral,
            equity_change_impact=impact,
            equity_change_allocation=allocation,
            equity_change_other=change - index - collateral - impact - allocation,
            mm_change=mm - self.mm0.item(account),
            endogenous=endogenous,
            parent=parent,
            parent_by_allocation=by_allocation,
        )

    def _moved_since(self, seq0: int) -> list[int]:
        """Liquidations whose impact level may differ now from what it was at update ``seq0``."""
        k = bisect.bisect_right(self._ended, (seq0, 1 << 62))
        return sorted(self._alive | {liq_id for _seq, liq_id in self._ended[k:]})

