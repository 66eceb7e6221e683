"""Parameter sweeps: a grid x seeds of episodes, on a local process pool, Ray or Dask -> one Parquet table.

``sweep(grid, backend="local", workers=N, resume=False, out=None, progress=True)``:

1. The sweep config is read and **every grid point is validated as a full episode before anything
   runs**; a bad point fails the whole sweep up front, naming the point and the field.
2. Each run (point x seed) is ``sim.experiment.episode.run(config)`` + ``sim.experiment.metrics.summarise`` in a worker
   process. What every run shares (the base episode with the overrides) goes to each worker once;
   a task is its grid point and seed, and the worker builds the episode and checks it hashes to the
   config the driver validated. Runs are handed out dearest first (``sim.experiment.costs``), so the
   last to finish are short. A worker pays its start-up (imports) once, before its first run.
   A failure is recorded (status ``error`` and the traceback) without stopping the sweep.
   A worker that dies (killed, out of memory) fails only the run it was on, marked
   ``infrastructure``; the local pool is rebuilt and the other runs continue.
3. As each run finishes, its row is appended to ``<out>.parts/`` and dropped: the driver keeps no
   rows, only each run's status. Rows are fsynced in batches (``sim.experiment.parts``) and no
   finished row stays unsynced longer than ~``parts.SECONDS_PER_SYNC`` (plus the fsync): a crash
   of the machine loses at most the rows written since the last sync (fewer than
   ``parts.ROWS_PER_SYNC``, all within the last ~``parts.SECONDS_PER_SYNC``), which ``resume``
   runs again, and never corrupts a row; a killed driver loses none. The row
   on disk also holds the run's ``timing`` (its CPU seconds, its worker and the worker's start-up
   CPU seconds and peak memory), which the table leaves out. ``resume=True`` keeps the finished rows whose config is unchanged and runs
   only the rest (and the infrastructure failures; ``retry_errors`` every failed row), so an
   interrupted sweep that is resumed ends with every row exactly once. The table and the rows folder
   replace earlier ones only if clearsim wrote them, and only with ``force`` or ``resume``.
4. The table -- in grid order: the grid's first path varies slowest, seeds fastest -- is assembled
   from the rows on disk a batch at a time, written atomically to ``<out>`` (Parquet) and returned.

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
from sim.experiment.costs import episode_cost
from sim.experiment.errors import ConfigError
from sim.experiment.io import ColumnKind, fsync_dir, parse_yaml, read_yaml, set_path
from sim.experiment.sweep_config import SweepConfig
from sim.experiment.parts import PartWriter, Rows

__all__ = ["sweep", "load_sweep", "output_path", "require_backend", "plan", "SweepError", "SweepTask", "run_task",
           "run_and_summarise", "summary_json", "assemble_table", "execute",
           "run_id_of", "parts_dir", "error_row", "episode_data"]

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
        raise SweepError(format_validation_error(exc, str(path), SweepConfig)) from None


def _coerce(grid: SweepConfig | Mapping[str, Any] | str | Path) -> tuple[SweepConfig, Path, str]:
    if isinstance(grid, SweepConfig):
        return grid, Path.cwd(), "<sweep>"
    if isinstance(grid, Mapping):
        try:
            return SweepConfig.model_validate(dict(grid)), Path.cwd(), "<sweep>"
        except ValidationError as exc:
            raise SweepError(format_validation_error(exc, "<sweep>", SweepConfig)) from None
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


SweepTask = dict[str, Any]  # run_id, point, seed, config_hash, duration, cost (+ data, runner, root from ``plan``)
SweepContext = dict[str, Any]  # base (the episode dict every point starts from), root (file paths), runner


def episode_data(context: SweepContext, point: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The episode dict of one run: the base with the grid point's values set, and the seed. The
    driver builds it to validate and hash a run; a worker builds it again from the shared base, so
    a task needs to carry only its point and seed."""
    base = context["base"]
    data = copy.deepcopy(base)
    for key, value in point.items():
        set_path(data, key, _grid_value(key, value, base))
    data["seed"] = seed
    return data


def _plan(grid: SweepConfig | Mapping[str, Any] | str | Path, runner: str
          ) -> tuple[SweepConfig, SweepContext, list[SweepTask]]:
    """The sweep's config, the context every run shares and one lean task per run, in grid order;
    every point validated as an episode first (raises ``SweepError``)."""
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
    context: SweepContext = {"base": base, "root": str(root_of_base), "runner": runner}
    keys = list(cfg.grid)
    seeds = cfg.seed_list()
    tasks: list[SweepTask] = []
    problems: list[str] = []
    for combo in itertools.product(*(cfg.grid[k] for k in keys)):
        point = dict(zip(keys, combo))
        label = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in point.items())
        try:
            data = episode_data(context, point, seeds[0])
        except KeyError as exc:
            problems.append(f"grid point ({label}): {exc.args[0]}")
            continue
        try:
            parse_episode(data, root=root_of_base)
        except ConfigError as exc:
            detail = str(exc).split("\n", 1)[1] if "\n" in str(exc) else str(exc)
            problems.append(f"grid point ({label}):\n{detail}")
            continue
        duration, cost = float(data.get("duration") or 0.0), episode_cost(data)
        for seed in seeds:
            data["seed"] = seed  # the only field that differs between a point's runs
            tasks.append({"run_id": run_id_of(point, seed), "point": point, "seed": seed,
                          "config_hash": _hash(data), "duration": duration, "cost": cost})
    if problems:
        shown = problems[:20]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise SweepError(f"{source}: {len(problems)} of {cfg.n_points()} grid points are not valid episodes "
                         f"(nothing was run)\n" + "\n".join(shown) + more)
    ids = [t["run_id"] for t in tasks]
    if len(set(ids)) != len(ids):
        raise SweepError(f"{source}: two grid points produce the same run id")
    return cfg, context, tasks


def plan(grid: SweepConfig | Mapping[str, Any] | str | Path, runner: str = DEFAULT_RUNNER
         ) -> tuple[SweepConfig, list[SweepTask]]:
    """Expand the grid into tasks and validate every point as an episode (raises ``SweepError``).
    Each task is whole -- its episode dict in ``data``, with ``runner`` and ``root`` -- so
    ``run_task(task)`` runs it anywhere; ``sweep`` itself ships the base once per worker instead."""
    cfg, context, tasks = _plan(grid, runner)
    return cfg, [dict(t, data=episode_data(context, t["point"], t["seed"]), runner=runner, root=context["root"])
                 for t in tasks]


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


def warm() -> None:
    """A worker's start-up: what a run imports, once per worker before its first run."""
    importlib.import_module("sim.experiment.episode")
    importlib.import_module("sim.experiment.metrics")


def run_task(task: SweepTask, context: SweepContext | None = None) -> dict[str, Any]:
    """Run one task in a worker; never raises (a failure becomes an ``error`` row). A whole task
    (``plan``) carries its episode dict; a lean one (``sweep``) is built from the shared ``context``
    and must hash to the config the driver validated."""
    from sim.experiment.metrics import flatten

    started = time.perf_counter()
    row: dict[str, Any] = {"run_id": task["run_id"], "point": task["point"], "seed": task["seed"],
                           "config_hash": task["config_hash"], "status": "ok", "error": None, "metrics": {}}
    try:
        if context is None:
            data, root, runner = task["data"], task.get("root"), task.get("runner")
        else:
            data, root, runner = episode_data(context, task["point"], task["seed"]), context["root"], context["runner"]
            if _hash(data) != task["config_hash"]:
                raise RuntimeError("the episode built in the worker is not the one the driver validated "
                                   "(different clearsim versions on the driver and the worker?)")
        config = parse_episode(data, root=root)
        summary = _resolve(runner or DEFAULT_RUNNER)(config)
        row["metrics"] = flatten(summary)
        json.dumps(row["metrics"], allow_nan=False)  # a summary must be plain JSON
    except Exception:  # noqa: BLE001 -- recorded, the sweep goes on
        row["status"] = "error"
        row["error"] = traceback.format_exc()
        row["metrics"] = {}
    row["wall_seconds"] = time.perf_counter() - started
    return row


def error_row(task: SweepTask, text: str, infrastructure: bool = False) -> dict[str, Any]:
    """The row of a failed sweep-shaped run (status ``error``, the traceback). ``infrastructure``: the
    run did not fail, its worker did (killed, lost, out of memory) -- ``resume`` runs such rows again;
    ``retry_errors`` also re-runs the others."""
    return {"run_id": task["run_id"], "point": task["point"], "seed": task["seed"],
            "config_hash": task["config_hash"], "status": "error", "error": text, "metrics": {},
            "wall_seconds": None, "infrastructure": infrastructure}


# ------------------------------------------------------------------------------------ durable parts
def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


class _Columns:
    """The sweep table's columns and their types, gathered row by row (see the module docstring)."""

    def __init__(self, grid_keys: list[str]) -> None:
        self.grid_keys = grid_keys
        self.grid = {key: ColumnKind() for key in grid_keys}
        self.metrics: dict[str, ColumnKind] = {}

    def add(self, row: Mapping[str, Any]) -> None:
        point = row["point"]
        for key, kind in self.grid.items():
            kind.add(point.get(key))
        metrics = self.metrics
        for key, value in row.get("metrics", {}).items():
            metric_kind = metrics.get(key)
            if metric_kind is None:
                metric_kind = metrics[key] = ColumnKind()
            metric_kind.add(value)

    def table(self, rows: list[Mapping[str, Any]]) -> pa.Table:
        """``rows`` as a table of every column (a batch of the sweep's rows, or all of them)."""
        columns: dict[str, pa.Array] = {"run_id": pa.array([r["run_id"] for r in rows], type=pa.string())}
        for key, kind in self.grid.items():
            columns[key] = kind.array([r["point"].get(key) for r in rows])
        columns["seed"] = pa.array([int(r["seed"]) for r in rows], type=pa.int64())
        columns["status"] = pa.array([r["status"] for r in rows], type=pa.string())
        columns["error"] = pa.array([r.get("error") for r in rows], type=pa.string())
        columns["config_hash"] = pa.array([r.get("config_hash") for r in rows], type=pa.string())
        columns["wall_seconds"] = pa.array([r.get("wall_seconds") for r in rows], type=pa.float64())
        for key in sorted(self.metrics):
            name = key if key not in columns else f"metric.{key}"
            columns[name] = self.metrics[key].array([r.get("metrics", {}).get(key) for r in rows])
        from sim.experiment.outdir import TABLE_KEY

        return pa.table(columns, metadata={TABLE_KEY: b"1"})  # marks the file as clearsim's (``sim.experiment.outdir``)


def assemble_table(rows: Iterable[Mapping[str, Any]], grid_keys: list[str]) -> pa.Table:
    """The sweep table: one row per run, in the order given -- ``sweep`` gives grid order (see the
    module docstring for the columns)."""
    rows = list(rows)
    columns = _Columns(grid_keys)
    for row in rows:
        columns.add(row)
    return columns.table(rows)


TABLE_BATCH_ROWS = 1024  # rows read back and written per Parquet row group when the table is assembled


def _write_table_from_parts(rows: Rows, run_ids: list[str], grid_keys: list[str], out: Path, *,
                            replace: bool) -> pa.Table:
    """The sweep table, in the order of ``run_ids``, from the rows on disk: a first pass reads each
    row once for the columns and their types, a second writes them in batches -- so the driver
    never holds more than a batch of rows. Written atomically to ``out``; returns it as read back
    (Arrow columns, a small fraction of the rows as Python objects).

    ``out`` is checked again right before the rename (``check_table_file`` with ``replace``, as at
    the sweep's start): a sweep can run for hours, and a file put there meanwhile -- or another
    sweep's table, when none was there to replace -- is left as it is; the rows stay on disk."""
    columns = _Columns(grid_keys)
    for run_id in run_ids:
        columns.add(rows[run_id])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        writer = None
        try:
            for i in range(0, max(len(run_ids), 1), TABLE_BATCH_ROWS):
                batch = columns.table([rows[run_id] for run_id in run_ids[i:i + TABLE_BATCH_ROWS]])
                if writer is None:
                    writer = pq.ParquetWriter(tmp, batch.schema)
                writer.write_table(batch)
        finally:
            if writer is not None:
                writer.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        _recheck_table_file(out, replace)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(out.parent)  # the rename itself durable
    return pq.read_table(out)


def _recheck_table_file(out: Path, replace: bool) -> None:
    from sim.experiment.outdir import OutputFolderError, table_file_problem

    problem = table_file_problem(out, replace)
    if problem is not None:
        raise OutputFolderError(f"sweep output {out}: {problem[0]} -- put there while the sweep ran, and left as it "
                                f"is. Every run's row is kept in {parts_dir(out)}: move it away, then the same "
                                f"command with --resume writes the table without running anything again")


# ------------------------------------------------------------------------------------ backends
def _infrastructure_error_row(task: SweepTask, text: str) -> dict[str, Any]:
    """What a sweep task whose worker raised outside the run, or died, becomes."""
    return error_row(task, text, infrastructure=True)


def run_key(task: Mapping[str, Any]) -> str:
    """A sweep row's name to the executors' bookkeeping: its run id."""
    return str(task["run_id"])


def execute(tasks: list[SweepTask], backend: str, workers: int, on_done: Callable[[dict], None],
            client: Any = None, *, fn: Callable[..., dict] = run_task,
            error_row: Callable[[dict, str], dict] = _infrastructure_error_row, running: Path | None = None,
            address: str | None = None, shared: Any = None, timed: bool = False) -> None:
    """Sweep-shaped tasks (one episode row each) on a backend (``sim.experiment.executors``): sweeps and
    reverse stress tests (``sim.experiment.reverse_stress``) run through it. ``fn`` runs one task in a
    worker (``fn(task, shared)`` when ``shared`` is given: sent to each worker once) and ``error_row``
    is what a task whose worker raised or died becomes; ``timed`` rows carry their worker's
    ``timing`` (``sim.experiment.executors``). Tasks are handed out in the order given."""
    job = executors.Job(fn, error_row, run_key, shared=shared, warm=warm, timed=timed)
    executors.execute(tasks, backend, workers, job, on_done, client=client, address=address, running=running)


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
    cfg, context, tasks = _plan(grid, runner)
    out = output_path(cfg, out)
    parts = parts_dir(out)
    _claim_outputs(out, parts, resume, force)
    wanted = {t["run_id"]: t for t in tasks}
    # the driver keeps each run's status, never its row: a row is written to disk as it arrives and
    # read back only to assemble the table, a batch at a time
    kept: dict[str, str] = {}
    if resume:
        for run_id, row in Rows(parts).items():
            task = wanted.get(run_id)
            if task is None or row.get("config_hash") != task["config_hash"]:
                continue
            if row.get("status") != "ok" and (retry_errors or row.get("infrastructure")):
                continue
            kept[run_id] = str(row.get("status"))
    # the dearest runs first (a stable sort: equal estimates keep grid order), so that the last runs
    # to finish are short ones and no worker idles while another finishes a long run
    todo = sorted((t for t in tasks if t["run_id"] not in kept), key=lambda t: t["cost"], reverse=True)

    from sim.experiment.progress import EpisodeProgress

    title = f"{cfg.name} [{backend} x{workers}]"
    bar = EpisodeProgress(progress, runs=len(tasks), sim_seconds=sum(t["duration"] for t in tasks), description=title)
    errors = sum(1 for status in kept.values() if status != "ok")

    def on_done(row: dict[str, Any]) -> None:
        nonlocal errors
        writer.write(row)
        errors += row["status"] != "ok"
        # a sweep's runner returns only a summary: the bar moves as runs finish, by their own counters
        bar.run_done(int(row["metrics"].get("run.events") or 0), wanted[row["run_id"]]["duration"])
        if errors:
            bar.describe(f"{title} · {errors:,} errors")

    with bar, PartWriter(parts) as writer:
        for run_id in kept:  # resumed rows: done, but their events are not this session's work
            bar.run_done(0, wanted[run_id]["duration"])
        if errors:
            bar.describe(f"{title} · {errors:,} errors")
        if todo:
            # the local pool's workers name their runs in a temporary folder the executor makes for
            # this call alone, so no file of an interrupted sweep can blame a run
            execute(todo, backend, workers, on_done, client=client, address=address, shared=context, timed=True)
    return _write_table_from_parts(Rows(parts), [t["run_id"] for t in tasks], list(cfg.grid), out,
                                   replace=force or resume)


def _claim_outputs(out: Path, parts: Path, resume: bool, force: bool) -> None:
    """Check the table file and the rows folder before anything runs (``sim.experiment.outdir``); without
    ``resume`` an earlier sweep's rows (its marker, ``force`` given) are removed, never anything else --
    not another clearsim command's results, nor a folder holding only clearsim folders; with
    ``resume`` rows are added only to an earlier sweep's folder."""
    from sim.experiment.outdir import check_table_file, claim_rows_folder

    check_table_file(out, replace=force or resume)
    claim_rows_folder(parts, PARTS_KIND, resume, what="sweep rows folder", force=force,
                      hint="pass --resume to continue that sweep or --force to start it over")


PARTS_KIND = "sweep-parts"


def summary_json(data: Mapping[str, Any]) -> str:
    """Validate an episode dict, run it, and return its ``summary.json`` text (used to check that
    every backend produces the same bytes)."""
    from sim.experiment.io import dump_json

    return dump_json(run_and_summarise(parse_episode(dict(data))))
