"""A calm market through the whole episode machinery: makers, noise traders, basis arbitrageurs and
a few modestly levered accounts keep the perpetual's mid close to the oracle, and nobody is
liquidated. Also: the RMSC04-like benchmark config loads and runs a short slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.leveraged import LeveragedCrowd
from agents.market_maker import MarketMaker
from clearing.ledger import FIRST_TRADER
from sim.experiment.config import load_episode, parse_episode
from sim.experiment.episode import build, run, verify

CALM = {
    "name": "calm", "seed": 11, "duration": 1200.0,
    "market": {"instruments": [
        {"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.001}]},
    "paths": {"dt": 1.0, "models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 60_000.0, "vol": 0.3}]}]},
    "oracle": {"sample_interval": 1.0, "heartbeat": 30.0, "deviation": 0.0005},
    "margin": {"regime": "standard", "tiers": [{"im_rate": 0.10, "mm_rate": 0.05}]},
    "population": {"groups": [
        {"type": "market_maker", "count": 2, "capital": 5_000_000.0, "instruments": ["BTC-PERP"],
         "half_spread_bps": {"dist": "uniform", "low": 2.0, "high": 4.0}, "levels": 3, "size": 200,
         "max_inventory": 5000},
        {"type": "noise", "count": 50, "capital": 50_000.0, "instruments": ["BTC-PERP"], "rate": 0.05,
         "size": {"dist": "uniform", "low": 1, "high": 50}, "max_position": 300},
        {"type": "basis_arb", "count": 2, "capital": 2_000_000.0, "instruments": ["BTC-PERP"], "size": 100,
         "max_position": 2000},
        {"type": "leveraged", "count": 10, "capital": 20_000.0, "instruments": ["BTC-PERP"],
         "leverage": {"dist": "uniform", "low": 1.0, "high": 3.0}, "entry_delay": {"dist": "uniform", "low": 0, "high": 300}},
    ]},
}


def test_calm_market_tracks_the_oracle_and_liquidates_no_one():
    config = parse_episode(CALM, "calm")
    ep = build(config)
    for agent in ep.agents:
        agent.start()
    ep.oracle.start()
    gaps = []
    t = 5.0
    while t <= config.duration:
        ep.world.run(until=t)
        mid = ep.venue.books[0].mid()
        assert mid is not None, f"the book went one-sided at t={t}"
        gaps.append(mid / ep.marks.index_ticks[0] - 1.0)
        t += 5.0
    verify(ep)
    gaps = np.abs(np.array(gaps))
    assert gaps.max() < 10e-4, f"mid strayed {gaps.max() * 1e4:.1f} bps from the index"
    assert np.median(gaps) < 4e-4
    assert not ep.engine.events, "a calm market liquidates no one"
    assert ep.venue.counts["fills"] > 300
    assert all(m.quoting and m.withdrawals == 0 for m in ep.agents if isinstance(m, MarketMaker))
    (levered,) = [a for a in ep.agents if isinstance(a, LeveragedCrowd)]
    assert (ep.ledger.position[levered.rows, levered.instrument] != 0).all() and levered.members == 10


RMSC04 = Path(__file__).resolve().parents[2] / "configs" / "bench" / "rmsc04_like.yaml"


def test_rmsc04_like_config_loads_and_runs_a_slice():
    config = load_episode(RMSC04)
    groups = {g.type: g.count for g in config.population.groups}
    assert groups == {"noise": 1000, "value": 102, "momentum": 12, "market_maker": 2}
    assert config.duration == 23_400.0 and len(config.market.instruments) == 1
    assert config.paths.models[0].kind == "ou_megashock"
    short = load_episode(RMSC04, overrides={"duration": 900.0, "outputs": {"counterfactual": False}})
    result = run(short, keep_episode=True)
    ep = result.episode
    assert ep is not None
    assert result.stats["fills"] > 50
    mid = ep.venue.books[0].mid()
    assert mid is not None and abs(mid / ep.marks.index_ticks[0] - 1.0) < 0.01


def test_account_samples_gross_notional_is_the_positions_at_mark_when_sampled():
    """``account_states.gross`` is each account's sum of |lots| x mark x tick value at the sample: at
    the final sample (the episode's end), from the ledger's own positions and marks, to the bit --
    read from the house's kept float positions, which must be current then (stale ones, or the
    worst-case lots with orders, would differ: the control below)."""
    short = load_episode(RMSC04, overrides={"duration": 900.0, "outputs": {"counterfactual": False}})
    result = run(short, keep_episode=True)
    ep = result.episode
    accounts = result.tables["accounts"]
    last = accounts["time"] == accounts["time"].max()
    ledger = ep.ledger
    n = ledger.n_accounts
    values = np.asarray(ep.marks.ticks, dtype=np.float64) * ledger.tick_value
    want = np.abs(ledger.position[:n]).dot(values)[FIRST_TRADER:n]
    assert np.array_equal(accounts["gross"][last], want)
    assert np.count_nonzero(want) > 100
    with_orders = np.abs(ep.house.book.exposure[:n]).dot(values)[FIRST_TRADER:n]
    assert not np.array_equal(with_orders, want)  # the control: resting orders rest at the end
