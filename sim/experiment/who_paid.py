"""Who paid: one loss ledger per episode, by layer, in quote minor units.

A default's cost falls on the defaulter first (its margin at default, its default-fund
contribution), on the liquidated accounts through the penalties the insurance fund received and
paid out, and then on others: the insurance fund's payouts beyond those penalties, the CCP's
capital, the survivors' default-fund contributions and assessments, variation-margin gains haircut,
the counterparties ADL closed at the bankruptcy price instead of the mark, socialised loss, the
backstop vault's losses on what it took over, and bad debt (what nobody paid). ``loss_ledger``
lists every such amount as a row (``borne_by`` says whose money it was); ``sim.experiment.metrics``
sums it into ``losses.who_paid`` and ``losses.borne_by_others``. ``docs/METHODOLOGY.md`` (*Who
paid*) defines each layer.

``VaultTracker`` follows the backstop vault's equity from its starting capital (collateral at
published prices without haircuts, plus positions at mark), so its P&L -- gains and losses on
what it took over and unwound -- is known at every sample and at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sim.experiment.assembled import Episode

# layer -> whose money: the defaulter's, any liquidated account's, or somebody else's
LAYERS: dict[str, str] = {
    "defaulter_margin": "defaulter",
    "defaulter_default_fund": "defaulter",
    "liquidation_penalties": "liquidated",
    "insurance_fund": "others",
    "ccp_capital": "others",
    "survivors_default_fund": "others",
    "assessments": "others",
    "vm_gains_haircut": "others",
    "adl": "others",
    "socialised": "others",
    "backstop_vault": "others",
    "bad_debt": "others",
}
# absorber layers (``LossAbsorber.records``) -> who-paid layer; collateral sold and recoveries in
# kind are the defaulter's own collateral changing form, not a payer
_ABSORBER = {
    "insurance_fund": "insurance_fund",
    "waterfall:defaulter_default_fund": "defaulter_default_fund",
    "waterfall:ccp_skin_in_game": "ccp_capital",
    "waterfall:survivors_default_fund": "survivors_default_fund",
    "waterfall:assessments": "assessments",
    "waterfall:vm_gains_haircut": "vm_gains_haircut",
    "socialised:open_interest": "socialised",
    "socialised:depositors": "socialised",
    "bad_debt": "bad_debt",
}
_NOT_PAYERS = frozenset({"collateral_sold", "recovered_in_kind"})
COLUMNS = ("time", "liq_id", "account", "layer", "borne_by", "amount")


class VaultTracker:
    """The backstop vault's capital and its equity at every sample (minor units)."""

    __slots__ = ("ep", "account", "capital", "rows")

    def __init__(self, episode: "Episode") -> None:
        self.ep = episode
        self.account = episode.backstop_account
        # built, not yet run: what is in the vault now is what it was given to start with
        self.capital = self.value() if self.account is not None else 0.0
        self.rows: list[tuple[float, float]] = []

    def value(self) -> float:
        """The vault's collateral at published prices (no haircut: a haircut is not a loss) plus its
        positions at mark, minor units."""
        ep, vault = self.ep, self.account
        assert vault is not None
        ledger = ep.ledger
        collateral = float(ledger.value_cash(ledger.cash[vault][None, :], ep.house.asset_prices(), haircuts=False)[0])
        return collateral + float(ledger.position[vault] @ (ep.marks.ticks * ledger.tick_value))

    def sample(self) -> None:
        if self.account is not None:
            self.rows.append((self.ep.world.now, self.value()))

    def table(self) -> dict[str, np.ndarray]:
        t = np.array([r[0] for r in self.rows])
        equity = np.array([r[1] for r in self.rows])
        return {"time": t, "account": np.full(t.size, -1 if self.account is None else self.account, dtype=np.int64),
                "capital": np.full(t.size, self.capital), "equity": equity, "pnl": equity - self.capital}


def loss_ledger(episode: "Episode", vault: VaultTracker) -> dict[str, np.ndarray]:
    """Every amount paid towards liquidation and default losses, one row each (see ``LAYERS``)."""
    rows: list[tuple[float, int, int, str, int]] = []
    engine, ledger = episode.engine, episode.ledger
    fees: dict[int, int] = {}
    for step in engine.steps:
        if step.fee > 0:
            fees[step.liq_id] = fees.get(step.liq_id, 0) + int(step.fee)
        if step.policy == "adl":
            # what the counterparties gave up by being closed at this price instead of the mark:
            # the defaulter's signed lots x (mark - price) x tick value (positive when it was bankrupt)
            cost = (step.mark_ticks - step.avg_price_ticks) * step.lots * int(ledger.tick_value[step.instrument])
            rows.append((step.time, step.liq_id, step.account, "adl", int(round(cost))))
    for ev in engine.events:
        if ev.outcome == "bankrupt":
            # its margin at default, less the penalties paid out of it (counted as penalties)
            own = max(int(round(ev.equity_at_breach)) - fees.get(ev.liq_id, 0), 0)
            rows.append((ev.breach_time, ev.liq_id, ev.account, "defaulter_margin", own))
    # every liquidation fee goes to the insurance fund: its payouts are the liquidated accounts'
    # penalties first (received at any time in the episode, earliest payouts first), then the fund's
    # own capital -- counting a penalty when paid and again when the fund pays it out would count
    # it twice, and a penalty the fund never paid out covered no loss (it is the fund's gain)
    penalties = sum(fees.values())
    for time, liq_id, account, layer, amount in episode.absorber.records:
        if layer in _NOT_PAYERS:
            continue
        if layer not in _ABSORBER:  # a new absorption layer must be given a payer, not dropped
            raise ValueError(f"loss layer {layer!r} has no who-paid layer (sim.experiment.who_paid._ABSORBER)")
        if _ABSORBER[layer] == "insurance_fund":
            from_penalties = min(penalties, int(amount))
            penalties -= from_penalties
            rows.append((time, liq_id, account, "liquidation_penalties", from_penalties))
            rows.append((time, liq_id, account, "insurance_fund", int(amount) - from_penalties))
            continue
        rows.append((time, liq_id, account, _ABSORBER[layer], int(amount)))
    if vault.account is not None:
        loss = max(vault.capital - vault.value(), 0.0)
        rows.append((episode.world.now, -1, vault.account, "backstop_vault", int(round(loss))))
    rows = [r for r in rows if r[4] != 0]
    order = {layer: k for k, layer in enumerate(LAYERS)}
    rows.sort(key=lambda r: (r[0], r[1], order[r[3]]))
    return {
        "time": np.array([r[0] for r in rows], dtype=np.float64),
        "liq_id": np.array([r[1] for r in rows], dtype=np.int64),
        "account": np.array([r[2] for r in rows], dtype=np.int64),
        "layer": np.array([r[3] for r in rows], dtype=object),
        "borne_by": np.array([LAYERS[r[3]] for r in rows], dtype=object),
        "amount": np.array([r[4] for r in rows], dtype=np.int64),
    }


__all__ = ["LAYERS", "COLUMNS", "VaultTracker", "loss_ledger"]
