"""A scheduling estimate of what an episode costs to run, for dealing the dearest runs out first.

When a pool's last tasks are long, one worker finishes them while the others sit idle; handed out
longest first, the last tasks are short and every worker stays busy to the end (Graham's LPT
rule: within 4/3 of the best makespan). Only the order matters, so the estimate is relative:
the regime's cost per simulated second on the default episode x the simulated duration x the
number of accounts (an episode's work grows linearly with its accounts: docs/BENCHMARKS.md, *Scale*).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["REGIME_COST", "episode_cost"]

# Relative cost of one episode under each regime (CPU seconds per episode on the default episode,
# standard = 1: standard ~9 s, span and portfolio ~25 s, var_apc ~52 s; benchmarks/bench_compare.py
# prints them; the other regimes are estimates). An unknown regime counts as the dearest.
REGIME_COST = {"standard": 1.0, "standard_isolated": 1.0, "tims": 2.0, "span": 2.8, "portfolio": 2.8,
               "portfolio_joint": 3.5, "var": 5.0, "var_apc": 6.0}


def episode_cost(data: Mapping[str, Any]) -> float:
    """The relative cost of the episode ``data`` (an episode config as a plain dict)."""
    margin = data.get("margin")
    regime = str(margin.get("regime", "standard")) if isinstance(margin, Mapping) else "standard"
    groups = (data.get("population") or {}).get("groups") or []
    accounts = sum(int(g.get("count", 1)) for g in groups if isinstance(g, Mapping))
    return (REGIME_COST.get(regime, max(REGIME_COST.values())) * float(data.get("duration") or 1.0)
            * max(accounts, 1))
