"""Output-folder safety: clearsim replaces only what it wrote itself, and only when asked.

Every results folder clearsim writes (``run``, ``compare``, ``backtest``, ``reverse-stress``, a
sweep's or a reverse stress search's ``.parts`` folder) holds a marker file, ``MARKER``, naming what
wrote it. Before anything runs, the target is checked:

* missing, or an empty folder: written;
* a folder with clearsim's marker (or holding nothing but such folders): replaced only with
  ``force`` (``--force``) -- whichever command wrote it, the same one included: a re-run never
  silently replaces earlier results. The one exception is a resumed command (``--resume``), which
  continues its own earlier output and so may replace a folder of its own kind (as a sweep's
  ``--resume`` replaces its table);
* anything else -- a folder without the marker, a file, a symbolic link, the working directory or
  one of its parents, the filesystem root or the home folder -- is refused, ``force`` or not.

Nothing outside the output folder is ever removed. A sweep's Parquet table is a single file: it is
replaced only if its schema metadata says clearsim wrote it (``TABLE_KEY``), and only with
``force`` (or when resuming the same sweep).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sim.experiment.errors import ConfigError
from sim.experiment.io import write_atomic

__all__ = ["MARKER", "TABLE_KEY", "OutputFolderError", "check_folder", "check_resume_folder", "claim_rows_folder",
           "write_marker", "is_clearsim_folder", "check_table_file", "table_file_problem"]

MARKER = ".clearsim-output"
TABLE_KEY = b"clearsim.sweep"


class OutputFolderError(ConfigError):
    """The output location cannot be used without destroying something clearsim did not write."""


def marker_kind(path: Path) -> str | None:
    """The ``kind`` in ``path``'s clearsim marker (run, compare, backtest, ...), None without one."""
    marker = path / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "clearsim":
        return None
    return str(data.get("kind", ""))


def is_clearsim_folder(path: Path) -> bool:
    return marker_kind(path) is not None


def _protected(target: Path) -> str | None:
    """Why ``target`` may never be replaced, or None."""
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        return "is the working directory or one of its parents"
    if target == Path(target.anchor):
        return "is the filesystem root"
    home = Path(os.path.expanduser("~"))
    if home.is_absolute() and (target == home.resolve() or target in home.resolve().parents):
        return "is the home folder or one of its parents"
    return None


def check_folder(path: str | Path, force: bool = False, what: str = "output folder",
                 hint: str = "pass --force (force=True) to replace them", same_kind: str | None = None) -> Path:
    """Raise ``OutputFolderError`` unless ``path`` may be (re)written; returns its absolute path.
    ``same_kind``: only for a resumed command (``--resume``), which continues its own earlier output --
    a folder whose marker says that kind is then replaced without ``force``; any other clearsim folder
    still needs ``force``. Every other caller leaves it None, so a plain re-run never replaces
    earlier results unasked.

    Call it before running anything (so a refusal costs nothing) and again just before the swap."""
    given = Path(path)
    if given.is_symlink():
        raise OutputFolderError(f"{what} {given}: is a symbolic link; clearsim does not replace links "
                                f"(give the folder it points to, or another name)")
    target = given.absolute().resolve()
    reason = _protected(target)
    if reason is not None:
        raise OutputFolderError(f"{what} {given}: {reason}; choose a new folder for the results")
    if not target.exists():
        return target
    if not target.is_dir():
        raise OutputFolderError(f"{what} {given}: exists and is not a folder; clearsim will not replace it")
    if not any(target.iterdir()):
        return target
    # clearsim's own: its marker, or nothing but clearsim folders (``compare`` writes
    # results/<name>/compare, which leaves results/<name> holding only that)
    ours = is_clearsim_folder(target) or all(
        p.is_dir() and not p.is_symlink() and is_clearsim_folder(p) for p in target.iterdir())
    if not ours:
        raise OutputFolderError(
            f"{what} {given}: exists and was not written by clearsim (no {MARKER} marker); it is left "
            f"untouched -- choose a new folder or empty this one yourself (--force replaces only a previous "
            f"clearsim results folder)")
    if not force and not (same_kind is not None and marker_kind(target) == same_kind):
        raise OutputFolderError(f"{what} {given}: holds earlier clearsim results; {hint}")
    return target


def check_resume_folder(path: str | Path, kind: str, what: str) -> Path:
    """Raise ``OutputFolderError`` unless a resumed command may add to ``path``: it is missing, an
    empty folder, or a folder whose marker says this same command (``kind``) wrote it. Resuming reads
    and adds files but removes none, so anything else -- a user's folder, another clearsim command's
    results, a link or a file -- is refused rather than have our files mixed into it."""
    given = Path(path)
    if given.is_symlink() or (given.exists() and not given.is_dir()):
        return check_folder(given, what=what)  # raises: a link or a file
    target = given.absolute()
    if not target.exists() or not any(target.iterdir()) or marker_kind(target) == kind:
        return target
    found = marker_kind(target)
    reason = (f"holds another clearsim command's results ({found})" if found is not None
              else f"exists and was not written by clearsim (no {MARKER} marker)")
    raise OutputFolderError(f"{what} {given}: {reason}; resuming would add files to it -- it is left "
                            f"untouched: choose another output, or run without --resume")


def claim_rows_folder(path: Path, kind: str, resume: bool, what: str, force: bool = False,
                      hint: str = "pass --force (force=True) to replace them") -> None:
    """A command's rows folder beside its output (a sweep's rows, a reverse stress search's episodes),
    before anything runs: made if missing and marked as ``kind``'s. With ``resume`` it is added to
    (``check_resume_folder``). Without, a non-empty folder is removed only if its marker says this
    same command (``kind``) wrote it and ``force`` is given -- and anything else (a user's folder,
    another command's results, a folder holding only clearsim folders, a link, a file) is refused
    and left as it is, ``force`` or not; it is removed file by file, only what clearsim writes there,
    and one holding anything else is refused. A folder that already has the right marker keeps it
    (a rewrite cut short by a crash would leave it unresumable)."""
    if resume:
        check_resume_folder(path, kind, what=what)
    elif path.is_symlink() or (path.exists() and not path.is_dir()):
        check_folder(path, what=what)  # raises: a link or a file
    elif path.exists() and any(path.iterdir()):
        check_folder(path, force, what=what, hint=hint)
        found = marker_kind(path)
        if found != kind:  # clearsim's, but not this command's rows: never removed
            whose = f"another clearsim command's results ({found})" if found else f"clearsim folders, not {kind}"
            raise OutputFolderError(f"{what} {path}: holds {whose}; --force replaces only this command's own "
                                    f"earlier rows -- it is left untouched: choose another output")
        _remove_rows_folder(path, what)
    path.mkdir(parents=True, exist_ok=True)
    if marker_kind(path) != kind:
        write_marker(path, kind)


def _remove_rows_folder(path: Path, what: str) -> None:
    """Remove an earlier rows folder of this command file by file: only the kinds of file clearsim
    writes there (``parts.written_here``, the marker). Anything else -- a file the user put in it --
    makes it refuse, before anything is removed."""
    from sim.experiment.parts import written_here

    entries = list(path.iterdir())
    foreign = sorted(p.name for p in entries if p.name != MARKER and not written_here(p))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise OutputFolderError(f"{what} {path}: also holds files clearsim did not write ({shown}); it is left "
                                f"untouched -- move them or choose another output")
    for entry in entries:
        if entry.name == MARKER:
            continue
        if entry.is_dir():
            for pid_file in entry.iterdir():
                pid_file.unlink()
            entry.rmdir()
        else:
            entry.unlink()
    (path / MARKER).unlink()  # last: a removal cut short leaves a folder still marked as ours
    path.rmdir()


def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` as clearsim's own (``kind``: run, compare, sweep-parts). Atomically and durably
    (fsync, rename): a marker cut short by a crash would read as no marker, and a resume would then
    refuse a folder full of synced rows."""
    text = json.dumps({"written_by": "clearsim", "kind": kind}, sort_keys=True) + "\n"
    write_atomic(folder / MARKER, text.encode("utf-8"))


def check_table_file(path: str | Path, replace: bool) -> Path:
    """A sweep's Parquet table: refuse to overwrite a file clearsim did not write, or one it did
    unless ``replace`` (``--force`` or ``--resume``)."""
    given = Path(path)
    problem = table_file_problem(given, replace)
    if problem is not None:
        reason, advice = problem
        raise OutputFolderError(f"sweep output {given}: {reason}; {advice}")
    return given.absolute()


def table_file_problem(path: Path, replace: bool) -> tuple[str, str] | None:
    """Why a sweep may not write its table at ``path`` now, and what to do -- or None if it may."""
    target = path.absolute()
    if path.is_symlink():
        return "is a symbolic link", "clearsim does not replace links"
    if not target.exists():
        return None
    if not target.is_file():
        return "exists and is not a file", "clearsim will not replace it"
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(target).metadata or {}
    except Exception:  # noqa: BLE001 -- not Parquet at all: certainly not ours
        meta = {}
    if TABLE_KEY not in meta:
        return ("exists and was not written by a clearsim sweep",
                "it is left untouched -- choose another output file")
    if not replace:
        return "holds an earlier sweep's table", "pass --resume to continue it or --force to replace it"
    return None
