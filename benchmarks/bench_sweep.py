"""Sweep throughput on the local process pool: the same small sweep with 1 and then 2 workers.

The sweep is the packaged default episode (the stylised 10-11 Oct 2025 crash, 5,400 simulated
seconds, ~300 accounts) under 2 margin regimes x ``--seeds`` seeds. Wall time is measured around
the whole ``sweep()`` call -- planning and validation, worker start-up (spawn), the runs, the
durable per-run rows and the final Parquet table -- so runs/minute is what a user gets, not the
bare episode rate. Each line also gives the 1-minute load average before the measurement and the
CPU seconds the workers used per run (from ``RUSAGE_CHILDREN``; it does not depend on how busy the
machine is, so it tells a slow machine from a shared one). The last line is
``runs_per_min=<2-worker figure>``.

    .venv/bin/python benchmarks/bench_sweep.py [--seeds 2] [--duration SECONDS]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from sim.experiment.sweep import sweep


def spec(out: Path, seeds: int, duration: float | None) -> dict:
    overrides = {} if duration is None else {"duration": duration}
    return {"name": "bench", "base": None, "overrides": overrides, "grid": {"margin": ["standard", "span"]},
            "seeds": seeds, "output": str(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per regime (runs = 2 x seeds)")
    parser.add_argument("--duration", type=float, default=None, help="override the episode's duration (s)")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}; sweep = default episode x "
          f"[standard, span] x {args.seeds} seeds" + (f", duration {args.duration:g} s" if args.duration else ""))
    rates = {}
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        for workers in (1, 2):
            s = spec(Path(tmp) / f"w{workers}.parquet", args.seeds, args.duration)
            load = os.getloadavg()[0]
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            table = sweep(s, backend="local", workers=workers, progress=False)
            wall = time.perf_counter() - started
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
            ok = table.column("status").to_pylist().count("ok")
            runs = table.num_rows
            if ok != runs:
                raise SystemExit(f"{runs - ok} of {runs} runs failed:\n" + "\n".join(
                    e for e in table.column("error").to_pylist() if e))
            mean_run = sum(table.column("wall_seconds").to_pylist()) / runs
            rates[workers] = runs / wall * 60.0
            print(f"workers={workers}: {runs} runs in {wall:.1f} s -> {rates[workers]:.2f} runs/min "
                  f"(mean {mean_run:.1f} s wall per run inside the worker, {cpu / runs:.1f} CPU-s per run; "
                  f"load average before {load:.2f} on {os.cpu_count()} cores)")
    print(f"speed-up 2 vs 1 workers: {rates[2] / rates[1]:.2f}x")
    print(f"runs_per_min={rates[2]:.2f}")


if __name__ == "__main__":
    main()
