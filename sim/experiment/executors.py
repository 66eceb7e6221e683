"""Where tasks run: a local process pool, a Ray cluster or a Dask cluster, behind one interface.

A sweep row, a comparison's run or twin and a reverse-stress point are all a ``Job``: the function a
worker runs on one task (``fn``), what a task whose worker raised or died becomes (``error_row``),
and the task's name (``key``: which run a dead pool worker was on). ``execute`` runs a list of
tasks on the named backend and calls ``on_done(row)`` in this process as each finishes; the driver
writes each row in fsynced batches (``sim.experiment.parts``), so an interrupted run resumes from
what is on disk.

* ``local`` -- a spawn process pool on this machine (one run per core, BLAS single-threaded). A
  worker that dies (killed, out of memory, a crash in native code) breaks the pool: the run it was on
  becomes an infrastructure error row, the pool is rebuilt and the other in-flight runs go again.
* ``ray`` / ``dask`` -- a cluster started for the call on this machine's cores (``start_local_ray``,
  ``start_local_dask``), or an existing one given by ``address`` (``ray://host:10001`` / ``auto``;
  ``tcp://scheduler:8786``); a Dask
  ``client`` may be passed instead. Workers import clearsim once and keep it between tasks. A
  cluster started here runs its workers as the pool does: Ray's at niceness 0 (Ray's default, 15,
  made each run dearer: ``RAY_WORKER_CONFIG``), Dask's without the nanny's ``MALLOC_*`` setting.
  Every process a run happens in and clearsim owns -- a pool worker, a Ray worker's child, a Dask
  worker of a cluster started here -- keeps freed memory (``sim.experiment.allocator``).
  A Ray worker runs its tasks in a spawn child process of its own, kept between tasks (a run cost
  ~7% more CPU inside the Ray worker process itself: ``_ray_task``), on any cluster.

What every task of a job shares (``Job.shared``: a sweep's base episode, its file root and runner)
is shipped once per worker -- a pool worker's initializer, one ``ray.put``, one Dask ``scatter`` --
and each task carries only what differs (a grid point and a seed), so nothing is serialised again
per run. ``Job.warm`` (the imports a run needs) runs once per worker before its first task, so a
worker pays its start-up once, and with ``Job.timed`` each row says what its worker spent: the
task's CPU seconds, the worker's start-up CPU seconds (on the worker's first row) and its peak RSS.
Ray and Dask get at most two tasks per worker slot in flight, handed out in the given order (the
caller's order: sweeps give the dearest runs first), so the driver never holds more than that many
results and the cluster's queue stays in that order.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import hashlib
import os
import pickle
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.core import arithmetic
from sim.experiment.allocator import environment as allocator_environment
from sim.experiment.allocator import keep_freed_memory
from sim.experiment.io import write_atomic

BACKENDS = ("local", "ray", "dask")


@dataclass(frozen=True, slots=True)
class Job:
    """What every task of one execution shares (module-level functions: they are pickled to workers).

    ``fn(task)`` runs one task -- ``fn(task, shared)`` when ``shared`` is given: an object every task
    needs, shipped to each worker once rather than inside every task. ``warm()`` runs once per
    worker before its first task (imports). ``timed``: a dict row gets a ``timing`` entry (see
    ``_run_one``)."""

    fn: Callable[..., dict]
    error_row: Callable[[dict, str], dict]
    key: Callable[[dict], str]
    shared: Any = None
    warm: Callable[[], None] | None = None
    timed: bool = False


@dataclass(frozen=True, slots=True)
class _Spec:
    """What a worker is sent with each task: the job without its shared object (named by ``shared_key``)."""

    fn: Callable[..., dict]
    key: Callable[[dict], str]
    warm: Callable[[], None] | None
    timed: bool
    shared_key: str | None
    # the driver's floating-point arithmetic (``sim.core.arithmetic.worker_environment``), for the
    # processes a worker starts to run tasks
    arithmetic: dict[str, str]


def _spec(job: Job) -> _Spec:
    shared_key = None
    if job.shared is not None:  # content-named: two sweeps on one long-lived cluster never mix their bases
        shared_key = hashlib.sha256(pickle.dumps(job.shared, protocol=5)).hexdigest()[:16]
    return _Spec(job.fn, job.key, job.warm, job.timed, shared_key, arithmetic.worker_environment())


# ------------------------------------------------------------------------------------ in a worker
_SHARED: "collections.OrderedDict[str, Any]" = collections.OrderedDict()  # key -> shared object, newest last
_SHARED_KEPT = 4  # a long-lived cluster worker serves job after job: keep only the last few
_STATE_LOCK = threading.Lock()  # a Dask worker may run tasks on several threads
_startup_cpu: float | None = None  # this process's CPU seconds before its first task (warm-up included)
_startup_reported = False


def _remember(key: str, shared: Any) -> None:
    with _STATE_LOCK:
        _SHARED[key] = shared
        _SHARED.move_to_end(key)
        while len(_SHARED) > _SHARED_KEPT:
            _SHARED.popitem(last=False)


def _ready(warm: Callable[[], None] | None) -> None:
    """Once per process: the warm-up, then note the CPU seconds spent so far (the worker's start-up:
    interpreter, the backend's own worker code, clearsim's imports)."""
    global _startup_cpu
    with _STATE_LOCK:
        if _startup_cpu is not None:
            return
        if warm is not None:
            warm()
        _startup_cpu = time.process_time()


def _run_one(spec: _Spec, task: dict, shared: Any) -> dict:
    """One task in a worker. With ``spec.timed`` a dict row gets ``timing``: ``worker`` (host:pid),
    ``cpu_seconds`` (the worker process's CPU during this task), ``thread_cpu_seconds`` (the task's
    own thread's: the difference is what the backend's threads took meanwhile),
    ``startup_cpu_seconds`` (the worker's start-up, on its first row only, else None) and
    ``max_rss_mib`` (the worker's peak so far: flat over its rows when a run leaves nothing behind),
    ``started_at`` / ``ended_at`` (epoch seconds around the task: a slot's idle gaps between tasks),
    ``arithmetic`` (the process's floating-point arithmetic: ``sim.core.arithmetic.profile``)."""
    global _startup_reported
    _ready(spec.warm)
    started_at = time.time()  # the epoch clock: comparable across a machine's processes (slots' idle gaps)
    started, started_thread = time.process_time(), time.thread_time()
    row = spec.fn(task) if spec.shared_key is None else spec.fn(task, shared)
    # the run's world is garbage now; collect it here, before the next run's start freezes whatever
    # is still alive (sim.core.kernel), so a worker's memory does not grow with the runs it has done
    gc.collect()
    if spec.timed and isinstance(row, dict):
        import resource

        with _STATE_LOCK:
            startup = None if _startup_reported else _startup_cpu
            _startup_reported = True
        row["timing"] = {"worker": f"{socket.gethostname()}:{os.getpid()}",
                         "cpu_seconds": time.process_time() - started,
                         "thread_cpu_seconds": time.thread_time() - started_thread, "startup_cpu_seconds": startup,
                         "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                         "started_at": started_at, "ended_at": time.time(), "arithmetic": arithmetic.profile()}
    return row


def _shared_here(spec: _Spec) -> Any:
    if spec.shared_key is None:
        return None
    with _STATE_LOCK:
        return _SHARED[spec.shared_key]


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
def _pool_init(shared_key: str | None, shared: Any, warm: Callable[[], None] | None) -> None:
    """A pool worker's start: glibc's allocator set for whole-account arrays (``allocator``), the
    job's shared object kept, the imports warmed up -- before any task arrives."""
    keep_freed_memory()
    if shared_key is not None:
        _remember(shared_key, shared)
    _ready(warm)


def _pool_task(task: dict, running: str, spec: _Spec) -> dict[str, Any]:
    """One task in a pool worker, leaving ``<running>/<pid>`` naming the run it is on, so that if this
    process dies the driver knows which run died with it (a file survives a ``kill -9``). The file
    goes when the run is done: an idle worker names no run, so its death blames none."""
    mine = Path(running) / str(os.getpid())
    write_atomic(mine, spec.key(task).encode("utf-8"))
    try:
        return _run_one(spec, task, _shared_here(spec))
    finally:  # a task that raised was delivered too (as its error row)
        mine.unlink(missing_ok=True)


def _run_local(tasks: list[dict], workers: int, job: Job, on_done: Callable[[dict], None],
               running: Path | None) -> None:
    """``running``: the folder in which this call makes its own temporary folder for the workers'
    ``<pid>`` files (the system's temporary folder if None). Each pool gets a fresh folder inside it,
    so no file of an earlier pool or an earlier call -- a pid reused by a new worker -- can blame a
    run; everything in it is ours, and it goes when the call ends."""
    import tempfile

    pending = collections.deque(tasks)
    breakages: dict[str, int] = {}  # task key -> pool breakages it was in flight for and survived
    with tempfile.TemporaryDirectory(prefix="clearsim-running-", dir=running) as ours:
        while pending:
            pool_folder = Path(tempfile.mkdtemp(prefix="pool-", dir=ours))
            _run_pool(pending, workers, job, on_done, pool_folder, breakages)


def _run_pool(pending: "collections.deque[dict]", workers: int, job: Job, on_done: Callable[[dict], None],
              running: Path, breakages: dict[str, int]) -> None:
    """Run from ``pending`` on one pool until it is empty or the pool breaks (then return; the
    caller builds a new pool for what is left)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")  # no inherited locks, threads or simpy state
    spec = _spec(job)
    # the shared object goes to each worker once, with its start (and again only to a rebuilt pool's)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_pool_init,
                               initargs=(spec.shared_key, job.shared, job.warm))
    inflight: dict[Any, dict] = {}
    processes: dict[int, Any] = {}
    try:
        while pending or inflight:
            broken = False
            with single_threaded_children(), main_not_reimported():  # workers start during the submits
                while pending and len(inflight) < workers:
                    task = pending.popleft()
                    try:
                        inflight[pool.submit(_pool_task, task, str(running), spec)] = task
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
        _stop_now(pool)
        raise
    pool.shutdown(wait=True)


def _stop_now(pool: Any) -> None:
    """Shut ``pool`` down without waiting and terminate its workers: the runs they are on would
    otherwise go on to their end (and hold the exit). A pool already shut down has no workers left
    (``_processes`` is None then)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()


MAX_BREAKAGES = 2  # pool breakages a run may be in flight for before it is failed


def _after_breakage(pool: Any, inflight: dict[Any, dict], processes: dict[int, Any],
                    pending: "collections.deque[dict]", job: Job, on_done: Callable[[dict], None], running: Path,
                    breakages: dict[str, int]) -> None:
    """A worker died. The run on a worker that exited abnormally (not the SIGTERM the pool sends the
    survivors) fails with an infrastructure error; the other in-flight runs go back to the front of
    the queue, each counting the breakage -- whether or not a culprit was named, since a named
    culprit may be a bystander (say, the one the OOM killer chose) -- and a run in flight for
    ``MAX_BREAKAGES`` breakages is failed, so a run that kills its worker cannot loop forever.
    ``running`` is this pool's own folder: the next pool gets a fresh one."""
    # the broken pool terminates the survivors; once it has shut down every worker is joined and
    # each exit status is final (read earlier, a status being reaped by the pool's thread can
    # read as still running)
    pool.shutdown(wait=True, cancel_futures=True)
    for proc in processes.values():
        proc.join(timeout=5.0)
    exits = {pid: proc.exitcode for pid, proc in processes.items()}
    dead = culprits(exits, running, {job.key(task) for task in inflight.values()})
    again = []
    for task in inflight.values():
        run_id = job.key(task)
        if run_id in dead:
            on_done(job.error_row(task, dead[run_id]))
            continue
        breakages[run_id] = breakages.get(run_id, 0) + 1
        if breakages[run_id] >= MAX_BREAKAGES:
            on_done(job.error_row(task, f"infrastructure failure: the process pool broke {breakages[run_id]} times "
                                        f"while this run was in flight (a worker died; this run's own worker "
                                        f"was not named as the one)\n"))
        else:
            again.append(task)
    pending.extendleft(reversed(again))


def culprits(exits: dict[int, int | None], running: Path, inflight: set[str]) -> dict[str, str]:
    """Run id -> error text for each in-flight run whose worker exited abnormally (not the SIGTERM a
    broken pool sends its survivors), read from the ``<running>/<pid>`` file the worker left.
    Only runs still in flight are suspects: a file naming any other run is stale (should one
    survive its run, or an earlier pool's, whose pid was reused), and naming a culprit from it would
    let the in-flight runs go again without their breakage being counted."""
    import signal as _signal

    dead: dict[str, str] = {}
    for pid, code in exits.items():
        if code is None or code == 0 or code == -_signal.SIGTERM:
            continue
        try:
            run_id = (running / str(pid)).read_text(encoding="utf-8")
        except OSError:
            continue
        if run_id not in inflight:
            continue
        why = f"signal {-code}" if code < 0 else f"exit status {code}"
        dead[run_id] = f"infrastructure failure: the worker process {pid} died ({why}) during this run\n"
    return dead


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _environment_changed(changes: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``changes`` (a value set, None removed) while processes start; this
    process's own values are put back afterwards."""
    def put(values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    saved = {name: os.environ.get(name) for name in changes}
    put(changes)
    try:
        yield
    finally:
        put(saved)


def single_threaded_children() -> contextlib.AbstractContextManager[None]:
    """One BLAS/OpenMP thread per worker process (one run per core), unless the user chose otherwise.
    Ray and Dask workers already default to this."""
    return _environment_changed({v: "1" for v in THREAD_VARIABLES if v not in os.environ})


def arithmetic_of(variables: dict[str, str]) -> contextlib.AbstractContextManager[None]:
    """Processes started meanwhile run the arithmetic ``variables`` describe (the driver's:
    ``sim.core.arithmetic.worker_environment``): exactly those of the arithmetic's variables are
    set, whatever this process has (a Ray worker may have loaded numpy before clearsim, which then
    set its opt-out); this process's own are restored afterwards."""
    return _environment_changed({name: variables.get(name) for name in arithmetic.ARITHMETIC_VARIABLES})


@contextlib.contextmanager
def main_not_reimported() -> Iterator[None]:
    """Start worker processes without re-running the caller's script.

    A spawned worker normally imports the parent's ``__main__`` file first; a plain script that
    calls ``sweep`` at top level (no ``if __name__ == "__main__":`` guard) would then start a sweep
    inside every worker and the pool breaks. The workers need nothing from ``__main__`` (the task
    function lives here and runners are ``module:function`` strings), so while they start the
    parent's ``__main__`` hides the file and spec that multiprocessing's spawn reads."""
    main = sys.modules.get("__main__")
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__file__", "__spec__")
                             if main is not None and k in main.__dict__}
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
IN_FLIGHT_PER_SLOT = 2  # tasks handed to a cluster per worker slot: one running, one queued behind it


# A Ray worker hands each run to a process of its own: one spawn child per Ray worker, started with
# its first task and kept for the next. The same SPAN run cost 6.6-9.3% more of its own thread's CPU
# in the Ray worker than in a local pool worker beside it (paired runs, niceness 0 on both sides),
# and 0.2-0.6% less in a spawn child of that Ray worker. What in the Ray worker makes the same code
# uniformly slower is not known (its profile is the pool's, the same functions in the same shares;
# not its threads, GIL, environment, gc, signals, niceness, huge pages -- docs/BENCHMARKS.md); a
# fresh process leaves it behind. The child pays a pool worker's start-up (~0.5 CPU-s) once per Ray
# worker; a run and its row cross one more pipe (a few kB each way).
_RAY_CHILD: Any = None  # this Ray worker's child process (a one-process pool), once started
# the shared objects' keys the child holds, as it keeps them (``_remember``: the last few given)
_RAY_CHILD_SHARED: "collections.deque[str]" = collections.deque(maxlen=_SHARED_KEPT)


def _child_init() -> None:
    """The child dies with its Ray worker (``ray.cancel(force=True)``, a lost node), not a run later.

    PR_SET_PDEATHSIG fires when the *thread* that spawned the child exits, not only the process. The
    child is spawned in ``child.submit`` (Python 3.11's ProcessPoolExecutor starts a spawn context's
    worker in the submitting thread; its manager thread starts one only to replace a worker that
    reached ``max_tasks_per_child``, unset here), i.e. in the thread running ``_ray_task``. In Ray
    2.60 (the venv's) a worker process runs ``default_worker.py`` -> ``Worker.main_loop`` ->
    ``core_worker.run_task_loop()`` (C++ ``RunTaskExecutionLoop``) on its main thread, and a plain
    task (not an async or threaded actor's method) executes in that loop ("If it is a normal task,
    it returns the TaskID from the main thread", _raylet.so's own docstring), so the spawning thread
    lives as long as the worker: the signal comes with the worker's death, never earlier. (Checked
    in the installed sources, not by a test on a cluster. A Dask worker's task threads would not do:
    this child is Ray's only.)"""
    keep_freed_memory()  # the child is clearsim's own process, as a pool worker is
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)


def _child_task(spec: _Spec, task: dict) -> dict:
    return _run_one(spec, task, _shared_here(spec))


def _ray_child() -> Any:
    global _RAY_CHILD
    if _RAY_CHILD is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _RAY_CHILD_SHARED.clear()
        _RAY_CHILD = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_child_init)
    return _RAY_CHILD


def _ray_task(spec: _Spec, task: dict, box: list | None) -> dict:
    """One task on a Ray worker, run in the worker's child process (above). The shared object comes as
    a reference inside a list, which Ray leaves unresolved, so a worker fetches it only the first
    time it meets it, and gives it to its child once. A child that dies fails this task (its error
    row) and the worker's next task starts a new one. A task interrupted while the child works for
    it -- ``ray.cancel`` without ``force`` raises KeyboardInterrupt here, a SIGTERM SystemExit --
    ends the child too: left on the abandoned run, it would hold the worker's next task behind it."""
    global _RAY_CHILD
    from concurrent.futures.process import BrokenProcessPool

    child = _ray_child()
    waiting: Any = None  # what the child is doing for this task, once submitted
    try:
        # the child is spawned by the first submit: BLAS at one thread, and without re-running the
        # Ray worker's own __main__ (its worker loop)
        with single_threaded_children(), arithmetic_of(spec.arithmetic), main_not_reimported():
            if spec.shared_key is not None and spec.shared_key not in _RAY_CHILD_SHARED:
                import ray

                assert box is not None  # _run_ray sends the box with every task of a job with a shared object
                shared = ray.get(box[0])
                waiting = child.submit(_remember, spec.shared_key, shared)
                waiting.result()
                _RAY_CHILD_SHARED.append(spec.shared_key)
            waiting = child.submit(_child_task, spec, task)
        return waiting.result()
    except BaseException as e:
        # a run's own exception comes with its future done and the child free: keep the child
        if isinstance(e, BrokenProcessPool) or (waiting is not None and not waiting.done()):
            _RAY_CHILD = None
            _stop_now(child)  # else the child runs on to the abandoned run's end
        raise


def _dask_task(spec: _Spec, task: dict, shared: Any) -> dict:
    """One task on a Dask worker; ``shared`` is the scattered object, already in the worker's memory."""
    return _run_one(spec, task, shared)


# The cluster a sweep starts for itself serves nobody else: no usage report, no metrics export (the
# dashboard that would show them is off), the agent's stats sampled once a minute, not every 5 s, no
# task events or timeline; and neither the log monitor (it polls every worker's log files ten times a
# second to forward them to a driver that does not want them: ``log_to_driver=False``) nor the
# autoscaler monitor (a fixed cluster of this machine's cores). Measured (docs/BENCHMARKS.md, *Sweeps
# that scale*): without the two monitors the start takes 2.3-2.6 CPU-s instead of 3.1-3.2 and the
# idle cluster 0.1-0.3 CPU-s less per 30 s; the metrics settings took the daemons' CPU beside two busy
# tasks from 2.0 to 1.7-1.9 CPU-s per 80 s. What is left (the raylet, the GCS, the agents, the
# workers' own threads) is ~2% of one core. An existing cluster, reached by its address, keeps its
# own settings (``ray start --include-log-monitor=False --no-monitor --disable-usage-stats`` does the same).
RAY_QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "REPORTER_UPDATE_INTERVAL_MS": "60000"}
RAY_QUIET_CONFIG = {"enable_metrics_collection": False, "task_events_report_interval_ms": 0,
                    "enable_timeline": False}
# Ray starts its workers at niceness 15 (``worker_niceness``), so that its own daemons win the CPU
# from busy tasks; the local pool's workers run at 0. On a machine anything else runs on (Ray's
# daemons and the driver included), a niceness-15 run is preempted more often and in shorter
# slices, and refills its caches each time: a standard run cost 4.8-5.3% more of its own thread's
# CPU in a Ray worker than in a pool worker running beside it (paired runs, load 4-9), 1.5-2.5%
# with the Ray worker at niceness 0; and it is given a small share of a core whenever a niceness-0
# process wants it. A
# sweep's workers are the work, one per core, so they run at the pool's niceness. (An existing
# cluster keeps its own: ``RAY_worker_niceness=0 ray start ...``, docs/BENCHMARKS.md.)
RAY_WORKER_CONFIG = {"worker_niceness": 0}


@contextlib.contextmanager
def _without_ray_monitors() -> Iterator[None]:
    """While ``ray.init`` starts a cluster: no log monitor, no autoscaler monitor. ``ray start`` has
    switches for both; ``ray.init`` has none, so its ``RayParams`` get them here (Ray's private
    module: if its shape changes, the cluster simply starts with both monitors, as before)."""
    import inspect

    try:
        from ray._private import parameter

        original = parameter.RayParams.__init__
        known = inspect.signature(original).parameters
    except Exception:  # noqa: BLE001 -- a Ray without that module: nothing to change
        yield
        return
    if "include_log_monitor" not in known or "no_monitor" not in known:
        yield
        return

    def quiet(self: parameter.RayParams, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("include_log_monitor", False)
        kwargs.setdefault("no_monitor", True)
        original(self, *args, **kwargs)

    parameter.RayParams.__init__ = quiet  # type: ignore[method-assign]  # patched while ray.init runs
    try:
        yield
    finally:
        parameter.RayParams.__init__ = original  # type: ignore[method-assign]  # and put back


def start_local_ray(workers: int) -> None:
    """A Ray cluster of ``workers`` CPUs on this machine, as a sweep starts one (``ray.shutdown()`` ends
    it), with the quiet settings above and its workers at the local pool's niceness
    (``RAY_WORKER_CONFIG``); its start (~2.5 CPU-s: GCS, raylet, two agents, ``workers``
    prestarted workers; ~3 s of wall on two idle cores before the monitors went) is paid per sweep."""
    import logging

    import ray

    saved = {k: os.environ.get(k) for k in RAY_QUIET_ENV}
    os.environ.update(RAY_QUIET_ENV)  # read by the daemons ray.init starts, which inherit this environment
    try:
        with _without_ray_monitors():
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     _system_config={**RAY_QUIET_CONFIG, **RAY_WORKER_CONFIG})
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_local_dask(workers: int) -> tuple[Any, Any]:
    """(cluster, client): a Dask cluster of ``workers`` single-threaded processes on this machine, as a
    sweep starts one. A run is one long pure-Python task on a worker thread, and everything else a
    worker does wakes its event loop, which must take the GIL from the run: with Dask's defaults
    (a 20 ms event-loop health tick, a 100 ms memory check, 500 ms system samples, 10 ms stack
    sampling, a GIL monitor) a worker's other threads cost 4-7% on top of a run's own CPU seconds,
    with these settings under 1% (measured in the worker: process minus the run thread's CPU time).
    And Dask's nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536``, which (as any
    ``MALLOC_*`` variable does) turns off glibc's adaptive mmap threshold, so every numpy array
    above 128 kB is mapped and unmapped afresh: a SPAN run took 34-41% more CPU seconds so
    (14.1 / 13.6 vs 10.5 / 9.7, alternating processes); the workers start instead with the values
    clearsim's own processes set (``sim.experiment.allocator``: freed memory kept, not handed back),
    with BLAS held to one thread as before, and with the driver's floating-point arithmetic
    (``sim.core.arithmetic``: a Dask worker loads numpy before clearsim, so it cannot pin its own).
    An existing cluster, reached by its address, keeps its own settings (docs/BENCHMARKS.md says how
    to start its workers)."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    quiet = {"distributed.worker.profile.enabled": False, "distributed.admin.system-monitor.gil.enabled": False,
             "distributed.admin.tick.interval": "1s", "distributed.worker.memory.monitor-interval": "1s",
             "distributed.admin.system-monitor.interval": "2s",
             "distributed.nanny.pre-spawn-environ": {v: 1 for v in THREAD_VARIABLES} | allocator_environment()
             | arithmetic.worker_environment()}
    with main_not_reimported(), dask.config.set(quiet):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
    return cluster, Client(cluster)


def _run_ray(tasks: list[dict], workers: int, job: Job, on_done: Callable[[dict], None], address: str | None) -> None:
    import logging

    import ray

    started = False
    if not ray.is_initialized():
        if address is None:  # a cluster of this machine's cores, for this call only
            start_local_ray(workers)
        else:  # an existing cluster: the tasks go wherever it has free CPUs
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        started = True
    pending: dict[Any, dict] = {}
    try:
        spec = _spec(job)
        box = None if job.shared is None else [ray.put(job.shared)]  # once, to the object store
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
        slots = workers if started and address is None else int(ray.cluster_resources().get("CPU", workers))
        window = IN_FLIGHT_PER_SLOT * max(1, slots)
        queue = collections.deque(tasks)
        while queue or pending:
            while queue and len(pending) < window:
                task = queue.popleft()
                pending[remote.remote(spec, task, box)] = task
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception:  # noqa: BLE001 -- a worker died
                    row = job.error_row(task, traceback.format_exc())
                del ref
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
    from distributed import Client, as_completed

    own = client is None
    cluster = None
    if own and address is not None:  # an existing cluster's scheduler
        client = Client(address)
    elif own:
        cluster, client = start_local_dask(workers)
    futures: dict[Any, dict] = {}
    shared = None
    try:
        spec = _spec(job)
        if job.shared is not None:  # once to every worker (a list: scatter would split a dict by its keys)
            [shared] = client.scatter([job.shared], broadcast=True, hash=False)
        slots = workers if cluster is not None else (sum(client.nthreads().values()) or workers)
        window = IN_FLIGHT_PER_SLOT * max(1, slots)
        queue = collections.deque(tasks)
        running = as_completed()

        def submit() -> None:
            task = queue.popleft()
            fut = client.submit(_dask_task, spec, task, shared, pure=False)
            futures[fut] = task
            running.add(fut)

        while queue and len(futures) < window:
            submit()
        for fut in running:
            task = futures.pop(fut)
            try:
                row = fut.result()
            except Exception:  # noqa: BLE001 -- a worker died
                row = job.error_row(task, traceback.format_exc())
            fut.release()  # the worker may drop its copy of the row now
            del fut
            if queue:
                submit()
            on_done(row)
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        if shared is not None:
            with contextlib.suppress(Exception):
                shared.release()
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
