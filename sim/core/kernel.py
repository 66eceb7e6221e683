"""The event kernel: a ``World`` owns the simpy environment, the random streams and the clock.

Time unit: simulated **seconds** (``env.now`` is a float number of seconds since the episode
start). Everything scheduled -- message deliveries, oracle heartbeats, agent wake-ups, margin
checks -- is a simpy event; callbacks scheduled with ``call_later`` avoid the cost of a full
process per message.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from heapq import heappop, heappush
from typing import Any

import numpy as np
import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import NORMAL, URGENT, Event

from sim.core.streams import RandomStreams


class _Environment(simpy.Environment):
    """simpy's environment, with plain function calls queued on its heap next to its events.

    ``World.call_later`` queues a ``(function, arguments)`` tuple where simpy queues an Event: a
    call cannot fail or stop the simulation, so none of ``step``'s callback bookkeeping applies,
    and a tuple costs a fraction of an Event (an attribute dict, a callback list) -- an episode
    schedules a few per order. Everything else (processes, timeouts, the ``until`` event) goes
    through simpy's own ``step``."""

    # simpy declares (time, priority, id, Event) entries; a plain call puts (fn, args) in the last place
    _queue: list[tuple[float, int, int, Any]]  # type: ignore[assignment]

    def step(self) -> None:
        queue = self._queue
        if queue and queue[0][3].__class__ is tuple:
            self._now, _, _, (fn, args) = heappop(queue)
            fn(*args)
        else:
            super().step()

    def run(self, until: float | Event | None = None) -> Any:
        """simpy's ``run``, with ``step`` inlined in its loop: one method call fewer per event (an
        episode processes ~90,000). The ``until`` handling is simpy's own."""
        if until is not None:
            if not isinstance(until, Event):
                at = until if isinstance(until, int) else float(until)
                if at <= self._now:
                    raise ValueError(f"until ({at}) must be greater than the current simulation time")
                until = Event(self)
                until._ok = True
                until._value = None
                self.schedule(until, URGENT, at - self._now)
            elif until.callbacks is None:
                return until.value
            until.callbacks.append(StopSimulation.callback)
        queue = self._queue
        simpy_step = super().step
        try:
            while True:
                if queue and queue[0][3].__class__ is tuple:
                    self._now, _, _, (fn, args) = heappop(queue)
                    fn(*args)
                else:
                    simpy_step()
        except StopSimulation as exc:
            return exc.args[0]
        except EmptySchedule:
            if until is not None:
                assert not until.triggered
                raise RuntimeError(f'No scheduled events left but "until" event was not triggered: {until}') from None
        return None


@contextmanager
def _long_lived_world() -> Iterator[None]:
    """Keep the cyclic garbage collector off what was built before the run.

    The world (agents, books, accounts, streams) lives for the whole run, and a full collection
    that walks it finds nothing to free; events make short-lived, mostly acyclic objects, which the
    young generations still collect. So the objects alive now are frozen and full collections
    wait for the end of the run; the collector's settings are restored afterwards."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(thresholds[0], thresholds[1], max(thresholds[2], 1000))
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class World:
    """Owns the simulation clock, the random streams and the scheduling helpers."""

    def __init__(self, seed: int) -> None:
        self.env = _Environment()
        self.streams = RandomStreams(seed)

    @property
    def now(self) -> float:
        return self.env._now  # what env.now returns, one property call fewer (read on every event)

    def stream(self, name: str) -> np.random.Generator:
        """The named random stream (see ``sim.core.streams``)."""
        return self.streams.stream(name)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` after ``delay`` simulated seconds (message delivery, timers)."""
        env = self.env
        heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), (fn, args)))

    def call_at(self, time: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at the simulated time ``time`` (not before now): a timer kept by its due
        time, which ``now + (time - now)`` would not always give back exactly in floating point."""
        env = self.env
        heappush(env._queue, (max(time, env._now), NORMAL, next(env._eid), (fn, args)))

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at the current time, before ordinary events scheduled for now."""
        env = self.env
        heappush(env._queue, (env._now, URGENT, next(env._eid), (fn, args)))

    def every(self, interval: float, fn: Callable[[], Any], start: float = 0.0,
              until: float | None = None) -> None:
        """Call ``fn()`` at ``start``, ``start+interval``, ... (while the clock is <= ``until``).

        Each tick re-schedules the next one as a plain call: the clock reaches tick times by
        repeated addition, and no simpy Process (a generator and a Timeout per tick) is needed."""
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")

        def tick() -> None:
            if until is not None and self.env._now > until:
                return
            fn()
            self.call_later(interval, tick)

        self.call_later(start, tick)

    def process(self, generator: Generator[Event, Any, Any]) -> simpy.Process:
        return self.env.process(generator)

    def run(self, until: float) -> None:
        with _long_lived_world():
            self.env.run(until=until)
