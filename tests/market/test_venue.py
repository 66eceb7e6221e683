"""The venue: message latency, fees in integer minor units, price bands, market-order protection,
halts, unknown instruments, the pre-trade risk check, listeners, and the resting-size arrays
(``open_bids``/``open_asks``) kept in step with the books under a random order stream."""

from __future__ import annotations

import numpy as np
import pytest
from sim.core.phases import Phase
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sim.core.kernel import World
from sim.market.latency import Latency, LatencyConfig
from sim.core.orders import BUY, SELL, Fill, FillFlag, RejectReason, TimeInForce
from sim.market.venue_config import VenueConfig
from sim.market.venue import Venue, fee_minor

ZERO = LatencyConfig(kind="constant", mean=0.0)


def make_venue(n_instruments: int = 1, tick_values=None, position_of=None, seed: int = 0, **cfg) -> tuple[World, Venue]:
    cfg.setdefault("to_venue_latency", ZERO)
    cfg.setdefault("to_agent_latency", ZERO)
    world = World(seed)
    tv = tick_values if tick_values is not None else [1] * n_instruments
    return world, Venue(world, VenueConfig(**cfg), tv, position_of=position_of)


class Recorder:
    """Collects everything the venue tells its listeners."""

    def __init__(self, venue: Venue) -> None:
        self.trades: list[tuple[Fill, int, int]] = []
        self.rejects: list[tuple[int, RejectReason]] = []
        venue.trade_listeners.add(lambda f, m, t: self.trades.append((f, m, t)), Phase.OBSERVE)
        venue.reject_listeners.add(lambda a, r: self.rejects.append((a, r.reject)), Phase.OBSERVE)


def snapshot(venue: Venue):
    books = [(b.depth(100), sorted(o.order_id for s in (BUY, SELL) for o in b.resting_orders(s))) for b in venue.books]
    return books, venue.open_bids.copy(), venue.open_asks.copy()


def same(before, after) -> bool:
    """Two snapshots equal: every book's depth and orders, and the resting-size arrays."""
    return before[0] == after[0] and (before[1] == after[1]).all() and (before[2] == after[2]).all()


def arrivals_of(venue: Venue, world: World) -> list[float]:
    """The times orders reach the venue (an order arrives when the venue executes it)."""
    times: list[float] = []
    execute = venue.execute

    def spy(*args, **kwargs):
        times.append(world.now)
        return execute(*args, **kwargs)

    venue.execute = spy
    return times


# ------------------------------------------------------------------ latency

def test_messages_arrive_after_constant_latency_and_replies_return_after_the_outbound_one():
    world, venue = make_venue(to_venue_latency=LatencyConfig(kind="constant", mean=0.010),
                              to_agent_latency=LatencyConfig(kind="constant", mean=0.025))
    arrivals = arrivals_of(venue, world)
    replies: list[tuple[float, object]] = []
    oid = venue.submit(1, 0, BUY, 100, 5, reply=lambda r: replies.append((world.now, r)))
    assert venue.books[0].order(oid) is None  # returned at once, not yet in the book
    world.run(until=0.0099)
    assert venue.books[0].order(oid) is None and arrivals == []
    world.run(until=0.0101)
    assert venue.books[0].order(oid).size == 5
    assert venue.open_bids[1, 0] == 5
    assert arrivals == [pytest.approx(0.010)]
    world.run(until=1.0)
    assert len(replies) == 1
    t, result = replies[0]
    assert t == pytest.approx(0.035) and result.order_id == oid and result.resting_size == 5


def test_cancel_cancel_all_and_amend_also_travel_with_latency():
    world, venue = make_venue(to_venue_latency=LatencyConfig(kind="constant", mean=0.5))
    a = venue.submit(1, 0, BUY, 100, 5)
    b = venue.submit(1, 0, BUY, 99, 5)
    c = venue.submit(2, 0, SELL, 110, 5)
    world.run(until=1.0)
    venue.cancel(1, a, 0)
    venue.amend(2, c, 0, new_lots=9)
    venue.cancel_all(1)
    world.run(until=1.49)
    assert a in venue.books[0] and b in venue.books[0] and venue.books[0].order(c).size == 5
    world.run(until=1.51)
    assert a not in venue.books[0] and b not in venue.books[0] and venue.books[0].order(c).size == 9
    assert venue.open_bids[1, 0] == 0 and venue.open_asks[2, 0] == 9


def test_random_latency_delays_are_the_streams_draws():
    cfg_in = LatencyConfig(kind="exponential", mean=0.002, min=0.0005)
    cfg_out = LatencyConfig(kind="lognormal", mean=0.003, min=0.001, sigma=0.7)
    world, venue = make_venue(seed=11, to_venue_latency=cfg_in, to_agent_latency=cfg_out)
    expect_in = Latency(cfg_in, world.streams.fresh("venue/latency-in/1"))
    expect_out = Latency(cfg_out, world.streams.fresh("venue/latency-out/1"))
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}
    replied: dict[int, float] = {}
    n = 300

    def send(k: int) -> None:
        side, price = (BUY, 900) if k % 2 else (SELL, 1100)  # never crossing: every order rests
        oid = venue.submit(1, 0, side, price, 1, reply=lambda r: replied.__setitem__(r.order_id, world.now))
        sent[oid] = world.now

    for k in range(n):
        world.call_later(k * 0.0007, send, k)
    original = venue._arrive

    def spy(oid, *args):
        arrived[oid] = world.now
        original(oid, *args)

    venue._arrive = spy
    world.run(until=5.0)
    assert len(arrived) == len(replied) == n
    d_in = np.array([arrived[o] - sent[o] for o in sorted(sent)])
    # replies draw from the outbound stream in arrival order (inbound delays can reorder messages)
    d_out = np.array([replied[o] - arrived[o] for o in sorted(sent, key=arrived.__getitem__)])
    assert d_in == pytest.approx([expect_in.next() for _ in range(n)], abs=1e-12)
    assert d_out == pytest.approx([expect_out.next() for _ in range(n)], abs=1e-12)
    assert d_in.min() >= 0.0005 and d_out.min() >= 0.001
    assert len(set(np.round(d_in, 12))) > n * 0.9  # really random, not constant
    assert 0.0015 < d_in.mean() < 0.0025


def test_an_account_without_replies_opens_no_outbound_stream_and_a_late_one_draws_from_its_start():
    cfg = LatencyConfig(kind="exponential", mean=0.002)
    world, venue = make_venue(seed=3, to_venue_latency=cfg, to_agent_latency=cfg)
    venue.submit(1, 0, BUY, 900, 1)  # no reply: only the inbound link is used
    world.run(until=1.0)
    opened = set(world.streams._cache)
    assert "venue/latency-in/1" in opened and "venue/latency-out/1" not in opened
    # the outbound link opened later still draws the stream's own first numbers
    replied: list[float] = []
    world.call_later(0.0, lambda: venue.submit(1, 0, BUY, 901, 1, reply=lambda r: replied.append(world.now)))
    arrived = arrivals_of(venue, world)
    world.run(until=2.0)
    expected = Latency(cfg, world.streams.fresh("venue/latency-out/1")).next()
    assert replied[0] - arrived[-1] == pytest.approx(expected, abs=1e-12)


def test_random_latency_can_reorder_messages_of_one_agent():
    world, venue = make_venue(seed=1, to_venue_latency=LatencyConfig(kind="exponential", mean=0.01))
    order: list[int] = []
    orig = venue.execute  # an order arrives when the book executes it
    venue.execute = lambda oid, *a: (order.append(oid), orig(oid, *a))
    ids = [venue.submit(1, 0, BUY, 100 - k, 1, reply=None) for k in range(50)]
    world.run(until=1.0)
    assert sorted(order) == ids and order != ids


def test_each_account_has_its_own_latency_stream_so_adding_an_agent_changes_no_other_delays():
    cfg = LatencyConfig(kind="exponential", mean=0.01)

    def arrivals(extra_agent: bool) -> list[float]:
        world, venue = make_venue(seed=5, to_venue_latency=cfg)
        seen: list[float] = []
        orig = venue.execute
        venue.execute = lambda oid, a, *rest: (a == 1 and seen.append(world.now), orig(oid, a, *rest))
        for k in range(40):
            world.call_later(k * 0.003, venue.submit, 1, 0, BUY, 100 - k, 1)
            if extra_agent:
                world.call_later(k * 0.003, venue.submit, 2, 0, SELL, 200 + k, 1)
        world.run(until=2.0)
        return seen

    alone, together = arrivals(False), arrivals(True)
    assert len(alone) == 40 and alone == together


def test_cancel_and_amend_touch_only_the_senders_own_orders():
    world, venue = make_venue()
    venue.execute(1, 1, 0, BUY, 100, 5)
    replies = []
    venue.cancel(2, 1, 0)
    venue.amend(2, 1, 0, new_lots=1, reply=replies.append)
    world.run(until=1.0)
    assert venue.books[0].order(1).size == 5
    assert replies[0].reject == RejectReason.UNKNOWN_ORDER


# ------------------------------------------------------------------ fees

def test_fee_minor_rounds_charges_up_and_rebates_toward_zero():
    assert fee_minor(1_000_000, 100) == 100  # 1 bp of 1,000,000 exactly
    assert fee_minor(1_000_001, 100) == 101  # a fraction of a minor unit is charged in full
    assert fee_minor(1, 1) == 1
    assert fee_minor(0, 500) == 0
    assert fee_minor(1_000_001, -100) == -100  # rebates are never rounded in the trader's favour
    assert fee_minor(999, -100) == 0
    assert fee_minor(12_345, 0) == 0


@given(st.integers(0, 10**15), st.integers(-1000, 10_000))
def test_fee_minor_is_the_exact_fee_rounded_against_the_trader(notional, pips):
    fee = fee_minor(notional, pips)
    exact_times_1e6 = notional * pips
    assert isinstance(fee, int)
    if pips >= 0:
        assert fee * 1_000_000 >= exact_times_1e6 > (fee - 1) * 1_000_000
    else:
        assert fee <= 0
        assert abs(fee) * 1_000_000 <= -exact_times_1e6 < (abs(fee) + 1) * 1_000_000


def test_maker_and_taker_fees_are_charged_per_fill_through_trade_listeners():
    world, venue = make_venue(2, tick_values=[7, 3], maker_fee_bps=1.0, taker_fee_bps=5.0)
    rec = Recorder(venue)
    venue.execute(1, 1, 0, SELL, 10_001, 3)
    venue.execute(2, 2, 0, SELL, 10_003, 4)
    result = venue.execute(3, 3, 0, BUY, 10_003, 5)
    assert [(f.price, f.size) for f in result.fills] == [(10_001, 3), (10_003, 2)]
    (f1, m1, t1), (f2, m2, t2) = rec.trades
    assert f1 is result.fills[0] and f2 is result.fills[1]
    n1 = 10_001 * 3 * 7  # 210,021 minor units
    n2 = 10_003 * 2 * 7  # 140,042
    assert (m1, t1) == (-(-n1 * 100 // 1_000_000), -(-n1 * 500 // 1_000_000)) == (22, 106)  # ceil(21.0021), ceil(105.0105)
    assert (m2, t2) == (-(-n2 * 100 // 1_000_000), -(-n2 * 500 // 1_000_000)) == (15, 71)
    # the tick value of the instrument traded is used
    venue.execute(4, 1, 1, SELL, 50_000, 10)
    venue.execute(5, 2, 1, BUY, 50_000, 10)
    assert rec.trades[-1][1:] == (150, 750)  # 1,500,000 minor units: 1 bp / 5 bp exactly
    assert venue.counts["fills"] == 3


def test_negative_maker_fee_is_a_rebate_rounded_toward_zero():
    world, venue = make_venue(maker_fee_bps=-0.25, taker_fee_bps=2.5)
    rec = Recorder(venue)
    venue.execute(1, 1, 0, SELL, 10_001, 21)
    venue.execute(2, 2, 0, BUY, 10_001, 21)
    notional = 10_001 * 21  # 210,021
    (_, maker, taker), = rec.trades
    assert maker == -5  # -5.250525 rounded toward zero
    assert taker == 53  # 52.50525 rounded up
    assert maker == fee_minor(notional, -25) and taker == fee_minor(notional, 250)


def test_fractional_bps_are_kept_to_a_hundredth():
    world, venue = make_venue(maker_fee_bps=0.015, taker_fee_bps=0.333)
    assert (venue.maker_pips, venue.taker_pips) == (2, 33)


def test_off_book_trades_reach_trade_listeners_without_fees():
    world, venue = make_venue(maker_fee_bps=3.0)
    rec = Recorder(venue)
    fill = Fill(0, 100, 4, BUY, 0, 0, 5, 6, FillFlag.BACKSTOP)
    before = snapshot(venue)
    venue.off_book_trade(fill)
    assert rec.trades == [(fill, 0, 0)]
    assert same(before, snapshot(venue)) and venue.counts["fills"] == 1


# ------------------------------------------------------------------ price bands and market orders

@pytest.mark.parametrize("side,price", [(BUY, 1101), (SELL, 1101), (BUY, 899), (SELL, 899), (BUY, 5000)])
def test_price_band_rejects_outside_and_changes_nothing(side, price):
    world, venue = make_venue(price_band=0.10)
    venue.reference[0] = 1000.0
    venue.execute(1, 1, 0, BUY, 950, 5)
    venue.execute(2, 2, 0, SELL, 1050, 5)
    rec = Recorder(venue)
    calls = []
    venue.risk_check = lambda *a: calls.append(a) or True
    before = snapshot(venue)
    result = venue.execute(3, 3, 0, side, price, 5)
    assert result.reject == RejectReason.OUTSIDE_PRICE_BAND
    assert result.fills == [] and result.resting_size == 0
    assert rec.rejects == [(3, RejectReason.OUTSIDE_PRICE_BAND)]
    assert rec.trades == [] and calls == []
    assert same(before, snapshot(venue))


@pytest.mark.parametrize("price", [900, 1100, 1000])
def test_price_band_edges_are_inside(price):
    world, venue = make_venue(price_band=0.10)
    venue.reference[0] = 1000.0
    assert venue.execute(1, 1, 0, BUY, price, 1).accepted


def test_without_a_reference_there_is_no_band_and_liquidations_bypass_it():
    world, venue = make_venue(price_band=0.10)
    assert venue.execute(1, 1, 0, BUY, 5000, 1).accepted
    venue.reference[0] = 1000.0
    assert venue.execute(2, 1, 0, SELL, 50, 1, flags=FillFlag.LIQUIDATION).accepted


def _ladder(venue: Venue, side: int, prices: list[int], account: int = 9) -> None:
    for k, p in enumerate(prices):
        venue.execute(900 + k + (0 if side == SELL else 50), account, 0, side, p, 2)


def test_market_buy_never_fills_beyond_the_protection_price():
    world, venue = make_venue(market_protection=0.05)
    venue.reference[0] = 100.0
    _ladder(venue, SELL, [100, 103, 105, 106, 110])
    result = venue.execute(1, 1, 0, BUY, 0, 100, TimeInForce.MARKET)
    assert result.accepted
    assert [f.price for f in result.fills] == [100, 103, 105]
    assert max(f.price for f in result.fills) <= 105
    assert result.filled_size == 6 and result.cancelled_size == 94 and result.resting_size == 0
    assert venue.books[0].best_ask() == 106
    assert venue.open_bids[1, 0] == 0 and venue.open_asks[9, 0] == 4


def test_market_sell_never_fills_beyond_the_protection_price():
    world, venue = make_venue(market_protection=0.05)
    venue.reference[0] = 100.0
    _ladder(venue, BUY, [100, 97, 95, 94, 80])
    result = venue.execute(1, 1, 0, SELL, 0, 100, TimeInForce.MARKET)
    assert min(f.price for f in result.fills) == 95
    assert result.filled_size == 6 and venue.books[0].best_bid() == 94


def test_market_order_without_reference_is_protected_from_the_touch():
    world, venue = make_venue(market_protection=0.02)
    _ladder(venue, SELL, [200, 203, 204, 205])
    result = venue.execute(1, 1, 0, BUY, 0, 100, TimeInForce.MARKET)
    assert [f.price for f in result.fills] == [200, 203, 204]  # 200 x 1.02 = 204
    assert venue.books[0].best_ask() == 205


def test_market_order_on_an_empty_book_without_reference_is_rejected():
    world, venue = make_venue()
    rec = Recorder(venue)
    result = venue.execute(1, 1, 0, BUY, 0, 10, TimeInForce.MARKET)
    assert result.reject == RejectReason.OUTSIDE_PRICE_BAND
    assert rec.rejects == [(1, RejectReason.OUTSIDE_PRICE_BAND)]


def test_market_order_remainder_never_rests():
    world, venue = make_venue()
    venue.reference[0] = 100.0
    result = venue.execute(1, 1, 0, BUY, 0, 10, TimeInForce.MARKET)
    assert result.accepted and result.cancelled_size == 10
    assert len(venue.books[0]) == 0 and venue.open_bids[1, 0] == 0


# ------------------------------------------------------------------ can_fill: reading the book before sending

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([BUY, SELL]), st.integers(90, 110), st.integers(1, 4)), max_size=12),
       st.lists(st.tuples(st.sampled_from([BUY, SELL]), st.integers(80, 120),
                          st.sampled_from([TimeInForce.IOC, TimeInForce.MARKET]),
                          st.sampled_from([FillFlag.NONE, FillFlag.LIQUIDATION])), min_size=1, max_size=8),
       st.sampled_from([None, 95.0, 100.0, 105.0]), st.booleans())
def test_can_fill_says_whether_the_order_would_fill(resting, takers, reference, halted):
    """``can_fill`` is True exactly when ``execute`` of the same order then fills something --
    limits, the band for unflagged orders, market protection from the reference or the touch, a
    halt -- on a book the earlier takers have already eaten into."""
    world, venue = make_venue(price_band=0.05, market_protection=0.03)
    for k, (side, price, lots) in enumerate(resting):  # a maker book; crossing makers trade at once
        venue.execute(100 + k, 1 + k % 3, 0, side, price, lots)
    venue.reference[0] = reference
    if halted:
        venue.books[0].halt()
    for k, (side, price, tif, flags) in enumerate(takers):
        says = venue.can_fill(0, side, price, tif, flags)
        result = venue.execute(500 + k, 9, 0, side, price, 3, tif, flags=flags, check_risk=False)
        event(f"fills={bool(result.fills)}")
        assert says == bool(result.fills), (side, price, tif, flags, result)


def test_can_fill_reads_the_touch_and_changes_nothing():
    world, venue = make_venue()
    venue.execute(1, 1, 0, BUY, 99, 2)
    venue.execute(2, 1, 0, SELL, 101, 2)
    before = snapshot(venue)
    assert venue.can_fill(0, SELL, 99) and not venue.can_fill(0, SELL, 100)
    assert venue.can_fill(0, BUY, 101) and not venue.can_fill(0, BUY, 100)
    assert same(before, snapshot(venue)) and venue.counts["orders"] == 2


# ------------------------------------------------------------------ halts and unknown instruments

def test_halted_instrument_rejects_submits_and_amends_but_cancels_work():
    world, venue = make_venue(2)
    venue.execute(1, 1, 0, BUY, 100, 5)
    venue.execute(2, 1, 0, BUY, 99, 5)
    venue.execute(3, 1, 0, BUY, 98, 5)
    venue.execute(4, 1, 1, BUY, 98, 5)
    venue.halt(0)
    rec = Recorder(venue)
    replies = []
    assert venue.execute(5, 2, 0, SELL, 100, 5).reject == RejectReason.HALTED
    assert venue.execute(6, 2, 1, SELL, 98, 1).fills  # the other instrument trades on
    venue.amend(1, 1, 0, new_lots=50, reply=replies.append)
    venue.cancel(1, 2, 0)
    world.run(until=1.0)
    assert replies[0].reject == RejectReason.HALTED
    assert venue.books[0].order(1).size == 5
    assert 2 not in venue.books[0]
    assert venue.cancel_all_now(1, 0) == 2
    assert len(venue.books[0]) == 0 and venue.open_bids[1, 0] == 0
    assert rec.rejects[0] == (2, RejectReason.HALTED)
    venue.resume(0)
    assert venue.execute(7, 2, 0, SELL, 100, 5).accepted


@pytest.mark.parametrize("instrument", [2, 17, -1])
def test_unknown_instrument_is_rejected(instrument):
    world, venue = make_venue(2)
    rec = Recorder(venue)
    replies = []
    venue.submit(1, instrument, BUY, 100, 1, reply=replies.append)
    world.run(until=1.0)
    assert replies[0].reject == RejectReason.UNKNOWN_INSTRUMENT
    assert rec.rejects == [(1, RejectReason.UNKNOWN_INSTRUMENT)]
    assert all(len(b) == 0 for b in venue.books)


def test_cancel_and_amend_on_an_unknown_instrument_change_nothing_and_do_not_crash():
    world, venue = make_venue(2)
    venue.execute(1, 1, 1, BUY, 100, 5)
    replies = []
    venue.cancel(1, 1, -1)
    venue.amend(1, 1, 5, new_lots=3, reply=replies.append)
    venue.cancel_all(1, 5)
    world.run(until=1.0)
    assert venue.books[1].order(1).size == 5
    assert replies and replies[0].reject == RejectReason.UNKNOWN_INSTRUMENT


# ------------------------------------------------------------------ pre-trade risk check

class Positions:
    def __init__(self) -> None:
        self.held: dict[tuple[int, int], int] = {}

    def __call__(self, account: int, instrument: int) -> int:
        return self.held.get((account, instrument), 0)

    def on_trade(self, fill: Fill, _m: int, _t: int) -> None:
        self.held[(fill.taker_account, fill.instrument)] = self(fill.taker_account, fill.instrument) + fill.aggressor_side * fill.size
        self.held[(fill.maker_account, fill.instrument)] = self(fill.maker_account, fill.instrument) - fill.aggressor_side * fill.size


def risk_venue(refuse: bool = False):
    pos = Positions()
    world, venue = make_venue(position_of=pos)
    venue.trade_listeners.add(pos.on_trade, Phase.OBSERVE)
    calls: list[tuple] = []
    venue.risk_check = lambda *a: calls.append(a) or not refuse
    return world, venue, pos, calls


@pytest.mark.parametrize("held,side,lots,checked", [
    (0, BUY, 5, True), (0, SELL, 5, True),
    (10, BUY, 1, True), (10, SELL, 4, False), (10, SELL, 10, False), (10, SELL, 11, True),
    (-10, SELL, 1, True), (-10, BUY, 10, False), (-10, BUY, 12, True),
])
def test_risk_check_is_called_for_risk_increasing_orders_only(held, side, lots, checked):
    world, venue, pos, calls = risk_venue()
    pos.held[(3, 0)] = held
    assert venue.execute(1, 3, 0, side, 100, lots).accepted
    assert calls == ([(3, 0, side, 100, lots)] if checked else [])


def test_reduce_only_and_unchecked_orders_skip_the_risk_check():
    world, venue, pos, calls = risk_venue(refuse=True)
    pos.held[(3, 0)] = 10
    assert venue.execute(1, 3, 0, SELL, 100, 10, reduce_only=True).accepted
    assert venue.execute(2, 4, 0, BUY, 90, 5, check_risk=False).accepted
    assert calls == []


def test_refused_order_gives_risk_check_failed_and_nothing_rests_or_trades():
    world, venue, pos, calls = risk_venue(refuse=True)
    venue.risk_check = lambda *a: True
    venue.execute(1, 1, 0, SELL, 100, 5)
    venue.risk_check = lambda *a: calls.append(a) or False
    rec = Recorder(venue)
    before = snapshot(venue)
    for oid, price in ((2, 100), (3, 99)):  # one that would trade, one that would rest
        result = venue.execute(oid, 2, 0, BUY, price, 5)
        assert result.reject == RejectReason.RISK_CHECK_FAILED
        assert result.fills == [] and result.resting_size == 0
    assert same(before, snapshot(venue))
    assert rec.trades == []
    assert rec.rejects == [(2, RejectReason.RISK_CHECK_FAILED)] * 2
    assert pos.held == {}
    assert len(calls) == 2


def test_refused_order_sent_with_latency_replies_risk_check_failed():
    world, venue, pos, calls = risk_venue(refuse=True)
    replies = []
    venue.submit(1, 0, BUY, 100, 5, reply=replies.append)
    world.run(until=1.0)
    assert [r.reject for r in replies] == [RejectReason.RISK_CHECK_FAILED]
    assert len(venue.books[0]) == 0 and venue.open_bids[1, 0] == 0


def test_amend_that_increases_size_is_risk_checked_for_the_increase():
    world, venue, pos, calls = risk_venue()
    venue.execute(1, 3, 0, BUY, 100, 5)
    calls.clear()
    venue.risk_check = lambda *a: calls.append(a) or False
    replies = []
    venue.amend(3, 1, 0, new_lots=12, reply=replies.append)
    venue.amend(3, 1, 0, new_price=101, new_lots=13, reply=replies.append)
    venue.amend(3, 1, 0, new_lots=3, reply=replies.append)  # a decrease is never checked
    venue.amend(3, 1, 0, new_price=99, reply=replies.append)  # nor a price change alone
    world.run(until=1.0)
    assert [r.reject for r in replies] == [RejectReason.RISK_CHECK_FAILED] * 2 + [None, None]
    assert calls == [(3, 0, BUY, 100, 7), (3, 0, BUY, 101, 8)]
    order = venue.books[0].order(1)
    assert (order.price, order.size) == (99, 3)
    assert venue.open_bids[3, 0] == 3


def test_amend_increase_is_risk_checked_on_a_venue_without_positions():
    world, venue = make_venue()
    venue.execute(1, 3, 0, BUY, 100, 5)
    venue.risk_check = lambda *a: False
    replies = []
    venue.amend(3, 1, 0, new_lots=500, reply=replies.append)
    world.run(until=1.0)
    assert replies[0].reject == RejectReason.RISK_CHECK_FAILED
    assert venue.books[0].order(1).size == 5


def test_stacked_reducing_orders_are_risk_checked_once_they_exceed_the_position():
    world, venue, pos, calls = risk_venue(refuse=True)
    pos.held[(3, 0)] = 10
    results = [venue.execute(k, 3, 0, SELL, 200, 10) for k in range(1, 51)]
    assert results[0].accepted
    assert all(r.reject == RejectReason.RISK_CHECK_FAILED for r in results[1:])
    assert venue.open_asks[3, 0] == 10


# ------------------------------------------------------------------ listeners

def test_trade_listeners_are_called_and_each_message_changes_only_its_book():
    world, venue = make_venue(2)
    rec = Recorder(venue)
    changed = []
    for message in (lambda: venue.execute(1, 1, 1, SELL, 100, 5), lambda: venue.execute(2, 2, 1, BUY, 100, 2),
                    lambda: venue.execute(3, 2, 0, BUY, 90, 2), lambda: venue.cancel_all_now(2),
                    lambda: venue._cancel_now(1, 1, 1), lambda: venue._cancel_now(1, 1, 1)):  # the last: gone already
        before = snapshot(venue)[0]
        message()
        changed.append([i for i, book in enumerate(snapshot(venue)[0]) if book != before[i]])
    assert changed == [[1], [1], [0], [0], [1], []]
    assert len(rec.trades) == 1
    fill = rec.trades[0][0]
    assert (fill.instrument, fill.price, fill.size, fill.maker_account, fill.taker_account) == (1, 100, 2, 1, 2)
    assert venue.counts == {"orders": 3, "cancels": 3, "amends": 0, "fills": 1, "rejects": 0}


# ------------------------------------------------------------------ resting size arrays

N_ACCOUNTS = 5
N_INSTRUMENTS = 2
STP_MODES = ["cancel_newest", "cancel_oldest", "decrement_both"]
TIFS = [TimeInForce.GTC] * 4 + list(TimeInForce)

# sampled_from shrinks toward its first element: the simplest stream is every order at 100 (crossing)
PRICES = st.sampled_from([100, 99, 101, 98, 102, 90, 110])  # 90 and 110 are outside a 3% band
submits = st.tuples(st.just("submit"), st.integers(0, N_ACCOUNTS - 1), st.integers(0, N_INSTRUMENTS - 1),
                    st.sampled_from([BUY, SELL]), PRICES, st.integers(1, 6), st.sampled_from(TIFS),
                    st.sampled_from([False, False, False, True]))
cancels = st.tuples(st.just("cancel"), st.integers(0, 200))
cancel_alls = st.tuples(st.just("cancel_all"), st.integers(0, N_ACCOUNTS - 1),
                        st.one_of(st.none(), st.integers(0, N_INSTRUMENTS - 1)))
amends = st.tuples(st.just("amend"), st.integers(0, 200), st.one_of(st.none(), PRICES),
                   st.one_of(st.none(), st.integers(1, 8)))
halts = st.tuples(st.just("halt"), st.integers(0, N_INSTRUMENTS - 1), st.sampled_from([True, False, False]))
ops = st.lists(st.one_of(submits, submits, submits, submits, submits, cancels, cancels, cancel_alls, amends,
                         amends, amends, halts), min_size=10, max_size=120)


def random_ops(rng: np.random.Generator, n: int) -> list[tuple]:
    """The same op vocabulary as ``ops``, drawn uniformly (busy books, many crossings)."""
    out: list[tuple] = []
    for _ in range(n):
        u = rng.random()
        if u < 0.5:
            side = BUY if rng.random() < 0.5 else SELL
            price = 100 + int(rng.integers(-2, 3)) if rng.random() < 0.95 else (90 if side == BUY else 110)
            out.append(("submit", int(rng.integers(N_ACCOUNTS)), int(rng.integers(N_INSTRUMENTS)), side, price,
                        int(rng.integers(1, 7)), TIFS[int(rng.integers(len(TIFS)))], bool(rng.random() < 0.15)))
        elif u < 0.65:
            out.append(("cancel", int(rng.integers(400))))
        elif u < 0.7:
            out.append(("cancel_all", int(rng.integers(N_ACCOUNTS)),
                        None if rng.random() < 0.5 else int(rng.integers(N_INSTRUMENTS))))
        elif u < 0.97:
            out.append(("amend", int(rng.integers(400)),
                        None if rng.random() < 0.4 else 100 + int(rng.integers(-3, 4)),
                        None if rng.random() < 0.3 else int(rng.integers(1, 9))))
        else:
            out.append(("halt", int(rng.integers(N_INSTRUMENTS)), bool(rng.random() < 0.3)))
    return out


def check_resting(venue: Venue) -> None:
    venue.resting.ensure(N_ACCOUNTS)
    for i, book in enumerate(venue.books):
        book.check_integrity()
        for a in range(N_ACCOUNTS):
            mine = book.orders_of(a)
            bids = sum(o.size for o in mine if o.side == BUY)
            asks = sum(o.size for o in mine if o.side == SELL)
            assert (int(venue.open_bids[a, i]), int(venue.open_asks[a, i])) == (bids, asks), (a, i)
        assert venue.accounts_with_orders(i) == sorted({o.account for s in (BUY, SELL) for o in book.resting_orders(s)})


def run_stream(ops: list[tuple], stp: str, with_latency: bool, reference: float | None) -> Venue:
    """Send ``ops`` through the venue (with overlapping latency-delayed messages when asked),
    checking the resting-size arrays against the books after every step."""
    pos = Positions()
    latency = LatencyConfig(kind="uniform", mean=0.01) if with_latency else ZERO
    world, venue = make_venue(N_INSTRUMENTS, position_of=pos, self_trade_prevention=stp, price_band=0.03,
                              to_venue_latency=latency, to_agent_latency=latency)
    venue.trade_listeners.add(pos.on_trade, Phase.OBSERVE)
    fills: list[Fill] = []
    venue.trade_listeners.add(lambda fill, _m, _t: fills.append(fill), Phase.OBSERVE)
    venue.reference = [reference] * N_INSTRUMENTS
    venue.risk_check = lambda a, i, s, p, lots: lots < 6  # big risk-increasing orders are refused
    ids: list[tuple[int, int, int]] = []  # (order id, instrument, account) of every submit
    for step, op in enumerate(ops):
        kind = op[0]
        if kind == "submit":
            _, a, i, side, price, lots, tif, reduce_only = op
            ids.append((venue.submit(a, i, side, price, lots, tif, reduce_only), i, a))
        elif kind == "cancel" and ids:
            oid, i, a = ids[op[1] % len(ids)]
            venue.cancel(a, oid, i)
        elif kind == "cancel_all":
            venue.cancel_all(op[1], op[2])
        elif kind == "amend" and ids:
            oid, i, a = ids[op[1] % len(ids)]
            venue.amend(a, oid, i, op[2], op[3])
        elif kind == "halt":
            (venue.halt if op[2] else venue.resume)(op[1])
        world.run(until=(step + 1) * 0.005)  # up to 0.02 s latency: messages overlap and reorder
        check_resting(venue)
    world.run(until=len(ops) * 0.005 + 1.0)
    check_resting(venue)
    # self-trade prevention, in every mode: no account ever trades with itself
    assert all(f.maker_account != f.taker_account for f in fills)
    return venue


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, stp=st.sampled_from(STP_MODES), with_latency=st.booleans(), reference=st.sampled_from([100.0, None]))
def test_open_bids_and_asks_equal_the_books_resting_sizes(ops, stp, with_latency, reference):
    venue = run_stream(ops, stp, with_latency, reference)
    event(f"fills: {'some' if venue.counts['fills'] else 'none'}")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), stp=st.sampled_from(STP_MODES), with_latency=st.booleans())
def test_open_bids_and_asks_equal_the_books_over_long_random_streams(seed, stp, with_latency):
    stream = random_ops(np.random.default_rng(seed), 250)
    venue = run_stream(stream, stp, with_latency, 100.0)
    event(f"fills: {'>=20' if venue.counts['fills'] >= 20 else '<20'}")
    event(f"amends: {'>=30' if venue.counts['amends'] >= 30 else '<30'}")
