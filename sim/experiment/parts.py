"""Durable rows of a sweep or a reverse stress search, in ``<output>.parts/``.

Each session appends its rows as JSON lines to a segment of its own, ``rows-<n>.jsonl`` (``n`` one
more than the folder's last, so later segments are later sessions; reading, a run's later row
replaces its earlier one). A row reaches the operating system as it is written (one ``write``: a
killed driver loses nothing it wrote), and the segment is fsynced every ``ROWS_PER_SYNC`` rows,
``SECONDS_PER_SYNC`` after the first row written since the last sync (a timer: the driver may wait
minutes for the next row), and when it is closed (also on an exception or Ctrl-C). One fsynced
file per row cost ~0.5 ms a row on the development machine's disk (two fsyncs: the file and its
folder), and far more on slow or network disks, in the driver loop that hands out the runs.

The resume guarantee: no finished row stays unsynced longer than ~``SECONDS_PER_SYNC`` (plus the
fsync), so a machine crash (power loss, kernel panic) loses at most the rows written since the last
sync -- fewer than ``ROWS_PER_SYNC``, all written within the last ~``SECONDS_PER_SYNC``; ``resume``
runs those again -- and never corrupts a row: a segment is only appended to, so synced
lines stay as they were, and an unsynced tail that comes back torn or zero-filled is not a whole
line holding one JSON object with a run id, so it is skipped.

A folder of the layout before segments (one ``<run_id>.json`` per row) is read too, its rows the
oldest, so a sweep or search interrupted then resumes rather than re-running every finished run.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sim.experiment.io import fsync_dir

__all__ = ["ROWS_PER_SYNC", "SECONDS_PER_SYNC", "PartWriter", "Rows", "written_here"]

ROWS_PER_SYNC = 64
SECONDS_PER_SYNC = 1.0
_SEGMENT = re.compile(r"rows-(\d+)\.jsonl")
_TEMP = re.compile(r"\..+\.tmp-\d+-[0-9a-f]{8}")  # what ``io.write_atomic`` leaves if killed mid-write


def written_here(entry: Path) -> bool:
    """Whether ``entry`` of a rows folder is a kind of file clearsim writes there: a segment, a row
    of the layout before segments (``<run_id>.json``), a temporary file of an atomic write cut
    short, or the ``.running`` folder of worker pid files that sweeps of that layout kept."""
    name = entry.name
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return name == ".running" and all(p.name.isdigit() and p.is_file() and not p.is_symlink()
                                           for p in entry.iterdir())
    return bool(_SEGMENT.fullmatch(name) or _TEMP.fullmatch(name)) or (name.endswith(".json") and not name.startswith("."))


def _segments(parts: Path) -> list[Path]:
    """The folder's segments, oldest first."""
    if not parts.is_dir():
        return []
    found = ((int(m.group(1)), p) for p in parts.iterdir() if (m := _SEGMENT.fullmatch(p.name)))
    return [p for _, p in sorted(found)]


def _start_timer(seconds: float, fn: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(seconds, fn)
    timer.daemon = True  # never holds the interpreter's exit (the close cancels it anyway)
    timer.start()
    return timer


class PartWriter:
    """Appends rows to a new segment of ``parts`` (see the module docstring); a context manager.

    ``timer(seconds, fn)`` arms the idle sync: it runs ``fn`` in ``seconds`` unless the handle it
    returns is cancelled (a daemon ``threading.Timer``; tests pass a fake)."""

    def __init__(self, parts: Path, rows_per_sync: int = ROWS_PER_SYNC,
                 seconds_per_sync: float = SECONDS_PER_SYNC,
                 timer: Callable[[float, Callable[[], None]], Any] = _start_timer) -> None:
        existing = _segments(parts)
        number = 1
        if existing:
            last = _SEGMENT.fullmatch(existing[-1].name)
            assert last is not None  # _segments lists only the names _SEGMENT matches
            number = int(last.group(1)) + 1
        self.path = parts / f"rows-{number:06d}.jsonl"
        self.rows_per_sync, self.seconds_per_sync = rows_per_sync, seconds_per_sync
        self._fh: Any = None  # opened at the first row: a session that writes none leaves no segment
        self._unsynced = 0
        self._synced_at = time.monotonic()
        # the driver may sit in a wait for minutes (every worker on a long run): rows it wrote before
        # must not wait for the next row to be synced, so the first unsynced row arms a timer that
        # syncs them; the lock keeps its thread's sync and the driver's writes apart
        self._lock = threading.Lock()
        self._timer_factory = timer
        self._timer: Any = None
        self._failed: BaseException | None = None  # a timed sync's error, raised in the driver

    def write(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Append ``row``; returns it as it will be read back (a tuple becomes a list, a non-JSON value
        its text), so fresh and resumed rows are the same values."""
        text = json.dumps(row, sort_keys=True, allow_nan=False, default=str)  # escapes newlines: one line
        with self._lock:
            self._raise_failed()
            if self._fh is None:
                self._fh = open(self.path, "xb")
                fsync_dir(self.path.parent)  # the segment's name durable, before rows count on it
            self._fh.write(text.encode("utf-8") + b"\n")
            self._fh.flush()
            self._unsynced += 1
            if (self._unsynced >= self.rows_per_sync
                    or time.monotonic() - self._synced_at >= self.seconds_per_sync):
                self._sync()
            elif self._timer is None:
                self._timer = self._timer_factory(self.seconds_per_sync, self._timed_sync)
        return json.loads(text)

    def _sync(self) -> None:
        """Sync what is pending (the lock held) and disarm the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fh is not None and self._unsynced:
            os.fsync(self._fh.fileno())
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def _timed_sync(self) -> None:
        """The timer's thread: sync the rows written since the timer was armed."""
        with self._lock:
            if self._fh is None:  # closed meanwhile
                return
            try:  # (disarms whatever timer is armed now: a later one's rows are synced here too)
                self._sync()
            except BaseException as e:  # noqa: BLE001 -- nobody would see it in this thread
                self._failed = e

    def _raise_failed(self) -> None:
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:  # (no timer is armed without an open segment: the first row arms it)
                try:
                    self._sync()
                finally:
                    self._fh.close()
                    self._fh = None
            self._raise_failed()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _row(line: bytes) -> dict[str, Any] | None:
    """The row on a whole line, or None for a torn, zero-filled or foreign one."""
    if not line.endswith(b"\n"):
        return None
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("run_id"), str) else None


def _legacy(parts: Path) -> list[Path]:
    """The rows of the layout before segments, one ``<run_id>.json`` per row (written atomically), that
    a sweep or search interrupted then may have left: read, so resuming it does not re-run them."""
    return sorted(parts.glob("*.json")) if parts.is_dir() else []


class Rows:
    """Each run's latest row in ``parts`` (none for a missing folder), read from disk when asked:
    the index holds where a row is, never the row. Rows of the old one-file-per-row layout count as
    the oldest (a segment's row of the same run replaces one)."""

    def __init__(self, parts: Path) -> None:
        self._where: dict[str, tuple[int, int, int]] = {}  # run id -> (file, offset, length)
        self._files: list[Path] = []
        for path in _legacy(parts):
            try:
                data = path.read_bytes()
                row = json.loads(data)
            except (OSError, ValueError):
                continue  # unreadable: that run goes again
            if isinstance(row, dict) and row.get("run_id") == path.stem:  # its own row, not a stray file
                self._where[path.stem] = (len(self._files), 0, len(data))
                self._files.append(path)
        for segment in _segments(parts):
            i = len(self._files)
            self._files.append(segment)
            with open(segment, "rb") as fh:
                offset = 0
                for line in fh:
                    row = _row(line)
                    if row is not None:
                        self._where[row["run_id"]] = (i, offset, len(line))
                    offset += len(line)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._where

    def __getitem__(self, run_id: str) -> dict[str, Any]:
        i, offset, length = self._where[run_id]
        with open(self._files[i], "rb") as fh:
            fh.seek(offset)
            return json.loads(fh.read(length))

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(run id, row), one row at a time."""
        for run_id in list(self._where):
            yield run_id, self[run_id]
