"""The public trade tape: traded volume per instrument, split by aggressor side.

One listener on the venue for the whole population (not one per agent): each fill adds to two
integer counters. Agents that size by volume (the adaptive market maker's ``pov``) or skew by the
trade imbalance read the counters' change since their last look. Complexity: O(1) per fill.
"""

from __future__ import annotations

from sim.core.phases import Phase
from sim.market.venue import Venue
from sim.core.orders import Fill, FillFlag

_OUTSIDE = int(FillFlag.EXTERNAL)  # a plain int: IntFlag's & runs in Python, once per fill


class MarketTape:
    """Cumulative buyer- and seller-initiated lots per instrument."""

    __slots__ = ("buy_volume", "sell_volume", "trades")

    def __init__(self, n_instruments: int) -> None:
        # plain lists: one element changes per fill, where numpy's per-element cost is the point
        self.buy_volume = [0] * n_instruments
        self.sell_volume = [0] * n_instruments
        self.trades = 0

    def on_fill(self, fill: Fill, maker_fee: int, taker_fee: int) -> None:
        if int(fill.flags) & _OUTSIDE:
            return  # the no-feedback twin's liquidations happen outside the market: no print
        i = fill.instrument
        if fill.aggressor_side > 0:
            self.buy_volume[i] += fill.size
        else:
            self.sell_volume[i] += fill.size
        self.trades += 1

    def attach(self, venue: Venue) -> "MarketTape":
        venue.trade_listeners.add(self.on_fill, Phase.OBSERVE)
        return self
