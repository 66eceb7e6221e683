"""What an episode records and where its measurements start: the ``outputs`` section of the config.

``window_seconds`` is here, not with the metrics, because the config's default procyclicality
horizon (``EpisodeConfig.horizon``) is defined by it.
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from sim.core.strict_model import StrictModel


def window_seconds(duration: float, sample_interval: float) -> float:
    """The default procyclicality horizon for a measurement window of ``duration`` seconds: 1 day
    for 3 days or more, 1 hour for 3 hours or more, otherwise a tenth of it (never shorter than the
    sampling interval)."""
    if duration >= 3 * 86_400:
        return 86_400.0
    if duration >= 3 * 3_600:
        return 3_600.0
    return max(float(sample_interval), duration / 10.0)



class OutputsConfig(StrictModel):
    directory: str | None = Field(None, description="results folder; default results/<episode name>")
    sample_interval: float = Field(60.0, gt=0.0, description="seconds between account-state samples")
    parquet: bool = True
    report: bool = True
    counterfactual: bool = Field(False, description="also run with liquidations moved off-book at mark, "
                                                     "to measure the price amplification liquidations cause")
    spell_quiet_time: float = Field(300.0, gt=0.0, description=(
        "seconds an account must stay at or above maintenance after a restoring liquidation before its "
        "next breach starts a new distress spell (a new cascade node)"))
    measure_from: float | None = Field(None, ge=0.0, allow_inf_nan=False,
                                       description="seconds; procyclicality is measured on samples at or after "
                                                   "it (None: the first scripted shock's start, or 0)")
    procyclicality_horizon: float | None = Field(None, gt=0.0, allow_inf_nan=False,
                                                 description="seconds over which margin increases are measured "
                                                             "(None: 1 day, 1 hour or a tenth of the window)")
    reference_portfolio: dict[str, float] | None = Field(
        None, description="fixed portfolio whose margin rate is tracked: symbol -> signed quote notional at the "
                          "starting marks (None: long 1 quote unit of each linear instrument)")

    @field_validator("reference_portfolio")
    @classmethod
    def _portfolio(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("reference_portfolio is empty: leave it out for the default, or name instruments")
        for symbol, notional in v.items():
            if not math.isfinite(notional) or notional == 0:
                raise ValueError(f"reference_portfolio.{symbol}: notional must be a non-zero finite number, "
                                 f"got {notional!r}")
        return v
