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
* (on Ray, a worker's runs and start-up are those of its run process, a spawn child of the Ray
  worker: ``executors._ray_task``; the Ray worker's own CPU counts in the background);
* each worker's peak RSS after its first and after its last run (flat: a run leaves nothing behind);
* the process tree's CPU by kind of process (driver, pool or Ray workers, Ray's GCS, raylet, agents,
  log and autoscaler monitors, Dask), and the *background*: the tree less the runs, the workers'
  start-ups and the driver (a backend's daemons and its workers' own threads);
* where each worker slot sat idle, from the epoch timestamps each row carries (``started_at``,
  ``ended_at``): before its first task (pool or cluster start, warm-up, first dispatch), between
  tasks (a result back and the next task out: the per-task dispatch latency) and after its last
  task (the tail, and the table's assembly); for a cluster the sweep starts itself, that start's
  wall seconds (timed around ``executors.start_local_ray`` / ``start_local_dask``);
* an idle-machine estimate from the CPU figures: the runs' CPU seconds dealt dearest first (the
  sweep's own order) to the worker free first, plus the slowest worker start-up, the driver's CPU
  seconds and the background spread over the workers.

The summary gives the speed-up of 2 workers over 1 (measured, and estimated from CPU) and the
overhead of Ray and Dask over the local pool: wall (for a cluster the sweep starts, also without
that start), the idle-machine estimates, and extra CPU seconds of the process tree, runs and
background. ``--repeat N`` runs every configuration N times round robin and compares the runs with
the median wall time: on a machine others share, alternation spreads their load over every
configuration. The last line is ``runs_per_min=<local pool, 2 workers>``. About 4 minutes on two
idle cores (``--repeat 3 --backends local,ray --no-single``: about 6).

    .venv/bin/python benchmarks/bench_sweep.py [--seeds 4] [--duration 3600] [--backends local,ray,dask]
                                               [--workers 2] [--no-single] [--repeat 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import os
import pickle
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sim.experiment.sweep as sw
from sim.experiment import executors
from bench_compare import makespan  # the runs dealt in order, each to the worker free first
from sim.experiment.executors import start_local_dask, start_local_ray
from sim.experiment.parts import Rows
from machine import describe  # noqa: E402 -- benchmarks/machine.py: the processor and Python, one line


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
    moves (keyed by the exact figure, one process read as two and was counted twice), and a pid
    counts as reused only if its CPU seconds also went down (``_other``)."""

    def __init__(self, interval: float = 0.5) -> None:
        import psutil

        self.psutil, self.interval = psutil, interval
        self.me = psutil.Process()
        self.last: dict[int, tuple[float, float]] = {}  # pid -> (start time, CPU seconds)
        self.kind: dict[int, str] = {}  # pid -> what the process is (``kind_of``)
        self.gone = 0.0  # CPU seconds of processes whose pid was since taken by another
        self.by_kind: dict[str, float] = {}  # kind -> CPU seconds over the block (the driver as "driver")
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
                    # read each time: Ray's processes rename themselves (``ray::DashboardAgent``) after they start
                    kind = kind_of(p.cmdline())
                    parent = p.parent() if kind == "pool worker" else None
                    if parent is not None and kind_of(parent.cmdline()) == "ray worker":
                        kind = "ray worker's run process"  # executors._ray_task: the runs happen there
                    self.kind[p.pid] = kind
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied, self.psutil.ZombieProcess):
                continue
        return seen

    def _merge(self, seen: dict[int, tuple[float, float]]) -> None:
        for pid, (start, cpu) in seen.items():
            old = self.last.get(pid)
            if old is not None and self._other(old, start, cpu):  # the pid was reused: a new process
                self.gone += old[1] - self._base_of(pid, *old)
            self.last[pid] = (start, cpu)

    @staticmethod
    def _other(seen: tuple[float, float], start: float, cpu: float) -> bool:
        """Whether (start, cpu) is another process than the earlier reading ``seen`` of the same pid: its
        start time differs by more than 10 s *and* its CPU seconds went down (one process's never do;
        under heavy load the guest's clock moved a start time by more than 10 s, and a process read as
        two was counted twice)."""
        return abs(seen[0] - start) > 10.0 and cpu < seen[1]

    def _base_of(self, pid: int, start: float, cpu: float) -> float:
        b = self.base.get(pid)
        return b[1] if b is not None and not self._other(b, start, cpu) else 0.0

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
        spent = {pid: cpu - self._base_of(pid, start, cpu) for pid, (start, cpu) in self.last.items()}
        children = self.gone + sum(spent.values())
        self.seconds = children + time.process_time() - self.own
        self.by_kind = {"driver": time.process_time() - self.own}
        if self.gone:
            self.by_kind["exited (pid reused)"] = self.gone
        for pid, cpu in spent.items():
            k = self.kind.get(pid, "other")
            self.by_kind[k] = self.by_kind.get(k, 0.0) + cpu


KINDS = (("gcs_server", "ray gcs"), ("raylet", "ray raylet"), ("dashboard/agent.py", "ray dashboard agent"),
         ("DashboardAgent", "ray dashboard agent"), ("dashboard/dashboard.py", "ray dashboard head (no frontend)"),
         ("runtime_env", "ray runtime-env agent"), ("RuntimeEnvAgent", "ray runtime-env agent"),
         ("log_monitor", "ray log monitor"),
         ("autoscaler", "ray autoscaler monitor"), ("monitor.py", "ray autoscaler monitor"),
         ("default_worker", "ray worker"), ("ray::", "ray worker"), ("spawn_main", "pool worker"),
         ("resource_tracker", "pool resource tracker"), ("distributed", "dask"))


def kind_of(cmdline: list[str]) -> str:
    """What a process below the driver is, from its command line (Ray renames its workers ``ray::...``)."""
    text = " ".join(cmdline)
    return next((kind for needle, kind in KINDS if needle in text), "other")


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
    by_kind: dict[str, float] = field(default_factory=dict)  # process-tree CPU seconds by process kind
    slots: dict[str, tuple[float, float, float, int]] = field(default_factory=dict)  # worker -> timeline

    def idle(self) -> tuple[float, float, float]:
        """Summed over the workers (slots): seconds before a worker's first task started (the cluster's
        or pool's start, warm-up, dispatch), between its tasks (a finished task's result back to the
        driver and the next task out), and after its last task until the sweep returned (the tail:
        a slot with nothing left to run, and the table's assembly)."""
        return tuple(sum(v[i] for v in self.slots.values()) for i in range(3))  # type: ignore[return-value]

    cluster_start: float = 0.0  # wall seconds of the cluster start inside the sweep (own cluster only)

    def background(self) -> float:
        """CPU seconds of the process tree beyond the runs, the workers' start-ups and the driver: the
        backend's daemons and the workers' own threads, spread over the slots in the estimate."""
        return max(0.0, self.tree_cpu - sum(self.run_cpu) - sum(self.startup.values()) - self.driver_cpu)

    def idle_estimate(self, runs: list[float] | None = None) -> float:
        """``runs``: other runs' CPU seconds in the same order (the local pool's: a backend's own costs on
        the same runs, free of the runs' own noise, which a loaded machine makes ±10%)."""
        return (makespan(self.run_cpu if runs is None else runs, self.workers) + max(self.startup.values(), default=0.0)
                + self.driver_cpu + self.background() / self.workers)


@contextlib.contextmanager
def timed_cluster_start():
    """Time the cluster start a sweep makes itself (``executors.start_local_ray`` / ``start_local_dask``):
    yields a one-item list that holds its wall seconds afterwards (0 when the sweep starts none)."""
    spent = [0.0]
    saved = {name: getattr(executors, name) for name in ("start_local_ray", "start_local_dask")}

    def timing(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t
        return wrapper

    for name, fn in saved.items():
        setattr(executors, name, timing(fn))
    try:
        yield spent
    finally:
        for name, fn in saved.items():
            setattr(executors, name, fn)


def measure(label: str, backend: str, workers: int, grid: dict, order: list[str], client=None) -> Measured:
    load = os.getloadavg()[0]
    with TreeCPU() as tree:
        driver0 = time.process_time()
        started, began = time.perf_counter(), time.time()
        with timed_cluster_start() as start:
            table = sw.sweep(grid, backend=backend, workers=workers, progress=False, client=client)
        wall, ended = time.perf_counter() - started, time.time()
        driver = time.process_time() - driver0
    statuses = table.column("status").to_pylist()
    if statuses.count("ok") != len(statuses):
        raise SystemExit(f"{label}: {len(statuses) - statuses.count('ok')} of {len(statuses)} runs failed:\n"
                         + "\n".join(e for e in table.column("error").to_pylist() if e))
    parts = sw.parts_dir(Path(grid["output"]))
    rows = dict(Rows(parts).items())
    m = Measured(label, workers, len(rows), wall, load, driver, tree.seconds,
                 [rows[r]["timing"]["cpu_seconds"] for r in order])
    m.cluster_start = start[0]
    m.thread_cpu = sum(rows[r]["timing"]["thread_cpu_seconds"] for r in order)
    by_worker: dict[str, list[float]] = {}
    for run_id in order:  # dispatch order: a worker's rows in the order it ran them (one at a time)
        t = rows[run_id]["timing"]
        if t["startup_cpu_seconds"] is not None:
            m.startup[t["worker"]] = t["startup_cpu_seconds"]
        by_worker.setdefault(t["worker"], []).append(t["max_rss_mib"])
    m.rss = {w: (v[0], max(v)) for w, v in by_worker.items()}
    m.by_kind = tree.by_kind
    spans: dict[str, list[tuple[float, float]]] = {}
    for run_id in order:
        t = rows[run_id]["timing"]
        spans.setdefault(t["worker"], []).append((t["started_at"], t["ended_at"]))
    for w, v in spans.items():
        v.sort()
        gaps = sum(max(0.0, b[0] - a[1]) for a, b in zip(v, v[1:]))
        m.slots[w] = (v[0][0] - began, gaps, ended - v[-1][1], len(v))
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
    if m.cluster_start:
        print(f"    the sweep started its cluster in {m.cluster_start:.1f} s of the wall above "
              f"({m.wall - m.cluster_start:.1f} s without it)")
    print(f"    background CPU-s (daemons, the workers' own threads; tree less runs, start-ups and driver) "
          f"{m.background():.2f}")
    head, between, tail = m.idle()
    print(f"    slots idle (s, wall): before the first task {head:.2f}, between tasks {between:.2f}, after the last "
          f"{tail:.2f} [" + "; ".join(f"{n} runs: {a:.2f}/{g:.2f}/{t:.2f}" for a, g, t, n in m.slots.values()) + "]")
    workers = {k: v for k, v in m.by_kind.items()
               if k in ("ray worker", "ray worker's run process", "pool worker", "dask")}
    beside = sum(workers.values()) - sum(m.run_cpu) - sum(m.startup.values())
    print("    process-tree CPU-s by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(m.by_kind.items(), key=lambda kv: -kv[1]))
          + f"; worker processes beyond their runs and start-ups {beside:+.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per regime (runs = 2 x seeds)")
    parser.add_argument("--duration", type=float, default=3600.0,
                        help="the episode's duration (s; the default episode's own is 5,400)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the pooled and cluster sweeps")
    parser.add_argument("--backends", default="local,ray,dask", help="comma-separated: local, ray, dask")
    parser.add_argument("--no-single", action="store_true", help="skip the 1-worker local sweep")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every configuration this many times, round robin (medians compared): on a "
                             "machine others use, alternation spreads their load over every configuration")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    print(f"machine: {describe()}")
    print(f"sweep = default "
          f"episode x [standard, span] x {args.seeds} seeds" + (f", duration {args.duration:g} s" if args.duration else ""))
    results: dict[str, list[Measured]] = {}
    starts: dict[str, list[float]] = {}  # backend -> seconds its running cluster took to start
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
        for backend, workers, running in [r for _ in range(args.repeat) for r in runs]:
            label = f"{backend} x{workers}" + (" on a running cluster" if running else "")
            grid = spec(Path(tmp) / f"{backend}{workers}{'r' if running else ''}.parquet", args.seeds, args.duration)
            shutil.rmtree(sw.parts_dir(Path(grid["output"])), ignore_errors=True)  # a repeat starts afresh
            Path(grid["output"]).unlink(missing_ok=True)
            if not running:
                results.setdefault(label, []).append(m := measure(label, backend, workers, grid, order))
                report(m)
                continue
            started = time.perf_counter()  # the cluster first, as a user with a cluster up would have it
            if backend == "ray":
                import ray

                start_local_ray(workers)
                up = time.perf_counter() - started
                try:
                    results.setdefault(label, []).append(m := measure(label, backend, workers, grid, order))
                finally:
                    ray.shutdown()
            else:
                cluster, client = start_local_dask(workers)
                up = time.perf_counter() - started
                try:
                    results.setdefault(label, []).append(m := measure(label, backend, workers, grid, order,
                                                                     client=client))
                finally:
                    client.close()
                    cluster.close()
            starts.setdefault(backend, []).append(up)
            print(f"    (the cluster took {up:.1f} s to start, outside the figures above)")
            report(m)
    med = {label: median_of(ms) for label, ms in results.items()}
    pooled = med.get(f"local x{args.workers}")
    single = med.get("local x1")
    if args.repeat > 1:
        print(f"medians of {args.repeat} alternating repeats; walls: "
              + "; ".join(f"{label} {' '.join(f'{m.wall:.1f}' for m in ms)}" for label, ms in results.items()))
    else:
        # a 2-core guest's speed swings by a quarter or more over minutes: one configuration run in a
        # fast phase and the next in a slow one read 1.53x where alternating repeats read 1.90x
        print("one reading of each configuration, minutes apart: the ratios below are not figures on a "
              "machine whose speed drifts; --repeat 3 alternates the configurations and compares medians")
    if pooled and single:
        print(f"speed-up {args.workers} vs 1 local workers: {single.wall / pooled.wall:.2f}x wall; "
              f"{single.idle_estimate() / pooled.idle_estimate():.2f}x idle-machine estimate from CPU")
    for backend in ("ray", "dask"):
        for m in (med.get(f"{backend} x{args.workers}"), med.get(f"{backend} x{args.workers} on a running cluster")):
            if m and pooled:
                own = "" if not m.cluster_start else (
                    f" (its own cluster's start {m.cluster_start:.1f} s excluded: "
                    f"{(m.wall - m.cluster_start) / pooled.wall - 1:+.1%})")
                print(f"{m.label} vs the local pool, same grid: wall {m.wall / pooled.wall - 1:+.1%}{own}; "
                      f"idle-machine estimate from CPU {m.idle_estimate() / pooled.idle_estimate() - 1:+.1%} "
                      f"({m.idle_estimate(pooled.run_cpu) / pooled.idle_estimate() - 1:+.1%} on the pool's runs); "
                      f"process-tree CPU {m.tree_cpu - pooled.tree_cpu:+.1f} s "
                      f"({m.tree_cpu / pooled.tree_cpu - 1:+.1%}); runs' CPU {sum(m.run_cpu) / sum(pooled.run_cpu) - 1:+.1%}; "
                      f"background CPU {m.background() - pooled.background():+.2f} s"
                      + (f"; cluster start {statistics.median(starts[backend]):.1f} s, outside"
                         if m.label.endswith("cluster") else ""))
    if pooled:
        print(f"runs_per_min={pooled.runs / pooled.wall * 60:.2f}")


def median_of(ms: list[Measured]) -> Measured:
    """The repeat with the median wall time (the lower middle one of an even number)."""
    return sorted(ms, key=lambda m: m.wall)[(len(ms) - 1) // 2]

if __name__ == "__main__":
    main()
