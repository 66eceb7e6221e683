"""The clearing house's position matrices, kept between re-valuations and updated row by row.

A full re-valuation needs, for every account, its worst-case lots (position plus resting orders on
whichever side makes it larger), its positions as floats (equity), whether it has orders (the
other side and the positions alone are then margined too) and whether it is exposed at all.
Building these from the ledger and the venue's resting sizes reads every account x instrument cell
several times -- at 100,000 accounts x 50 instruments that took most of a re-valuation. Fills and
order changes touch few rows, and the ledger and the resting sizes note which (``Ledger.moved``,
``RestingSize.moved``), so :class:`ExposureBook` keeps the matrices and rewrites only those rows.

For regimes whose requirement of an account depends on that account's lots alone
(``MarginRegime.row_separable``) it also keeps the regime's grouping of the positions across
re-valuations: a *base* :class:`Positions` snapshot (its CSR and segment grouping built once and
cached on it) is re-used while few rows have changed since it was taken; the changed rows are
margined on their own (a small fresh ``Positions``) and replace the base's figures. Per account
the arithmetic is the same as a fresh computation's, in the same order, so the requirements are
identical to the bit (tests/clearing/test_exposure.py checks that against fresh computations).
Once more than ``REBASE_FRACTION`` of the rows have changed, the base is rebuilt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from clearing.ledger import Ledger
from clearing.margin.base import MarginRegime, Positions, Requirements

if TYPE_CHECKING:
    from sim.core.instruments import MarketState
    from sim.market.resting import RestingSize

__all__ = ["ExposureBook", "margined_states", "worst_case"]


def worst_case(pos: np.ndarray, bids: np.ndarray, asks: np.ndarray) -> np.ndarray:
    """Worst-case lots (float64): position plus resting buys or minus resting sells, whichever is
    larger in size."""
    return _sides(pos, bids, asks)[2].astype(np.float64)


def _sides(pos: np.ndarray, bids: np.ndarray, asks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(up, down, the larger in size) in lots: position plus resting buys, minus resting sells,
    and per cell whichever of the two is larger in size (``worst_case`` before its conversion)."""
    up, down = pos + bids, pos - asks
    # up >= down (order sizes are never negative), so |up| >= |down| exactly when up + down >= 0
    return up, down, np.where(up + down >= 0, up, down)


def margined_states(exposure: np.ndarray, held: np.ndarray, bids: np.ndarray, asks: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The states an account with orders is margined on besides its worst case ``exposure``: the
    other side (position plus the bids if the asks made the worst case, else minus the asks) and
    the positions alone; its requirement is the largest of the three.

    ``exposure`` takes, per instrument, the side with more lots. Under an asymmetric regime (VaR,
    SPAN or portfolio scenarios after a one-sided move, hedges across instruments) that is not
    always the state needing most margin: the other side can need more (a short after a gap up,
    with a resting bid that outsizes it), and so can the positions alone (orders that would hedge
    them may never fill) -- found by the episode fuzzer: accounts sat below their own positions'
    MM, never liquidated. The valuation (``ClearingHouse._value_rows``) and the pre-trade check
    (``PreTradeBounds._worst_im``) both margin these states."""
    up = held + bids
    return np.where(exposure == up, held - asks, up), held


class ExposureBook:
    """Per-row matrices of the ledger's accounts, refreshed only where positions or orders moved."""

    # a re-valuation margins the rows changed since the base on their own; past this fraction of
    # the rows it rebuilds the base instead (one grouping, ~the cost of margining every row twice)
    REBASE_FRACTION = 0.125
    # below this many rows a fresh computation costs less than the bookkeeping of base and delta
    MIN_ROWS = 4096
    BLOCK = 4096  # rows rewritten at a time

    def __init__(self, ledger: Ledger, resting: "RestingSize", regime: MarginRegime) -> None:
        self.ledger = ledger
        self.resting = resting
        self.regime = regime
        self.separable = bool(getattr(regime, "row_separable", False))
        n_ins = ledger.position.shape[1]
        self.exposure = np.zeros((0, n_ins))  # worst-case lots
        # |worst-case lots| summed over rows [0, rows_valid), per instrument: the gross notional's
        # lots, kept as rows are rewritten (whole lots: the float sums stay exact below 2**53)
        self.abs_lots = np.zeros(n_ins)
        self.held = np.zeros((0, n_ins))  # positions as float64 (equity)
        self.has_orders = np.zeros(0, dtype=bool)
        self.exposed = np.zeros(0, dtype=bool)  # a position or an order
        self.rows_valid = 0  # rows [0, rows_valid) are current but for those noted as moved
        self._base: Positions | None = None
        self._base_start = 0
        self._stale = np.zeros(0, dtype=bool)  # rows (from _base_start) changed since the base

    # ------------------------------------------------------------------ keeping the rows current
    def _fit(self, cap: int) -> None:
        if self.exposure.shape[0] >= cap:
            return
        for name in ("exposure", "held", "has_orders", "exposed"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def refresh(self) -> None:
        """Bring every row up to date: the rows the ledger or the venue noted as moved, and rows
        opened since the last refresh."""
        ledger, resting = self.ledger, self.resting
        n = ledger.n_accounts
        if self.rows_valid == n and not ledger.moved and not resting.moved:
            return  # nothing traded, no order changed (a second read in the same valuation)
        resting.ensure(n)
        self._fit(ledger.cash.shape[0])
        moved = ledger.moved | resting.moved
        ledger.moved.clear()
        resting.moved.clear()
        if self._base is None and n <= self.MIN_ROWS:
            # a small book (no base to mark stale): one pass over every row through slices costs
            # less than gathering and scattering the moved ones (the same values either way)
            self.rows_valid = n
            self._rewrite(slice(0, n))
            return
        rows = np.fromiter(moved, dtype=np.int64, count=len(moved))
        rows = np.sort(rows[rows < self.rows_valid])
        if n > self.rows_valid:
            rows = np.concatenate([rows, np.arange(self.rows_valid, n, dtype=np.int64)])
        self.rows_valid = n
        # in blocks of rows: the temporaries stay small (a whole book's at once spent most of a
        # first re-valuation faulting in fresh pages)
        for k in range(0, rows.size, self.BLOCK):
            self._rewrite(rows[k:k + self.BLOCK])
        if self._base is not None and rows.size:
            stale = rows - self._base_start  # rows past the base's end count as changed anyway
            self._stale[stale[(stale >= 0) & (stale < self._stale.shape[0])]] = True

    def _rewrite(self, rows: np.ndarray | slice) -> None:
        """``worst_case`` and the flags of ``rows``. A range (a small book's every row, at each
        publication) is written in place through views -- no temporaries to copy back -- and with
        one instrument a row's "any" is its only cell: at ~1,000 rows each numpy call's fixed cost
        is most of its cost, so fewer calls is the point (the same values either way)."""
        pos = self.ledger.position[rows]
        bids, asks = self.resting.bids[rows], self.resting.asks[rows]
        up, down, larger = _sides(pos, bids, asks)
        self.abs_lots -= np.abs(self.exposure[rows]).sum(axis=0)  # the rows' lots before, out of the sums
        if isinstance(rows, slice):
            exposure = self.exposure[rows]
            np.copyto(exposure, larger)  # int64 -> float64, as astype converts
        else:
            exposure = larger.astype(np.float64)
            self.exposure[rows] = exposure
        self.abs_lots += np.abs(exposure).sum(axis=0)
        self.held[rows] = pos
        ordered = up != down  # bids + asks != 0: some order rests
        if ordered.shape[1] == 1:
            self.has_orders[rows] = ordered[:, 0]
            self.exposed[rows] = exposure[:, 0] != 0
        else:
            self.has_orders[rows] = ordered.any(axis=1)
            self.exposed[rows] = (exposure != 0).any(axis=1)

    def gross_lots(self, rows: slice) -> np.ndarray:
        """|worst-case lots| of the rows in ``rows`` (a range inside [0, rows_valid), after
        ``refresh``) summed per instrument: the kept sums less the few rows outside the range (the
        system rows before the traders). Whole lots, so the same sums a fresh pass would give."""
        outside = np.abs(self.exposure[: rows.start]).sum(axis=0)
        if rows.stop < self.rows_valid:
            outside = outside + np.abs(self.exposure[rows.stop:self.rows_valid]).sum(axis=0)
        return self.abs_lots - outside

    # ------------------------------------------------------------------ requirements
    def requirements(self, rows: slice, market: "MarketState", full: bool) -> Requirements:
        """The regime's requirements on the worst-case lots of ``rows`` (a contiguous range, after
        ``refresh``). ``full``: every account in ledger order, which may advance a stateful regime's
        memory (see ``ClearingHouse.requirements``)."""
        exposure = self.exposure[rows]
        start, stop = rows.start, rows.stop
        if not self.separable or stop - start < self.MIN_ROWS:
            positions = Positions(exposure)
            return self.regime.requirements(positions, market) if full else \
                self.regime.requirements_stateless(positions, market)
        if (self._base is None or self._base_start != start
                or np.count_nonzero(self._stale) > self.REBASE_FRACTION * (stop - start)):
            self._base = Positions(exposure.copy(), reused=True)  # the snapshot its cached grouping describes
            self._base_start = start
            self._stale = np.zeros(stop - start, dtype=bool)
        elif self._stale.shape[0] < stop - start:  # accounts opened since the base: margined as changed
            grown = np.ones(stop - start, dtype=bool)
            grown[: self._stale.shape[0]] = self._stale
            self._stale = grown
        base = self.regime.requirements(self._base, market)
        im = np.zeros(stop - start)
        mm = np.zeros(stop - start)
        m = base.im.shape[0]
        im[:m], mm[:m] = base.im, base.mm
        changed = np.flatnonzero(self._stale)
        if changed.size:
            delta = self.regime.requirements(Positions(exposure[changed]), market)
            im[changed], mm[changed] = delta.im, delta.mm
        return Requirements(im=im, mm=mm)
