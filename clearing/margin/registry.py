"""Build a margin regime from a name or a validated config.

``build_regime(name_or_config, table, **context)``:

- ``name_or_config``: a registry name (``standard``, ``standard_isolated``, ``span``, ``tims``,
  ``portfolio``, ``portfolio_joint``, ``var``, ``var_apc``), a dict with a ``regime`` key (validated
  by ``clearing.margin.config``; errors name the field), or a config model.
- ``context`` (all optional): ``history`` (rows x underlyings prices, VaR regimes -- required
  there), ``risk_arrays`` / ``risk_array_convention`` / ``deltas`` (SPAN externally supplied
  arrays), ``open_interest`` (standard: per-instrument open-interest notional), ``depth`` /
  ``cost_fn`` (liquidity add-on in book mode). Unknown context keys are an error; keys a regime
  does not use are ignored.

A config with ``liquidity`` set comes back wrapped in :class:`WithLiquidityAddOn`.
"""

from __future__ import annotations

from typing import Any

from sim.core.instruments import InstrumentTable
from sim.core.strict_model import StrictModel
from clearing.margin.base import MarginRegime
from clearing.margin.liquidity import WithLiquidityAddOn
from clearing.margin.portfolio import PortfolioRegime
from clearing.margin.span import SpanRegime
from clearing.margin.standard import StandardRegime
from clearing.margin.tims import TimsRegime
from clearing.margin.var import VaRRegime
from clearing.margin.config import (
    REGIME_NAMES,
    PortfolioConfig,
    SpanConfig,
    StandardConfig,
    TimsConfig,
    VaRConfig,
    parse_margin_config,
)

_CONTEXT_KEYS = {"history", "row_interval", "risk_arrays", "risk_array_convention", "deltas", "open_interest", "depth", "cost_fn"}


def build_regime(name_or_config: str | dict | StrictModel, table: InstrumentTable, **context: Any) -> MarginRegime:
    unknown = set(context) - _CONTEXT_KEYS
    if unknown:
        raise TypeError(f"unknown context for build_regime: {sorted(unknown)}; known: {sorted(_CONTEXT_KEYS)}")
    cfg = parse_margin_config(name_or_config)
    if isinstance(cfg, StandardConfig):
        regime: MarginRegime = StandardRegime(table, cfg, open_interest=context.get("open_interest"))
    elif isinstance(cfg, SpanConfig):
        regime = SpanRegime(table, cfg, risk_arrays=context.get("risk_arrays"),
                            risk_array_convention=context.get("risk_array_convention"), deltas=context.get("deltas"))
    elif isinstance(cfg, TimsConfig):
        regime = TimsRegime(table, cfg)
    elif isinstance(cfg, PortfolioConfig):
        regime = PortfolioRegime(table, cfg)
    elif isinstance(cfg, VaRConfig):
        if context.get("history") is None:
            raise ValueError(f"regime {cfg.regime!r} needs a price history: build_regime(..., history=rows x underlyings)")
        regime = VaRRegime(table, cfg, history=context["history"], row_interval=context.get("row_interval", 86_400.0))
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"unsupported margin config {type(cfg).__name__}")
    if cfg.liquidity is not None:
        regime = WithLiquidityAddOn(regime, cfg.liquidity, depth=context.get("depth"), cost_fn=context.get("cost_fn"))
    return regime


def regime_names() -> tuple[str, ...]:
    return REGIME_NAMES


__all__ = ["build_regime", "regime_names"]
