"""Liquidity / concentration add-on on top of any regime (METHODS.md section 6).

``WithLiquidityAddOn(base, config, depth=..., cost_fn=...)`` adds to the base regime's IM (and MM
when ``apply_to_mm``):

- ``mode="book"``: the cost of closing each position against the book versus the mark. Depth is
  given per instrument as bid and ask ladders of (price, lots), best first (a long closes into
  the bids, a short into the asks); cost(q) walks the ladder: sum over levels of
  filled lots x |mark - level price| x contract_units, and lots beyond the listed depth cost
  ``beyond_depth_slippage`` x mark x contract_units each. Or a ``cost_fn(instrument, lots,
  market) -> cost`` callable, vectorised over position entries, replaces the ladders. Positions
  in instruments without depth (and no callable) add nothing.
- ``mode="sqrt"`` (Drift v2 size premium): with w = base requirement / gross notional of the
  account, each position's rate becomes w' = max(w, keep x w + imf x sqrt(size)), size = |lots| x
  contract_units (units of underlying), keep = ``keep_fraction`` (0.8). The add-on is
  sum over positions of notional x (w' - w). For a one-position account under a rate-based regime
  this is exactly Drift's formula; for a portfolio, w is the account's effective rate.
  Notional: |lots| x contract_units x mark for linear instruments, x forward for options.

Both are vectorised over the positions' non-zero entries (loops only over instruments with a
ladder). The add-on is not positively homogeneous (2x size costs more than 2x): switch it off
(no ``liquidity`` config) where homogeneity is wanted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from sim.core.instruments import MarketState
from clearing.margin.base import MarginRegime, Positions, Requirements
from clearing.margin.scenarios import forward_source, forwards
from clearing.margin.config import LiquidityConfig

CostFn = Callable[[np.ndarray, np.ndarray, MarketState], np.ndarray]


class DepthLadder:
    """Cumulative lots and cumulative cost per unit of mark-distance at each level of one side."""

    def __init__(self, levels: ArrayLike) -> None:
        arr = np.asarray(levels, dtype=np.float64).reshape(-1, 2)
        if arr.size and (np.any(arr[:, 1] < 0) or not np.all(np.isfinite(arr))):
            raise ValueError("depth levels must be finite (price, lots) with lots >= 0")
        self.price = arr[:, 0]
        self.lots = arr[:, 1]
        self.cum_lots = np.cumsum(self.lots)

    def cost(self, q: np.ndarray, mark: float, units: float, beyond: float) -> np.ndarray:
        """Cost of filling ``q`` lots (q >= 0) against this side, versus ``mark``."""
        if self.price.size == 0:
            return q * beyond * abs(mark) * units
        slip = np.abs(mark - self.price) * units  # per lot at each level
        cum_cost = np.concatenate(([0.0], np.cumsum(slip * self.lots)))
        cum_lots = np.concatenate(([0.0], self.cum_lots))
        k = np.searchsorted(cum_lots[1:], q, side="left")  # level in which the q-th lot fills
        inside = k < self.price.size
        kk = np.minimum(k, self.price.size - 1)
        partial = cum_cost[kk] + (q - cum_lots[kk]) * slip[kk]
        over = cum_cost[-1] + (q - cum_lots[-1]) * beyond * abs(mark) * units
        return np.where(inside, partial, over)


class WithLiquidityAddOn(MarginRegime):
    def __init__(self, base: MarginRegime, config: LiquidityConfig | None = None,
                 depth: Mapping | None = None, cost_fn: CostFn | None = None) -> None:
        super().__init__(base.table)
        self.base = base
        self.config = config or LiquidityConfig()
        self.name = f"{base.name}+liquidity"
        self.cost_fn = cost_fn
        sym = {ins.symbol: ins.id for ins in base.table.instruments}
        self.ladders: dict[int, tuple[DepthLadder, DepthLadder]] = {}
        for key, book in (depth or {}).items():
            i = sym[key] if isinstance(key, str) else int(key)
            if isinstance(book, Mapping):
                bids, asks = book.get("bids", ()), book.get("asks", ())
            else:
                bids, asks = book
            self.ladders[i] = (DepthLadder(bids), DepthLadder(asks))
        self.source = forward_source(base.table)

    # the add-on is not a sum of per-position figures: no one-position shortcut (the clearing house
    # would otherwise find the base regime's through ``__getattr__`` and leave the add-on out)
    entry_im = None

    def __getattr__(self, item: str) -> Any:  # expose the base regime's extras (e.g. VaR update_history)
        if item in ("base", "__setstate__"):
            raise AttributeError(item)
        return getattr(self.base, item)

    # ------------------------------------------------------------------------------- add-ons
    def _notional(self, cols: np.ndarray, lots: np.ndarray, market: MarketState) -> np.ndarray:
        t = self.table
        ref = np.where(t.is_option, forwards(t, market, self.source), np.asarray(market.marks, dtype=np.float64))
        return np.abs(lots) * t.contract_units[cols] * np.abs(ref[cols])

    def _book_cost(self, cols: np.ndarray, lots: np.ndarray, market: MarketState) -> np.ndarray:
        if self.cost_fn is not None:
            return np.maximum(np.asarray(self.cost_fn(cols, lots, market), dtype=np.float64), 0.0)
        out = np.zeros(cols.size)
        marks = np.asarray(market.marks, dtype=np.float64)
        units = self.table.contract_units
        beyond = self.config.beyond_depth_slippage
        for i, (bids, asks) in self.ladders.items():  # loop over instruments with a ladder
            sel = np.flatnonzero(cols == i)
            if sel.size == 0:
                continue
            q = lots[sel]
            long_ = q > 0
            cost = np.empty(sel.size)
            cost[long_] = bids.cost(q[long_], marks[i], units[i], beyond)
            cost[~long_] = asks.cost(-q[~long_], marks[i], units[i], beyond)
            out[sel] = cost
        return out

    def add_ons(self, positions: Positions, market: MarketState, base: Requirements) -> tuple[np.ndarray, np.ndarray]:
        """(IM add-on, MM add-on) per account."""
        _, cols, lots = positions.csr()
        n = positions.n_accounts
        rows = positions.rows()
        cfg = self.config
        if cfg.mode == "book":
            per_entry = self._book_cost(cols, lots, market)
            im_add = np.bincount(rows, weights=per_entry, minlength=n)
            return im_add, (im_add if cfg.apply_to_mm else np.zeros(n))
        notional = self._notional(cols, lots, market)
        gross = np.bincount(rows, weights=notional, minlength=n)
        size = np.abs(lots) * self.table.contract_units[cols]
        premium = cfg.imf * np.sqrt(size)
        safe = np.where(gross > 0, gross, 1.0)

        def extra(req: np.ndarray) -> np.ndarray:
            w = (req / safe)[rows]
            return np.bincount(rows, weights=notional * np.maximum(premium - (1.0 - cfg.keep_fraction) * w, 0.0),
                               minlength=n)

        im_add = extra(base.im)
        mm_add = extra(base.mm) if cfg.apply_to_mm else np.zeros(n)
        return im_add, mm_add

    # ----------------------------------------------------------------------------- interface
    def requirements(self, positions: Positions, market: MarketState) -> Requirements:
        return self._with_add_ons(self.base.requirements(positions, market), positions, market)

    def requirements_stateless(self, positions: Positions, market: MarketState) -> Requirements:
        """As ``requirements`` without advancing a stateful base regime's memory."""
        return self._with_add_ons(self.base.requirements_stateless(positions, market), positions, market)

    def _with_add_ons(self, base: Requirements, positions: Positions, market: MarketState) -> Requirements:
        im_add, mm_add = self.add_ons(positions, market, base)
        return Requirements(im=base.im + im_add, mm=base.mm + mm_add, positions=base.positions)

    def breakdown(self, lots: np.ndarray, market: MarketState) -> dict[str, float]:
        out = dict(self.base.breakdown(lots, market))
        pos = Positions.of(lots)
        base = Requirements(im=np.array([out["im"]]), mm=np.array([out["mm"]]))
        im_add, mm_add = self.add_ons(pos, market, base)
        out["base_im"], out["base_mm"] = out["im"], out["mm"]
        out["liquidity_im"], out["liquidity_mm"] = float(im_add[0]), float(mm_add[0])
        out["im"] = out["base_im"] + out["liquidity_im"]
        out["mm"] = out["base_mm"] + out["liquidity_mm"]
        return out
