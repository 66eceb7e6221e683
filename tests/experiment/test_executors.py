"""The local pool's bookkeeping after a worker dies, with fakes (no processes): which run is
blamed, which go again and how their breakages are counted, and where the workers' files live."""

from __future__ import annotations

import collections
import signal
from pathlib import Path

from sim.experiment import executors
from sim.experiment.executors import MAX_BREAKAGES, Job, _after_breakage


class FakePool:
    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class FakeProcess:
    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode

    def join(self, timeout: float | None = None) -> None:
        pass


JOB = Job(fn=dict, error_row=lambda task, text: {"id": task["id"], "error": text}, key=lambda task: task["id"])


def _break(folder: Path, files: dict[int, str], exits: dict[int, int], inflight: list[str],
           breakages: dict[str, int]) -> tuple[list[dict], list[str]]:
    """One breakage: workers' ``<pid>`` files and exit codes; returns (rows delivered, runs queued again)."""
    folder.mkdir()
    for pid, run_id in files.items():
        (folder / str(pid)).write_text(run_id)
    rows: list[dict] = []
    pending: collections.deque = collections.deque()
    _after_breakage(FakePool(), {object(): {"id": r} for r in inflight}, {pid: FakeProcess(c) for pid, c in exits.items()},
                    pending, JOB, rows.append, folder, breakages)
    return rows, [t["id"] for t in pending]


def test_runs_queued_again_count_a_breakage_whose_culprit_was_named(tmp_path):
    """Review finding: when a culprit was named, the other in-flight runs went again without the
    breakage being counted, so a run beside a dying worker could go again for ever. Y is in flight
    for two breakages, each with another run blamed: it is failed at the second."""
    breakages: dict[str, int] = {}
    rows, again = _break(tmp_path / "p1", {11: "K1", 12: "Y"}, {11: -signal.SIGKILL, 12: -signal.SIGTERM},
                         ["K1", "Y"], breakages)
    assert [r["id"] for r in rows] == ["K1"] and "process 11 died (signal 9)" in rows[0]["error"]
    assert again == ["Y"] and breakages == {"Y": 1}
    rows, again = _break(tmp_path / "p2", {21: "K2", 22: "Y"}, {21: -signal.SIGKILL, 22: -signal.SIGTERM},
                         ["K2", "Y"], breakages)
    assert again == [] and [r["id"] for r in rows] == ["K2", "Y"]
    assert f"broke {MAX_BREAKAGES} times while this run was in flight" in rows[1]["error"]


def test_control_no_culprit_every_run_goes_again_once_then_fails(tmp_path):
    """As before the change: no file names a dead worker's run (it died idle), so no run is blamed;
    both go again, and at their second breakage both fail."""
    breakages: dict[str, int] = {}
    rows, again = _break(tmp_path / "p1", {}, {11: -signal.SIGKILL, 12: -signal.SIGTERM}, ["A", "B"], breakages)
    assert rows == [] and again == ["A", "B"]
    rows, again = _break(tmp_path / "p2", {}, {21: -signal.SIGKILL}, ["A", "B"], breakages)
    assert again == [] and [r["id"] for r in rows] == ["A", "B"]


def test_an_idle_worker_file_naming_a_finished_run_blames_nothing(tmp_path):
    """A dead worker's file naming a run no longer in flight (its row was delivered) blames no run:
    the in-flight run goes again, counting the breakage."""
    breakages: dict[str, int] = {}
    rows, again = _break(tmp_path / "p1", {11: "done-before"}, {11: -signal.SIGKILL, 12: -signal.SIGTERM},
                         ["B"], breakages)
    assert rows == [] and again == ["B"] and breakages == {"B": 1}


def test_each_pool_starts_with_a_fresh_folder_of_its_own(tmp_path, monkeypatch):
    """Review finding: the workers' ``<pid>`` files went straight into the caller's ``running``
    folder, where files of an earlier sweep (or pool) could wait for a worker that reuses their
    pid. Now each pool gets a new empty folder inside one this call makes; the caller's files are
    neither read nor removed, and nothing of ours is left."""
    running = tmp_path / "running"
    running.mkdir()
    (running / "4242").write_text("a run of an earlier sweep")
    folders: list[Path] = []

    def fake_pool(pending, workers, job, on_done, folder, breakages):
        assert list(folder.iterdir()) == [] and folder.parent.parent == running
        folders.append(folder)
        on_done(pending.popleft())  # one run, then a breakage: the rest go to a new pool
        (folder / "4242").write_text(job.key(pending[0]) if pending else "")

    monkeypatch.setattr(executors, "_run_pool", fake_pool)
    rows: list[dict] = []
    executors.execute([{"id": "a"}, {"id": "b"}, {"id": "c"}], "local", 2, JOB, rows.append, running=running)
    assert [r["id"] for r in rows] == ["a", "b", "c"] and len(set(folders)) == 3
    assert sorted(p.name for p in running.iterdir()) == ["4242"]
    assert (running / "4242").read_text() == "a run of an earlier sweep"


def test_a_row_that_cannot_be_written_after_a_breakage_raises_its_own_error(tmp_path):
    """Review finding: the pool's stop-now path read ``pool._processes``, which a pool already shut
    down (``_after_breakage`` shuts the broken one before delivering its error rows) holds as None:
    a failure to write the dead worker's row surfaced as an AttributeError, not its own error. A real
    pool: the task (``3``) makes its worker exit with status 3, and writing that row fails."""
    import os

    import pytest

    def on_done(row: dict) -> None:
        raise OSError("disk full")

    job = Job(fn=os._exit, error_row=lambda task, text: {"id": task, "error": text}, key=str)
    with pytest.raises(OSError, match="disk full"):
        executors.execute([3], "local", 1, job, on_done, running=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the call's own folder went with it
