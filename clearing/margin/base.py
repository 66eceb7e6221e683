"""The margin-regime interface: requirements for every account at once.

Positions are an accounts x instruments matrix of signed lots. Most accounts hold a few of many
instruments, so the matrix is also kept in compressed-sparse-row form; scenario regimes multiply
it by an instruments x scenarios P&L matrix and take a worst case per row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from clearing.instruments import InstrumentTable, MarketState


@dataclass(slots=True)
class Positions:
    """Signed lots, accounts x instruments, with a lazily built CSR view (numpy only)."""

    dense: np.ndarray  # float64 (A, I)
    _csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    # Derived index structures (regroupings of the CSR entries) keyed by their grouping; like
    # ``_csr`` they assume ``dense`` is not mutated in place after first use.
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, lots: np.ndarray | list) -> "Positions":
        arr = np.atleast_2d(np.asarray(lots, dtype=np.float64))
        return cls(arr)

    @classmethod
    def from_coo(cls, n_accounts: int, n_instruments: int, account: np.ndarray, instrument: np.ndarray,
                 lots: np.ndarray) -> "Positions":
        dense = np.zeros((n_accounts, n_instruments), dtype=np.float64)
        np.add.at(dense, (account, instrument), lots)
        return cls(dense)

    @property
    def n_accounts(self) -> int:
        return self.dense.shape[0]

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr, instrument indices, lots) of the non-zero entries, row-major."""
        if self._csr is None:
            rows, cols = np.nonzero(self.dense)
            indptr = np.zeros(self.dense.shape[0] + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=self.dense.shape[0]), out=indptr[1:])
            self._csr = (indptr, cols.astype(np.int64), self.dense[rows, cols])
        return self._csr

    def scale(self, factor: float) -> "Positions":
        return Positions(self.dense * factor)


@dataclass(slots=True)
class PositionRequirements:
    """Per-position IM/MM aligned with the CSR entries of a :class:`Positions` (isolated margin)."""

    indptr: np.ndarray  # (A+1,) row pointers
    instrument: np.ndarray  # (nnz,) instrument of each entry
    lots: np.ndarray  # (nnz,) signed lots
    im: np.ndarray  # (nnz,)
    mm: np.ndarray  # (nnz,)


@dataclass(slots=True)
class Requirements:
    """Initial and maintenance margin per account, in quote currency.

    ``positions`` is filled by regimes that margin each position separately (isolated margin);
    the account totals ``im``/``mm`` are then the per-account sums of it.
    """

    im: np.ndarray
    mm: np.ndarray
    positions: PositionRequirements | None = None


def worst_loss_per_account(positions: Positions, pnl: np.ndarray) -> np.ndarray:
    """max over scenarios of -(positions @ pnl), floored at zero.

    ``pnl`` is instruments x scenarios, the P&L of one long lot. Uses the sparse form: each non-zero
    position contributes one row of ``pnl`` scaled by its size, summed per account with reduceat --
    no Python loop over accounts.
    """
    indptr, cols, lots = positions.csr()
    n = positions.n_accounts
    out = np.zeros(n, dtype=np.float64)
    if cols.size == 0:
        return out
    contrib = pnl[cols] * lots[:, None]
    nonempty = np.flatnonzero(indptr[1:] > indptr[:-1])
    summed = np.add.reduceat(contrib, indptr[nonempty], axis=0)
    out[nonempty] = np.maximum(-summed.min(axis=1), 0.0)
    return out


@dataclass(slots=True, frozen=True)
class Segments:
    """The CSR entries of a :class:`Positions` regrouped into (account, group) segments.

    ``order`` permutes the CSR entries so that entries of one (account, group) pair are
    contiguous (accounts ascending, then groups ascending); ``starts`` are the segment starts in
    the permuted order, ``row``/``group`` the account and group of each segment. ``cols``/``lots``
    are the permuted instrument indices and lots (precomputed for the hot path).
    """

    order: np.ndarray
    starts: np.ndarray
    row: np.ndarray
    group: np.ndarray
    cols: np.ndarray
    lots: np.ndarray


def segments_by_group(positions: Positions, group_of_instrument: np.ndarray, n_groups: int) -> Segments:
    """Regroup the CSR entries by (account, group of instrument); cached on ``positions``.

    O(nnz log nnz) the first time (a stable sort on the combined key), O(1) afterwards. When
    groups are non-decreasing in instrument index the CSR order is already grouped and no sort
    is done.
    """
    group_of_instrument = np.asarray(group_of_instrument, dtype=np.int64)
    key = ("segments", n_groups, group_of_instrument.tobytes())
    hit = positions._cache.get(key)
    if hit is not None:
        return hit
    indptr, cols, lots = positions.csr()
    rows = np.repeat(np.arange(positions.n_accounts, dtype=np.int64), np.diff(indptr))
    g = group_of_instrument[cols]
    combined = rows * max(n_groups, 1) + g
    if combined.size and np.any(combined[1:] < combined[:-1]):
        order = np.argsort(combined, kind="stable")
        combined = combined[order]
    else:
        order = np.arange(combined.size, dtype=np.int64)
    if combined.size:
        starts = np.flatnonzero(np.concatenate(([True], combined[1:] != combined[:-1])))
    else:
        starts = np.zeros(0, dtype=np.int64)
    seg_key = combined[starts]
    out = Segments(order=order, starts=starts, row=seg_key // max(n_groups, 1), group=seg_key % max(n_groups, 1),
                   cols=cols[order], lots=lots[order])
    positions._cache[key] = out
    return out


def segment_sums(positions: Positions, values: np.ndarray, group_of_instrument: np.ndarray,
                 n_groups: int) -> tuple[Segments, np.ndarray]:
    """Per (account, group) sums of ``lots x values[instrument]``.

    ``values`` is instruments x K (e.g. scenario P&L per long lot); returns the segments and a
    (n_segments, K) array. Vectorised: one gather, one ``np.add.reduceat``.
    """
    seg = segments_by_group(positions, group_of_instrument, n_groups)
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    if seg.cols.size == 0:
        return seg, np.zeros((0, values.shape[1]), dtype=values.dtype)
    contrib = values[seg.cols]
    contrib *= seg.lots.astype(values.dtype, copy=False)[:, None]
    return seg, np.add.reduceat(contrib, seg.starts, axis=0)


def worst_loss_per_group(positions: Positions, pnl: np.ndarray, group_of_instrument: np.ndarray,
                         n_groups: int) -> np.ndarray:
    """(A, n_groups) array: max over scenarios of the group's loss, floored at zero."""
    seg, summed = segment_sums(positions, pnl, group_of_instrument, n_groups)
    out = np.zeros((positions.n_accounts, n_groups), dtype=np.float64)
    if summed.shape[0]:
        out[seg.row, seg.group] = np.maximum(-summed.min(axis=1), 0.0)
    return out


def per_account(n_accounts: int, row: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum per-segment (or per-entry) values into a per-account vector."""
    return np.bincount(row, weights=values, minlength=n_accounts).astype(np.float64, copy=False)


class MarginRegime(ABC):
    """A margin methodology. Implementations are vectorised over accounts."""

    name: str = "abstract"

    def __init__(self, table: InstrumentTable) -> None:
        self.table = table

    @abstractmethod
    def requirements(self, positions: Positions, market: MarketState) -> Requirements:
        """IM and MM per account for the given positions and market state."""

    @abstractmethod
    def breakdown(self, lots: np.ndarray, market: MarketState) -> dict[str, float]:
        """Named components of one account's requirement (keys include 'im' and 'mm')."""
