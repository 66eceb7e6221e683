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
class Requirements:
    """Initial and maintenance margin per account, in quote currency."""

    im: np.ndarray
    mm: np.ndarray


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
