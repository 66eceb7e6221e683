"""Margin-backtest configuration (``clearsim backtest <file.yaml>``).

```yaml
name: var_on_normal_returns
seed: 0                       # seeds the path (and random portfolios unless they give their own)
days: 2520                    # daily rows of the path after row 0 (10 years)
warmup_days: 250              # rows before the first margin run (the VaR regimes' first history)
paths:                        # any path model or a CSV replay, and shocks (sim.market.paths_config);
  models:                     # one row per day: the grid step is forced to 86,400 s
    - {kind: gbm, underlyings: [{name: BTC, s0: 60000, vol: 0.6}]}
portfolios:
  file: ../portfolios/short_strangle_two_underlyings.yaml   # instruments + accounts (relative to this file)
  random: {count: 10000, per_account: 3.0, max_lots: 3, seed: 7}   # optional: random books on those instruments
  # or: episode: ../default.yaml, at: 1800   (the episode's trader accounts at t = 1,800 s)
regimes:                      # label -> a registry name or a regime mapping; `scale` multiplies it
  var: {regime: var, mpor_days: 1}
  var_half: {regime: var, mpor_days: 1, scale: 0.5}
regime_set: ../regimes/ccp.yaml   # optional: also every regime of a file's compare_regimes (named by
                                  # its label, else its regime; a repeat by what differs: var_filtered_es_97.5)
requirement: im               # im | mm: the figure compared with the realised loss
horizon_days: 2               # the margin period of risk over which the loss is realised
step_days: 2                  # a run every this many days; default horizon_days: the loss periods do
                              # not overlap, so a sound model's exceedances can be independent
coverage: 0.99                # the confidence the tests hold the regimes to
significance: 0.05            # a test rejects when its p-value is below this
procyclicality_windows: [5, 20]
output: results/backtest/var_on_normal_returns
report: true
```

Unknown keys are errors; errors name the field path.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from sim.core.strict_model import StrictModel
from sim.market.paths_config import PathsConfig

__all__ = ["BacktestConfig", "PortfolioSource", "RandomPortfolios", "DAY_SECONDS"]

DAY_SECONDS = 86_400.0


class RandomPortfolios(StrictModel):
    """Random books over the portfolio file's instruments: each holds Poisson(``per_account``)
    instruments (at least one, drawn with replacement, summed), each with a signed lot count drawn
    uniformly from +-1..``max_lots``."""

    count: Annotated[int, Field(ge=1, le=10_000_000)]
    per_account: Annotated[float, Field(gt=0.0)] = 3.0
    max_lots: Annotated[int, Field(ge=1)] = 3
    seed: Annotated[int, Field(ge=0)] | None = None  # None: the backtest's seed


class PortfolioSource(StrictModel):
    """Exactly one of ``file`` (a portfolio file, as ``clearsim margin`` reads) or ``episode`` (the
    trader accounts of an episode, run to ``at`` simulated seconds, that hold a position then)."""

    file: str | None = None
    random: RandomPortfolios | None = None
    include_file_accounts: bool = True  # with ``random``: keep the file's own accounts too
    episode: str | None = None
    at: Annotated[float, Field(gt=0.0)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "PortfolioSource":
        if (self.file is None) == (self.episode is None):
            raise ValueError("give exactly one of file (a portfolio file) or episode (an episode's accounts)")
        if self.episode is not None and self.at is None:
            raise ValueError("episode: needs `at`, the simulated second whose positions are tested")
        if self.episode is None and self.at is not None:
            raise ValueError("at: only used with episode")
        if self.episode is not None and self.random is not None:
            raise ValueError("random: only used with file (random books over the file's instruments)")
        return self


class BacktestConfig(StrictModel):
    name: str = Field("backtest", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
    days: Annotated[int, Field(ge=2)]
    warmup_days: Annotated[int, Field(ge=0)] = 250
    paths: PathsConfig
    portfolios: PortfolioSource
    regimes: dict[str, Any] = Field(default_factory=dict)
    regime_set: str | None = None
    requirement: str = Field("im", pattern="^(im|mm)$")
    horizon_days: Annotated[int, Field(ge=1, le=250)] = 2
    step_days: Annotated[int, Field(ge=1)] | None = None  # None: horizon_days (non-overlapping periods)
    coverage: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.99
    significance: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    procyclicality_windows: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [5, 20])
    report_portfolios: Annotated[int, Field(ge=0, le=50)] = 4
    output: str | None = None
    report: bool = True

    @field_validator("regimes")
    @classmethod
    def _labels(cls, v: dict[str, Any]) -> dict[str, Any]:
        for label, spec in v.items():
            if not isinstance(spec, (str, dict)):
                raise ValueError(f"{label}: a regime is a registry name or a mapping with a `regime` key")
        return v

    @property
    def run_step_days(self) -> int:
        """Days from one margin run to the next: ``step_days``, which the validator fills with
        ``horizon_days`` when it is not given (non-overlapping loss periods)."""
        return self.horizon_days if self.step_days is None else self.step_days

    @model_validator(mode="after")
    def _runs(self) -> "BacktestConfig":
        if self.step_days is None:  # filled, so the written config.yaml says what ran
            object.__setattr__(self, "step_days", self.horizon_days)
        if not self.regimes and self.regime_set is None:
            raise ValueError("regimes: name at least one regime (or a regime_set)")
        if self.warmup_days + self.horizon_days > self.days:
            raise ValueError(f"days ({self.days}) leaves no margin run after warmup_days ({self.warmup_days}) "
                             f"and horizon_days ({self.horizon_days})")
        return self
