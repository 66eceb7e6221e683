"""Value traders (the ABIDES value agent): trade toward a noisy private estimate of the fundamental.

Each trader believes the fundamental is an Ornstein-Uhlenbeck process around ``r_bar`` (mean
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

A value group is one agent, ``ValueCrowd``, as the noise and leveraged groups are
(``agents.base.Crowd``): each member's state -- instrument, belief (m, v), time of its last look,
its resting order, its last estimate -- is one row of arrays, and the group's wake-ups are the
superposition of its members' Poisson processes (exponential gaps with mean 1 / (rate x members),
the member picked uniformly: the next arrival of n independent Poisson processes of one rate is
the first of them, equally likely any), one pending event for the group. Every draw -- capital,
instrument, gaps, picks, observation noise, aggression and size -- comes from the group's one
stream ``group/{name}`` in blocks shared by the members, so a member behaves as a lone trader
would, in distribution (not draw for draw).
"""

from __future__ import annotations

import math

import numpy as np

from agents.base import STD_NORMAL, UNIT, AgentContext, Crowd, pick_instruments
from sim.core.instruments import SECONDS_PER_YEAR
from sim.core.orders import BUY, SELL
from agents.distributions import Sampler
from agents.config import ValueGroup

_BLOCK = 1024  # draws per refill of each of the group's shared buffers


def propagate_and_update(m: float, v: float, dt: float, observed: float, r_bar: float, kappa: float,
                         diffusion: float, obs_var: float) -> tuple[float, float]:
    """One member's belief (m, v) carried ``dt`` seconds forward under the OU prior, then updated
    with one observation of variance ``obs_var`` (the Kalman gain v / (v + obs_var))."""
    if kappa > 0:
        decay = math.exp(-kappa * dt)
        m = r_bar + (m - r_bar) * decay
        v = v * decay * decay + diffusion * (1.0 - decay * decay) / (2.0 * kappa)
    else:
        v += diffusion * dt
    if obs_var <= 0.0:
        return observed, 0.0
    gain = v / (v + obs_var)
    return m + gain * (observed - m), v * obs_var / (v + obs_var)


class ValueCrowd(Crowd):
    """A whole value group: one row per member in arrays, one arrival process, shared draws.

    (``agents.base.Crowd``: ``account`` is the member acting now.) Member k trades
    ``instrument[k]``; its belief is (``m[k]``, ``v[k]``) in ticks, last updated at ``last_t[k]``;
    ``last_order[k]`` is its resting order's id (0: none); ``estimate[k]`` the value it last
    traded toward. ``r_bar``, ``diffusion`` and ``obs_var`` are per instrument (they scale with
    its ``r_bar``), set by ``start``."""

    kind = "value"
    __slots__ = ("instrument", "m", "v", "last_t", "last_order", "estimate", "wakes", "r_bar",
                 "diffusion", "obs_var", "horizon_decay", "normal", "uniform", "size")

    def __init__(self, ctx: AgentContext, name: str, rng: np.random.Generator, cfg: ValueGroup,
                 instruments: list[int], accounts: np.ndarray) -> None:
        super().__init__(ctx, name, rng, cfg, accounts)
        n = accounts.size
        self.instrument = pick_instruments(instruments, rng, n)
        self.m = np.zeros(n)
        self.v = np.zeros(n)
        self.last_t = np.zeros(n)
        self.last_order = np.zeros(n, dtype=np.int64)
        self.estimate = np.zeros(n)
        self.wakes = np.zeros(n, dtype=np.int32)  # wake-ups per member
        n_ins = len(ctx.table)
        self.r_bar = np.zeros(n_ins)
        self.diffusion = np.zeros(n_ins)  # ticks^2 per second
        self.obs_var = np.zeros(n_ins)  # ticks^2
        # how much of today's deviation from r_bar is left at the horizon (None: no projection)
        self.horizon_decay: float | None = None
        self.poisson_arrivals(_BLOCK)
        self.normal = Sampler(STD_NORMAL, rng, _BLOCK)
        self.uniform = Sampler(UNIT, rng, 2 * _BLOCK)  # at most two per order
        self.size = Sampler(cfg.size, rng, _BLOCK)

    def start(self) -> None:
        cfg = self.cfg
        if self.members == 0:
            return
        for i in np.unique(self.instrument).tolist():
            tick = float(self.ctx.table.tick_size[i])
            r_bar = cfg.r_bar / tick if cfg.r_bar is not None else self.index_ticks(i)
            self.r_bar[i] = r_bar
            self.diffusion[i] = (cfg.belief_vol * r_bar) ** 2 / SECONDS_PER_YEAR
            self.obs_var[i] = (cfg.obs_noise * r_bar) ** 2
        r_bar = self.r_bar[self.instrument]
        self.m[:] = r_bar
        self.v[:] = (cfg.prior_std * r_bar) ** 2
        self.horizon_decay = (math.exp(-cfg.kappa * cfg.horizon)
                              if cfg.horizon is not None and cfg.kappa > 0 else None)
        self.last_t[:] = cfg.start
        self.share_links()
        self.ctx.world.call_later(cfg.start + self._gap(), self._wake)

    def _gap(self) -> float:
        """The wait for the next wake-up of the members' superposed Poisson process."""
        return self.superposed_gap(self.members)

    def _wake(self) -> None:
        cfg = self.cfg
        if cfg.end is not None and self.now >= cfg.end:
            return
        n = self.members
        self.act(self.pick_member(n))
        self.ctx.world.call_later(self._gap(), self._wake)

    def update_belief(self, k: int, observed: float, now: float) -> float:
        """Propagate and update member ``k``'s belief with one noisy observation; the projected
        value (ticks)."""
        i = self.instrument.item(k)
        dt = max(now - self.last_t.item(k), 0.0)
        self.last_t[k] = now
        r_bar = self.r_bar.item(i)
        m, v = propagate_and_update(self.m.item(k), self.v.item(k), dt, observed, r_bar, self.cfg.kappa,
                                    self.diffusion.item(i), self.obs_var.item(i))
        self.m[k] = m
        self.v[k] = v
        decay = self.horizon_decay
        estimate = m if decay is None else r_bar + (m - r_bar) * decay
        self.estimate[k] = estimate
        return estimate

    def act(self, k: int) -> None:
        """One wake-up of member ``k``: cancel its resting order, update its belief, trade toward it."""
        cfg = self.cfg
        self.account = self.accounts.item(k)
        self.wakes[k] += 1
        i = self.instrument.item(k)
        book = self.ctx.venue.books[i]
        last = self.last_order.item(k)
        if last and book.order(last) is not None:
            self.cancel(last, i)
        self.last_order[k] = 0
        observed = self.index_ticks(i) * (1.0 + cfg.obs_noise * self.normal())
        value = self.update_belief(k, observed, self.now)
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
        self.last_order[k] = self.submit(i, side, max(1, price), self.size.lots())
