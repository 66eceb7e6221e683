"""The Python API, mirroring the CLI: ``run``, ``compare``, ``sweep``, ``validate``, ``backtest``,
``reverse_stress``, and ``load`` to read a results folder back.

Everything here takes an ``EpisodeConfig``, a path to an episode YAML, or None (the packaged
default episode), validates it completely before running anything, and writes results atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


from sim.experiment.errors import ConfigError
from sim.experiment.runs import EpisodeLike, RunOutput, resolve, run, validate
from sim.experiment.variants import counterfactual_config, regime_variants, run_variant
from sim.experiment.schema.episode import EpisodeConfig

if TYPE_CHECKING:
    import pyarrow as pa

    from sim.experiment.backtest.run import BacktestOutput
    from sim.experiment.reverse_stress import ReverseStressOutput

__all__ = ["EpisodeLike", "RunOutput", "ComparisonOutput", "Results", "resolve", "validate", "run", "run_variant",
           "counterfactual_config", "regime_variants", "compare", "load", "sweep", "backtest", "reverse_stress"]



@dataclass
class ComparisonOutput:
    summaries: dict[str, dict[str, Any]]  # regime label -> summary of the first seed
    directory: Path | None
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per (regime, seed): every printed metric
    stats: list[dict[str, Any]] = field(default_factory=list)  # per (regime, metric): mean, spread, interval
    seeds: list[int] = field(default_factory=list)
    runs: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # (label, seed) -> summary
    # (label, seed, part) -> the CPU seconds of that task (part: "run" or its no-feedback "twin"), in plan order
    cpu_seconds: dict[tuple[str, int, str], float] = field(default_factory=dict)


def _compare_progress(progress: Any, cfg: EpisodeConfig, variants: dict[str, EpisodeConfig], seeds: int) -> Any:
    """The comparison's progress display (``sim.experiment.progress``): ``progress`` True/False, or a display."""
    from sim.experiment.progress import EpisodeProgress

    if isinstance(progress, EpisodeProgress):
        return progress
    parts = sum(2 if v.outputs.counterfactual else 1 for v in variants.values())
    sim_seconds = sum(float(v.duration) * (2 if v.outputs.counterfactual else 1) for v in variants.values())
    return EpisodeProgress(bool(progress), runs=parts * seeds, sim_seconds=sim_seconds * seeds,
                           description=f"{cfg.name}: {len(variants)} regimes x {seeds} seeds")


def _run_pairs(variants: dict[str, EpisodeConfig], seed_list: list[int], tasks: list[dict[str, Any]], backend: str,
               workers: int, bar: Any) -> tuple[dict[tuple[str, int], dict[str, Any]], dict[str, dict],
                                                dict[tuple[str, int, str], dict[str, Any]]]:
    """Run every (regime, seed, part) task and summarise each (regime, seed) pair as soon as both its
    run and its no-feedback twin are back -- the same summary ``run_variant`` makes in one process.
    Returns the summaries by (label, seed), the first seed's tables by label and, by (label, seed,
    part), what each task cost on its machine: ``cpu_seconds`` and ``arithmetic``."""
    from sim.experiment.compare import execute
    from sim.experiment.metrics import summarise

    waiting: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    results: dict[tuple[str, int], dict[str, Any]] = {}
    tables: dict[str, dict] = {}
    costs: dict[tuple[str, int, str], dict[str, Any]] = {}
    configs = {(t["label"], t["seed"]): t["config"] for t in tasks if t["part"] == "run"}

    def on_done(result: dict[str, Any]) -> None:
        from sim.experiment.compare import task_key

        label, seed, part = result["label"], result["seed"], result["part"]
        costs[(label, seed, part)] = {"cpu_seconds": float(result.get("cpu_seconds") or 0.0),
                                      "arithmetic": result.get("arithmetic") or {}}
        bar.run_done(int(result["stats"].get("events") or 0), float(variants[label].duration),
                     key=task_key(result))
        got = waiting.setdefault((label, seed), {})
        got[part] = result
        variant = variants[label]
        if "run" not in got or (variant.outputs.counterfactual and "twin" not in got):
            return
        del waiting[(label, seed)]
        run_cfg = configs[(label, seed)]  # the config the run task ran
        twin = got["twin"]["tables"] if variant.outputs.counterfactual else None
        results[(label, seed)] = summarise(run_cfg, got["run"]["tables"], got["run"]["stats"], counterfactual=twin)
        if seed == seed_list[0]:
            tables[label] = got["run"]["tables"]

    execute(tasks, backend, workers, on_done)
    return results, tables, costs


def compare(config: EpisodeLike = None, regimes: list[str | dict] | None = None,
            output: str | Path | None = None, write: bool = True, seeds: int = 1, backend: str = "local",
            workers: int | None = 1, progress: bool = False, force: bool = False) -> ComparisonOutput:
    """Run the same episode under several margin regimes on ``seeds`` paired seeds (seed k is the
    same path and traders for every regime: the episode's seed + k); one comparison table with each
    metric's mean, spread and the paired-difference interval against the first regime, one report.

    ``backend``/``workers``: in this process (local, 1 worker), a local process pool, Ray or Dask
    (``sim.experiment.sweep``'s executors). Everything is validated before anything runs, the output folder
    too: an existing one is replaced only if clearsim wrote it and ``force`` is given.
    """
    from sim.experiment.compare import metrics_for, paired_stats, plan_tasks, row_of
    from sim.experiment.outdir import check_folder
    from sim.experiment.results import write_comparison

    if seeds < 1:
        raise ConfigError(f"seeds: must be at least 1, got {seeds}")
    if backend not in ("local", "ray", "dask"):
        raise ConfigError(f"backend: must be local, ray or dask, got {backend!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers: must be at least 1, got {workers}")
    cfg = resolve(config)
    variants = regime_variants(cfg, regimes)  # all validated before anything runs
    directory = None
    if write:
        directory = Path(output or (Path(cfg.outputs.directory or Path("results") / cfg.name) / "compare"))
        check_folder(directory, force)
    seed_list = [cfg.seed + k for k in range(seeds)]
    with _compare_progress(progress, cfg, variants, seeds) as bar:
        tasks = plan_tasks(variants, seed_list, bar.heartbeat_dir)
        bar.runs = len(tasks)
        results, tables, costs = _run_pairs(variants, seed_list, tasks, backend, int(workers or os.cpu_count() or 1),
                                            bar)
    labels = list(variants)
    ordered = [results[(label, seed)] for seed in seed_list for label in labels]
    metrics = metrics_for(ordered)
    rows = [row_of(label, seed, results[(label, seed)], metrics) for label in labels for seed in seed_list]
    stats = paired_stats(rows, labels, metrics)
    first = {label: results[(label, seed_list[0])] for label in labels}
    if directory is not None:
        runs = {label: (first[label], tables[label]) for label in labels}
        # what depends on the machine, kept out of the deterministic files: each task's CPU seconds
        # and the floating-point arithmetic it ran with
        timing = {"tasks": [{"regime": t["label"], "seed": t["seed"], "part": t["part"]}
                            | costs[(t["label"], t["seed"], t["part"])] for t in tasks]}
        write_comparison(directory, cfg, runs, report=cfg.outputs.report, parquet=cfg.outputs.parquet,
                         rows=rows, stats=stats, metrics=metrics, variants=variants, seeds=seed_list,
                         force=force, timing=timing)
    cpu_seconds = {key: cost["cpu_seconds"] for key, cost in costs.items()}
    return ComparisonOutput(first, directory, rows, stats, seed_list, results, cpu_seconds)


@dataclass
class Results:
    """A results folder read back: ``summary`` (summary.json), ``config`` (config.yaml as a dict)
    and ``tables`` (file stem -> ``pyarrow.Table`` in quote currency, with units and descriptions in
    each schema's metadata; docs/RESULTS.md). ``results.pandas("trades")`` and
    ``results.polars("trades")`` convert one table (pandas / polars must be installed);
    ``polars.from_arrow(results.tables["trades"])`` works as well."""

    directory: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    tables: dict[str, Any]

    def pandas(self, name: str) -> Any:
        return self._table(name).to_pandas()

    def polars(self, name: str) -> Any:
        import polars as pl

        return pl.from_arrow(self._table(name))

    def _table(self, name: str) -> Any:
        if name not in self.tables:
            raise KeyError(f"no table {name!r} in {self.directory} (tables: {', '.join(sorted(self.tables))})")
        return self.tables[name]

    def units(self, name: str) -> dict[str, str]:
        """Column -> unit, from the table's schema metadata."""
        return {f.name: (f.metadata or {}).get(b"unit", b"").decode() for f in self._table(name).schema}


def load(directory: str | Path) -> Results:
    """Read a results folder written by ``run`` (or one regime's folder inside a ``compare``)."""
    import json

    import pyarrow.parquet as pq
    import yaml

    directory = Path(directory)
    summary_path = directory / "summary.json"
    if not summary_path.is_file():
        if (directory / "comparison.json").is_file():
            regimes = sorted(p.name for p in directory.iterdir() if (p / "summary.json").is_file())
            raise FileNotFoundError(f"{directory} is a regime comparison: load one regime's folder, e.g. "
                                    f"load({str(directory / regimes[0]) if regimes else str(directory / '<regime>')!r}) "
                                    f"(regimes: {', '.join(regimes)})")
        raise FileNotFoundError(f"{directory}: not a results folder (no summary.json)")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    config_path = directory / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    tables = {p.stem: pq.read_table(p) for p in sorted(directory.glob("*.parquet"))}
    return Results(directory, summary, config or {}, tables)


def sweep(grid: Any, backend: str = "local", workers: int = 1, resume: bool = False,
          output: str | Path | None = None, progress: bool = True, force: bool = False,
          retry_errors: bool = False, address: str | None = None) -> pa.Table:
    """A grid x seeds sweep; returns a pyarrow Table with one row per run (see ``sim.experiment.sweep``).
    ``address``: run on an existing Ray or Dask cluster (with ``backend="ray"`` / ``"dask"``)."""
    from sim.experiment.sweep import sweep as run_sweep

    return run_sweep(grid, backend=backend, workers=workers, resume=resume, out=output, progress=progress,
                     force=force, retry_errors=retry_errors, address=address)


def backtest(config: Any, output: str | Path | None = None, write: bool = True, workers: int = 1,
             force: bool = False) -> BacktestOutput:
    """Backtest margin regimes along a price path (a backtest YAML path, dict or ``BacktestConfig``);
    returns a ``sim.experiment.backtest.run.BacktestOutput`` (see ``sim.experiment.backtest``). An
    existing output folder is replaced only if clearsim wrote it and ``force`` is given."""
    from sim.experiment.backtest.run import backtest as run_backtest

    return run_backtest(config, output=output, write=write, workers=workers, force=force)


def reverse_stress(config: Any, backend: str = "local", workers: int | None = None, resume: bool = False,
                   output: str | Path | None = None, write: bool = True,
                   progress: Callable[[str], None] | None = None, force: bool = False) -> ReverseStressOutput:
    """Search for the smallest stress that breaks the clearing house, per regime (a reverse-stress
    YAML path, dict or ``ReverseStressConfig``); see ``sim.experiment.reverse_stress``. An existing
    output folder is replaced only if clearsim wrote it and ``force`` is given (``resume`` continues
    an earlier search and may replace its own results)."""
    from sim.experiment.reverse_stress import reverse_stress as run_reverse_stress

    return run_reverse_stress(config, backend=backend, workers=workers, resume=resume, output=output, write=write,
                              progress=progress, force=force)
