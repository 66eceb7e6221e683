"""``sim.core.kernel._Environment.run`` inlines simpy's ``step`` into simpy's ``run`` loop; these tests
hold it to plain ``simpy.Environment.run`` on the same schedules: the same events in the same order
at the same times, the same ``now`` after each run, the same return values and the same errors, with
``until`` a number (int or float, in the past too), an event (triggered, processed already, failed,
never triggered) or absent, over several runs in a row.

Plain simpy has no queued ``(function, arguments)`` calls, so on its side a call is an Event carrying
the function as its one callback, pushed with the same priority and delay: the same heap key, hence
the same place in the order."""

from __future__ import annotations

import re
from heapq import heappush
from typing import Any

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from simpy.events import NORMAL, URGENT, Event

from sim.core.kernel import _Environment

DELAYS = st.sampled_from([0, 0, 0.5, 1, 1, 1.5, 2, 3.0])  # few values: many ties, ints and floats


def _nodes(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.tuples(st.sampled_from(["call", "urgent", "timeout", "process"]), DELAYS,
                     st.lists(DELAYS, max_size=3), children)


NODE = st.recursive(_nodes(st.just([])), lambda inner: _nodes(st.lists(inner, max_size=3)), max_leaves=25)
SCHEDULE = st.lists(NODE, min_size=0, max_size=6)
# one run's ``until``: absent, a number (0 is in the past at the start; 2 and 2.0 are the int and
# the float), or an event made on each side before the run
UNTIL = st.one_of(st.none(), st.sampled_from([-1, 0, 0.5, 1, 2, 2.0, 2.5, 4, 7.25, 100]),
                  st.tuples(st.sampled_from(["timeout", "never", "fail", "processed"]), DELAYS))


class Side:
    """One environment and how it queues a plain call, with the log of what ran."""

    def __init__(self, env: simpy.Environment, native_calls: bool) -> None:
        self.env = env
        self.native_calls = native_calls
        self.log: list[tuple[float, str]] = []
        self.done: Event | None = None  # an event processed by an earlier run ("processed")

    def call(self, delay: float, priority: int, fn: Any) -> None:
        env = self.env
        if self.native_calls:
            heappush(env._queue, (env._now + delay, priority, next(env._eid), (fn, ())))
        else:
            event = Event(env)
            event._ok, event._value = True, None
            event.callbacks.append(lambda _e: fn())
            env.schedule(event, priority, delay)

    def plant(self, nodes: list, path: str) -> None:
        """Schedule each node; when it fires it logs itself and plants its children."""
        for k, (kind, delay, waits, children) in enumerate(nodes):
            label = f"{path}/{k}"

            def fire(label=label, children=children) -> None:
                self.log.append((self.env.now, label))
                self.plant(children, label)

            if kind in ("call", "urgent"):
                self.call(delay, URGENT if kind == "urgent" else NORMAL, fire)
            elif kind == "timeout":
                self.env.timeout(delay, value=label).callbacks.append(lambda _e, fire=fire: fire())
            else:
                def proc(label=label, delay=delay, waits=waits, fire=fire):
                    yield self.env.timeout(delay)
                    for j, w in enumerate(waits):
                        self.log.append((self.env.now, f"{label}.wait{j}"))
                        yield self.env.timeout(w)
                    fire()
                    return label

                self.env.process(proc())

    def until(self, spec: Any) -> Any:
        if not isinstance(spec, tuple):
            return spec
        kind, delay = spec
        if kind == "timeout":
            return self.env.timeout(delay, value=f"until {delay}")
        if kind == "never":
            return self.env.event()
        if kind == "fail":
            event = self.env.event()
            self.call(delay, NORMAL, lambda: event.fail(KeyError(f"failed at {self.env.now}")))
            return event
        if self.done is None:  # "processed": an event an earlier run has processed, else one of now
            self.done = self.env.timeout(0, value="processed")
            self.env.run(until=self.done)
        return self.done

    def run(self, spec: Any) -> tuple:
        try:
            outcome: tuple = ("returned", self.env.run(until=self.until(spec)))
        except (ValueError, RuntimeError, KeyError) as exc:
            outcome = ("raised", type(exc).__name__, re.sub(r" at 0x[0-9a-f]+", "", str(exc)))  # the event's address
        return outcome, self.env.now, len(self.log)


def _both(schedule: list, runs: list) -> tuple[Side, Side, list, list]:
    ours = Side(_Environment(), native_calls=True)
    plain = Side(simpy.Environment(), native_calls=False)
    outcomes = []
    for side in (ours, plain):
        side.plant(schedule, "")
        outcomes.append([side.run(spec) for spec in runs])
    return ours, plain, outcomes[0], outcomes[1]


@settings(max_examples=300, deadline=None)
@given(SCHEDULE, st.lists(UNTIL, min_size=1, max_size=4))
def test_run_matches_simpy_on_generated_schedules(schedule, runs):
    ours, plain, ours_out, plain_out = _both(schedule, runs)
    assert ours_out == plain_out
    assert ours.log == plain.log
    assert ours.env.now == plain.env.now and type(ours.env.now) is type(plain.env.now)
    assert len(ours.env._queue) == len(plain.env._queue)


def test_run_controls_with_known_answers():
    """A hand-made schedule, for the cases the generated ones must cover."""
    schedule = [("call", 1, [], [("urgent", 0, [], [])]), ("timeout", 2, [], []),
                ("process", 0.5, [1, 1], [("call", 0, [], [])])]
    runs = [0, 1, (("timeout", 1)), None, 3, ("never", 0)]
    ours, plain, ours_out, plain_out = _both(schedule, runs)
    assert ours_out == plain_out
    assert ours_out[0] == (("raised", "ValueError", "until (0) must be greater than the current simulation time"),
                           0, 0)
    assert ours_out[1] == (("returned", None), 1, 1)  # an until at 1 stops before the normal call at 1
    assert ours_out[2] == (("returned", "until 1"), 2, 5)  # the call at 1, its urgent child, 1.5's wait, the timeout event
    assert ours_out[3] == (("returned", None), 2.5, 7)  # absent: to the end
    assert ours_out[4] == (("returned", None), 3, 7)  # a number past the last event: the clock goes there
    assert ours_out[5][0] == ("raised", "RuntimeError",
                              ours_out[5][0][2]) and "was not triggered" in ours_out[5][0][2]
    assert ours.log == plain.log == [(0.5, "/2.wait0"), (1, "/0"), (1, "/0/0"), (1.5, "/2.wait1"), (2, "/1"),
                                     (2.5, "/2"), (2.5, "/2/0")]
    # an empty schedule: absent returns at once; a failed until event raises its exception
    empty_ours, empty_plain, a, b = _both([], [None, ("fail", 2)])
    assert a == b == [(("returned", None), 0, 0), (("raised", "KeyError", "'failed at 2'"), 2, 0)]
