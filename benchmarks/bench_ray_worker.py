"""One run's own CPU in a Ray worker vs in a local pool worker, paired: the same sweep task runs in a
spawn pool worker and on Ray *at the same time*, so both see the same load from whatever else the
(shared) machine runs, and the ratio of the two runs' own-thread CPU seconds is taken pair by pair.

Ray runs the task as a sweep does (``executors._ray_task``: in the Ray worker's child process) and,
with ``--inside``, also in the Ray worker process itself (as before the child), each on a cluster
started by ``executors.start_local_ray`` (its workers at niceness 0); ``--niceness 15`` starts it
with Ray's default worker niceness instead. The grid's task is the default episode cut to an hour
under one margin regime (``--margin``: span ~13, standard ~5 CPU-s a run). The first pair (warm-up)
is dropped. Prints each pair and the median ratios; the last line is
``ray_run_cpu_ratio=<median Ray/pool, the sweep's path>``.

    .venv/bin/python benchmarks/bench_ray_worker.py [--pairs 5] [--margin span] [--inside] [--niceness 0]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import sim.experiment.sweep as sw
from sim.experiment import executors


def own_cpu(row: dict) -> float:
    """A timed row's run-thread CPU seconds (``executors._run_one``)."""
    if row.get("status") != "ok":
        raise RuntimeError(row.get("error"))
    return row["timing"]["thread_cpu_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--margin", default="span", choices=["standard", "span"])
    parser.add_argument("--inside", action="store_true", help="also run in the Ray worker process itself")
    parser.add_argument("--niceness", type=int, default=None, help="the Ray workers' niceness (default: executors')")
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        spec = {"name": "bench", "base": None, "overrides": {"duration": 3600.0}, "grid": {"margin": [args.margin]},
                "seeds": 1, "output": str(Path(tmp) / "x.parquet")}
        _cfg, context, [task] = sw._plan(spec, sw.DEFAULT_RUNNER)
    if args.niceness is not None:
        executors.RAY_WORKER_CONFIG = {"worker_niceness": args.niceness}
    executors.start_local_ray(2 if args.inside else 1)
    # the sweep's own job: its task function, the base shipped once, timed rows
    job = executors.Job(sw.run_task, sw.error_row, sw.run_key, shared=context, warm=sw.warm, timed=True)
    spec_ = executors._spec(job)
    box = [ray.put(context)]
    child = ray.remote(num_cpus=1, max_retries=0)(executors._ray_task)
    inside = ray.remote(num_cpus=1, max_retries=0)(executors._run_one)
    with executors.single_threaded_children(), executors.main_not_reimported():
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=executors._pool_init, initargs=(spec_.shared_key, context, sw.warm))
        pool.submit(sw.warm).result()
    ratios: dict[str, list[float]] = {"ray (sweep's path: the worker's child)": []}
    if args.inside:
        ratios["ray, inside the Ray worker process"] = []
    try:
        for i in range(args.pairs + 1):
            for label in list(ratios):
                ref = (child.remote(spec_, task, box) if label.startswith("ray (") else
                       inside.remote(spec_, task, context))
                local = pool.submit(executors._child_task, spec_, task)
                p, r = own_cpu(local.result()), own_cpu(ray.get(ref))
                if i == 0:
                    continue  # warm-up: first runs fill each process's heap
                ratios[label].append(r / p)
                print(f"load {os.getloadavg()[0]:.2f}: pool {p:.3f} CPU-s, {label} {r:.3f} CPU-s, ratio {r / p:.3f}",
                      flush=True)
    finally:
        pool.shutdown()
        ray.shutdown()
    for label, v in ratios.items():
        print(f"{label} / pool, own-thread CPU of the same {args.margin} run: median {statistics.median(v):.3f} "
              f"(min {min(v):.3f}, max {max(v):.3f}, {len(v)} pairs)")
    print(f"ray_run_cpu_ratio={statistics.median(next(iter(ratios.values()))):.3f}")


if __name__ == "__main__":
    main()
