"""Basis arbitrageurs: pull the perpetual's book back toward the oracle index.

On each look (every ``interval`` s, Poisson by default) per instrument: if the best bid is above
index x (1 + cost) it sells into the bid, if the best ask is below index x (1 - cost) it buys the
ask, where cost = fee (``fee_bps``, default the venue's taker fee) + ``threshold_bps``. The order
is an IOC limited at the cost boundary, so it only takes liquidity that is mispriced, sized at
most ``size`` lots and never beyond ``max_position``. Its hedge (the index leg, elsewhere) is
outside the simulation, so with ``unwind`` it flattens its perp position when the opposite touch
comes back within ``unwind_bps`` of the index. Cost per look: two touch reads, at most one order.
"""

from __future__ import annotations

import math

import numpy as np

from agents.base import Agent, AgentContext, Arrivals
from sim.core.orders import BUY, SELL, TimeInForce
from agents.config import BasisArbGroup
from agents.distributions import Sampler


class BasisArbitrageur(Agent):
    kind = "basis_arb"
    __slots__ = ("cfg", "instruments", "arrivals", "size", "cost", "trades")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: BasisArbGroup, instruments: list[int]) -> None:
        super().__init__(ctx, name, account, rng)
        self.cfg = cfg
        self.instruments = instruments
        self.arrivals = Arrivals(cfg.interval, rng, cfg.poisson)
        self.size = Sampler(cfg.size, rng)
        fee = cfg.fee_bps if cfg.fee_bps is not None else ctx.venue.config.taker_fee_bps
        self.cost = (fee + cfg.threshold_bps) * 1e-4
        self.trades = 0

    def start(self) -> None:
        self.start_clock()

    def act(self) -> None:
        for i in self.instruments:
            self.look(i)

    def look(self, i: int) -> None:
        cfg = self.cfg
        book = self.ctx.venue.books[i]
        index = self.index_ticks(i)
        if index <= 0:
            return
        bid, ask = book.best_bid(), book.best_ask()
        pos = self.position(i)
        upper = index * (1.0 + self.cost)
        lower = index * (1.0 - self.cost)
        if bid is not None and bid > upper and pos > -cfg.max_position:
            lots = min(self.size.lots(), cfg.max_position + pos)
            self.submit(i, SELL, math.ceil(upper), lots, TimeInForce.IOC)
            self.trades += 1
            return
        if ask is not None and ask < lower and pos < cfg.max_position:
            lots = min(self.size.lots(), cfg.max_position - pos)
            self.submit(i, BUY, math.floor(lower), lots, TimeInForce.IOC)
            self.trades += 1
            return
        if cfg.unwind and pos != 0:
            band = cfg.unwind_bps * 1e-4
            if pos > 0 and bid is not None and bid >= index * (1.0 - band):
                self.submit(i, SELL, bid, min(pos, self.size.lots()), TimeInForce.IOC, reduce_only=True)
            elif pos < 0 and ask is not None and ask <= index * (1.0 + band):
                self.submit(i, BUY, ask, min(-pos, self.size.lots()), TimeInForce.IOC, reduce_only=True)
