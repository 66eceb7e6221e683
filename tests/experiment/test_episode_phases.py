"""The episode wires its listeners by phase: the house books a fill before anyone reads it, the
recorder writes last (sim.core.phases)."""

from __future__ import annotations

from sim.experiment.config import load_episode
from sim.experiment.episode import build
from sim.experiment.recorder import Recorder


def test_an_episode_books_a_fill_before_anyone_reads_it() -> None:
    # the clearing house subscribes after the trade tape and the isolated-margin desk are built, yet
    # it books every fill first; the recorder, built before the agents start, still writes last
    episode = build(load_episode(None))
    venue_calls = episode.venue.trade_listeners.calls
    assert venue_calls[0] == episode.house.on_fill
    oracle_calls = episode.oracle.listeners.calls
    assert episode.house.on_publication in oracle_calls
    recorder = Recorder(episode, 60.0)
    recorder.attach()
    for agent in episode.agents:
        agent.start()
    assert episode.venue.trade_listeners.calls[-1] == recorder.on_trade
    assert episode.oracle.listeners.calls[-1] == recorder.on_publication
