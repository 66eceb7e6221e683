"""Standard (rule-based) margin: a rate on each position's notional (METHODS.md section 1).

- Linear instruments (perpetuals, futures): notional N = |lots| x contract_units x mark.
  Risk-limit tiers (Binance-style brackets) pick the rates from the position's notional:
  IM = N x im_rate(tier) (the bracket's rate on the whole position, as a leverage bracket does);
  MM = N x mm_rate(tier) - maintenance_amount(tier), the maintenance amount making MM continuous
  in N (Binance's "cum" amount: sum over lower brackets of cap x rate step).
  dYdX-style open-interest caps raise the IM fraction linearly from the tier rate at the lower
  open-interest notional to 100% at the upper one (MM unchanged).
- Options: long = 0 (the option's value is its own collateral); short, per lot,
  IM = (max(im_base - OTM%, im_floor) x S + mark) x contract_units,
  MM = (max(mm_base - OTM%, mm_floor) x S + mark) x contract_units, S = the option's forward
  (see ``scenarios.forward_source``), OTM% = out-of-the-money amount / S.
- Cross: requirements summed over positions, netting only inside an instrument (positions are
  already net per instrument). Isolated: the same numbers per position, reported per position
  (``Requirements.positions``) so the clearing house can hold separate collateral per position.

Complexity: O(nnz) per call, no loop over accounts. Cross margin on a few linear contracts (a
venue's usual case) is computed column by column over the dense positions instead -- a handful of
array operations per instrument, where the sparse form costs a fixed few dozen; both sum each
account's entries in instrument order, so they agree to the last bit.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

import numpy as np

from sim.core.instruments import InstrumentTable, MarketState
from clearing.margin.base import MarginRegime, MarketPath, PositionRequirements, Positions, Requirements, RowSums, \
    distinct_entries, put_transposed
from clearing.margin.scenarios import forward_source, forwards
from clearing.margin.config import RiskTier, StandardConfig


DENSE_MAX_INSTRUMENTS = 16  # cross margin on at most this many linear contracts: column by column


class _TierTable:
    """Per-underlying tier arrays: caps (inf for the last), rates and maintenance amounts."""

    def __init__(self, tiers: Sequence[RiskTier]) -> None:
        self.caps = np.array([np.inf if t.max_notional is None else t.max_notional for t in tiers])
        self.im = np.array([t.im_rate for t in tiers])
        self.mm = np.array([t.mm_rate for t in tiers])
        lower = np.concatenate(([0.0], self.caps[:-1]))
        steps = np.diff(np.concatenate(([self.mm[0]], self.mm)))
        self.mm_amount = np.cumsum(lower * steps)
        self._caps = self.caps.tolist()
        self._im = self.im.tolist()
        self._mm = self.mm.tolist()
        self._mm_amount = self.mm_amount.tolist()
        self.single = self.caps.size == 1

    def im_of(self, notional: float) -> float:
        """IM of one position of this notional (scalar, pure Python)."""
        if self.single:
            return notional * self._im[0]
        k = min(bisect_left(self._caps, notional), len(self._caps) - 1)
        return notional * self._im[k]

    def im_mm_of(self, notional: float) -> tuple[float, float]:
        """(IM, MM) of one position of this notional (scalar, pure Python): :meth:`rates`' rates and
        ``StandardRegime._linear``'s arithmetic, MM less the maintenance amount and floored at 0."""
        if self.single:
            return notional * self._im[0], notional * self._mm[0]
        k = min(bisect_left(self._caps, notional), len(self._caps) - 1)
        mm = notional * self._mm[k] - self._mm_amount[k]
        return notional * self._im[k], mm if (mm >= 0.0 or mm != mm) else 0.0  # np.maximum(x, 0.0), NaN kept

    def rates(self, notional: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = np.searchsorted(self.caps, notional, side="left")
        k = np.minimum(k, self.caps.size - 1)
        return self.im[k], self.mm[k], self.mm_amount[k]


class _AccountTerms:
    """Per-instrument lists for ``StandardRegime.account_requirements`` at one market state."""

    __slots__ = ("market", "units", "tiers", "underlying", "is_option", "is_call", "strikes", "marks", "abs_marks",
                 "forwards")

    def __init__(self, regime: "StandardRegime", market: MarketState) -> None:
        t = regime.table
        marks = np.asarray(market.marks, dtype=np.float64)
        self.market = market
        self.units = t.contract_units.astype(np.float64).tolist()
        self.tiers = regime._tiers
        self.underlying = t.underlying_index.tolist()
        self.is_option = t.is_option.tolist()
        self.is_call = t.is_call.tolist()
        self.strikes = t.strike.astype(np.float64).tolist()
        self.marks = marks.tolist()
        self.abs_marks = np.abs(marks).tolist()
        self.forwards = forwards(t, market, regime.source).tolist() if t.is_option.any() else []


ALONG_RUNS = 256  # requirements_along: runs computed together


class StandardRegime(MarginRegime):
    name = "standard"

    def __init__(self, table: InstrumentTable, config: StandardConfig | None = None,
                 open_interest: np.ndarray | None = None) -> None:
        super().__init__(table)
        self.config = config or StandardConfig()
        self.isolated = self.config.margin_mode == "isolated"
        if self.isolated:
            self.name = "standard_isolated"
        self.source = forward_source(table)
        cfg = self.config
        self._tiers = [
            _TierTable(cfg.tiers_by_underlying.get(u, cfg.tiers)) for u in table.underlyings
        ]
        caps = [cfg.open_interest_caps_by_underlying.get(u, cfg.open_interest_caps) for u in table.underlyings]
        self._oi_lower = np.array([np.nan if c is None else c.lower for c in caps])
        self._oi_upper = np.array([np.nan if c is None else c.upper for c in caps])
        self.open_interest = open_interest  # per instrument, notional; None: from the positions
        self._oi_caps = bool(np.isfinite(self._oi_lower).any())
        self._last_oi: np.ndarray | None = None
        # per instrument, what ``entry_im`` needs in plain Python: (contract units, tier table), or
        # None where an entry depends on more than its own size
        self._entry_rules: list[tuple[float, _TierTable] | None] = [
            None if (table.is_option[i] or self._oi_caps) else
            (float(table.contract_units[i]), self._tiers[int(table.underlying_index[i])]) for i in range(len(table))]
        self._dense = not self.isolated and len(table) <= DENSE_MAX_INSTRUMENTS and not table.is_option.any()
        # linear contracts at one rate each and no open-interest caps: every entry is |lots| x
        # units x |mark| x rate, non-decreasing in |lots| in floating point too (each rounding is
        # monotone), summed in instrument order -- so lots no larger in any instrument never need
        # more (MarginRegime.worst_case_dominates). Tiers (MM less a maintenance amount, equal only
        # in exact arithmetic across a bracket's edge) and caps keep the other states margined.
        self.worst_case_dominates = self._dense and not self._oi_caps and all(t.single for t in self._tiers)
        # an account's requirement is the sum of its own positions' -- unless open-interest caps make
        # each position's rate depend on the whole market's open interest
        self.row_separable = not self._oi_caps
        self._terms: _AccountTerms | None = None  # account_requirements' lists for the last market state

    # ------------------------------------------------------------------ per-instrument parameters
    def open_interest_notional(self, positions: Positions, market: MarketState | MarketPath) -> np.ndarray:
        """Open interest per instrument in quote notional: sum of long lots x units x mark."""
        if self.open_interest is not None:
            return np.asarray(self.open_interest, dtype=np.float64)
        indptr, cols, lots = positions.csr()
        long_lots = np.bincount(cols, weights=np.maximum(lots, 0.0), minlength=len(self.table))
        return long_lots * self.table.contract_units * np.abs(np.asarray(market.marks, dtype=np.float64))

    def _entry_requirements(self, cols: np.ndarray, lots: np.ndarray, market: MarketState | MarketPath,
                            oi: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(IM, MM) of each entry (instrument ``cols``, signed ``lots``): (entries,) arrays, or (runs,
        entries) for a :class:`MarketPath` (and ``oi`` then (runs, instruments)) -- element-wise."""
        t = self.table
        marks = np.asarray(market.marks, dtype=np.float64)
        units = t.contract_units[cols]
        is_opt = t.is_option[cols]
        im = np.zeros(marks.shape[:-1] + (cols.size,))
        mm = np.zeros(marks.shape[:-1] + (cols.size,))
        # linear
        lin = ~is_opt
        if lin.any():
            c = cols[lin]
            notional = np.abs(lots[lin]) * units[lin] * np.abs(marks[..., c])
            u = t.underlying_index[c]
            im_lin = np.empty(notional.shape)
            mm_lin = np.empty(notional.shape)
            for k in range(len(self._tiers)):  # loop over underlyings, not accounts
                sel = u == k
                if sel.any():
                    im_lin[..., sel], mm_lin[..., sel] = self._linear(k, notional[..., sel],
                                                                      None if oi is None else oi[..., c[sel]])
            im[..., lin] = im_lin
            mm[..., lin] = mm_lin
        # short options
        short = is_opt & (lots < 0)
        if short.any():
            rule = self.config.short_option
            c = cols[short]
            fwd = forwards(t, market, self.source)[..., c]
            k = t.strike[c]
            otm = np.where(t.is_call[c], np.maximum(k - fwd, 0.0), np.maximum(fwd - k, 0.0)) / fwd
            mark = marks[..., c] if rule.add_mark else 0.0
            q = -lots[short] * units[short]
            im[..., short] = q * (np.maximum(rule.im_base - otm, rule.im_floor) * fwd + mark)
            mm[..., short] = q * (np.maximum(rule.mm_base - otm, rule.mm_floor) * fwd + mark)
        return im, mm

    def _linear(self, k: int, notional: np.ndarray, oi_c: np.ndarray | float | None) -> tuple[np.ndarray, np.ndarray]:
        """(IM, MM) of linear positions of underlying ``k`` with these notionals: the tier's rates,
        the IM rate raised by the open-interest caps (``oi_c``: the open interest of each position's
        instrument, or None without caps), MM less the tier's maintenance amount."""
        tiers = self._tiers[k]
        im_rate: float | np.ndarray  # a scalar for a single tier, else one per position
        mm_rate: float | np.ndarray
        mm_amt: np.ndarray | None
        if tiers.single:
            im_rate, mm_rate, mm_amt = float(tiers.im[0]), float(tiers.mm[0]), None
        else:
            im_rate, mm_rate, mm_amt = tiers.rates(notional)
        if oi_c is not None:
            lo, hi = self._oi_lower[k], self._oi_upper[k]
            frac = np.clip((oi_c - lo) / (hi - lo), 0.0, 1.0)
            im_rate = im_rate + (1.0 - im_rate) * np.where(np.isfinite(frac), frac, 0.0)
        # one tier: no maintenance amount, and the product is never negative
        mm = notional * mm_rate if mm_amt is None else np.maximum(notional * mm_rate - mm_amt, 0.0)
        return notional * im_rate, mm

    def entry_im(self, instrument: int, lots: float, mark: float) -> float | None:
        """IM (quote units) of one position, in pure Python, for the clearing house's pre-trade fast
        path. Cross standard margin is a sum over positions, so a change in one instrument changes
        the account's IM by exactly the change of this entry. None where the entry depends on more
        than its own size (options need the forward; open-interest caps need everyone's positions)."""
        rule = self._entry_rules[instrument]
        if rule is None:
            return None
        units, tiers = rule
        return tiers.im_of(abs(lots) * units * abs(mark))

    def account_requirements(self, lots: list[float], market: MarketState) -> tuple[float, float] | None:
        """:meth:`requirements_stateless` of one account in plain Python floats: each entry's IM and
        MM by the arithmetic of ``_entry_requirements``/``_linear`` (the same operations in the same
        order, each correctly rounded as numpy's element-wise ones are), summed in instrument order
        from 0.0 as the bincount (and the column-by-column dense path) sums them -- the same bits
        (tests/clearing/test_account_valuation.py). None with open-interest caps (they read the
        market's open interest: the array path)."""
        if self._oi_caps:
            return None
        terms = self._account_terms(market)
        units, tiers, under, is_opt = terms.units, terms.tiers, terms.underlying, terms.is_option
        im = mm = 0.0
        for i, size in enumerate(lots):
            if not size:
                continue
            if not is_opt[i]:
                im_i, mm_i = tiers[under[i]].im_mm_of(abs(size) * units[i] * terms.abs_marks[i])
                im += im_i
                mm += mm_i
            elif size < 0:
                rule = self.config.short_option
                fwd, strike = terms.forwards[i], terms.strikes[i]
                otm = (max(strike - fwd, 0.0) if terms.is_call[i] else max(fwd - strike, 0.0)) / fwd
                mark = terms.marks[i] if rule.add_mark else 0.0
                q = -size * units[i]
                im += q * (max(rule.im_base - otm, rule.im_floor) * fwd + mark)
                mm += q * (max(rule.mm_base - otm, rule.mm_floor) * fwd + mark)
        return im, mm

    def _account_terms(self, market: MarketState) -> "_AccountTerms":
        """The per-instrument figures of :meth:`account_requirements` as Python lists, built once
        per market state (the mark pricer keeps one ``MarketState`` per mark update)."""
        terms = self._terms
        if terms is None or terms.market is not market:
            terms = self._terms = _AccountTerms(self, market)
        return terms

    def _open_interest_for(self, positions: Positions, market: MarketState | MarketPath,
                           market_oi: bool) -> np.ndarray | None:
        """The open interest the caps read (None without caps): these positions' when they are the
        whole market (and it is remembered), else the last whole-market figure."""
        if not self._oi_caps:
            return None
        if market_oi or self._last_oi is None:
            oi = self.open_interest_notional(positions, market)
            if market_oi:
                self._last_oi = oi
            return oi
        return self._last_oi

    # ------------------------------------------------------------------------------ interface
    def position_requirements(self, positions: Positions, market: MarketState,
                              market_oi: bool = True) -> PositionRequirements:
        """IM/MM of every non-zero position, aligned with the CSR entries. With open-interest caps,
        ``market_oi`` says the positions are the whole market (their open interest is remembered);
        otherwise the open interest of the last whole-market computation is used."""
        indptr, cols, lots = positions.csr()
        oi = self._open_interest_for(positions, market, market_oi)
        if positions.reused:
            # an entry's requirement depends on its instrument, its lots and the market alone, element
            # by element: computed once per distinct entry and gathered back, the same bits (the
            # clearing house's kept snapshot: ~5% of its entries are distinct in the 200k stress hour)
            pair_cols, pair_lots, inverse = positions.entries()
            im, mm = self._entry_requirements(pair_cols, pair_lots, market, oi)
            im, mm = im[inverse], mm[inverse]
        else:
            im, mm = self._entry_requirements(cols, lots, market, oi)
        return PositionRequirements(indptr=indptr, instrument=cols, lots=lots, im=im, mm=mm)

    def requirements_stateless(self, positions: Positions, market: MarketState) -> Requirements:
        """Requirements of a few accounts (a pre-trade check, a fill's parties): open-interest caps use
        the market's open interest from the last whole-market computation, not these rows'."""
        return self.requirements(positions, market, market_oi=False)

    def requirements(self, positions: Positions, market: MarketState, market_oi: bool = True) -> Requirements:
        if self._dense:
            return self._dense_requirements(positions, market, market_oi)
        pr = self.position_requirements(positions, market, market_oi)
        n = positions.n_accounts
        rows = positions.rows()
        im = np.bincount(rows, weights=pr.im, minlength=n)
        mm = np.bincount(rows, weights=pr.mm, minlength=n)
        return Requirements(im=im, mm=mm, positions=pr if self.isolated else None)

    def requirements_along(self, positions: Positions, path: MarketPath, which: str = "im") -> np.ndarray:
        """:meth:`requirements` on every run of ``path``, to the bit, without a call per run.

        An entry's requirement depends on its instrument, its lots and the market (and, with
        open-interest caps, the market's open interest): it is computed once per distinct
        (instrument, lots) entry for all runs together (``_entry_requirements``, element-wise over
        the runs axis), gathered back to the entries and summed per account in entry order, as the
        bincount of :meth:`requirements` does. Cross margin over linear contracts only (the column
        path) goes run by run."""
        if self._dense:
            return super().requirements_along(positions, path, which)
        n, runs = positions.n_accounts, len(path)
        _, cols, lots = positions.csr()
        p_cols, p_lots, inverse = distinct_entries(cols, lots)
        spread = RowSums(positions.rows(), n, source=inverse)  # each entry's value: its distinct entry's
        out = np.empty((runs, n))
        for a in range(0, runs, ALONG_RUNS):
            b = min(runs, a + ALONG_RUNS)
            chunk = path.rows(a, b)
            oi = self._open_interest_for(positions, chunk, True)
            im, mm = self._entry_requirements(p_cols, p_lots, chunk, oi)
            put_transposed(out[a:b], spread.transposed(np.ascontiguousarray((im if which == "im" else mm).T)))
            if oi is not None:
                self._last_oi = oi[-1] if oi.ndim == 2 else oi  # the last run's, as after a call per run
        return out

    def _dense_requirements(self, positions: Positions, market: MarketState, market_oi: bool) -> Requirements:
        """Cross margin on linear contracts, one instrument column at a time (the same arithmetic
        as ``_entry_requirements``, in the same order)."""
        t = self.table
        lots = positions.dense
        marks = np.abs(np.asarray(market.marks, dtype=np.float64))
        oi = self._open_interest_for(positions, market, market_oi)
        im: np.ndarray | None = None
        mm: np.ndarray  # set with im (read only once im is)
        for i in range(lots.shape[1]):
            notional = np.abs(lots[:, i]) * float(t.contract_units[i]) * float(marks[i])
            im_i, mm_i = self._linear(int(t.underlying_index[i]), notional, None if oi is None else oi[i])
            if im is None:  # the first column starts the sums (0.0 + x is x: the same bits)
                im, mm = im_i, mm_i
            else:
                im += im_i
                mm += mm_i
        if im is None:
            im, mm = np.zeros(lots.shape[0]), np.zeros(lots.shape[0])
        return Requirements(im=im, mm=mm)

    def breakdown(self, lots: np.ndarray, market: MarketState) -> dict[str, float]:
        lots = np.asarray(lots, dtype=np.float64)
        cols = np.flatnonzero(lots)
        oi = self._open_interest_for(Positions.of(lots), market, market_oi=False)
        im, mm = self._entry_requirements(cols, lots[cols], market, oi)
        out: dict[str, float] = {"im": float(im.sum()), "mm": float(mm.sum())}
        is_opt = self.table.is_option[cols]
        out["linear_im"] = float(im[~is_opt].sum())
        out["short_option_im"] = float(im[is_opt].sum())
        if self.isolated:
            for c, a, b in zip(cols, im, mm):
                sym = self.table.instruments[c].symbol
                out[f"im[{sym}]"] = float(a)
                out[f"mm[{sym}]"] = float(b)
        return out
