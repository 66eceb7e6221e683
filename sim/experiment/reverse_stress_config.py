"""Reverse-stress-test configuration (``clearsim reverse-stress <file.yaml>``).

```yaml
name: default_fund_exhaustion
episode: ../default.yaml            # relative to this file
regimes: [standard, span]           # optional; default: the episode's own margin regime
stress:                             # the family: scale s moves each dotted config path linearly
  paths.shocks.0.drop: [0.0, 0.6]   #   value(s) = at_zero + s x (at_one - at_zero)
  population.groups.0.count: [6, 0] #   several paths: a combination along one direction
scale: {low: 0.0, high: 1.0}        # the search interval
criterion: insurance_fund.min <= 0  # a flattened summary key, <, <=, > or >=, a number
seeds: 3                            # a count (0..N-1) or a list
tolerance: 0.01                     # stop when the bracket is this narrow (in scale units)
scan_points: 5                      # first round: evenly spaced scales over [low, high]
points_per_round: 3                 # then this many scales inside the bracket per round (1: bisection)
confidence: 0.9                     # the band over seeds
output: results/reverse_stress/default_fund_exhaustion
```
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from sim.core.strict_model import StrictModel
from sim.experiment.schema.batch import BatchName, Seeds, seed_list
from sim.experiment.sweep_config import _check_path

__all__ = ["ReverseStressConfig", "ScaleRange", "parse_criterion", "CRITERION_OPS"]

CRITERION_OPS = ("<=", ">=", "<", ">")
_CRITERION = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_criterion(text: str) -> tuple[str, str, float]:
    """``"insurance_fund.min <= 0"`` -> ("insurance_fund.min", "<=", 0.0); ValueError otherwise."""
    m = _CRITERION.match(text or "")
    if m is None:
        raise ValueError(f"{text!r} is not 'summary.key OP number' with OP one of {', '.join(CRITERION_OPS)} "
                         f"(e.g. 'insurance_fund.min <= 0')")
    return m.group(1), m.group(2), float(m.group(3))


class ScaleRange(StrictModel):
    low: float = Field(0.0, allow_inf_nan=False)
    high: float = Field(1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> "ScaleRange":
        if self.high <= self.low:
            raise ValueError(f"high ({self.high}) must exceed low ({self.low})")
        return self


class ReverseStressConfig(StrictModel):
    name: BatchName = "reverse_stress"
    description: str = ""
    episode: str | None = Field(None, description="episode YAML (relative to this file); None: packaged default")
    regimes: list[str | dict[str, Any]] = Field(default_factory=list)
    stress: dict[str, tuple[int | float, int | float]] = Field(min_length=1)
    scale: ScaleRange = ScaleRange()
    criterion: str
    seeds: Seeds = 1
    tolerance: Annotated[float, Field(gt=0.0)] = 0.01
    scan_points: Annotated[int, Field(ge=2, le=200)] = 5
    points_per_round: Annotated[int, Field(ge=1, le=64)] = 1
    max_rounds: Annotated[int, Field(ge=1, le=200)] = 50
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    output: str | None = None
    report: bool = True

    @field_validator("stress")
    @classmethod
    def _paths(cls, v: dict[str, tuple[int | float, int | float]]) -> dict[str, tuple[int | float, int | float]]:
        for key, (a, b) in v.items():
            _check_path(key)
            if a == b:
                raise ValueError(f"{key}: the two ends [{a}, {b}] are equal, so the scale does not move it")
        return v

    @field_validator("criterion")
    @classmethod
    def _criterion(cls, v: str) -> str:
        parse_criterion(v)
        return v

    def seed_list(self) -> list[int]:
        return seed_list(self.seeds)
