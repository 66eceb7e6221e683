"""Sweep configuration: a base episode, fixed overrides, a grid of dotted config paths, and seeds.

```yaml
name: regimes_x_fund
base: ../episodes/crash.yaml        # relative to this file; omitted/null: the packaged default episode
overrides:                          # applied to every point; mappings merge (as ``extends`` does)
  duration: 3600
  outputs.sample_interval: 30       # dotted keys reach into nested mappings (and lists: a.0.b)
grid:                               # cartesian product, in this order; a value replaces what is at the path
  margin: [standard, span]          # a regime name (the base's own margin config if it is that
                                    # regime, else the regime's defaults) or a full regime mapping
  clearing.loss_absorption.insurance_fund: [100000, 1000000]
seeds: 2                            # a count (seeds 0..N-1) or an explicit list
output: results/sweeps/regimes_x_fund.parquet   # relative to the working directory
```

Unknown keys are errors, and every grid point is validated as a full episode before anything runs.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from sim.core.strict_model import StrictModel
from sim.experiment.schema.batch import BatchName, Seeds, seed_list

__all__ = ["SweepConfig"]


def _check_path(path: str) -> str:
    parts = path.split(".")
    if not path or any(p == "" or p != p.strip() for p in parts):
        raise ValueError(f"{path!r} is not a dotted config path (like clearing.loss_absorption.insurance_fund)")
    if parts[0] in ("seed", "extends"):
        raise ValueError(f"{path!r} cannot be swept here (use `seeds` for seeds)")
    return path


class SweepConfig(StrictModel):
    name: BatchName = "sweep"
    description: str = ""
    base: str | None = Field(None, description="episode YAML (relative to the sweep file); None: packaged default")
    overrides: dict[str, Any] = Field(default_factory=dict, description="applied to every point before the grid")
    grid: dict[str, list[Any]] = Field(min_length=1, description="dotted config path -> values (cartesian product)")
    seeds: Seeds = 1
    output: str | None = Field(None, description="Parquet file; default results/sweeps/<name>.parquet")

    @field_validator("overrides")
    @classmethod
    def _override_paths(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            _check_path(key)
        return v

    @field_validator("grid")
    @classmethod
    def _grid_paths(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        keys = list(v)
        for key, values in v.items():
            _check_path(key)
            if not values:
                raise ValueError(f"{key}: needs at least one value")
            seen = [repr(x) for x in values]
            if len(set(seen)) != len(seen):
                raise ValueError(f"{key}: lists a value twice ({values})")
        for a in keys:  # a path and one inside it would fight over the same value
            for b in keys:
                if a != b and b.startswith(a + "."):
                    raise ValueError(f"{b} lies inside {a}: sweep one or the other")
        return v

    def seed_list(self) -> list[int]:
        return seed_list(self.seeds)

    def n_points(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n
