"""Noise traders: Poisson arrivals of random limit orders around the reference and market orders.

Each arrival (exponential gaps with mean ``1/rate``, drawn in blocks from the agent's stream)
picks a side (``buy_prob``; forced toward flat beyond ``max_position``), then with probability
``market_prob`` sends a market order, otherwise a GTC limit order ``limit_offset_bps`` away from
the reference on its own side (a negative offset crosses). An unfilled limit order is cancelled
after ``order_lifetime`` seconds. ``max_orders: 1`` gives the ABIDES noise agent (one order at a
random time); ``arrivals: uniform`` instead draws ``max_orders`` times uniformly over
``[start, end)``, which is how ABIDES schedules them. Cost per arrival: one submit, at most one
cancel, one scheduled wake-up.
"""

from __future__ import annotations

import numpy as np

from agents.base import UNIT, Agent, AgentContext, Arrivals
from sim.core.orders import BUY, SELL, TimeInForce
from agents.config import NoiseGroup, Sampler


class NoiseTrader(Agent):
    kind = "noise"
    __slots__ = ("cfg", "instruments", "arrivals", "block", "size", "offset", "uniform", "orders_left")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: NoiseGroup, instruments: list[int]) -> None:
        super().__init__(ctx, name, account, rng)
        self.cfg = cfg
        self.instruments = instruments
        self.arrivals = Arrivals(1.0 / cfg.rate, rng, True)
        # an ABIDES noise trader sends one order in its life: draw what it needs, not blocks of 64
        self.block = 64 if cfg.max_orders is None else min(64, cfg.max_orders)
        self.size = Sampler(cfg.size, rng, self.block)
        self.offset = Sampler(cfg.limit_offset_bps, rng, self.block)
        self.uniform = Sampler(UNIT, rng, 3 * self.block)  # at most three per order
        self.orders_left = -1 if cfg.max_orders is None else cfg.max_orders

    def start(self) -> None:
        cfg = self.cfg
        if cfg.arrivals == "uniform":
            assert cfg.end is not None and cfg.max_orders is not None
            times = np.sort(self.rng.uniform(cfg.start, cfg.end, cfg.max_orders))
            for t in times.tolist():
                self.ctx.world.call_later(max(0.0, t - self.now), self.act)  # pre-drawn: act, schedule nothing
            return
        self.ctx.world.call_later(cfg.start + self.arrivals.next(), self._wake)

    def _wake(self) -> None:
        cfg = self.cfg
        if cfg.end is not None and self.now >= cfg.end:
            return
        self.act()
        if self.orders_left != 0:
            self.ctx.world.call_later(self.arrivals.next(), self._wake)

    def act(self) -> None:
        """One arrival: a market or a limit order."""
        cfg = self.cfg
        if self.orders_left > 0:
            self.orders_left -= 1
        ins = self.instruments
        i = ins[0] if len(ins) == 1 else ins[int(self.uniform() * len(ins))]
        side = BUY if self.uniform() < cfg.buy_prob else SELL
        lots = self.size.lots()
        if cfg.max_position is not None:
            pos = self.position(i)
            if abs(pos) >= cfg.max_position:
                side = SELL if pos > 0 else BUY
                lots = min(lots, abs(pos))
        if self.uniform() < cfg.market_prob:
            self.submit(i, side, 1, lots, TimeInForce.MARKET)
            return
        ref = self.reference_ticks(i, cfg.reference)
        price = int(round(ref * (1.0 - side * self.offset() * 1e-4)))
        oid = self.submit(i, side, max(1, price), lots)
        if cfg.order_lifetime is not None:
            self.ctx.world.call_later(cfg.order_lifetime, self._expire, oid, i)

    def _expire(self, oid: int, instrument: int) -> None:
        if self.ctx.venue.books[instrument].order(oid) is not None:
            self.cancel(oid, instrument)
