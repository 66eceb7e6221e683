"""Pair traders: long one contract, short a correlated one, in one cross-margined account.

Under a portfolio regime that assumes the two move together, the pair needs little margin, so the
same equity carries a much larger book; when the correlation breaks, both legs lose at once.
Each agent scales in over ``slices`` steps, one slice of each leg per step, so every step is
margined as a hedge rather than as an outright; a step the pre-trade check would refuse is shrunk
to what it accepts (bisection on the house's what-if query).
"""

from __future__ import annotations

import numpy as np

from agents.base import Agent, AgentContext
from sim.core.orders import BUY, SELL, TimeInForce
from agents.config import PairTraderGroup
from agents.distributions import sample


class PairTrader(Agent):
    __slots__ = ("cfg", "legs", "sides", "targets", "leverage", "done")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: PairTraderGroup, instruments: list[int]) -> None:
        super().__init__(ctx, name, account, rng)
        self.cfg = cfg
        self.legs = list(instruments)
        flip = rng.random() < cfg.flip_prob
        self.sides = (SELL, BUY) if flip else (BUY, SELL)
        self.leverage = sample(cfg.leverage, rng)
        self.targets = (0, 0)
        self.done = 0

    def start(self) -> None:
        delay = self.cfg.start + sample(self.cfg.entry_delay, self.rng)
        self.ctx.world.call_later(delay, self._plan)

    def _plan(self) -> None:
        equity = self.equity()
        first, second = self.legs
        notional = self.leverage * equity
        lots_first = int(notional // (self.mark_ticks(first) * self.tick_value(first)))
        lots_second = int(notional * self.cfg.hedge_ratio // (self.mark_ticks(second) * self.tick_value(second)))
        self.targets = (lots_first, lots_second)
        self._step()

    def _step(self) -> None:
        cfg = self.cfg
        if self.done >= cfg.slices or (cfg.end is not None and self.now >= cfg.end):
            return
        self.done += 1
        for leg, side, target in zip(self.legs, self.sides, self.targets):
            want = target * self.done // cfg.slices - abs(self.position(leg))
            if want <= 0:
                continue
            price = self.ioc_price(leg, side, cfg.max_slippage)
            want = self.largest_accepted(leg, side, price, want)
            if want > 0:
                self.submit(leg, side, price, want, TimeInForce.IOC)
        self.ctx.world.call_later(cfg.slice_interval, self._step)
