"""Live progress for ``clearsim run``, ``compare`` and ``sweep``: simulated time, events/s, runs done, ETA.

The event loop is not touched: a daemon thread reads the running episodes' clocks and simpy's event
counters a few times a second and updates one rich progress bar. Nothing is scheduled in the
simulation, so results (and the ``events`` count) are the same with or without progress.

Where the episodes run decides where the counters come from:

- in this process (``clearsim run``, a one-worker comparison): ``observe(label)`` is the callback
  ``sim.experiment.episode.run`` calls with each episode it builds; the poller reads that episode directly;
- in pool workers (a comparison on the local pool, Ray or Dask on this machine): each worker runs
  its episode inside ``heartbeat(directory, key)``, which writes ``<simulated seconds> <events>``
  to a small file a few times a second; the poller reads the files;
- a finished run reports its exact counters (``run_done``), from the run's own statistics.

A sweep's runner only returns a summary, so a sweep's bar moves as runs finish (their duration and
``run.events``).

The bar's total is the simulated seconds of every run, so its ETA (rich's, from the rate at which
simulated time is done) accounts for runs in flight, not only finished ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.experiment.assembled import Episode

__all__ = ["EpisodeProgress", "Counters", "fields", "heartbeat", "live_counts"]

_COUNT = re.compile(r"count\((\d+)")
BEAT_SECONDS = 0.5


def live_counts(episode: "Episode") -> tuple[float, int]:
    """A running episode's simulated time and events processed so far, read from another thread.
    simpy numbers events from an itertools.count; its repr shows the next number without advancing
    it (next() would change the event ids of the run being watched); events still queued are not
    processed yet (the run's ``events`` statistic counts the same way)."""
    env = episode.world.env
    match = _COUNT.match(repr(env._eid))
    scheduled = int(match.group(1)) if match else 0
    return float(episode.world.now), max(scheduled - len(env._queue), 0)


def _beat_path(directory: str | Path, key: str) -> Path:
    return Path(directory) / hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


@contextlib.contextmanager
def heartbeat(directory: str | Path | None, key: str) -> Iterator[Callable[["Episode"], None] | None]:
    """In a worker: ``with heartbeat(dir, key) as observe: sim.experiment.episode.run(cfg, observe=observe)``
    writes the episode's live counters to a file named after ``key`` under ``dir`` until the run
    ends. ``dir`` None (no display): yields None, so the run takes its fast path."""
    if directory is None:
        yield None
        return
    path = _beat_path(directory, key)
    stop = threading.Event()
    watched: list["Episode"] = []

    def beat() -> None:
        while not stop.wait(BEAT_SECONDS):
            if watched:
                now, events = live_counts(watched[0])
                tmp = path.with_name(f".{path.name}.{os.getpid()}")
                try:  # a heartbeat need not survive a crash: no fsync, a rename so no half line is read
                    tmp.write_text(f"{now!r} {events}", encoding="utf-8")
                    os.replace(tmp, path)
                except OSError:
                    return  # the display went away (its folder was removed): the run goes on

    thread = threading.Thread(target=beat, name="clearsim-heartbeat", daemon=True)
    thread.start()
    try:
        yield watched.append
    finally:
        stop.set()
        thread.join(timeout=2.0)


@dataclass(frozen=True, slots=True)
class Counters:
    """What the bar shows, as numbers: runs finished of all, simulated seconds done (finished runs'
    durations plus the clocks of runs in flight) of the total, events processed, wall seconds."""

    runs_done: int
    runs: int
    sim_seconds: float
    sim_total: float
    events: int
    elapsed: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed if self.elapsed > 0 else 0.0


def fields(c: Counters) -> dict[str, str]:
    """The bar's text fields for these counters."""
    from sim.experiment.fmt import compact

    return {"runs": f"{c.runs_done:,}/{c.runs:,} runs",
            "sim": f"{compact(c.sim_seconds)} / {compact(c.sim_total)} sim s",
            "rate": f"{compact(c.events_per_s)} events/s"}


class EpisodeProgress:
    """One progress bar for one or many runs::

        with EpisodeProgress(enabled, runs=N, sim_seconds=T, description=name) as p:
            api.run(..., observe=p.observe(name))          # runs in this process
            # or: workers use heartbeat(p.heartbeat_dir, key); the driver calls p.run_done(...)

    ``sim_seconds``: the simulated seconds of all runs (default: taken from the first observed
    episode's duration x ``runs``). Disabled (or not a terminal): everything is a no-op and
    ``heartbeat_dir`` is None."""

    def __init__(self, enabled: bool = True, runs: int = 1, console: Any = None, description: str = "",
                 sim_seconds: float | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.runs = runs
        self.description = description
        self.sim_total = sim_seconds
        self.heartbeat_dir: str | None = None
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._done_runs = 0
        self._done_sim = 0.0
        self._done_events = 0
        self._current: tuple[str, "Episode"] | None = None  # an episode running in this process
        self._bar: Any = None
        self._task: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "EpisodeProgress":
        self._started = self._clock()
        if not self.enabled:
            return self
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.heartbeat_dir = tempfile.mkdtemp(prefix="clearsim-progress-")
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[runs]}"),
                             TextColumn("{task.fields[sim]}"), TextColumn("{task.fields[rate]}"),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                             console=self.console, transient=True)
        self._bar.start()
        self._task = self._bar.add_task(self.description, total=self.sim_total, **fields(self.counters()))
        self._thread = threading.Thread(target=self._poll, name="clearsim-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._finish_current()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._bar is not None:
            self._bar.stop()
        if self.heartbeat_dir is not None:
            import shutil

            shutil.rmtree(self.heartbeat_dir, ignore_errors=True)
            self.heartbeat_dir = None

    # ------------------------------------------------------------------ inputs
    def observe(self, label: str) -> Callable[["Episode"], None] | None:
        """The callback for runs in this process (``None`` when disabled, so the run takes its fast
        path). An episode counts as done when the next one starts or the display closes."""
        if not self.enabled:
            return None

        def on_build(episode: "Episode") -> None:
            with self._lock:
                self._finish_current()
                if self.sim_total is None:
                    self.sim_total = float(episode.config.duration) * self.runs
                    self._bar.update(self._task, total=self.sim_total)
                self._current = (label, episode)
                self._bar.update(self._task, description=label)

        return on_build

    def run_done(self, events: int, sim_seconds: float, key: str | None = None) -> None:
        """A run finished (in a worker): its exact counters; ``key`` names its heartbeat file."""
        with self._lock:
            self._done_runs += 1
            self._done_sim += float(sim_seconds)
            self._done_events += int(events)
            if key is not None and self.heartbeat_dir is not None:
                _beat_path(self.heartbeat_dir, key).unlink(missing_ok=True)

    def describe(self, text: str) -> None:
        """Change the bar's description (a sweep appends its error count)."""
        self.description = text
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def _finish_current(self) -> None:
        if self._current is not None:
            episode = self._current[1]
            _now, events = live_counts(episode)
            self._done_runs += 1
            self._done_sim += float(episode.config.duration)
            self._done_events += events
            self._current = None

    # ------------------------------------------------------------------ output
    def counters(self) -> Counters:
        """The counters now: finished runs plus every run in flight (this process's, the heartbeats)."""
        with self._lock:
            sim, events = self._done_sim, self._done_events
            if self._current is not None:
                now, n = live_counts(self._current[1])
                sim, events = sim + now, events + n
            if self.heartbeat_dir is not None:
                for path in Path(self.heartbeat_dir).iterdir():
                    if path.name.startswith("."):
                        continue
                    try:
                        now_text, n_text = path.read_text(encoding="utf-8").split()
                        sim, events = sim + float(now_text), events + int(n_text)
                    except (OSError, ValueError):
                        continue  # removed or being replaced: read next time
            return Counters(self._done_runs, self.runs, sim, float(self.sim_total or 0.0), events,
                            self._clock() - self._started)

    def refresh(self) -> Counters:
        """Read the counters and show them (the poller does this a few times a second)."""
        c = self.counters()
        if self._bar is not None:
            self._bar.update(self._task, completed=c.sim_seconds, **fields(c))
        return c

    def _poll(self) -> None:
        while not self._stop.wait(0.25):
            self.refresh()
