"""The one rule that names the margin regimes of a comparison (``clearsim compare``,
``sim.experiment.variants.regime_variants``) and of a backtest (``clearsim backtest``,
``sim.experiment.backtest.run``), so the same list of regimes gets the same labels -- and, through
``variants.slug``, the same folder names -- in both.

Entries are labelled in order: an explicit label wins (one already used is refused, naming the
entry); an unlabelled entry takes its regime's name, or when that is taken, its name and what differs
from the entry holding it (``var_filtered_es_97.5`` beside ``var``); numbered (``var_2``) only when
nothing differs or that label is taken too. Deterministic: a label depends only on the entries
before it and their order.

A module of its own, importing nothing of ``sim.experiment`` but ``errors``, so both the comparison
and the backtest import it without an import cycle between ``sim.experiment``'s modules (the
``acyclic`` contract in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from sim.experiment.errors import ConfigError

if TYPE_CHECKING:
    from clearing.margin.config import PortfolioConfig, SpanConfig, StandardConfig, TimsConfig, VaRConfig

    RegimeConfig: TypeAlias = StandardConfig | SpanConfig | TimsConfig | PortfolioConfig | VaRConfig

__all__ = ["regime_label"]


def regime_label(margin: RegimeConfig, taken: Mapping[str, tuple[RegimeConfig, float]], where: str,
                 label: str | None = None, scale: float = 1.0) -> str:
    """The label of the entry ``margin`` (at ``scale``: the backtest's multiplier, 1 in a comparison)
    given the labels ``taken`` by the entries before it (label -> (margin, scale)); the caller adds it.

    ``label``: the entry's own name where its container gives one (a backtest's ``regimes`` key);
    else ``margin.label``. An explicit label already taken raises ``ConfigError`` naming
    ``<where>.label``: two regimes under one label would share a table row and a folder."""
    name = label or margin.label
    if name is not None:
        if name in taken:
            raise ConfigError(f"{where}.label: {name!r} already names another regime; give each regime its own label")
        return name
    return _unlabelled(margin, scale, taken)


def _unlabelled(margin: RegimeConfig, scale: float, taken: Mapping[str, tuple[RegimeConfig, float]]) -> str:
    """An unlabelled regime's label: its name, or when that is taken, its name and what differs from
    the entry holding it (``var_filtered_es_97.5`` beside ``var``: the settings in field order, then
    the scale), so a table of regimes says which is which; numbered (``var_2``) only if nothing
    differs or that label is taken too."""
    if margin.regime not in taken:
        return str(margin.regime)
    from clearing.margin.config import parse_margin_config

    first = taken[margin.regime]  # the entry this one repeats: it holds the bare name
    if first[0].regime != margin.regime:  # the name labels another regime (`regimes: {var: span}`)
        first = (parse_margin_config(str(margin.regime)), 1.0)  # so: what differs from the defaults
    mine, theirs = margin.model_dump(exclude={"label"}), first[0].model_dump(exclude={"label"})
    parts = [_difference(key, value) for key, value in mine.items() if value != theirs.get(key)]
    if scale != first[1]:
        parts.append(f"scale={scale:g}")
    base = "_".join([margin.regime, *parts]) if parts else str(margin.regime)
    name, k = base, 2
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    return name


def _difference(key: str, value: Any) -> str:
    """One setting in a label: a choice by its value (``filtered``, ``es``), a confidence in %
    (``97.5``), another number as key=value, a switched-off setting as no_key, anything structured
    (tiers, spreads) by its key."""
    if isinstance(value, str):
        return value
    if value is None or value is False:
        return f"no_{key}"
    if value is True:
        return key
    if isinstance(value, (int, float)):
        return f"{100 * value:g}" if key.endswith("confidence") else f"{key}={value:g}"
    return key
