"""Parameter sweeps: a grid x seeds of episodes, on a local process pool, Ray or Dask -> one Parquet table.

``sweep(grid, backend="local", workers=N, resume=False, out=None, progress=True)``:

1. The sweep config is read and **every grid point is validated as a full episode before anything
   runs**; a bad point fails the whole sweep up front, naming the point and the field.
2. Each run (point x seed) is ``sim.experiment.episode.run(config)`` + ``sim.experiment.metrics.summarise`` in a worker
   process. A failure is recorded (status ``error`` and the traceback) without stopping the sweep.
   A worker that dies (killed, out of memory) fails only the run it was on, marked
   ``infrastructure``; the local pool is rebuilt and the other runs continue.
3. As each run finishes, its row is written durably and atomically to ``<out>.parts/<run_id>.json``
   (temp file + rename). ``resume=True`` keeps the finished rows whose config is unchanged and runs
   only the rest (and the infrastructure failures; ``retry_errors`` every failed row), so an
   interrupted sweep that is resumed ends with every row exactly once. The table and the rows folder
   replace earlier ones only if clearsim wrote them, and only with ``force`` or ``resume``.
4. The table -- in grid order: the grid's first path varies slowest, seeds fastest -- is written
   atomically to ``<out>`` (Parquet) and returned.

Columns: ``run_id`` (16 hex digits of SHA-256 over the point and the seed, so it is stable across
machines and backends), one column per grid path (the value; JSON text where values are not all
simple scalars of one type), ``seed``, ``status`` (ok | error), ``error`` (traceback or null),
``config_hash`` (SHA-256 of the full resolved config: resume re-runs a row whose config changed),
``wall_seconds`` (the only non-deterministic column), then the flattened summary metrics
(``bad_debt.total``, ``cascades.amplification``, ...; lists as JSON text), sorted by name.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import itertools
import json
import os
import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from sim.experiment import executors
from sim.experiment.config import PACKAGED_DEFAULT, format_validation_error, parse_episode
from sim.experiment.errors import ConfigError
from sim.experiment.io import arrow_column, parse_yaml, read_yaml, set_path, write_atomic
from sim.experiment.sweep_config import SweepConfig

__all__ = ["sweep", "load_sweep", "output_path", "require_backend", "plan", "SweepError", "SweepTask", "run_task",
           "run_and_summarise", "summary_json", "assemble_table", "execute", "write_part", "read_parts",
           "run_id_of", "parts_dir", "error_row"]

DEFAULT_RUNNER = "sim.experiment.sweep:run_and_summarise"


class SweepError(ConfigError):
    """A sweep that cannot start (bad sweep file or a grid point that is not a valid episode)."""


# ------------------------------------------------------------------------------------ loading
def load_sweep(path: str | Path) -> tuple[SweepConfig, Path]:
    """Read and validate a sweep file; returns the config and the folder relative paths start from."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: no such file")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"), str(path)) or {}  # repeated keys refused
    except ConfigError as exc:
        raise SweepError(str(exc)) from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: the top level must be a mapping")
    try:
        return SweepConfig.model_validate(data), path.parent
    except ValidationError as exc:
        raise SweepError(format_validation_error(exc, str(path))) from None


def _coerce(grid: SweepConfig | Mapping[str, Any] | str | Path) -> tuple[SweepConfig, Path, str]:
    if isinstance(grid, SweepConfig):
        return grid, Path.cwd(), "<sweep>"
    if isinstance(grid, Mapping):
        try:
            return SweepConfig.model_validate(dict(grid)), Path.cwd(), "<sweep>"
        except ValidationError as exc:
            raise SweepError(format_validation_error(exc, "<sweep>")) from None
    cfg, root = load_sweep(grid)
    return cfg, root, str(grid)


def _grid_value(path: str, value: Any, base: Mapping[str, Any]) -> Any:
    """A regime name where a margin regime mapping is expected: for ``margin``, the base episode's own
    margin config when it is already that regime (so ``[standard, span]`` compares the episode's
    tuned standard regime with SPAN), otherwise ``{regime: name}`` with that regime's defaults."""
    if isinstance(value, str) and path == "margin":
        current = base.get("margin")
        if isinstance(current, dict) and current.get("regime", "standard") == value:
            return copy.deepcopy(current)
        return {"regime": value}
    if isinstance(value, str) and path.startswith("compare_regimes."):
        return {"regime": value}
    return copy.deepcopy(value)


# ------------------------------------------------------------------------------------ planning
def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_id_of(point: Mapping[str, Any], seed: int) -> str:
    """Stable id of a run: 16 hex digits of SHA-256 over the grid point and the seed."""
    return _hash({"point": dict(point), "seed": int(seed)})[:16]


SweepTask = dict[str, Any]  # run_id, point, seed, data (raw episode dict), config_hash, runner, root (file paths)


def plan(grid: SweepConfig | Mapping[str, Any] | str | Path, runner: str = DEFAULT_RUNNER
         ) -> tuple[SweepConfig, list[SweepTask]]:
    """Expand the grid into tasks and validate every point as an episode (raises ``SweepError``)."""
    cfg, root, source = _coerce(grid)
    if cfg.base is None:
        base_path = PACKAGED_DEFAULT
    else:
        base_path = Path(cfg.base)
        if not base_path.is_absolute():
            base_path = root / base_path
    root_of_base = base_path.absolute().parent  # replay CSV paths resolve against the base episode's folder
    try:
        base = read_yaml(base_path)
    except ConfigError as exc:
        raise SweepError(f"{source}: base: {exc}") from None
    for key, value in cfg.overrides.items():
        try:
            set_path(base, key, copy.deepcopy(value), merge=True)
        except KeyError as exc:
            raise SweepError(f"{source}: overrides.{key}: {exc.args[0]}") from None
    keys = list(cfg.grid)
    seeds = cfg.seed_list()
    tasks: list[SweepTask] = []
    problems: list[str] = []
    for combo in itertools.product(*(cfg.grid[k] for k in keys)):
        point = dict(zip(keys, combo))
        data = copy.deepcopy(base)
        label = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in point.items())
        try:
            for key, value in point.items():
                set_path(data, key, _grid_value(key, value, base))
        except KeyError as exc:
            problems.append(f"grid point ({label}): {exc.args[0]}")
            continue
        data["seed"] = seeds[0]
        try:
            parse_episode(data, root=root_of_base)
        except ConfigError as exc:
            detail = str(exc).split("\n", 1)[1] if "\n" in str(exc) else str(exc)
            problems.append(f"grid point ({label}):\n{detail}")
            continue
        for seed in seeds:
            d = copy.deepcopy(data)
            d["seed"] = seed
            tasks.append({"run_id": run_id_of(point, seed), "point": point, "seed": seed, "data": d,
                          "config_hash": _hash(d), "runner": runner, "root": str(root_of_base)})
    if problems:
        shown = problems[:20]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise SweepError(f"{source}: {len(problems)} of {cfg.n_points()} grid points are not valid episodes "
                         f"(nothing was run)\n" + "\n".join(shown) + more)
    ids = [t["run_id"] for t in tasks]
    if len(set(ids)) != len(ids):
        raise SweepError(f"{source}: two grid points produce the same run id")
    return cfg, tasks


# ------------------------------------------------------------------------------------ the worker
def run_and_summarise(config: Any) -> dict[str, Any]:
    """The default runner: one episode, its summary."""
    from sim.experiment.episode import run
    from sim.experiment.metrics import summarise

    result = run(config)
    return summarise(config, result.tables, result.stats)


def _resolve(runner: str) -> Callable[[Any], Mapping[str, Any]]:
    module, _, name = runner.partition(":")
    return getattr(importlib.import_module(module), name)


def run_task(task: SweepTask) -> dict[str, Any]:
    """Run one task in a worker; never raises (a failure becomes an ``error`` row)."""
    from sim.experiment.metrics import flatten

    started = time.perf_counter()
    row: dict[str, Any] = {"run_id": task["run_id"], "point": task["point"], "seed": task["seed"],
                           "config_hash": task["config_hash"], "status": "ok", "error": None, "metrics": {}}
    try:
        config = parse_episode(task["data"], root=task.get("root"))
        summary = _resolve(task.get("runner") or DEFAULT_RUNNER)(config)
        row["metrics"] = flatten(summary)
        json.dumps(row["metrics"], allow_nan=False)  # a summary must be plain JSON
    except Exception:  # noqa: BLE001 -- recorded, the sweep goes on
        row["status"] = "error"
        row["error"] = traceback.format_exc()
        row["metrics"] = {}
    row["wall_seconds"] = time.perf_counter() - started
    return row


def _error_row(task: SweepTask, text: str, infrastructure: bool = False) -> dict[str, Any]:
    """A failed run. ``infrastructure``: the run did not fail, its worker did (killed, lost, out of
    memory) -- ``resume`` runs such rows again; ``retry_errors`` also re-runs the others."""
    return {"run_id": task["run_id"], "point": task["point"], "seed": task["seed"],
            "config_hash": task["config_hash"], "status": "error", "error": text, "metrics": {},
            "wall_seconds": None, "infrastructure": infrastructure}


# ------------------------------------------------------------------------------------ durable parts
def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _write_part(parts: Path, row: Mapping[str, Any]) -> dict[str, Any]:
    """Write a row durably; returns it as read back (so fresh and resumed rows are the same values)."""
    text = json.dumps(row, sort_keys=True, allow_nan=False, default=str)
    write_atomic(parts / f"{row['run_id']}.json", text.encode("utf-8"))
    return json.loads(text)


def _read_parts(parts: Path) -> dict[str, dict[str, Any]]:
    rows = {}
    if not parts.is_dir():
        return rows
    for path in sorted(parts.glob("*.json")):
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable: that run is simply run again
        if isinstance(row, dict) and row.get("run_id") == path.stem:
            rows[path.stem] = row
    return rows


def assemble_table(rows: Iterable[Mapping[str, Any]], grid_keys: list[str]) -> pa.Table:
    """The sweep table: one row per run, in the order given -- ``sweep`` gives grid order (see the
    module docstring for the columns)."""
    rows = list(rows)
    metric_keys = sorted({k for r in rows for k in r.get("metrics", {})})
    columns: dict[str, pa.Array] = {"run_id": pa.array([r["run_id"] for r in rows], type=pa.string())}
    for key in grid_keys:
        columns[key] = arrow_column([r["point"].get(key) for r in rows])
    columns["seed"] = pa.array([int(r["seed"]) for r in rows], type=pa.int64())
    columns["status"] = pa.array([r["status"] for r in rows], type=pa.string())
    columns["error"] = pa.array([r.get("error") for r in rows], type=pa.string())
    columns["config_hash"] = pa.array([r.get("config_hash") for r in rows], type=pa.string())
    columns["wall_seconds"] = pa.array([r.get("wall_seconds") for r in rows], type=pa.float64())
    for key in metric_keys:
        name = key if key not in columns else f"metric.{key}"
        columns[name] = arrow_column([r.get("metrics", {}).get(key) for r in rows])
    from sim.experiment.outdir import TABLE_KEY

    return pa.table(columns, metadata={TABLE_KEY: b"1"})  # marks the file as clearsim's (``sim.experiment.outdir``)


def _write_table(table: pa.Table, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ backends
def _infrastructure_error_row(task: SweepTask, text: str) -> dict[str, Any]:
    """What a sweep task whose worker raised outside the run, or died, becomes."""
    return _error_row(task, text, infrastructure=True)


def run_key(task: Mapping[str, Any]) -> str:
    """A sweep row's name to the executors' bookkeeping: its run id."""
    return str(task["run_id"])


def execute(tasks: list[SweepTask], backend: str, workers: int, on_done: Callable[[dict], None],
            client: Any = None, *, fn: Callable[[dict], dict] = run_task,
            error_row: Callable[[dict, str], dict] = _infrastructure_error_row, running: Path | None = None,
            address: str | None = None) -> None:
    """Sweep-shaped tasks (one episode row each) on a backend (``sim.experiment.executors``): sweeps and
    reverse stress tests (``sim.experiment.reverse_stress``) run through it. ``fn`` runs one task in a
    worker and ``error_row`` is what a task whose worker raised or died becomes."""
    executors.execute(tasks, backend, workers, executors.Job(fn, error_row, run_key), on_done, client=client,
                      address=address, running=running)


def error_row(task: SweepTask, text: str) -> dict[str, Any]:
    """The row of a sweep-shaped task whose worker raised or died (status ``error``, the traceback)."""
    return _error_row(task, text)


def write_part(parts: Path, row: Mapping[str, Any]) -> dict[str, Any]:
    """Write a finished row durably under ``parts`` (see :func:`sweep`); returns it as read back."""
    return _write_part(parts, row)


def read_parts(parts: Path) -> dict[str, dict[str, Any]]:
    """The finished rows under ``parts`` by run id (unreadable files are skipped: run again)."""
    return _read_parts(parts)


# ------------------------------------------------------------------------------------ the API
EXTRAS = {"ray": ("ray", "ray"), "dask": ("distributed", "dask")}  # backend -> (module, pip extra)


def require_backend(backend: str) -> None:
    """Refuse a backend whose extra is not installed, naming the extra (before anything is written)."""
    import importlib.util

    if backend not in EXTRAS:
        return
    module, extra = EXTRAS[backend]
    if importlib.util.find_spec(module) is None:
        raise SweepError(f"--backend {backend} needs the {extra!r} extra: pip install 'clearsim[{extra}]' "
                         f"(or use --backend local)")


def output_path(cfg: SweepConfig, out: str | Path | None = None) -> Path:
    """Where the table goes: ``out``, else the sweep's ``output``, else results/sweeps/<name>.parquet."""
    return Path(out if out is not None else (cfg.output or f"results/sweeps/{cfg.name}.parquet"))


def sweep(grid: SweepConfig | Mapping[str, Any] | str | Path, backend: str = "local", workers: int | None = None,
          resume: bool = False, out: str | Path | None = None, progress: bool = True, *,
          client: Any = None, runner: str = DEFAULT_RUNNER, retry_errors: bool = False, force: bool = False,
          address: str | None = None
          ) -> pa.Table:
    """Run a sweep; returns the table (also written to ``out``, default the sweep's ``output``).

    ``backend``: ``local`` (process pool, spawn), ``ray`` (a local Ray with ``workers`` CPUs unless
    one is initialised) or ``dask`` (``client``, or a local cluster of ``workers`` processes).
    ``address``: an existing Ray or Dask cluster to run on instead (``ray://head:10001`` or ``auto``;
    ``tcp://scheduler:8786``); ``workers`` then bounds nothing -- the cluster schedules by its CPUs.
    ``resume``: keep finished rows from ``<out>.parts/``; rows that failed for infrastructure reasons
    (a worker died) are run again, and with ``retry_errors`` every failed row is.
    ``force``: replace an earlier clearsim sweep's table and rows (without it, or ``resume``, an
    existing one is refused; a file or folder clearsim did not write is refused either way).
    ``runner``: ``"module:function"`` taking an ``EpisodeConfig`` and returning a summary dict.
    """
    if backend not in ("local", "ray", "dask"):
        raise ValueError(f"backend must be local, ray or dask, not {backend!r}")
    if address is not None and backend == "local":
        raise ValueError("address: a cluster address needs --backend ray or dask")
    require_backend(backend)
    workers = max(1, int(workers or os.cpu_count() or 1))
    cfg, tasks = plan(grid, runner=runner)
    out = output_path(cfg, out)
    parts = parts_dir(out)
    _claim_outputs(out, parts, resume, force)
    for stale in parts.glob(".*.tmp-*"):
        stale.unlink(missing_ok=True)
    wanted = {t["run_id"]: t for t in tasks}
    done: dict[str, dict[str, Any]] = {}
    if resume:
        for run_id, row in _read_parts(parts).items():
            task = wanted.get(run_id)
            if task is None or row.get("config_hash") != task["config_hash"]:
                continue
            if row.get("status") != "ok" and (retry_errors or row.get("infrastructure")):
                continue
            done[run_id] = row
    todo = [t for t in tasks if t["run_id"] not in done]

    from sim.experiment.progress import EpisodeProgress

    def duration(task: SweepTask) -> float:
        return float(task["data"].get("duration") or 0.0)

    title = f"{cfg.name} [{backend} x{workers}]"
    bar = EpisodeProgress(progress, runs=len(tasks), sim_seconds=sum(duration(t) for t in tasks), description=title)
    errors = sum(1 for r in done.values() if r.get("status") != "ok")

    def on_done(row: dict[str, Any]) -> None:
        nonlocal errors
        done[row["run_id"]] = _write_part(parts, row)
        errors += row["status"] != "ok"
        # a sweep's runner returns only a summary: the bar moves as runs finish, by their own counters
        bar.run_done(int(row["metrics"].get("run.events") or 0), duration(wanted[row["run_id"]]))
        if errors:
            bar.describe(f"{title} · {errors:,} errors")

    with bar:
        for run_id in done:  # resumed rows: done, but their events are not this session's work
            bar.run_done(0, duration(wanted[run_id]))
        if errors:
            bar.describe(f"{title} · {errors:,} errors")
        if todo:
            running = None
            if backend == "local":
                running = parts / ".running"
                running.mkdir(exist_ok=True)
            execute(todo, backend, workers, on_done, client=client, running=running, address=address)
    table = assemble_table([done[t["run_id"]] for t in tasks], list(cfg.grid))
    _write_table(table, out)
    return table


def _claim_outputs(out: Path, parts: Path, resume: bool, force: bool) -> None:
    """Check the table file and the rows folder before anything runs (``sim.experiment.outdir``); without
    ``resume`` an earlier sweep's rows (clearsim's, ``force`` given) are removed, never anything else."""
    from sim.experiment.outdir import check_folder, check_table_file, is_clearsim_folder, write_marker

    check_table_file(out, replace=force or resume)
    if parts.exists() and not parts.is_symlink() and parts.is_dir() and any(parts.iterdir()):
        if resume:
            if not is_clearsim_folder(parts):
                check_folder(parts, force, what="sweep rows folder")  # raises: not clearsim's
        else:
            check_folder(parts, force, what="sweep rows folder",
                         hint="pass --resume to continue that sweep or --force to start it over")
            shutil.rmtree(parts)
    elif parts.exists() or parts.is_symlink():
        check_folder(parts, force, what="sweep rows folder")  # a file or a link: refused
    parts.mkdir(parents=True, exist_ok=True)
    write_marker(parts, "sweep-parts")


def summary_json(data: Mapping[str, Any]) -> str:
    """Validate an episode dict, run it, and return its ``summary.json`` text (used to check that
    every backend produces the same bytes)."""
    from sim.experiment.io import dump_json

    return dump_json(run_and_summarise(parse_episode(dict(data))))
