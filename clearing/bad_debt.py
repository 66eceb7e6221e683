"""Bad debt: the deficit no layer absorbed, moved to the ledger's ``BAD_DEBT`` row.

After an account is fully closed and every loss-absorption layer has paid what it could, a negative
quote balance may remain. ``record_bad_debt`` moves it to the ``BAD_DEBT`` row with one balanced
transfer, so the account ends at exactly zero, ``BAD_DEBT`` holds the loss as a negative balance
(``ledger.bad_debt()`` reads it back as a positive number) and ``ledger.check()`` still holds:
the loss is recorded, never dropped.
"""

from __future__ import annotations

from clearing.ledger import FIRST_TRADER, QUOTE, Ledger, SystemAccount

__all__ = ["record_bad_debt"]


def record_bad_debt(ledger: Ledger, account: int, reason: str = "bad debt") -> int:
    """Write off ``account``'s negative quote cash to ``BAD_DEBT``; returns the amount (>= 0).

    Only a *final* deficit is written off: the account must hold no positions and no positive
    balance of another collateral asset (that would still be sold to cover it). Otherwise -- or
    when its quote cash is not negative -- nothing moves and 0 is returned; the deficit stays in
    the account, visible to the next re-valuation, so no loss is ever lost.
    """
    account = int(account)
    if account < FIRST_TRADER or account >= ledger.n_accounts:
        raise ValueError(f"account {account} is not a trader account")
    cash = int(ledger.cash[account, QUOTE])
    if cash >= 0:
        return 0
    if ledger.position[account].any():
        return 0
    if any(ledger.cash[account, k] > 0 for k in range(len(ledger.assets)) if k != QUOTE):
        return 0
    deficit = -cash
    ledger.transfer(int(SystemAccount.BAD_DEBT), account, QUOTE, deficit, reason)
    return deficit
