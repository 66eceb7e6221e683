"""Scripted shocks composed on a base log-price path.

Each shock is a pydantic model (``sim.market.paths_config``) and a function here that takes the log-price
array ``x`` (T, U), the grid ``times`` (T,) and the column ``names`` and returns a new array; the
input is never modified. Level overlays (crash, gap, depeg) add a deterministic log offset o(t)
to the base path, so the shocked price is base(t) * e^{o(t)} and the base path's own noise stays.
Increment shocks (vol spike, correlation breakdown) rewrite the increments x_{k+1} - x_k of the
steps that start inside their window [start, start + duration) and re-accumulate the path, so
everything after the window moves with the new level.

:func:`apply_shocks` applies increment shocks first (in the order listed) and level overlays
after (in the order listed); crash and gap overlays commute, a pinned depeg overrides its column.
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np

from sim.market.increments import cum_log
from sim.market.paths_config import (
    CorrelationBreakdownShock,
    CrashShock,
    DepegShock,
    GapShock,
    VolSpikeShock,
)

__all__ = [
    "apply_crash",
    "apply_gap",
    "apply_vol_spike",
    "apply_correlation_breakdown",
    "apply_depeg",
    "apply_shocks",
    "crash_offset",
    "depeg_profile",
]


def _cols(names: Sequence[str], targets: Sequence[str] | None) -> np.ndarray:
    if targets is None:
        return np.arange(len(names))
    missing = [t for t in targets if t not in names]
    if missing:
        raise ValueError(f"shock names unknown underlyings {missing} (known: {list(names)})")
    return np.array([list(names).index(t) for t in targets], dtype=np.int64)


def _ramp(times: np.ndarray, start: float, duration: float) -> np.ndarray:
    """0 before ``start``, rising linearly to 1 at start + duration, 1 after (a step if duration 0)."""
    if duration <= 0.0:
        return (times >= start).astype(np.float64)
    return np.clip((times - start) / duration, 0.0, 1.0)


def _step_window(times: np.ndarray, start: float, duration: float) -> np.ndarray:
    """Mask over the T-1 steps whose start time lies in [start, start + duration)."""
    t = times[:-1]
    return (t >= start) & (t < start + duration)


def crash_offset(times: np.ndarray, shock: CrashShock) -> np.ndarray:
    """Log offset of a crash: ln(1-drop) * ramp(start, duration), then moving to
    ln(1 - drop*(1-recovery)) over ``recovery_duration``."""
    low = math.log1p(-shock.drop)
    rec = math.log1p(-shock.drop * (1.0 - shock.recovery))
    end = shock.start + shock.duration
    off = low * _ramp(times, shock.start, shock.duration)
    if shock.recovery > 0.0:
        off = off + (rec - low) * _ramp(times, end, shock.recovery_duration)
    return off


def apply_crash(x: np.ndarray, times: np.ndarray, names: Sequence[str], shock: CrashShock) -> np.ndarray:
    out = x.copy()
    out[:, _cols(names, shock.underlyings)] += crash_offset(times, shock)[:, None]
    return out


def apply_gap(x: np.ndarray, times: np.ndarray, names: Sequence[str], shock: GapShock) -> np.ndarray:
    out = x.copy()
    out[:, _cols(names, shock.underlyings)] += (math.log1p(shock.size) * (times >= shock.start))[:, None]
    return out


def apply_vol_spike(x: np.ndarray, times: np.ndarray, names: Sequence[str], shock: VolSpikeShock) -> np.ndarray:
    """Multiply the increments of the steps inside the window by ``factor`` (their realised vol
    scales by exactly ``factor``; the drift per step, negligible at these scales, scales too)."""
    cols = _cols(names, shock.underlyings)
    win = _step_window(times, shock.start, shock.duration)
    inc = np.diff(x, axis=0)
    inc[np.ix_(win, cols)] *= shock.factor
    return cum_log(x[0], inc)


def _sym_power(c: np.ndarray, p: float) -> np.ndarray:
    """Symmetric power of a PSD matrix (eigenvalues floored at 1e-12 for negative powers)."""
    w, v = np.linalg.eigh(0.5 * (c + c.T))
    w = np.clip(w, 1e-12 if p < 0 else 0.0, None)
    return (v * w**p) @ v.T


def apply_correlation_breakdown(
    x: np.ndarray, times: np.ndarray, names: Sequence[str], shock: CorrelationBreakdownShock
) -> np.ndarray:
    """Re-mix the window's increments of the target columns to the target correlation.

    Inside the window each column's increments are standardised by their window mean and std,
    whitened with the inverse symmetric square root of their sample correlation C (so their
    sample correlation becomes the identity exactly) and re-coloured with the symmetric square
    root of the target R: z' = z C^{-1/2} R^{1/2}. Each column keeps its window mean and std,
    so realised vols and the window's drift are unchanged while the realised correlation inside
    the window equals R (up to the conditioning of C; it needs more steps than columns). Columns
    with zero dispersion in the window are left alone.
    """
    cols = _cols(names, shock.underlyings)
    win = _step_window(times, shock.start, shock.duration)
    inc = np.diff(x, axis=0)
    d = inc[np.ix_(win, cols)]
    if d.shape[0] < 2:
        return x.copy()
    mu = d.mean(axis=0)
    sd = d.std(axis=0)
    live = sd > 0.0
    if live.sum() < 2:
        return x.copy()
    target = shock.target_correlation()[np.ix_(live, live)]
    z = (d[:, live] - mu[live]) / sd[live]
    c = (z.T @ z) / z.shape[0]
    z_new = z @ _sym_power(c, -0.5) @ _sym_power(target, 0.5)
    d_new = d.copy()
    d_new[:, live] = mu[live] + sd[live] * z_new
    inc[np.ix_(win, cols)] = d_new
    return cum_log(x[0], inc)


def depeg_profile(times: np.ndarray, shock: DepegShock) -> np.ndarray:
    """Price profile: peg, linear to trough over ``duration``, linear to the recovery level over
    ``recovery_duration``, then flat."""
    end = shock.start + shock.duration
    rec = shock.trough if shock.recovery_level is None else shock.recovery_level
    p = shock.peg + (shock.trough - shock.peg) * _ramp(times, shock.start, shock.duration)
    p = p + (rec - shock.trough) * _ramp(times, end, shock.recovery_duration)
    return p


def apply_depeg(x: np.ndarray, times: np.ndarray, names: Sequence[str], shock: DepegShock) -> np.ndarray:
    out = x.copy()
    j = int(_cols(names, [shock.underlying])[0])
    prof = depeg_profile(times, shock)
    if shock.pin:
        out[:, j] = np.log(prof)
    else:
        out[:, j] += np.log(prof / shock.peg)
    return out


# kind -> the function applying it to (T, U) log prices; each takes its own kind's shock
_ShockFn = Callable[[np.ndarray, np.ndarray, Sequence[str], Any], np.ndarray]
_INCREMENT: dict[str, _ShockFn] = {"vol_spike": apply_vol_spike, "correlation_breakdown": apply_correlation_breakdown}
_LEVEL: dict[str, _ShockFn] = {"crash": apply_crash, "gap": apply_gap, "depeg": apply_depeg}


def apply_shocks(log_prices: np.ndarray, vols: np.ndarray, times: np.ndarray, names: Sequence[str],
                 shocks: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``shocks`` to (T, U) log prices; returns (log_prices, vols). Vol spikes also scale
    ``vols`` over their window; pinned depegs zero their column's vol."""
    x = np.asarray(log_prices, dtype=np.float64)
    v = np.array(vols, dtype=np.float64, copy=True)
    for s in shocks:
        if s.kind in _INCREMENT:
            x = _INCREMENT[s.kind](x, times, names, s)
            if s.kind == "vol_spike":
                rows = (times >= s.start) & (times < s.start + s.duration)
                v[np.ix_(rows, _cols(names, s.underlyings))] *= s.factor
    for s in shocks:
        if s.kind in _LEVEL:
            x = _LEVEL[s.kind](x, times, names, s)
            if s.kind == "depeg" and s.pin:
                v[:, int(_cols(names, [s.underlying])[0])] = 0.0
    return x, v
