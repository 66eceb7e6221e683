"""Paired multi-seed regime comparison: the metric list, the runs, and the intervals.

Every regime runs on the same seeds ``seed, seed + 1, ..., seed + N - 1``. A seed fixes the world's
random streams, so seed k gives every regime the same true price path and the same traders (their
capital, entry times and leverage draws); only the margin regime differs. Each metric is then
compared *paired*: for regime r and seed k, d_k = x(r, k) - x(first regime, k), so the path's own
randomness cancels and the interval measures the regime's effect, not the luck of the path.

Per regime and metric: ``mean``, ``std`` (sample standard deviation over seeds), ``min``, ``max``;
against the first regime: ``diff_mean`` (mean of d_k), ``diff_low`` / ``diff_high`` (the 95%
Student-t confidence interval of the mean of d_k, mean +/- t(0.975, n-1) x sd(d) / sqrt(n)) and a
``verdict``:

- ``baseline`` for the first regime itself;
- ``identical on every seed`` when every d_k is exactly 0;
- ``distinguishable from seed noise`` when the interval excludes 0;
- ``within seed noise`` when it contains 0;
- ``one seed: no interval`` (n < 2 seeds with the metric defined under both regimes).

Metrics absent from a summary (another part of the project not run, or a figure undefined on a
seed) are left out of that seed's pair; a metric absent everywhere prints "—".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.experiment.metrics import HEADLINE, flatten

CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class Metric:
    """A comparison metric: flattened summary key, label, unit (``money`` = the quote currency,
    ``count``, ``ratio``, ``fraction`` (shown as %), ``x`` (a multiple), ``bps``, ``s``) and whether
    lower is better for those who bear the losses (None: neither)."""

    key: str
    label: str
    unit: str
    lower_is_better: bool | None = True


# The table's metrics in order; a key a summary does not carry (the twin's, when
# outputs.counterfactual is off) shows "—".
FIXED_METRICS: tuple[Metric, ...] = (
    Metric("losses.borne_by_others", "loss borne by others", "money"),
    Metric("bad_debt.total", "bad debt", "money"),
    Metric("losses.socialised", "socialised loss", "money"),
    Metric("adl.notional", "ADL notional", "money"),
    Metric("insurance_fund.min", "insurance fund minimum", "money", lower_is_better=False),
    Metric("liquidations.count", "liquidations", "count"),
    Metric("liquidations.notional", "liquidated notional", "money"),
    Metric("liquidations.spells", "distress spells", "count"),
    Metric("cascades.count", "cascades", "count"),
    Metric("cascades.max_generation", "deepest generation", "count"),
    Metric("cascades.largest_size", "largest cascade (distress spells)", "count"),
    Metric("cascades.largest_liquidations", "largest cascade (liquidations)", "count"),
    Metric("cascades.amplification", "liquidation amplification", "x"),
    Metric("price.max_venue_drawdown", "venue drawdown (worst)", "fraction"),
    Metric("price.amplification_vs_true", "price amplification vs true path", "x"),
    Metric("margin.im_peak", "peak total IM", "money", lower_is_better=None),
    Metric("margin.im_over_gross", "IM / gross notional (time-weighted; options at premium; lower = less capital)",
           "ratio", lower_is_better=None),
    Metric("margin.max_utilisation", "peak IM / equity", "ratio", lower_is_better=None),
    # against the no-feedback twin (present when outputs.counterfactual ran it)
    Metric("counterfactual.venue_drawdown_amplification", "venue drawdown vs no-feedback twin", "x"),
    Metric("counterfactual.mark_drawdown_amplification", "mark drawdown vs no-feedback twin", "x"),
    Metric("counterfactual.liquidated_notional_ratio", "liquidated notional vs no-feedback twin", "x"),
    Metric("counterfactual.liquidated_notional_difference", "liquidated notional beyond the twin", "money"),
    Metric("counterfactual.bad_debt_difference", "bad debt beyond the twin", "money"),
    # procyclicality: the fixed reference portfolio's IM / gross from the measurement window's start
    # (``margin.reference_rate``, docs/METHODOLOGY.md); its positions never change, so only the
    # regime's response to prices moves it. When a rise happened is not compared: a regime with no
    # rise has no time, and a difference of times says little (summary.json and the run report have them)
    Metric("margin.reference_rate.at_measure_from", "reference portfolio IM / gross at the window's start", "ratio",
           lower_is_better=None),
    Metric("margin.reference_rate.peak", "reference portfolio IM / gross: peak", "ratio", lower_is_better=None),
    Metric("margin.reference_rate.trough", "reference portfolio IM / gross: trough", "ratio", lower_is_better=None),
    Metric("margin.reference_rate.final", "reference portfolio IM / gross at the end", "ratio", lower_is_better=None),
    Metric("margin.reference_rate.peak_to_trough_ratio", "reference portfolio IM / gross: peak / trough", "x"),
    Metric("margin.reference_rate.max_increase", "reference portfolio IM / gross: largest rise over the horizon",
           "ratio"),
    Metric("margin.reference_rate.max_increase_relative",
           "reference portfolio IM / gross: largest relative rise over the horizon", "fraction"),
)
# a family of keys added by others (one per loss layer the episode has), picked up whenever a summary has them
DYNAMIC_PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("losses.who_paid.", "who paid: ", "money"),
)
GROUP_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("im_over_gross", "IM / gross", "ratio"),
    ("leverage", "leverage (gross / equity)", "x"),
    ("im_over_capital", "IM / starting capital", "ratio"),
    ("liquidations", "liquidations", "count"),
)


# The units of the headline figures (``sim.experiment.metrics.HEADLINE``, which gives their labels)
# that the table above does not list; with it every headline figure has a label and a unit wherever
# it is shown (the reverse stress report's measures, say) -- tests/experiment/test_compare.py checks none is missing.
HEADLINE_UNITS: dict[str, str] = {
    "bad_debt.accounts": "count",
    "insurance_fund.final": "money",
    "losses.backstop_vault.pnl_final": "money",
    "solvency.bad_debt_recoveries": "money",
    "solvency.hidden_loss": "money",
    "price.amplification_vs_counterfactual": "x",
    "price.true_drawdown": "fraction",
    "margin.population_im.peak_to_trough_ratio": "x",
    "margin.population_im.max_increase": "money",
    "liquidation_delay.breach_to_start.mean": "s",
    "slippage.mean_bps": "bps",
}
_FIXED_BY_KEY = {m.key: m for m in FIXED_METRICS}
_HEADLINE_LABELS = dict(HEADLINE)


def metric_of(key: str) -> Metric:
    """The label and unit of any flattened summary key -- the one lookup for everything that shows a
    summary figure with its unit: the table's own metrics, the dynamic families and the per-group
    fields (as ``metrics_for`` lists them), then the headline figures (label from ``HEADLINE``, unit
    from ``HEADLINE_UNITS``). A key none of them names is labelled from its own words, without a
    unit (its value then shows as a plain number)."""
    fixed = _FIXED_BY_KEY.get(key)
    if fixed is not None:
        return fixed
    for prefix, label, unit in DYNAMIC_PREFIXES:
        if key.startswith(prefix):
            return Metric(key, label + key[len(prefix):].replace("_", " "), unit, None)
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "groups":
        for field, label, unit in GROUP_FIELDS:
            if parts[2] == field:
                return Metric(key, f"{parts[1]}: {label}", unit, None)
    if key in _HEADLINE_LABELS and key in HEADLINE_UNITS:
        return Metric(key, _HEADLINE_LABELS[key], HEADLINE_UNITS[key], None)
    return Metric(key, " › ".join(p.replace("_", " ") for p in parts), "", None)


SHORT_VERDICTS = {"distinguishable from seed noise": "distinguishable", "within seed noise": "within noise",
                  "identical on every seed": "identical"}


def short_verdict(stat: Mapping[str, Any]) -> str:
    """The verdict in a word or two, for dense tables ("" for the baseline and single seeds)."""
    return SHORT_VERDICTS.get(str(stat.get("verdict")), "")


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(float(v)) else None


def metrics_for(summaries: Sequence[Mapping[str, Any]]) -> list[Metric]:
    """The fixed metrics, then every dynamic-family key and every group's fields that some summary has."""
    flats = [flatten(s) for s in summaries]
    keys = sorted({k for f in flats for k, v in f.items() if _number(v) is not None})
    out = list(FIXED_METRICS)
    for prefix, _label, _unit in DYNAMIC_PREFIXES:
        out.extend(metric_of(k) for k in keys if k.startswith(prefix) and k not in _FIXED_BY_KEY)
    groups: list[str] = []
    for s in summaries:
        for g in (s.get("groups") or {}):
            if g not in groups:
                groups.append(g)
    for g in groups:
        out.extend(metric_of(f"groups.{g}.{field}") for field, _label, _unit in GROUP_FIELDS)
    return out


def row_of(label: str, seed: int, summary: Mapping[str, Any], metrics: Sequence[Metric]) -> dict[str, Any]:
    """One comparison row: regime label, seed, then every metric (None where absent)."""
    flat = flatten(summary)
    return {"regime": label, "seed": int(seed), **{m.key: _number(flat.get(m.key)) for m in metrics}}


def _t_quantile(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


def paired_stats(rows: Sequence[Mapping[str, Any]], regimes: Sequence[str], metrics: Sequence[Metric]
                 ) -> list[dict[str, Any]]:
    """Per regime and metric: mean, spread and the paired-difference interval vs ``regimes[0]``
    (see the module docstring); one dict per (regime, metric), regimes in order."""
    by = {(r["regime"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    base = regimes[0]
    out = []
    for regime in regimes:
        for m in metrics:
            values = [by[(regime, s)].get(m.key) for s in seeds if (regime, s) in by]
            vals = np.array([v for v in values if v is not None], dtype=np.float64)
            stat: dict[str, Any] = {"regime": regime, "metric": m.key, "label": m.label, "unit": m.unit,
                                    "n": int(vals.size),
                                    "mean": float(vals.mean()) if vals.size else None,
                                    "std": float(vals.std(ddof=1)) if vals.size > 1 else None,
                                    "min": float(vals.min()) if vals.size else None,
                                    "max": float(vals.max()) if vals.size else None,
                                    "diff_mean": None, "diff_low": None, "diff_high": None, "pairs": 0}
            if regime == base:
                stat["verdict"] = "baseline"
                out.append(stat)
                continue
            d = np.array([by[(regime, s)][m.key] - by[(base, s)][m.key] for s in seeds
                          if (regime, s) in by and (base, s) in by
                          and by[(regime, s)].get(m.key) is not None and by[(base, s)].get(m.key) is not None],
                         dtype=np.float64)
            stat["pairs"] = int(d.size)
            if d.size == 0:
                stat["verdict"] = "not measured"
            else:
                stat["diff_mean"] = float(d.mean())
                if np.all(d == 0.0):
                    stat["diff_low"] = stat["diff_high"] = 0.0
                    stat["verdict"] = "identical on every seed"
                elif d.size < 2:
                    stat["verdict"] = "one seed: no interval"
                else:
                    half = _t_quantile(d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
                    stat["diff_low"], stat["diff_high"] = float(d.mean() - half), float(d.mean() + half)
                    excludes = stat["diff_low"] > 0.0 or stat["diff_high"] < 0.0
                    stat["verdict"] = "distinguishable from seed noise" if excludes else "within seed noise"
            out.append(stat)
    return out


def parse_regimes_option(text: str) -> list[str | dict]:
    """``--regimes``: comma-separated ``[label=]name`` items, or a YAML/JSON list of regime mappings
    (each may carry ``label``), e.g. ``'[{regime: standard, label: std tiers}, portfolio]'``."""
    import yaml

    text = text.strip()
    if text.startswith("["):
        try:
            items = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            from sim.experiment.errors import ConfigError

            raise ConfigError(f"--regimes: not a valid YAML list ({exc})") from None
        return [i if isinstance(i, (str, dict)) else str(i) for i in items]
    out: list[str | dict] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        if "=" in item:
            label, name = (x.strip() for x in item.split("=", 1))
            out.append({"regime": name, "label": label})
        else:
            out.append(item)
    return out


# ------------------------------------------------------------------------------------ running
# A task is one episode of a (regime, seed) pair: ``part`` "run" is the episode itself, "twin" its
# no-feedback twin (when ``outputs.counterfactual`` is on). The two are separate pool tasks so that
# two cores share one pair's work; the driver summarises the pair when both are back.
CompareTask = dict[str, Any]  # label, seed, part, config (EpisodeConfig), cost, progress (heartbeat file or None)

# A no-feedback twin costs ~10% more than its run (liquidations filled outside the market leave
# more accounts to re-margin). Only the order matters: the longest tasks start first so the last
# ones to finish are short and both cores stay busy to the end (sim.experiment.costs).
TWIN_COST = 1.1


def task_cost(task: CompareTask) -> float:
    """The scheduling estimate of a task: its variant's episode estimate (``sim.experiment.costs``,
    the same for every seed) x the twin's surcharge."""
    return float(task["cost"]) * (TWIN_COST if task.get("part") == "twin" else 1.0)


def plan_tasks(variants: Mapping[str, Any], seeds: Sequence[int], progress_dir: str | None = None
               ) -> list[CompareTask]:
    """Every (regime, seed, part) task, longest first (a stable sort: ties keep regime, seed order).

    Each variant (and its no-feedback twin) was validated once; a seed's config is a copy of it with
    only ``seed`` replaced -- no field validator reads the seed, so this is the model a parse of the
    variant's dump with that seed would give, without re-validating the whole episode per (regime,
    seed) here, in the workers and again in the driver's summary. Tasks carry the model itself
    (pickled to pool workers, which do not validate on unpickling)."""
    from sim.experiment.costs import episode_cost
    from sim.experiment.variants import counterfactual_config

    tasks: list[CompareTask] = []
    derived: dict[str, tuple[dict[str, Any], float]] = {}
    for label, variant in variants.items():
        parts = {"run": variant}
        if variant.outputs.counterfactual:
            parts["twin"] = counterfactual_config(variant)
        derived[label] = (parts, episode_cost(variant.model_dump(mode="json")))
    for seed in seeds:
        for label, (parts, cost) in derived.items():
            for part, config in parts.items():
                tasks.append({"label": label, "seed": seed, "part": part, "cost": cost,
                              "config": with_seed(config, seed), "progress": progress_dir})
    return sorted(tasks, key=task_cost, reverse=True)


def with_seed(config: Any, seed: int) -> Any:
    """``config`` with another seed, unvalidated: the schema checks ``seed`` (an int >= 0) by itself
    and nothing else depends on it."""
    if seed < 0:
        raise ValueError(f"seed: must be at least 0, got {seed}")
    return config if config.seed == seed else config.model_copy(update={"seed": int(seed)})


def task_key(task: Mapping[str, Any]) -> str:
    """A task's name for the pool's bookkeeping and the progress heartbeat: label, seed and part."""
    return f"{task.get('label')}|{task.get('seed')}|{task.get('part', 'run')}"


def run_compare_task(task: CompareTask) -> dict[str, Any]:
    """One episode of a (regime, seed) pair in a worker: its tables and run statistics (the driver
    summarises the pair once both parts are back)."""
    from sim.core.arithmetic import profile
    from sim.experiment.episode import run as run_episode
    from sim.experiment.progress import heartbeat

    started = time.process_time()
    config = task["config"]  # the run's or its twin's, as plan_tasks derived it
    with heartbeat(task.get("progress"), task_key(task)) as observe:
        result = run_episode(config, observe=observe)
    return {"label": task["label"], "seed": task["seed"], "part": task.get("part", "run"),
            "tables": result.tables, "stats": result.stats,
            "cpu_seconds": time.process_time() - started,  # what the task cost, whatever the machine's load
            "arithmetic": profile()}  # the worker's floating-point arithmetic (sim.core.arithmetic)


def _failed(task: CompareTask, text: str) -> dict[str, Any]:
    return {"label": task["label"], "seed": task["seed"], "part": task.get("part", "run"), "error": text}


class CompareRunError(RuntimeError):
    """A regime's run failed: the comparison stops (nothing is written)."""


def execute(tasks: list[CompareTask], backend: str, workers: int,
            on_done: Callable[[dict[str, Any]], None]) -> None:
    """Run the tasks in-process (local, one worker) or on the sweep backends (local pool, Ray, Dask);
    a failed run raises ``CompareRunError`` naming the regime and seed (the pool is stopped)."""
    from sim.experiment import executors

    def checked(result: dict[str, Any]) -> None:
        if "error" in result:
            what = "the run" if result.get("part", "run") == "run" else "its no-feedback twin"
            raise CompareRunError(f"regime {result['label']!r}, seed {result['seed']}: {what} failed\n"
                                  f"{result['error']}")
        on_done(result)

    if backend == "local" and workers <= 1:
        for task in tasks:
            checked(run_compare_task(task))
        return
    executors.execute(tasks, backend, workers, executors.Job(run_compare_task, _failed, task_key), checked)
