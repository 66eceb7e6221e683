"""Who reacts to an event, and in what order: named phases instead of list-insertion order.

A fill or an oracle publication is handled in four phases. Within a phase, listeners run in the
order they subscribed; across phases the order is fixed, whatever order the components were built in:

* ``SETTLE``  -- balances follow the event: positions and cash (the clearing house books a fill),
  collateral values (dynamic haircuts re-set at a publication);
* ``ENFORCE`` -- the clearing house acts on what settled: re-valuation, cancels, liquidations,
  isolated sub-accounts topped up or swept;
* ``OBSERVE`` -- traders and feeds read the outcome (the trade tape, leverage monitors, the
  oracle's venue-price input);
* ``RECORD``  -- the recorder writes it down, last, so it sees the event's full consequences.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable[..., None])


class Phase(IntEnum):
    SETTLE = 0
    ENFORCE = 1
    OBSERVE = 2
    RECORD = 3


class Subscribers(Generic[F]):
    """The listeners of one kind of event. ``calls`` is the dispatch order as a tuple, rebuilt on
    each subscription (rare) so that dispatch (every fill, every publication) is a plain loop."""

    __slots__ = ("_by_phase", "calls")

    def __init__(self) -> None:
        self._by_phase: dict[Phase, list[F]] = {phase: [] for phase in Phase}
        self.calls: tuple[F, ...] = ()

    def add(self, listener: F, phase: Phase) -> None:
        self._by_phase[Phase(phase)].append(listener)
        self.calls = tuple(f for p in Phase for f in self._by_phase[p])

    def __len__(self) -> int:
        return len(self.calls)
