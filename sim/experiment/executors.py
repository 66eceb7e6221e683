"""Where tasks run: a local process pool, a Ray cluster or a Dask cluster, behind one interface.

A sweep row, a comparison's run or twin and a reverse-stress point are all a ``Job``: the function a
worker runs on one task (``fn``), what a task whose worker raised or died becomes (``error_row``),
and the task's name (``key``: which run a dead pool worker was on). ``execute`` runs a list of
tasks on the named backend and calls ``on_done(row)`` in this process as each finishes; the driver
writes each row durably, so an interrupted run resumes from what is on disk.

* ``local`` -- a spawn process pool on this machine (one run per core, BLAS single-threaded). A
  worker that dies (killed, out of memory, a crash in native code) breaks the pool: the run it was on
  becomes an infrastructure error row, the pool is rebuilt and the other in-flight runs go again.
* ``ray`` / ``dask`` -- a cluster started for the call on this machine's cores, or an existing one
  given by ``address`` (``ray://host:10001`` / ``auto``; ``tcp://scheduler:8786``); a Dask
  ``client`` may be passed instead. Workers import clearsim once and keep it between tasks.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.experiment.io import write_atomic

BACKENDS = ("local", "ray", "dask")


@dataclass(frozen=True, slots=True)
class Job:
    """What every task of one execution shares (module-level functions: they are pickled to workers)."""

    fn: Callable[[dict], dict]
    error_row: Callable[[dict, str], dict]
    key: Callable[[dict], str]


def execute(tasks: list[dict], backend: str, workers: int, job: Job, on_done: Callable[[dict], None], *,
            client: Any = None, address: str | None = None, running: Path | None = None) -> None:
    """Run ``tasks`` on ``backend`` with at most ``workers`` in flight (on a local pool or a cluster
    started here; an existing cluster schedules by its own CPUs), calling ``on_done(row)`` as each
    finishes. ``running``: where local workers name the run they are on (a temporary folder if None)."""
    if backend == "local":
        _run_local(tasks, workers, job, on_done, running)
    elif backend == "ray":
        _run_ray(tasks, workers, job, on_done, address)
    elif backend == "dask":
        _run_dask(tasks, workers, job, on_done, client, address)
    else:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")


# ------------------------------------------------------------------------------------ local pool
def _pool_task(task: dict, running: str, fn: Callable[[dict], dict], key: Callable[[dict], str]) -> dict[str, Any]:
    """``fn`` in a pool worker, leaving ``<running>/<pid>`` naming the run it is on, so that if this
    process dies the driver knows which run died with it (a file survives a ``kill -9``)."""
    write_atomic(Path(running) / str(os.getpid()), key(task).encode("utf-8"))
    return fn(task)


def _run_local(tasks: list[dict], workers: int, job: Job, on_done: Callable[[dict], None],
               running: Path | None) -> None:
    if running is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="clearsim-running-") as tmp:
            _run_local(tasks, workers, job, on_done, Path(tmp))
        return
    pending = collections.deque(tasks)
    breakages: dict[str, int] = {}  # task key -> pool breakages it was in flight for, culprit unknown
    while pending:
        _run_pool(pending, workers, job, on_done, running, breakages)


def _run_pool(pending: "collections.deque[dict]", workers: int, job: Job, on_done: Callable[[dict], None],
              running: Path, breakages: dict[str, int]) -> None:
    """Run from ``pending`` on one pool until it is empty or the pool breaks (then return; the
    caller builds a new pool for what is left)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")  # no inherited locks, threads or simpy state
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    inflight: dict[Any, dict] = {}
    processes: dict[int, Any] = {}
    try:
        while pending or inflight:
            broken = False
            with single_threaded_children(), main_not_reimported():  # workers start during the submits
                while pending and len(inflight) < workers:
                    task = pending.popleft()
                    try:
                        inflight[pool.submit(_pool_task, task, str(running), job.fn, job.key)] = task
                    except BrokenProcessPool:  # a worker died since the last wait
                        pending.appendleft(task)
                        broken = True
                        break
            processes.update(getattr(pool, "_processes", None) or {})
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED) if inflight else (set(), set())
            for fut in finished:
                try:
                    row = fut.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                except Exception:  # noqa: BLE001 -- e.g. a result that cannot be unpickled
                    row = job.error_row(inflight[fut], traceback.format_exc())
                del inflight[fut]
                on_done(row)
            if broken:
                _after_breakage(pool, inflight, processes, pending, job, on_done, running, breakages)
                return
    except BaseException:  # Ctrl-C or a failure writing a row: stop now, finished rows are on disk
        procs = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:  # the in-flight runs would otherwise hold the exit until they finish
            p.terminate()
        raise
    pool.shutdown(wait=True)


def _after_breakage(pool: Any, inflight: dict[Any, dict], processes: dict[int, Any],
                    pending: "collections.deque[dict]", job: Job, on_done: Callable[[dict], None], running: Path,
                    breakages: dict[str, int]) -> None:
    """A worker died. The run on a worker that exited abnormally (not the SIGTERM the pool sends the
    survivors) fails with an infrastructure error; the other in-flight runs go back to the front of
    the queue. If no culprit can be named, every in-flight run goes again -- and a run that was in
    flight for two breakages is failed, so a run that kills its worker cannot loop forever."""
    import signal as _signal

    # the broken pool terminates the survivors; once it has shut down every worker is joined and
    # each exit status is final (read earlier, a status being reaped by the pool's thread can
    # read as still running)
    pool.shutdown(wait=True, cancel_futures=True)
    for proc in processes.values():
        proc.join(timeout=5.0)
    dead: dict[str, str] = {}
    for pid, proc in processes.items():
        code = proc.exitcode
        if code is None or code == 0 or code == -_signal.SIGTERM:
            continue
        try:
            run_id = (running / str(pid)).read_text(encoding="utf-8")
        except OSError:
            continue
        why = f"signal {-code}" if code < 0 else f"exit status {code}"
        dead[run_id] = f"infrastructure failure: the worker process {pid} died ({why}) during this run\n"
    for task in inflight.values():
        run_id = job.key(task)
        if not dead:
            breakages[run_id] = breakages.get(run_id, 0) + 1
        if run_id in dead or breakages.get(run_id, 0) >= 2:
            text = dead.get(run_id, "infrastructure failure: the process pool broke twice while this run was in "
                                    "flight (a worker died; which run it was on is unknown)\n")
            on_done(job.error_row(task, text))
    again = [t for t in inflight.values() if job.key(t) not in dead and breakages.get(job.key(t), 0) < 2]
    pending.extendleft(reversed(again))
    for f in running.iterdir():
        f.unlink(missing_ok=True)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def single_threaded_children():
    """One BLAS/OpenMP thread per worker process (one run per core), unless the user chose otherwise.
    Ray and Dask workers already default to this."""
    added = [v for v in THREAD_VARIABLES if v not in os.environ]
    for v in added:
        os.environ[v] = "1"
    try:
        yield
    finally:
        for v in added:
            os.environ.pop(v, None)


@contextlib.contextmanager
def main_not_reimported():
    """Start worker processes without re-running the caller's script.

    A spawned worker normally imports the parent's ``__main__`` file first; a plain script that
    calls ``sweep`` at top level (no ``if __name__ == "__main__":`` guard) would then start a sweep
    inside every worker and the pool breaks. The workers need nothing from ``__main__`` (the task
    function lives here and runners are ``module:function`` strings), so while they start the
    parent's ``__main__`` hides the file and spec that multiprocessing's spawn reads."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            if "__spec__" in saved:
                main.__spec__ = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)



# ------------------------------------------------------------------------------------ clusters
def _run_ray(tasks: list[dict], workers: int, job: Job, on_done: Callable[[dict], None], address: str | None) -> None:
    import ray

    started = False
    if not ray.is_initialized():
        if address is None:  # a cluster of this machine's cores, for this call only
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        else:  # an existing cluster: the tasks go wherever it has free CPUs
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        started = True
    pending: dict[Any, dict] = {}
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(job.fn)
        pending = {remote.remote(t): t for t in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception:  # noqa: BLE001 -- a worker died
                    row = job.error_row(task, traceback.format_exc())
                on_done(row)
    except BaseException:
        for ref in list(pending):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
        raise
    finally:
        if started:
            ray.shutdown()


def _run_dask(tasks: list[dict], workers: int, job: Job, on_done: Callable[[dict], None], client: Any,
              address: str | None) -> None:
    import logging

    from distributed import Client, LocalCluster, as_completed

    own = client is None
    cluster = None
    if own and address is not None:  # an existing cluster's scheduler
        client = Client(address)
    elif own:
        with main_not_reimported():
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   silence_logs=logging.ERROR)
        client = Client(cluster)
    futures: dict[Any, dict] = {}
    try:
        futures = {client.submit(job.fn, t, pure=False): t for t in tasks}
        for fut in as_completed(list(futures)):
            try:
                row = fut.result()
            except Exception:  # noqa: BLE001 -- a worker died
                row = job.error_row(futures[fut], traceback.format_exc())
            on_done(row)
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
