"""Output-folder safety (issue 14): clearsim never removes what it did not write.

Regressions: ``clearsim run ep.yaml --out precious`` deleted the folder's contents, and ``--out .``
emptied the working directory (the config included). Each test checks the files survive, byte
for byte, and that the refusal names the folder and the reason.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sim.experiment.cli import EXIT_BAD_INPUT, main
from sim.experiment.outdir import MARKER, OutputFolderError, check_folder, check_table_file, write_marker
from sim.experiment.results import write_comparison, write_results
from test_metrics import make_config, make_tables


@pytest.fixture(scope="module")
def run():
    from sim.experiment.metrics import summarise

    config, tables = make_config(), make_tables()
    return config, tables, summarise(config, tables, {"events": 10})


def _precious(folder):
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.csv").write_text("1,2,3")
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_clearsim_did_not_write_is_refused_even_with_force(tmp_path, run, force):
    config, tables, summary = run
    before = _precious(tmp_path / "precious")
    with pytest.raises(OutputFolderError, match=r"precious: exists and was not written by clearsim"):
        write_results(tmp_path / "precious", config, tables, summary, report=False, force=force)
    with pytest.raises(OutputFolderError, match=r"precious: exists and was not written by clearsim"):
        write_comparison(tmp_path / "precious", config, {"standard": (summary, tables)}, report=False, force=force)
    assert _snapshot(tmp_path / "precious") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]  # no temp folder left


def test_the_working_directory_and_its_parents_are_refused(tmp_path, run, monkeypatch):
    config, tables, summary = run
    work = tmp_path / "work"
    before = _precious(work)
    write_marker(work, "run")  # even one that looks like clearsim's own
    before = _snapshot(work)
    monkeypatch.chdir(work)
    for target in (".", "..", str(work)):
        with pytest.raises(OutputFolderError, match="is the working directory or one of its parents"):
            write_results(target, config, tables, summary, report=False, force=True)
    assert _snapshot(work) == before


def test_an_empty_folder_or_a_new_one_is_written(tmp_path, run):
    config, tables, summary = run
    (tmp_path / "empty").mkdir()
    for name in ("empty", "new"):
        out = write_results(tmp_path / name, config, tables, summary, report=False, parquet=False)
        assert (out / MARKER).is_file() and (out / "summary.json").is_file()


def test_a_file_or_a_symlink_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="exists and is not a folder"):
        check_folder(tmp_path / "file", force=True)
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(OutputFolderError, match="is a symbolic link"):
        check_folder(tmp_path / "link", force=True)


def test_a_forged_or_unreadable_marker_is_not_clearsims(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / MARKER).write_text("not json")
    (folder / "keep.txt").write_text("x")
    with pytest.raises(OutputFolderError, match="was not written by clearsim"):
        check_folder(folder, force=True)


def test_cli_run_refuses_a_precious_folder_before_running(tmp_path, capsys, monkeypatch):
    before = _precious(tmp_path / "precious")
    import sim.experiment.variants

    def must_not_run(_cfg):
        raise AssertionError("the episode ran before the output folder was checked")

    monkeypatch.setattr(sim.experiment.variants, "run_episode", must_not_run)
    assert main(["run", "--out", str(tmp_path / "precious")]) == EXIT_BAD_INPUT
    assert main(["run", "--out", str(tmp_path / "precious"), "--force"]) == EXIT_BAD_INPUT
    assert main(["compare", "--out", str(tmp_path / "precious"), "--force"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "precious: exists and was not written by clearsim" in err
    assert _snapshot(tmp_path / "precious") == before


def test_cli_run_dot_leaves_the_working_directory(tmp_path, capsys, monkeypatch):
    (tmp_path / "ep.yaml").write_text("name: x\n")
    monkeypatch.chdir(tmp_path)
    import sim.experiment.variants

    monkeypatch.setattr(sim.experiment.variants, "run_episode", lambda _cfg: (_ for _ in ()).throw(AssertionError("ran")))
    assert main(["run", "--out", "."]) == EXIT_BAD_INPUT
    assert "is the working directory" in capsys.readouterr().err
    assert (tmp_path / "ep.yaml").read_text() == "name: x\n"


def test_sweep_table_file_not_written_by_clearsim_is_refused(tmp_path):
    (tmp_path / "notes.parquet").write_text("my notes")
    with pytest.raises(OutputFolderError, match="not written by a clearsim sweep"):
        check_table_file(tmp_path / "notes.parquet", replace=True)
    pq.write_table(pa.table({"a": [1]}), tmp_path / "other.parquet")
    with pytest.raises(OutputFolderError, match="not written by a clearsim sweep"):
        check_table_file(tmp_path / "other.parquet", replace=True)
    assert (tmp_path / "notes.parquet").read_text() == "my notes"


def test_a_folder_holding_only_clearsim_folders_counts_as_clearsims(tmp_path, run):
    """``compare`` writes results/<name>/compare; a later ``run`` to results/<name> is asked for
    --force, not refused as a user's folder -- unless anything else is in there."""
    config, tables, summary = run
    write_comparison(tmp_path / "ep" / "compare", config, {"standard": (summary, tables)}, report=False)
    with pytest.raises(OutputFolderError, match="holds earlier clearsim results"):
        write_results(tmp_path / "ep", config, tables, summary, report=False)
    (tmp_path / "ep" / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="was not written by clearsim"):
        write_results(tmp_path / "ep", config, tables, summary, report=False, force=True)
    assert (tmp_path / "ep" / "notes.txt").read_text() == "mine"


def test_a_command_replaces_even_its_own_earlier_output_only_with_force(tmp_path):
    """A plain re-run never replaces earlier results unasked, its own kind included; only a resumed
    command (``replace_same_kind``) rewrites its own kind without force, and never another command's."""
    from sim.experiment.results import _atomic_folder

    own = tmp_path / "rs"
    own.mkdir()
    write_marker(own, "reverse-stress")
    (own / "summary.json").write_text("old")
    with pytest.raises(OutputFolderError, match="holds earlier clearsim results; pass --force"):
        with _atomic_folder(own, "reverse-stress"):
            pass
    assert (own / "summary.json").read_text() == "old"
    with _atomic_folder(own, "reverse-stress", replace_same_kind=True) as tmp:  # a resumed search
        (tmp / "summary.json").write_text("new")
    assert (own / "summary.json").read_text() == "new"
    with _atomic_folder(own, "reverse-stress", force=True) as tmp:
        (tmp / "summary.json").write_text("newer")
    assert (own / "summary.json").read_text() == "newer"
    other = tmp_path / "run"
    other.mkdir()
    write_marker(other, "run")
    (other / "summary.json").write_text("a run's results")
    with pytest.raises(OutputFolderError, match="holds earlier clearsim results"):
        with _atomic_folder(other, "reverse-stress", replace_same_kind=True):
            pass
    assert (other / "summary.json").read_text() == "a run's results"


def test_write_marker_is_atomic_a_failed_write_keeps_the_old_marker(tmp_path, monkeypatch):
    """A crash mid-write must not leave an empty marker (``check_resume_folder`` would then refuse a
    folder full of synced rows): the marker is written to a temporary file, fsynced and renamed."""
    from sim.experiment.outdir import marker_kind

    write_marker(tmp_path, "sweep-parts")
    before = (tmp_path / MARKER).read_bytes()

    def crash(*args, **kwargs):  # the machine goes down before the new bytes are durable
        raise OSError("crash before fsync")

    def torn_write_text(self, text, *args, **kwargs):  # an in-place write that dies part-way
        with open(self, "w", encoding="utf-8") as fh:
            fh.write(text[: len(text) // 2])
        raise OSError("crash mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    monkeypatch.setattr("pathlib.Path.write_text", torn_write_text)
    with pytest.raises(OSError):
        write_marker(tmp_path, "sweep-parts")
    monkeypatch.undo()
    assert (tmp_path / MARKER).read_bytes() == before
    assert marker_kind(tmp_path) == "sweep-parts"
    assert [p.name for p in tmp_path.iterdir()] == [MARKER]  # no temporary file left behind
