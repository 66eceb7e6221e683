"""The headline figures as people read them: a label with its unit and a formatted value.

Summary values are already in quote currency (money), plain counts, seconds or fractions; this
adds the unit to the label and shows fractions as percentages, for the CLI tables and the HTML
report alike (``sim.experiment.fmt`` does the number formatting).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MONEY_KEYS", "PERCENT_KEYS", "labelled", "rows"]

# headline keys whose value is money (quote currency) or a fraction shown as a percentage
MONEY_KEYS = frozenset({
    "bad_debt.total", "insurance_fund.min", "insurance_fund.final", "liquidations.notional", "adl.notional",
    "losses.socialised", "losses.borne_by_others", "losses.backstop_vault.pnl_final",
    "counterfactual.bad_debt_difference", "solvency.bad_debt_recoveries", "solvency.hidden_loss",
    "margin.im_peak", "margin.population_im.max_increase",
    "losses.who_paid.defaulter_margin", "losses.who_paid.defaulter_default_fund",
    "losses.who_paid.liquidation_penalties", "losses.who_paid.insurance_fund", "losses.who_paid.ccp_capital",
    "losses.who_paid.survivors_default_fund", "losses.who_paid.assessments", "losses.who_paid.vm_gains_haircut",
    "losses.who_paid.adl", "losses.who_paid.socialised", "losses.who_paid.backstop_vault",
    "losses.who_paid.bad_debt"})
PERCENT_KEYS = frozenset({"price.max_venue_drawdown", "price.true_drawdown", "margin.im_over_gross",
                          "margin.reference_rate.max_increase_relative"})


def labelled(key: str, label: str, value: Any, quote: str) -> tuple[str, str]:
    """(label with unit, formatted value) for one flattened summary key."""
    from sim.experiment.fmt import cell, percent

    if key in MONEY_KEYS:
        return f"{label} ({quote})", cell(value)
    if key in PERCENT_KEYS:
        return f"{label} (%)", percent(value)
    return label, cell(value)


def rows(summary: Mapping[str, Any], quote: str) -> list[tuple[str, str]]:
    """Every headline figure (``sim.experiment.metrics.HEADLINE``) of a summary, labelled and formatted."""
    from sim.experiment.metrics import HEADLINE, flatten

    flat = flatten(summary)
    return [labelled(key, label, flat.get(key), quote) for key, label in HEADLINE]
