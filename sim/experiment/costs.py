"""A scheduling estimate of what an episode costs to run, for dealing the dearest runs out first.

When a pool's last tasks are long, one worker finishes them while the others sit idle; handed out
longest first, the last tasks are short and every worker stays busy to the end (Graham's LPT
rule: within 4/3 of the best makespan). Only the order matters, so the estimate is relative:
the regime's cost per simulated second on the default episode x the simulated duration x the
number of accounts (an episode's work grows linearly with its accounts: docs/BENCHMARKS.md, *Scale*).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["BACKTEST_RUN_COST", "REGIME_COST", "VAR_FOLLOWER_RUN_COST", "backtest_task_cost", "episode_cost"]

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


# Relative cost of one margin run of a backtest under each regime: CPU milliseconds per run over the
# bench_backtest book's 10,000 portfolios, as `benchmarks/bench_backtest.py --each` prints them
# (docs/BENCHMARKS.md: var_apc ~34, var ~10; portfolio_joint ~3.8 and the rest under 1 read off its
# per-regime CPU seconds / 2,519 runs). Only the ratios matter. An unknown regime counts as the dearest.
BACKTEST_RUN_COST = {"standard": 0.3, "standard_isolated": 0.3, "tims": 0.4, "portfolio": 0.5, "span": 0.9,
                     "portfolio_joint": 3.8, "var": 10.0, "var_apc": 34.0}
# a VaR regime run in one task after another whose sets include its own (var after var_apc at the
# registry defaults: var_apc's lookback set is var's) takes its measures from that one and prices
# nothing: it costs its statistics only, as the cheapest regimes (var_apc + var: 15.0 -> 15.8 CPU-s
# on 10,000 portfolios x 755 runs)
VAR_FOLLOWER_RUN_COST = 0.3


def backtest_task_cost(regimes: str | Sequence[str], portfolios: int, runs: int) -> float:
    """The relative cost of one backtest task: ``regimes`` (one, or a unit of VaR regimes run
    together: ``backtest.run.task_units``) over a block of ``portfolios`` for ``runs`` runs. A unit
    costs its dearest regime, which goes first and measures the sets, plus ``VAR_FOLLOWER_RUN_COST``
    for each of the others."""
    names = [regimes] if isinstance(regimes, str) else list(regimes)
    dearest = max(BACKTEST_RUN_COST.values())
    costs = sorted((BACKTEST_RUN_COST.get(r, dearest) for r in names), reverse=True)
    per_run = (costs[0] if costs else 0.0) + VAR_FOLLOWER_RUN_COST * max(len(costs) - 1, 0)
    return per_run * portfolios * runs
