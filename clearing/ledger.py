"""The exact ledger: cash per collateral asset, positions per instrument, every transfer balanced.

Cash is held in integer minor units (``Asset.decimals``), positions in integer lots. A trade moves
``price_ticks * lots * tick_value`` minor units of the settlement asset from buyer to seller and
``lots`` of the instrument from seller to buyer, so equity = cash + position x mark is always
marked to market (variation margin settles continuously) and nothing is created or lost.

System balances (insurance fund, fee pool, bad debt, CCP capital, default fund) are ordinary rows
of the cash matrix, so every flow between them and traders is one ``transfer``. ``check()`` proves:

    sum(trader cash) + insurance fund + fee pool + CCP capital + default fund + bad debt
        == deposits - withdrawals           (per asset, exactly)
    sum(positions) == 0                     (per instrument: open interest nets to zero)

where the bad-debt row holds, as a negative balance, every deficit that no layer absorbed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from clearing.instruments import Asset, Instrument


class SystemAccount(IntEnum):
    """Rows 0..4 of every ledger. Trader accounts start at ``FIRST_TRADER``."""

    INSURANCE_FUND = 0
    FEE_POOL = 1
    BAD_DEBT = 2
    CCP_CAPITAL = 3
    DEFAULT_FUND = 4


FIRST_TRADER = len(SystemAccount)
QUOTE = 0  # asset index of the quote / settlement currency


class LedgerError(AssertionError):
    """Conservation failed: the message says which asset or instrument and by how much."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """A recorded non-trade flow, kept for audit and metrics."""

    time: float
    source: int
    target: int
    asset: int
    amount: int
    reason: str


class Ledger:
    """Balances of every account; all mutation goes through balanced methods."""

    def __init__(self, assets: list[Asset] | tuple[Asset, ...], instruments: list[Instrument] | tuple[Instrument, ...],
                 capacity: int = 64) -> None:
        if not assets:
            raise ValueError("a ledger needs at least the quote asset")
        self.assets = tuple(assets)
        self.instruments = tuple(instruments)
        for ins in self.instruments:
            if ins.settlement_asset != self.assets[QUOTE].name:
                raise ValueError(f"instrument {ins.symbol} settles in {ins.settlement_asset}; "
                                 f"only the quote asset {self.assets[QUOTE].name} is supported")
        self.tick_value = np.array([ins.tick_value for ins in self.instruments], dtype=np.int64)
        # quote minor units per minor unit of each asset at a price of 1, and the share kept after haircut
        quote_decimals = self.assets[QUOTE].decimals
        self.unit_scale = np.array([10.0 ** (quote_decimals - a.decimals) for a in self.assets])
        self.haircut_keep = 1.0 - np.array([a.haircut for a in self.assets])
        self._unit_scale, self._haircut_keep = self.unit_scale.tolist(), self.haircut_keep.tolist()
        capacity = max(capacity, FIRST_TRADER + 1)
        n_assets, n_ins = len(self.assets), len(self.instruments)
        self.cash = np.zeros((capacity, n_assets), dtype=np.int64)
        self.position = np.zeros((capacity, n_ins), dtype=np.int64)
        self.entry_value = np.zeros((capacity, n_ins), dtype=np.int64)  # signed cost of open lots
        self.realised_pnl = np.zeros(capacity, dtype=np.int64)
        self.fees_paid = np.zeros(capacity, dtype=np.int64)
        self.funding_paid = np.zeros(capacity, dtype=np.int64)
        self.deposits = np.zeros(n_assets, dtype=np.int64)
        self.withdrawals = np.zeros(n_assets, dtype=np.int64)
        self.n_accounts = FIRST_TRADER
        self.flows: dict[str, int] = {}
        self.journal: list[Transfer] = []
        self.now = 0.0  # set by the owner so the journal is timestamped

    # ----------------------------------------------------------------- accounts
    def open_account(self) -> int:
        """A new trader account with no cash and no positions; returns its id."""
        if self.n_accounts == self.cash.shape[0]:
            self._grow()
        account = self.n_accounts
        self.n_accounts += 1
        return account

    def _grow(self) -> None:
        cap = self.cash.shape[0] * 2
        for name in ("cash", "position", "entry_value"):
            old = getattr(self, name)
            new = np.zeros((cap, old.shape[1]), dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)
        for name in ("realised_pnl", "fees_paid", "funding_paid"):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    @property
    def traders(self) -> slice:
        return slice(FIRST_TRADER, self.n_accounts)

    # ----------------------------------------------------------------- cash flows
    def deposit(self, account: int, asset: int, amount: int) -> None:
        if amount < 0:
            raise ValueError(f"deposit amount must be non-negative, got {amount}")
        self.cash[account, asset] += amount
        self.deposits[asset] += amount

    def withdraw(self, account: int, asset: int, amount: int, allow_debt: bool = False) -> None:
        """Pay ``amount`` out of the system. ``allow_debt`` lets the balance go negative -- a loan
        against the account's other collateral and positions, which the clearing house grants only
        within free margin."""
        if amount < 0:
            raise ValueError(f"withdrawal amount must be non-negative, got {amount}")
        if not allow_debt and self.cash[account, asset] < amount:
            raise ValueError(f"account {account} holds {int(self.cash[account, asset])} of asset {asset}, "
                             f"cannot withdraw {amount}")
        self.cash[account, asset] -= amount
        self.withdrawals[asset] += amount

    def transfer(self, source: int, target: int, asset: int, amount: int, reason: str) -> None:
        """Move ``amount`` minor units from ``source`` to ``target`` (either may go negative)."""
        amount = int(amount)
        if amount == 0:
            return
        self.cash[source, asset] -= amount
        self.cash[target, asset] += amount
        self.flows[reason] = self.flows.get(reason, 0) + amount
        self.journal.append(Transfer(self.now, source, target, asset, amount, reason))

    def charge_fee(self, account: int, amount: int) -> None:
        """A trading fee to the fee pool (a negative amount is a rebate paid from it)."""
        if amount:
            self.cash[account, QUOTE] -= amount
            self.cash[SystemAccount.FEE_POOL, QUOTE] += amount
            self.fees_paid[account] += amount

    # ----------------------------------------------------------------- trading
    def trade(self, buyer: int, seller: int, instrument: int, price_ticks: int, lots: int) -> None:
        """Settle one fill: cash from buyer to seller, lots from seller to buyer."""
        notional = price_ticks * lots * self.tick_value.item(instrument)
        cash = self.cash
        cash[buyer, QUOTE] = cash.item(buyer, QUOTE) - notional
        cash[seller, QUOTE] = cash.item(seller, QUOTE) + notional
        self._move_position(buyer, instrument, lots, notional)
        self._move_position(seller, instrument, -lots, -notional)

    def _move_position(self, account: int, instrument: int, lots: int, value: int) -> None:
        """Add ``lots`` bought for ``value`` (both signed) and book realised PnL on any closed part."""
        held = self.position.item(account, instrument)
        cost = self.entry_value.item(account, instrument)
        after = held + lots
        if held == 0 or (held > 0) == (lots > 0):
            self.entry_value[account, instrument] = cost + value
        else:
            closed = min(abs(lots), abs(held))
            # Cost of the closed part, pro rata; integer division keeps the remainder in the open part.
            closed_cost = cost * closed // abs(held) if cost >= 0 else -((-cost) * closed // abs(held))
            closed_value = value * closed // abs(lots) if value >= 0 else -((-value) * closed // abs(lots))
            # Closing a long: sold for -closed_value, bought for closed_cost.
            self.realised_pnl[account] = self.realised_pnl.item(account) - closed_value - closed_cost
            remaining_cost = cost - closed_cost
            if after == 0:
                remaining_cost = 0
            elif (after > 0) != (held > 0):  # flipped: the rest of the trade opens the new side
                remaining_cost = value - closed_value
            self.entry_value[account, instrument] = remaining_cost
        self.position[account, instrument] = after

    def average_entry_ticks(self, account: int, instrument: int) -> float:
        held = int(self.position[account, instrument])
        if held == 0:
            return float("nan")
        return int(self.entry_value[account, instrument]) / (held * int(self.tick_value[instrument]))

    # ----------------------------------------------------------------- periodic settlement
    def pay_funding(self, instrument: int, per_lot: int) -> int:
        """Longs pay shorts ``per_lot`` minor units per lot (negative: shorts pay longs).

        Because positions net to zero, sum(position * per_lot) is exactly zero. Returns the total
        paid by the paying side.
        """
        if per_lot == 0:
            return 0
        n = self.n_accounts
        flow = self.position[:n, instrument] * per_lot
        self.cash[:n, QUOTE] -= flow
        self.funding_paid[:n] += flow
        return int(np.abs(flow).sum() // 2)

    def settle_expiry(self, instrument: int, settle_ticks: int) -> None:
        """Close every position at the settlement price (final variation margin) and flatten."""
        n = self.n_accounts
        lots = self.position[:n, instrument].copy()
        value = lots * settle_ticks * int(self.tick_value[instrument])
        self.cash[:n, QUOTE] += value
        self.realised_pnl[:n] += value - self.entry_value[:n, instrument]
        self.position[:n, instrument] = 0
        self.entry_value[:n, instrument] = 0

    # ----------------------------------------------------------------- valuation
    def position_value(self, marks_ticks: np.ndarray) -> np.ndarray:
        """Mark value of every account's positions in quote minor units (float), rows 0..n."""
        return self.position[: self.n_accounts].dot(np.asarray(marks_ticks, dtype=np.float64) * self.tick_value)

    def sync_haircuts(self) -> None:
        """Call after changing ``haircut_keep`` in place (dynamic haircuts): refreshes the plain-float
        copy that one-account valuations read."""
        self._haircut_keep = self.haircut_keep.tolist()

    def value_cash(self, cash: np.ndarray, asset_prices: np.ndarray, haircuts: bool = True) -> np.ndarray:
        """Rows of per-asset balances (minor units) in quote minor units at ``asset_prices`` (quote
        per unit of each asset), with haircuts on positive balances -- what is pledged, not what is
        owed."""
        c = np.asarray(cash, dtype=np.float64)
        price = np.asarray(asset_prices, dtype=np.float64) * self.unit_scale
        if not haircuts:
            return (c * price).sum(axis=1)
        return np.where(c > 0, c * (price * self.haircut_keep), c * price).sum(axis=1)

    def value_account_cash(self, account: int, asset_prices: list[float]) -> float:
        """``value_cash`` of one account, in plain floats: the same products, added in the same
        order (numpy adds a row of fewer than eight values one by one; longer rows go through
        ``value_cash``)."""
        if len(asset_prices) >= 8:
            return float(self.value_cash(self.cash[account][None, :], np.asarray(asset_prices))[0])
        total = 0.0
        for c, p, unit, keep in zip(self.cash[account].tolist(), asset_prices, self._unit_scale, self._haircut_keep):
            price = p * unit
            total += c * (price * keep) if c > 0 else c * price
        return total

    def collateral_value(self, asset_prices: np.ndarray, haircuts: bool = True) -> np.ndarray:
        """Every account's cash in all assets, in quote minor units (see ``value_cash``)."""
        return self.value_cash(self.cash[: self.n_accounts], asset_prices, haircuts)

    def gross_notional(self, marks_ticks: np.ndarray) -> np.ndarray:
        return np.abs(self.position[: self.n_accounts]).dot(np.asarray(marks_ticks, dtype=np.float64) * self.tick_value)

    # ----------------------------------------------------------------- proof
    def system_balances(self, asset: int = QUOTE) -> dict[str, int]:
        return {s.name.lower(): int(self.cash[s, asset]) for s in SystemAccount}

    def bad_debt(self, asset: int = QUOTE) -> int:
        """Deficits recorded and not absorbed by any layer (a positive number)."""
        return -int(self.cash[SystemAccount.BAD_DEBT, asset])

    def check(self) -> None:
        """Raise ``LedgerError`` unless cash is conserved per asset and open interest nets to zero."""
        n = self.n_accounts
        for k, asset in enumerate(self.assets):
            held = int(self.cash[:n, k].sum(dtype=np.int64))
            expected = int(self.deposits[k]) - int(self.withdrawals[k])
            if held != expected:
                traders = int(self.cash[FIRST_TRADER:n, k].sum(dtype=np.int64))
                raise LedgerError(
                    f"asset {asset.name}: balances sum to {held}, deposits - withdrawals = {expected} "
                    f"(off by {held - expected}); traders {traders}, system {self.system_balances(k)}")
        net = self.position[:n].sum(axis=0, dtype=np.int64)
        bad = np.flatnonzero(net)
        if bad.size:
            i = int(bad[0])
            raise LedgerError(f"instrument {self.instruments[i].symbol}: open interest nets to {int(net[i])}, not 0")
