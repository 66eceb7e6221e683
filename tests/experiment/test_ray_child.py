"""``executors._ray_task``: a Ray worker runs each task in a spawn child process of its own, kept
between tasks (a run there costs what it costs in a local pool worker; in the Ray worker itself it
cost ~7% more CPU). Called here in this process as a Ray worker calls it, with a fake ``ray``
module for the shared object, so these run without Ray."""

from __future__ import annotations

import os
import sys
import types
from concurrent.futures.process import BrokenProcessPool

import pytest

from sim.experiment import executors


def where(task: dict, shared=None) -> dict:
    return {"pid": os.getpid(), "n": task["n"], "shared": shared, "omp": os.environ.get("OMP_NUM_THREADS")}


def die(task: dict) -> dict:
    os._exit(3)


def _key(task: dict) -> str:
    return str(task["n"])


@pytest.fixture(autouse=True)
def fresh_child():
    executors._RAY_CHILD = None
    yield
    if executors._RAY_CHILD is not None:
        for proc in list((executors._RAY_CHILD._processes or {}).values()):
            proc.terminate()  # a child a failing test left on a long run
        executors._RAY_CHILD.shutdown(wait=True)
    executors._RAY_CHILD = None


def _spec(fn, shared=None) -> executors._Spec:
    return executors._spec(executors.Job(fn, lambda t, e: {}, _key, shared=shared))


def test_tasks_run_in_one_child_process_kept_between_tasks(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    spec = _spec(where)
    first, second = (executors._ray_task(spec, {"n": n}, None) for n in (1, 2))
    assert first["pid"] != os.getpid() and first["pid"] == second["pid"]
    assert (first["n"], second["n"]) == (1, 2)
    assert first["omp"] == "1"  # BLAS single-threaded in the child, as in a pool worker
    assert "OMP_NUM_THREADS" not in os.environ  # the Ray worker's own environment is back


def test_shared_object_fetched_and_given_to_the_child_once(monkeypatch):
    fetched = []
    ray = types.ModuleType("ray")
    ray.get = lambda ref: fetched.append(ref) or {"base": ref}
    monkeypatch.setitem(sys.modules, "ray", ray)
    spec = _spec(where, shared={"base": 7})
    rows = [executors._ray_task(spec, {"n": n}, [7]) for n in (1, 2, 3)]
    assert fetched == [7]
    assert [r["shared"] for r in rows] == [{"base": 7}] * 3


def test_a_dead_child_fails_its_task_and_the_next_task_gets_a_new_one():
    before = executors._ray_task(_spec(where), {"n": 1}, None)["pid"]
    with pytest.raises(BrokenProcessPool):  # the driver makes it the task's error row
        executors._ray_task(_spec(die), {"n": 2}, None)
    after = executors._ray_task(_spec(where), {"n": 3}, None)
    assert after["n"] == 3 and after["pid"] not in (before, os.getpid())


def long_run(task: dict) -> dict:
    """A run the child is still on when its Ray task is interrupted: says it started, then sleeps."""
    import time

    with open(task["started"], "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(600)
    return {"n": task["n"]}


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_task_leaves_no_busy_child_and_the_next_task_gets_a_fresh_one(tmp_path, interrupt):
    """``ray.cancel`` without ``force`` raises KeyboardInterrupt in the Ray worker's task (and a
    SIGTERM there is a SystemExit): the abandoned run must not keep the child busy, or the worker's
    next task would queue behind it. Here the interrupt comes as Ray delivers it, while the task
    waits for the child's result (a fake ``result``), once the child is on the run."""
    import time

    child = executors._ray_child()
    real_submit = child.submit
    started = tmp_path / "started"
    processes = []

    def submit(fn, *args):
        fut = real_submit(fn, *args)
        if fn is not executors._child_task:
            return fut

        def interrupted_result(timeout=None):
            for _ in range(6000):  # a hang guard, not a time bar: the child starts the run at once
                if started.exists() and started.read_text():
                    break
                time.sleep(0.01)
            processes.extend(child._processes.values())
            raise interrupt()

        fut.result = interrupted_result
        return fut

    child.submit = submit
    with pytest.raises(interrupt):
        executors._ray_task(_spec(long_run), {"n": 1, "started": str(started)}, None)
    busy_pid = int(started.read_text())
    assert executors._RAY_CHILD is None  # the next task starts a new child
    assert [p.pid for p in processes] == [busy_pid]
    # terminated, it exits at once (else: 600 s). The shut-down pool's own thread joins it too, and
    # whichever waitpid comes second gets ECHILD: join then returns at once with exitcode None,
    # until the other thread has set it -- so wait for the exit code, not for one join
    deadline = time.monotonic() + 60  # a hang guard, not a time bar
    while processes[0].exitcode is None and time.monotonic() < deadline:
        processes[0].join(timeout=0.1)
        time.sleep(0.01)
    assert processes[0].exitcode is not None  # the abandoned run's process is gone
    after = executors._ray_task(_spec(where), {"n": 2}, None)
    assert after["n"] == 2 and after["pid"] not in (busy_pid, os.getpid())
