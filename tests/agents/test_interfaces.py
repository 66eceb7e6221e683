"""Agents are built against declared interfaces (agents.interfaces); the clearing objects an episode
hands them must provide every declared member, and the desk's answers must be the house's own."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from agents.interfaces import AccountBook, IsolatedDesk, MarginDesk
from sim.experiment.config import load_episode
from sim.experiment.episode import build


def _members(protocol: type) -> set[str]:
    names = {n for n, _ in inspect.getmembers(protocol, inspect.isfunction) if not n.startswith("_")}
    return names | set(getattr(protocol, "__annotations__", {}))


@pytest.fixture(scope="module")
def isolated_episode():
    return build(load_episode(None, {"margin": {"regime": "standard_isolated"}}))


def test_the_episode_hands_agents_objects_that_provide_every_declared_member(isolated_episode) -> None:
    ep = isolated_episode
    ctx = ep.agents[0].ctx
    for protocol, obj in ((MarginDesk, ctx.desk), (AccountBook, ctx.ledger), (IsolatedDesk, ctx.isolated)):
        missing = sorted(m for m in _members(protocol) if not hasattr(obj, m))
        assert not missing, f"{type(obj).__name__} lacks {missing} of {protocol.__name__}"


def test_the_desk_answers_what_the_house_computes(isolated_episode) -> None:
    ep = isolated_episode
    house = ep.house
    account = ep.agents[-1].account
    lots = np.zeros(len(ep.table), dtype=np.int64)
    lots[0] = 3
    held = house.exposure(np.array([account]))[0]
    by_hand = max(float(house.requirements((held + lots)[None, :]).im[0]),
                  float(house.requirements((held - lots)[None, :]).im[0])) * house.scale
    assert house.initial_margin_with(account, lots) == pytest.approx(by_hand, rel=1e-12)
    assert house.initial_margin_with(account, lots) > house.initial_margin_with(account, lots * 0)
    assert house.in_liquidation(account) == ep.engine.is_active(account)


def test_bidders_register_once_through_the_desk(isolated_episode) -> None:
    house = isolated_episode.house

    class Bidder:
        account = 0

        def auction_discount(self, lots, marks_value):
            return None

    bidder = Bidder()
    before = len(isolated_episode.engine.bidders)
    house.register_bidder(bidder)
    house.register_bidder(bidder)
    assert isolated_episode.engine.bidders[before:] == [bidder]
