"""Listeners run phase by phase (settle -> enforce -> observe -> record), whatever order they
subscribed in; within a phase, in subscription order."""

from __future__ import annotations

from sim.core.phases import Phase, Subscribers


def test_phases_order_listeners_whatever_the_subscription_order() -> None:
    calls: list[str] = []
    subs: Subscribers = Subscribers()
    subs.add(lambda: calls.append("record"), Phase.RECORD)
    subs.add(lambda: calls.append("observe-1"), Phase.OBSERVE)
    subs.add(lambda: calls.append("settle"), Phase.SETTLE)
    subs.add(lambda: calls.append("observe-2"), Phase.OBSERVE)
    subs.add(lambda: calls.append("enforce"), Phase.ENFORCE)
    for listener in subs.calls:
        listener()
    assert calls == ["settle", "enforce", "observe-1", "observe-2", "record"]
    assert len(subs) == 5
