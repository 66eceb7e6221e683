"""Leveraged directional traders: the accounts whose liquidations a stress episode is about.

An entry draws a leverage L (``leverage``) and a direction (``long_prob``) and buys or sells
``floor(L x equity / (price x tick_value))`` lots with an IOC limit ``max_slippage`` beyond the
touch -- so the position's notional over its equity is the drawn leverage to within one lot.
A draw beyond what initial margin allows is cut (``fit_to_margin``) to the largest size the
clearing house's pre-trade check accepts, found by bisection on that check (``leverage`` keeps
the draw; ``target`` is what was sent).
What the IOC leaves unfilled is retried every ``retry_after`` seconds (``max_retries`` times).

While it holds the position it may close it after an adverse move of ``stop_loss`` or a
favourable one of ``take_profit`` (fractions of the entry price), and with
``on_margin_call='cut'`` it sells ``cut_fraction`` of the position whenever its equity is below
``cut_ratio x MM`` (read from the clearing house's last valuation of its row) -- agents cannot
create money, so de-risking is the only defence; ``'hold'`` waits for the liquidator. Once flat
(by its own exit or a liquidation) it re-enters with probability ``reentry_prob`` after a
``reentry_delay``, at a fresh leverage on its remaining equity.

A leveraged group is one agent, ``LeveragedCrowd``, whose members' state lives in arrays (one
row per member: account, instrument, side, entry price, state, leverage, target, ...): a member
is one entry, a wait and a position, so a group of 200,000 needs no 200,000 Python objects,
random streams and pending wake-ups. The first entries (``start`` + ``entry_delay``, drawn for
every member at once) are walked in time order with one pending event; a retry check and a
re-entry are scheduled for the member concerned. Every draw -- capital, instrument, entry
delay, and at each entry its leverage and direction -- comes from the group's one stream
``group/{name}`` in blocks shared by the members, so a member behaves as a lone trader would,
in distribution (not draw for draw).

Monitoring is vectorised: one oracle listener reads every member's position, mark move and
equity/MM at once and acts only for the members that must act, so a thousand leveraged traders
cost one array pass per publication, not a thousand wake-ups.
"""

from __future__ import annotations

import math

import numpy as np

from sim.core.phases import Phase
from agents.base import UNIT, AgentContext, Crowd, pick_instruments
from sim.core.orders import BUY, SELL, TimeInForce
from agents.config import LeveragedGroup
from agents.distributions import Sampler, sample_many

IDLE, ENTERING, HOLDING = 0, 1, 2

_BLOCK = 1024  # draws per refill of each of the group's shared buffers


class LeveragedCrowd(Crowd):
    """A whole leveraged group: one row per member in arrays, one stream, one oracle listener.

    (``agents.base.Crowd``: ``account`` is the member acting now.) ``rows[k]`` is the ledger row
    member k's position is in (its isolated sub-account under isolated margin, else its account)."""

    kind = "leveraged"
    __slots__ = ("instrument", "rows", "side", "entry", "state", "next_ok", "leverage",
                 "target", "entry_equity", "entry_ref", "retries", "entries", "exits", "cuts", "_leverage",
                 "_uniform", "_reentry_delay", "_top_row")

    def __init__(self, ctx: AgentContext, name: str, rng: np.random.Generator, cfg: LeveragedGroup,
                 instruments: list[int], accounts: np.ndarray) -> None:
        super().__init__(ctx, name, rng, cfg, accounts)
        n = accounts.size
        self.instrument = pick_instruments(instruments, rng, n)
        self.rows = accounts.copy()  # set at start: under isolated margin, the sub-accounts
        self._top_row = -1  # rows.max(), fixed once rows are set at start (read per publication)
        self.side = np.zeros(n)  # +1 long, -1 short (as a float: it multiplies price moves)
        self.entry = np.zeros(n)  # entry price, ticks
        self.state = np.full(n, IDLE, dtype=np.int8)
        self.next_ok = np.zeros(n)  # no margin cut before this time
        self.leverage = np.zeros(n)  # the last entry's drawn leverage
        self.target = np.zeros(n, dtype=np.int64)  # the last entry's signed lots sent
        self.entry_equity = np.zeros(n)  # equity at the last entry (quote minor units)
        self.entry_ref = np.zeros(n)  # the touch (or mark) the last entry was sized on, ticks
        self.retries = np.zeros(n, dtype=np.int32)
        self.entries = np.zeros(n, dtype=np.int32)
        self.exits = np.zeros(n, dtype=np.int32)
        self.cuts = np.zeros(n, dtype=np.int32)
        self._leverage = Sampler(cfg.leverage, rng, _BLOCK)
        self._uniform = Sampler(UNIT, rng, _BLOCK)  # directions and re-entry coins
        self._reentry_delay = Sampler(cfg.reentry_delay, rng, 64)

    def start(self) -> None:
        n = self.members
        if n == 0:
            return
        self.share_links()
        if self.ctx.isolated is not None:  # each member's sub-account for its instrument, in member order
            for k in range(n):
                self.account = int(self.accounts[k])
                self.rows[k] = self.account_for(int(self.instrument[k]))
        self._top_row = int(self.rows.max())
        self.ctx.oracle.listeners.add(self.on_publication, Phase.OBSERVE)
        cfg = self.cfg
        # every member's first entry, walked in time order (stable: equal times keep member order)
        times = self.now + cfg.start + sample_many(cfg.entry_delay, self.rng, n)
        order = np.argsort(times, kind="stable")
        self._times = times[order].tolist()
        self._who = order.tolist()
        self._next = 0
        self.ctx.world.call_later(self._times[0] - self.now, self._scheduled)

    def _scheduled(self) -> None:
        """Every first entry due now, then one pending event for the next."""
        times, who, now = self._times, self._who, self.now
        k = self._next
        while k < len(times) and times[k] <= now:
            self.enter(who[k])
            k += 1
        self._next = k
        if k < len(times):
            self.ctx.world.call_later(times[k] - now, self._scheduled)
        else:
            self._times, self._who = [], []  # walked: free the lists

    # ------------------------------------------------------------------ entry
    def _ioc_price(self, instrument: int, side: int) -> int:
        return self.ioc_price(instrument, side, self.cfg.max_slippage)

    def enter(self, k: int) -> None:
        """Member ``k`` draws leverage and direction and sends its opening IOC."""
        cfg = self.cfg
        if cfg.end is not None and self.now >= cfg.end:
            return
        self.account = int(self.accounts[k])
        i = int(self.instrument[k])
        leverage = self.leverage[k] = self._leverage()
        side = BUY if self._uniform() < cfg.long_prob else SELL
        touch = self.best_ask(i) if side == BUY else self.best_bid(i)
        ref = float(touch) if touch is not None else self.mark_ticks(i)
        equity = self.equity()
        self.entry_equity[k] = equity
        self.entry_ref[k] = ref
        lots = int(leverage * equity // (ref * self.tick_value(i))) if ref > 0 else 0
        if lots <= 0:
            self.state[k] = IDLE
            return
        price = self._ioc_price(i, side)
        if cfg.fit_to_margin:
            # the largest size the pre-trade check accepts now, to within a thousandth of the draw
            lots = self.largest_accepted(i, side, price, lots, max(1, lots // 1000))
            if lots <= 0:
                self.state[k] = IDLE
                return
        self.set_leverage(i, leverage)  # isolated margin: the position holds notional / leverage
        self.target[k] = side * lots
        self.entries[k] += 1
        self.retries[k] = 0
        self.state[k] = ENTERING
        self.side[k] = side
        self.submit(i, side, price, lots, TimeInForce.IOC)
        self.ctx.world.call_later(cfg.retry_after, self._confirm, k)

    def _confirm(self, k: int) -> None:
        """After member ``k``'s opening IOC: send the remainder again, or start holding."""
        self.account = int(self.accounts[k])
        i = int(self.instrument[k])
        pos = self.position(i)
        target = int(self.target[k])
        missing = target - pos
        if missing != 0 and (missing > 0) == (target > 0) and self.retries[k] < self.cfg.max_retries:
            self.retries[k] += 1
            side = BUY if missing > 0 else SELL
            self.submit(i, side, self._ioc_price(i, side), abs(missing), TimeInForce.IOC)
            self.ctx.world.call_later(self.cfg.retry_after, self._confirm, k)
            return
        if pos == 0:
            self.state[k] = IDLE
            self._maybe_reenter(k)
            return
        self.state[k] = HOLDING
        self.entry[k] = self.ctx.ledger.average_entry_ticks(int(self.rows[k]), i)

    # ------------------------------------------------------------------ holding
    def on_publication(self, which: np.ndarray | None = None) -> None:
        self.check()

    def check(self) -> None:
        """Every member at once: who is flat, past a stop or take-profit, or near maintenance."""
        cfg, ctx = self.cfg, self.ctx
        rows, instrument = self.rows, self.instrument
        desk = ctx.desk
        pos = ctx.ledger.position[rows, instrument]
        holding = self.state == HOLDING
        act = holding & (pos == 0)  # flat: closed by itself or by a liquidation
        open_ = holding & (pos != 0) & (ctx.world.now >= self.next_ok)  # not while its last order is fresh
        if cfg.stop_loss is not None or cfg.take_profit is not None:
            mark = ctx.marks.ticks[instrument]
            with np.errstate(divide="ignore", invalid="ignore"):
                move = self.side * (mark / self.entry - 1.0)
            if cfg.stop_loss is not None:
                act |= open_ & (move <= -cfg.stop_loss)
            if cfg.take_profit is not None:
                act |= open_ & (move >= cfg.take_profit)
        if cfg.on_margin_call == "cut" and self._top_row < desk.equity.shape[0]:
            mm = desk.mm[rows]
            act |= open_ & (mm > 0) & (desk.equity[rows] < cfg.cut_ratio * mm)
        for k in np.flatnonzero(act).tolist():
            self.react(k, int(pos[k]))

    def react(self, k: int, pos: int) -> None:
        """Member ``k`` is flat (re-entry?), past its stop or take-profit, or on a margin call."""
        cfg = self.cfg
        self.account = int(self.accounts[k])
        i = int(self.instrument[k])
        if pos == 0:
            self.state[k] = IDLE
            self.exits[k] += 1
            self._maybe_reenter(k)
            return
        side = SELL if pos > 0 else BUY
        mark = self.mark_ticks(i)
        entry = float(self.entry[k])
        move = float(self.side[k]) * (mark / entry - 1.0) if entry > 0 else 0.0
        stop = cfg.stop_loss is not None and move <= -cfg.stop_loss
        take = cfg.take_profit is not None and move >= cfg.take_profit
        if stop or take:
            lots = abs(pos)
        else:
            lots = max(1, int(math.ceil(cfg.cut_fraction * abs(pos))))
            self.cuts[k] += 1
        self.next_ok[k] = self.now + cfg.cut_cooldown
        self.submit(i, side, self._ioc_price(i, side), lots, TimeInForce.IOC, reduce_only=True)

    def _maybe_reenter(self, k: int) -> None:
        cfg = self.cfg
        if cfg.reentry_prob > 0 and self._uniform() < cfg.reentry_prob:
            self.ctx.world.call_later(self._reentry_delay(), self.enter, k)
