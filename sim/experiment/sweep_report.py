"""A sweep's HTML report: each headline metric against the swept parameters, seeds as bands.

Per metric, a line plot: the x axis is the grid's first parameter (its values in grid order; evenly
spaced when they are not numbers); with a second parameter there is one line per value of it.
Each line is the mean over seeds and its band the seeds' min..max, so a reader sees at once
whether a difference between grid points is larger than the seed noise. With two or more swept
parameters, a heatmap follows: the first parameter across, the second down, each cell the mean
over seeds (written in the cell; a cell with no successful run is blank and marked "—").
Parameters beyond the second are pooled into the band and the cell (the report says so). Failed
runs are left out and counted.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["write_sweep_report", "sweep_report", "metric_columns"]


def metric_columns(table: pa.Table, grid_keys: list[str]) -> list[str]:
    """The numeric metrics to plot: the headline metrics present, else every numeric metric."""
    from sim.experiment.metrics import HEADLINE

    fixed = set(grid_keys) | {"run_id", "seed", "status", "error", "config_hash", "wall_seconds"}
    def plottable(n: str) -> bool:  # a number column, or one undefined in every run (shown as such)
        t = table.schema.field(n).type
        return (pa.types.is_integer(t) or pa.types.is_floating(t)
                or (table.num_rows > 0 and table.column(n).null_count == table.num_rows))

    numeric = [n for n in table.column_names if n not in fixed and plottable(n)]
    headline = [key for key, _ in HEADLINE if key in numeric]
    return headline or numeric


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (int, float)):
        from sim.experiment.fmt import compact

        return compact(value)
    return str(value)


def _figure(rows: list[dict], metric: str, x_key: str, hue_key: str | None, x_values: list, hue_values: list) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sim.experiment.fmt import axis
    from sim.experiment.report import _png

    numeric_x = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x_values)
    xs = np.array(x_values, dtype=float) if numeric_x else np.arange(len(x_values), dtype=float)
    fig = Figure(figsize=(7.0, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cells = _cells(rows, metric, x_key, hue_key)
    for hue in hue_values:
        mean, low, high = _line(cells, x_values, hue)
        label = None if hue_key is None else f"{hue_key} = {_label(hue)}"
        line, = ax.plot(xs, mean, marker="o", lw=1.3, label=label)
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, lw=0)
    if not numeric_x:
        ax.set_xticks(xs)
        ax.set_xticklabels([_label(v) for v in x_values])
    else:
        axis(ax, "x")
    axis(ax, "y")
    ax.set_xlabel(x_key)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if hue_key is not None:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _png(fig)


def _key(value: Any) -> Any:
    """A grouping key equal for equal grid values: the value itself when hashable (so ``==`` decides,
    as a comparison would), else its canonical JSON (a mapping or list swept as one value). A NaN
    gets a key of its own, as it equals nothing (a dict would match the very same NaN object)."""
    if isinstance(value, float) and value != value:
        return object()
    try:
        hash(value)
    except TypeError:
        return ("json", json.dumps(value, sort_keys=True, default=str))
    return value


def _cells(rows: list[dict], metric: str, x_key: str, y_key: str | None) -> dict[tuple, list[float]]:
    """The metric's finite values per (first, second) parameter value (second None with one parameter),
    in row order: one pass over the rows, so a report costs rows x metrics, not rows x cells x metrics."""
    cells: dict[tuple, list[float]] = {}
    for r in rows:
        v = r.get(metric)
        if v is not None and np.isfinite(v):
            cells.setdefault((_key(r[x_key]), None if y_key is None else _key(r[y_key])), []).append(v)
    return cells


def _line(cells: dict[tuple, list[float]], x_values: list, hue: Any) -> tuple[list, list, list]:
    """One line of a metric's plot: mean, min and max over the runs at each first-parameter value
    (NaN where none defines it)."""
    mean, low, high = [], [], []
    h = None if hue is None else _key(hue)
    for x in x_values:
        vals = cells.get((_key(x), h))
        mean.append(np.mean(vals) if vals else np.nan)
        low.append(np.min(vals) if vals else np.nan)
        high.append(np.max(vals) if vals else np.nan)
    return mean, low, high


def _cell_means(rows: list[dict], metric: str, x_key: str, y_key: str, x_values: list, y_values: list
                ) -> np.ndarray:
    """The heatmap's values: mean over seeds (and pooled parameters) per (second, first) parameter
    value; NaN where no successful run defines the metric."""
    cells = _cells(rows, metric, x_key, y_key)
    out = np.full((len(y_values), len(x_values)), np.nan)
    for i, y in enumerate(y_values):
        for j, x in enumerate(x_values):
            vals = cells.get((_key(x), _key(y)))
            if vals:
                out[i, j] = float(np.mean(vals))
    return out


def _heatmap(rows: list[dict], metric: str, x_key: str, y_key: str, x_values: list, y_values: list) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sim.experiment.fmt import DASH, axis, compact
    from sim.experiment.report import _png

    means = _cell_means(rows, metric, x_key, y_key, x_values, y_values)
    fig = Figure(figsize=(7.0, 0.9 + 0.45 * len(y_values)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.ma.masked_invalid(means), aspect="auto", cmap="viridis", origin="lower")
    axis(fig.colorbar(image, ax=ax).ax, "y")
    finite = means[np.isfinite(means)]
    middle = float(finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(len(y_values)):
        for j in range(len(x_values)):
            v = means[i, j]
            ax.text(j, i, compact(float(v)) if np.isfinite(v) else DASH, ha="center", va="center", fontsize=8,
                    color="black" if np.isfinite(v) and v > middle else "white" if np.isfinite(v) else "#777777")
    ax.set_xticks(np.arange(len(x_values)))
    ax.set_xticklabels([_label(v) for v in x_values])
    ax.set_yticks(np.arange(len(y_values)))
    ax.set_yticklabels([_label(v) for v in y_values])
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    ax.set_title(f"{metric}: mean over seeds", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def sweep_report(table: pa.Table, grid_keys: list[str], title: str = "sweep") -> str:
    """The report as one self-contained HTML page."""
    from sim.experiment.report import _page

    rows_all = table.to_pylist()
    rows = [r for r in rows_all if r.get("status") == "ok"]
    failed = len(rows_all) - len(rows)
    seeds = sorted({r["seed"] for r in rows_all})
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class=muted>{len(rows_all):,} runs · {len(seeds)} seed(s) per point · grid: "
             + html.escape(", ".join(grid_keys)) + (f" · <b>{failed:,} failed runs left out</b>" if failed else "")
             + "</p>",
             "<p>Lines: mean over seeds; bands: min..max over seeds"
             + (f" and over {html.escape(', '.join(grid_keys[2:]))} (pooled)" if len(grid_keys) > 2 else "")
             + "." + (f" Heatmaps: {html.escape(grid_keys[0])} across, {html.escape(grid_keys[1])} down, each"
                      " cell the mean over seeds" + (" and the pooled parameters" if len(grid_keys) > 2 else "")
                      + "." if len(grid_keys) > 1 else "") + "</p>"]
    if not rows:
        parts.append("<p>No successful runs: nothing to plot.</p>")
    else:
        x_key = grid_keys[0]
        hue_key = grid_keys[1] if len(grid_keys) > 1 else None
        x_values = _ordered(r[x_key] for r in rows_all)
        hue_values = _ordered(r[hue_key] for r in rows_all) if hue_key else [None]
        for metric in metric_columns(table, grid_keys):
            if all(r.get(metric) is None for r in rows):
                parts.append(f"<h2>{html.escape(metric)}</h2><p class=muted>— (undefined in every run)</p>")
                continue
            parts.append(f"<h2>{html.escape(metric)}</h2>"
                         + _figure(rows, metric, x_key, hue_key, x_values, hue_values))
            if hue_key is not None:
                parts.append(f'<div class=heatmap data-metric="{html.escape(metric)}">'
                             + _heatmap(rows, metric, x_key, hue_key, x_values, hue_values) + "</div>")
    return _page(title, "\n".join(parts))


def _ordered(values: Iterable[Any]) -> list:
    """Distinct values in first-seen (grid) order."""
    seen: list = []
    keys: set[str] = set()
    for v in values:
        key = json.dumps(v, sort_keys=True, default=str)
        if key not in keys:
            keys.add(key)
            seen.append(v)
    return seen


def write_sweep_report(table: pa.Table, grid_keys: list[str], path: str | Path, title: str = "sweep") -> Path:
    """Write the report atomically (``sim.experiment.sweep``'s temp file + fsync + rename); returns its path."""
    from sim.experiment.io import write_atomic as _write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, sweep_report(table, grid_keys, title).encode("utf-8"))
    return path.absolute()
