"""Live progress for ``clearsim run`` and ``compare``: simulated time, events/s, runs done, ETA.

The event loop is not touched: a daemon thread reads the running episode's clock and simpy's
event counter a few times a second and updates a rich progress bar. Nothing is scheduled in the
simulation, so results (and the ``events`` count) are the same with or without progress.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.experiment.assembled import Episode

__all__ = ["EpisodeProgress"]

_COUNT = re.compile(r"count\((\d+)")


def _events_scheduled(episode: "Episode") -> int:
    # simpy numbers events from an itertools.count; its repr shows the next number without
    # advancing it (next() would change the event ids of the run being watched)
    match = _COUNT.match(repr(episode.world.env._eid))
    return int(match.group(1)) if match else 0


class EpisodeProgress:
    """``with EpisodeProgress(enabled, runs=N) as p: api.run(..., observe=p.observe("label"))``.

    ``observe(label)`` returns the callback ``sim.experiment.episode.run`` calls with each episode it builds;
    a run's bar goes from 0 to its duration in simulated seconds. With ``runs`` > 1 an overall bar
    counts finished runs. Disabled (or not a terminal): everything is a no-op."""

    def __init__(self, enabled: bool = True, runs: int = 1, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.runs = runs
        self._bar: Any = None
        self._overall: Any = None
        self._current: tuple[Any, "Episode", float, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "EpisodeProgress":
        if not self.enabled:
            return self
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                             TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                             console=self.console, transient=True)
        self._bar.start()
        if self.runs > 1:
            self._overall = self._bar.add_task("runs", total=self.runs, detail="")
            self._bar.columns = (*self._bar.columns[:2], MofNCompleteColumn(), *self._bar.columns[2:])
        self._thread = threading.Thread(target=self._poll, name="clearsim-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._bar is not None:
            self._bar.stop()

    def observe(self, label: str) -> Callable[["Episode"], None] | None:
        """The callback for one run (``None`` when disabled, so the run takes its fast path)."""
        if not self.enabled:
            return None

        def on_build(episode: "Episode") -> None:
            self._finish_current()
            task = self._bar.add_task(label, total=float(episode.config.duration), detail="")
            self._current = (task, episode, time.perf_counter(), 0)

        return on_build

    def run_done(self) -> None:
        self._finish_current()
        if self._overall is not None:
            self._bar.update(self._overall, advance=1)

    def _finish_current(self) -> None:
        if self._current is not None:
            task = self._current[0]
            self._bar.update(task, completed=self._bar.tasks[task].total)
            self._bar.remove_task(task)
            self._current = None

    def _poll(self) -> None:
        from sim.experiment.fmt import compact

        while not self._stop.wait(0.25):
            current = self._current
            if current is None:
                continue
            task, episode, started, _ = current
            now = float(episode.world.now)
            events = _events_scheduled(episode)
            elapsed = max(time.perf_counter() - started, 1e-9)
            detail = (f"{compact(now)} / {compact(float(episode.config.duration))} sim s · "
                      f"{compact(events / elapsed)} events/s")
            self._bar.update(task, completed=now, detail=detail)
