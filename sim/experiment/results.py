"""Writing a results folder atomically: summary.json, config.yaml, one Parquet file per table, report.html.

Everything is written into a temporary folder next to the target and renamed into place, so a
reader never sees a half-written folder. An existing folder is replaced by: write the new temp
folder, rename the old one aside, rename the new one in, delete the old one (the target name is
missing only for the instant between the two renames, and never names a partial folder).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from sim.experiment.io import dump_json, fsync_dir, write_text

__all__ = ["write_results", "write_comparison", "read_results"]


@contextmanager
def _atomic_folder(directory: str | Path, kind: str, force: bool = False,
                   replace_same_kind: bool = False) -> Iterator[Path]:
    """Yield a hidden temp folder beside ``directory``; on success it replaces ``directory`` in one
    rename (an old folder is moved aside first), on any error it is removed and nothing changes.
    Only a folder clearsim wrote is ever replaced, and only with ``force`` -- or, with
    ``replace_same_kind`` (a resumed command continuing its own output, nothing else), when it is
    an earlier output of the same ``kind`` (see ``sim.experiment.outdir``)."""
    from sim.experiment.outdir import check_folder, write_marker

    same_kind = kind if replace_same_kind else None
    target = check_folder(directory, force, same_kind=same_kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    tmp = target.parent / f".{target.name}.tmp-{token}"
    tmp.mkdir()
    try:
        write_marker(tmp, kind)
        yield tmp
        check_folder(directory, force, same_kind=same_kind)  # nothing else appeared there meanwhile
        fsync_dir(tmp)
        _swap_in(tmp, target, token)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_config(folder: Path, config: Any) -> None:
    dumped = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
    write_text(folder / "config.yaml", yaml.safe_dump(dumped, sort_keys=False, allow_unicode=True))


def _write_tables(folder: Path, tables: Mapping[str, Mapping[str, np.ndarray]], config: Any) -> None:
    """The one place result tables become Parquet: in user units with units in the schema
    (``sim.experiment.tables``); every table is converted before the first file is written, so an
    unregistered column fails the write before anything is on disk."""
    from sim.experiment.tables import file_name, to_arrow

    converted = {file_name(name): to_arrow(name, table, config) for name, table in tables.items()}
    for stem, arrow in converted.items():
        pq.write_table(arrow, folder / f"{stem}.parquet")


def _write_run_files(folder: Path, config: Any, tables: Mapping[str, Mapping[str, np.ndarray]],
                     summary: Mapping[str, Any], report: bool, parquet: bool) -> None:
    write_text(folder / "summary.json", dump_json(summary))
    _write_config(folder, config)
    if parquet:
        _write_tables(folder, tables, config)
    if report:
        from sim.experiment.report import episode_report

        write_text(folder / "report.html", episode_report(config, tables, summary))


def write_results(directory: str | Path, config: Any, tables: Mapping[str, Mapping[str, np.ndarray]],
                  summary: Mapping[str, Any], timing: Mapping[str, Any] | None = None, report: bool = True,
                  parquet: bool = True, force: bool = False) -> Path:
    """Write one run's results folder atomically; returns its path. An existing folder is replaced
    only if clearsim wrote it and ``force`` is given (``sim.experiment.outdir``).

    Files: ``summary.json`` (deterministic), ``config.yaml`` (the resolved config),
    ``timing.json`` (what depends on the machine: wall-clock figures and the floating-point
    arithmetic the run had, only if ``timing`` is given), ``<table>.parquet`` per
    table (if ``parquet``), ``report.html`` (if ``report``).
    """
    with _atomic_folder(directory, "run", force) as tmp:
        _write_run_files(tmp, config, tables, summary, report=report, parquet=parquet)
        if timing is not None:
            write_text(tmp / "timing.json", dump_json(_jsonable(timing)))
    return Path(directory).absolute()


def write_comparison(directory: str | Path, config: Any,
                     runs: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Mapping[str, np.ndarray]]]],
                     report: bool = True, parquet: bool = True, *, rows: list[dict[str, Any]] | None = None,
                     stats: list[dict[str, Any]] | None = None, metrics: list | None = None,
                     variants: Mapping[str, Any] | None = None, seeds: list[int] | None = None,
                     force: bool = False, timing: Mapping[str, Any] | None = None) -> Path:
    """Write a regime comparison folder atomically; returns its path (replacing only a clearsim
    folder, and only with ``force``).

    ``runs[label] = (summary, tables)`` of each regime's first seed; ``rows`` (one per regime and
    seed, every metric the table prints) and ``stats`` (per regime and metric: mean, spread and the
    paired interval) come from ``sim.experiment.api.compare`` (computed from ``runs`` alone when not given).

    Files: ``comparison.json`` / ``comparison.parquet`` (the rows), ``intervals.json`` /
    ``intervals.parquet`` (the stats), ``timing.json`` (what depends on the machine: each task's
    CPU seconds and floating-point arithmetic, if ``timing`` is given), ``config.yaml`` (the base
    episode), one folder per regime
    (named after its label) with its first seed's ``summary.json``, ``config.yaml``, its tables as
    Parquet (if ``parquet``) and its own ``report.html`` (if ``report``), and the comparison
    ``report.html`` linking to them.
    """
    from sim.experiment.compare import metrics_for, paired_stats, row_of
    from sim.experiment.variants import slug

    labels = list(runs)
    if metrics is None:
        metrics = metrics_for([s for s, _t in runs.values()])
    if rows is None:
        rows = [row_of(label, int(s.get("run", {}).get("seed") or 0), s, metrics) for label, (s, _t) in runs.items()]
    if stats is None:
        stats = paired_stats(rows, labels, metrics)
    if seeds is None:
        seeds = sorted({r["seed"] for r in rows})
    folders: dict[str, str] = {}
    for label in labels:
        name, k = slug(label), 2
        while name in folders.values():
            name, k = f"{slug(label)}_{k}", k + 1
        folders[label] = name
    with _atomic_folder(directory, "compare", force) as tmp:
        write_text(tmp / "comparison.json", dump_json(rows))
        pq.write_table(_rows_table(rows), tmp / "comparison.parquet")
        write_text(tmp / "intervals.json", dump_json(stats))
        pq.write_table(_rows_table(stats), tmp / "intervals.parquet")
        if timing is not None:
            write_text(tmp / "timing.json", dump_json(_jsonable(timing)))
        _write_config(tmp, config)
        for label, (summary, tables) in runs.items():
            sub = tmp / folders[label]
            sub.mkdir()
            variant = (variants or {}).get(label, config)
            _write_run_files(sub, variant, tables, summary, report=report, parquet=parquet)
        if report:
            from sim.experiment.compare_report import comparison_page

            write_text(tmp / "report.html", comparison_page(config, runs, rows, stats, metrics, seeds, folders,
                                                             linked=report))
    return Path(directory).absolute()


def _rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of plain values as a typed Arrow table (the sweep's column typing; a column with no value
    at all -- a metric no run carries -- is a float column of nulls, as it would be with values)."""
    from sim.experiment.io import arrow_column as _arrow_column

    keys = list(dict.fromkeys(k for r in rows for k in r))
    columns = {}
    for k in keys:
        values = [r.get(k) for r in rows]
        columns[k] = (pa.array(values, type=pa.float64()) if all(v is None for v in values)
                      else _arrow_column(values))
    return pa.table(columns)


def _swap_in(tmp: Path, target: Path, token: str) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` is moved aside first and then deleted."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.parent / f".{target.name}.old-{token}"
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)  # put the previous results back
        raise
    fsync_dir(target.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def _jsonable(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {str(k): _jsonable(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_jsonable(v) for v in data]
    if isinstance(data, np.generic):
        data = data.item()
    if isinstance(data, float) and not np.isfinite(data):
        return None
    return data


def read_results(directory: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Read a results folder back: (summary, tables as dicts of numpy columns, keyed by file stem,
    in the units they were written in -- see docs/RESULTS.md; ``sim.experiment.api.load`` gives Arrow tables)."""
    directory = Path(directory)
    summary = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
    tables: dict[str, dict[str, np.ndarray]] = {}
    for path in sorted(directory.glob("*.parquet")):
        t = pq.read_table(path)
        cols: dict[str, np.ndarray] = {}
        for name in t.column_names:
            col = t.column(name)
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type):
                cols[name] = np.array(col.to_pylist(), dtype=object)
            else:
                cols[name] = col.to_numpy(zero_copy_only=False)
        tables[path.stem] = cols
    return summary, tables
