"""The oracle manipulator (the Mango Markets attack, 11 October 2022).

1. At start it buys a long position on a thin perpetual (``position_leverage`` x equity).
2. From ``pump_start`` it sends aggressive buys every ``pump_interval`` seconds, each bidding
   ``pump_step`` above the touch for ``pump_notional`` x starting equity: on a thin book each one
   lifts the last traded price, and an index that weights in the venue's own price follows.
3. Every ``withdraw_interval`` seconds it withdraws whatever free collateral (equity above IM,
   unrealised profit included) the clearing house will pay out.
4. After ``pump_duration`` it stops and walks away; when the price falls back the account is
   deeply negative and its deficit is the venue's bad debt.
"""

from __future__ import annotations

import math

import numpy as np

from agents.base import Agent, AgentContext
from sim.core.orders import BUY, TimeInForce
from agents.config import ManipulatorGroup


class Manipulator(Agent):
    __slots__ = ("cfg", "instrument", "start_equity", "withdrawn")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: ManipulatorGroup, instruments: list[int]) -> None:
        super().__init__(ctx, name, account, rng)
        self.cfg = cfg
        self.instrument = instruments[0]
        self.start_equity = 0.0
        self.withdrawn = 0

    def start(self) -> None:
        self.ctx.world.call_later(self.cfg.start + 1.0, self._open)
        self.ctx.world.call_later(self.cfg.pump_start, self._pump)
        self.ctx.world.call_later(self.cfg.pump_start, self._withdraw)

    def _lots_for(self, notional_minor: float) -> int:
        i = self.instrument
        return int(notional_minor // (self.mark_ticks(i) * self.tick_value(i)))

    def _open(self) -> None:
        self.start_equity = self.equity()
        i = self.instrument
        lots = self._lots_for(self.cfg.position_leverage * self.start_equity)
        ask = self.best_ask(i)
        price = math.ceil((ask if ask is not None else self.mark_ticks(i)) * 1.02)
        while lots > 0 and not self.would_accept(i, BUY, price, lots):
            lots = lots * 3 // 4
        if lots > 0:
            self.submit(i, BUY, price, lots, TimeInForce.IOC)

    def _pump(self) -> None:
        cfg = self.cfg
        if self.now >= cfg.pump_start + cfg.pump_duration:
            return
        i = self.instrument
        ask = self.best_ask(i)
        ref = float(ask) if ask is not None else self.mark_ticks(i)
        price = math.ceil(ref * (1 + cfg.pump_step))
        lots = max(1, self._lots_for(cfg.pump_notional * self.start_equity))
        if self.would_accept(i, BUY, price, lots):
            self.submit(i, BUY, price, lots, TimeInForce.IOC)
        self.ctx.world.call_later(cfg.pump_interval, self._pump)

    def _withdraw(self) -> None:
        """Take out the paper profit (equity above the starting equity, within free collateral),
        keeping the starting capital in to carry the pump."""
        cfg = self.cfg
        desk = self.ctx.desk
        gain = self.equity() + self.withdrawn - self.start_equity
        amount = min(desk.free_collateral(self.account), gain - self.withdrawn)
        if amount > 0:
            self.withdrawn += desk.withdraw(self.account, int(amount))
        if self.now < cfg.pump_start + cfg.pump_duration + cfg.withdraw_interval:
            self.ctx.world.call_later(cfg.withdraw_interval, self._withdraw)
