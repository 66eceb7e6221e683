"""The README's first command, timed: ``compare`` on the packaged default episode (standard, SPAN,
portfolio and var_apc margin, one seed, each run with its no-feedback twin) on ``--workers`` workers,
writing the comparison folder and every report.

Wall time is measured around the whole ``sim.experiment.api.compare`` call (validation, worker start-up, the
runs, the summaries, the folder and its reports). Because the machine is shared, the script also
prints what does not depend on the load: each task's CPU seconds (measured inside the worker) and
the driver's own CPU seconds (summaries, tables, reports), and from them the wall time two idle
cores would take -- the makespan of the tasks dealt in plan order (longest first) to whichever
worker is free first, plus a worker's start-up and the driver's CPU seconds (an upper bound: a
part of the driver's work overlaps the runs). It prints the 1-minute load average before and after. The last line is
``compare_seconds=<wall>``.

    .venv/bin/python benchmarks/bench_compare.py [--workers 2] [--seeds 1]
"""

from __future__ import annotations

import argparse
import heapq
import os
import resource
import tempfile
import time
from pathlib import Path

from sim.experiment.api import compare
from machine import describe  # noqa: E402 -- benchmarks/machine.py: the processor and Python, one line


def makespan(costs: list[float], workers: int) -> float:
    """The finish time of ``costs`` dealt in order, each to the worker free first."""
    free = [0.0] * workers
    for c in costs:
        heapq.heappush(free, heapq.heappop(free) + c)
    return max(free)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {describe()}")
    print(f"clearsim compare (default episode), {args.workers} workers, {args.seeds} seed(s)")
    load = os.getloadavg()[0]
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="bench_compare_") as tmp:
        started = time.perf_counter()
        out = compare(None, output=Path(tmp) / "compare", seeds=args.seeds, workers=args.workers)
        wall = time.perf_counter() - started
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    driver = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
    workers_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    for (label, seed, part), cpu in out.cpu_seconds.items():
        print(f"  task {label:>10} seed {seed} {part:<4}: {cpu:6.1f} CPU-s")
    costs = list(out.cpu_seconds.values())
    idle = makespan(costs, args.workers)
    start_up = max(workers_cpu - sum(costs), 0.0) / args.workers  # each worker's imports, in parallel
    print(f"tasks: {sum(costs):.1f} CPU-s in all; dealt longest first to {args.workers} idle workers they end "
          f"after {idle:.1f} s; worker start-up {start_up:.1f} CPU-s each; driver {driver:.1f} CPU-s "
          f"(lazy imports, validation, summaries, folder, reports)")
    print(f"estimate on {args.workers} idle cores: {idle + start_up + driver:.0f} s or less; measured: {wall:.1f} s "
          f"wall (load average {load:.2f} before, {os.getloadavg()[0]:.2f} after); "
          f"{driver + workers_cpu:.1f} CPU-s in all")
    print(f"compare_seconds={wall:.1f}")


if __name__ == "__main__":
    main()
