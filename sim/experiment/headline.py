"""The headline figures as people read them: a label with its unit and a formatted value.

Summary values are already in quote currency (money), plain counts, seconds or fractions; this
adds the unit to the label and shows fractions as percentages, for the CLI tables and the HTML
report alike (``sim.experiment.fmt`` does the number formatting).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim.experiment.compare import metric_of
from sim.experiment.metrics import HEADLINE, flatten

__all__ = ["MONEY_KEYS", "PERCENT_KEYS", "labelled", "rows"]

# headline keys whose value is money (quote currency) or a fraction shown as a percentage: the units
# are the comparison's (``sim.experiment.compare.metric_of``, one lookup for every surface); a run
# also shows IM / gross notional as a percentage, where the comparison lists it as a ratio beside
# the groups' ratios
MONEY_KEYS = frozenset(key for key, _ in HEADLINE if metric_of(key).unit == "money")
PERCENT_KEYS = frozenset({key for key, _ in HEADLINE if metric_of(key).unit == "fraction"} | {"margin.im_over_gross"})


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
    flat = flatten(summary)
    return [labelled(key, label, flat.get(key), quote) for key, label in HEADLINE]
