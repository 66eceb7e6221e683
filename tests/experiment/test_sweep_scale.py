"""Sweeps that scale: lean tasks (the base episode shipped once per worker), the dearest runs
first, a worker's start-up paid and reported once, and a driver that holds no more than a few rows
whatever the number of runs (rows go to disk as they arrive; the table is assembled in batches).

Uses the fake runner of ``test_sweep`` (instant, deterministic), so it tests the machinery only.
"""

from __future__ import annotations

import gc
import json
import pickle
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import sim.experiment.sweep as sw
from sim.experiment.parts import PartWriter, Rows
from sim.experiment.sweep import parts_dir, plan, run_task, sweep

from test_sweep import GRID, RUNNER, write_sweep


def _live_rows() -> int:
    """Result rows alive in this process: dicts with a run id and metrics (tasks have no metrics)."""
    return sum(1 for o in gc.get_objects() if isinstance(o, dict) and "run_id" in o and "metrics" in o)


def test_the_driver_never_holds_more_than_a_few_rows(tmp_path, monkeypatch):
    """24 runs, a table batch of 4: at every row written and every row read back for the table, at
    most a batch plus the rows in flight are alive (before, every row was kept to the end: 24)."""
    funds = [float(x) for x in range(100, 112)]
    path = write_sweep(tmp_path, {"clearing.loss_absorption.insurance_fund": funds}, seeds=2)
    monkeypatch.setattr(sw, "TABLE_BATCH_ROWS", 4)
    seen: list[int] = []
    written: list[int] = []
    store, read = PartWriter.write, Rows.__getitem__

    def counting_store(self, row):
        written.append(_live_rows())
        return store(self, row)

    def counting_read(self, run_id):
        seen.append(_live_rows())
        return read(self, run_id)

    monkeypatch.setattr(PartWriter, "write", counting_store)
    monkeypatch.setattr(Rows, "__getitem__", counting_read)
    table = sweep(path, workers=2, progress=False, runner=RUNNER)
    assert table.num_rows == 24 and len(written) == 24 and len(seen) == 24 * 2  # written once, read twice
    assert min(written) >= 1  # the hook sees the row being written: it counts the right objects
    assert max(written) <= 1 + 2 * 2, written  # that row, plus at most a row per worker in flight
    assert max(seen) <= 4 + 1, seen  # the table: a batch of rows read back, plus the one being read


def test_batched_table_equals_the_table_built_at_once(tmp_path, monkeypatch):
    """The columns' types are decided over all rows even though the rows are written in batches:
    an int metric that is a float in a later batch is float, a metric no row in a batch has is null
    there, lists and mixed kinds are JSON text, an int too big for int64 is float."""
    parts = tmp_path / "rows"
    parts.mkdir()
    rows = []
    for i in range(7):
        metrics = {"count": i if i < 5 else i + 0.5, "flag": i % 2 == 0, "name": f"r{i}",
                   "mixed": i if i % 3 else "x", "list": [i, i + 1], "huge": 2**64 if i == 6 else i}
        if i == 3:
            metrics = {}  # an error row: no metrics at all
        if i in (1, 2):
            metrics["late"] = None
        if i == 5:
            metrics["late"] = 1.5
        rows.append({"run_id": f"{i:016x}", "point": {"a": i, "b": [i] if i == 4 else "s"}, "seed": i,
                     "status": "ok" if i != 3 else "error", "error": None if i != 3 else "boom",
                     "config_hash": "h", "wall_seconds": 0.1 * i, "metrics": metrics})
    with PartWriter(parts) as writer:
        for row in rows:
            writer.write(row)
    monkeypatch.setattr(sw, "TABLE_BATCH_ROWS", 3)
    ids = [r["run_id"] for r in reversed(rows)]  # the order given, not the files' order
    streamed = sw._write_table_from_parts(Rows(parts), ids, ["a", "b"], tmp_path / "t.parquet", replace=False)
    at_once = sw.assemble_table([json.loads(json.dumps(r)) for r in reversed(rows)], ["a", "b"])
    assert streamed.equals(at_once)
    assert streamed.schema.equals(at_once.schema)
    assert pq.ParquetFile(tmp_path / "t.parquet").metadata.num_row_groups == 3
    types = {f.name: str(f.type) for f in streamed.schema}
    assert types["count"] == "double" and types["flag"] == "bool" and types["late"] == "double"
    assert types["huge"] == "double" and types["mixed"] == "string" and types["b"] == "string"


def test_tasks_are_lean_and_the_base_is_shipped_once(tmp_path, monkeypatch):
    """The executors get each run as its point and seed; the base episode goes separately (once per
    worker), and a task pickles to a few hundred bytes whatever the size of the episode."""
    path = write_sweep(tmp_path, GRID, seeds=2)
    captured = {}

    def fake_execute(tasks, backend, workers, on_done, client=None, *, shared=None, **kw):
        captured.update(tasks=list(tasks), shared=shared)
        for t in tasks:
            on_done(run_task(t, shared))

    monkeypatch.setattr(sw, "execute", fake_execute)
    table = sweep(path, workers=2, progress=False, runner=RUNNER)
    tasks, shared = captured["tasks"], captured["shared"]
    assert table.num_rows == 8 and len(tasks) == 8
    assert all("data" not in t for t in tasks)
    assert shared["runner"] == RUNNER and shared["base"]["name"] == "tiny"
    whole = plan(path, runner=RUNNER)[1]
    assert max(len(pickle.dumps(t)) for t in tasks) < 400 < min(len(pickle.dumps(t)) for t in whole)
    # the worker builds the same episode the driver validated and hashed
    by_id = {t["run_id"]: t for t in whole}
    for t in tasks:
        assert sw.episode_data(shared, t["point"], t["seed"]) == by_id[t["run_id"]]["data"]
        assert t["config_hash"] == by_id[t["run_id"]]["config_hash"]


def test_a_lean_task_that_does_not_hash_to_its_config_fails_its_row(tmp_path):
    path = write_sweep(tmp_path, GRID, seeds=1)
    _cfg, context, tasks = sw._plan(path, RUNNER)
    good = run_task(tasks[2], context)
    assert good["status"] == "ok", good["error"]
    bad = run_task(dict(tasks[2], config_hash="0" * 64), context)
    assert bad["status"] == "error" and "not the one the driver validated" in bad["error"]


def test_the_dearest_runs_go_first(tmp_path, monkeypatch):
    """SPAN costs ~3x standard per simulated second, and a longer episode costs more: the executor
    gets the runs dearest first, equal estimates in grid order; the table stays in grid order."""
    path = write_sweep(tmp_path, {"margin": ["standard", "span"], "duration": [300.0, 600.0]}, seeds=2)
    order = []

    def fake_execute(tasks, backend, workers, on_done, client=None, *, shared=None, **kw):
        for t in tasks:
            order.append((t["point"]["margin"], t["point"]["duration"], t["seed"]))
            on_done(run_task(t, shared))

    monkeypatch.setattr(sw, "execute", fake_execute)
    table = sweep(path, workers=2, progress=False, runner=RUNNER)
    assert order == [("span", 600.0, 0), ("span", 600.0, 1), ("span", 300.0, 0), ("span", 300.0, 1),
                     ("standard", 600.0, 0), ("standard", 600.0, 1), ("standard", 300.0, 0),
                     ("standard", 300.0, 1)]
    assert [(r["margin"], r["duration"], r["seed"]) for r in table.to_pylist()] == sorted(
        order, key=lambda x: (x[0] != "standard", x[1], x[2]))


def test_each_row_says_its_worker_and_each_worker_reports_its_start_up_once(tmp_path):
    path = write_sweep(tmp_path, {"clearing.loss_absorption.insurance_fund": [100.0, 200.0, 300.0]}, seeds=2)
    table = sweep(path, workers=2, progress=False, runner=RUNNER)
    assert "timing" not in table.column_names and not any(c.startswith("timing") for c in table.column_names)
    rows = [row for _, row in Rows(parts_dir(tmp_path / "out.parquet")).items()]
    assert len(rows) == 6
    workers = {r["timing"]["worker"] for r in rows}
    assert 1 <= len(workers) <= 2
    for w in workers:
        mine = [r["timing"] for r in rows if r["timing"]["worker"] == w]
        startups = [t["startup_cpu_seconds"] for t in mine if t["startup_cpu_seconds"] is not None]
        assert len(startups) == 1 and startups[0] > 0  # paid and reported once per worker
        assert all(t["cpu_seconds"] >= 0 and t["max_rss_mib"] > 0 for t in mine)


def test_rows_written_are_the_rows_read_back_and_bad_lines_are_skipped(tmp_path):
    """``PartWriter.write`` returns a row as ``Rows`` reads it back (fresh and resumed rows are the
    same values: a tuple becomes a list, a non-JSON value its text); a torn last line, a
    zero-filled one, a line that is not a row and a file that is not a segment are skipped; a later
    segment's row replaces an earlier one of the same run; no folder is no rows."""
    parts = tmp_path / "rows"
    parts.mkdir()
    assert len(Rows(tmp_path / "absent")) == 0
    task = {"run_id": "00ab", "point": {"margin": "span"}, "seed": 2, "config_hash": "h"}
    failed = sw.error_row(task, "boom")
    assert failed["status"] == "error" and failed["infrastructure"] is False and failed["metrics"] == {}
    assert sw._infrastructure_error_row(task, "lost")["infrastructure"] is True
    ok = {"run_id": "00cd", "point": {"fund": (1, 2)}, "seed": 1, "status": "ok", "metrics": {"x": Path("p")}}
    with PartWriter(parts) as writer:
        back = {row["run_id"]: writer.write(row) for row in (failed, dict(ok, status="error"))}
    with PartWriter(parts) as writer:  # a later session re-ran 00cd
        back["00cd"] = writer.write(ok)
    assert back["00cd"]["point"] == {"fund": [1, 2]} and back["00cd"]["metrics"] == {"x": "p"}
    with open(writer.path, "ab") as fh:  # what a crash may leave after the last sync
        fh.write(b"[1, 2]\n" + json.dumps({"run_id": 3}).encode() + b"\n" + b"\0" * 40 + b"\n"
                 + json.dumps(dict(ok, run_id="00ef"), default=str).encode()[:-5])
    # not a row of the old one-file-per-row layout either: its run id is not its name
    (parts / "notes.json").write_text(json.dumps(dict(ok, run_id="00ef"), default=str))
    assert sorted(p.name for p in parts.iterdir()) == ["notes.json", "rows-000001.jsonl", "rows-000002.jsonl"]
    assert dict(Rows(parts).items()) == back


def test_rows_of_the_old_one_file_per_row_layout_are_read_and_a_segment_row_wins(tmp_path):
    """A folder left by a sweep or search interrupted before segments (one ``<run_id>.json`` per
    row, written atomically) is resumed, not re-run: each file whose run id is its name is a row,
    older than any segment's; a torn or foreign ``.json`` file is skipped (that run goes again)."""
    parts = tmp_path / "rows"
    parts.mkdir()
    old = {f"{i:016x}": {"run_id": f"{i:016x}", "seed": i, "status": "ok", "metrics": {"m": i}} for i in range(3)}
    for run_id, row in old.items():
        (parts / f"{run_id}.json").write_text(json.dumps(row, sort_keys=True))
    (parts / "00000000000000ff.json").write_text('{"run_id": "00000000000000ff", "st')  # torn
    (parts / ".clearsim-output").write_text('{"kind": "sweep-parts", "written_by": "clearsim"}\n')
    assert dict(Rows(parts).items()) == old
    with PartWriter(parts) as writer:  # the resumed session re-ran one of them
        newer = writer.write(dict(old["0000000000000001"], status="error"))
    rows = Rows(parts)
    assert len(rows) == 3 and "00000000000000ff" not in rows
    assert rows["0000000000000001"] == newer and rows["0000000000000000"] == old["0000000000000000"]


def test_rows_are_synced_in_batches_and_at_the_end(tmp_path, monkeypatch):
    """The segment is fsynced every ``rows_per_sync`` rows, at a row written ``seconds_per_sync``
    after the last sync, and when closed -- not once per row; every row reaches the file (the OS)
    as it is written."""
    import sim.experiment.parts as parts_mod

    synced: list[int] = []
    monkeypatch.setattr(parts_mod.os, "fsync", lambda fd: synced.append(len(Rows(tmp_path))))
    now = [0.0]
    monkeypatch.setattr(parts_mod.time, "monotonic", lambda: now[0])
    with PartWriter(tmp_path, rows_per_sync=4, seconds_per_sync=10.0, timer=_FakeTimer()) as writer:
        for i in range(10):
            writer.write({"run_id": f"{i:04x}"})
            assert len(Rows(tmp_path)) == i + 1  # on disk (unsynced) at once
        assert synced == [0, 4, 8]  # 0: the folder, for the new segment's name, before its first row
        now[0] = 10.0
        writer.write({"run_id": "000a"})  # slow rows: each synced as it comes
        assert synced == [0, 4, 8, 11]
        writer.write({"run_id": "000b"})
        assert synced == [0, 4, 8, 11]
    assert synced == [0, 4, 8, 11, 12]
    with PartWriter(tmp_path) as idle:
        pass
    assert synced == [0, 4, 8, 11, 12] and not idle.path.exists()  # no rows, no segment, no sync


class _FakeTimer:
    """Stands in for the writer's timer: records what it would run, runs it when the test says."""

    def __init__(self) -> None:
        self.armed: list[tuple[float, object]] = []
        self.cancelled = 0

    def __call__(self, seconds, fn):
        self.armed.append((seconds, fn))
        outer = self

        class Handle:
            def cancel(self) -> None:
                outer.cancelled += 1

        return Handle()

    def fire(self) -> None:
        _, fn = self.armed.pop()
        fn()


def test_rows_finished_when_the_driver_is_idle_are_synced_within_the_sync_period(tmp_path, monkeypatch):
    """No finished row waits for the next row (a whole run later, perhaps) to be synced: the first
    unsynced row arms a timer of ``seconds_per_sync`` that syncs what is pending; a sync by count
    or on close disarms it; with nothing pending no timer runs."""
    import sim.experiment.parts as parts_mod

    synced: list[int] = []
    monkeypatch.setattr(parts_mod.os, "fsync", lambda fd: synced.append(len(Rows(tmp_path))))
    timer = _FakeTimer()
    with PartWriter(tmp_path, rows_per_sync=4, seconds_per_sync=7.0, timer=timer) as writer:
        assert timer.armed == []  # nothing pending: no timer
        writer.write({"run_id": "0000"})
        writer.write({"run_id": "0001"})
        assert synced == [0] and [s for s, _ in timer.armed] == [7.0]  # armed once, by the first row
        timer.fire()  # the period passes with no further row
        assert synced == [0, 2] and timer.armed == []
        for i in range(2, 6):  # the fourth row since the sync syncs by count and disarms the timer
            writer.write({"run_id": f"{i:04x}"})
        assert synced == [0, 2, 6] and timer.cancelled == 2 and len(timer.armed) == 1  # (1: the fired one's)
        timer.armed.clear()  # (a cancelled timer never runs)
        writer.write({"run_id": "0006"})
        assert len(timer.armed) == 1
    assert synced == [0, 2, 6, 7] and timer.cancelled == 3  # close syncs and disarms
    timer.fire()  # a timer that fires after the close finds nothing to do
    assert synced == [0, 2, 6, 7]


def test_a_failed_timed_sync_is_raised_by_the_next_write(tmp_path, monkeypatch):
    """An fsync error in the timer's thread is not lost: the driver's next write (or the close) raises it."""
    import sim.experiment.parts as parts_mod

    timer = _FakeTimer()
    writer = PartWriter(tmp_path, seconds_per_sync=7.0, timer=timer)
    writer.write({"run_id": "0000"})

    def broken(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(parts_mod.os, "fsync", broken)
    timer.fire()
    monkeypatch.undo()
    with pytest.raises(OSError, match="disk gone"):
        writer.write({"run_id": "0001"})
    writer.close()


def test_a_timer_that_fires_late_syncs_and_leaves_no_timer_armed(tmp_path, monkeypatch):
    """A timer already firing when a sync by count disarmed it (its thread waiting on the lock) runs
    after a newer timer was armed: it syncs the newer rows too and disarms that timer, so none is
    left that the close could not cancel."""
    import sim.experiment.parts as parts_mod

    synced: list[int] = []
    monkeypatch.setattr(parts_mod.os, "fsync", lambda fd: synced.append(len(Rows(tmp_path))))
    timer = _FakeTimer()
    writer = PartWriter(tmp_path, rows_per_sync=2, seconds_per_sync=7.0, timer=timer)
    writer.write({"run_id": "0000"})
    _, late = timer.armed.pop()  # armed, and (in its thread) about to run
    writer.write({"run_id": "0001"})  # synced by count: the late one is cancelled, too late
    writer.write({"run_id": "0002"})  # arms a newer timer
    assert synced == [0, 2] and len(timer.armed) == 1 and writer._timer is not None
    assert timer.cancelled == 1
    late()
    assert synced == [0, 2, 3] and writer._timer is None and timer.cancelled == 2  # the newer one disarmed
    writer.close()
    assert synced == [0, 2, 3]  # nothing was pending
