"""Resting order size per account, instrument and side, kept as arrays for vectorised margin.

The clearing house margins worst-case positions (position plus resting orders), so it needs, for
every account at once, how many lots it has resting on each side of each book. The venue updates
these arrays from what each book operation reports -- orders that rest, makers that fill, orders
that are cancelled or shrunk by self-trade prevention -- so no query walks the books.
"""

from __future__ import annotations

import numpy as np

from sim.core.orders import BUY, SubmitResult


class RestingSize:
    """``bids[a, i]`` / ``asks[a, i]``: lots account ``a`` has resting on instrument ``i``."""

    __slots__ = ("bids", "asks", "moved")

    def __init__(self, n_instruments: int, capacity: int = 64) -> None:
        self.bids = np.zeros((capacity, n_instruments), dtype=np.int64)
        self.asks = np.zeros((capacity, n_instruments), dtype=np.int64)
        # accounts whose resting sizes changed since the clearing house last read them (it keeps
        # worst-case position matrices between re-valuations; drained there)
        self.moved: set[int] = set()

    def _fit(self, account: int) -> None:
        cap = self.bids.shape[0]
        if account >= cap:
            new_cap = max(cap * 2, account + 1)
            for name in ("bids", "asks"):
                old = getattr(self, name)
                new = np.zeros((new_cap, old.shape[1]), dtype=old.dtype)
                new[:cap] = old
                setattr(self, name, new)

    def add(self, account: int, instrument: int, side: int, lots: int) -> None:
        if account >= self.bids.shape[0]:
            self._fit(account)
        book_side = self.bids if side == BUY else self.asks
        book_side[account, instrument] = book_side.item(account, instrument) + lots
        self.moved.add(account)

    def apply(self, instrument: int, account: int, side: int, result: SubmitResult, resting_before: int = 0) -> None:
        """Account for an accepted submit (``resting_before=0``) or amend of ``account``'s order."""
        delta = result.resting_size - resting_before
        if delta:
            self.add(account, instrument, side, delta)
        for fill in result.fills:
            self.add(fill.maker_account, instrument, -side, -fill.size)
        for _order_id, lots in result.stp_reduced:
            self.add(account, instrument, -side, -lots)

    def ensure(self, n_accounts: int) -> None:
        if n_accounts > self.bids.shape[0]:
            self._fit(n_accounts - 1)
