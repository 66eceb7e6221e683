"""Margin: its level against gross notional, and procyclicality over the measurement window."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.experiment.metrics.columns import Tables, column_of


_ROUNDING = 1e-12  # relative size of a float-rounding difference


def _procyclicality(t: np.ndarray, x: np.ndarray, start: float, horizon: float) -> dict[str, Any]:
    """Peak-to-trough and the largest ``horizon``-second increase of the series ``x`` sampled at
    times ``t`` (sorted), on the samples at or after ``start`` only.

    peak-to-trough = max / min of the positive values in the window; the increase at sample k is
    x_k - x_j with j the last window sample at or before t_k - horizon (none: no increase at k);
    the relative increase x_k / x_j - 1 (x_j > 0), its largest found independently. An increase
    within 1e-12 of x_j is float rounding and counts as 0. Each largest increase has the time of
    the sample it ends at only when it is a rise (> 0); else its time is None."""
    keep = (t >= start) & np.isfinite(x)
    t, x = t[keep], x[keep]
    out: dict[str, Any] = {"samples": int(t.size), "peak": None, "trough": None, "peak_to_trough_ratio": None,
                           "max_increase": None, "max_increase_time": None, "max_increase_relative": None,
                           "max_increase_relative_time": None}
    if t.size == 0:
        return out
    out["peak"], out["trough"] = float(x.max()), float(x.min())
    positive = x[x > 0]
    if positive.size:
        out["peak_to_trough_ratio"] = float(positive.max() / positive.min())
    base = np.searchsorted(t, t - horizon, side="right") - 1
    ok = base >= 0
    if ok.any():
        k = np.flatnonzero(ok)
        inc = x[k] - x[base[k]]
        # a change within float rounding of the base (a constant rate recomputed at new prices) is none
        inc[np.abs(inc) <= _ROUNDING * np.abs(x[base[k]])] = 0.0
        i = int(np.argmax(inc))
        # a time only for a rise: argmax of no rise at all is merely the first sample
        out["max_increase"], out["max_increase_time"] = float(inc[i]), float(t[k[i]]) if inc[i] > 0 else None
        den = x[base[k]]
        rel_ok = den > 0
        if rel_ok.any():
            rel = np.full(k.size, -np.inf)
            rel[rel_ok] = np.where(inc[rel_ok] == 0.0, 0.0, x[k[rel_ok]] / den[rel_ok] - 1.0)
            j = int(np.argmax(rel))
            out["max_increase_relative"] = float(rel[j])
            out["max_increase_relative_time"] = float(t[k[j]]) if rel[j] > 0 else None
    return out


def _in_money(block: dict[str, Any], scale: float) -> dict[str, Any]:
    """A ``_procyclicality`` block of a money series, converted to quote units."""
    return {k: (v / scale if k in ("peak", "trough", "max_increase") and v is not None else v)
            for k, v in block.items()}


def _rate(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def margin_figures(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    start, horizon = cv["measure_from"], cv["horizon"]
    t = column_of(tables, "margin_totals", "time").astype(np.float64)
    im = column_of(tables, "margin_totals", "im").astype(np.float64)
    mm = column_of(tables, "margin_totals", "mm").astype(np.float64)
    eq = column_of(tables, "margin_totals", "equity").astype(np.float64)
    gross = column_of(tables, "margin_totals", "gross").astype(np.float64)
    order = np.argsort(t, kind="stable")
    t, im, mm, eq, gross = t[order], im[order], mm[order], eq[order], gross[order]
    rate = _rate(im, gross)
    rt = column_of(tables, "reference_margin", "time").astype(np.float64)
    r_order = np.argsort(rt, kind="stable")
    rt = rt[r_order]
    ref_rate = _rate(column_of(tables, "reference_margin", "im").astype(np.float64)[r_order],
                     column_of(tables, "reference_margin", "gross").astype(np.float64)[r_order])
    reference = _procyclicality(rt, ref_rate, start, horizon)
    in_window = (rt >= start) & np.isfinite(ref_rate)
    reference["at_measure_from"] = float(ref_rate[in_window][0]) if in_window.any() else None
    reference["final"] = float(ref_rate[np.isfinite(ref_rate)][-1]) if np.isfinite(ref_rate).any() else None
    out: dict[str, Any] = {
        "measure_from": start,
        "horizon_seconds": horizon,
        # procyclicality, from measure_from on: the population's total IM, its rate IM / gross,
        # and the rate of the fixed reference portfolio
        "population_im": _in_money(_procyclicality(t, im, start, horizon), scale),
        "population_rate": _procyclicality(t, rate, start, horizon),
        "reference_rate": reference,
    }
    if t.size == 0:
        out.update({"im_initial": None, "im_peak": None, "im_peak_time": None, "im_final": None, "mm_peak": None,
                    "gross_peak": None, "max_utilisation": None, "im_over_gross": None, "mm_over_gross": None})
        return out
    k_peak = int(np.argmax(im))
    util = _rate(im, eq)
    # samples come at re-valuations (irregular): each value holds until the next sample, the last
    # until the end of the episode
    held = np.diff(np.append(t, max(cv["duration"], float(t[-1]))))
    if not held.any():
        held = np.ones_like(held)

    def time_avg(x: np.ndarray) -> float | None:
        ok = np.isfinite(x)
        w = held[ok]
        return float(np.average(x[ok], weights=w)) if ok.any() and w.sum() > 0 else None
    out.update({
        # levels over the whole episode
        "im_initial": float(im[0]) / scale,
        "im_peak": float(im[k_peak]) / scale,
        "im_peak_time": float(t[k_peak]),
        "im_final": float(im[-1]) / scale,
        "mm_peak": float(mm.max()) / scale,
        "gross_peak": float(gross.max()) / scale,
        "max_utilisation": float(np.nanmax(util)) if np.isfinite(util).any() else None,
        # capital: IM (MM) over the gross notional of the same worst-case lots, time-weighted
        "im_over_gross": time_avg(rate),
        "mm_over_gross": time_avg(_rate(mm, gross)),
    })
    return out
