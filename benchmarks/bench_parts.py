"""The sweep driver's row writes: one fsynced file per row (before) against appending to a segment
fsynced in batches (``sim.experiment.parts``, after).

Each of ``--rows`` rows is a sweep-shaped dict of ~19 kB of JSON (the default episode's summary
row is about that size); the folder is on the same disk as ``--dir`` (default: the system's
temporary folder). Both ways write every row to the operating system; what differs is the
fsyncs: before, two per row (the file and its folder, ``sim.experiment.io.write_atomic``);
after, one per ``parts.ROWS_PER_SYNC`` rows (or ``SECONDS_PER_SYNC``) and one at the end.

Usage: ``python benchmarks/bench_parts.py [--rows 2000] [--repeat 3] [--dir D]``. Prints the
best of the repeats for each way (wall ms per row: this is I/O, CPU time says little) and ends
with exactly one line ``parts_ms_per_row=<float>`` (after).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.experiment.io import write_atomic  # noqa: E402
from sim.experiment.parts import PartWriter, Rows  # noqa: E402


def _rows(n: int) -> list[dict]:
    metrics = {f"metric.{i:03d}": i * 1.25 for i in range(700)}
    return [{"run_id": f"{i:016x}", "point": {"margin": "span"}, "seed": i, "status": "ok", "error": None,
             "config_hash": "0" * 64, "wall_seconds": 1.0, "metrics": metrics} for i in range(n)]


def per_file(folder: Path, rows: list[dict]) -> None:
    for row in rows:
        write_atomic(folder / f"{row['run_id']}.json", json.dumps(row, sort_keys=True).encode("utf-8"))


def segment(folder: Path, rows: list[dict]) -> None:
    with PartWriter(folder) as writer:
        for row in rows:
            writer.write(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    rows = _rows(args.rows)
    print(f"{args.rows:,} rows of {len(json.dumps(rows[0])) / 1024:.1f} kB each")
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, fn in (("one fsynced file per row", per_file), ("segment, batched fsync", segment)):
            folder = Path(tempfile.mkdtemp(prefix="bench-parts-", dir=args.dir))
            try:
                started = time.perf_counter()
                fn(folder, rows)
                wall = time.perf_counter() - started
                if fn is segment:
                    assert len(Rows(folder)) == args.rows
            finally:
                shutil.rmtree(folder)
            best[name] = min(best.get(name, wall), wall)
    for name, wall in best.items():
        print(f"{name:28s} {wall * 1e3 / args.rows:8.3f} ms/row  ({wall:.2f} s)")
    before, after = best["one fsynced file per row"], best["segment, batched fsync"]
    print(f"speed-up {before / after:.1f}x")
    print(f"parts_ms_per_row={after * 1e3 / args.rows:.4f}")


if __name__ == "__main__":
    main()
