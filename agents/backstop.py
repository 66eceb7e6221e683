"""Backstop liquidity: the vault the clearing house hands positions to, and auction bidders.

``BackstopProvider`` is capital in an account the clearing house uses as its backstop vault
(``is_vault``): the liquidation engine moves positions into it at the mark less a discount. With
``unwind`` it sells what it was given back into the book, ``unwind_fraction`` of each position
every ``unwind_interval`` s with an IOC ``unwind_offset_bps`` through the mark, so the vault
recycles its capital instead of carrying the risk to the end.

``AuctionBidder`` implements ``clearing.liquidation.AuctionBidder``: asked for a discount on a
liquidated portfolio, it quotes ``base_discount + size_discount x notional/equity +
vol_discount x recent vol`` (capped at ``max_discount``), where recent vol is the realised vol of
the published index over the last ``vol_window`` s. It does not bid (None) when its equity cannot
carry the incoming position's initial margin (x ``margin_buffer``) on top of what it holds -- or,
as a ``zero_bidder``, it bids a discount of 1.0: the Black Thursday zero bid that wins when
nobody else can bid. Bidders register themselves with the liquidation engine at ``start``.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from agents.base import Agent, AgentContext
from sim.core.instruments import SECONDS_PER_YEAR
from sim.core.orders import BUY, SELL, TimeInForce
from agents.config import AuctionBidderGroup, BackstopProviderGroup


class BackstopProvider(Agent):
    kind = "backstop_provider"
    isolates_positions = False
    is_vault = True
    __slots__ = ("cfg", "instruments", "unwinds")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: BackstopProviderGroup, instruments: list[int]) -> None:
        super().__init__(ctx, name, account, rng)
        self.cfg = cfg
        self.instruments = instruments or list(range(len(ctx.table)))
        self.unwinds = 0

    def start(self) -> None:
        if self.cfg.unwind:
            self.ctx.world.call_later(self.cfg.start + self.cfg.unwind_interval, self._wake)

    def _wake(self) -> None:
        if self.cfg.end is not None and self.now >= self.cfg.end:
            return
        self.unwind()
        self.ctx.world.call_later(self.cfg.unwind_interval, self._wake)

    def unwind(self) -> None:
        cfg = self.cfg
        pos = self.ctx.ledger.position[self.account]
        off = cfg.unwind_offset_bps * 1e-4
        for i in self.instruments:
            held = int(pos[i])
            if held == 0:
                continue
            lots = max(1, int(math.ceil(cfg.unwind_fraction * abs(held))))
            mark = self.mark_ticks(i)
            if held > 0:
                self.submit(i, SELL, max(1, math.floor(mark * (1 - off))), lots, TimeInForce.IOC, reduce_only=True)
            else:
                self.submit(i, BUY, math.ceil(mark * (1 + off)), lots, TimeInForce.IOC, reduce_only=True)
            self.unwinds += 1


class AuctionBidder(Agent):
    kind = "auction_bidder"
    isolates_positions = False
    is_vault = False
    __slots__ = ("cfg", "bids", "passes")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: AuctionBidderGroup, instruments: list[int]) -> None:
        super().__init__(ctx, name, account, rng)
        self.cfg = cfg
        self.bids = 0
        self.passes = 0

    def start(self) -> None:
        self.ctx.desk.register_bidder(self)

    def recent_vol(self, underlying: int) -> float:
        """Annualised realised vol of the published index of ``underlying`` over ``vol_window`` s."""
        oracle = self.ctx.oracle
        times = oracle.history_t
        now = self.now
        k = bisect.bisect_left(times, now - self.cfg.vol_window)
        k = max(k - 1, 0)  # include the value in force at the window's start
        if len(times) - k < 2:
            return 0.0
        column = list(oracle.underlyings).index(self.ctx.table.underlyings[underlying])
        prices = np.array([h[column] for h in oracle.history[k:]], dtype=np.float64)
        prices = prices[prices > 0]
        if prices.size < 2:
            return 0.0
        r = np.diff(np.log(prices))
        span = max(now - times[k], 1e-9)
        return float(math.sqrt(float(r @ r) / span * SECONDS_PER_YEAR))

    def can_carry(self, lots: np.ndarray, equity: float | None = None) -> bool:
        """Whether its equity covers the initial margin of its book plus the offered lots.

        The sign convention of ``lots`` is the engine's; both signs are checked and the larger
        requirement is used, so an existing position is never assumed to net the offer down. A
        partial valuation (two what-if rows of one account): the regime's market-wide memory --
        the VaR buffer's previous margins, the open interest the caps read -- is read, not advanced.
        """
        desk = self.ctx.desk
        if equity is None:
            equity = desk.account_equity(self.account)
        im = desk.initial_margin_with(self.account, lots)
        return equity >= self.cfg.margin_buffer * im and equity > 0

    def auction_discount(self, lots: np.ndarray, marks_value: np.ndarray) -> float | None:
        """Discount off mark (0..1) for ``lots``; None when it cannot carry them (1.0 if a zero bidder)."""
        cfg = self.cfg
        lots = np.asarray(lots, dtype=np.float64)
        if not lots.any():
            return None
        if cfg.end is not None and self.now >= cfg.end:
            return None
        equity = self.equity()
        if not self.can_carry(lots, equity):
            self.passes += 1
            return 1.0 if cfg.zero_bidder else None
        notional = float(np.abs(lots) @ np.asarray(marks_value, dtype=np.float64))
        largest = int(np.argmax(np.abs(lots) * np.asarray(marks_value)))
        vol = self.recent_vol(int(self.ctx.table.underlying_index[largest]))
        discount = cfg.base_discount + cfg.size_discount * notional / max(equity, 1.0) + cfg.vol_discount * vol
        self.bids += 1
        return float(min(discount, cfg.max_discount))
