"""Unit tests of each margin regime's formulas (METHODS.md sections 1-6: Binance risk-limit tiers,
dYdX v4 open-interest caps, Deribit short-option and portfolio margin, CME SPAN, TIMS / FINRA Rule
4210(g), EMIR RTS 153/2013 VaR tools, Drift v2 size premium), the config schema and the registry.
Numbers are worked by hand from the formulas in docs/METHODOLOGY.md."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from sim.core.instruments import InstrumentTable
from clearing.margin.base import Positions
from clearing.margin.examples import make_instrument, make_market
from clearing.margin.liquidity import WithLiquidityAddOn
from clearing.margin.portfolio import PortfolioRegime
from clearing.margin.registry import build_regime
from clearing.margin.span import SpanRegime
from clearing.margin.standard import StandardRegime
from clearing.margin.tims import TimsRegime
from clearing.margin.var import VaRRegime, tail_measure
from sim.market.pricing import black76_price
from clearing.margin.config import (
    REGIME_NAMES,
    LiquidityConfig,
    PortfolioConfig,
    SpanConfig,
    StandardConfig,
    TimsConfig,
    VaRConfig,
    parse_margin_config,
)


@pytest.fixture(scope="module")
def btc():
    ins = [
        make_instrument(0, "BTC-PERP", "perpetual", "BTC"),
        make_instrument(1, "BTC-F30", "future", "BTC", 1.0, 30),
        make_instrument(2, "BTC-C66", "option", "BTC", 1.0, 30, 66_000.0, True),
        make_instrument(3, "BTC-P54", "option", "BTC", 1.0, 30, 54_000.0, False),
        make_instrument(4, "ETH-PERP", "perpetual", "ETH", 10.0),
    ]
    table = InstrumentTable.from_instruments(ins)
    market = make_market(table, {"BTC": 60_000.0, "ETH": 3_000.0}, {"BTC": 0.6, "ETH": 0.8},
                         linear_marks={"BTC-F30": 60_300.0})
    return table, market


# ------------------------------------------------------------------------------------ standard
def test_standard_linear_and_short_options(btc):
    table, market = btc
    r = StandardRegime(table)
    b = r.breakdown(np.array([2.0, -1.0, 0, 0, 0]), market)
    assert b["im"] == pytest.approx(0.10 * (2 * 60_000 + 60_300))
    assert b["mm"] == pytest.approx(0.05 * (2 * 60_000 + 60_300))
    # short call, 66k strike, forward = the 30-day future (60,300): OTM% = 5,700 / 60,300
    fwd, otm = 60_300.0, 5_700.0 / 60_300.0
    mark = market.marks[2]
    short = r.breakdown(np.array([0, 0, -2.0, 0, 0]), market)
    assert short["im"] == pytest.approx(2 * (max(0.15 - otm, 0.10) * fwd + mark))
    assert short["mm"] == pytest.approx(2 * (0.075 * fwd + mark))
    assert r.breakdown(np.array([0, 0, 3.0, 0, 0]), market)["im"] == 0.0  # long option: nothing


def test_standard_tiers_binance_style(btc):
    table, market = btc
    cfg = StandardConfig(tiers=[{"max_notional": 50_000, "im_rate": 0.02, "mm_rate": 0.01},
                                {"max_notional": 250_000, "im_rate": 0.05, "mm_rate": 0.025},
                                {"im_rate": 0.10, "mm_rate": 0.05}])
    r = StandardRegime(table, cfg)
    notional = lambda q: q * 60_000.0  # noqa: E731
    for q in (0.5, 1.0, 4.0, 10.0):
        b = r.breakdown(np.array([q, 0, 0, 0, 0]), market)
        n = notional(q)
        rate = 0.02 if n <= 50_000 else 0.05 if n <= 250_000 else 0.10
        assert b["im"] == pytest.approx(n * rate)  # the bracket's rate on the whole position
    # MM is continuous across tier boundaries (maintenance amount)
    eps = 1e-6
    for cap in (50_000.0, 250_000.0):
        lo = r.breakdown(np.array([cap / 60_000 - eps, 0, 0, 0, 0]), market)["mm"]
        hi = r.breakdown(np.array([cap / 60_000 + eps, 0, 0, 0, 0]), market)["mm"]
        assert hi == pytest.approx(lo, abs=1e-2)
    assert r.breakdown(np.array([10.0, 0, 0, 0, 0]), market)["mm"] == pytest.approx(600_000 * 0.05 - 50_000 * 0.015 - 250_000 * 0.025)


def test_standard_open_interest_caps_dydx(btc):
    table, market = btc
    cfg = StandardConfig(open_interest_caps={"lower": 120_000, "upper": 360_000})
    r = StandardRegime(table, cfg)
    # open interest = long lots x units x mark over all accounts: 4 BTC = 240,000 -> halfway
    pos = Positions.of([[3.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0], [-4.0, 0, 0, 0, 0]])
    req = r.requirements(pos, market)
    imf = 0.10 + (1 - 0.10) * 0.5
    np.testing.assert_allclose(req.im, imf * np.array([3, 1, 4]) * 60_000.0)
    np.testing.assert_allclose(req.mm, 0.05 * np.array([3, 1, 4]) * 60_000.0)
    pos_full = Positions.of([[10.0, 0, 0, 0, 0], [-10.0, 0, 0, 0, 0]])
    np.testing.assert_allclose(r.requirements(pos_full, market).im, [600_000.0, 600_000.0])  # 100%


def test_standard_isolated_keeps_positions_separate(btc):
    table, market = btc
    lots = [[1.0, -1.0, -1.0, 0, 2.0]]
    cross = StandardRegime(table).requirements(Positions.of(lots), market)
    iso_regime = build_regime("standard_isolated", table)
    iso = iso_regime.requirements(Positions.of(lots), market)
    np.testing.assert_allclose(cross.im, iso.im)
    assert cross.positions is None and iso.positions is not None
    np.testing.assert_allclose(iso.positions.im.sum(), iso.im[0])
    assert list(iso.positions.instrument) == [0, 1, 2, 4]
    b = iso_regime.breakdown(np.array(lots[0]), market)
    assert b["im[ETH-PERP]"] == pytest.approx(0.10 * 2 * 10 * 3_000.0)


def _three_linear(btc: float, eth: float, future_mark: float):
    """(instruments, table, market): a BTC perpetual, a 30-day BTC future and an ETH perpetual."""
    ins = [make_instrument(0, "BTC-PERP", "perpetual", "BTC"),
           make_instrument(1, "BTC-F30", "future", "BTC", 1.0, 30),
           make_instrument(2, "ETH-PERP", "perpetual", "ETH", 10.0)]
    table = InstrumentTable.from_instruments(ins)
    market = make_market(table, {"BTC": btc, "ETH": eth}, {"BTC": 0.6, "ETH": 0.8},
                         linear_marks={"BTC-F30": future_mark})
    return ins, table, market


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("caps", [None, {"lower": 1_000_000, "upper": 5_000_000}])
def test_standard_dense_columns_match_the_sparse_form_to_the_bit(seed, caps):
    """Cross margin on a few linear contracts is computed column by column over the dense
    positions; it must give the sparse (CSR) computation's numbers exactly, tiers, maintenance
    amounts and open-interest caps included."""
    _, table, market = _three_linear(60_000.0, 3_000.0, 60_300.0)
    cfg = StandardConfig(
        tiers_by_underlying={"BTC": [{"max_notional": 50_000, "im_rate": 0.02, "mm_rate": 0.01},
                                     {"max_notional": 250_000, "im_rate": 0.05, "mm_rate": 0.025},
                                     {"im_rate": 0.10, "mm_rate": 0.05}]},
        open_interest_caps=caps)
    rng = np.random.default_rng(seed)
    lots = rng.integers(-20, 21, size=(200, 3)).astype(np.float64) * (rng.random((200, 3)) < 0.6)
    dense, sparse = StandardRegime(table, cfg), StandardRegime(table, cfg)
    sparse._dense = False
    assert dense._dense
    for market_oi in (True, False):
        a = dense.requirements(Positions(lots.copy()), market, market_oi)
        b = sparse.requirements(Positions(lots.copy()), market, market_oi)
        np.testing.assert_array_equal(a.im, b.im)
        np.testing.assert_array_equal(a.mm, b.mm)
    assert a.im.max() > 0 and (a.im == 0).any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_standard_worst_case_dominates_only_where_no_other_state_can_need_more(seed):
    """One rate per linear contract and no open-interest caps: the clearing house skips margining
    an account's other states (the other side, the positions alone), so on those states IM and MM
    must never exceed the worst case's -- to the bit, so that the skipped maximum changes nothing.
    Tiers, caps, options and isolated margin keep the other states margined."""
    from clearing.exposure import margined_states, worst_case

    ins, table, market = _three_linear(60_123.37, 3_001.3, 60_300.01)
    regime = StandardRegime(table, StandardConfig(tiers=[{"im_rate": 0.1003, "mm_rate": 0.0497}]))
    assert regime.worst_case_dominates
    rng = np.random.default_rng(seed)
    n = 2_000
    held = rng.integers(-50, 51, size=(n, 3)) * (rng.random((n, 3)) < 0.7)
    bids = rng.integers(0, 80, size=(n, 3)) * (rng.random((n, 3)) < 0.5)
    asks = rng.integers(0, 80, size=(n, 3)) * (rng.random((n, 3)) < 0.5)
    held[:10] = bids[:10] = asks[:10] = 0  # flat accounts without orders: zero in every state
    exposure = worst_case(held, bids, asks)
    worst = regime.requirements_stateless(Positions(exposure), market)
    assert worst.im.max() > 0 and (worst.im == 0).any()
    for state in margined_states(exposure, held, bids, asks):
        other = regime.requirements_stateless(Positions(state.astype(np.float64)), market)
        assert (other.im <= worst.im).all() and (other.mm <= worst.mm).all()
        np.testing.assert_array_equal(np.maximum(worst.im, other.im), worst.im)
    # not claimed where a requirement is not one rate times size
    tiered = StandardConfig(tiers=[{"max_notional": 50_000, "im_rate": 0.02, "mm_rate": 0.01},
                                   {"im_rate": 0.10, "mm_rate": 0.05}])
    assert not StandardRegime(table, tiered).worst_case_dominates
    capped = StandardConfig(open_interest_caps={"lower": 1_000.0, "upper": 3_000.0})
    assert not StandardRegime(table, capped).worst_case_dominates
    assert not StandardRegime(table, StandardConfig(margin_mode="isolated")).worst_case_dominates
    with_option = InstrumentTable.from_instruments(
        ins + [make_instrument(3, "BTC-C", "option", "BTC", 1.0, 30, strike=60_000.0, is_call=True)])
    assert not StandardRegime(with_option).worst_case_dominates


# ----------------------------------------------------------------------------------------- SPAN
def test_span_intra_spread_and_short_option_minimum(btc):
    table, market = btc
    r = SpanRegime(table, SpanConfig(intra_spread_charge=100.0, intra_spread_rate=0.0))
    b = r.breakdown(np.array([2.0, -1.0, 0, 0, 0]), market)  # one perp/future spread
    assert b["intra_spread"] == pytest.approx(100.0)
    # short option minimum binds for a far OTM short put when the scan says little
    r2 = SpanRegime(table, SpanConfig(short_option_minimum=5_000.0, short_option_minimum_rate=0.0))
    b2 = r2.breakdown(np.array([0, 0, 0, -1.0, 0]), market)
    assert b2["span"] == pytest.approx(max(b2["scan_risk"], 5_000.0))


def test_span_net_option_value_convention(btc):
    table, market = btc
    lots = np.array([0, 0, 1.0, -1.0, 0])
    plain = SpanRegime(table).breakdown(lots, market)
    cash = SpanRegime(table, SpanConfig(net_option_value=True)).breakdown(lots, market)
    nov = (market.marks[2] - market.marks[3]) * 1.0
    assert plain["net_option_value"] == pytest.approx(nov)
    assert cash["mm"] == pytest.approx(max(plain["span"] - nov, 0.0))


# ----------------------------------------------------------------------------------------- TIMS
def test_tims_points_minimum_and_offsets(btc):
    table, market = btc
    r = TimsRegime(table, TimsConfig(up=0.06, down=0.08))
    np.testing.assert_allclose(r.moves[0], [-0.08, -0.064, -0.048, -0.032, -0.016, 0.012, 0.024, 0.036, 0.048, 0.06])
    assert r.breakdown(np.array([1.0, 0, 0, 0, 0]), market)["im"] == pytest.approx(0.08 * 60_000)
    assert r.breakdown(np.array([-1.0, 0, 0, 0, 0]), market)["im"] == pytest.approx(0.06 * 60_000)
    # a perfect calendar at equal marks has no loss: the minimum 0.375 x multiplier per contract binds
    ins = [make_instrument(0, "A", "future", "X", 100.0, 30), make_instrument(1, "B", "future", "X", 100.0, 60)]
    t2 = InstrumentTable.from_instruments(ins)
    m2 = make_market(t2, {"X": 50.0}, {"X": 0.3})
    assert TimsRegime(t2).breakdown(np.array([3.0, -3.0]), m2)["im"] == pytest.approx(6 * 0.375 * 100)
    # partial offset across class groups of one product group
    cfg = TimsConfig(product_groups={"crypto": {"underlyings": ["BTC", "ETH"], "offset": 0.5}})
    lots = np.array([1.0, 0, 0, 0, -2.0])  # long 60k BTC vs short 60k ETH
    b = TimsRegime(table, cfg).breakdown(lots, market)
    assert b["im"] == pytest.approx(0.15 * 60_000 * (1 - 0.5))
    assert TimsRegime(table).breakdown(lots, market)["im"] == pytest.approx(2 * 0.15 * 60_000)


# ------------------------------------------------------------------------------------ portfolio
def test_portfolio_scenarios_and_shocks(btc):
    table, market = btc
    r = PortfolioRegime(table)
    assert r.n_core == 27 and r.n_ext == 8
    np.testing.assert_allclose(r.moves, np.linspace(-0.16, 0.16, 9))
    up, down = r.vol_shocks(market)
    f = (30.0 / 30.0) ** 0.13  # 30 DTE: the long power applies
    assert up[2] == pytest.approx(max(0.6 * (1 + 0.5 * f), 0.5))
    assert down[2] == pytest.approx(0.6 * (1 - 0.25 * f))
    b = r.breakdown(np.array([1.0, 0, 0, 0, 0]), market)  # long perp: the 16% range, nothing else
    assert b["core"] == pytest.approx(0.16 * 60_000)
    assert b["delta_shock"] == 0.0 and b["extended"] <= b["core"]
    assert b["roll_shock"] == 0.0 and b["im"] == pytest.approx(0.16 * 60_000)
    assert b["mm"] == pytest.approx(0.8 * b["im"])
    # dated future: roll shock max(exp(7.5% x 30/365) - 1, 1%) x F
    bf = r.breakdown(np.array([0, 1.0, 0, 0, 0]), market)
    assert bf["roll_shock"] == pytest.approx(max(np.expm1(0.075 * 30 / 365), 0.01) * 60_300)


def test_portfolio_short_option_matches_bruteforce(btc):
    table, market = btc
    r = PortfolioRegime(table)
    lots = np.array([0.3, 0, -1.0, -1.0, 0])
    fwd = np.array([60_300.0, 60_000.0])  # call on the 30d future, put on the 30d future too
    fwd[1] = 60_300.0
    k, call = np.array([66_000.0, 54_000.0]), np.array([True, False])
    yrs = 30 / 365
    up, down = r.vol_shocks(market)
    v0 = np.array([0.6, 0.6])
    worst = 0.0
    for vols in (v0, up[2:4], down[2:4]):
        for m in np.linspace(-0.16, 0.16, 9):
            opt = (black76_price(fwd * (1 + m), k, yrs, vols, call) - black76_price(fwd, k, yrs, v0, call)) @ lots[2:4]
            worst = min(worst, opt + 0.3 * 60_000 * m)
    ext = 0.0
    for m in (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0):
        opt = (black76_price(fwd * (1 + m), k, yrs, up[2:4], call) - black76_price(fwd, k, yrs, v0, call)) @ lots[2:4]
        pnl = (opt + 0.3 * 60_000 * m) * 0.16 / abs(m)  # counted at range / |move|
        ext = max(ext, -pnl - (max(abs(m) / 0.16, 1) - 1) * 100_000.0)  # less the dampener
    b = r.breakdown(lots, market)
    assert b["core"] == pytest.approx(-worst, rel=1e-9)
    assert b["extended"] == pytest.approx(ext, rel=1e-9)
    big = r.breakdown(lots * 200, market)  # 200 times the book: the tail now outruns the dampener
    assert big["extended"] > big["core"] > 0


def test_portfolio_joint_vs_sum(btc):
    table, market = btc
    single = np.array([1.0, 0, -1.0, 0, 0])
    pair = np.array([1.0, 0, 0, 0, -2.0])  # long 60k BTC, short 60k ETH
    s, j = PortfolioRegime(table), build_regime("portfolio_joint", table)
    assert j.breakdown(single, market)["im"] == pytest.approx(s.breakdown(single, market)["im"])
    js, ss = j.breakdown(pair, market)["im"], s.breakdown(pair, market)["im"]
    assert js < ss
    # correlation 0.8: each leg led in turn; the against-scenario moves the other leg by
    # 0.8 - 2 sqrt(1 - 0.64) = -0.4 x the move -- the opposite way -- so the short ETH leg loses
    # too: the worst core is 16% x (1 + 0.4) x 60k, not the co-move's 16% x 0.2 x 60k
    assert j.breakdown(pair, market)["core"] == pytest.approx(0.16 * 1.4 * 60_000)
    one = build_regime({"regime": "portfolio_joint", "correlations": {"BTC/ETH": 1.0}}, table)
    assert one.breakdown(pair, market)["core"] == pytest.approx(0.0, abs=1e-6)
    high = build_regime({"regime": "portfolio_joint", "correlations": {"BTC/ETH": 0.95}}, table)
    against = 0.95 - 2 * np.sqrt(1 - 0.95**2)  # 0.33: same direction, smaller
    assert high.breakdown(pair, market)["core"] == pytest.approx(0.16 * (1 - against) * 60_000)
    lenient = build_regime({"regime": "portfolio_joint", "decorrelation": 1.0}, table)
    assert lenient.breakdown(pair, market)["core"] == pytest.approx(0.16 * (1 - 0.2) * 60_000)
    # same-direction positions get no credit when rho + sqrt(1 - rho^2) >= 1 (the legs may move together fully)
    both = np.array([1.0, 0, 0, 0, 2.0])
    assert j.breakdown(both, market)["core"] == pytest.approx(s.breakdown(both, market)["core"])


def test_portfolio_float32_close_to_float64():
    from clearing.margin.examples import benchmark_book
    table, market, acc, ins, lots = benchmark_book(n_accounts=2_000, seed=1)
    pos = Positions.from_coo(2_000, len(table), acc, ins, lots)
    a = PortfolioRegime(table).requirements(pos, market).im
    b = PortfolioRegime(table, PortfolioConfig(dtype="float32")).requirements(pos, market).im
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-2)
    dense = pos.dense
    r = PortfolioRegime(table)
    m = r.pnl_matrix(market)
    # brute force, dense, per underlying
    im = np.zeros(2_000)
    for u in range(len(table.underlyings)):
        sub = (dense * (r.underlying == u)) @ m
        core = np.maximum(-sub[:, :27].min(1), 0)
        damp = (np.maximum(np.abs(r.extended) / 0.16, 1) - 1) * 100_000.0
        ext = np.maximum((-sub[:, 27:35] - damp).max(1), 0)
        notional, units = np.abs(sub[:, 35]), np.abs(sub[:, 36])
        beyond = np.where(notional > 20e6, units * (notional - 20e6) / np.maximum(notional, 1e-300), 0.0)
        delta = np.minimum(0.01 * beyond, 0.10) * notional
        roll = np.maximum(-sub[:, 37:].min(1), 0)
        im += np.maximum(core, ext) + delta + roll
    np.testing.assert_allclose(a, im, rtol=1e-9, atol=1e-6)


# ------------------------------------------------------------------------------------------ VaR
def test_tail_measure_convention():
    losses = np.arange(1.0, 101.0)[:, None]  # 100 scenarios, losses 1..100
    assert tail_measure(losses, 0.99, "var")[0] == 100.0  # k = 1
    assert tail_measure(losses, 0.975, "var")[0] == 98.0  # k = ceil(2.5) = 3
    assert tail_measure(losses, 0.975, "es")[0] == pytest.approx(99.0)
    assert tail_measure(-losses, 0.99, "var")[0] == 0.0  # all gains: floored


def test_var_historical_and_filtered(btc):
    table, _ = btc
    rng = np.random.default_rng(5)
    calm = rng.normal(0, 0.01, (300, 2))
    wild = rng.normal(0, 0.05, (30, 2))
    prices = np.exp(np.cumsum(np.vstack([calm, wild]), axis=0)) * np.array([60_000.0, 3_000.0])
    market = make_market(table, dict(zip(table.underlyings, prices[-1])), {"BTC": 0.6, "ETH": 0.8})
    hs = VaRRegime(table, VaRConfig(lookback_days=250), history=prices)  # daily rows: 250 rows
    fhs = VaRRegime(table, VaRConfig(lookback_days=250, method="filtered"), history=prices)
    es = VaRRegime(table, VaRConfig(lookback_days=250, measure="es"), history=prices)
    lots = np.array([1.0, 0, 0, 0, 0])
    v, f, e = (r.breakdown(lots, market)["im"] for r in (hs, fhs, es))
    assert f > v  # FHS rescales calm-period returns up to today's high volatility
    assert e >= v
    # the historical figure is the k-th largest 2-day loss of the last 250 windows
    r2 = prices[-250:, 0] / prices[-252:-2, 0] - 1.0
    k = int(np.ceil(0.01 * 250))
    assert v == pytest.approx(np.sort(-r2 * prices[-1, 0])[::-1][k - 1])
    with pytest.raises(ValueError, match="history"):
        VaRRegime(table, VaRConfig(), history=np.ones((10, 3)))
    n = hs.history.shape[0]
    hs.update_history(prices[-1])
    assert hs.history.shape[0] == n + 1


# ------------------------------------------------------------------------------------ liquidity
def test_liquidity_book_walk(btc):
    table, market = btc
    depth = {"BTC-PERP": {"bids": [[59_990.0, 2.0], [59_900.0, 3.0]], "asks": [[60_010.0, 1.0]]}}
    r = WithLiquidityAddOn(StandardRegime(table), LiquidityConfig(mode="book", beyond_depth_slippage=0.01), depth=depth)
    b = r.breakdown(np.array([4.0, 0, 0, 0, 0]), market)
    assert b["liquidity_im"] == pytest.approx(2 * 10 + 2 * 100)
    b = r.breakdown(np.array([-3.0, 0, 0, 0, 0]), market)  # 1 lot in the book, 2 beyond at 1%
    assert b["liquidity_im"] == pytest.approx(10 + 2 * 0.01 * 60_000)
    assert b["im"] == pytest.approx(b["base_im"] + b["liquidity_im"])


def test_liquidity_sqrt_is_drift_formula(btc):
    table, market = btc
    imf = 0.01
    r = build_regime({"regime": "standard", "liquidity": {"mode": "sqrt", "imf": imf}}, table)
    for q in (1.0, 50.0, 400.0):
        b = r.breakdown(np.array([q, 0, 0, 0, 0]), market)
        w = 0.10
        w2 = max(w, 0.8 * w + imf * np.sqrt(q))
        assert b["im"] == pytest.approx(q * 60_000 * w2)


# ------------------------------------------------------------------------------ schema/registry
def test_defaults_are_the_methods_values():
    s = StandardConfig()
    assert (s.tiers[0].im_rate, s.tiers[0].mm_rate) == (0.10, 0.05)
    assert (s.short_option.im_base, s.short_option.im_floor) == (0.15, 0.10)
    sp = SpanConfig()
    assert (sp.cover_fraction, sp.extreme_multiple, sp.mm_multiplier) == (0.35, 2.0, 1.0)
    t = TimsConfig()
    assert (t.up, t.down, t.points, t.minimum_per_contract) == (0.15, 0.15, 10, 0.375)
    p = PortfolioConfig()
    assert (p.price_range, p.price_steps, p.vol_up, p.vol_down, p.vega_power_short, p.vega_power_long) == (
        0.16, 4, 0.5, 0.25, 0.3, 0.13)
    assert p.extended_moves == [-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert (p.extended_table_factor, p.extended_dampener) == (1.0, 100_000.0)
    assert (p.delta_shock_threshold, p.max_delta_shock, p.delta_shock_increment) == (20e6, 0.10, 0.01)
    assert (p.roll_shock_rate, p.roll_shock_floor, p.mm_ratio) == (0.075, 0.01, 0.8)
    v, va = VaRConfig(), parse_margin_config("var_apc")
    assert (v.confidence, v.mpor_days, v.lookback_days, v.mm_ratio) == (0.99, 2.0, 365.0, 0.8)
    assert (va.stressed_weight, va.floor_lookback_days) == (0.25, 3650.0)


@pytest.mark.parametrize("data, field", [
    ({"regime": "span", "cover_fraction": 1.5}, "cover_fraction"),
    ({"regime": "portfolio", "price_range": -0.1}, "price_range"),
    ({"regime": "tims", "points": 9}, "points"),
    ({"regime": "var", "confidence": 1.2}, "confidence"),
    ({"regime": "standard", "tiers": [{"im_rate": 0.05, "mm_rate": 0.1}]}, "tiers"),
    ({"regime": "span", "risk_arrays": {"X": [1, 2, 3]}}, "risk_arrays"),
    ({"regime": "portfolio", "typo": 1}, "typo"),
    ({"regime": "nonsense"}, "regime"),
])
def test_invalid_configs_name_the_field(data, field):
    with pytest.raises(ValidationError) as e:
        parse_margin_config(data)
    assert field in str(e.value)


def test_registry_builds_every_name(btc):
    table, market = btc
    history = np.tile(np.array([60_000.0, 3_000.0]), (300, 1)) * np.exp(
        np.random.default_rng(0).normal(0, 0.02, (300, 2)))
    pos = Positions.of([[1.0, -1.0, -1.0, 1.0, 3.0]])
    for name in REGIME_NAMES:
        regime = build_regime(name, table, history=history)
        req = regime.requirements(pos, market)
        assert req.im[0] > 0 and 0 < req.mm[0] <= req.im[0] + 1e-9, name
        assert regime.breakdown(pos.dense[0], market)["im"] == pytest.approx(req.im[0]), name
    with pytest.raises(ValueError, match="history"):
        build_regime("var", table)
    with pytest.raises(TypeError, match="unknown context"):
        build_regime("span", table, histroy=history)


@pytest.mark.parametrize("groups", [{}, {"crypto": {"underlyings": ["BTC", "ETH"], "offset": 0.7}}])
def test_tims_matches_bruteforce(btc, groups):
    table, market = btc
    rng = np.random.default_rng(9)
    dense = np.where(rng.random((40, 5)) < 0.5, rng.integers(-3, 4, (40, 5)), 0).astype(float)
    r = TimsRegime(table, TimsConfig(product_groups=groups))
    got = r.requirements(Positions.of(dense), market).im
    pnl = r.pnl_matrix(market)
    offset = 0.7 if groups else 1.0
    expect = np.zeros(40)
    for a in range(40):
        per_class = [(dense[a] * (r.class_group == c)) @ pnl for c in range(r.n_class)]
        minimum = [np.sum(np.abs(dense[a]) * (r.class_group == c) * 0.375) for c in range(r.n_class)]
        if groups:
            combined = sum(np.minimum(x, 0) + offset * np.maximum(x, 0) for x in per_class)
            expect[a] = max(max(-combined.min(), 0.0), sum(minimum))
        else:
            expect[a] = sum(max(max(-x.min(), 0.0), m) for x, m in zip(per_class, minimum))
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-9)


def test_open_interest_caps_in_a_one_account_check_use_the_market_open_interest():
    """A pre-trade check margins one account; with dYdX-style open-interest caps its IM must use the
    market's open interest (from the last whole-market computation), not that one account's."""
    from sim.core.instruments import InstrumentTable
    from clearing.margin.base import Positions
    from clearing.margin.examples import make_instrument, make_market
    from clearing.margin.standard import StandardRegime
    from clearing.margin.config import StandardConfig

    table = InstrumentTable.from_instruments([make_instrument(0, "BTC-PERP", "perpetual", "BTC")])
    market = make_market(table, {"BTC": 100.0}, {"BTC": 0.5})
    regime = StandardRegime(table, StandardConfig(open_interest_caps={"lower": 1_000.0, "upper": 3_000.0}))
    everyone = Positions.of([[10.0], [-5.0], [10.0], [-15.0]])  # open interest 20 lots = 2,000 notional
    full = regime.requirements(everyone, market)
    one = regime.requirements_stateless(Positions.of([[10.0]]), market)
    assert one.im[0] == pytest.approx(full.im[0])
    assert full.im[0] > 10 * 100 * 0.10  # the cap binds: IM above the base 10%


def test_the_ccp_regime_set_credits_an_opposite_btc_eth_pair_and_scans_each_product_by_its_vol():
    from sim.experiment.config import load_episode
    from sim.experiment.episode import build

    config = load_episode("configs/regimes/ccp.yaml")
    span_cfg = config.compare_regimes[0]
    assert span_cfg.regime == "span" and [p.credit_rate for p in span_cfg.inter_commodity] == [0.60, 0.50, 0.40]
    ep = build(config)
    regime = build_regime(span_cfg, ep.table)
    market = ep.marks.market_state(0.0)
    scans = dict(zip(ep.table.underlyings, regime.scan_ranges(market)))
    assert scans["ALT"] / scans["BTC"] == pytest.approx(1.10 / 0.45)  # each product by its own vol
    lots = np.zeros(len(ep.table))
    lots[0], lots[1] = 10, -30  # BTC long, ETH short, notional-neutral (1:3)
    b = regime.breakdown(lots, market)
    assert b["inter_credit"] > 0
    assert b["span"] == pytest.approx(b["scan_risk"] + b["intra_spread"] - b["inter_credit"])
    lots[1] = 30  # the same direction: no credit
    assert regime.breakdown(lots, market)["inter_credit"] == 0.0
