import math

import numpy as np
import pytest

from sim.market.pricing import (
    Greeks,
    black76_greeks,
    black76_price,
    black_scholes_greeks,
    black_scholes_price,
    erfc,
    implied_vol_black76,
    norm_cdf,
    norm_pdf,
)


# ----------------------------------------------------------------------------- normal CDF


def test_erfc_matches_math_erfc():
    x = np.linspace(-6.0, 26.0, 20001)
    ref = np.array([math.erfc(v) for v in x])
    assert np.max(np.abs(erfc(x) - ref) / ref) < 1e-14


def test_norm_cdf_known_values():
    x = np.array([0.0, 1.0, -1.0, 1.959963984540054, 3.0, -5.0, -10.0])
    ref = np.array(
        [0.5, 0.8413447460685429, 0.15865525393145707, 0.975, 0.9986501019683699,
         2.866515718791939e-07, 7.61985302416047e-24]
    )
    np.testing.assert_allclose(norm_cdf(x), ref, rtol=1e-13, atol=1e-16)
    assert abs(norm_cdf(1.0) + norm_cdf(-1.0) - 1.0) < 1e-15


def test_norm_cdf_tails_and_specials():
    assert norm_cdf(np.inf) == 1.0
    assert norm_cdf(-np.inf) == 0.0
    assert np.isnan(norm_cdf(np.nan))
    x = np.linspace(-30, 8, 5001)
    ref = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    np.testing.assert_allclose(norm_cdf(x), ref, rtol=1e-12, atol=0)
    assert norm_pdf(0.0) == pytest.approx(1.0 / math.sqrt(2 * math.pi), rel=1e-15)


# ----------------------------------------------------------------------------- textbook values


def test_hull_black_scholes_example():
    # Hull, Options Futures and Other Derivatives: S=42, K=40, r=10%, vol=20%, T=0.5.
    c, p = black_scholes_price(42.0, 40.0, 0.5, 0.2, np.array([True, False]), rate=0.10)
    assert round(float(c), 2) == 4.76
    assert round(float(p), 2) == 0.81
    assert c == pytest.approx(4.759422392871532, abs=1e-12)
    assert p == pytest.approx(0.8085993729000922, abs=1e-12)


def test_hull_black76_example():
    # Hull: European put on a futures, F=K=20, r=9%, T=4 months, vol=25% -> 1.12.
    p = black76_price(20.0, 20.0, 4.0 / 12.0, 0.25, False, rate=0.09)
    assert round(float(p), 2) == 1.12
    # ATM: call == put under Black-76.
    assert black76_price(20.0, 20.0, 4.0 / 12.0, 0.25, True, rate=0.09) == pytest.approx(float(p), abs=1e-14)


def test_black_scholes_with_carry_equals_black76_on_forward():
    s, k, t, v, r, q = 100.0, 95.0, 0.75, 0.35, 0.04, 0.07
    f = s * math.exp((r - q) * t)
    for call in (True, False):
        assert black_scholes_price(s, k, t, v, call, r, q) == pytest.approx(
            float(black76_price(f, k, t, v, call, r)), abs=1e-12
        )


# ----------------------------------------------------------------------------- parity


def test_put_call_parity():
    rng = np.random.default_rng(1)
    n = 2000
    f = rng.uniform(10, 200, n)
    k = f * np.exp(rng.normal(0, 0.5, n))
    t = rng.uniform(0.001, 3, n)
    v = rng.uniform(0.05, 2.0, n)
    r = rng.uniform(-0.01, 0.1, n)
    c = black76_price(f, k, t, v, True, r)
    p = black76_price(f, k, t, v, False, r)
    np.testing.assert_allclose(c - p, np.exp(-r * t) * (f - k), atol=1e-10 * 200)
    q = rng.uniform(0, 0.1, n)
    c = black_scholes_price(f, k, t, v, True, r, q)
    p = black_scholes_price(f, k, t, v, False, r, q)
    np.testing.assert_allclose(c - p, f * np.exp(-q * t) - k * np.exp(-r * t), atol=1e-10 * 200)


def test_put_call_parity_tight_moderate_values():
    f, k, t, v, r = 100.0, np.linspace(60, 140, 81), 0.5, 0.3, 0.05
    c = black76_price(f, k, t, v, True, r)
    p = black76_price(f, k, t, v, False, r)
    assert np.max(np.abs(c - p - np.exp(-r * t) * (f - k))) < 1e-10


# ----------------------------------------------------------------------------- Greeks vs finite differences


CASES = [
    # forward/spot, strike, years, vol, call, rate, carry
    (100.0, 100.0, 0.5, 0.3, True, 0.05, 0.0),
    (100.0, 120.0, 0.1, 0.8, False, 0.02, 0.03),
    (3000.0, 2500.0, 0.05, 0.9, True, 0.0, 0.1),
    (50.0, 60.0, 2.0, 0.2, False, 0.07, 0.01),
]


# (greeks, price) on the underlying x: Black-76 on a forward (no carry), Black-Scholes on spot with yield q
MODELS = {
    "black76": (lambda x, k, t, v, call, r, q: black76_greeks(x, k, t, v, call, r),
                lambda x, k, t, v, call, r, q: black76_price(x, k, t, v, call, r)),
    "black_scholes": (black_scholes_greeks, black_scholes_price),
}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("x, k, t, v, call, r, q", CASES)
def test_greeks_vs_finite_differences(model, x, k, t, v, call, r, q):
    greeks, pricer = MODELS[model]
    g = greeks(x, k, t, v, call, r, q)
    assert isinstance(g, Greeks)
    h = x * 1e-4
    price = lambda **kw: float(pricer(kw.get("x", x), k, kw.get("t", t), kw.get("v", v), call, r, q))  # noqa: E731
    fd_delta = (price(x=x + h) - price(x=x - h)) / (2 * h)
    fd_gamma = (price(x=x + h) - 2 * price() + price(x=x - h)) / (h * h)
    fd_vega = (price(v=v + 1e-5) - price(v=v - 1e-5)) / 2e-5
    fd_theta = -(price(t=t + 1e-6) - price(t=t - 1e-6)) / 2e-6
    assert float(g.delta) == pytest.approx(fd_delta, rel=1e-6, abs=1e-9)
    assert float(g.gamma) == pytest.approx(fd_gamma, rel=1e-4, abs=1e-8)
    assert float(g.vega) == pytest.approx(fd_vega, rel=1e-6, abs=1e-8)
    assert float(g.theta) == pytest.approx(fd_theta, rel=1e-5, abs=1e-7)


def test_hull_greeks_textbook():
    # Hull: S=49, K=50, r=5%, vol=20%, T=20 weeks: call delta 0.522, gamma 0.066, vega 12.1,
    # theta -4.31 per year.
    g = black_scholes_greeks(49.0, 50.0, 0.3846, 0.2, True, 0.05)
    assert float(g.delta) == pytest.approx(0.522, abs=1e-3)
    assert float(g.gamma) == pytest.approx(0.066, abs=1e-3)
    assert float(g.vega) == pytest.approx(12.1, abs=0.05)
    assert float(g.theta) == pytest.approx(-4.31, abs=0.01)


# ----------------------------------------------------------------------------- degenerate limits


def test_zero_vol_and_zero_time_give_discounted_intrinsic():
    f = np.array([120.0, 80.0, 100.0, 120.0, 80.0])
    k = 100.0
    call = np.array([True, True, True, False, False])
    for t, v in ((0.0, 0.5), (-1.0, 0.5), (0.5, 0.0), (0.5, -0.1)):
        p = black76_price(f, k, t, v, call, rate=0.05)
        df = math.exp(-0.05 * max(t, 0.0))
        np.testing.assert_allclose(p, df * np.array([20.0, 0.0, 0.0, 0.0, 20.0]), atol=1e-14)
        g = black76_greeks(f, k, t, v, call, rate=0.05)
        np.testing.assert_allclose(g.delta, df * np.array([1.0, 0.0, 0.0, 0.0, -1.0]))
        assert np.all(g.gamma == 0.0) and np.all(g.vega == 0.0)
        assert np.all(np.isfinite(g.theta))
    # Black-Scholes zero vol: intrinsic of the deterministic forward, discounted.
    p = black_scholes_price(100.0, 100.0, 1.0, 0.0, True, rate=0.05)
    assert float(p) == pytest.approx(100.0 - 100.0 * math.exp(-0.05), abs=1e-12)


def test_continuity_near_expiry():
    p_small = black76_price(110.0, 100.0, 1e-10, 0.5, True)
    assert float(p_small) == pytest.approx(10.0, abs=1e-8)
    p_small = black76_price(100.0, 100.0, 1e-12, 0.5, True)
    assert 0.0 < float(p_small) < 1e-4


# ----------------------------------------------------------------------------- vectorisation


def test_vectorised_broadcast_grid():
    rng = np.random.default_rng(7)
    n = 100_000
    f = rng.uniform(1, 1000, n)
    k = f * np.exp(rng.normal(0, 0.7, n))
    t = rng.uniform(0, 2, n)
    v = rng.uniform(0, 3, n)
    c = rng.random(n) < 0.5
    p = black76_price(f, k, t, v, c, 0.03)
    assert p.shape == (n,) and np.all(np.isfinite(p)) and np.all(p >= 0)
    g = black76_greeks(f, k, t, v, c, 0.03)
    for arr in (g.delta, g.gamma, g.vega, g.theta):
        assert arr.shape == (n,) and np.all(np.isfinite(arr))
    g = black_scholes_greeks(f, k, t, v, c, 0.03, 0.01)
    for arr in (g.delta, g.gamma, g.vega, g.theta):
        assert arr.shape == (n,) and np.all(np.isfinite(arr))
    # instruments x scenarios broadcasting
    strikes = np.linspace(50, 150, 40)[:, None]
    scen_f = np.linspace(60, 140, 27)[None, :]
    grid = black76_price(scen_f, strikes, 0.25, 0.6, np.ones((40, 1), bool))
    assert grid.shape == (40, 27)
    assert np.all(np.diff(grid, axis=1) >= 0)  # call value rises with the forward
    assert np.all(np.diff(grid, axis=0) <= 0)  # and falls with the strike


# ----------------------------------------------------------------------------- implied vol


def test_implied_vol_round_trip():
    rng = np.random.default_rng(3)
    n = 20_000
    f = rng.uniform(10, 1000, n)
    k = f * np.exp(rng.normal(0, 0.4, n))
    t = rng.uniform(0.01, 2, n)
    v = rng.uniform(0.05, 2.5, n)
    c = rng.random(n) < 0.5
    r = 0.04
    p = black76_price(f, k, t, v, c, r)
    iv = implied_vol_black76(p, f, k, t, c, r)
    # Where the option carries any time value at double precision, the vol is recovered.
    tv = p - np.exp(-r * t) * np.maximum(np.where(c, f - k, k - f), 0.0)
    ok = tv > 1e-8 * np.maximum(f, k)
    assert ok.mean() > 0.97
    # The vol is as accurate as the price allows: error ~ price round-off / vega.
    vega = black76_greeks(f, k, t, v, c, r).vega
    well = ok & (vega > 1e-3 * f)
    assert well.mean() > 0.9
    np.testing.assert_allclose(iv[well], v[well], rtol=1e-8)
    assert np.all(np.abs(iv[ok] - v[ok]) * vega[ok] < 1e-11 * np.maximum(f[ok], k[ok]))
    repriced = black76_price(f, k, t, iv, c, r)
    assert np.all(np.abs(repriced[ok] - p[ok]) <= 1e-11 * np.maximum(f[ok], k[ok]))


def test_implied_vol_shapes_and_invalid_prices():
    iv = implied_vol_black76(np.array([[5.0], [-1.0]]), 100.0, np.array([100.0, 90.0]), 0.5, True)
    assert iv.shape == (2, 2)
    assert np.isnan(iv[1]).all()  # negative price
    assert np.isnan(implied_vol_black76(101.0, 100.0, 100.0, 0.5, True))  # above the forward
    assert np.isnan(implied_vol_black76(5.0, 120.0, 100.0, 0.5, True))  # below intrinsic
    assert np.isnan(implied_vol_black76(5.0, 100.0, 100.0, 0.0, True))  # expired
    assert float(implied_vol_black76(20.0, 120.0, 100.0, 0.5, True)) == 0.0  # exactly intrinsic


def test_carry_broadcasts_like_the_other_arguments():
    q = np.array([0.0, 0.05, 0.10])[:, None]
    p = black_scholes_price(100.0, np.array([90.0, 110.0]), 0.5, 0.4, True, 0.03, q)
    assert p.shape == (3, 2)
    assert np.all(np.diff(p, axis=0) < 0)  # a higher yield lowers the forward and the call
    g = black_scholes_greeks(100.0, np.array([90.0, 110.0]), 0.5, 0.4, True, 0.03, q)
    assert g.delta.shape == (3, 2)
