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

Monitoring is vectorised per group: one oracle listener reads every member's position, mark move
and equity/MM at once and calls only the agents that must act, so a thousand leveraged traders
cost one array pass per publication, not a thousand wake-ups.
"""

from __future__ import annotations

import math

import numpy as np

from sim.core.phases import Phase
from agents.base import Agent, AgentContext, pick_instrument
from sim.core.orders import BUY, SELL, TimeInForce
from agents.config import LeveragedGroup
from agents.distributions import Sampler, sample

IDLE, ENTERING, HOLDING = 0, 1, 2


class LeverageMonitor:
    """Watches every trader of one group on each oracle publication (one listener per group)."""

    __slots__ = ("ctx", "cfg", "agents", "accounts", "instrument", "side", "entry", "state", "next_ok",
                 "registered", "_buffers")

    _COLUMNS = (("accounts", np.int64), ("instrument", np.int64), ("side", np.float64),
                ("entry", np.float64), ("state", np.int8), ("next_ok", np.float64))

    def __init__(self, ctx: AgentContext, cfg: LeveragedGroup) -> None:
        self.ctx = ctx
        self.cfg = cfg
        self.agents: list[LeveragedTrader] = []
        # each column is a view of the first len(agents) rows of a buffer that doubles when full:
        # joining stays O(1) amortised (appending to the arrays made start-up quadratic in the group size)
        self._buffers = {name: np.zeros(8, dtype=dtype) for name, dtype in self._COLUMNS}
        self._expose(0)
        self.entry: np.ndarray  # entry price, ticks
        self.next_ok: np.ndarray  # no margin cut before this time
        self.registered = False

    def _expose(self, n: int) -> None:
        for name, _dtype in self._COLUMNS:
            setattr(self, name, self._buffers[name][:n])

    def join(self, agent: "LeveragedTrader") -> int:
        slot = len(self.agents)
        self.agents.append(agent)
        if slot == self._buffers["accounts"].shape[0]:
            for name, buffer in self._buffers.items():
                grown = np.zeros(2 * buffer.shape[0], dtype=buffer.dtype)
                grown[:slot] = buffer
                self._buffers[name] = grown
        for name, value in (("accounts", agent.account_for(agent.instrument)), ("instrument", agent.instrument),
                            ("side", 0.0),
                            ("entry", 0.0), ("state", IDLE), ("next_ok", 0.0)):
            self._buffers[name][slot] = value
        self._expose(slot + 1)
        if not self.registered:
            self.ctx.oracle.listeners.add(self.on_publication, Phase.OBSERVE)
            self.registered = True
        return slot

    def on_publication(self, which: np.ndarray | None = None) -> None:
        self.check()

    def check(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        if not self.agents:
            return
        rows = self.accounts
        desk = ctx.desk
        pos = ctx.ledger.position[rows, self.instrument]
        state = self.state
        holding = state == HOLDING
        act = holding & (pos == 0)  # flat: closed by itself or by a liquidation
        open_ = holding & (pos != 0) & (ctx.world.now >= self.next_ok)  # not while its last order is fresh
        if cfg.stop_loss is not None or cfg.take_profit is not None:
            mark = ctx.marks.ticks[self.instrument]
            with np.errstate(divide="ignore", invalid="ignore"):
                move = self.side * (mark / self.entry - 1.0)
            if cfg.stop_loss is not None:
                act |= open_ & (move <= -cfg.stop_loss)
            if cfg.take_profit is not None:
                act |= open_ & (move >= cfg.take_profit)
        if cfg.on_margin_call == "cut" and rows.max() < desk.equity.shape[0]:
            mm = desk.mm[rows]
            act |= open_ & (mm > 0) & (desk.equity[rows] < cfg.cut_ratio * mm)
        for k in np.flatnonzero(act):
            self.agents[k].react(int(pos[k]))


class LeveragedTrader(Agent):
    kind = "leveraged"
    __slots__ = ("cfg", "instrument", "monitor", "slot", "leverage", "target", "entry_equity", "entry_ref",
                 "retries", "reentry_delay", "entries", "exits", "cuts")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: LeveragedGroup, instruments: list[int], monitor: LeverageMonitor) -> None:
        super().__init__(ctx, name, account, rng)
        self.cfg = cfg
        self.instrument = pick_instrument(instruments, rng)
        self.monitor = monitor
        self.slot = -1
        self.leverage = 0.0
        self.target = 0
        self.entry_equity = 0.0
        self.entry_ref = 0.0
        self.retries = 0
        self.reentry_delay = Sampler(cfg.reentry_delay, rng, block=8)
        self.entries = 0
        self.exits = 0
        self.cuts = 0

    def start(self) -> None:
        self.slot = self.monitor.join(self)
        delay = self.cfg.start + sample(self.cfg.entry_delay, self.rng)
        self.ctx.world.call_later(delay, self.enter)

    # ------------------------------------------------------------------ entry
    def _ioc_price(self, side: int) -> int:
        return self.ioc_price(self.instrument, side, self.cfg.max_slippage)

    def enter(self) -> None:
        """Draw leverage and direction; send the opening IOC."""
        cfg = self.cfg
        if cfg.end is not None and self.now >= cfg.end:
            return
        i = self.instrument
        self.leverage = sample(cfg.leverage, self.rng)
        side = BUY if self.rng.random() < cfg.long_prob else SELL
        touch = self.best_ask(i) if side == BUY else self.best_bid(i)
        ref = float(touch) if touch is not None else self.mark_ticks(i)
        equity = self.equity()
        self.entry_equity = equity
        self.entry_ref = ref
        lots = int(self.leverage * equity // (ref * self.tick_value(i))) if ref > 0 else 0
        mon, k = self.monitor, self.slot
        if lots <= 0:
            mon.state[k] = IDLE
            return
        price = self._ioc_price(side)
        if cfg.fit_to_margin:
            # the largest size the pre-trade check accepts now, to within a thousandth of the draw
            lots = self.largest_accepted(i, side, price, lots, max(1, lots // 1000))
            if lots <= 0:
                mon.state[k] = IDLE
                return
        self.set_leverage(i, self.leverage)  # isolated margin: the position holds notional / leverage
        self.target = side * lots
        self.entries += 1
        self.retries = 0
        mon.state[k] = ENTERING
        mon.side[k] = side
        self.submit(i, side, price, lots, TimeInForce.IOC)
        self.ctx.world.call_later(cfg.retry_after, self._confirm)

    def _confirm(self) -> None:
        """After an opening IOC: send the remainder again, or start holding."""
        i = self.instrument
        pos = self.position(i)
        missing = self.target - pos
        mon, k = self.monitor, self.slot
        if missing != 0 and (missing > 0) == (self.target > 0) and self.retries < self.cfg.max_retries:
            self.retries += 1
            side = BUY if missing > 0 else SELL
            self.submit(i, side, self._ioc_price(side), abs(missing), TimeInForce.IOC)
            self.ctx.world.call_later(self.cfg.retry_after, self._confirm)
            return
        if pos == 0:
            mon.state[k] = IDLE
            self._maybe_reenter()
            return
        mon.state[k] = HOLDING
        mon.entry[k] = self.ctx.ledger.average_entry_ticks(self.account_for(i), i)

    # ------------------------------------------------------------------ holding
    def react(self, pos: int) -> None:
        """Called by the monitor: flat (re-entry?), stop/take-profit hit, or margin call."""
        cfg = self.cfg
        mon, k = self.monitor, self.slot
        i = self.instrument
        if pos == 0:
            mon.state[k] = IDLE
            self.exits += 1
            self._maybe_reenter()
            return
        side = SELL if pos > 0 else BUY
        mark = self.mark_ticks(i)
        move = mon.side[k] * (mark / mon.entry[k] - 1.0) if mon.entry[k] > 0 else 0.0
        stop = cfg.stop_loss is not None and move <= -cfg.stop_loss
        take = cfg.take_profit is not None and move >= cfg.take_profit
        if stop or take:
            lots = abs(pos)
        else:
            lots = max(1, int(math.ceil(cfg.cut_fraction * abs(pos))))
            self.cuts += 1
        mon.next_ok[k] = self.now + cfg.cut_cooldown
        self.submit(i, side, self._ioc_price(side), lots, TimeInForce.IOC, reduce_only=True)

    def _maybe_reenter(self) -> None:
        cfg = self.cfg
        if cfg.reentry_prob > 0 and self.rng.random() < cfg.reentry_prob:
            self.ctx.world.call_later(self.reentry_delay(), self.enter)
