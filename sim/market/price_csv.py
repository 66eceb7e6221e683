"""Reading a price CSV (``timestamp,<column>,...``) for replayed paths, with errors that name the
file and the line. Its own module because the path config checks files while it is validated
(``sim.market.paths_config``) and the path generator replays them (``sim.market.paths``)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def read_price_csv_header(path: Path | str) -> list[str]:
    """Price column names of a ``timestamp,<columns>`` CSV (checks the header only)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with path.open(newline="") as fh:
        header = next(csv.reader(fh), None)
    if not header or header[0].strip() != "timestamp":
        # the line itself is not quoted: the file may not be a price CSV at all (never echo its contents)
        raise ValueError(f"{path}: line 1: the first column must be named 'timestamp' (this is not a price CSV)")
    names = [h.strip() for h in header[1:]]
    if not names:
        raise ValueError(f"{path}: line 1: no price columns after 'timestamp'")
    for i, nm in enumerate(names):
        if not nm:
            raise ValueError(f"{path}: line 1: column {i + 2} has an empty name")
        if nm in names[:i]:
            raise ValueError(f"{path}: line 1: column {i + 2} repeats the name of column {names.index(nm) + 2}")
    return names


def _parse_time(text: str, unit: float) -> float:
    try:
        return float(text) * unit
    except ValueError:
        pass
    ns = np.datetime64(text, "ns").astype(np.int64)  # raises ValueError on garbage
    return float(ns) * 1e-9


# a price file as read: (times in seconds (N,), column names, prices (N, U))
PriceCsv = tuple[np.ndarray, list[str], np.ndarray]


def read_price_csv(path: Path | str, time_unit: str = "s") -> PriceCsv:
    """Read and check a price CSV; returns (times in seconds (N,), column names, prices (N, U)).

    Errors (ValueError) name the file and the 1-based line: missing file, bad header, wrong
    field count, unparsable / non-increasing timestamps, non-numeric / non-finite / non-positive
    prices, no data rows.
    """
    path = Path(path)
    names = read_price_csv_header(path)
    unit = _UNIT_SECONDS[time_unit]
    times: list[float] = []
    rows: list[list[float]] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(names) + 1:
                raise ValueError(f"{path}: line {line}: expected {len(names) + 1} fields, got {len(row)}")
            try:
                t = _parse_time(row[0].strip(), unit)
            except ValueError:
                raise ValueError(f"{path}: line {line}: the timestamp is neither a number nor an ISO date-time") from None
            if not math.isfinite(t):
                raise ValueError(f"{path}: line {line}: the timestamp is not finite")
            if times and t <= times[-1]:
                raise ValueError(f"{path}: line {line}: the timestamp does not increase on the previous row")
            vals = []
            for name, cell in zip(names, row[1:]):
                try:
                    v = float(cell)
                except ValueError:
                    raise ValueError(f"{path}: line {line}: column {name!r}: the price is not a number") from None
                if not (math.isfinite(v) and v > 0.0):
                    raise ValueError(f"{path}: line {line}: column {name!r}: the price must be positive and finite")
                vals.append(v)
            times.append(t)
            rows.append(vals)
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return np.asarray(times), names, np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
