"""Scenario revaluation shared by the scenario regimes (SPAN, TIMS, portfolio, VaR).

Conventions (see docs/METHODOLOGY.md, "Common conventions"):

- Perpetuals and futures are linear: P&L per long lot = (F' - F) x contract_units, F = the
  instrument's mark.
- An option's forward is the mark of the future on the same underlying with the same expiry if
  one is listed, else the mark of a perpetual on that underlying, else the underlying (index)
  price. Options are revalued with Black-76 (``sim.market.pricing``), rate 0, at the instrument's
  vol; P&L per long lot = (model(F', vol') - model(F, vol)) x contract_units -- model against
  model, so a mark that differs from the model does not leak into the scenario P&L.
- A scenario is a relative move of the forward (F' = F (1 + m)) or an absolute one (F' = F + d),
  plus a vol per option. No time decay is applied in a scenario unless the caller ages the options
  (``years_shift``): the VaR regimes reprice at the end of their margin period of risk.
"""

from __future__ import annotations

import numpy as np

from sim.core.instruments import InstrumentKind, InstrumentTable, MarketState
from clearing.margin.base import MarketPath
from sim.market.pricing import black76_greeks, black76_price

DAYS_PER_YEAR = 365.0


def forward_source(table: InstrumentTable) -> np.ndarray:
    """Per instrument: the index of the instrument whose mark is its forward, or -1 (index price).

    Linear instruments are their own forward. Options use a future of the same underlying and
    expiry, else a perpetual of the same underlying, else the underlying price (-1).
    """
    n = len(table)
    src = np.full(n, -1, dtype=np.int64)
    linear = table.kind != InstrumentKind.OPTION
    src[linear] = np.flatnonzero(linear)
    perp_of: dict[int, int] = {}
    future_of: dict[tuple[int, float], int] = {}
    for i in range(n):
        u = int(table.underlying_index[i])
        if table.kind[i] == InstrumentKind.PERPETUAL:
            perp_of.setdefault(u, i)
        elif table.kind[i] == InstrumentKind.FUTURE:
            future_of.setdefault((u, float(table.expiry[i])), i)
    for option in np.flatnonzero(~linear):  # (its own name: ``i`` above is a Python int, this a numpy one)
        u = int(table.underlying_index[option])
        j = future_of.get((u, float(table.expiry[option])), perp_of.get(u, -1))
        src[option] = j
    return src


def forwards(table: InstrumentTable, market: MarketState | MarketPath, source: np.ndarray) -> np.ndarray:
    """Forward price per instrument (see :func:`forward_source`). The market's arrays may carry a
    leading axis of margin runs (``base.MarketPath``): the result is then (runs, instruments)."""
    marks = np.asarray(market.marks, dtype=np.float64)
    under = np.asarray(market.underlying_prices, dtype=np.float64)[..., table.underlying_index]
    return np.where(source >= 0, marks[..., np.maximum(source, 0)], under)


def market_key(market: MarketState) -> tuple:
    """A cheap identity of a market state (cache key for per-market matrices)."""
    return (
        float(market.now),
        np.asarray(market.marks, dtype=np.float64).tobytes(),
        np.asarray(market.vols, dtype=np.float64).tobytes(),
        np.asarray(market.underlying_prices, dtype=np.float64).tobytes(),
        np.asarray(market.atm_vols, dtype=np.float64).tobytes(),
    )


class Revaluer:
    """Builds instruments x scenarios P&L-per-long-lot matrices for one instrument table.

    The per-table lookups (forward sources, option masks) are computed once; each call does one
    vectorised Black-76 evaluation over all (option, scenario) cells. The market's arrays may carry
    a leading axis of margin runs (``base.MarketPath``): every result then has it too, and each
    run's slice is the same element-wise arithmetic -- the same bits -- as a call on that run alone.
    """

    def __init__(self, table: InstrumentTable) -> None:
        self.table = table
        self.source = forward_source(table)
        self.option = np.flatnonzero(table.is_option)
        self.linear = np.flatnonzero(~table.is_option)

    def base(self, market: MarketState | MarketPath) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(forward per instrument, years to expiry per instrument, vol per instrument)."""
        fwd = forwards(self.table, market, self.source)
        years = self.table.years_to_expiry(market.now)
        vols = np.asarray(market.vols, dtype=np.float64)
        return fwd, years, vols

    def pnl(self, market: MarketState | MarketPath, new_forward: np.ndarray, new_vol: np.ndarray | None = None,
            years_shift: float = 0.0) -> np.ndarray:
        """P&L per long lot, instruments x scenarios.

        ``new_forward``: I x S scenario forwards (for linear instruments: scenario prices).
        ``new_vol``: I x S scenario vols (None: unchanged). ``years_shift`` ages options (e.g.
        a look-ahead); 0 by default.
        """
        t = self.table
        fwd, years, vols = self.base(market)
        new_forward = np.asarray(new_forward, dtype=np.float64)
        out = np.empty_like(new_forward)
        lin = self.linear
        out[..., lin, :] = (new_forward[..., lin, :] - fwd[..., lin, None]) * t.contract_units[lin, None]
        opt = self.option
        if opt.size:
            k = t.strike[opt, None]
            yrs = years[opt, None]
            call = t.is_call[opt, None]
            v0 = vols[..., opt, None]
            base_price = black76_price(fwd[..., opt, None], k, yrs, v0, call)
            v1 = v0 if new_vol is None else np.asarray(new_vol, dtype=np.float64)[..., opt, :]
            scen = black76_price(new_forward[..., opt, :], k, np.maximum(yrs - years_shift, 0.0), v1, call)
            out[..., opt, :] = (scen - base_price) * t.contract_units[opt, None]
        return out

    def relative(self, market: MarketState | MarketPath, moves: np.ndarray, vol_factor: np.ndarray | None = None,
                 vol_level: np.ndarray | None = None, years_shift: float = 0.0) -> np.ndarray:
        """P&L for relative forward moves ``moves`` (I x S, or S broadcast to every instrument).

        Vols: ``vol_level`` (I x S absolute vols) if given, else vol x ``vol_factor`` if given,
        else unchanged. ``years_shift``: options repriced that much closer to expiry (see :meth:`pnl`).
        """
        fwd, _, vols = self.base(market)
        moves = np.broadcast_to(np.asarray(moves, dtype=np.float64), (len(self.table), np.shape(moves)[-1]))
        new_forward = fwd[..., :, None] * (1.0 + moves)
        if vol_level is not None:
            new_vol = vol_level
        elif vol_factor is not None:
            new_vol = vols[..., :, None] * vol_factor
        else:
            new_vol = None
        return self.pnl(market, new_forward, new_vol, years_shift)

    def deltas(self, market: MarketState | MarketPath) -> np.ndarray:
        """Delta per long lot in units of underlying (linear: contract_units; options: Black-76)."""
        t = self.table
        # (instruments,) or (runs, instruments); the vols are read only for options (they may be lazy)
        out = np.array(np.broadcast_to(t.contract_units, np.shape(market.marks)), dtype=np.float64)
        opt = self.option
        if opt.size:
            fwd, years, vols = self.base(market)
            g = black76_greeks(fwd[..., opt], t.strike[opt], years[opt], vols[..., opt], t.is_call[opt])
            out[..., opt] = np.asarray(g.delta) * t.contract_units[opt]
        return out

    def values(self, market: MarketState | MarketPath) -> np.ndarray:
        """Mark value per long lot (price x contract_units): options only, 0 for linear."""
        t = self.table
        marks = np.asarray(market.marks, dtype=np.float64)
        out = np.zeros(marks.shape)
        out[..., self.option] = marks[..., self.option] * t.contract_units[self.option]
        return out


def days_to_expiry(table: InstrumentTable, now: float) -> np.ndarray:
    return table.years_to_expiry(now) * DAYS_PER_YEAR
