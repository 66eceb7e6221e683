"""Mark prices: what positions are valued at for margin.

Linear contracts (perpetuals, dated futures), by ``oracle.mark_method``:

* ``index_basis`` -- mark = index x (1 + basis), where basis is a moving average of the book's
  premium (mid - index) / index, clamped to +/- ``mark_basis_cap``. The clamp is what stops a
  thin book from dragging every account's equity with it.
* ``median`` -- mark = median of (index x (1 + basis), the mid of the impact bid and ask, the last
  trade on the book), optionally clipped to index x (1 +/- ``mark_band``): the venue's own prints
  and depth move the mark, as on perp venues that mark from their book (Binance's median of
  index-based prices and the last price; Hyperliquid's median of oracle + EMA basis and the book's
  bid/ask/last). The impact bid (ask) is the average price of selling (buying) the impact size --
  ``mark_impact_notional`` quote units at the index, in whole lots -- into the book as it is; a side
  too thin to fill it has no impact price, and the mark is the median of the parts that exist.

Whatever the method, ``ticks == index_ticks + basis_ticks`` after every update: the part of the
mark that comes from the book (``basis_ticks``) is kept apart so that the clearing house can tell a
breach caused by the oracle from one caused by trading (a liquidation's price impact). Marks move
only in ``update``; ``mark_from_book(i)`` says what the next update would set from the book as it
is now, without moving anything.

Options: Black-76 on the mark of the underlying (the forward), with the vol read off the
underlying's surface at the option's strike and expiry -- so a crash raises option marks and risk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import median

import numpy as np

from sim.core.instruments import InstrumentKind, InstrumentTable, MarketState
from sim.market.pricing import black76_price
from sim.market.volsurface import VolSurface
from sim.market.book import OrderBook
from sim.market.impact import LiquidationImpact
from sim.market.oracle import Oracle
from sim.core.orders import BUY, SELL


def median_mark(index_basis: float, impact_mid: float | None, last: float | None) -> float:
    """The ``median`` method's mark (ticks) from its three parts; a part that does not exist (no
    impact price on a thin side, no trade yet) is left out: the median of two is their mean."""
    parts = [index_basis]
    if impact_mid is not None:
        parts.append(impact_mid)
    if last is not None:
        parts.append(last)
    return float(median(parts))


class MarkPricer:
    """Keeps per-instrument marks (in ticks) current with the oracle and the books."""

    def __init__(self, table: InstrumentTable, books: Sequence[OrderBook], oracle: Oracle,
                 surface: VolSurface, last_trade: Sequence[int | None] | None = None) -> None:
        """``last_trade`` is the venue's last on-book trade price per instrument (ticks, None before
        the first); the ``median`` method reads it (without it the last trade is left out)."""
        self.table = table
        self.books = books
        self.oracle = oracle
        self.last_trade = last_trade
        self.surface = surface  # stacked per underlying, in ``table.underlyings`` order
        self._oracle_column = np.array([oracle.underlyings.index(u) for u in table.underlyings], dtype=np.int64)
        cfg = oracle.config
        self.alpha = min(1.0, cfg.sample_interval / cfg.mark_basis_window)
        self.cap = cfg.mark_basis_cap
        self.method = cfg.mark_method
        self.impact_notional = cfg.mark_impact_notional
        self.band = cfg.mark_band
        self._units = table.contract_units.tolist()
        n = len(table)
        self.linear = np.flatnonzero(table.kind != InstrumentKind.OPTION)
        self.options = np.flatnonzero(table.kind == InstrumentKind.OPTION)
        self._linear_list = self.linear.tolist()
        self._underlying_of = table.underlying_index.tolist()
        self._tick_size = table.tick_size.tolist()
        # without options every row is linear: a slice reads and writes views, not copies
        self._linear_rows = slice(None) if not self.options.size else self.linear
        self.premium = np.zeros(n)  # EMA of the book premium, linear instruments only
        # The same average over a book without the liquidations' outstanding displacement
        # (sim.market.impact), and each liquidation's part of the difference (the average is linear, so the
        # parts add up to it): what the mark would be but for the liquidations' own trades.
        self.impact = LiquidationImpact(n)
        self._premium_ex: list[float] = [0.0] * n
        self._premium_parts: list[dict[int, float]] = [{} for _ in range(n)]
        self.index_ticks = np.zeros(n)
        self.basis_ticks = np.zeros(n)
        self.impact_ticks = np.zeros(n)  # the part of basis_ticks the liquidations' trades caused
        self._impact_shares: list[dict[int, float]] = [{} for _ in range(n)]  # how impact_ticks splits
        self.ticks = np.zeros(n)
        self._vols = np.zeros(n)
        self._vols_stale = True
        self._forward_of = self._forward_instruments()
        has = np.flatnonzero(self._forward_of >= 0)
        self._forward_has, self._forward_cols = has, self._forward_of[has]  # fixed: read per market state
        # a few linear contracts marked from index and basis (no options, no book median): an
        # update in plain floats, instrument by instrument, costs less than its ~20 numpy calls
        # on arrays of a few elements (the same IEEE operations: the same marks)
        self._plain = not self.options.size and self.method != "median" and n <= 8
        self._state: MarketState | None = None
        self.update(0.0)

    def _forward_instruments(self) -> np.ndarray:
        """For each underlying, the linear instrument whose mark is the options' forward (-1: index)."""
        out = np.full(len(self.table.underlyings), -1)
        for i in self.linear[::-1]:  # the first listed linear contract wins
            out[self.table.underlying_index[i]] = i
        return out

    @property
    def index(self) -> np.ndarray:
        """The published index per underlying of the table."""
        return self.oracle.index[self._oracle_column]

    def sample_books(self) -> None:
        """Fold the books' current premia into the moving average (called every oracle sample)."""
        index = self.index.tolist()
        u, tick = self._underlying_of, self._tick_size
        premium_avg, alpha, cap = self.premium, self.alpha, self.cap
        impact, premium_ex, parts = self.impact, self._premium_ex, self._premium_parts
        for i in self._linear_list:
            mid = self.books[i].mid()
            if mid is None:
                continue
            ref = index[u[i]]
            # each sample is clamped before it is averaged, so one spike on a thin book cannot pin
            # the mark at the cap long after the book has recovered
            premium = min(max((mid * tick[i] - ref) / ref, -cap), cap)
            before = premium_avg.item(i)
            premium_avg[i] = after = before + alpha * (premium - before)
            if not parts[i] and not impact.active(i):
                premium_ex[i] = after  # nothing to take out (the common case)
                continue
            self._sample_without_impact(i, mid, ref, premium)

    def _sample_without_impact(self, i: int, mid: float, ref: float, premium: float) -> None:
        """Fold this sample into the impact-free average and each liquidation's part of the gap."""
        alpha, cap, tick = self.alpha, self.cap, self._tick_size[i]
        outstanding = self.impact.outstanding(i, mid - ref / tick)
        premium_ex = min(max(((mid - outstanding) * tick - ref) / ref, -cap), cap)
        self._premium_ex[i] += alpha * (premium_ex - self._premium_ex[i])
        gap = premium - premium_ex
        parts = self._premium_parts[i]
        shares = self.impact.shares(i) if outstanding else {}
        for liq_id in set(parts) | set(shares):
            sample = gap * shares[liq_id] / outstanding if liq_id in shares else 0.0
            part = parts.get(liq_id, 0.0)
            part += alpha * (sample - part)
            if liq_id not in shares and abs(part) < 1e-8:
                parts.pop(liq_id, None)  # decayed away (a millionth of a basis point of the index)
            else:
                parts[liq_id] = part

    def impact_by_liquidation(self, instrument: int) -> dict[int, float]:
        """Liquidation id -> its part of ``impact_ticks[instrument]`` at the last update (ticks), in
        proportion to its share of the impact-free average's gap (``index_basis``) or, for
        ``median`` while displacement is outstanding, of the book's displacement."""
        parts = self._impact_shares[instrument]
        total = sum(parts.values())
        impact = self.impact_ticks.item(instrument)
        if not parts or total == 0.0 or impact == 0.0:
            return {}
        return {liq_id: impact * part / total for liq_id, part in parts.items()}

    def underlying_marks(self) -> np.ndarray:
        """Price of each underlying as the forward for its options (quote units)."""
        prices = self.index  # a new array (the property gathers)
        cols = self._forward_cols
        prices[self._forward_has] = self.ticks[cols] * self.table.tick_size[cols]
        return prices

    @property
    def vols(self) -> np.ndarray:
        """Vol per instrument off the surface at the last update (read lazily: only options and
        vol-aware regimes need it, and it is the costliest part of an update)."""
        if self._vols_stale:
            self._vols[:] = self.surface.instrument_vols(self.table, self._updated_at, self._updated_index)
            self._vols_stale = False
        return self._vols

    def update(self, now: float) -> None:
        self._state = None
        self._updated_at = now
        self._updated_index = index = self.index
        self._vols_stale = True
        if self._plain and not any(self._premium_parts) and not any(map(self.impact.active, self._linear_list)):
            self._update_plain(index.tolist())
            self._update_impact(None, None)  # no liquidation's part: clears what the last one left
            return
        t = self.table
        spot = index[t.underlying_index]
        basis = np.minimum(np.maximum(self.premium, -self.cap), self.cap)  # np.clip's overhead is not worth it here
        lin = self._linear_rows
        self.index_ticks[lin] = spot[lin] / t.tick_size[lin]
        self.basis_ticks[lin] = spot[lin] * basis[lin] / t.tick_size[lin]
        if self.method == "median":
            # a handful of linear contracts, each a few book levels: plain floats per instrument
            for i in self._linear_list:
                idx = self.index_ticks.item(i)
                self.basis_ticks[i] = self._median_of(i, idx, idx + self.basis_ticks.item(i)) - idx
        self.ticks[lin] = self.index_ticks[lin] + self.basis_ticks[lin]
        self._update_impact(spot, basis)
        if self.options.size:
            opt = self.options
            fwd = self.underlying_marks()[t.underlying_index[opt]]
            years = t.years_to_expiry(now)[opt]
            price = black76_price(fwd, t.strike[opt], years, self.vols[opt], t.is_call[opt])
            self.index_ticks[opt] = price / t.tick_size[opt]
            self.basis_ticks[opt] = 0.0
            self.ticks[opt] = self.index_ticks[opt]

    def _update_plain(self, index: list[float]) -> None:
        """``update``'s linear marks, one instrument at a time in Python floats: the operations of
        the array path in the same order (clamp the premium average, index / tick, index x basis /
        tick, their sum), so the same bits."""
        cap, tick, underlying = self.cap, self._tick_size, self._underlying_of
        premium = self.premium.tolist()
        index_ticks, basis_ticks, ticks = self.index_ticks, self.basis_ticks, self.ticks
        for i in self._linear_list:
            spot = index[underlying[i]]
            idx = spot / tick[i]
            basis = spot * min(max(premium[i], -cap), cap) / tick[i]
            index_ticks[i] = idx
            basis_ticks[i] = basis
            ticks[i] = idx + basis

    def _update_impact(self, spot: np.ndarray | None, basis: np.ndarray | None) -> None:
        """The liquidations' part of each linear mark: the mark minus the mark computed the same way
        from the impact-free premium average and, for ``median``, from the book parts (impact mid,
        last trade) moved back by the liquidations' outstanding displacement."""
        impact, parts, shares = self.impact, self._premium_parts, self._impact_shares
        if not any(parts) and not any(impact.active(i) for i in self._linear_list):
            if self.impact_ticks.any():
                self.impact_ticks[:] = 0.0
                shares[:] = [{} for _ in shares]
            return
        # update() passes no spot only when nothing is displaced (the return above)
        assert spot is not None and basis is not None
        tick, cap = self._tick_size, self.cap
        index = self.index.tolist()
        for i in self._linear_list:
            displaced = 0.0
            if self.method == "median" and impact.active(i):
                mid = self.books[i].mid()
                displaced = impact.outstanding(i, None if mid is None else mid - index[self._underlying_of[i]] / tick[i])
            if not parts[i] and not displaced:
                self.impact_ticks[i] = 0.0
                shares[i] = {}
                continue
            spot_i = spot.item(i)
            basis_ex = min(max(self._premium_ex[i], -cap), cap)
            if self.method == "median":
                idx = self.index_ticks.item(i)
                mark_ex = self._median_of(i, idx, idx + spot_i * basis_ex / tick[i], shift=displaced)
                self.impact_ticks[i] = self.ticks.item(i) - mark_ex
            else:
                self.impact_ticks[i] = spot_i * (basis.item(i) - basis_ex) / tick[i]
            shares[i] = impact.shares(i) if displaced else dict(parts[i])

    def impact_prices(self, i: int, index_ticks: float) -> tuple[float | None, float | None]:
        """(impact bid, impact ask) of linear instrument ``i`` in ticks: the average price of selling
        (buying) the impact size into the book as it is now; None for a side that cannot fill it.
        The impact size is ``mark_impact_notional`` at the index, in whole lots (at least one)."""
        unit_value = index_ticks * self._tick_size[i] * self._units[i]
        lots = max(1, math.ceil(self.impact_notional / unit_value)) if unit_value > 0 else 1
        book = self.books[i]
        filled_bid, _cost, bid = book.sweep_cost(SELL, lots)
        filled_ask, _cost, ask = book.sweep_cost(BUY, lots)
        return (bid if filled_bid >= lots else None), (ask if filled_ask >= lots else None)

    def _median_of(self, i: int, index_ticks: float, index_basis_ticks: float, shift: float = 0.0) -> float:
        """The ``median`` method's mark of linear instrument ``i`` (ticks), band applied; ``shift``
        is taken off the book's parts (the impact-free mark of breach attribution)."""
        bid, ask = self.impact_prices(i, index_ticks)
        impact_mid = 0.5 * (bid + ask) - shift if bid is not None and ask is not None else None
        last = None if self.last_trade is None else self.last_trade[i]
        mark = median_mark(index_basis_ticks, impact_mid, None if last is None else float(last) - shift)
        if self.band is not None:
            mark = min(max(mark, index_ticks * (1.0 - self.band)), index_ticks * (1.0 + self.band))
        return mark

    def mark_from_book(self, i: int, sample: bool = True) -> float:
        """The mark (ticks) the next ``update`` would give instrument ``i`` if the book stayed as it
        is now and the index as published: with ``sample`` the book's current premium is folded
        into a copy of the basis average first, as the next publication's ``sample_books`` would
        do. Pure: nothing is stored, no mark moves. An option's mark does not read the book (its
        current mark is returned). O(levels walked for the impact size).

        Calling it before and after a trade gives that trade's own impact on the mark."""
        if self.table.kind.item(i) == InstrumentKind.OPTION:
            return self.ticks.item(i)
        ref = self.index.item(self._underlying_of[i])
        premium = self.premium.item(i)
        if sample:
            mid = self.books[i].mid()
            if mid is not None:
                cap = self.cap
                p = min(max((mid * self._tick_size[i] - ref) / ref, -cap), cap)
                premium = premium + self.alpha * (p - premium)
        basis = min(max(premium, -self.cap), self.cap)
        idx = ref / self._tick_size[i]
        basis_ticks = ref * basis / self._tick_size[i]
        if self.method == "median":
            basis_ticks = self._median_of(i, idx, idx + basis_ticks) - idx
        return idx + basis_ticks

    def market_state(self, now: float) -> MarketState:
        """The snapshot the margin regimes consume (built once per mark update)."""
        if self._state is not None:
            return self._state
        # the vols are bound to this update's inputs, so a snapshot read after the next update
        # still describes its own market
        at, index, surface, table = self._updated_at, self._updated_index, self.surface, self.table
        self._state = MarketState(
            now=now,
            underlying_prices=self.underlying_marks(),
            atm_vols=lambda: surface.atm_vols(index),
            marks=self.ticks * self.table.tick_size,
            vols=self._vols.copy() if not self._vols_stale else (lambda: surface.instrument_vols(table, at, index)),
        )
        return self._state
