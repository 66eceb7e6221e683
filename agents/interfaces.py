"""What a trader may see and ask of the clearing house: the interfaces agents are built with.

Agents are written against these declarations, not against ``clearing.house.ClearingHouse``,
``clearing.ledger.Ledger`` or ``clearing.isolated.IsolatedMargin``: a margin desk answers what-if
questions, pays out free collateral and takes auction bidders' registrations; the account book is
read, never written. The clearing objects satisfy them structurally (tests/agents/test_interfaces.py
checks that every declared member exists on them).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class MarginDesk(Protocol):
    """The clearing house as a trader's margin desk (all amounts in quote minor units)."""

    # every account's equity and maintenance requirement at its last valuation (read-only: the
    # leverage monitors scan their group's rows at each publication)
    equity: np.ndarray
    mm: np.ndarray

    def would_accept(self, account: int, instrument: int, side: int, price: int, lots: int) -> bool:
        """Whether the pre-trade check would accept this order now (side-effect free)."""
        ...

    def account_equity(self, account: int) -> float: ...

    def free_collateral(self, account: int) -> float: ...

    def withdraw(self, account: int, amount: int) -> int:
        """Pay out up to ``amount`` within free collateral; returns what was paid."""
        ...

    def in_liquidation(self, account: int) -> bool: ...

    def initial_margin_with(self, account: int, lots: np.ndarray) -> float:
        """The account's IM if it also held ``lots`` (either sign: the larger of the two)."""
        ...

    def register_bidder(self, bidder: Any) -> None:
        """Offer ``bidder`` the positions of accounts liquidated by auction."""
        ...


class AccountBook(Protocol):
    """Balances and positions, read-only: rows are accounts, columns assets or instruments."""

    cash: np.ndarray
    position: np.ndarray
    tick_value: np.ndarray

    def average_entry_ticks(self, account: int, instrument: int) -> float: ...


class IsolatedDesk(Protocol):
    """Isolated margin (``standard_isolated``): one sub-account per (owner, instrument), funded
    from its owner's free collateral."""

    def account_for(self, owner: int, instrument: int) -> int: ...

    def accounts_of(self, owner: int) -> list[int]: ...

    def positions(self, owner: int) -> np.ndarray: ...

    def owner_equity(self, owner: int) -> float: ...

    def can_fund(self, owner: int, instrument: int, side: int, price: int, lots: int) -> bool: ...

    def set_leverage(self, owner: int, instrument: int, leverage: float) -> None: ...
