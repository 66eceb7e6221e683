"""The pre-trade check's shortcut never accepts what the exact check refuses.

The clearing house accepts most orders from per-account lower bounds (``headroom``, ``slack``)
kept since the last valuation, lowered by fill costs, fees and the IM of every accepted order.
Random order flow -- three traders near their limits against a liquid book, fees, a moving price
with its publications and re-valuations -- checks that every order the venue let through (one that
could raise its account's risk) also passes the exact one-account computation made just before,
and that after every step both bounds are below what an exact valuation finds.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.health import Health, cancel_threshold, classify
from sim.core.orders import RejectReason, TimeInForce
from tests.scenarios.harness import Scenario

STEP = st.tuples(
    st.integers(0, 2),  # which trader
    st.sampled_from([1, -1]),  # side
    st.integers(-300, 300),  # limit price offset from the mark, in ticks ($1)
    st.integers(1, 12),  # lots of 0.01 BTC
    st.sampled_from([0.0, 0.0, 0.3, 2.5]),  # seconds to let pass afterwards
)


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(STEP, min_size=5, max_size=40), seed=st.integers(0, 10_000))
def test_an_order_the_venue_lets_through_passes_the_exact_check(steps, seed):
    _random_flow(steps, seed)


def test_the_flow_accepts_risky_orders_through_the_shortcut():
    """The property above means something only if orders that raise risk get accepted, some of them
    without the exact computation: a fixed flow of growing buys and sells shows both happen."""
    steps = [(k % 3, 1 if k % 2 else -1, 0, 2, 0.3) for k in range(30)]
    accepted, by_shortcut = _random_flow(steps, 7)
    assert accepted >= 10 and by_shortcut >= 5


def _random_flow(steps, seed) -> tuple[int, int]:
    """Run the flow, checking each step; return (risky orders accepted, of which by the shortcut)."""
    s = Scenario({"seed": seed, "duration": 400.0,
                  "paths": {"models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0, "vol": 2.0}]}]},
                  "venue": {"maker_fee_bps": 5.0, "taker_fee_bps": 10.0},
                  # the cancel level at IM: fees and fills away from the mark cross it between publications
                  "clearing": {"enforcement": {"cancel_level": 1.0}}})
    whale = s.account(10_000_000)
    traders = [s.account(600), s.account(900), s.account(1_500)]
    for k in range(1, 40):  # liquidity on both sides, 1-40 ticks around $50,000
        s.bid(whale, 50_000.0 - 10 * k, 50)
        s.ask(whale, 50_000.0 + 10 * k, 50)
    ep = s.ep
    house, venue = ep.house, ep.venue
    ep.oracle.start()
    accepted = by_shortcut = 0
    account_equity = house.account_equity
    for who, side, offset, lots, wait in steps:
        account = traders[who]
        price = max(1, int(round(float(ep.marks.ticks[0]))) + offset)
        risky = venue._increases_risk(account, 0, side, lots) and not house.liquidations.is_active(account)
        exact_ok, equity, open_loss, im = house.bounds.exact_check(account, 0, side, price, lots)
        valued = []  # the exact path values the account; the shortcut does not
        house.account_equity = lambda a: valued.append(a) or account_equity(a)
        result = venue.execute(venue.new_order_id(), account, 0, side, price, lots, TimeInForce.GTC)
        del house.account_equity
        if risky and result.reject != RejectReason.RISK_CHECK_FAILED:
            accepted += 1
            by_shortcut += not valued
            # accepted: the exact check agrees (to the rounding of two ways of summing the same sums)
            assert exact_ok or equity - open_loss >= im - 1e-9 * max(im, 1.0), (account, side, price, lots)
        ep.world.run(until=ep.world.now + (wait or 1e-6))  # fills' re-checks run at once
        _bounds_hold(house, traders)
    ep.world.run(until=ep.world.now + 1.0)
    return accepted, by_shortcut


def _bounds_hold(house, accounts) -> None:
    """``slack`` and ``headroom`` are lower bounds of what an exact valuation finds now, and an
    account the exact valuation puts below the cancel level is recorded so (a fill's re-check saw
    it). Below IM only need not be recorded: the pre-trade check then takes the exact computation
    anyway (its headroom is negative); a recorded state worse than the exact one is allowed too
    (not re-valued since fills or cancels improved it)."""
    level = house.config.enforcement.cancel_level
    for a in accounts:
        rows = np.array([a])
        equity, im, mm = house.valuation(rows)
        e, i, m = float(equity[0]), float(im[0]), float(mm[0])
        tolerance = 1e-9 * max(abs(e), i, 1.0)
        assert house.bounds.slack[a] <= e - (m + level * (i - m)) + tolerance, a
        assert house.bounds.headroom[a] <= e - i + tolerance, a
        exact = classify(equity, im, mm, cancel_threshold(im, mm, level), (house.exposure(rows) != 0).any(axis=1))
        assert house.health[a] >= exact[0] or exact[0] <= Health.BELOW_IM, (a, int(house.health[a]), int(exact[0]))
