"""Isolated margin funds a sub-account with what the clearing house's exact check asks for."""

from __future__ import annotations

import numpy as np

from sim.core.orders import BUY, TimeInForce
from tests.scenarios.harness import Scenario

ONE = {"margin": {"regime": "standard_isolated", "tiers": [{"im_rate": 0.10, "mm_rate": 0.05}]}}


def test_a_funded_order_passes_the_check_with_resting_orders_through_the_mark() -> None:
    """A sub-account with a bid resting above the mark (its open loss is held back by the check):
    the second bid is funded for IM with both orders, its own open loss and the first one's, and
    passes; the shortfall after funding is zero."""
    s = Scenario(ONE)
    owner = s.account(1_000_000)
    venue, iso, house = s.ep.venue, s.ep.isolated, s.ep.house
    sub = iso.account_for(owner, 0)
    mark = int(house.marks.ticks[0])
    price = mark + mark // 100  # 1% through the mark: an open loss of that much per lot
    for _ in range(2):
        result = venue.execute(venue.new_order_id(), sub, 0, BUY, price, 20, TimeInForce.GTC)
        assert result.reject is None, result.reject
        assert result.resting_size == 20
    assert int(venue.open_bids[sub, 0]) == 40
    assert iso.shortfall(owner, 0, BUY, price, 0 + 1, chosen=False) > 0  # one more lot needs more
    ok, equity, open_loss, im = house.bounds.exact_check(sub, 0, BUY, price, 1)
    assert not ok and np.isclose(iso.shortfall(owner, 0, BUY, price, 1, chosen=False), im + open_loss - equity)
