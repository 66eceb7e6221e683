"""Historical / filtered-historical VaR and expected-shortfall margin with anti-procyclicality
tools (METHODS.md section 5; EMIR RTS 153/2013 Art. 28).

History: a (T, U) array of prices per underlying (one row per ``row_interval`` seconds, columns
in the instrument table's underlying order), supplied at construction and extended with
:meth:`update_history`. Horizons are configured in days and turned into rows here: ``mpor`` =
``mpor_days`` x 86,400 / ``row_interval`` rows (a whole number, or the regime is refused),
``lookback`` / ``floor_lookback`` likewise (rounded to the nearest row).

Scenarios: the overlapping ``mpor``-row returns whose windows end in the last ``lookback`` rows,
r = P[t] / P[t - mpor] - 1, all underlyings jointly (their historical co-movement is the
correlation model). ``method="filtered"`` (FHS): daily log returns are divided by the EWMA vol
(``ewma_lambda``) of the day before and multiplied by today's EWMA vol, then compounded over the
window. A scenario moves every forward on an underlying by its return (F' = F (1 + r)); options
are revalued with Black-76 at unchanged vol.

Measure per account over its scenario losses L (S of them): VaR = the k-th largest loss,
k = ceil((1 - confidence) x S); ES = the mean of the k largest; floored at 0.

Anti-procyclicality, applied in this order to the per-account figure V:

1. stressed weighting (``stressed_weight`` w): V = (1 - w) V + w V_stressed, V_stressed the same
   measure over the returns of the stressed period -- ``stressed_period_days`` [start, end), or by
   default the ``lookback``-row window of the history so far with the highest realised volatility
   (mean over underlyings of the daily log-return standard deviation);
2. buffer (``buffer`` b): normally margin = (1 + b) V. The buffer is released when the buffered
   margin would rise by more than ``release_threshold`` over the account's previous margin (or
   while :meth:`set_stress` says so): that day margin = max(V, (1 + threshold) x previous), and
   while released margin = max(V, min(previous, (1 + b) V)) -- the buffer absorbs the rise until
   used up, then the margin follows V, and it does not fall while V eases. The buffer is rebuilt
   (release ends) once (1 + b) V is back at or below the previous margin, so the rebuild is
   never itself a margin increase. Stateful: "previous" is the account row's margin (and release
   flag) at the last history row -- the state advances when the history does, so any number of
   calls between two history updates give the same figure; reset when the number of accounts
   changes, or by :meth:`reset`;
3. floor (``floor_lookback`` n): margin = max(margin, the same measure over the last n rows of
   history -- or all of it when shorter).

The stressed and floor sets always use plain (unfiltered) returns: rescaling them to today's
volatility would undo their purpose.

IM = margin, MM = ``mm_ratio`` x IM (default 0.8: see ``VaRConfig``).
"""

from __future__ import annotations

import math

import numpy as np

from sim.core.instruments import InstrumentTable, MarketState
from clearing.margin.base import MarginRegime, Positions, Requirements, segment_sums_t
from clearing.margin.scenarios import Revaluer, market_key
from clearing.margin.config import VaRConfig

DAY = 86_400.0  # seconds


def mpor_returns(prices: np.ndarray, mpor: int) -> np.ndarray:
    """Overlapping ``mpor``-row simple returns, (T - mpor, U)."""
    return prices[mpor:] / prices[:-mpor] - 1.0


def ewma_vol(log_returns: np.ndarray, lam: float, seed_rows: int = 20) -> np.ndarray:
    """EWMA volatility after each row (same shape as ``log_returns``), seeded with the sample
    standard deviation of the first ``seed_rows`` rows."""
    n = log_returns.shape[0]
    out = np.empty_like(log_returns)
    var = np.var(log_returns[: max(1, min(seed_rows, n))], axis=0) + 1e-18
    for t in range(n):  # loop over time (history rows), once per history update
        var = lam * var + (1.0 - lam) * log_returns[t] ** 2
        out[t] = np.sqrt(var)
    return out


def filtered_returns(prices: np.ndarray, mpor: int, lam: float) -> np.ndarray:
    """FHS ``mpor``-row returns rescaled to today's EWMA volatility, (T - mpor, U)."""
    d = np.diff(np.log(prices), axis=0)  # (T-1, U): d[s] is the return into row s+1
    vol = ewma_vol(d, lam)
    prior = np.vstack([vol[:1], vol[:-1]])  # vol known before each return
    z = d * (vol[-1] / prior)
    c = np.vstack([np.zeros((1, z.shape[1])), np.cumsum(z, axis=0)])  # (T, U) cumulative
    return np.expm1(c[mpor:] - c[:-mpor])


def tail_measure(losses_t: np.ndarray, confidence: float, measure: str) -> np.ndarray:
    """Per column of ``losses_t`` (S x A): VaR (k-th largest) or ES (mean of k largest), >= 0."""
    s = losses_t.shape[0]
    if s == 0:
        return np.zeros(losses_t.shape[1])
    k = max(1, math.ceil((1.0 - confidence) * s - 1e-9))
    part = np.partition(losses_t, s - k, axis=0)
    if measure == "var":
        val = part[s - k]
    else:
        val = part[s - k:].mean(axis=0)
    return np.maximum(val, 0.0)


class VaRRegime(MarginRegime):
    name = "var"

    def __init__(self, table: InstrumentTable, config: VaRConfig | None = None,
                 history: np.ndarray | None = None, row_interval: float = DAY) -> None:
        super().__init__(table)
        self.config = cfg = config or VaRConfig()
        self.name = cfg.regime
        if not row_interval > 0:
            raise ValueError(f"row_interval must be positive seconds, got {row_interval}")
        self.row_interval = float(row_interval)
        mpor = cfg.mpor_days * DAY / row_interval
        if mpor < 1.0 - 1e-9 or abs(mpor - round(mpor)) > 1e-6:
            raise ValueError(f"mpor_days {cfg.mpor_days:g} is {mpor:g} history rows of {row_interval:g} s: "
                             "the margin period of risk must be a whole number (>= 1) of rows")
        self.mpor = int(round(mpor))
        self.lookback = self.rows(cfg.lookback_days)
        self.floor_lookback = None if cfg.floor_lookback_days is None else self.rows(cfg.floor_lookback_days)
        self.stressed_period = (None if cfg.stressed_period_days is None
                                else tuple(int(round(d * DAY / row_interval)) for d in cfg.stressed_period_days))
        self.rev = Revaluer(table)
        self._history = np.zeros((0, len(table.underlyings)))
        self._version = 0
        self._key: tuple | None = None
        self._pnl: dict[str, np.ndarray] = {}
        self._prev_margin: np.ndarray | None = None  # margin at the previous history version
        self._cur_margin: np.ndarray | None = None  # margin at the current history version
        self._prev_released: np.ndarray | None = None
        self._cur_released: np.ndarray | None = None
        self._state_version = -1
        self._stress: bool | None = None
        if history is not None:
            self.set_history(history)

    def rows(self, days: float) -> int:
        """History rows in ``days`` of time (at least one)."""
        return max(1, int(round(days * DAY / self.row_interval)))

    # ------------------------------------------------------------------------------- history
    @property
    def history(self) -> np.ndarray:
        return self._history

    def set_history(self, history: np.ndarray) -> None:
        h = np.asarray(history, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] != len(self.table.underlyings):
            raise ValueError(f"history must be (rows, {len(self.table.underlyings)}) prices, got {h.shape}")
        if not np.all(np.isfinite(h)) or np.any(h <= 0):
            raise ValueError("history prices must be finite and positive")
        self._history = h.copy()
        self._version += 1

    def update_history(self, rows: np.ndarray) -> None:
        """Append one row (U,) or several rows (n, U) of prices."""
        r = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        self.set_history(np.vstack([self._history, r]) if self._history.size else r)

    def set_stress(self, flag: bool | None) -> None:
        """Force the buffer released (True) or kept (False); None: automatic."""
        self._stress = flag

    def reset(self) -> None:
        """Forget the per-account previous margins (buffer state)."""
        self._prev_margin = self._cur_margin = None
        self._prev_released = self._cur_released = None
        self._state_version = -1

    # ----------------------------------------------------------------------------- scenarios
    def _returns(self, prices: np.ndarray) -> np.ndarray:
        cfg = self.config
        if prices.shape[0] <= self.mpor:
            return np.zeros((0, prices.shape[1]))
        if cfg.method == "filtered":
            return filtered_returns(prices, self.mpor, cfg.ewma_lambda)
        return mpor_returns(prices, self.mpor)

    def stressed_window(self) -> tuple[int, int]:
        """[start, end) rows of the stressed period (configured, or the most volatile window)."""
        h = self._history
        if self.stressed_period is not None:
            a, b = self.stressed_period
            return min(a, h.shape[0]), min(b, h.shape[0])
        n = h.shape[0]
        w = min(self.lookback + self.mpor, n)
        if n < 3 or w < 3:
            return 0, n
        d = np.diff(np.log(h), axis=0)
        c1 = np.vstack([np.zeros((1, d.shape[1])), np.cumsum(d, axis=0)])
        c2 = np.vstack([np.zeros((1, d.shape[1])), np.cumsum(d * d, axis=0)])
        m = w - 1  # returns per window
        s1, s2 = c1[m:] - c1[:-m], c2[m:] - c2[:-m]
        var = np.maximum(s2 / m - (s1 / m) ** 2, 0.0)
        start = int(np.argmax(np.sqrt(var).mean(axis=1)))
        return start, start + w

    def scenario_sets(self) -> dict[str, np.ndarray]:
        """Scenario returns (S x U) per use: 'base', and 'stressed' / 'floor' when configured."""
        cfg, h, mpor = self.config, self._history, self.mpor
        # filtered: filter with the whole history, keep the lookback windows
        out = {"base": self._returns(h)[-self.lookback:] if cfg.method == "filtered"
               else self._returns(h[-(self.lookback + mpor):])}
        if cfg.stressed_weight:
            a, b = self.stressed_window()
            out["stressed"] = mpor_returns(h[a:b], mpor) if b - a > mpor else np.zeros((0, h.shape[1]))
        if self.floor_lookback:
            seg = h[-(self.floor_lookback + mpor):]
            out["floor"] = mpor_returns(seg, mpor) if seg.shape[0] > mpor else np.zeros((0, h.shape[1]))
        return out

    def pnl_matrices(self, market: MarketState) -> dict[str, np.ndarray]:
        """Instruments x scenarios P&L per long lot for each scenario set (cached)."""
        key = (market_key(market), self._version)
        if key != self._key:
            u = self.table.underlying_index
            self._pnl = {name: self.rev.relative(market, r.T[u]) if r.shape[0] else np.zeros((len(self.table), 0))
                         for name, r in self.scenario_sets().items()}
            self._key = key
        return self._pnl

    # ---------------------------------------------------------------------------- computation
    def _measure(self, positions: Positions, pnl: np.ndarray) -> np.ndarray:
        cfg, n = self.config, positions.n_accounts
        out = np.zeros(n)
        if pnl.shape[1] == 0:
            return out
        pnl_t = np.ascontiguousarray(pnl.T)
        zero = np.zeros(len(self.table), dtype=np.int64)
        step = cfg.chunk_accounts
        for a in range(0, n, step):  # loop over account blocks (bounded memory), not accounts
            sub = positions if (a == 0 and n <= step) else _block(positions, a, min(n, a + step))
            seg, summed_t = segment_sums_t(sub, pnl_t, zero, 1)
            if seg.n:
                out[a + seg.row] = tail_measure(-summed_t, cfg.confidence, cfg.measure)
        return out

    def components(self, positions: Positions, market: MarketState, update_state: bool = True) -> dict[str, np.ndarray]:
        cfg = self.config
        mats = self.pnl_matrices(market)
        comp: dict[str, np.ndarray] = {"base": self._measure(positions, mats["base"])}
        v = comp["base"]
        if "stressed" in mats:
            comp["stressed"] = self._measure(positions, mats["stressed"])
            v = (1.0 - cfg.stressed_weight) * v + cfg.stressed_weight * comp["stressed"]
        comp["weighted"] = v
        margin = v
        if cfg.buffer is not None:
            buffered = (1.0 + cfg.buffer) * v
            if update_state and self._state_version != self._version:
                self._prev_margin, self._prev_released = self._cur_margin, self._cur_released
                self._state_version = self._version
            prev = self._prev_margin if update_state else None
            if prev is None or prev.shape != v.shape:
                margin = buffered
                released = np.zeros(v.shape, dtype=bool)
            else:
                was = self._prev_released if self._prev_released is not None else np.zeros(v.shape, dtype=bool)
                cap = (1.0 + cfg.release_threshold) * prev
                if self._stress is None:
                    start = ~was & (buffered > cap)
                    stay = was & (buffered > prev)
                else:
                    start = np.full(v.shape, bool(self._stress)) & ~was
                    stay = np.full(v.shape, bool(self._stress)) & was
                margin = np.where(start, np.maximum(v, np.minimum(buffered, cap)), buffered)
                margin = np.where(stay, np.maximum(v, np.minimum(prev, buffered)), margin)
                released = start | stay
            comp["buffered"] = margin
            comp["released"] = released.astype(np.float64)
        if "floor" in mats:
            comp["floor"] = self._measure(positions, mats["floor"])
            margin = np.maximum(margin, comp["floor"])
        comp["margin"] = margin
        if update_state and cfg.buffer is not None:
            self._cur_margin = comp["buffered"].copy()
            self._cur_released = comp["released"] > 0
        return comp

    def requirements(self, positions: Positions, market: MarketState) -> Requirements:
        im = self.components(positions, market)["margin"]
        return Requirements(im=im, mm=self.config.mm_ratio * im)

    def requirements_stateless(self, positions: Positions, market: MarketState) -> Requirements:
        """Requirements for a subset of accounts (a pre-trade check, a fill's two parties): the
        buffer state, which belongs to the full set of accounts, is neither read nor advanced."""
        im = self.components(positions, market, update_state=False)["margin"]
        return Requirements(im=im, mm=self.config.mm_ratio * im)

    def breakdown(self, lots: np.ndarray, market: MarketState) -> dict[str, float]:
        """One account's figures; does not touch the buffer state (uses no previous margin)."""
        c = self.components(Positions.of(lots), market, update_state=False)
        im = float(c["margin"][0])
        out = {"im": im, "mm": self.config.mm_ratio * im, "scenarios": float(self.pnl_matrices(market)["base"].shape[1])}
        out.update({k: float(v[0]) for k, v in c.items() if k != "margin"})
        return out


def _block(positions: Positions, a: int, b: int) -> Positions:
    key = ("block", a, b)
    hit = positions._cache.get(key)
    if hit is None:
        hit = Positions(positions.dense[a:b])
        positions._cache[key] = hit
    return hit
