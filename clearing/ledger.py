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

Exactness: the arrays are int64, and numpy wraps int64 silently. So every mutation is checked --
scalar paths compute in Python integers and store only a value inside int64, vector paths
(funding, expiry) bound the worst row before touching the arrays -- and a result outside the range
raises ``LedgerOverflowError`` (naming the account, the asset and the amount) with nothing changed.
``check()`` sums in Python integers, so it cannot pass on a wrapped balance. The episode schema
refuses up front the configurations whose amounts leave too little headroom (``sim.experiment.schema.episode``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from sim.core.instruments import Asset, Instrument


class SystemAccount(IntEnum):
    """Rows 0..4 of every ledger. Trader accounts start at ``FIRST_TRADER``."""

    INSURANCE_FUND = 0
    FEE_POOL = 1
    BAD_DEBT = 2
    CCP_CAPITAL = 3
    DEFAULT_FUND = 4


FIRST_TRADER = len(SystemAccount)
_FEE_POOL = int(SystemAccount.FEE_POOL)
QUOTE = 0  # asset index of the quote / settlement currency


MARK_VALUE_BLOCK = 8192  # rows per block: a block's columns stay in cache across the instrument passes


def mark_value(held: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each row's positions at mark: the sum over instruments j of ``held[:, j] * values[j]``
    (``values``: mark ticks x tick value), added in instrument order -- the canonical sum, which
    ``mark_value_of`` makes for one account with the same operations in plain floats, so an
    account's equity has the same bits whichever path values it. Not ``held.dot(values)``: BLAS
    blocks rows and may fuse multiply-adds, so a row's product over many rows need not equal its
    product alone (in random books of 2 to 40 instruments about half the rows differed in the
    last bit). Blocks of rows keep each block's columns in cache across the instrument passes."""
    n, k = held.shape
    out = np.empty(n)
    if k == 0:
        out.fill(0.0)
        return out
    first = values.item(0)
    if k == 1:
        np.multiply(held[:, 0], first, out=out)
        return out
    term = np.empty(min(n, MARK_VALUE_BLOCK))
    for start in range(0, n, MARK_VALUE_BLOCK):
        block = held[start:start + MARK_VALUE_BLOCK]
        acc = out[start:start + MARK_VALUE_BLOCK]
        t = term[: acc.shape[0]]
        np.multiply(block[:, 0], first, out=acc)
        for j in range(1, k):  # instruments, not accounts: a few passes over the block
            np.multiply(block[:, j], values.item(j), out=t)
            acc += t
    return out


def mark_value_of(position: list[int] | list[float], values: list[float]) -> float:
    """One account's ``mark_value``: the same products added in the same order, in plain floats."""
    if not values:
        return 0.0
    total = position[0] * values[0]
    for p, v in zip(position[1:], values[1:]):
        total += p * v
    return total


def row_equities(ledger: "Ledger", rows: np.ndarray | slice, values: np.ndarray,
                 asset_prices: np.ndarray | None = None, held: np.ndarray | None = None) -> np.ndarray:
    """Equity of ledger ``rows`` (collateral after haircuts + positions at mark, quote minor units),
    with the same bits for a row whichever rows are computed with it: the clearing house's
    ``equities`` (which calls this) and the ADL queue's ranking rely on that.

    ``values`` is each instrument's value of one lot at mark (minor units); ``asset_prices`` the
    collateral assets' prices (quote per unit; needed with more than one asset); ``held`` the
    rows' positions when the caller keeps a copy of them (default: the ledger's). The positions
    take the canonical sum (``mark_value`` above: instrument by instrument, not a BLAS product,
    whose bits for a row depend on where the row falls in the matrix), the collateral
    ``Ledger.value_cash`` (a reduction along each row)."""
    cash = ledger.cash[rows]
    collateral = cash[:, QUOTE].astype(np.float64) if cash.shape[1] == 1 else \
        ledger.value_cash(cash, np.asarray(asset_prices, dtype=np.float64))
    if held is None:
        held = ledger.position[rows]
    return collateral + mark_value(held, np.asarray(values, dtype=np.float64))


class LedgerError(AssertionError):
    """Conservation failed: the message says which asset or instrument and by how much."""


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class LedgerOverflowError(OverflowError):
    """A balance would leave the exact int64 range: the amounts are too large for the asset's
    decimals. Raised before the ledger changes."""


def _fits(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX


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
        # rows whose positions changed since the clearing house last read them: it keeps its
        # position matrices between re-valuations and updates only these rows (drained there)
        self.moved: set[int] = set()
        # the change log: every account whose cash, position or entry value changed, in order (ids
        # may repeat), so that a reader (the ADL queue) re-ranks only those instead of comparing
        # every row. Readers keep a cursor (``changes_since``). One append per changed row keeps it
        # O(1) a mutation; it is bounded: past ``_changes_limit`` entries -- and after a vector
        # settlement that touched every holder -- it is emptied and ``changes_base`` advanced past
        # it, and a reader whose cursor is behind that is told everything may have changed.
        self.changes: list[int] = []
        self.changes_base = 0
        self._changes_limit = max(1 << 16, 2 * capacity)

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

    # ----------------------------------------------------------------- change log
    def changes_since(self, cursor: int) -> tuple[list[int] | None, int]:
        """(accounts changed since ``cursor``, the new cursor). The list may repeat accounts and
        include system rows; None when the log was emptied past ``cursor`` (any account may have
        changed). A cursor of ``change_cursor()`` reads nothing."""
        start = cursor - self.changes_base
        end = self.changes_base + len(self.changes)
        if start < 0:
            return None, end
        return self.changes[start:], end

    def change_cursor(self) -> int:
        """The cursor at the end of the log: what a reader holds after reading everything."""
        return self.changes_base + len(self.changes)

    def _forget_changes(self) -> None:
        """Empty the log: every reader behind its end is told that anything may have changed."""
        self.changes_base += len(self.changes) + 1  # past every cursor, even with nothing logged
        self.changes = []

    @property
    def traders(self) -> slice:
        return slice(FIRST_TRADER, self.n_accounts)

    # ----------------------------------------------------------------- cash flows
    def _overflow(self, what: str, account: int, asset: int, value: int) -> LedgerOverflowError:
        a = self.assets[asset]
        return LedgerOverflowError(
            f"{what}: account {account}'s {a.name} balance would be {value} minor units, outside the exact "
            f"int64 range (+/-{INT64_MAX:.3e}); the amounts are too large for {a.name} with {a.decimals} decimals "
            f"(lower market decimals, capital or fund sizes)")

    def _add_cash(self, changes: tuple[tuple[int, int, int], ...], what: str) -> None:
        """Apply (account, asset, delta) changes in Python integers; all or nothing."""
        cash = self.cash
        new: dict[tuple[int, int], int] = {}
        for account, asset, delta in changes:  # the same cell twice (a self-trade) adds up
            key = (account, asset)
            value = new.get(key, cash.item(account, asset)) + delta
            if not _fits(value):
                raise self._overflow(what, account, asset, value)
            new[key] = value
        for (account, asset), value in new.items():
            cash[account, asset] = value
            self.changes.append(account)
        if len(self.changes) > self._changes_limit:
            self._forget_changes()

    def _add_total(self, totals: np.ndarray, asset: int, amount: int, what: str) -> None:
        value = totals.item(asset) + amount
        if not _fits(value):
            raise LedgerOverflowError(f"{what}: total {self.assets[asset].name} {what}s would be {value} minor "
                                      f"units, outside the exact int64 range")
        totals[asset] = value

    def deposit(self, account: int, asset: int, amount: int) -> None:
        amount = int(amount)
        if amount < 0:
            raise ValueError(f"deposit amount must be non-negative, got {amount}")
        if not _fits(self.deposits.item(asset) + amount):
            raise self._overflow("deposit", account, asset, self.deposits.item(asset) + amount)
        self._add_cash(((account, asset, amount),), "deposit")
        self._add_total(self.deposits, asset, amount, "deposit")

    def withdraw(self, account: int, asset: int, amount: int, allow_debt: bool = False) -> None:
        """Pay ``amount`` out of the system. ``allow_debt`` lets the balance go negative -- a loan
        against the account's other collateral and positions, which the clearing house grants only
        within free margin."""
        amount = int(amount)
        if amount < 0:
            raise ValueError(f"withdrawal amount must be non-negative, got {amount}")
        if not allow_debt and self.cash.item(account, asset) < amount:
            raise ValueError(f"account {account} holds {int(self.cash[account, asset])} of asset {asset}, "
                             f"cannot withdraw {amount}")
        if not _fits(self.withdrawals.item(asset) + amount):
            raise self._overflow("withdrawal", account, asset, self.withdrawals.item(asset) + amount)
        self._add_cash(((account, asset, -amount),), "withdrawal")
        self._add_total(self.withdrawals, asset, amount, "withdrawal")

    def transfer(self, source: int, target: int, asset: int, amount: int, reason: str) -> None:
        """Move ``amount`` minor units from ``source`` to ``target`` (either may go negative)."""
        amount = int(amount)
        if amount == 0:
            return
        self._add_cash(((source, asset, -amount), (target, asset, amount)), f"transfer ({reason})")
        self.flows[reason] = self.flows.get(reason, 0) + amount
        self.journal.append(Transfer(self.now, source, target, asset, amount, reason))

    def charge_fee(self, account: int, amount: int) -> None:
        """A trading fee to the fee pool (a negative amount is a rebate paid from it)."""
        if amount:
            amount = int(amount)
            cash, pool = self.cash, _FEE_POOL
            paid, after, pooled = (self.fees_paid.item(account) + amount, cash.item(account, QUOTE) - amount,
                                   cash.item(pool, QUOTE) + amount)
            if account == pool:
                after = pooled = cash.item(pool, QUOTE)
            if not (INT64_MIN <= paid <= INT64_MAX and INT64_MIN <= after <= INT64_MAX
                    and INT64_MIN <= pooled <= INT64_MAX):
                raise self._overflow("fee", account, QUOTE, after)
            cash[account, QUOTE] = after
            cash[pool, QUOTE] = pooled
            self.fees_paid[account] = paid
            changes = self.changes  # the fee pool is a system row: no reader ranks it
            changes.append(account)
            if len(changes) > self._changes_limit:
                self._forget_changes()

    # ----------------------------------------------------------------- trading
    def trade(self, buyer: int, seller: int, instrument: int, price_ticks: int, lots: int) -> None:
        """Settle one fill: cash from buyer to seller, lots from seller to buyer. Every new value is
        worked out (in Python integers) and checked before any is stored: all or nothing."""
        lots = int(lots)
        notional = int(price_ticks) * lots * self.tick_value.item(instrument)
        position, entry_value, realised = self.position, self.entry_value, self.realised_pnl
        bought = self._moved_position(instrument, lots, notional, position.item(buyer, instrument),
                                      entry_value.item(buyer, instrument), realised.item(buyer))
        before = bought if seller == buyer else (position.item(seller, instrument),
                                                 entry_value.item(seller, instrument), realised.item(seller))
        sold = self._moved_position(instrument, -lots, -notional, *before)
        cash = self.cash
        if seller != buyer:  # a self-trade moves no cash
            paid, received = cash.item(buyer, QUOTE) - notional, cash.item(seller, QUOTE) + notional
            if not (INT64_MIN <= paid <= INT64_MAX and INT64_MIN <= received <= INT64_MAX):
                raise self._overflow("trade", buyer if not INT64_MIN <= paid else seller, QUOTE,
                                     paid if not INT64_MIN <= paid else received)
            cash[buyer, QUOTE] = paid
            cash[seller, QUOTE] = received
        position[buyer, instrument], entry_value[buyer, instrument], realised[buyer] = bought
        position[seller, instrument], entry_value[seller, instrument], realised[seller] = sold
        self.moved.add(buyer)
        self.moved.add(seller)
        changes = self.changes
        changes.append(buyer)
        changes.append(seller)
        if len(changes) > self._changes_limit:
            self._forget_changes()

    def _moved_position(self, instrument: int, lots: int, value: int, held: int, cost: int, pnl: int
                        ) -> tuple[int, int, int]:
        """(position, entry value, realised PnL) of an account holding ``held`` lots that cost
        ``cost`` with realised PnL ``pnl``, after adding ``lots`` bought for ``value`` (both signed):
        realised PnL is booked on any closed part. Raises if a result leaves int64."""
        after = held + lots
        if held == 0 or (held > 0) == (lots > 0):
            entry = cost + value
        else:
            closed = min(abs(lots), abs(held))
            # Cost of the closed part, pro rata; integer division keeps the remainder in the open part.
            closed_cost = cost * closed // abs(held) if cost >= 0 else -((-cost) * closed // abs(held))
            closed_value = value * closed // abs(lots) if value >= 0 else -((-value) * closed // abs(lots))
            # Closing a long: sold for -closed_value, bought for closed_cost.
            pnl = pnl - closed_value - closed_cost
            entry = cost - closed_cost
            if after == 0:
                entry = 0
            elif (after > 0) != (held > 0):  # flipped: the rest of the trade opens the new side
                entry = value - closed_value
        if not (INT64_MIN <= after <= INT64_MAX and INT64_MIN <= entry <= INT64_MAX and INT64_MIN <= pnl <= INT64_MAX):
            raise LedgerOverflowError(f"trade in {self.instruments[instrument].symbol}: position {after}, entry value "
                                      f"{entry} or realised PnL {pnl} is outside the exact int64 range")
        return after, entry, pnl

    def average_entry_ticks(self, account: int, instrument: int) -> float:
        held = int(self.position[account, instrument])
        if held == 0:
            return float("nan")
        return int(self.entry_value[account, instrument]) / (held * int(self.tick_value[instrument]))

    # ----------------------------------------------------------------- periodic settlement
    def _bound_vector(self, rows: np.ndarray, delta_rows: np.ndarray, what: str) -> None:
        """Raise ``LedgerOverflowError`` unless ``rows + delta_rows`` (int64 arrays) stays inside
        int64 -- checked in floats with a margin far wider than their rounding, then exactly in
        Python integers for the rows near the edge."""
        near = np.abs(rows.astype(np.float64) + delta_rows.astype(np.float64)) > 2.0**62
        for i in np.flatnonzero(near):
            value = int(rows[i]) + int(delta_rows[i])
            if not _fits(value):
                raise LedgerOverflowError(f"{what}: row {int(i)} would be {value}, outside the exact int64 range; "
                                          f"the amounts are too large for the quote asset's decimals")

    def _exact_product(self, lots: np.ndarray, per_lot: int, what: str) -> np.ndarray:
        """``lots * per_lot`` in int64, refusing (instead of wrapping) a product outside int64."""
        if lots.size and float(np.abs(lots).max()) * abs(per_lot) > 2.0**62:
            for i in np.flatnonzero(np.abs(lots.astype(np.float64)) * abs(per_lot) > 2.0**62):
                if not _fits(int(lots[i]) * per_lot):
                    raise LedgerOverflowError(f"{what}: account {int(i)}'s {int(lots[i])} lots x {per_lot} = "
                                              f"{int(lots[i]) * per_lot}, outside the exact int64 range")
        return lots * per_lot

    def pay_funding(self, instrument: int, per_lot: int) -> int:
        """Longs pay shorts ``per_lot`` minor units per lot (negative: shorts pay longs).

        Because positions net to zero, sum(position * per_lot) is exactly zero. Returns the total
        paid by the paying side.
        """
        per_lot = int(per_lot)
        if per_lot == 0:
            return 0
        n = self.n_accounts
        what = f"funding on {self.instruments[instrument].symbol}"
        flow = self._exact_product(self.position[:n, instrument], per_lot, what)
        self._bound_vector(self.cash[:n, QUOTE], -flow, what)
        self._bound_vector(self.funding_paid[:n], flow, what)
        self.cash[:n, QUOTE] -= flow
        self.funding_paid[:n] += flow
        self._forget_changes()  # every holder's cash moved: readers start afresh, not from a list of them
        return sum(abs(v) for v in flow.tolist()) // 2

    def settle_expiry(self, instrument: int, settle_ticks: int) -> None:
        """Close every position at the settlement price (final variation margin) and flatten."""
        n = self.n_accounts
        lots = self.position[:n, instrument].copy()
        what = f"expiry of {self.instruments[instrument].symbol}"
        value = self._exact_product(lots, int(settle_ticks) * int(self.tick_value[instrument]), what)
        self._bound_vector(self.cash[:n, QUOTE], value, what)
        self._bound_vector(value, -self.entry_value[:n, instrument], what)  # the PnL below fits
        pnl = value - self.entry_value[:n, instrument]
        self._bound_vector(self.realised_pnl[:n], pnl, what)
        self.cash[:n, QUOTE] += value
        self.realised_pnl[:n] += pnl
        self.moved.update(np.flatnonzero(lots).tolist())
        self.position[:n, instrument] = 0
        self.entry_value[:n, instrument] = 0
        self._forget_changes()  # every holder moved

    # ----------------------------------------------------------------- valuation
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

    # ----------------------------------------------------------------- proof
    def system_balances(self, asset: int = QUOTE) -> dict[str, int]:
        return {s.name.lower(): int(self.cash[s, asset]) for s in SystemAccount}

    def bad_debt(self, asset: int = QUOTE) -> int:
        """Deficits recorded and not absorbed by any layer (a positive number)."""
        return -int(self.cash[SystemAccount.BAD_DEBT, asset])

    def check(self) -> None:
        """Raise ``LedgerError`` unless cash is conserved per asset and open interest nets to zero.

        Sums are taken in Python integers: an int64 sum wraps and would pass a wrapped ledger."""
        n = self.n_accounts
        for k, asset in enumerate(self.assets):
            column = self.cash[:n, k].tolist()
            held = sum(column)
            expected = int(self.deposits[k]) - int(self.withdrawals[k])
            if held != expected:
                traders = sum(column[FIRST_TRADER:])
                raise LedgerError(
                    f"asset {asset.name}: balances sum to {held}, deposits - withdrawals = {expected} "
                    f"(off by {held - expected}); traders {traders}, system {self.system_balances(k)}")
        for i, ins in enumerate(self.instruments):
            net = sum(self.position[:n, i].tolist())
            if net:
                raise LedgerError(f"instrument {ins.symbol}: open interest nets to {net}, not 0")
