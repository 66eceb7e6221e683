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

from sim.orders import RejectReason, TimeInForce
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
    s = Scenario({"seed": seed, "duration": 400.0,
                  "paths": {"models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0, "vol": 2.0}]}]},
                  "venue": {"maker_fee_bps": 5.0, "taker_fee_bps": 10.0}})
    whale = s.account(10_000_000)
    traders = [s.account(600), s.account(900), s.account(1_500)]
    for k in range(1, 40):  # liquidity on both sides, 1-40 ticks around $50,000
        s.bid(whale, 50_000.0 - 10 * k, 50)
        s.ask(whale, 50_000.0 + 10 * k, 50)
    ep = s.ep
    house, venue = ep.house, ep.venue
    ep.oracle.start()
    for who, side, offset, lots, wait in steps:
        account = traders[who]
        price = max(1, int(round(float(ep.marks.ticks[0]))) + offset)
        risky = venue._increases_risk(account, 0, side, lots) and not house.liquidations.is_active(account)
        exact_ok, equity, cost, im = house._exact_check(account, 0, side, price, lots)
        result = venue.execute(venue.new_order_id(), account, 0, side, price, lots, TimeInForce.GTC)
        if risky and result.reject != RejectReason.RISK_CHECK_FAILED:
            # accepted: the exact check agrees (to the rounding of two ways of summing the same sums)
            assert exact_ok or equity - cost >= im - 1e-9 * max(im, 1.0), (account, side, price, lots)
        if wait:
            ep.world.run(until=ep.world.now + wait)
        _bounds_hold(house, traders)
    ep.world.run(until=ep.world.now + 1.0)


def _bounds_hold(house, accounts) -> None:
    """``slack`` and ``headroom`` are lower bounds of what an exact valuation finds now."""
    level = house.config.enforcement.cancel_level
    for a in accounts:
        equity, im, mm = (float(x[0]) for x in house.valuation(np.array([a])))
        tolerance = 1e-9 * max(abs(equity), im, 1.0)
        assert house.slack[a] <= equity - (mm + level * (im - mm)) + tolerance, a
        assert house.headroom[a] <= equity - im + tolerance, a
