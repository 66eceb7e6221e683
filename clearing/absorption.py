"""Loss absorption: who pays for a bankrupt account's deficit once its positions are gone.

The deficit (negative quote cash, no positions) is first reduced by selling any other collateral
the account still holds, then passed through the configured cash layers in order --
``insurance_fund``, ``waterfall`` (CCP default waterfall), ``socialised`` (over open interest --
by default its profitable side -- or a depositor haircut, within a per-event and a per-episode
cap) -- and whatever is left is recorded as bad debt. Every layer is a balanced
ledger transfer into the bankrupt account, so nothing is created or lost and the bad-debt row
holds exactly what no layer absorbed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from clearing.bad_debt import record_bad_debt
from clearing.causality import LiquidationEvent
from clearing.insurance import InsuranceFund
from clearing.ledger import QUOTE, SystemAccount
from clearing.socialised import haircut_depositors, socialise_over_open_interest
from clearing.config import LossAbsorptionConfig

if TYPE_CHECKING:
    from clearing.ledger import Ledger
    from clearing.waterfall import DefaultWaterfall
    from sim.core.kernel import World
    from sim.market.mark import MarkPricer


class AbsorbingHouse(Protocol):
    """What loss absorption reads of, and asks of, the clearing house
    (``clearing.house.ClearingHouse``), declared here so that the absorber names the duties it
    relies on rather than the house's whole surface."""

    world: "World"
    ledger: "Ledger"
    marks: "MarkPricer"
    scale: float  # quote units -> minor units

    def asset_prices(self) -> np.ndarray: ...

    def equities(self, rows: slice | np.ndarray) -> np.ndarray: ...

    def free_collateral(self, account: int) -> float: ...

    def note_charge(self, account: int, liq_id: int, equity_effect: float) -> None: ...

    def revalue_accounts(self, accounts: "Iterable[int]") -> None: ...


class LossAbsorber:
    """Applies the cash layers to deficits and keeps a per-layer tally."""

    def __init__(self, house: AbsorbingHouse, config: LossAbsorptionConfig, fund: InsuranceFund,
                 waterfall: "DefaultWaterfall | None" = None) -> None:
        self.house = house
        self.config = config
        self.fund = fund
        self.waterfall = waterfall
        self.absorbed: dict[str, int] = {}
        self.records: list[tuple[float, int, int, str, int]] = []  # time, liq id, account, layer, amount
        scale = house.scale
        self._cap_event = None if config.socialised_cap_per_event is None else \
            int(round(config.socialised_cap_per_event * scale))
        self._cap_episode = None if config.socialised_cap_per_episode is None else \
            int(round(config.socialised_cap_per_episode * scale))
        self.socialised_by_event: dict[int, int] = {}  # liq id -> socialised so far (the per-event cap)
        self.socialised_total = 0  # socialised so far in the episode (the per-episode cap)

    def _note(self, event: LiquidationEvent, layer: str, amount: int) -> None:
        if amount:
            self.absorbed[layer] = self.absorbed.get(layer, 0) + amount
            self.records.append((self.house.world.now, event.liq_id, event.account, layer, amount))

    def deficit(self, account: int) -> int:
        return max(0, -int(self.house.ledger.cash[account, QUOTE]))

    def absorb(self, account: int, event: LiquidationEvent, *, market: int = 0, vault: int | None = None) -> int:
        """Cover ``account``'s deficit layer by layer; returns what was left as bad debt.

        The liquidation engine says which ``market`` the event closed last (the fund's per-market
        cap and the instrument socialised loss spreads over) and which ``vault`` (the backstop
        vault, if any) may buy the account's other collateral first."""
        self._sell_collateral(account, event, vault)
        for layer in self.config.order:
            remaining = self.deficit(account)
            if remaining == 0:
                break
            if layer == "insurance_fund":
                self._note(event, layer, self.fund.cover(account, remaining, market))
            elif layer == "waterfall" and self.waterfall is not None:
                for name, amount in self.waterfall.absorb(account, remaining):
                    if name != "uncovered":  # moves no money: what is left becomes bad debt below
                        self._note(event, f"waterfall:{name}", amount)
                self._charged(event, self.waterfall.last_charges)
            elif layer == "socialised" and self.config.socialised != "off":
                self._socialise(account, event, remaining, market)
        self._recover_in_kind(account, event)
        bad = record_bad_debt(self.house.ledger, account)
        self._note(event, "bad_debt", bad)
        return bad

    def socialisable(self, liq_id: int, loss: int) -> int:
        """How much of ``loss`` the caps let socialised loss charge for liquidation ``liq_id``."""
        allowed = int(loss)
        if self._cap_event is not None:
            allowed = min(allowed, self._cap_event - self.socialised_by_event.get(liq_id, 0))
        if self._cap_episode is not None:
            allowed = min(allowed, self._cap_episode - self.socialised_total)
        return max(allowed, 0)

    def _socialise(self, account: int, event: LiquidationEvent, loss: int, market: int) -> None:
        house = self.house
        ledger = house.ledger
        # beyond a cap the rest is left in the account: the next layer, then bad debt, takes it
        loss = self.socialisable(event.liq_id, loss)
        if loss == 0:
            return
        if self.config.socialised == "open_interest":
            side = self.config.socialised_side or "profitable"
            mark = int(round(float(house.marks.ticks[market])))
            charged = socialise_over_open_interest(ledger, market, loss, account, side=side, mark_ticks=mark)
        else:
            equity = house.equities(slice(0, ledger.n_accounts))
            equity[: int(SystemAccount.DEFAULT_FUND) + 1] = 0.0
            equity[account] = 0.0
            charged = haircut_depositors(ledger, loss, account, equity)
        total = sum(int(v) for v in charged.values())
        self.socialised_by_event[event.liq_id] = self.socialised_by_event.get(event.liq_id, 0) + total
        self.socialised_total += total
        self._note(event, f"socialised:{self.config.socialised}", total)
        self._charged(event, charged)

    def _charged(self, event: LiquidationEvent, charges: dict[int, int]) -> None:
        """Tell the clearing house which accounts paid for ``event`` out of their own cash, and re-value
        them at once: a breach the charge causes is linked to ``event`` when it happens."""
        house = self.house
        for payer, amount in charges.items():
            house.note_charge(int(payer), event.liq_id, -float(amount))
        house.revalue_accounts(charges)

    def _sell_collateral(self, account: int, event: LiquidationEvent, vault: int | None) -> None:
        """Convert as much of the account's non-quote collateral as covers its deficit, at the oracle
        price, with whoever has the cash: the backstop vault (out of its free collateral), then the
        insurance fund (out of its own cash -- it never buys on credit). What is not bought stays
        with the account for the layers; see ``_recover_in_kind``."""
        ledger = self.house.ledger
        if len(ledger.assets) == 1:
            return
        prices = self.house.asset_prices()
        fund = int(SystemAccount.INSURANCE_FUND)
        buyers = ([vault] if vault is not None and vault != account else []) + [fund]
        for k in range(1, len(ledger.assets)):
            per_unit = self._minor_per_unit(k, prices)
            if per_unit <= 0:
                continue
            for buyer in buyers:
                held, deficit = int(ledger.cash[account, k]), self.deficit(account)
                if held <= 0 or deficit == 0:
                    break
                cash = max(0, int(ledger.cash[fund, QUOTE])) if buyer == fund else int(self.house.free_collateral(buyer))
                units = min(held, math.ceil(min(deficit, cash) / per_unit))
                paid = min(int(units * per_unit), deficit, cash)
                if units <= 0 or paid <= 0:
                    continue
                ledger.transfer(account, buyer, k, units, "collateral_seized")
                ledger.transfer(buyer, account, QUOTE, paid, "collateral_purchase")
                self._note(event, "collateral_sold", paid)

    def _minor_per_unit(self, asset: int, prices: np.ndarray) -> float:
        """Quote minor units per minor unit of ``asset`` at the oracle price."""
        return float(prices[asset]) * float(self.house.ledger.unit_scale[asset])

    def _recover_in_kind(self, account: int, event: LiquidationEvent) -> None:
        """Nobody had the cash for the collateral a deficit left unsold: it goes, with the deficit,
        to the bad-debt row as recoveries in kind. Bad debt is recorded gross; the metrics value the
        recoveries at published and true prices (``solvency.bad_debt_recoveries``)."""
        ledger = self.house.ledger
        if self.deficit(account) == 0 or len(ledger.assets) == 1:
            return
        prices = self.house.asset_prices()
        for k in range(1, len(ledger.assets)):
            held = int(ledger.cash[account, k])
            if held > 0:
                ledger.transfer(account, int(SystemAccount.BAD_DEBT), k, held, "recovery in kind")
                self._note(event, "recovered_in_kind", int(held * self._minor_per_unit(k, prices)))
