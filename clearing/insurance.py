"""The insurance fund: first layer of loss absorption (METHODS.md sections 7 and 8).

It lives in the ledger's ``INSURANCE_FUND`` row (quote asset). Income is liquidation fees
(``collect``); outgo is covering bankrupt accounts' deficits (``cover``), never beyond what it holds
and, when a per-market cap is set, never beyond that market's cap on total payouts. Every change is
a ``ledger.transfer`` (or a ``ledger.deposit`` for seed capital), and every change appends
``(ledger.now, balance)`` to ``history`` for the fund-balance path in reports.
"""

from __future__ import annotations

from clearing.ledger import QUOTE, Ledger, SystemAccount

__all__ = ["InsuranceFund"]

_FUND = int(SystemAccount.INSURANCE_FUND)


class InsuranceFund:
    """Insurance fund on a ledger, with optional caps on what it pays per market (instrument id).

    ``cap_per_market[m]`` bounds the *total* the fund will ever pay out for market ``m`` (income
    collected there does not raise it); markets absent from the dict, or ``cap_per_market=None``,
    are limited only by the balance.
    """

    __slots__ = ("ledger", "cap_per_market", "paid", "collected", "history")

    def __init__(self, ledger: Ledger, cap_per_market: dict[int, int] | None = None) -> None:
        for market, cap in (cap_per_market or {}).items():
            if int(cap) < 0:
                raise ValueError(f"insurance cap for market {market} must be >= 0, got {cap}")
        self.ledger = ledger
        self.cap_per_market = {int(k): int(v) for k, v in (cap_per_market or {}).items()}
        self.paid: dict[int, int] = {}
        self.collected: dict[int, int] = {}
        self.history: list[tuple[float, int]] = [(float(ledger.now), self.balance())]

    def balance(self) -> int:
        """Quote minor units held by the fund."""
        return int(self.ledger.cash[_FUND, QUOTE])

    def available(self, market: int) -> int:
        """What the fund would pay for ``market`` now: min(balance, cap - paid so far), >= 0."""
        avail = max(self.balance(), 0)
        cap = self.cap_per_market.get(int(market))
        if cap is not None:
            avail = min(avail, cap - self.paid.get(int(market), 0))
        return max(avail, 0)

    def seed(self, amount: int) -> None:
        """Capitalise the fund with fresh money (a ledger deposit into the fund's row)."""
        self.ledger.deposit(_FUND, QUOTE, int(amount))
        self._record()

    def collect(self, account: int, amount: int, market: int, reason: str = "liquidation fee") -> int:
        """Move ``amount`` (>= 0) from ``account`` into the fund as income for ``market``."""
        amount = int(amount)
        if amount < 0:
            raise ValueError(f"insurance fund collects non-negative amounts, got {amount}")
        if amount:
            self.ledger.transfer(int(account), _FUND, QUOTE, amount, reason)
            self.collected[int(market)] = self.collected.get(int(market), 0) + amount
            self._record()
        return amount

    def cover(self, account: int, amount: int, market: int, reason: str = "insurance cover") -> int:
        """Pay up to ``amount`` into the bankrupt ``account``; returns what was paid.

        Pays ``min(amount, available(market))``; the rest is the caller's to pass on to the next
        layer (ADL, socialised loss, waterfall, bad debt).
        """
        amount = int(amount)
        if amount < 0:
            raise ValueError(f"cover amount must be non-negative, got {amount}")
        pay = min(amount, self.available(market))
        if pay:
            self.ledger.transfer(_FUND, int(account), QUOTE, pay, reason)
            self.paid[int(market)] = self.paid.get(int(market), 0) + pay
            self._record()
        return pay

    def total_paid(self) -> int:
        return sum(self.paid.values())

    def total_collected(self) -> int:
        return sum(self.collected.values())

    def _record(self) -> None:
        self.history.append((float(self.ledger.now), self.balance()))
