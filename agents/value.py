"""Value traders (the ABIDES value agent): trade toward a noisy private estimate of the fundamental.

The agent believes the fundamental is an Ornstein-Uhlenbeck process around ``r_bar`` (mean
reversion ``kappa`` per second, diffusion ``belief_vol`` annualised). At each Poisson wake-up
(``rate`` per second) it:

1. propagates its belief (mean m, variance v) over the time since its last look:
   m <- r_bar + (m - r_bar) e^{-kappa dt},  v <- v e^{-2 kappa dt} + s^2 (1 - e^{-2 kappa dt}) / (2 kappa);
2. observes the published index with multiplicative noise ``obs_noise`` (its own draw) and makes
   the Kalman (Bayesian normal-normal) update: gain = v / (v + n^2);
3. projects ``horizon`` seconds ahead (r_T = r_bar + (m - r_bar) e^{-kappa horizon}) and, if r_T is
   above the book's mid, buys -- at the ask with probability ``aggressive_prob``, otherwise up to
   ``depth_spread`` spreads inside it -- or sells symmetrically below the mid.

Its previous order is cancelled first, as ABIDES value agents do. Cost per wake-up: a few floats,
at most one cancel and one order.
"""

from __future__ import annotations

import math

import numpy as np

from agents.base import STD_NORMAL, UNIT, Agent, AgentContext, Arrivals, pick_instrument
from sim.core.instruments import SECONDS_PER_YEAR
from sim.core.orders import BUY, SELL
from agents.distributions import Sampler
from agents.config import ValueGroup


class ValueTrader(Agent):
    kind = "value"
    __slots__ = ("cfg", "instrument", "arrivals", "size", "r_bar", "m", "v", "last_t", "last_order", "normal",
                 "uniform", "estimate", "book", "_diffusion", "_obs_var", "_horizon_decay")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: ValueGroup, instruments: list[int]) -> None:
        super().__init__(ctx, name, account, rng)
        self.cfg = cfg
        self.instrument = pick_instrument(instruments, rng)
        self.arrivals = Arrivals(1.0 / cfg.rate, rng, True)
        self.size = Sampler(cfg.size, rng)
        self.r_bar = 0.0
        self.m = 0.0
        self.v = 0.0
        self.last_t = 0.0
        self.last_order = 0
        self.normal = Sampler(STD_NORMAL, rng, 32)
        self.uniform = Sampler(UNIT, rng, 64)
        self.estimate = 0.0
        self.book = ctx.venue.books[self.instrument]
        self._diffusion = self._obs_var = 0.0  # set by ``start`` (they need r_bar)
        self._horizon_decay: float | None = None

    def start(self) -> None:
        cfg = self.cfg
        i = self.instrument
        tick = float(self.ctx.table.tick_size[i])
        self.r_bar = cfg.r_bar / tick if cfg.r_bar is not None else self.index_ticks(i)
        self.m = self.r_bar
        self.v = (cfg.prior_std * self.r_bar) ** 2
        self._diffusion = (cfg.belief_vol * self.r_bar) ** 2 / SECONDS_PER_YEAR  # ticks^2 per second
        self._obs_var = (cfg.obs_noise * self.r_bar) ** 2
        # how much of today's deviation from r_bar is left at the horizon (None: no projection)
        self._horizon_decay = math.exp(-cfg.kappa * cfg.horizon) if cfg.horizon is not None and cfg.kappa > 0 else None
        self.last_t = cfg.start
        self.start_clock()

    def update_belief(self, observed: float, now: float) -> float:
        """Propagate and update the belief with one noisy observation; the projected value (ticks)."""
        dt = max(now - self.last_t, 0.0)
        self.last_t = now
        k = self.cfg.kappa
        if k > 0:
            decay = math.exp(-k * dt)
            self.m = self.r_bar + (self.m - self.r_bar) * decay
            self.v = self.v * decay * decay + self._diffusion * (1.0 - decay * decay) / (2.0 * k)
        else:
            self.v += self._diffusion * dt
        n2 = self._obs_var
        if n2 <= 0.0:
            self.m, self.v = observed, 0.0
        else:
            gain = self.v / (self.v + n2)
            self.m += gain * (observed - self.m)
            self.v = self.v * n2 / (self.v + n2)
        decay_to_horizon = self._horizon_decay
        self.estimate = self.m if decay_to_horizon is None else self.r_bar + (self.m - self.r_bar) * decay_to_horizon
        return self.estimate

    def act(self) -> None:
        cfg = self.cfg
        i = self.instrument
        book = self.book
        if self.last_order and book.order(self.last_order) is not None:
            self.cancel(self.last_order, i)
        self.last_order = 0
        observed = self.index_ticks(i) * (1.0 + cfg.obs_noise * self.normal())
        value = self.update_belief(observed, self.now)
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            mid, spread = 0.5 * (bid + ask), ask - bid
        else:
            mid = self.mark_ticks(i)
            spread = 2
            bid = bid if bid is not None else int(math.floor(mid)) - 1
            ask = ask if ask is not None else int(math.ceil(mid)) + 1
        if value == mid:
            return
        side = BUY if value > mid else SELL
        if cfg.max_position is not None and side * self.position(i) >= cfg.max_position:
            return
        adjust = 0 if self.uniform() < cfg.aggressive_prob else int(self.uniform() * (cfg.depth_spread * spread + 1))
        price = ask - adjust if side == BUY else bid + adjust
        self.last_order = self.submit(i, side, max(1, price), self.size.lots())
