"""Sweep scaling: one grid on 1 and 2 local workers, then on Ray and on Dask (2 workers each).

The grid is the packaged default episode (the stylised 10-11 Oct 2025 crash) cut to its first
hour, as ``configs/sweeps/small.yaml`` does (the cascade is over by then; standard ~5-8 and SPAN
~9-20 CPU-seconds a run), under 2 margin regimes x ``--seeds`` seeds (default 4: 8 runs). Each
configuration is one whole ``sweep()`` call -- planning and validation, starting the workers (and,
for Ray and Dask, the cluster), the runs, the durable per-run rows and the final Parquet table --
so its wall time is what a user waits for. Ray and Dask run twice: starting their own cluster,
as ``clearsim sweep --backend ray|dask`` does, and on a cluster already running (as with
``--address``; the cluster's start is printed apart). Each line gives:

* wall seconds and runs/min (meaningful only on an idle machine: the 1-minute load average before
  is printed beside it);
* CPU seconds, which a busy machine inflates far less: the runs' (each measured in its worker),
  each worker's start-up (measured in the worker before its first run: interpreter, the backend's
  worker code, clearsim's imports -- paid once per worker), the driver's own, and the whole process
  tree's (the driver and every process below it -- pool workers; Ray's GCS, raylet, agents and
  workers; Dask's workers -- sampled with psutil every 0.5 s), so a backend's own overhead shows
  as tree CPU beyond the local pool's;
* bytes shipped: a task as pickled for a worker (before this change each task carried its whole
  episode dict: that size is printed too), the shared base sent once per worker, a result row;
* each worker's peak RSS after its first and after its last run (flat: a run leaves nothing behind);
* an idle-machine estimate from the CPU figures: the runs' CPU seconds dealt dearest first (the
  sweep's own order) to the worker free first, plus the slowest worker start-up and the driver's
  CPU seconds.

The summary gives the speed-up of 2 workers over 1 (measured, and estimated from CPU) and the
overhead of Ray and Dask over the local pool (wall, and extra CPU seconds of the process tree).
The last line is ``runs_per_min=<local pool, 2 workers>``. About 4 minutes on two idle cores.

    .venv/bin/python benchmarks/bench_sweep.py [--seeds 4] [--duration 3600] [--backends local,ray,dask]
                                               [--workers 2] [--no-single]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sim.experiment.sweep as sw
from bench_compare import makespan  # the runs dealt in order, each to the worker free first
from sim.experiment.executors import start_local_dask, start_local_ray


def spec(out: Path, seeds: int, duration: float | None) -> dict:
    overrides = {} if duration is None else {"duration": duration}
    return {"name": "bench", "base": None, "overrides": overrides, "grid": {"margin": ["standard", "span"]},
            "seeds": seeds, "output": str(out)}


class TreeCPU:
    """CPU seconds of this process and every process below it, over a ``with`` block. Children are
    sampled every ``interval`` seconds (their last reading counts: a process that exits between
    two samples loses at most that much); processes alive before the block count from their
    reading at its start. A process is known by its pid and start time; the start time is only
    compared within 10 s, because psutil derives it from the boot time, which this guest's clock
    moves (keyed by the exact figure, one process read as two and was counted twice)."""

    def __init__(self, interval: float = 0.5) -> None:
        import psutil

        self.psutil, self.interval = psutil, interval
        self.me = psutil.Process()
        self.last: dict[int, tuple[float, float]] = {}  # pid -> (start time, CPU seconds)
        self.gone = 0.0  # CPU seconds of processes whose pid was since taken by another
        self.base: dict[int, tuple[float, float]] = {}
        self.stop = threading.Event()
        self.seconds = 0.0

    def _sample(self) -> dict[int, tuple[float, float]]:
        seen = {}
        for p in self.me.children(recursive=True):
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    seen[p.pid] = (p.create_time(), t.user + t.system)
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied, self.psutil.ZombieProcess):
                continue
        return seen

    def _merge(self, seen: dict[int, tuple[float, float]]) -> None:
        for pid, (start, cpu) in seen.items():
            old = self.last.get(pid)
            if old is not None and abs(old[0] - start) > 10.0:  # the pid was reused: a new process
                self.gone += old[1] - self._base_of(pid, old[0])
            self.last[pid] = (start, cpu)

    def _base_of(self, pid: int, start: float) -> float:
        b = self.base.get(pid)
        return b[1] if b is not None and abs(b[0] - start) <= 10.0 else 0.0

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            self._merge(self._sample())

    def __enter__(self) -> "TreeCPU":
        self.base = self._sample()
        self.own = time.process_time()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self._merge(self._sample())
        children = self.gone + sum(cpu - self._base_of(pid, start) for pid, (start, cpu) in self.last.items())
        self.seconds = children + time.process_time() - self.own


@dataclass
class Measured:
    label: str
    workers: int
    runs: int
    wall: float
    load: float
    driver_cpu: float
    tree_cpu: float
    run_cpu: list[float]  # in the sweep's dispatch order
    thread_cpu: float = 0.0  # the runs' own threads (run_cpu less what the backend's threads took meanwhile)
    startup: dict[str, float] = field(default_factory=dict)  # worker -> start-up CPU seconds
    rss: dict[str, tuple[float, float]] = field(default_factory=dict)  # worker -> (after first run, after last)
    row_bytes: float = 0.0

    def idle_estimate(self) -> float:
        return makespan(self.run_cpu, self.workers) + max(self.startup.values(), default=0.0) + self.driver_cpu


def measure(label: str, backend: str, workers: int, grid: dict, order: list[str], client=None) -> Measured:
    load = os.getloadavg()[0]
    with TreeCPU() as tree:
        driver0 = time.process_time()
        started = time.perf_counter()
        table = sw.sweep(grid, backend=backend, workers=workers, progress=False, client=client)
        wall = time.perf_counter() - started
        driver = time.process_time() - driver0
    statuses = table.column("status").to_pylist()
    if statuses.count("ok") != len(statuses):
        raise SystemExit(f"{label}: {len(statuses) - statuses.count('ok')} of {len(statuses)} runs failed:\n"
                         + "\n".join(e for e in table.column("error").to_pylist() if e))
    parts = sw.parts_dir(Path(grid["output"]))
    rows = {p.stem: json.loads(p.read_text()) for p in parts.glob("*.json")}
    m = Measured(label, workers, len(rows), wall, load, driver, tree.seconds,
                 [rows[r]["timing"]["cpu_seconds"] for r in order])
    m.thread_cpu = sum(rows[r]["timing"]["thread_cpu_seconds"] for r in order)
    by_worker: dict[str, list[float]] = {}
    for run_id in order:  # dispatch order: a worker's rows in the order it ran them (one at a time)
        t = rows[run_id]["timing"]
        if t["startup_cpu_seconds"] is not None:
            m.startup[t["worker"]] = t["startup_cpu_seconds"]
        by_worker.setdefault(t["worker"], []).append(t["max_rss_mib"])
    m.rss = {w: (v[0], max(v)) for w, v in by_worker.items()}
    m.row_bytes = sum(len(json.dumps({k: v for k, v in r.items() if k != "timing"})) for r in rows.values()) / len(rows)
    return m


def report(m: Measured) -> None:
    startups = ", ".join(f"{s:.2f}" for s in m.startup.values())
    rss = ", ".join(f"{a:.0f}->{b:.0f}" for a, b in m.rss.values())
    print(f"{m.label}: {m.runs} runs in {m.wall:.1f} s wall -> {m.runs / m.wall * 60:.2f} runs/min "
          f"(load average before {m.load:.2f} on {os.cpu_count()} cores)")
    print(f"    CPU-s: runs {sum(m.run_cpu):.1f} (mean {sum(m.run_cpu) / m.runs:.1f}, "
          f"{' '.join(f'{c:.1f}' for c in m.run_cpu)}; the backend's threads in the workers meanwhile "
          f"{max(sum(m.run_cpu) - m.thread_cpu, 0.0):.2f}); worker start-up [{startups}] once each; "
          f"driver {m.driver_cpu:.2f}; whole process tree {m.tree_cpu:.1f}")
    print(f"    worker peak RSS MiB after first -> last run [{rss}]; result row {m.row_bytes:,.0f} bytes; "
          f"idle-machine estimate {m.idle_estimate():.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per regime (runs = 2 x seeds)")
    parser.add_argument("--duration", type=float, default=3600.0,
                        help="the episode's duration (s; the default episode's own is 5,400)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the pooled and cluster sweeps")
    parser.add_argument("--backends", default="local,ray,dask", help="comma-separated: local, ray, dask")
    parser.add_argument("--no-single", action="store_true", help="skip the 1-worker local sweep")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; sweep = default "
          f"episode x [standard, span] x {args.seeds} seeds" + (f", duration {args.duration:g} s" if args.duration else ""))
    results: dict[str, Measured] = {}
    starts: dict[str, float] = {}  # backend -> seconds its cluster took to start
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        _cfg, context, tasks = sw._plan(spec(Path(tmp) / "plan.parquet", args.seeds, args.duration), sw.DEFAULT_RUNNER)
        order = [t["run_id"] for t in sorted(tasks, key=lambda t: t["cost"], reverse=True)]
        _cfg, whole = sw.plan(spec(Path(tmp) / "plan.parquet", args.seeds, args.duration))
        lean_bytes = sum(len(pickle.dumps(t)) for t in tasks) / len(tasks)
        whole_bytes = sum(len(pickle.dumps(t)) for t in whole) / len(whole)
        print(f"bytes per task shipped: {lean_bytes:,.0f} (the whole episode in each task, as before: "
              f"{whole_bytes:,.0f}); the shared base, once per worker: {len(pickle.dumps(context)):,}")
        runs = [("local", 1, False)] if "local" in backends and not args.no_single else []
        for b in backends:
            runs += [(b, args.workers, False)] + ([(b, args.workers, True)] if b != "local" else [])
        for backend, workers, running in runs:
            label = f"{backend} x{workers}" + (" on a running cluster" if running else "")
            grid = spec(Path(tmp) / f"{backend}{workers}{'r' if running else ''}.parquet", args.seeds, args.duration)
            if not running:
                results[label] = m = measure(label, backend, workers, grid, order)
                report(m)
                continue
            started = time.perf_counter()  # the cluster first, as a user with a cluster up would have it
            if backend == "ray":
                import ray

                start_local_ray(workers)
                up = time.perf_counter() - started
                try:
                    results[label] = m = measure(label, backend, workers, grid, order)
                finally:
                    ray.shutdown()
            else:
                cluster, client = start_local_dask(workers)
                up = time.perf_counter() - started
                try:
                    results[label] = m = measure(label, backend, workers, grid, order, client=client)
                finally:
                    client.close()
                    cluster.close()
            starts[backend] = up
            print(f"    (the cluster took {up:.1f} s to start, outside the figures above)")
            report(m)
    pooled = results.get(f"local x{args.workers}")
    single = results.get("local x1")
    if pooled and single:
        print(f"speed-up {args.workers} vs 1 local workers: {single.wall / pooled.wall:.2f}x wall; "
              f"{single.idle_estimate() / pooled.idle_estimate():.2f}x idle-machine estimate from CPU")
    for backend in ("ray", "dask"):
        for m in (results.get(f"{backend} x{args.workers}"),
                  results.get(f"{backend} x{args.workers} on a running cluster")):
            if m and pooled:
                print(f"{m.label} vs the local pool, same grid: wall {m.wall / pooled.wall - 1:+.1%}; "
                      f"process-tree CPU {m.tree_cpu - pooled.tree_cpu:+.1f} s "
                      f"({m.tree_cpu / pooled.tree_cpu - 1:+.1%}); runs' CPU {sum(m.run_cpu) / sum(pooled.run_cpu) - 1:+.1%}"
                      + (f"; cluster start {starts[backend]:.1f} s" if m.label.endswith("cluster") else ""))
    if pooled:
        print(f"runs_per_min={pooled.runs / pooled.wall * 60:.2f}")


if __name__ == "__main__":
    main()
