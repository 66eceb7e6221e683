"""Market makers: ladders of resting quotes that thin out and vanish when the market turns.

Each requote (every ``interval`` s, or Poisson with that mean) the maker, per instrument:

1. observes the published index of the underlying and updates an exponentially weighted sum of
   squared log returns (half-life ``vol_halflife``) -- its own realised volatility estimate,
   annualised (options makers watch the underlying, not the option's price);
2. withdraws (cancels everything, stops quoting) when that vol exceeds ``withdraw_vol``, when the
   index has moved more than ``withdraw_move`` (high to low) within ``move_window`` seconds -- a
   steady slide has little realised vol but every maker knows it is being run over -- or when
   its equity has fallen ``withdraw_drawdown`` below its peak; once withdrawn it re-enters only
   after ``reentry_calm`` seconds with vol below ``reentry_vol_ratio x withdraw_vol`` and no move
   beyond ``withdraw_move`` in the window (and a fresh equity peak). Liquidity drying up in a fall
   is what turns a move into a cascade;
3. otherwise sets a half-spread = base (bps of the reference, at least ``min_half_spread_ticks``)
   x (vol/vol_ref)^vol_widen above ``vol_ref``, and a size = base x (vol_ref/vol)^size_shrink;
   with ``adaptive_spread`` (ABIDES adaptive maker) the half-spread is at least half an EWMA of
   the observed book spread, and at least ``mid_move_mult`` x an EWMA of |mid change|;
   with ``pov`` the size is that fraction of the volume traded since the last requote
   (at least ``min_size``);
4. centres the ladder on the reference (``reference``: the index by default; ``mid``, ``mark``,
   the venue's ``last`` trade, or a ``blend`` of index and last trade -- a maker that re-centres
   on the venue's own prints carries a liquidation's price impact into the next quotes) shifted against its inventory (``inventory_skew``
   half-spreads at ``max_inventory``) and toward the recent trade imbalance
   (``price_skew_ticks``), and places ``levels`` orders per side ``level_spacing`` half-spreads
   apart, dropping levels that could take |inventory| beyond ``max_inventory``.

Orders are kept in per-level slots and moved with ``amend`` (one message; nothing is sent when a
slot's price and size are unchanged), so a maker in a quiet market costs almost no events. A slot
whose order has gone (filled) is refilled with a new order. No replies are requested.
Cost per requote: O(levels) book lookups, plus one small equity computation with a drawdown rule.
"""

from __future__ import annotations

import math

import numpy as np

from collections import deque

from agents.base import Agent, AgentContext, Arrivals
from sim.core.instruments import SECONDS_PER_YEAR
from sim.core.orders import BUY, SELL
from agents.config import MarketMakerGroup
from agents.distributions import sample
from agents.tape import MarketTape

_LN2 = math.log(2.0)
_GUARD = 0.25  # seconds: a slot submitted more recently than this may still be in flight


class _Quotes:
    """Per-instrument state of one maker: vol estimate, spread EWMA, order slots."""

    __slots__ = ("instrument", "last_ref", "last_t", "var_rate", "spread_ewma", "move_ewma", "last_mid",
                 "buy_vol", "sell_vol", "bid_ids", "ask_ids", "bid_px", "ask_px", "bid_sz", "ask_sz",
                 "bid_at", "ask_at")

    def __init__(self, instrument: int, levels: int) -> None:
        self.instrument = instrument
        self.last_ref = 0.0
        self.last_t = 0.0
        self.var_rate = 0.0
        self.spread_ewma = 0.0
        self.move_ewma = 0.0
        self.last_mid = 0.0
        self.buy_vol = 0
        self.sell_vol = 0
        self.bid_ids = [0] * levels
        self.ask_ids = [0] * levels
        self.bid_px = [0] * levels
        self.ask_px = [0] * levels
        self.bid_sz = [0] * levels
        self.ask_sz = [0] * levels
        self.bid_at = [-1e18] * levels
        self.ask_at = [-1e18] * levels

    def clear(self) -> None:
        n = len(self.bid_ids)
        self.bid_ids = [0] * n
        self.ask_ids = [0] * n


class MarketMaker(Agent):
    kind = "market_maker"
    __slots__ = ("cfg", "instruments", "quotes", "arrivals", "half_spread_bps", "base_size", "quoting",
                 "calm_since", "peak_equity", "tape", "withdrawals", "requotes", "vol", "highs", "lows",
                 "move")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: MarketMakerGroup, instruments: list[int], tape: MarketTape | None = None) -> None:
        super().__init__(ctx, name, account, rng)
        self.cfg = cfg
        self.instruments = instruments
        self.half_spread_bps = sample(cfg.half_spread_bps, rng)
        self.base_size = max(1, int(round(sample(cfg.size, rng))))
        self.arrivals = Arrivals(cfg.interval, rng, cfg.poisson)
        self.quotes = [_Quotes(i, cfg.levels) for i in instruments]
        self.quoting = True
        self.calm_since = -1.0
        self.peak_equity = 0.0
        self.tape = tape
        self.withdrawals = 0
        self.requotes = 0
        self.vol = 0.0  # the largest current vol estimate over its instruments (annualised)
        # monotonic queues of (time, index) of its first instrument's underlying: window high and low
        self.highs: deque[tuple[float, float]] = deque()
        self.lows: deque[tuple[float, float]] = deque()
        self.move = 0.0  # (high - low) / high over the move window

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        index = self.ctx.marks.index
        und = self.ctx.table.underlying_index
        for q in self.quotes:
            q.last_ref = float(index[und[q.instrument]])
            q.last_t = self.cfg.start
            if self.tape is not None:
                q.buy_vol = int(self.tape.buy_volume[q.instrument])
                q.sell_vol = int(self.tape.sell_volume[q.instrument])
        self.ctx.world.call_later(self.cfg.start, self._wake)

    def _wake(self) -> None:
        now = self.now
        end = self.cfg.end
        if end is not None and now >= end:
            self._withdraw()
            return
        self.requote()
        self.ctx.world.call_later(self.arrivals.next(), self._wake)

    # ------------------------------------------------------------------ decisions
    def _observe(self, q: _Quotes, ref: float, now: float) -> float:
        """Update the vol estimate from the reference's move since the last look; annualised vol."""
        dt = now - q.last_t
        if dt > 0 and q.last_ref > 0 and ref > 0:
            r = math.log(ref / q.last_ref)
            tau = self.cfg.vol_halflife / _LN2
            decay = math.exp(-dt / tau)
            # decayed sum of squared returns over an effective window tau: a variance per second
            q.var_rate = q.var_rate * decay + (r * r) / tau
        q.last_ref = ref
        q.last_t = now
        return math.sqrt(q.var_rate * SECONDS_PER_YEAR)

    def requote(self) -> None:
        """One requote of every instrument (public so tests can drive it)."""
        cfg = self.cfg
        now = self.now
        self.requotes += 1
        index = self.ctx.marks.index  # published index per underlying: vol is the underlying's, options included
        und = self.ctx.table.underlying_index
        vols = [self._observe(q, float(index[und[q.instrument]]), now) for q in self.quotes]
        vol = max(vols) if vols else 0.0
        self.vol = vol
        moved = False
        if cfg.withdraw_move is not None and self.quotes:
            moved = self._track_move(self.quotes[0].last_ref, now) > cfg.withdraw_move
        # equity feeds only the drawdown rule: without one, no valuation per requote (~1% of the
        # 50k-account stress hour went to it)
        equity = self.equity() if cfg.withdraw_drawdown is not None else 0.0
        if equity > self.peak_equity:
            self.peak_equity = equity
        if self.quoting:
            too_volatile = cfg.withdraw_vol is not None and vol > cfg.withdraw_vol
            drawdown = (cfg.withdraw_drawdown is not None and self.peak_equity > 0
                        and equity < (1.0 - cfg.withdraw_drawdown) * self.peak_equity)
            if too_volatile or drawdown or moved:
                self._withdraw()
                return
        else:
            calm_vol = math.inf if cfg.withdraw_vol is None else cfg.reentry_vol_ratio * cfg.withdraw_vol
            if vol < calm_vol and not moved:
                if self.calm_since < 0:
                    self.calm_since = now
                if now - self.calm_since >= cfg.reentry_calm:
                    self.quoting = True
                    self.peak_equity = equity
                    self.calm_since = -1.0
            else:
                self.calm_since = -1.0
            if not self.quoting:
                if any(self.resting_lots(q.instrument) for q in self.quotes):
                    self.cancel_all()  # orders that were in flight when it withdrew
                return
        for q, v in zip(self.quotes, vols):
            self._quote(q, v, now)

    def _track_move(self, price: float, now: float) -> float:
        """High-to-low range of ``price`` over the last ``move_window`` seconds, as a fraction."""
        highs, lows = self.highs, self.lows
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((now, price))
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append((now, price))
        start = now - self.cfg.move_window
        while highs[0][0] < start:
            highs.popleft()
        while lows[0][0] < start:
            lows.popleft()
        high = highs[0][1]
        self.move = (high - lows[0][1]) / high if high > 0 else 0.0
        return self.move

    def _withdraw(self) -> None:
        if self.quoting:
            self.withdrawals += 1
        self.quoting = False
        self.calm_since = -1.0
        self.cancel_all()
        for q in self.quotes:
            q.clear()

    def _quote(self, q: _Quotes, vol: float, now: float) -> None:
        cfg = self.cfg
        i = q.instrument
        book = self.ctx.venue.books[i]
        ref = self.reference_ticks(i, cfg.reference, cfg.reference_weight)
        if ref <= 0:
            return
        half = ref * self.half_spread_bps * 1e-4
        ratio = vol / cfg.vol_ref
        if ratio > 1.0:
            half *= ratio ** cfg.vol_widen
        bid, ask = book.best_bid(), book.best_ask()
        if cfg.adaptive_spread and bid is not None and ask is not None:
            a = cfg.spread_alpha
            spread = float(ask - bid)
            q.spread_ewma = spread if q.spread_ewma == 0.0 else a * spread + (1 - a) * q.spread_ewma
            half = max(half, 0.5 * q.spread_ewma)
        if cfg.mid_move_mult > 0 and bid is not None and ask is not None:
            mid = 0.5 * (bid + ask)
            if q.last_mid > 0:
                q.move_ewma = cfg.spread_alpha * abs(mid - q.last_mid) + (1 - cfg.spread_alpha) * q.move_ewma
            q.last_mid = mid
            half = max(half, cfg.mid_move_mult * q.move_ewma)
        half = max(half, float(cfg.min_half_spread_ticks))
        # size
        if cfg.pov is not None and self.tape is not None:
            bv, sv = int(self.tape.buy_volume[i]), int(self.tape.sell_volume[i])
            traded = (bv - q.buy_vol) + (sv - q.sell_vol)
            size = max(cfg.min_size, int(round(cfg.pov * traded)))
        else:
            size = self.base_size
        if ratio > 1.0 and cfg.size_shrink > 0:
            size = max(1, int(size * ratio ** (-cfg.size_shrink)))
        # centre: inventory skew and trade-imbalance skew
        inventory = self.position(i)
        centre = ref - cfg.inventory_skew * half * (inventory / cfg.max_inventory)
        if cfg.price_skew_ticks > 0 and self.tape is not None:
            db = int(self.tape.buy_volume[i]) - q.buy_vol
            ds = int(self.tape.sell_volume[i]) - q.sell_vol
            if db + ds > 0:
                centre += cfg.price_skew_ticks * (2.0 * db / (db + ds) - 1.0)
        if self.tape is not None:
            q.buy_vol, q.sell_vol = int(self.tape.buy_volume[i]), int(self.tape.sell_volume[i])
        step = max(1.0, cfg.level_spacing * half)
        top_bid = math.floor(centre - half)
        top_ask = math.ceil(centre + half)
        if top_ask <= top_bid:
            top_ask = top_bid + 1
        room_long = cfg.max_inventory - inventory  # lots it may still buy
        room_short = cfg.max_inventory + inventory  # lots it may still sell
        for k in range(cfg.levels):
            off = int(round(k * step))
            b_lots = min(size, max(room_long, 0))
            room_long -= b_lots
            self._place(q, k, BUY, max(1, top_bid - off), b_lots, now)
            a_lots = min(size, max(room_short, 0))
            room_short -= a_lots
            self._place(q, k, SELL, top_ask + off, a_lots, now)

    def _place(self, q: _Quotes, k: int, side: int, price: int, lots: int, now: float) -> None:
        """Make slot ``k`` on ``side`` hold ``lots`` at ``price`` with as few messages as possible."""
        i = q.instrument
        book = self.ctx.venue.books[i]
        if side == BUY:
            ids, pxs, szs, ats = q.bid_ids, q.bid_px, q.bid_sz, q.bid_at
        else:
            ids, pxs, szs, ats = q.ask_ids, q.ask_px, q.ask_sz, q.ask_at
        oid = ids[k]
        live = oid and book.order(oid) is not None
        if not live and oid and now - ats[k] < _GUARD:
            return  # just sent; may not have arrived yet
        if lots <= 0:
            if live:
                self.cancel(oid, i)
            ids[k] = 0
            return
        if live:
            if pxs[k] != price or szs[k] != lots:
                self.ctx.venue.amend(self.account_for(i), oid, i, price, lots)
                pxs[k], szs[k], ats[k] = price, lots, now
            return
        ids[k] = self.submit(i, side, price, lots)
        pxs[k], szs[k], ats[k] = price, lots, now
