"""Noise traders: Poisson arrivals of random limit orders around the reference and market orders.

A noise group is one agent, ``NoiseCrowd``, whose members are accounts in an array: the members
are exchangeable (same config, no memory beyond their account and an order count), so one object
and one pending event serve the whole group, however large (a million accounts cost a few bytes
each, not a Python object, a scheduled event and blocks of pre-drawn numbers each).

Each member arrives as a Poisson process of intensity ``rate``; the group is their superposition:
exponential gaps with mean ``1 / (rate x members still active)`` and, at each arrival, a member
picked uniformly among those still active (the next arrival of n independent Poisson processes of
one rate is the first of them, equally likely any). Every draw -- gaps, picks, and each order's
instrument, side, size, market-or-limit and offset -- comes from the group's one stream
``group/{name}`` in blocks shared by all members.

An arrival picks a side (``buy_prob``; forced toward flat beyond ``max_position``), then with
probability ``market_prob`` sends a market order, otherwise a GTC limit order ``limit_offset_bps``
away from the reference on its own side (a negative offset crosses). An unfilled limit order is
cancelled after ``order_lifetime`` seconds (the group's timers, all of one lifetime, come due in
the order they were set: one queue and one pending event for its earliest, not one per order). ``max_orders`` retires a member after that many orders
(``max_orders: 1`` gives the ABIDES noise agent, one order in its life); ``arrivals: uniform``
instead draws ``max_orders`` times per member uniformly over ``[start, end)``, which is how ABIDES
schedules them, and walks them in time order with one pending event. Cost per arrival: one
submit, at most one cancel, one scheduled wake-up.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from agents.base import UNIT, AgentContext, Crowd
from sim.core.orders import BUY, SELL, TimeInForce
from agents.config import NoiseGroup
from agents.distributions import Sampler

_BLOCK = 1024  # draws per refill of each of the group's shared buffers


class NoiseCrowd(Crowd):
    """A whole noise group: member accounts in an array, one arrival process, shared draws.

    (``agents.base.Crowd``: ``account`` is the member acting now.) ``member_orders[k]`` is member
    k's orders so far (``orders_sent``: the group's)."""

    kind = "noise"
    __slots__ = ("instruments", "member_orders", "active", "n_active", "size", "offset",
                 "uniform", "_expiries")

    def __init__(self, ctx: AgentContext, name: str, rng: np.random.Generator, cfg: NoiseGroup,
                 instruments: list[int], accounts: np.ndarray) -> None:
        super().__init__(ctx, name, rng, cfg, accounts)
        self.instruments = instruments
        self.member_orders = np.zeros(accounts.size, dtype=np.int32)
        # members still active, in the first n_active slots (a retired member is swapped past the end)
        self.active = np.arange(accounts.size, dtype=np.int64)
        self.n_active = int(accounts.size)
        self.poisson_arrivals(_BLOCK)
        self.size = Sampler(cfg.size, rng, _BLOCK)
        self.offset = Sampler(cfg.limit_offset_bps, rng, _BLOCK)
        self.uniform = Sampler(UNIT, rng, 3 * _BLOCK)  # at most three per order
        # resting limit orders' expiry timers, due time first (due, account, order id, instrument)
        self._expiries: deque[tuple[float, int, int, int]] = deque()

    def start(self) -> None:
        cfg = self.cfg
        if self.n_active == 0:
            return
        self.share_links()
        if cfg.arrivals == "uniform":
            assert cfg.end is not None and cfg.max_orders is not None
            # max_orders times per member, uniform over the window, walked in time order (a stable
            # sort: equal times keep member order)
            times = self.rng.uniform(cfg.start, cfg.end, (self.members, cfg.max_orders)).ravel()
            order = np.argsort(times, kind="stable")
            self._times = times[order].tolist()
            self._who = (order // cfg.max_orders).tolist()
            self.ctx.world.call_later(max(0.0, self._times[0] - self.now), self._scheduled)
            return
        self.ctx.world.call_later(cfg.start + self._gap(), self._wake)

    def _gap(self) -> float:
        """The wait for the next arrival of the active members' superposed Poisson process."""
        return self.superposed_gap(self.n_active)

    def _scheduled(self) -> None:
        k = self._next
        self._next += 1
        self.act(self._who[k])
        if self._next < len(self._times):
            self.ctx.world.call_later(max(0.0, self._times[self._next] - self.now), self._scheduled)
        else:
            self._times, self._who = [], []  # walked: free the lists (a million members' worth)

    def _wake(self) -> None:
        cfg = self.cfg
        if cfg.end is not None and self.now >= cfg.end:
            return
        j = self.pick_member(self.n_active)
        member = int(self.active[j])
        self.act(member)
        if cfg.max_orders is not None and self.member_orders[member] >= cfg.max_orders:
            last = self.n_active - 1  # retire it: swap it past the active ones
            self.active[j], self.active[last] = self.active[last], self.active[j]
            self.n_active = last
        if self.n_active > 0:
            self.ctx.world.call_later(self._gap(), self._wake)

    def act(self, member: int) -> None:
        """One arrival of ``member``: a market or a limit order."""
        cfg = self.cfg
        self.account = account = int(self.accounts[member])
        self.member_orders[member] += 1
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
            # one lifetime for the whole group, so the timers come due in the order they were set:
            # a queue with one pending event for its head (the same times, as now + lifetime)
            expiries = self._expiries
            due = self.now + cfg.order_lifetime
            expiries.append((due, account, oid, i))
            if len(expiries) == 1:
                self.ctx.world.call_at(due, self._expire)

    def _expire(self) -> None:
        """The earliest timer: cancel its order if it still rests, then wait for the next one."""
        expiries = self._expiries
        _, account, oid, instrument = expiries.popleft()
        if self.ctx.venue.books[instrument].order(oid) is not None:
            self.account = account
            self.cancel(oid, instrument)
        if expiries:
            self.ctx.world.call_at(expiries[0][0], self._expire)
