"""Behaviour of the trader agents on small hand-built episodes (each test runs in well under a second
or two of wall time).

Worlds are assembled with ``sim.experiment.episode.build`` from a minimal config (one perpetual, optionally
two options on the same underlying) and then driven by hand: agents are started, the oracle is
started or its published index is set directly, and the clock is advanced.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from agents.backstop import AuctionBidder
from agents.leveraged import HOLDING, LeveragedCrowd
from agents.market_maker import MarketMaker
from agents.noise import NoiseCrowd
from agents.options import DeltaHedger
from agents.value import ValueCrowd, propagate_and_update
from clearing.ledger import QUOTE
from sim.experiment.io import deep_merge
from sim.experiment.config import parse_episode
from sim.experiment.assembled import Episode
from sim.experiment.episode import build
from sim.experiment.accounts import account_directory
from sim.core.orders import BUY, SELL

USD = 1_000_000

BASE: dict[str, Any] = {
    "name": "agents",
    "seed": 7,
    "duration": 3600.0,
    "market": {"instruments": [
        {"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.01},
    ]},
    "paths": {"dt": 1.0, "models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0, "vol": 0.0}]}]},
    "oracle": {"sample_interval": 1.0, "heartbeat": 30.0, "deviation": 0.0005, "mark_basis_cap": 0.0},
    "venue": {"maker_fee_bps": 0.0, "taker_fee_bps": 0.0, "price_band": 0.5, "market_protection": 0.3,
              "to_venue_latency": {"kind": "constant", "mean": 0.001},
              "to_agent_latency": {"kind": "constant", "mean": 0.001}},
    "margin": {"regime": "standard", "tiers": [{"im_rate": 0.10, "mm_rate": 0.05}]},
    "clearing": {"liquidation": {"backstop": {"enabled": False}}, "funding": {"enabled": False}},
    "population": {"groups": []},
}

MAKER = {"type": "market_maker", "name": "mm", "count": 1, "capital": 50_000_000.0, "instruments": ["BTC-PERP"],
         "half_spread_bps": 2.0, "levels": 3, "size": 200, "max_inventory": 100_000, "withdraw_vol": None,
         "withdraw_drawdown": None}


def episode(*groups: dict[str, Any], **overrides: Any) -> Episode:
    data = deep_merge(BASE, overrides)
    data["population"] = {"groups": list(groups)}
    return build(parse_episode(data, "test"))


def start(ep: Episode, oracle: bool = True) -> None:
    for agent in ep.agents:
        agent.start()
    if oracle:
        ep.oracle.start()


def of(ep: Episode, cls: type) -> list:
    return [a for a in ep.agents if isinstance(a, cls)]


# ------------------------------------------------------------------------------------ market maker
def _touch(ep: Episode) -> tuple[int | None, int | None, int]:
    book = ep.venue.books[0]
    bids, _asks = book.depth(1)
    return book.best_bid(), book.best_ask(), (bids[0][1] if bids else 0)


def test_market_maker_widens_under_volatility_then_withdraws_and_returns():
    mm_cfg = dict(MAKER, withdraw_vol=4.0, vol_ref=0.5, vol_halflife=60.0, reentry_calm=120.0,
                  reentry_vol_ratio=0.5, interval=1.0, poisson=False)
    ep = episode(mm_cfg)
    start(ep, oracle=False)  # the test publishes the index itself
    mm = of(ep, MarketMaker)[0]
    world, index = ep.world, ep.oracle.index
    world.run(until=10.5)
    bid0, ask0, size0 = _touch(ep)
    assert bid0 is not None and ask0 is not None
    calm_spread = ask0 - bid0
    # a choppy index: +-0.4% every second (annualised vol ~ 22) around the same level
    s0 = float(index[0])
    widened = None
    for k in range(120):
        index[0] = s0 * (1.004 if k % 2 == 0 else 1.0)
        world.run(until=world.now + 1.0)
        if widened is None and mm.quoting and mm.vol > 1.0:
            bid, ask, size = _touch(ep)
            if bid is not None and ask is not None:
                widened = (ask - bid, size, mm.vol)
        if not mm.quoting:
            break
    assert widened is not None, "the maker never quoted at elevated volatility"
    assert widened[0] > calm_spread, (widened, calm_spread)
    assert widened[1] < size0, (widened, size0)
    assert not mm.quoting and mm.withdrawals == 1 and mm.vol > 4.0
    world.run(until=world.now + 0.5)
    book = ep.venue.books[0]
    assert book.best_bid() is None and book.best_ask() is None, "a withdrawn maker leaves nothing on the book"
    # calm again: it stays out while its vol estimate decays and for reentry_calm seconds after
    index[0] = s0
    out_since = world.now
    while not mm.quoting and world.now < out_since + 2000:
        world.run(until=world.now + 5.0)
    assert mm.quoting
    assert world.now - out_since >= 120.0
    world.run(until=world.now + 2.0)
    assert book.best_bid() is not None and book.best_ask() is not None


def test_market_maker_withdraws_past_drawdown():
    mm_cfg = dict(MAKER, withdraw_drawdown=0.2, capital=100_000.0, size=5, levels=1)
    ep = episode(mm_cfg)
    start(ep, oracle=False)
    mm = of(ep, MarketMaker)[0]
    ep.world.run(until=2.5)
    assert mm.quoting
    # the maker is made to hold a long position, then the mark falls 50%: equity drops far below peak
    other = ep.ledger.open_account()
    ep.ledger.deposit(other, QUOTE, 10**15)
    ep.ledger.trade(mm.account, other, 0, 50_000, 100)
    ep.oracle.index[0] = 25_000.0
    ep.marks.update(ep.world.now)
    ep.world.run(until=ep.world.now + 2.0)
    assert not mm.quoting and mm.withdrawals == 1


def test_inventory_skews_quotes_and_caps_the_side_that_adds_to_it():
    ep = episode(dict(MAKER, levels=1, size=10, max_inventory=100, inventory_skew=1.0, half_spread_bps=10.0))
    start(ep, oracle=False)
    mm = of(ep, MarketMaker)[0]
    ep.world.run(until=1.5)
    flat_bid, flat_ask = ep.venue.books[0].best_bid(), ep.venue.books[0].best_ask()
    other = ep.ledger.open_account()
    ep.ledger.deposit(other, QUOTE, 10**15)
    ep.ledger.trade(mm.account, other, 0, 50_000, 100)  # long at its limit
    ep.world.run(until=ep.world.now + 2.0)
    book = ep.venue.books[0]
    assert book.best_bid() is None, "no bids beyond max_inventory"
    assert book.best_ask() < flat_ask, "a long maker lowers its offer"
    assert flat_bid is not None


# ------------------------------------------------------------------------------------ leveraged
def test_leveraged_opening_leverage_matches_its_draw():
    lev = {"type": "leveraged", "count": 8, "capital": {"dist": "uniform", "low": 10_000.0, "high": 50_000.0},
           "instruments": ["BTC-PERP"], "leverage": {"dist": "uniform", "low": 1.5, "high": 8.0},
           "long_prob": 0.5, "entry_delay": 1.0}
    ep = episode(MAKER, lev)
    (crowd,) = of(ep, LeveragedCrowd)
    capital = ep.ledger.cash[crowd.accounts, QUOTE].astype(np.float64)
    start(ep)
    ep.world.run(until=20.0)
    assert len(set(crowd.leverage.tolist())) == crowd.members == 8
    tv = int(ep.ledger.tick_value[0])
    for k, account in enumerate(crowd.accounts.tolist()):
        pos = int(ep.ledger.position[account, 0])
        assert pos == crowd.target[k] != 0, (k, pos, crowd.target[k])
        assert ep.engine.is_active(account) is False
        lot_notional = crowd.entry_ref[k] * tv  # minor units of one lot at the decision price
        notional = abs(pos) * lot_notional
        leverage = crowd.leverage[k]
        assert crowd.entry_equity[k] == capital[k]  # first entry: equity is the deposited capital
        assert leverage * capital[k] - lot_notional < notional <= leverage * capital[k]
        assert abs(notional / capital[k] - leverage) <= lot_notional / capital[k]
        assert crowd.state[k] == HOLDING and crowd.entries[k] == 1


def _member_position(ep: Episode, crowd: LeveragedCrowd, k: int = 0) -> int:
    return int(ep.ledger.position[crowd.rows[k], crowd.instrument[k]])


def test_leveraged_trader_cuts_near_maintenance_instead_of_being_liquidated():
    lev = {"type": "leveraged", "count": 1, "capital": 10_000.0, "instruments": ["BTC-PERP"],
           "leverage": 8.0, "long_prob": 1.0, "on_margin_call": "cut", "cut_ratio": 1.5, "cut_fraction": 0.5}
    crash = {"paths": {"shocks": [{"kind": "crash", "underlyings": ["BTC"], "start": 30.0, "drop": 0.09,
                                   "duration": 20.0}]}}
    ep = episode(MAKER, lev, **crash)
    start(ep)
    (t,) = of(ep, LeveragedCrowd)
    ep.world.run(until=25.0)
    opened = _member_position(ep, t)
    assert opened > 0
    ep.world.run(until=120.0)
    assert t.cuts[0] >= 1
    assert 0 < _member_position(ep, t) < opened
    assert not ep.engine.events, "cutting early kept it away from the liquidator"
    # the same trader holding on ('hold') is liquidated by the same move
    held = episode(MAKER, dict(lev, on_margin_call="hold"), **crash)
    start(held)
    held.world.run(until=120.0)
    assert {e.account for e in held.engine.events} == {int(of(held, LeveragedCrowd)[0].accounts[0])}


def test_leveraged_stop_loss_then_reentry_at_a_fresh_draw():
    lev = {"type": "leveraged", "count": 1, "capital": 10_000.0, "instruments": ["BTC-PERP"],
           "leverage": {"dist": "uniform", "low": 2.0, "high": 4.0}, "long_prob": 1.0, "stop_loss": 0.02,
           "reentry_prob": 1.0, "reentry_delay": 20.0}
    crash = {"paths": {"shocks": [{"kind": "crash", "underlyings": ["BTC"], "start": 30.0, "drop": 0.04,
                                   "duration": 10.0}]}}
    ep = episode(MAKER, lev, **crash)
    start(ep)
    (t,) = of(ep, LeveragedCrowd)
    ep.world.run(until=25.0)
    first = float(t.leverage[0])
    assert _member_position(ep, t) > 0 and t.entries[0] == 1
    ep.world.run(until=200.0)
    assert t.exits[0] == 1 and t.entries[0] == 2
    assert t.leverage[0] != first and _member_position(ep, t) > 0
    assert not ep.engine.events


def test_a_leveraged_group_is_one_agent_entering_each_member_once_at_its_drawn_delay():
    """Known answer: with entry delays uniform on [100, 200) every member enters once inside that
    window (none before 100 s: zero entries then), one pending event for the whole group, and
    the members' directions follow long_prob (1: all long; 0: all short)."""
    lev = {"type": "leveraged", "name": "lev", "count": 200, "capital": 10_000.0, "instruments": ["BTC-PERP"],
           "leverage": 2.0, "long_prob": 1.0, "entry_delay": {"dist": "uniform", "low": 100.0, "high": 200.0}}
    ep = episode(MAKER, lev)
    (crowd,) = of(ep, LeveragedCrowd)
    queued = len(ep.world.env._queue)
    crowd.start()
    assert len(ep.world.env._queue) == queued + 1  # the group's next entry, not one per member
    times: list[float] = []
    submit = ep.venue.submit

    def recording(account, *args, **kw):
        if account in members:
            times.append(ep.world.now)
        return submit(account, *args, **kw)

    members = set(crowd.accounts.tolist())
    ep.venue.submit = recording  # type: ignore[method-assign]
    for agent in ep.agents:
        if agent is not crowd:
            agent.start()
    ep.oracle.start()
    ep.world.run(until=99.0)
    assert crowd.entries.sum() == 0 and not times
    ep.world.run(until=260.0)
    assert crowd.entries.tolist() == [1] * 200
    assert min(times) >= 100.0 and max(times) < 200.0 + 2.0 * 5  # entries, and retries up to 5 x 2 s
    assert (crowd.side == 1.0).all() and (ep.ledger.position[crowd.accounts, 0] > 0).all()
    short = episode(MAKER, dict(lev, long_prob=0.0, count=50))
    start(short)
    short.world.run(until=260.0)
    (s,) = of(short, LeveragedCrowd)
    assert (s.side == -1.0).all() and (short.ledger.position[s.accounts, 0] < 0).all()
    directory = account_directory(ep)
    assert directory["name"][crowd.accounts].tolist() == [f"lev/{k}" for k in range(200)]
    assert set(directory["type"][crowd.accounts].tolist()) == {"leveraged"}


def test_leveraged_directions_and_instruments_follow_their_probabilities():
    """In distribution, as a lone trader draws them: the share of longs is long_prob, and each of
    two instruments gets half of the members (binomial bounds, 6 sigma)."""
    two = {"market": {"instruments": [
        {"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.01},
        {"symbol": "BTC-PERP2", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.01}]}}
    n = 4000
    lev = {"type": "leveraged", "count": n, "capital": 10_000.0, "instruments": ["BTC-PERP", "BTC-PERP2"],
           "leverage": 2.0, "long_prob": 0.7}
    ep = episode(lev, **two)
    (crowd,) = of(ep, LeveragedCrowd)
    share = float((crowd.instrument == 1).mean())
    assert abs(share - 0.5) < 6 * math.sqrt(0.25 / n)
    m = 600
    ep = episode(MAKER, dict(lev, count=m, instruments=["BTC-PERP"], entry_delay={"dist": "uniform", "low": 0.0,
                                                                                    "high": 50.0}))
    start(ep)
    ep.world.run(until=60.0)
    (crowd,) = of(ep, LeveragedCrowd)
    assert crowd.entries.tolist() == [1] * m
    assert abs(float((crowd.side == 1.0).mean()) - 0.7) < 6 * math.sqrt(0.21 / m)
    assert (crowd.side != 0).all()


# ------------------------------------------------------------------------------------ delta hedger
OPTIONS = {"market": {"instruments": [
    {"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.01},
    {"symbol": "BTC-C-50000", "kind": "option", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.1,
     "strike": 50_000.0, "option_type": "call", "expiry": 2_592_000.0},
    {"symbol": "BTC-P-50000", "kind": "option", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.1,
     "strike": 50_000.0, "option_type": "put", "expiry": 2_592_000.0},
]}, "paths": {"dt": 1.0, "models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0, "vol": 2.0}]}],
              "shocks": [{"kind": "crash", "underlyings": ["BTC"], "start": 60.0, "drop": 0.08, "duration": 60.0}]},
    "oracle": {"sample_interval": 1.0, "heartbeat": 5.0, "deviation": 0.0, "mark_basis_cap": 0.0},
    "vol_surfaces": {"BTC": {"atm_vol": 0.6}}}


def test_delta_hedger_keeps_net_delta_within_its_band_on_a_moving_path():
    hedger = {"type": "delta_hedger", "count": 1, "capital": 5_000_000.0,
              "instruments": ["BTC-C-50000", "BTC-P-50000", "BTC-PERP"], "position": "short_call", "lots": 200,
              "band": 0.5, "open_options": False}
    ep = episode(dict(MAKER, size=2000), hedger, **OPTIONS)  # deep enough for the first, large hedge
    h = of(ep, DeltaHedger)[0]
    writer = ep.ledger.open_account()
    ep.ledger.deposit(writer, QUOTE, 10**15)
    ep.venue.resting.ensure(ep.ledger.n_accounts)
    ep.house.grow()
    # the hedger is short 200 calls (20 BTC of underlying) bought by another account at the mark
    ep.ledger.trade(writer, h.account, 1, int(round(ep.marks.ticks[1])), 200)
    start(ep)
    unhedged, samples = [], []
    t = 0.5
    while t < 180.0:
        ep.world.run(until=t)
        samples.append(h.net_delta())
        per_lot = h.monitor.deltas_per_lot()
        unhedged.append(-200 * per_lot[1])
        t += 1.0
    samples = np.array(samples[2:])  # the first hedge goes out with the first publication (t=1)
    assert h.rebalances >= 5
    assert np.ptp(unhedged) > 5 * 0.5, "the path must move the option delta well beyond the band"
    half_lot = 0.5 * float(ep.table.contract_units[0])
    assert np.max(np.abs(samples)) <= 0.5 + half_lot, np.max(np.abs(samples))


# ------------------------------------------------------------------------------------ auction bidders
def test_bidder_out_of_capital_bids_none_or_zero():
    groups = [
        MAKER,
        {"type": "auction_bidder", "name": "rich", "count": 1, "capital": 5_000_000.0},
        {"type": "auction_bidder", "name": "poor", "count": 1, "capital": 1_000.0},
        {"type": "auction_bidder", "name": "zero", "count": 1, "capital": 1_000.0, "zero_bidder": True},
    ]
    ep = episode(*groups)
    start(ep)
    rich, poor, zero = of(ep, AuctionBidder)
    assert ep.engine.bidders == [rich, poor, zero]
    marks_value = ep.marks.ticks * ep.ledger.tick_value
    small, large = np.array([-20.0]), np.array([-400.0])  # 0.2 BTC and 4 BTC (10k$, 200k$)
    assert poor.auction_discount(large, marks_value) is None
    assert zero.auction_discount(large, marks_value) == 1.0
    d_small = rich.auction_discount(small, marks_value)
    d_large = rich.auction_discount(large, marks_value)
    assert d_small is not None and d_large is not None
    assert 0.0 < d_small < d_large <= rich.cfg.max_discount


def test_bid_discount_rises_with_recent_volatility():
    bidder = {"type": "auction_bidder", "count": 1, "capital": 5_000_000.0, "vol_window": 120.0}
    calm = episode(MAKER, bidder)
    wild = episode(MAKER, bidder, paths={"dt": 1.0, "models": [
        {"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0, "vol": 3.0}]}]})
    out = []
    for ep in (calm, wild):
        start(ep)
        ep.world.run(until=120.0)
        b = of(ep, AuctionBidder)[0]
        out.append(b.auction_discount(np.array([-100.0]), ep.marks.ticks * ep.ledger.tick_value))
    assert out[0] < out[1]


def test_bidder_margin_check_leaves_the_regimes_market_memory_alone():
    """``can_carry`` values one account: it must not overwrite the open interest the caps remember
    from the last full re-valuation (only a whole-market valuation may)."""
    from clearing.causality import Cause, CauseKind

    margin = {"regime": "standard", "tiers": [{"im_rate": 0.10, "mm_rate": 0.05}],
              "open_interest_caps": {"lower": 100_000.0, "upper": 10_000_000.0}}
    ep = episode({"type": "auction_bidder", "count": 1, "capital": 5_000_000.0}, margin=margin)
    start(ep, oracle=False)
    bidder = of(ep, AuctionBidder)[0]
    longs, shorts = (ep.ledger.open_account() for _ in range(2))
    for a in (longs, shorts):
        ep.ledger.deposit(a, QUOTE, 1_000_000 * USD)
    ep.venue.resting.ensure(ep.ledger.n_accounts)
    ep.house.grow()
    ep.ledger.trade(longs, shorts, 0, 50_000, 1_000)  # 10 BTC open: 500k$ of open interest
    ep.house.revalue_all(Cause(CauseKind.ORACLE, 0, 0.0))
    remembered = ep.house.regime._last_oi.copy()
    assert remembered[0] > 0
    assert bidder.can_carry(np.array([-400.0]))
    assert np.array_equal(ep.house.regime._last_oi, remembered)


# ------------------------------------------------------------------------------------ noise
def test_noise_arrival_rate_matches_its_poisson_intensity():
    rate, horizon, n = 0.2, 1000.0, 10
    noise = {"type": "noise", "count": n, "capital": 1_000_000.0, "instruments": ["BTC-PERP"], "rate": rate,
             "market_prob": 0.0, "order_lifetime": 5.0}
    ep = episode(noise)
    start(ep, oracle=False)
    ep.world.run(until=horizon)
    (crowd,) = of(ep, NoiseCrowd)  # the group is one agent over its members' accounts
    counts = crowd.member_orders
    assert counts.sum() == crowd.orders_sent == ep.venue.counts["orders"]
    expected = rate * horizon
    # the total of n Poisson(rate x T) counts: mean n rate T, std sqrt(n rate T)
    assert abs(counts.sum() - n * expected) < 4 * math.sqrt(n * expected), counts
    assert counts.var() < 3 * expected  # dispersion of a Poisson count is its mean


def test_noise_orders_expire_after_their_lifetime_from_one_pending_timer():
    lifetime = 5.0
    # limit orders 50-100 bps behind the touch on their own side: they rest until they expire
    noise = {"type": "noise", "count": 200, "capital": 1_000_000.0, "instruments": ["BTC-PERP"], "rate": 0.05,
             "market_prob": 0.0, "order_lifetime": lifetime, "max_position": None,
             "limit_offset_bps": {"dist": "uniform", "low": 50.0, "high": 100.0}}
    ep = episode(MAKER, noise)
    sent: dict[int, float] = {}
    submit = ep.venue.submit

    def recording(account, instrument, side, price, lots, tif=0, reduce_only=False, reply=None):
        oid = submit(account, instrument, side, price, lots, tif, reduce_only, reply)
        sent[oid] = ep.world.now
        return oid

    ep.venue.submit = recording  # type: ignore[method-assign]
    start(ep, oracle=False)
    (crowd,) = of(ep, NoiseCrowd)
    book = ep.venue.books[0]
    for t in (50.0, 120.0, 300.0):
        ep.world.run(until=t)
        mine = [o for a in crowd.accounts.tolist() for o in book.orders_of(a)]
        assert mine, "the noise orders rest"
        # none older than its lifetime (plus the cancel's trip), and every resting one has its timer
        assert all(t - sent[o.order_id] <= lifetime + 0.002 for o in mine)
        due = {oid for _, _, oid, _ in crowd._expiries}
        assert {o.order_id for o in mine} <= due
        # the crowd's pending events: its next arrival and one timer, not one per resting order
        pending = [e for e in ep.world.env._queue
                   if isinstance(e[3], tuple) and getattr(e[3][0], "__self__", None) is crowd]
        assert len(pending) == 2 and len(crowd._expiries) > 5
    assert ep.venue.counts["cancels"] > 100


def test_noise_max_orders_gives_the_abides_single_order_agent():
    noise = {"type": "noise", "count": 50, "capital": 100_000.0, "instruments": ["BTC-PERP"], "rate": 0.01,
             "max_orders": 1}
    ep = episode(noise)
    start(ep, oracle=False)
    ep.world.run(until=5000.0)
    (crowd,) = of(ep, NoiseCrowd)
    assert crowd.member_orders.tolist() == [1] * 50
    assert crowd.n_active == 0  # every member retired, and the group's process stopped
    assert ep.venue.counts["orders"] == 50


# ------------------------------------------------------------------------------------ value
def _value(**kw: Any) -> dict[str, Any]:
    return {"type": "value", "name": "val", "capital": 1_000_000.0, "instruments": ["BTC-PERP"], **kw}


def test_a_value_group_is_one_agent_one_pending_event_and_one_pair_of_links():
    ep = episode(MAKER, _value(count=300, rate=0.01))
    (crowd,) = of(ep, ValueCrowd)
    assert crowd.members == 300
    queued = len(ep.world.env._queue)
    crowd.start()
    assert len(ep.world.env._queue) == queued + 1  # the group's next wake-up, not one per member
    links_in, links_out = ep.venue._links_in, ep.venue._links_out
    accounts = crowd.accounts.tolist()
    assert len({id(links_in[a]) for a in accounts}) == 1 and len({id(links_out[a]) for a in accounts}) == 1
    streams = ep.world.streams._cache
    assert "venue/latency-in/group/val" in streams and "venue/latency-out/group/val" in streams
    assert not any(f"venue/latency-in/{a}" in streams or f"venue/latency-out/{a}" in streams for a in accounts)
    directory = account_directory(ep)
    assert directory["name"][crowd.accounts].tolist() == [f"val/{k}" for k in range(300)]
    assert set(directory["type"][crowd.accounts].tolist()) == {"value"}


def test_value_wake_ups_match_each_members_poisson_intensity():
    rate, horizon, n = 0.05, 2000.0, 20
    ep = episode(MAKER, _value(count=n, rate=rate))
    start(ep, oracle=False)
    ep.world.run(until=horizon)
    (crowd,) = of(ep, ValueCrowd)
    counts = crowd.wakes
    expected = rate * horizon
    # the total of n Poisson(rate x T) counts: mean n rate T, std sqrt(n rate T)
    assert abs(counts.sum() - n * expected) < 4 * math.sqrt(n * expected), counts
    assert counts.var() < 3 * expected  # dispersion of a Poisson count is its mean
    assert (counts > 0).all()
    # each member's belief was last updated at its own last wake-up, inside the run
    assert (crowd.last_t > 0).all() and (crowd.last_t <= horizon).all()


def test_value_belief_update_known_answers():
    # no prior dynamics: equal prior and observation variances move the mean halfway and halve the variance
    assert propagate_and_update(0.0, 1.0, 5.0, 2.0, 0.0, 0.0, 0.0, 1.0) == (1.0, 0.5)
    # no mean reversion: the variance grows by diffusion x dt before the update
    m, v = propagate_and_update(0.0, 1.0, 3.0, 4.0, 0.0, 0.0, 1.0, 4.0)  # v: 1 + 3 = 4, gain 1/2
    assert (m, v) == (2.0, 2.0)
    # a noiseless observation is believed outright
    assert propagate_and_update(7.0, 3.0, 1.0, 9.0, 5.0, 0.1, 0.2, 0.0) == (9.0, 0.0)
    # long after the last look: the prior has reverted to r_bar with the stationary variance s^2 / (2 kappa)
    kappa, diffusion, n2 = 0.01, 0.5, 25.0
    m, v = propagate_and_update(130.0, 1.0, 1e6, 100.0, 100.0, kappa, diffusion, n2)
    stationary = diffusion / (2 * kappa)
    assert m == pytest.approx(100.0) and v == pytest.approx(stationary * n2 / (stationary + n2))
    # zero elapsed time: the same as a plain Kalman update
    m, v = propagate_and_update(10.0, 4.0, 0.0, 20.0, 0.0, kappa, diffusion, 4.0)
    assert (m, v) == (15.0, 2.0)


def _sides(ep: Episode, until: float) -> list[int]:
    sides: list[int] = []
    submit = ep.venue.submit

    def recording(account, instrument, side, price, lots, tif=0, reduce_only=False, reply=None):
        if account != ep.agents[0].account:  # not the maker
            sides.append(side)
        return submit(account, instrument, side, price, lots, tif, reduce_only, reply)

    ep.venue.submit = recording  # type: ignore[method-assign]
    start(ep, oracle=False)
    ep.world.run(until=until)
    return sides


@pytest.mark.parametrize("r_bar, side", [(60_000.0, BUY), (40_000.0, SELL)])
def test_value_traders_trade_toward_their_belief(r_bar, side):
    # a fixed belief (no prior uncertainty, no diffusion: the observations get no weight) away from
    # the index of 50,000: every order is on the belief's side
    ep = episode(MAKER, _value(count=10, rate=0.05, r_bar=r_bar, prior_std=0.0, belief_vol=0.0, max_position=None))
    sides = _sides(ep, 600.0)
    assert len(sides) > 100 and set(sides) == {side}
    (crowd,) = of(ep, ValueCrowd)
    assert np.allclose(crowd.estimate, r_bar) and (crowd.v == 0.0).all()


def test_value_traders_keep_at_most_one_resting_order_each():
    # passive orders up to two spreads from the touch mostly rest; each wake-up cancels the member's previous one
    ep = episode(MAKER, _value(count=5, rate=0.2, r_bar=60_000.0, prior_std=0.0, belief_vol=0.0,
                               aggressive_prob=0.0, depth_spread=2.0, max_position=None))
    start(ep, oracle=False)
    ep.world.run(until=300.0)
    (crowd,) = of(ep, ValueCrowd)
    assert crowd.wakes.sum() > 100
    book = ep.venue.books[0]
    assert ep.venue.counts["cancels"] > 0
    # a cancel leaves before the next order on the same link and arrives first (constant latency)
    assert all(len(book.orders_of(a)) <= 1 for a in crowd.accounts.tolist())
    assert sum(len(book.orders_of(a)) for a in crowd.accounts.tolist()) > 0  # passive orders do rest


# ------------------------------------------------------------------------------------ determinism
MIXED = [
    MAKER,
    {"type": "noise", "count": 20, "capital": 200_000.0, "instruments": ["BTC-PERP"], "rate": 0.2},
    {"type": "value", "count": 5, "capital": 500_000.0, "instruments": ["BTC-PERP"], "rate": 0.1},
    {"type": "momentum", "count": 3, "capital": 500_000.0, "instruments": ["BTC-PERP"], "interval": 2.0,
     "short_window": 3, "long_window": 6},
    {"type": "basis_arb", "count": 1, "capital": 1_000_000.0, "instruments": ["BTC-PERP"]},
    {"type": "leveraged", "count": 5, "capital": {"dist": "lognormal", "mean": 20_000.0, "sigma": 0.5},
     "instruments": ["BTC-PERP"], "leverage": {"dist": "uniform", "low": 1.0, "high": 6.0},
     "entry_delay": {"dist": "uniform", "low": 0.0, "high": 30.0}},
]


def _order_log(ep: Episode, until: float) -> list[tuple]:
    log: list[tuple] = []
    submit = ep.venue.submit

    def recording(account, instrument, side, price, lots, tif=0, reduce_only=False, reply=None):
        log.append((round(ep.world.now, 9), account, instrument, side, price, lots, int(tif), reduce_only))
        return submit(account, instrument, side, price, lots, tif, reduce_only, reply)

    ep.venue.submit = recording  # type: ignore[method-assign]
    start(ep)
    ep.world.run(until=until)
    return log


def test_same_seed_same_orders_and_a_new_group_perturbs_no_one():
    paths = {"paths": {"dt": 1.0, "models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0,
                                                                                "vol": 0.8}]}]}}
    a = _order_log(episode(*MIXED, **paths), 120.0)
    b = _order_log(episode(*MIXED, **paths), 120.0)
    assert len(a) > 200
    assert a == b
    c = _order_log(episode(*MIXED, seed=8, **paths), 120.0)
    assert a != c
    # adding a group changes no other agent's draws: same capitals, same leverage draws, same instruments
    base = episode(*MIXED, **paths)
    more = episode(*MIXED, {"type": "noise", "name": "extra", "count": 7, "instruments": ["BTC-PERP"]}, **paths)
    for x, y in zip(base.agents, more.agents):
        assert x.name == y.name
        assert base.ledger.cash[x.account, QUOTE] == more.ledger.cash[y.account, QUOTE]
    for x, y in zip(of(base, NoiseCrowd), of(more, NoiseCrowd)):  # a noise group's draws are its own
        assert x.accounts.tolist() == y.accounts.tolist()
        assert [x._gap() for _ in range(5)] == [y._gap() for _ in range(5)]


# ------------------------------------------------------------------------------------ wiring
def test_backstop_provider_is_the_vault_and_unwinds():
    groups = [MAKER, {"type": "backstop_provider", "capital": 2_000_000.0, "unwind_interval": 10.0,
                      "unwind_fraction": 0.5}]
    ep = episode(*groups, clearing={"liquidation": {"backstop": {"enabled": True}}})
    vault = ep.backstop_account
    assert vault is not None and ep.engine.backstop_account == vault
    provider = [a for a in ep.agents if getattr(a, "is_vault", False)]
    assert [p.account for p in provider] == [vault]
    other = ep.ledger.open_account()
    ep.ledger.deposit(other, QUOTE, 10**15)
    ep.venue.resting.ensure(ep.ledger.n_accounts)
    ep.house.grow()
    ep.ledger.trade(vault, other, 0, 50_000, 40)  # as if handed a liquidated long
    start(ep)
    ep.world.run(until=10.5)
    assert ep.ledger.position[vault, 0] == 20
    ep.world.run(until=20.5)
    assert ep.ledger.position[vault, 0] == 10


@pytest.mark.parametrize("side", [BUY, SELL])
def test_basis_arbitrageur_trades_the_book_back_toward_the_index(side):
    arb = {"type": "basis_arb", "count": 1, "capital": 5_000_000.0, "instruments": ["BTC-PERP"], "poisson": False,
           "interval": 1.0, "threshold_bps": 5.0, "size": 50, "max_position": 500, "unwind": False}
    ep = episode(arb)
    a = ep.agents[0]
    mispriced = ep.ledger.open_account()
    ep.ledger.deposit(mispriced, QUOTE, 10**13)
    ep.venue.resting.ensure(ep.ledger.n_accounts)
    ep.house.grow()
    # someone rests 100 lots 1% through the index on the other side of what the arb will do
    price = 50_500 if side == SELL else 49_500
    ep.venue.execute(ep.venue.new_order_id(), mispriced, 0, -side, price, 100, check_risk=False)
    start(ep, oracle=False)
    ep.world.run(until=1.5)
    assert a.position(0) == side * 50
    ep.world.run(until=2.5)
    assert a.position(0) == side * 100
    book = ep.venue.books[0]
    assert book.best_bid() is None and book.best_ask() is None


def test_leverage_beyond_initial_margin_is_cut_to_what_the_check_accepts():
    lev = {"type": "leveraged", "count": 1, "capital": 20_000.0, "instruments": ["BTC-PERP"], "leverage": 15.0,
           "long_prob": 1.0}
    ep = episode(MAKER, lev)  # IM 10%: at most ~10x, less the slippage allowance the check charges
    start(ep)
    ep.world.run(until=5.0)
    (t,) = of(ep, LeveragedCrowd)
    realised = _member_position(ep, t) * t.entry_ref[0] * int(ep.ledger.tick_value[0]) / t.entry_equity[0]
    assert 9.0 < realised < 10.0, realised
    assert ep.venue.counts["rejects"] == 0
    blind = episode(MAKER, dict(lev, fit_to_margin=False))
    start(blind)
    blind.world.run(until=5.0)
    assert _member_position(blind, of(blind, LeveragedCrowd)[0]) == 0
    assert blind.venue.counts["rejects"] >= 1


def test_market_maker_pulls_quotes_on_a_steady_slide():
    mm_cfg = dict(MAKER, withdraw_vol=50.0, withdraw_move=0.03, move_window=120.0, reentry_calm=60.0,
                  interval=1.0, poisson=False)
    ep = episode(mm_cfg)
    start(ep, oracle=False)
    mm = of(ep, MarketMaker)[0]
    index, world = ep.oracle.index, ep.world
    world.run(until=5.5)
    s0 = float(index[0])
    for k in range(100):  # -0.05% a second: little realised vol, a 3% slide within 60 s
        index[0] = s0 * (1 - 0.0005 * (k + 1))
        world.run(until=world.now + 1.0)
        if not mm.quoting:
            break
    assert not mm.quoting and mm.vol < 50.0 and mm.move > 0.03
    assert 0.03 < 1 - index[0] / s0 < 0.035
    world.run(until=world.now + 100.0)
    assert not mm.quoting, "still inside the window of the move"
    world.run(until=world.now + 200.0)
    assert mm.quoting


# ------------------------------------------------------------------------------------ venue prints
@pytest.mark.parametrize("reference, weight, centre", [
    ("index", 0.5, 50_000),   # control: the index alone
    ("blend", 0.5, 49_500),   # halfway between the index and the last trade
    ("blend", 0.25, 49_750),
    ("last", 0.5, 49_000),
])
def test_market_maker_centres_on_the_venue_last_trade_when_told(reference, weight, centre):
    ep = episode(dict(MAKER, levels=1, size=10, half_spread_bps=2.0, reference=reference, reference_weight=weight,
                      interval=1.0, poisson=False))
    ep.venue.last_price[0] = 49_000  # the venue printed 2% below the index
    start(ep, oracle=False)
    ep.world.run(until=1.5)
    book = ep.venue.books[0]
    assert (book.best_bid() + book.best_ask()) / 2 == centre


@pytest.mark.parametrize("reference, panics", [("last", 1), ("mid", 0)])
def test_panic_seller_triggers_on_the_venue_last_trade_not_only_the_index(reference, panics):
    from agents.momentum import MomentumTrader

    group = {"type": "momentum", "name": "panic", "count": 1, "capital": 1_000_000.0, "instruments": ["BTC-PERP"],
             "interval": 1.0, "poisson": False, "panic_drop": 0.03, "panic_size": 1, "panic_cooldown": 1000.0,
             "reference": reference}
    ep = episode(group)
    ep.venue.last_price[0] = 50_000
    start(ep, oracle=False)
    ep.world.run(until=5.5)
    ep.venue.last_price[0] = 48_000  # a 4% lower print; the index and the (empty) book have not moved
    ep.world.run(until=10.5)
    assert of(ep, MomentumTrader)[0].panics == panics
