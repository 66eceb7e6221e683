"""Margin backtest statistics, vectorised over portfolios: Kupiec's proportion-of-failures test,
Christoffersen's independence test and the Basel traffic-light zone.

Every function takes arrays (one entry per portfolio, or exceedance indicators runs x portfolios)
and returns arrays of the same leading shape; 0 x log 0 is taken as 0 (``scipy.special.xlogy``).
Definitions are in docs/METHODOLOGY.md, "Margin backtesting".
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy
from scipy.stats import binom, chi2

# Basel Committee, "Supervisory framework for the use of backtesting in conjunction with the
# internal models approach to market risk capital requirements" (1996): a zone is chosen by the
# cumulative binomial probability of the exceedance count under the model's own coverage.
GREEN_BELOW = 0.95
RED_FROM = 0.9999
ZONES = ("green", "yellow", "red")
NO_ZONE = -1  # the zone index of an untested portfolio: in no zone (not green)


def zone_name(index: int | np.integer) -> str | None:
    """``ZONES[index]``, None for ``NO_ZONE`` (a negative index must not read as "red")."""
    return None if index < 0 else ZONES[int(index)]


def _loglik(x: np.ndarray, n: np.ndarray, rate: np.ndarray | float) -> np.ndarray:
    """ln[(1 - rate)^(n - x) rate^x], with 0 ln 0 = 0."""
    return xlogy(n - x, 1.0 - rate) + xlogy(x, rate)


def kupiec_pof(exceedances: np.ndarray, observations: np.ndarray, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """Kupiec (1995) likelihood ratio of the exceedance rate x / n against 1 - ``coverage``, and its
    p-value (chi-square, 1 degree of freedom). Two-sided: too few exceedances reject as well."""
    x = np.asarray(exceedances, dtype=np.float64)
    n = np.asarray(observations, dtype=np.float64)
    p = 1.0 - float(coverage)
    with np.errstate(divide="ignore", invalid="ignore"):
        phat = np.where(n > 0, x / np.where(n > 0, n, 1.0), 0.0)
    lr = np.where(n > 0, -2.0 * (_loglik(x, n, p) - _loglik(x, n, phat)), 0.0)
    lr = np.maximum(lr, 0.0)  # rounding can leave -1e-16 when phat == p
    return lr, np.where(n > 0, chi2.sf(lr, 1), 1.0)


def transition_counts(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n00, n01, n10, n11) per column of a runs x portfolios boolean matrix: n_ij counts the
    consecutive pairs (run t-1 in state i, run t in state j)."""
    h = np.asarray(hits, dtype=bool)
    prev, cur = h[:-1], h[1:]
    n11 = np.count_nonzero(prev & cur, axis=0)
    n10 = np.count_nonzero(prev & ~cur, axis=0)
    n01 = np.count_nonzero(~prev & cur, axis=0)
    n00 = (h.shape[0] - 1) - n11 - n10 - n01 if h.shape[0] else np.zeros(h.shape[1:], dtype=np.int64)
    return n00, n01, n10, n11


def christoffersen_independence(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Christoffersen (1998) likelihood ratio of a first-order Markov chain of exceedances against
    independence, and its p-value (chi-square, 1 degree of freedom), per column of ``hits``."""
    return christoffersen_from_counts(*transition_counts(hits))


def christoffersen_from_counts(n00: np.ndarray, n01: np.ndarray, n10: np.ndarray,
                               n11: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`christoffersen_independence` from the transition counts (:func:`transition_counts`)."""
    n00, n01, n10, n11 = (np.asarray(c).astype(np.float64) for c in (n00, n01, n10, n11))
    with np.errstate(divide="ignore", invalid="ignore"):
        p01 = np.where(n00 + n01 > 0, n01 / (n00 + n01), 0.0)
        p11 = np.where(n10 + n11 > 0, n11 / (n10 + n11), 0.0)
        total = n00 + n01 + n10 + n11
        p = np.where(total > 0, (n01 + n11) / np.where(total > 0, total, 1.0), 0.0)
    restricted = xlogy(n00 + n10, 1.0 - p) + xlogy(n01 + n11, p)
    free = xlogy(n00, 1.0 - p01) + xlogy(n01, p01) + xlogy(n10, 1.0 - p11) + xlogy(n11, p11)
    lr = np.maximum(-2.0 * (restricted - free), 0.0)
    return lr, chi2.sf(lr, 1)


def traffic_light(exceedances: np.ndarray, observations: np.ndarray, coverage: float) -> np.ndarray:
    """Basel zone index per entry (0 green, 1 yellow, 2 red) and the cumulative probability it
    rests on: P[X <= x], X ~ Binomial(n, 1 - coverage). Green below 95%, red from 99.99%."""
    x = np.asarray(exceedances)
    cum = binom.cdf(x, np.asarray(observations), 1.0 - float(coverage))
    return np.where(cum < GREEN_BELOW, 0, np.where(cum < RED_FROM, 1, 2))


def cumulative_probability(exceedances: np.ndarray, observations: np.ndarray, coverage: float) -> np.ndarray:
    """P[X <= x], X ~ Binomial(n, 1 - coverage): the figure the traffic light reads."""
    return binom.cdf(np.asarray(exceedances), np.asarray(observations), 1.0 - float(coverage))


def peak_to_trough(series: np.ndarray) -> np.ndarray:
    """Per column of a runs x portfolios matrix: max_t m_t / min_{s<=t} m_s over the positive
    values (the same measure as an episode's ``margin.peak_to_trough_ratio``); nan where a column
    has none."""
    m = np.asarray(series, dtype=np.float64)
    pos = m > 0
    trough = np.minimum.accumulate(np.where(pos, m, np.inf), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pos & np.isfinite(trough), m / trough, -np.inf)
    out = ratio.max(axis=0) if m.shape[0] else np.full(m.shape[1:], -np.inf)
    return np.where(np.isfinite(out), out, np.nan)


def largest_increase(series: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the largest rise over ``window`` runs, absolute max_t (m_t - m_{t-w}) and relative
    max_t (m_t / m_{t-w} - 1) over m_{t-w} > 0; nan where there is no such pair."""
    m = np.asarray(series, dtype=np.float64)
    if window < 1 or m.shape[0] <= window:
        nan = np.full(m.shape[1:], np.nan)
        return nan, nan.copy()
    now, then = m[window:], m[:-window]
    work = np.subtract(now, then)
    absolute = work.max(axis=0)
    # m_t / m_{t-w} - 1 where m_{t-w} > 0, else -inf: the same operations, in one reused buffer
    down = ~(then > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(now, then, out=work)
    work -= 1.0
    work[down] = -np.inf
    relative = work.max(axis=0)
    return absolute, np.where(np.isfinite(relative), relative, np.nan)
