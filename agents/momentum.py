"""Momentum traders (the ABIDES momentum agent) and panic sellers.

At each wake-up (every ``interval`` s, Poisson by default) the agent records the reference
(book mid, the venue's last trade, or the index) in a ring buffer. Once it holds ``long_window`` observations it compares
the mean of the last ``short_window`` with the mean of the last ``long_window``: short >= long ->
buy, else sell, ``size`` lots: ``aggressive`` -- an IOC at the opposite touch; otherwise a limit
order at its own touch that replaces its previous one. Never beyond ``max_position``.

Panic: with ``panic_drop`` set, when the reference (with ``reference: last``, the venue's own
last print, so a liquidation sweeping the book can set panic off) is more than ``panic_drop`` below its highest
value over the last ``panic_window`` seconds, it market-sells ``panic_size`` lots (at most once
per ``panic_cooldown``) -- selling into a falling market, whatever the averages say.
Cost per wake-up: O(1) (running sums over the ring buffer, a small deque for the window max).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from agents.base import Agent, AgentContext, Arrivals, pick_instrument
from sim.core.orders import BUY, SELL, TimeInForce
from agents.config import MomentumGroup
from agents.distributions import Sampler

_IOC = TimeInForce.IOC  # read once: an enum class's attribute lookup costs ~0.4 us a wake-up


class MomentumTrader(Agent):
    kind = "momentum"
    __slots__ = ("cfg", "instrument", "arrivals", "size", "panic_size", "ring", "count", "short_sum", "long_sum",
                 "window", "last_panic", "panics", "signal", "last_order")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: MomentumGroup, instruments: list[int]) -> None:
        super().__init__(ctx, name, account, rng)
        self.cfg = cfg
        self.instrument = pick_instrument(instruments, rng)
        self.arrivals = Arrivals(cfg.interval, rng, cfg.poisson)
        self.size = Sampler(cfg.size, rng)
        self.panic_size = Sampler(cfg.panic_size, rng, block=8)
        self.ring = [0.0] * cfg.long_window
        self.count = 0
        self.short_sum = 0.0
        self.long_sum = 0.0
        self.window: deque[tuple[float, float]] = deque()  # (time, price), prices decreasing: a max-queue
        self.last_panic = -1e18
        self.panics = 0
        self.signal = 0
        self.last_order = 0

    def start(self) -> None:
        self.start_clock()

    def observe(self, price: float, now: float) -> None:
        cfg = self.cfg
        n, L, S = self.count, cfg.long_window, cfg.short_window
        ring = self.ring
        if n >= L:
            self.long_sum -= ring[n % L]
        if n >= S:
            self.short_sum -= ring[(n - S) % L]
        ring[n % L] = price
        self.long_sum += price
        self.short_sum += price
        self.count = n + 1
        w = self.window
        while w and w[-1][1] <= price:
            w.pop()
        w.append((now, price))
        horizon = now - cfg.panic_window
        while w[0][0] < horizon:
            w.popleft()

    def act(self) -> None:
        cfg = self.cfg
        i = self.instrument
        price = self.reference_ticks(i, cfg.reference)
        now = self.now
        self.observe(price, now)
        if cfg.panic_drop is not None and now - self.last_panic >= cfg.panic_cooldown:
            high = self.window[0][1]
            if high > 0 and price < high * (1.0 - cfg.panic_drop):
                self.last_panic = now
                self.panics += 1
                self.submit(i, SELL, 1, self.panic_size.lots(), TimeInForce.MARKET)
                return
        if self.count < cfg.long_window:
            return
        short = self.short_sum / cfg.short_window
        long_ = self.long_sum / cfg.long_window
        side = BUY if short >= long_ else SELL
        self.signal = side
        pos = self.position(i) if cfg.max_position is not None else 0
        if cfg.max_position is not None and side * pos >= cfg.max_position:
            return
        book = self.ctx.venue.books[i]
        touch = (book.best_ask() if side == BUY else book.best_bid()) if cfg.aggressive else \
            (book.best_bid() if side == BUY else book.best_ask())
        if touch is None:
            return
        lots = self.size.lots()
        if cfg.max_position is not None:
            lots = min(lots, cfg.max_position - side * pos)
        if cfg.aggressive:
            self.submit(i, side, touch, lots, _IOC)
            return
        if self.last_order and book.order(self.last_order) is not None:
            self.cancel(self.last_order, i)
        self.last_order = self.submit(i, side, touch, lots)
