"""Isolated margin: each isolated position in its own sub-account, funded from its owner's account.

This is how dYdX v4 runs isolated markets (each isolated position is held in its own subaccount,
collateral is transferred into it from the parent subaccount when the position is opened or
increased, and back when it is closed), and it is what isolation means on every venue: a position
has its own collateral, breaches and is liquidated on its own, and when it goes bankrupt its
deficit is the loss layers' (insurance fund, ADL, ...) -- never the owner's other collateral.

Because every isolated position *is* an account, the clearing house, the liquidation engine and the
loss absorber need nothing special: they see accounts. What this module does:

* ``account_for(owner, instrument)``: the owner's sub-account for that instrument (opened on first
  use; the owner's own account holds only collateral in isolated mode);
* funding: it stands in front of the clearing house as the venue's pre-trade check, so when a
  sub-account's risk-increasing order (or amend) reaches the matching engine it first moves into the
  sub-account what the order needs to pass -- the sub-account's IM with the order in the worst case
  (its resting orders included), plus the order's open loss, less its equity -- times ``funding``,
  from the owner's quote cash first and then its other collateral at haircut value, never more than
  the owner has; then the clearing house checks as usual (an underfunded order is refused);
* ``sweep``: after a fill or a cancel leaves a sub-account flat with no resting orders, its cash
  goes back to the owner (a bankrupt sub-account's deficit has by then been absorbed);
* ``owner_equity``, ``positions``: the owner's totals across its account and its sub-accounts (what
  an agent sizes by).

``funding`` 1.0 funds a position with exactly the IM its orders need: the most leverage the
regime allows, which is what an isolated position at the venue's maximum leverage holds. An owner
that picks a leverage for a position (``set_leverage``, as a trader sets it on the venue's order
form) has it funded to its worst-case notional / that leverage instead, when that is more.
"""

from __future__ import annotations

from sim.core.phases import Phase
from typing import TYPE_CHECKING

import numpy as np

from clearing.ledger import QUOTE, Ledger

if TYPE_CHECKING:
    from clearing.house import ClearingHouse
    from sim.core.kernel import World
    from sim.core.orders import Fill
    from sim.market.venue import Venue

__all__ = ["IsolatedMargin"]


class IsolatedMargin:
    """Sub-accounts per (owner, instrument), funded on demand and swept back when idle."""

    def __init__(self, world: "World", ledger: Ledger, house: "ClearingHouse", venue: "Venue",
                 funding: float = 1.0) -> None:
        if funding < 1.0:
            raise ValueError(f"funding must be >= 1 (a position needs at least its IM), got {funding}")
        self.world = world
        self.ledger = ledger
        self.house = house
        self.venue = venue
        self.funding = funding
        self.sub: dict[tuple[int, int], int] = {}  # (owner, instrument) -> sub-account
        self.owner_of: dict[int, tuple[int, int]] = {}  # sub-account -> (owner, instrument)
        self.subs_of: dict[int, list[int]] = {}  # owner -> its sub-accounts, in opening order
        self.leverage: dict[tuple[int, int], float] = {}  # (owner, instrument) -> chosen leverage
        self.funded = 0  # quote minor units moved into sub-accounts (value at haircut), in total
        self.swept = 0  # and back
        self._pending: set[int] = set()
        venue.trade_listeners.add(self.on_fill, Phase.ENFORCE)  # tops up / sweeps sub-accounts
        self._house_check = venue.risk_check

    def install(self) -> None:
        """Stand in front of the venue's pre-trade check (call once the clearing house has plugged in)."""
        self._house_check = self.venue.risk_check
        self.venue.risk_check = self.pre_trade_check

    # ------------------------------------------------------------------ accounts
    def account_for(self, owner: int, instrument: int) -> int:
        """The sub-account holding ``owner``'s isolated position in ``instrument``."""
        key = (owner, instrument)
        sub = self.sub.get(key)
        if sub is None:
            sub = self.ledger.open_account()
            self.sub[key] = sub
            self.owner_of[sub] = key
            self.subs_of.setdefault(owner, []).append(sub)
            self.venue.resting.ensure(self.ledger.n_accounts)  # the house grows its own rows when it meets it
        return sub

    def accounts_of(self, owner: int) -> list[int]:
        """The owner's own account and its sub-accounts."""
        return [owner, *self.subs_of.get(owner, [])]

    def owner_equity(self, owner: int) -> float:
        """Equity across the owner's account and its sub-accounts (minor units)."""
        return sum(self.house.account_equity(a) for a in self.accounts_of(owner))

    def positions(self, owner: int) -> np.ndarray:
        """The owner's lots per instrument across its sub-accounts (and its own account)."""
        return self.ledger.position[self.accounts_of(owner)].sum(axis=0)

    # ------------------------------------------------------------------ funding
    def set_leverage(self, owner: int, instrument: int, leverage: float) -> None:
        """Fund ``owner``'s isolated position in ``instrument`` to notional / ``leverage`` (at least)."""
        if not leverage > 0:
            raise ValueError(f"leverage must be positive, got {leverage}")
        self.leverage[(owner, instrument)] = float(leverage)

    def shortfall(self, owner: int, instrument: int, side: int, price: int, lots: int,
                  chosen: bool = True) -> float:
        """What the sub-account lacks (minor units) for the order to pass the pre-trade check -- or,
        with ``chosen``, to hold notional / the owner's chosen leverage, when that is more.

        The IM, open loss and equity are the clearing house's exact check's own (IM as the
        valuation margins it, every side of the order's worst case; equity less the resting
        orders' open loss), so a funded order passes the check it is funded for."""
        house = self.house
        sub = self.account_for(owner, instrument)
        _ok, equity, open_loss, margin = house.bounds.exact_check(sub, instrument, side, price, lots)
        leverage = self.leverage.get((owner, instrument)) if chosen else None
        if leverage is not None:
            exposure = house.exposure(np.array([sub]), (instrument, side, lots))
            mark = house.marks.ticks.item(instrument)
            notional = abs(float(exposure[0, instrument])) * mark * self.ledger.tick_value.item(instrument)
            margin = max(margin, notional / leverage)
        return max(margin + open_loss - equity, 0.0)

    def pre_trade_check(self, account: int, instrument: int, side: int, price: int, lots: int) -> bool:
        """The venue's hook in isolated mode: fund a sub-account's order, then the house decides."""
        key = self.owner_of.get(account)
        if key is not None:
            engine = self.house.liquidations
            if engine is None or not engine.is_active(account):
                self.fund(key[0], instrument, side, price, lots)
        return self._house_check(account, instrument, side, price, lots)

    def fund(self, owner: int, instrument: int, side: int, price: int, lots: int) -> int:
        """Move into the sub-account what the order needs (x ``funding``); returns the value moved."""
        self.sweep_idle(owner)
        need = self.shortfall(owner, instrument, side, price, lots, chosen=False) * self.funding
        if (owner, instrument) in self.leverage:
            need = max(need, self.shortfall(owner, instrument, side, price, lots))
        if need <= 0:
            return 0
        return self._move(owner, self.sub[(owner, instrument)], need)

    def can_fund(self, owner: int, instrument: int, side: int, price: int, lots: int) -> bool:
        """Would the order pass once funded? (the what-if an agent sizes with: the pre-trade check's
        need, not the chosen leverage's, which is funded as far as the owner can)"""
        need = self.shortfall(owner, instrument, side, price, lots, chosen=False)
        return need <= self._free(owner)

    def _free(self, owner: int) -> float:
        """The owner's collateral (haircut value, minor units) it may move into a sub-account."""
        house, ledger = self.house, self.ledger
        prices = house.asset_prices()
        cash = ledger.cash[owner].astype(np.float64)
        value = np.maximum(cash, 0.0) * prices * ledger.unit_scale * ledger.haircut_keep
        return float(value.sum())

    def _move(self, source: int, target: int, value: float) -> int:
        """Transfer up to ``value`` (quote minor units at haircut value) of ``source``'s positive
        balances to ``target``: quote first, then the other assets in order. Returns the value moved."""
        ledger = self.ledger
        ledger.now = self.world.now
        prices = self.house.asset_prices()
        moved = 0.0
        for asset in range(ledger.cash.shape[1]):
            if moved >= value:
                break
            held = int(ledger.cash[source, asset])
            if held <= 0:
                continue
            per_minor = float(prices[asset] * ledger.unit_scale[asset] * ledger.haircut_keep[asset])
            if per_minor <= 0:
                continue
            amount = min(held, int(np.ceil((value - moved) / per_minor)))
            if amount > 0:
                ledger.transfer(source, target, asset, amount, "isolated margin")
                moved += amount * per_minor
        self.funded += int(moved)
        return int(moved)

    # ------------------------------------------------------------------ sweeping
    def on_fill(self, fill: "Fill", _maker_fee: int, _taker_fee: int) -> None:
        for account in (fill.maker_account, fill.taker_account):
            if account in self.owner_of and self.ledger.position.item(account, fill.instrument) == 0:
                if not self._pending:
                    self.world.call_soon(self._sweep_pending)
                self._pending.add(account)

    def _sweep_pending(self) -> None:
        pending, self._pending = sorted(self._pending), set()
        for sub in pending:
            self.sweep(sub)

    def sweep_idle(self, owner: int) -> None:
        """Return the collateral of the owner's flat sub-accounts with no resting orders (those
        holding a position are passed over in one look at the ledger, not one call each)."""
        subs = self.subs_of.get(owner)
        if not subs:
            return
        flat = ~self.ledger.position[subs].any(axis=1)
        for k in np.flatnonzero(flat).tolist():
            self.sweep(subs[k])

    def sweep(self, sub: int) -> None:
        """If ``sub`` is flat with no resting orders and not being liquidated, move its positive
        balances back to its owner."""
        ledger, venue = self.ledger, self.venue
        owner, _ = self.owner_of[sub]
        if ledger.position[sub].any():
            return
        if sub < venue.open_bids.shape[0] and (venue.open_bids[sub].any() or venue.open_asks[sub].any()):
            return
        engine = self.house.liquidations
        if engine is not None and engine.is_active(sub):
            return
        ledger.now = self.world.now
        for asset in range(ledger.cash.shape[1]):
            amount = int(ledger.cash[sub, asset])
            if amount > 0:
                ledger.transfer(sub, owner, asset, amount, "isolated margin released")
                if asset == QUOTE:
                    self.swept += amount
