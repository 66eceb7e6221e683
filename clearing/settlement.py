"""Settlement: perpetual funding, expiry, variation-margin runs and withdrawals.

Each moves cash between accounts (or out of the system) through the ledger's balanced methods and
then has the clearing house re-value whoever it touched, so a breach it causes is acted on at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Protocol

import numpy as np

from sim.core.instruments import InstrumentKind
from clearing.ledger import QUOTE

if TYPE_CHECKING:
    from clearing.causality import Cause, Liquidator
    from clearing.config import ClearingConfig
    from clearing.ledger import Ledger
    from sim.core.instruments import InstrumentTable
    from sim.core.kernel import World
    from sim.market.mark import MarkPricer
    from sim.market.oracle import Oracle
    from sim.market.venue import Venue


class SettlingHouse(Protocol):
    """What settlement reads of, and asks of, the clearing house (``clearing.house.ClearingHouse``),
    declared here so that the house, which holds its settlement, is not imported by it."""

    world: "World"
    config: "ClearingConfig"
    ledger: "Ledger"
    table: "InstrumentTable"
    venue: "Venue"
    oracle: "Oracle"
    marks: "MarkPricer"
    liquidations: "Liquidator | None"

    def valuation(self, rows: slice | np.ndarray, full: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def revalue_all(self, cause: "Cause") -> None: ...

    def revalue_accounts(self, accounts: "Iterable[int]") -> None: ...

    def oracle_cause(self) -> "Cause": ...

__all__ = ["Settlement"]


class Settlement:
    """The clearing house's settlement duties, scheduled on its world's clock."""

    def __init__(self, house: SettlingHouse) -> None:
        self.house = house
        self.settled_ticks = house.marks.ticks.copy()  # marks at the last variation-margin run

    def schedule(self) -> None:
        """Funding of each perpetual, expiry of each dated contract, variation-margin runs."""
        house = self.house
        world, config = house.world, house.config
        for ins in house.table.instruments:
            if ins.kind == InstrumentKind.PERPETUAL and config.funding.enabled and ins.funding_interval:
                world.every(ins.funding_interval, partial(self.pay_funding, ins.id), start=ins.funding_interval)
            if ins.expiry is not None:
                world.call_later(ins.expiry, self.settle_expiry, ins.id)
        self.settled_ticks = house.marks.ticks.copy()
        vm = config.settlement
        if vm.variation_margin == "interval":
            world.every(vm.interval, self.settle_variation_margin, start=vm.interval)

    # ------------------------------------------------------------------ variation margin and withdrawals
    def settle_variation_margin(self) -> None:
        """A variation-margin run: gains and losses since the last run are settled (become
        withdrawable)."""
        self.settled_ticks = self.house.marks.ticks.copy()

    def free_collateral(self, account: int) -> float:
        """What the account may withdraw now (minor units): equity above IM. With continuous
        variation margin that includes every unrealised gain -- as cross-margined venues allow, and as
        the Mango attack exploited; with interval settlement, gains since the last run are held back."""
        house = self.house
        equity, im, _mm = house.valuation(np.array([account]))
        free = float(equity[0] - im[0])
        if house.config.settlement.variation_margin == "interval":
            ledger = house.ledger
            unsettled = float(ledger.position[account] @ ((house.marks.ticks - self.settled_ticks) * ledger.tick_value))
            free -= max(unsettled, 0.0)
        return max(0.0, free)

    def withdraw(self, account: int, amount: int) -> int:
        """Pay out up to ``amount`` quote minor units within free collateral; returns what was paid."""
        house = self.house
        if house.liquidations is not None and house.liquidations.is_active(account):
            return 0
        paid = min(int(amount), int(self.free_collateral(account)))
        if paid <= 0:
            return 0
        house.ledger.now = house.world.now
        house.ledger.withdraw(account, QUOTE, paid, allow_debt=True)
        house.revalue_accounts([account])  # a breach the payout causes is acted on at once
        return paid

    # ------------------------------------------------------------------ funding and expiry
    def pay_funding(self, instrument: int) -> None:
        """Perpetual funding: longs pay shorts the premium of mark over index (less a dead band,
        capped at the contract's ``funding_cap``), as an integer amount per lot."""
        house = self.house
        marks, ledger = house.marks, house.ledger
        index_ticks = float(marks.index_ticks[instrument])
        if index_ticks <= 0:
            return
        premium = float(marks.basis_ticks[instrument]) / index_ticks
        dead = house.config.funding.premium_clamp
        rate = np.sign(premium) * max(abs(premium) - dead, 0.0)
        cap = house.table.instruments[instrument].funding_cap
        if cap is not None:
            rate = float(np.clip(rate, -cap, cap))
        per_lot = int(round(rate * index_ticks * int(ledger.tick_value[instrument])))
        ledger.now = house.world.now
        if ledger.pay_funding(instrument, per_lot):
            house.revalue_all(house.oracle_cause())

    def settle_expiry(self, instrument: int) -> None:
        """Final settlement at the index (options at intrinsic value); the book is closed."""
        house = self.house
        table, venue = house.table, house.venue
        ins = table.instruments[instrument]
        venue.halt(instrument)
        for account in venue.accounts_with_orders(instrument):
            venue.cancel_all_now(account, instrument)
        spot = float(house.oracle.index[table.underlying_index[instrument]])
        if ins.kind == InstrumentKind.OPTION:
            assert ins.strike is not None
            value = max(spot - ins.strike, 0.0) if ins.is_call else max(ins.strike - spot, 0.0)
        else:
            value = spot
        house.ledger.now = house.world.now
        house.ledger.settle_expiry(instrument, int(round(value / ins.tick_size)))
        house.revalue_all(house.oracle_cause())
