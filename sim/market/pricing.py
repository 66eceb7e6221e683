"""European option prices and Greeks: Black-76 (on forwards) and Black-Scholes (on spot).

Every function is a numpy ufunc-style computation: all arguments broadcast against each other,
so one call prices an (instruments x scenarios) grid. Nothing here loops over options in Python
except :func:`implied_vol_black76`, which loops over *iterations* (at most ~100), never elements.

Units
-----
- ``years``: time to expiry in years (``sim.core.instruments.SECONDS_PER_YEAR`` seconds each).
- ``vol``: annualised volatility as a fraction (0.80 means 80%).
- ``rate``: continuously compounded annual discount rate; ``carry``: continuous yield of the
  underlying (dividend, foreign rate, staking / funding yield), so the forward is
  ``spot * exp((rate - carry) * years)``.
- Greeks (:class:`Greeks`):
  ``delta`` = dV/dF (Black-76) or dV/dS (Black-Scholes), per unit of underlying;
  ``gamma`` = d2V/dF2 or d2V/dS2;
  ``vega``  = dV/dvol per 1.00 of vol (divide by 100 for "per vol point");
  ``theta`` = dV/dt with calendar time t, per year (= -dV/dyears; divide by 365 for per day).

Degenerate inputs: where ``years <= 0`` or ``vol <= 0`` the price is the discounted intrinsic value
of the deterministic forward, delta is the discounted indicator of being in the money, gamma and
vega are zero and theta is the time derivative of the discounted intrinsic value.

The normal CDF uses W. J. Cody's rational Chebyshev approximation of erfc (ACM TOMS 1969 /
Netlib SPECFUN CALERF), relative error below 1e-15 over the whole real line, fully vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Greeks",
    "erfc",
    "norm_cdf",
    "norm_pdf",
    "black76_price",
    "black76_greeks",
    "black_scholes_price",
    "black_scholes_greeks",
    "implied_vol_black76",
]

# ---------------------------------------------------------------------------------------------
# Normal distribution
# ---------------------------------------------------------------------------------------------

# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969),
# coefficients as in Netlib SPECFUN CALERF.
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
_SQRPI = 5.6418958354775628695e-1  # 1/sqrt(pi)
_THRESH = 0.46875
_INV_SQRT2 = 0.70710678118654752440
_INV_SQRT2PI = 0.39894228040143267794


def _exp_neg_sq(y: np.ndarray) -> np.ndarray:
    """exp(-y*y) computed as Cody does, splitting y to avoid cancellation in y*y."""
    ysq = np.trunc(y * 16.0) / 16.0
    delta = (y - ysq) * (y + ysq)
    return np.exp(-ysq * ysq) * np.exp(-delta)


def erfc(x: ArrayLike) -> np.ndarray:
    """Complementary error function, vectorised (Cody's rational approximations)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(x)
    out = np.empty_like(y)

    small = y <= _THRESH
    if np.any(small):
        ys = y[small]
        z = ys * ys
        xnum = _A[4] * z
        xden = z
        for i in range(3):
            xnum = (xnum + _A[i]) * z
            xden = (xden + _B[i]) * z
        out[small] = 1.0 - ys * (xnum + _A[3]) / (xden + _B[3])

    mid = (y > _THRESH) & (y <= 4.0)
    if np.any(mid):
        ym = y[mid]
        xnum = _C[8] * ym
        xden = ym
        for i in range(7):
            xnum = (xnum + _C[i]) * ym
            xden = (xden + _D[i]) * ym
        out[mid] = _exp_neg_sq(ym) * (xnum + _C[7]) / (xden + _D[7])

    big = y > 4.0
    if np.any(big):
        yb = y[big]
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            z = 1.0 / (yb * yb)
            xnum = _P[5] * z
            xden = z
            for i in range(4):
                xnum = (xnum + _P[i]) * z
                xden = (xden + _Q[i]) * z
            r = z * (xnum + _P[4]) / (xden + _Q[4])
            r = (_SQRPI - r) / yb
            r = _exp_neg_sq(yb) * r
        out[big] = np.where(np.isfinite(yb), r, 0.0)

    neg = x < 0.0
    out = np.where(neg, 2.0 - out, out)
    out = np.where(np.isnan(x), np.nan, out)
    return out


def norm_cdf(x: ArrayLike) -> np.ndarray:
    """Standard normal CDF, vectorised; accurate in the far tails (computed via erfc)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * erfc(-x * _INV_SQRT2)


def norm_pdf(x: ArrayLike) -> np.ndarray:
    """Standard normal density, vectorised."""
    x = np.asarray(x, dtype=np.float64)
    return _INV_SQRT2PI * np.exp(-0.5 * x * x)


# ---------------------------------------------------------------------------------------------
# Black-76 / Black-Scholes core
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Greeks:
    """Option sensitivities, arrays broadcast to the inputs' shape.

    delta: dV/d(underlying); gamma: second derivative; vega: dV/dvol per 1.00 vol;
    theta: dV/d(calendar time) per year (negative for a long option that only decays).
    """

    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray


def _prepare(forward: ArrayLike, strike: ArrayLike, years: ArrayLike, vol: ArrayLike, is_call: ArrayLike,
             rate: ArrayLike, *more: ArrayLike) -> tuple[np.ndarray, ...]:
    """Broadcast every argument to one shape (floats, is_call as bool)."""
    return np.broadcast_arrays(
        np.asarray(forward, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(years, dtype=np.float64),
        np.asarray(vol, dtype=np.float64),
        np.asarray(is_call, dtype=bool),
        np.asarray(rate, dtype=np.float64),
        *(np.asarray(m, dtype=np.float64) for m in more),
    )


def _d1d2(f: np.ndarray, k: np.ndarray, t: np.ndarray, v: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """d1, d2 and sqrt(t); degenerate cells (t<=0 or v<=0) get d = +/-inf by moneyness."""
    degenerate = (t <= 0.0) | (v <= 0.0)
    t_safe = np.where(degenerate, 1.0, t)
    v_safe = np.where(degenerate, 1.0, v)
    sqrt_t = np.sqrt(t_safe)
    sd = v_safe * sqrt_t
    with np.errstate(divide="ignore", invalid="ignore"):
        log_fk = np.log(f / k)
        d1 = (log_fk + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    # Deterministic limit: the option finishes in the money iff F > K.
    lim = np.where(f > k, np.inf, np.where(f < k, -np.inf, 0.0))
    d1 = np.where(degenerate, lim, d1)
    d2 = np.where(degenerate, lim, d2)
    return d1, d2, sqrt_t, degenerate


def _forward_price(f: np.ndarray, k: np.ndarray, t: np.ndarray, v: np.ndarray, c: np.ndarray, df: np.ndarray,
                   d: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Discounted Black price given the forward ``f`` and discount factor ``df`` (``d``: the
    ``_d1d2`` of these inputs when the caller has it already)."""
    d1, d2, _, degenerate = _d1d2(f, k, t, v) if d is None else d
    w = np.where(c, 1.0, -1.0)
    price = df * w * (f * norm_cdf(w * d1) - k * norm_cdf(w * d2))
    intrinsic = df * np.maximum(w * (f - k), 0.0)
    # Exact intrinsic in the degenerate limit (avoids 0*inf and ATM 0.5 artefacts).
    price = np.where(degenerate, intrinsic, price)
    # Round-off can push deep-OTM prices a hair below zero.
    return np.maximum(price, 0.0)


def black76_price(forward: ArrayLike, strike: ArrayLike, years: ArrayLike, vol: ArrayLike, is_call: ArrayLike,
                  rate: ArrayLike = 0.0) -> np.ndarray:
    """Black-76 price of a European option on a forward / futures price.

    V = e^{-rT} * w * (F N(w d1) - K N(w d2)), d1,2 = (ln(F/K) +/- vol^2 T / 2) / (vol sqrt T),
    w = +1 for calls, -1 for puts. At years <= 0 or vol <= 0: e^{-rT} max(w (F - K), 0).
    """
    f, k, t, v, c, r = _prepare(forward, strike, years, vol, is_call, rate)
    df = np.exp(-r * np.maximum(t, 0.0))
    return _forward_price(f, k, t, v, c, df)


def black76_greeks(forward: ArrayLike, strike: ArrayLike, years: ArrayLike, vol: ArrayLike, is_call: ArrayLike,
                   rate: ArrayLike = 0.0) -> Greeks:
    """Black-76 Greeks with respect to the forward (see module docstring for units)."""
    f, k, t, v, c, r = _prepare(forward, strike, years, vol, is_call, rate)
    tt = np.maximum(t, 0.0)
    df = np.exp(-r * tt)
    d = d1, d2, sqrt_t, degenerate = _d1d2(f, k, t, v)
    w = np.where(c, 1.0, -1.0)
    nd1 = np.where(degenerate, 0.0, norm_pdf(np.where(degenerate, 0.0, d1)))
    price = _forward_price(f, k, t, v, c, df, d)
    itm = np.where(degenerate, (w * (f - k) > 0.0).astype(np.float64), norm_cdf(w * d1))
    delta = df * w * itm
    v_safe = np.where(degenerate, 1.0, v)
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.where(degenerate, 0.0, df * nd1 / (f * v_safe * sqrt_t))
    vega = df * f * nd1 * sqrt_t
    theta = r * price - np.where(degenerate, 0.0, df * f * nd1 * v_safe / (2.0 * sqrt_t))
    return Greeks(delta=delta, gamma=gamma, vega=vega, theta=theta)


def black_scholes_price(spot: ArrayLike, strike: ArrayLike, years: ArrayLike, vol: ArrayLike, is_call: ArrayLike,
                        rate: ArrayLike = 0.0, carry: ArrayLike = 0.0) -> np.ndarray:
    """Black-Scholes(-Merton) price on spot with discount ``rate`` and continuous yield ``carry``.

    Equivalent to Black-76 on the forward F = S e^{(r - q) T} discounted at r.
    """
    s, k, t, v, c, r, q = _prepare(spot, strike, years, vol, is_call, rate, carry)
    tt = np.maximum(t, 0.0)
    f = s * np.exp((r - q) * tt)
    return _forward_price(f, k, t, v, c, np.exp(-r * tt))


def black_scholes_greeks(spot: ArrayLike, strike: ArrayLike, years: ArrayLike, vol: ArrayLike, is_call: ArrayLike,
                         rate: ArrayLike = 0.0, carry: ArrayLike = 0.0) -> Greeks:
    """Black-Scholes Greeks with respect to spot (see module docstring for units).

    delta = w e^{-qT} N(w d1); gamma = e^{-qT} n(d1) / (S vol sqrt T); vega = S e^{-qT} n(d1) sqrt T;
    theta = -S e^{-qT} n(d1) vol / (2 sqrt T) - w r K e^{-rT} N(w d2) + w q S e^{-qT} N(w d1).
    """
    s, k, t, v, c, r, q = _prepare(spot, strike, years, vol, is_call, rate, carry)
    tt = np.maximum(t, 0.0)
    dq = np.exp(-q * tt)
    dr = np.exp(-r * tt)
    f = s * np.exp((r - q) * tt)
    d1, d2, sqrt_t, degenerate = _d1d2(f, k, t, v)
    w = np.where(c, 1.0, -1.0)
    nd1 = np.where(degenerate, 0.0, norm_pdf(np.where(degenerate, 0.0, d1)))
    itm_ind = (w * (f - k) > 0.0).astype(np.float64)
    n1 = np.where(degenerate, itm_ind, norm_cdf(w * d1))
    n2 = np.where(degenerate, itm_ind, norm_cdf(w * d2))
    v_safe = np.where(degenerate, 1.0, v)
    delta = w * dq * n1
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.where(degenerate, 0.0, dq * nd1 / (s * v_safe * sqrt_t))
    vega = s * dq * nd1 * sqrt_t
    theta = (
        -np.where(degenerate, 0.0, s * dq * nd1 * v_safe / (2.0 * sqrt_t))
        - w * r * k * dr * n2
        + w * q * s * dq * n1
    )
    return Greeks(delta=delta, gamma=gamma, vega=vega, theta=theta)


# ---------------------------------------------------------------------------------------------
# Implied volatility
# ---------------------------------------------------------------------------------------------


def _undiscounted_otm(f: np.ndarray, k: np.ndarray, t: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Undiscounted Black price with sign w (+1 call, -1 put); w chosen so the option is OTM."""
    d1, d2, _, _ = _d1d2(f, k, t, v)
    return w * (f * norm_cdf(w * d1) - k * norm_cdf(w * d2))


def implied_vol_black76(
    price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    years: ArrayLike,
    is_call: ArrayLike,
    rate: ArrayLike = 0.0,
    *,
    tol: float = 1e-14,
    max_iter: int = 100,
    vol_max: float = 100.0,
) -> np.ndarray:
    """Black-76 implied volatility, vectorised: safeguarded Newton inside a shrinking bracket.

    The price is undiscounted and converted to the out-of-the-money side by put-call parity
    (C - P = F - K), which keeps the inversion well conditioned. Each iteration takes a Newton
    step in vol; a step that leaves the current bracket [lo, hi] is replaced by bisection.
    Cells whose price is outside the no-arbitrage bounds (below intrinsic, at or above the
    forward/strike bound) or with years <= 0 return NaN. ``tol`` is the absolute tolerance on the
    undiscounted price relative to max(F, K).
    """
    p, f, k, t, c, r = np.broadcast_arrays(
        np.asarray(price, dtype=np.float64),
        np.asarray(forward, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(years, dtype=np.float64),
        np.asarray(is_call, dtype=bool),
        np.asarray(rate, dtype=np.float64),
    )
    shape = p.shape
    p, f, k, t, c, r = (a.ravel().copy() for a in (p, f, k, t, c, r))
    out = np.full(p.shape, np.nan)
    tt = np.where(t > 0.0, t, 1.0)
    undisc = p * np.exp(r * np.maximum(t, 0.0))
    # Convert to an OTM-equivalent call: call = put + (F - K).
    call = np.where(c, undisc, undisc + (f - k))
    intrinsic = np.maximum(f - k, 0.0)
    time_value = call - intrinsic
    scale = np.maximum(f, k)
    valid = (t > 0.0) & (f > 0.0) & (k > 0.0) & np.isfinite(call) & (call < f) & (time_value >= -tol * scale)
    zero_tv = valid & (time_value <= tol * scale)
    out[zero_tv] = 0.0
    todo = valid & ~zero_tv
    if not np.any(todo):
        return out.reshape(shape)

    idx = np.nonzero(todo)[0]
    f_, k_, t_, target = f[idx], k[idx], tt[idx], call[idx]
    # Invert the out-of-the-money side: for F > K the put, whose price is the call's time value.
    w_otm = np.where(f_ > k_, -1.0, 1.0)
    target = np.where(f_ > k_, target - (f_ - k_), target)
    sqrt_t = np.sqrt(t_)
    lo = np.zeros_like(target)
    hi = np.full_like(target, vol_max)
    # Initial guess: the inflection point sqrt(2|ln F/K| / T) (Manaster-Koehler), or the
    # Brenner-Subrahmanyam ATM approximation when that is tiny.
    infl = np.sqrt(2.0 * np.abs(np.log(f_ / k_)) / t_)
    bs_guess = np.sqrt(2.0 * np.pi / t_) * target / f_
    sigma = np.where(infl > 1e-3, infl, bs_guess)
    sigma = np.clip(sigma, 1e-4, vol_max * 0.5)
    abs_tol = tol * scale[idx]
    done = np.zeros(target.shape, dtype=bool)
    for _ in range(max_iter):
        model = _undiscounted_otm(f_, k_, t_, sigma, w_otm)
        diff = model - target
        conv = np.abs(diff) <= abs_tol
        done |= conv
        if np.all(done):
            break
        hi = np.where(diff > 0.0, np.minimum(hi, sigma), hi)
        lo = np.where(diff < 0.0, np.maximum(lo, sigma), lo)
        d1 = (np.log(f_ / k_) + 0.5 * sigma * sigma * t_) / (sigma * sqrt_t)
        vega = f_ * norm_pdf(d1) * sqrt_t
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = sigma - diff / vega
        bad = ~np.isfinite(newton) | (newton <= lo) | (newton >= hi)
        step = np.where(bad, 0.5 * (lo + hi), newton)
        sigma = np.where(done, sigma, step)
        done |= (hi - lo) <= 1e-15 * np.maximum(hi, 1.0)
    model = _undiscounted_otm(f_, k_, t_, sigma, w_otm)
    ok = np.abs(model - target) <= np.maximum(abs_tol, 1e-9 * scale[idx])
    out[idx] = np.where(ok, sigma, np.nan)
    return out.reshape(shape)
