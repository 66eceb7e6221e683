"""Sweeps: grid expansion and up-front validation, the local backend, error rows, resume after an interruption.

Most tests use a fast fake runner (``fake_runner`` below, imported by name in the worker processes)
so they exercise the sweep machinery, not the simulator; ``test_real_episode_sweep`` runs two
short real episodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
from pydantic import ValidationError
import pytest
import yaml

from sim.experiment.outdir import OutputFolderError
from sim.experiment.parts import Rows
from sim.experiment.sweep_config import SweepConfig
from sim.experiment.sweep import SweepError, parts_dir, plan, run_id_of, sweep
from sim.experiment.io import set_path

BASE = {
    "name": "tiny", "seed": 0, "duration": 600.0,
    "market": {"instruments": [{"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0,
                                "lot_size": 0.001}]},
    "paths": {"dt": 1.0, "models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 100.0, "vol": 0.5}]}]},
    "population": {"groups": []},
}
RUNNER = "test_sweep:fake_runner"


def fake_runner(config):
    """A stand-in for run + summarise: instant, deterministic, fails on one point, logs its calls."""
    log = os.environ.get("CLEARSIM_TEST_RUN_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{config.clearing.loss_absorption.insurance_fund}/{config.seed}\n")
    delay = float(os.environ.get("CLEARSIM_TEST_DELAY", "0"))
    if delay:
        time.sleep(delay)
    hang_after = os.environ.get("CLEARSIM_TEST_HANG_AFTER")  # calls after the first N hang (a run in flight)
    if hang_after and log and len(Path(log).read_text().splitlines()) > int(hang_after):
        time.sleep(600)
    fund = config.clearing.loss_absorption.insurance_fund
    put = os.environ.get("CLEARSIM_TEST_PUT")  # "<path>:<source>": a file lands at <path> while the sweep runs
    if put:
        target, source = put.split(":", 1)
        if not os.path.exists(target):
            Path(target).write_bytes(Path(source).read_bytes() if source else b"the user's own notes")
    kill = os.environ.get("CLEARSIM_TEST_KILL_ONCE")  # "<fund>/<seed>:<flag file>": kill -9 this worker once
    if kill:
        which, flag = kill.split(":", 1)
        if which == f"{fund}/{config.seed}" and not os.path.exists(flag):
            Path(flag).write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
    if fund == 13.0 and config.seed == 1:
        raise RuntimeError("unlucky point")
    return {"bad_debt": {"total": fund * 0.5 + config.seed}, "run": {"regime": config.margin.regime},
            "cascades": {"by_generation": [{"generation": 0, "count": config.seed}], "amplification": None},
            "flag": config.seed == 0}


def write_sweep(tmp_path: Path, grid: dict, seeds=2, **extra) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    spec = {"name": "t", "base": "base.yaml", "grid": grid, "seeds": seeds,
            "output": str(tmp_path / "out.parquet"), **extra}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


GRID = {"margin": ["standard", "span"], "clearing.loss_absorption.insurance_fund": [13.0, 1000.0]}


# ------------------------------------------------------------------------------------ planning
def test_plan_expands_the_grid(tmp_path):
    path = write_sweep(tmp_path, GRID, seeds=2, overrides={"duration": 300.0, "outputs.sample_interval": 10.0})
    cfg, tasks = plan(path)
    assert cfg.n_points() == 4 and len(tasks) == 8
    assert len({t["run_id"] for t in tasks}) == 8
    first = tasks[0]
    assert first["point"] == {"margin": "standard", "clearing.loss_absorption.insurance_fund": 13.0}
    assert first["data"]["margin"] == {"regime": "standard"}
    assert tasks[4]["data"]["margin"] == {"regime": "span"}
    assert first["data"]["duration"] == 300.0 and first["data"]["outputs"]["sample_interval"] == 10.0
    assert [t["seed"] for t in tasks[:2]] == [0, 1]
    assert first["run_id"] == run_id_of(first["point"], 0)  # stable: a function of the point and seed only
    assert len(first["run_id"]) == 16


def test_a_regime_name_keeps_the_base_margin_config_of_that_regime(tmp_path):
    tiers = [{"max_notional": 1000.0, "im_rate": 0.05, "mm_rate": 0.02}, {"im_rate": 0.2, "mm_rate": 0.1}]
    path = write_sweep(tmp_path, {"margin": ["standard", "span"]}, seeds=1,
                       overrides={"margin": {"regime": "standard", "tiers": tiers}})
    _cfg, tasks = plan(path)
    assert tasks[0]["data"]["margin"] == {"regime": "standard", "tiers": tiers}
    assert tasks[1]["data"]["margin"] == {"regime": "span"}


def test_bad_point_fails_up_front_naming_it(tmp_path):
    path = write_sweep(tmp_path, {"clearing.loss_absorption.insurance_fund": [1000.0, -5.0],
                                  "margin": ["standard", "nonsense"]})
    with pytest.raises(SweepError) as err:
        sweep(path, workers=1, progress=False, runner=RUNNER)
    text = str(err.value)
    assert "3 of 4 grid points" in text and "nothing was run" in text
    assert "clearing.loss_absorption.insurance_fund=-5.0" in text
    assert "clearing.loss_absorption.insurance_fund" in text.split("-5.0", 1)[1]  # the field is named
    assert "margin" in text
    assert not (tmp_path / "out.parquet").exists() and not parts_dir(tmp_path / "out.parquet").exists()


def test_sweep_config_is_strict(tmp_path):
    with pytest.raises(ValidationError, match="grids"):
        SweepConfig.model_validate({"grid": {"a": [1]}, "grids": {}})
    # each bad value is refused by its own field, for its own reason
    for bad, reason in (({"grid": {}}, "grid\n.*at least 1 item"),
                        ({"grid": {"a": []}}, "grid\n.*a: needs at least one value"),
                        ({"grid": {"seed": [1, 2]}}, "grid\n.*'seed' cannot be swept"),
                        ({"grid": {"a..b": [1]}}, "grid\n.*not a dotted config path"),
                        ({"grid": {"a": [1]}, "seeds": 0}, "seeds\n.*at least 1"),
                        ({"grid": {"a": [1]}, "seeds": [1, 1]}, "seeds\n.*a seed twice"),
                        ({"grid": {"a": [1, 1]}}, "grid\n.*lists a value twice"),
                        ({"grid": {"a": [1], "a.b": [2]}}, "grid\n.*a.b lies inside a")):
        with pytest.raises(ValidationError, match=reason):
            SweepConfig.model_validate(bad)
    path = tmp_path / "s.yaml"
    path.write_text("grid: {duration: [1]}\nworkers: 3\n")
    with pytest.raises(SweepError, match="workers"):
        sweep(path, progress=False)


def test_set_path():
    data = {"a": {"b": 1}, "l": [{"x": 1}, {"x": 2}]}
    set_path(data, "a.c.d", 5)
    set_path(data, "l.1.x", 7)
    set_path(data, "a", {"e": 1}, merge=True)
    assert data == {"a": {"b": 1, "c": {"d": 5}, "e": 1}, "l": [{"x": 1}, {"x": 7}]}
    with pytest.raises(KeyError, match="out of range"):
        set_path(data, "l.5.x", 1)
    with pytest.raises(KeyError, match="not a mapping"):
        set_path(data, "a.b.c", 1)


# ------------------------------------------------------------------------------------ running
def test_local_sweep_records_errors_and_keeps_grid_order(tmp_path):
    path = write_sweep(tmp_path, GRID)
    table = sweep(path, backend="local", workers=2, progress=False, runner=RUNNER)
    assert table.num_rows == 8
    rows = table.to_pylist()
    # grid order whatever order the runs finished in: the first path slowest, seeds fastest
    expected = [(m, f, s) for m in GRID["margin"] for f in GRID["clearing.loss_absorption.insurance_fund"]
                for s in (0, 1)]
    assert [(r["margin"], r["clearing.loss_absorption.insurance_fund"], r["seed"]) for r in rows] == expected
    assert table.column_names[:8] == ["run_id", "margin", "clearing.loss_absorption.insurance_fund", "seed",
                                      "status", "error", "config_hash", "wall_seconds"]
    bad = [r for r in rows if r["status"] == "error"]
    assert len(bad) == 2 and all("unlucky point" in r["error"] for r in bad)
    assert all(r["bad_debt.total"] is None for r in bad)
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        assert r["bad_debt.total"] == r["clearing.loss_absorption.insurance_fund"] * 0.5 + r["seed"]
        assert r["run.regime"] == r["margin"]
        assert json.loads(r["cascades.by_generation"]) == [{"generation": 0, "count": r["seed"]}]
        assert r["flag"] is (r["seed"] == 0)
    assert pq.read_table(tmp_path / "out.parquet").equals(table)
    assert len(Rows(parts_dir(tmp_path / "out.parquet"))) == 8


def _without_wall(table):
    return table.drop_columns(["wall_seconds"])


def drop_rows(parts: Path, run_ids) -> None:
    """As if those runs never finished: their lines taken out of the folder's segments."""
    gone = {f'"run_id": "{r}"' for r in run_ids}
    for segment in parts.glob("rows-*.jsonl"):
        lines = segment.read_text().splitlines(keepends=True)
        segment.write_text("".join(ln for ln in lines if not any(g in ln for g in gone)))


def test_resume_runs_only_what_is_missing(tmp_path, monkeypatch):
    path = write_sweep(tmp_path, GRID)
    full = sweep(path, workers=2, progress=False, runner=RUNNER)
    parts = parts_dir(tmp_path / "out.parquet")
    drop_rows(parts, [run_id for run_id, _ in sorted(Rows(parts).items())[:3]])
    (tmp_path / "out.parquet").unlink()
    log = tmp_path / "calls.log"
    monkeypatch.setenv("CLEARSIM_TEST_RUN_LOG", str(log))
    resumed = sweep(path, workers=2, resume=True, progress=False, runner=RUNNER)
    assert len(log.read_text().splitlines()) == 3
    assert _without_wall(resumed).equals(_without_wall(full))
    # resuming a finished sweep runs nothing; without resume everything runs again
    log.unlink()
    sweep(path, workers=1, resume=True, progress=False, runner=RUNNER)
    assert not log.exists()
    with pytest.raises(OutputFolderError, match="earlier sweep.s table; pass --resume to continue it or --force"):
        sweep(path, workers=2, resume=False, progress=False, runner=RUNNER)
    assert not log.exists()
    sweep(path, workers=2, resume=False, force=True, progress=False, runner=RUNNER)
    assert len(log.read_text().splitlines()) == 8


def test_a_file_put_at_the_output_while_the_sweep_runs_is_left_and_resume_writes_the_table(tmp_path, monkeypatch):
    """The output is checked again right before the table's rename (a sweep can run for hours): a
    file put there meanwhile is not replaced, the rows stay, and --resume writes the table once it
    is moved away, running nothing again."""
    out = tmp_path / "out.parquet"
    path = write_sweep(tmp_path, GRID)
    monkeypatch.setenv("CLEARSIM_TEST_PUT", f"{out}:")
    with pytest.raises(OutputFolderError, match="not written by a clearsim sweep -- put there while the sweep "
                                                "ran.*kept in .*out.parquet.parts.*--resume"):
        sweep(path, workers=2, progress=False, runner=RUNNER)
    assert out.read_bytes() == b"the user's own notes"
    assert len(Rows(parts_dir(out))) == 8
    assert not [f for f in tmp_path.iterdir() if ".tmp-" in f.name]  # no half-written table left
    monkeypatch.delenv("CLEARSIM_TEST_PUT")
    out.rename(tmp_path / "notes.txt")
    log = tmp_path / "calls.log"
    monkeypatch.setenv("CLEARSIM_TEST_RUN_LOG", str(log))
    table = sweep(path, workers=1, resume=True, progress=False, runner=RUNNER)
    assert not log.exists() and table.num_rows == 8
    assert pq.read_table(out).num_rows == 8


def test_another_sweeps_table_put_at_the_output_is_replaced_only_with_force(tmp_path, monkeypatch):
    """The control: the same re-check refuses what the start would have refused (another sweep's table,
    where there was none to replace) and lets through what it allows (--force)."""
    earlier = tmp_path / "earlier.parquet"
    (tmp_path / "o").mkdir()
    other = write_sweep(tmp_path / "o", GRID)
    sweep(other, workers=1, progress=False, runner=RUNNER, out=earlier)
    out = tmp_path / "out.parquet"
    path = write_sweep(tmp_path, GRID, seeds=1)
    monkeypatch.setenv("CLEARSIM_TEST_PUT", f"{out}:{earlier}")
    with pytest.raises(OutputFolderError, match="holds an earlier sweep's table -- put there while the sweep ran"):
        sweep(path, workers=1, progress=False, runner=RUNNER)
    assert out.read_bytes() == earlier.read_bytes()
    out.unlink()
    table = sweep(path, workers=1, force=True, progress=False, runner=RUNNER)  # lands again, then replaced
    assert table.num_rows == 4 and pq.read_table(out).num_rows == 4


def test_resume_reruns_rows_whose_config_changed(tmp_path, monkeypatch):
    path = write_sweep(tmp_path, GRID, seeds=1)
    sweep(path, workers=1, progress=False, runner=RUNNER)
    spec = yaml.safe_load(path.read_text())
    spec["overrides"] = {"duration": 300.0}
    path.write_text(yaml.safe_dump(spec))
    log = tmp_path / "calls.log"
    monkeypatch.setenv("CLEARSIM_TEST_RUN_LOG", str(log))
    table = sweep(path, workers=1, resume=True, progress=False, runner=RUNNER)
    assert len(log.read_text().splitlines()) == 4 and table.num_rows == 4


def _sweep_in_a_subprocess(tmp_path, delay: str, stderr: int, **env_extra: str
                           ) -> tuple[Path, subprocess.Popen, Path]:
    """(sweep file, the process running a 12-row sweep with ``delay`` s per run in its own process
    group, the folder its finished rows appear in); ``env_extra``: more of the runner's switches."""
    path = write_sweep(tmp_path, {"clearing.loss_absorption.insurance_fund": [float(x) for x in range(100, 106)]},
                       seeds=2)
    here = Path(__file__).parent
    # Ctrl-C as a terminal delivers it: a driver started from a shell's background job (CI under
    # nohup ... &) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    script = textwrap.dedent(f"""
        import signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path.insert(0, {str(here)!r})
        from sim.experiment.sweep import sweep
        sweep({str(path)!r}, workers=2, progress=False, runner={RUNNER!r})
    """)
    env = dict(os.environ, CLEARSIM_TEST_DELAY=delay, **env_extra)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=stderr)
    return path, proc, parts_dir(tmp_path / "out.parquet")


def _wait_for_rows(parts: Path, n: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and len(Rows(parts)) < n:
        time.sleep(0.05)


def test_interrupted_sweep_resumes_to_every_row_once(tmp_path, monkeypatch):
    path, proc, parts = _sweep_in_a_subprocess(tmp_path, "0.4", subprocess.DEVNULL)
    try:
        _wait_for_rows(parts, 3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep's own process group: driver and its workers
        proc.wait()
    finished = len(Rows(parts))
    assert 3 <= finished < 12, finished
    assert not (tmp_path / "out.parquet").exists()
    log = tmp_path / "calls.log"
    monkeypatch.setenv("CLEARSIM_TEST_RUN_LOG", str(log))
    resumed = sweep(path, workers=2, resume=True, progress=False, runner=RUNNER)
    assert len(log.read_text().splitlines()) == 12 - finished
    assert resumed.num_rows == 12 and len(set(resumed.column("run_id").to_pylist())) == 12
    fresh = sweep(path, workers=2, progress=False, runner=RUNNER, out=tmp_path / "fresh.parquet")
    assert _without_wall(resumed).equals(_without_wall(fresh))


@pytest.mark.slow
def test_real_episode_sweep(tmp_path):
    """Two short real episodes through the default runner: ok rows with the summary's metrics."""
    from sim.experiment.config import PACKAGED_DEFAULT

    spec = {"name": "real", "base": str(PACKAGED_DEFAULT), "overrides": {"duration": 120.0, "paths.shocks": []},
            "grid": {"clearing.loss_absorption.insurance_fund": [100000.0]}, "seeds": 2,
            "output": str(tmp_path / "real.parquet")}
    table = sweep(spec, workers=2, progress=False)
    rows = table.to_pylist()
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
    assert {"bad_debt.total", "cascades.amplification", "margin.im_over_gross"} <= set(table.column_names)


def test_ctrl_c_stops_promptly_and_keeps_finished_rows(tmp_path):
    """Ctrl-C with two runs in flight that would take 600 s each: the driver stops without waiting
    for them (the 60 s guard is a hang guard, ten times shorter than the runs, not a speed bar)."""
    log = tmp_path / "calls.log"
    path, proc, parts = _sweep_in_a_subprocess(tmp_path, "0", subprocess.PIPE, CLEARSIM_TEST_RUN_LOG=str(log),
                                               CLEARSIM_TEST_HANG_AFTER="2")
    try:
        _wait_for_rows(parts, 2)
        deadline = time.time() + 120
        while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 4):
            time.sleep(0.05)  # both workers are inside a hanging run now
        assert len(log.read_text().splitlines()) == 4
        proc.send_signal(signal.SIGINT)  # the driver only, as a terminal's Ctrl-C would reach it first
        _out, err = proc.communicate(timeout=60)  # raises if the driver waits for the in-flight runs
    finally:
        with contextlib.suppress(ProcessLookupError):  # the driver and any worker it left behind
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(Rows(parts)) == 2  # the finished rows are kept; the abandoned runs left none
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err
    assert not (tmp_path / "out.parquet").exists()
    table = sweep(path, workers=2, resume=True, progress=False, runner=RUNNER)
    assert table.num_rows == 12


def test_sweep_never_removes_a_rows_folder_or_table_it_did_not_write(tmp_path):
    """Regression (issue 14): without --resume the ``.parts`` folder was removed whatever it held."""
    path = write_sweep(tmp_path, GRID, seeds=1)
    parts = parts_dir(tmp_path / "out.parquet")
    parts.mkdir()
    (parts / "mine.txt").write_text("keep")
    for resume, force in ((False, False), (False, True), (True, True)):
        with pytest.raises(OutputFolderError, match="out.parquet.parts: exists and was not written by clearsim"):
            sweep(path, workers=1, resume=resume, force=force, progress=False, runner=RUNNER)
    assert (parts / "mine.txt").read_text() == "keep"
    (parts / "mine.txt").unlink()
    parts.rmdir()
    (tmp_path / "out.parquet").write_text("a user's file")
    with pytest.raises(OutputFolderError, match="not written by a clearsim sweep"):
        sweep(path, workers=1, force=True, progress=False, runner=RUNNER)
    assert (tmp_path / "out.parquet").read_text() == "a user's file"


def test_resume_adds_rows_only_to_an_earlier_sweeps_folder(tmp_path):
    """--resume adds files to the rows folder: another clearsim command's folder at that name (a
    reverse stress search's episodes) is refused with its reason and left as it was."""
    from sim.experiment.outdir import write_marker

    path = write_sweep(tmp_path, GRID, seeds=1)
    parts = parts_dir(tmp_path / "out.parquet")
    parts.mkdir()
    write_marker(parts, "reverse-stress-parts")
    (parts / "episode.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in parts.iterdir()}
    with pytest.raises(OutputFolderError, match="out.parquet.parts: holds another clearsim command's results"):
        sweep(path, workers=1, resume=True, progress=False, runner=RUNNER)
    assert {p.name: p.read_bytes() for p in parts.iterdir()} == before
    assert not (tmp_path / "out.parquet").exists()


def test_a_killed_worker_fails_only_its_own_run_and_resume_reruns_it(tmp_path, monkeypatch, capsys):
    """Fault injection (issue 14): one worker is killed with SIGKILL mid-sweep. Before the fix every
    remaining run became a BrokenProcessPool error row, the CLI exited 0, and --resume re-ran none."""
    funds = [float(x) for x in range(100, 106)]
    path = write_sweep(tmp_path, {"clearing.loss_absorption.insurance_fund": funds}, seeds=2)
    monkeypatch.setenv("CLEARSIM_TEST_KILL_ONCE", f"102.0/1:{tmp_path / 'killed.flag'}")
    monkeypatch.setenv("CLEARSIM_TEST_DELAY", "0.05")
    log = tmp_path / "calls.log"
    monkeypatch.setenv("CLEARSIM_TEST_RUN_LOG", str(log))
    table = sweep(path, workers=2, progress=False, runner=RUNNER)
    rows = {(r["clearing.loss_absorption.insurance_fund"], r["seed"]): r for r in table.to_pylist()}
    assert len(rows) == 12 and (tmp_path / "killed.flag").exists()
    failed = {k: r for k, r in rows.items() if r["status"] != "ok"}
    assert list(failed) == [(102.0, 1)], {k: r["error"] for k, r in failed.items()}
    assert "infrastructure failure: the worker process" in failed[(102.0, 1)]["error"]
    assert "signal 9" in failed[(102.0, 1)]["error"]
    # every run started, the killed one once; at most the one run in flight beside it started twice
    started = log.read_text().splitlines()
    assert set(started) == {f"{f}/{s}" for f in funds for s in (0, 1)} and started.count("102.0/1") == 1
    assert len(started) <= 13
    monkeypatch.setenv("CLEARSIM_TEST_KILL_ONCE", "")
    log.unlink()
    resumed = sweep(path, workers=2, resume=True, progress=False, runner=RUNNER)
    assert log.read_text().splitlines() == ["102.0/1"]  # only the infrastructure failure ran again
    assert resumed.num_rows == 12 and len(set(resumed.column("run_id").to_pylist())) == 12
    assert set(resumed.column("status").to_pylist()) == {"ok"}
    fresh = sweep(path, workers=2, progress=False, runner=RUNNER, out=tmp_path / "fresh.parquet")
    assert _without_wall(resumed).equals(_without_wall(fresh))


def test_a_worker_death_removes_only_its_pool_files_from_the_running_folder(tmp_path, monkeypatch):
    """``running`` is the caller's folder: after a breakage only the pool's ``<pid>`` files go."""
    from sim.experiment import sweep as sw

    path = write_sweep(tmp_path, {"clearing.loss_absorption.insurance_fund": [100.0, 101.0]}, seeds=1)
    monkeypatch.setenv("CLEARSIM_TEST_KILL_ONCE", f"101.0/0:{tmp_path / 'killed.flag'}")
    _cfg, context, tasks = sw._plan(path, RUNNER)
    running = tmp_path / "running"
    running.mkdir()
    (running / "keep.txt").write_text("keep")
    rows: list[dict] = []
    sw.execute(tasks, "local", 2, rows.append, running=running, shared=context)
    assert (tmp_path / "killed.flag").exists() and len(rows) == 2
    assert (running / "keep.txt").read_text() == "keep"


def _wait_for(path: Path) -> None:
    """Poll until ``path`` exists (sequencing two workers; the test's own timeout bounds it)."""
    while not path.exists():
        time.sleep(0.01)


def idle_death_runner(config):
    """Two runs on two workers (``CLEARSIM_TEST_IDLE_DEATH`` = "<folder>:<who dies>"). Run 100/0 ("A")
    writes its pid and waits until run 101/0 ("B") has started, so they are on different workers;
    B waits until the driver has taken A's row ("A.delivered", written by the test's ``on_done``),
    then, once, kills A's now idle worker ("idle") or its own ("self"), and waits for the broken
    pool to stop it. B's second attempt returns."""
    folder, who = os.environ["CLEARSIM_TEST_IDLE_DEATH"].split(":")
    folder = Path(folder)
    fund = config.clearing.loss_absorption.insurance_fund
    with open(folder / "started.log", "a") as fh:
        fh.write(f"{fund}\n")
    if fund == 100.0:
        (folder / "A.pid").write_text(str(os.getpid()))
        _wait_for(folder / "B.pid")
    elif not (folder / "killed.flag").exists():
        (folder / "B.pid").write_text(str(os.getpid()))
        _wait_for(folder / "A.delivered")
        (folder / "killed.flag").write_text("killed")
        victim = int((folder / "A.pid").read_text()) if who == "idle" else os.getpid()
        os.kill(victim, signal.SIGKILL)
        while True:  # in flight until the pool, broken by the death, terminates this worker
            time.sleep(0.01)
    return {"bad_debt": {"total": fund}}


def _idle_death(tmp_path, monkeypatch, who: str) -> tuple[dict[float, dict], list[str]]:
    from sim.experiment import sweep as sw

    path = write_sweep(tmp_path, {"clearing.loss_absorption.insurance_fund": [100.0, 101.0]}, seeds=1)
    monkeypatch.setenv("CLEARSIM_TEST_IDLE_DEATH", f"{tmp_path}:{who}")
    _cfg, context, tasks = sw._plan(path, "test_sweep:idle_death_runner")
    running = tmp_path / "running"
    running.mkdir()
    rows: dict[float, dict] = {}

    def on_done(row):
        fund = row["point"]["clearing.loss_absorption.insurance_fund"]
        assert fund not in rows, "a row delivered twice"
        rows[fund] = row
        if fund == 100.0:
            (tmp_path / "A.delivered").write_text("yes")

    sw.execute(tasks, "local", 2, on_done, running=running, shared=context)
    return rows, (tmp_path / "started.log").read_text().split()


def test_an_idle_worker_that_dies_blames_no_finished_run(tmp_path, monkeypatch):
    """Review finding: a pool worker that dies idle, after its run was delivered, left a file naming
    that finished run, which was taken as the culprit, so the run in flight went again without the
    breakage being counted. Now the worker's file goes when its run ends and only in-flight runs are
    suspects: no culprit, the in-flight run goes again and both rows are ok."""
    rows, started = _idle_death(tmp_path, monkeypatch, "idle")
    assert sorted(rows) == [100.0, 101.0] and all(r["status"] == "ok" for r in rows.values()), rows
    assert started.count("100.0") == 1 and started.count("101.0") == 2


def test_control_a_worker_that_dies_in_flight_blames_its_run(tmp_path, monkeypatch):
    """Control for the test above: the same two runs, but B's worker dies under it. B is the culprit
    (an infrastructure error naming the signal); A, delivered before, is untouched."""
    rows, started = _idle_death(tmp_path, monkeypatch, "self")
    assert rows[100.0]["status"] == "ok"
    assert rows[101.0]["status"] == "error" and rows[101.0]["infrastructure"]
    assert "died (signal 9) during this run" in rows[101.0]["error"]
    assert started.count("100.0") == 1 and started.count("101.0") == 1


def test_culprits_are_only_in_flight_runs(tmp_path):
    """The blame itself, from the files workers leave: a dead worker's file naming a run that is not
    in flight (stale) names no culprit; one naming an in-flight run does; a worker the broken pool
    terminated (SIGTERM) or that exited cleanly is never the culprit."""
    from sim.experiment.executors import culprits

    (tmp_path / "11").write_text("finished-run")
    (tmp_path / "12").write_text("in-flight-run")
    (tmp_path / "13").write_text("other-in-flight")
    assert culprits({11: -signal.SIGKILL}, tmp_path, {"in-flight-run"}) == {}
    blamed = culprits({11: -signal.SIGKILL, 12: -signal.SIGKILL, 13: -signal.SIGTERM, 14: 0}, tmp_path,
                      {"in-flight-run", "other-in-flight"})
    assert list(blamed) == ["in-flight-run"] and "process 12 died (signal 9)" in blamed["in-flight-run"]
    assert culprits({12: 3}, tmp_path, {"in-flight-run"})["in-flight-run"].endswith("(exit status 3) during this run\n")


def test_a_sweep_keeps_no_worker_files_in_its_rows_folder(tmp_path, monkeypatch):
    """The local pool's workers name their runs in a temporary folder of the sweep's own, never in
    ``<parts>/``: nothing there outlives the sweep, so an interrupted sweep's files cannot blame a
    resumed sweep's run (a worker of it may get one of their pids), and a ``.running`` folder an
    earlier version left is neither read nor removed."""
    path = write_sweep(tmp_path, {"clearing.loss_absorption.insurance_fund": [100.0]}, seeds=1)
    sweep(path, workers=1, progress=False, runner=RUNNER)
    parts = parts_dir(tmp_path / "out.parquet")
    assert not (parts / ".running").exists()
    old = parts / ".running"
    old.mkdir()
    (old / "999999").write_text("some-run-of-before")
    drop_rows(parts, [run_id_of({'clearing.loss_absorption.insurance_fund': 100.0}, 0)])
    table = sweep(path, workers=1, resume=True, progress=False, runner=RUNNER)
    assert table.num_rows == 1 and table.column("status").to_pylist() == ["ok"]
    assert (old / "999999").read_text() == "some-run-of-before"


def test_retry_errors_reruns_every_failed_row_and_the_cli_exits_non_zero(tmp_path, monkeypatch, capsys):
    import sim.experiment.api
    from sim.experiment.cli import EXIT_RUNS_FAILED, main

    path = write_sweep(tmp_path, GRID, seeds=2)
    table = sweep(path, workers=1, progress=False, runner=RUNNER)
    assert table.column("status").to_pylist().count("error") == 2  # the unlucky point: a run failure
    log = tmp_path / "calls.log"
    monkeypatch.setenv("CLEARSIM_TEST_RUN_LOG", str(log))
    sweep(path, workers=1, resume=True, progress=False, runner=RUNNER)
    assert not log.exists()  # a run's own failure is kept on a plain resume
    sweep(path, workers=1, resume=True, retry_errors=True, progress=False, runner=RUNNER)
    assert sorted(log.read_text().splitlines()) == ["13.0/1", "13.0/1"]
    # the CLI: a sweep with failed rows exits non-zero and says how to re-run them
    monkeypatch.setattr(sim.experiment.api, "sweep", lambda *a, **k: table)
    assert main(["sweep", str(path), "--resume", "--retry-errors"]) == EXIT_RUNS_FAILED
    assert "2 of 8 runs failed" in capsys.readouterr().err


def test_rerunning_an_interrupted_sweep_without_resume_asks_for_resume_or_force(tmp_path):
    path = write_sweep(tmp_path, GRID, seeds=1)
    sweep(path, workers=1, progress=False, runner=RUNNER)
    (tmp_path / "out.parquet").unlink()  # as if interrupted before the table was written
    rows = dict(Rows(parts_dir(tmp_path / "out.parquet")).items())
    with pytest.raises(OutputFolderError, match="pass --resume to continue that sweep or --force to start it over"):
        sweep(path, workers=1, progress=False, runner=RUNNER)
    assert dict(Rows(parts_dir(tmp_path / "out.parquet")).items()) == rows
    assert sweep(path, workers=1, force=True, progress=False, runner=RUNNER).num_rows == 4


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """A row file (or report) whose write fails -- disk full, say -- leaves the folder as it was."""
    import sim.experiment.io as sio

    target = tmp_path / "row.json"
    target.write_text("old")

    def full_disk(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sio.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        sio.write_atomic(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["row.json"] and target.read_text() == "old"


def test_a_pool_task_leaves_no_worker_file_whether_it_returns_or_raises(tmp_path):
    """A worker's ``<pid>`` file names its run only while the run is on: gone after a row and after
    a raise alike (a raise is delivered as an error row), so an idle worker's death blames no run."""
    from sim.experiment.executors import _pool_task, _Spec

    def fn(task: dict) -> dict:
        assert (tmp_path / str(os.getpid())).read_text() == task["run_id"]  # named while on
        if task["raise"]:
            raise RuntimeError("boom")
        return {"run_id": task["run_id"]}

    spec = _Spec(fn, lambda t: t["run_id"], None, False, None, {})
    assert _pool_task({"run_id": "a", "raise": False}, str(tmp_path), spec) == {"run_id": "a"}
    with pytest.raises(RuntimeError):
        _pool_task({"run_id": "b", "raise": True}, str(tmp_path), spec)
    assert list(tmp_path.iterdir()) == []


def test_resume_keeps_the_rows_folders_marker_as_it_is(tmp_path):
    """Resuming does not rewrite a correct marker (a rewrite cut short by a crash would leave the
    folder unresumable): same inode, same modification time, same bytes."""
    from sim.experiment.outdir import MARKER, marker_kind, write_marker
    from sim.experiment.sweep import PARTS_KIND, _claim_outputs

    parts = tmp_path / "out.parquet.parts"
    parts.mkdir()
    write_marker(parts, PARTS_KIND)
    marker = parts / MARKER
    os.utime(marker, ns=(1_000_000_000, 1_000_000_000))  # a time no rewrite could give it
    before = marker.stat()
    _claim_outputs(tmp_path / "out.parquet", parts, resume=True, force=False)
    after = marker.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert marker.read_text(encoding="utf-8") and marker_kind(parts) == PARTS_KIND


@pytest.mark.parametrize("kind", ["reverse-stress-parts", "run", None])
def test_force_removes_only_an_earlier_sweeps_rows_folder(tmp_path, kind):
    """``--force`` replaces an earlier sweep's rows; a ``<out>.parts`` folder another clearsim command
    wrote (its marker names another kind), or one holding nothing but clearsim folders, is left as it is."""
    from sim.experiment.outdir import write_marker
    from sim.experiment.sweep import PARTS_KIND, _claim_outputs

    parts = tmp_path / "out.parquet.parts"
    parts.mkdir()
    if kind is None:  # nothing but a clearsim folder inside: check_folder calls that clearsim's
        (parts / "a-run").mkdir()
        write_marker(parts / "a-run", "run")
        keep = parts / "a-run" / "summary.json"
    else:
        write_marker(parts, kind)
        keep = parts / "summary.json"
    keep.write_text("keep")
    with pytest.raises(OutputFolderError, match="--force replaces only this command's own earlier rows"):
        _claim_outputs(tmp_path / "out.parquet", parts, resume=False, force=True)
    assert keep.read_text() == "keep"
    # the control: an earlier sweep's rows folder is replaced
    other = tmp_path / "b.parquet.parts"
    other.mkdir()
    write_marker(other, PARTS_KIND)
    (other / "rows-000001.jsonl").write_text("{}\n")
    _claim_outputs(tmp_path / "b.parquet", other, resume=False, force=True)
    assert sorted(p.name for p in other.iterdir()) == [".clearsim-output"]


def test_force_refuses_an_earlier_sweeps_rows_folder_holding_a_file_it_did_not_write(tmp_path):
    """The rows folder is removed file by file, only what clearsim writes there: a note the user put
    in an earlier sweep's rows folder makes ``--force`` refuse, and nothing is removed."""
    from sim.experiment.outdir import write_marker
    from sim.experiment.sweep import PARTS_KIND, _claim_outputs

    parts = tmp_path / "out.parquet.parts"
    parts.mkdir()
    write_marker(parts, PARTS_KIND)
    ours = ["rows-000001.jsonl", "a1b2.json", ".a1b2.json.tmp-123-0123abcd"]  # a segment, an old-layout row, a temp
    for name in ours:
        (parts / name).write_text("{}\n")
    (parts / ".running").mkdir()
    (parts / ".running" / "4242").write_text("a1b2")  # the old layout's worker file
    (parts / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match=r"also holds files clearsim did not write \(notes.txt\)"):
        _claim_outputs(tmp_path / "out.parquet", parts, resume=False, force=True)
    assert sorted(p.name for p in parts.iterdir()) == sorted([".clearsim-output", ".running", "notes.txt", *ours])
    # the control: without the user's file the folder is replaced, the old layout's files included
    (parts / "notes.txt").unlink()
    _claim_outputs(tmp_path / "out.parquet", parts, resume=False, force=True)
    assert sorted(p.name for p in parts.iterdir()) == [".clearsim-output"]
