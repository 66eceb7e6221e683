"""VaR horizons and lookbacks in time, not in history rows.

Source: EMIR RTS 153/2013 -- Art. 24 (99% confidence for exchange-traded derivatives), Art. 26
(margin period of risk of at least two business days), Art. 25 (a lookback of at least the latest
12 months), Art. 28(1)(c) (a floor at the margin over a 10-year lookback). The counts below are the
arithmetic those rules imply for hourly and daily price rows: a 2-day MPOR is 48 hourly rows (not 2),
a 365-day lookback 8,760 hourly rows, the 10-year floor 87,600 hourly rows (all of a shorter history).
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.core.instruments import InstrumentTable
from clearing.margin.examples import make_instrument, make_market
from clearing.margin.var import VaRRegime
from clearing.margin.config import VaRConfig


@pytest.fixture()
def perp():
    table = InstrumentTable.from_instruments([make_instrument(0, "BTC-PERP", "perpetual", "BTC")])
    rng = np.random.default_rng(3)
    prices = 50_000.0 * np.exp(np.cumsum(rng.normal(0, 0.004, 2_000)))[:, None]
    return table, prices, make_market(table, {"BTC": float(prices[-1, 0])}, {"BTC": 0.5})


def test_hourly_rows_turn_days_into_rows(perp):
    table, prices, market = perp
    regime = VaRRegime(table, VaRConfig(mpor_days=2.0, lookback_days=30.0, floor_lookback_days=3650.0),
                       history=prices, row_interval=3_600.0)
    assert (regime.mpor, regime.lookback, regime.floor_lookback) == (48, 720, 87_600)
    sets = regime.scenario_sets()
    assert sets["base"].shape[0] == 720  # the last 720 hourly windows of 48 hours each
    np.testing.assert_allclose(sets["base"][:, 0], prices[-720:, 0] / prices[-768:-48, 0] - 1.0)
    assert sets["floor"].shape[0] == 2_000 - 48  # ten years is longer than the history: all of it
    # the figure is the k-th largest 48-hour loss, k = ceil(1% x 720) = 8
    losses = np.sort(-(prices[-720:, 0] / prices[-768:-48, 0] - 1.0) * prices[-1, 0])[::-1]
    assert regime.breakdown(np.array([1.0]), market)["base"] == pytest.approx(losses[7])


def test_daily_rows_keep_the_day_counts(perp):
    table, prices, _ = perp
    regime = VaRRegime(table, VaRConfig(regime="var_apc"), history=prices)  # row_interval one day
    assert (regime.mpor, regime.lookback, regime.floor_lookback) == (2, 365, 3650)


def test_mm_is_a_fraction_of_im(perp):
    table, prices, market = perp
    b = VaRRegime(table, VaRConfig(mm_ratio=0.75), history=prices, row_interval=3_600.0).breakdown(
        np.array([1.0]), market)
    assert b["mm"] == pytest.approx(0.75 * b["im"]) and b["im"] > 0
    assert VaRConfig().mm_ratio == 0.8


def test_an_mpor_that_is_not_whole_rows_is_refused(perp):
    table, prices, _ = perp
    with pytest.raises(ValueError, match=r"mpor_days 2 is 0.5 history rows"):
        VaRRegime(table, VaRConfig(), history=prices, row_interval=4 * 86_400.0)
    with pytest.raises(ValueError, match=r"mpor_days 1.5 is 36.5 history rows"):
        VaRRegime(table, VaRConfig(mpor_days=1.5), history=prices, row_interval=3_550.6849315068494)


def test_the_shipped_pre_episode_history_holds_a_stressed_week_the_regime_finds():
    from clearing.margin.registry import build_regime
    from sim.experiment.config import load_episode
    from sim.experiment.episode import _pre_episode_history, build

    config = load_episode("configs/default.yaml")
    ep = build(config)
    history = _pre_episode_history(config, ep.table, ep.paths, ep.world.__class__(config.seed))
    regime = build_regime("var_apc", ep.table, history=history, row_interval=86_400.0)
    start, end = regime.stressed_window()
    stressed_rows = (750 - 1 - 432, 750 - 1 - 432 + 7)  # the seven days that start 432 days back
    assert start <= stressed_rows[0] and end >= stressed_rows[1]  # the worst window holds the week
    # the same draws without the stressed week: identical outside it; inside, each daily log step is
    # 3x the noise, the Ito term 9x, plus the drift log(0.75) / 7 -- exactly
    plain_cfg = config.model_copy(update={"clearing": config.clearing.model_copy(
        update={"history": config.clearing.history.model_copy(update={"stressed": None})})})
    plain = _pre_episode_history(plain_cfg, ep.table, ep.paths, ep.world.__class__(config.seed))
    d, d0 = np.diff(np.log(history), axis=0), np.diff(np.log(plain), axis=0)  # d[j]: row j -> j + 1
    week = slice(*stressed_rows)
    outside = np.ones(d.shape[0], dtype=bool)
    outside[week] = False
    np.testing.assert_allclose(d[outside], d0[outside], rtol=0, atol=1e-12)
    vol = ep.paths.vols[0, [ep.paths.names.index(u) for u in ep.table.underlyings]]
    dt = 86_400.0 / (365.0 * 86_400.0)
    noise0 = d0[week] + 0.5 * vol**2 * dt
    noise = d[week] + 0.5 * (3 * vol) ** 2 * dt - np.log(0.75) / 7
    np.testing.assert_allclose(noise, 3.0 * noise0, rtol=1e-9)


def test_an_episode_whose_mpor_is_not_whole_history_rows_is_refused_before_it_runs():
    from sim.experiment.errors import ConfigError
    from sim.experiment.io import deep_merge
    from sim.experiment.config import load_episode, parse_episode

    base = load_episode("configs/default.yaml").model_dump(mode="json", exclude_none=True)
    bad = deep_merge(base, {"clearing": {"history": {"row_interval": 4 * 86_400.0}}})
    bad["margin"] = {"regime": "var", "mpor_days": 2.0}
    with pytest.raises(ConfigError, match=r"margin.mpor_days: 2 days is 0.5 rows"):
        parse_episode(bad, "bad")


# --- options age over the margin period of risk ------------------------------------------------
# A CCP's VaR revalues a portfolio at the end of the MPOR (EMIR RTS 153/2013 Art. 26-27: the
# potential loss over the liquidation period), so an option is priced with its time to expiry less
# the MPOR -- the scenario P&L includes its time decay. Known answer on a flat price history: every
# MPOR return is 0, so every scenario's P&L is the decay alone, Black-76 at zero rate:
# ATM price = F (2 N(vol sqrt(T) / 2) - 1).

def _atm(f: float, vol: float, years: float) -> float:
    from math import erf, sqrt

    return f * erf(vol * sqrt(years) / 2.0 / sqrt(2.0)) if years > 0 else 0.0


@pytest.mark.parametrize("days_left", [5.0, 1.5])
def test_an_option_near_expiry_loses_its_theta_over_the_mpor(days_left):
    f, vol = 50_000.0, 0.6
    table = InstrumentTable.from_instruments([
        make_instrument(0, "BTC-PERP", "perpetual", "BTC"),
        make_instrument(1, "BTC-C", "option", "BTC", expiry_days=days_left, strike=f, is_call=True)])
    flat = np.full((400, 1), f)
    market = make_market(table, {"BTC": f}, {"BTC": vol})
    regime = VaRRegime(table, VaRConfig(mpor_days=2.0, lookback_days=250.0), history=flat)
    now_price = _atm(f, vol, days_left / 365.0)
    later = _atm(f, vol, max(days_left - 2.0, 0.0) / 365.0)  # 1.5 days left: expired at intrinsic 0
    theta = now_price - later
    assert theta > 0
    long_call = regime.breakdown(np.array([0.0, 1.0]), market)
    assert long_call["im"] == pytest.approx(theta, rel=1e-9)  # the holder loses the decay in every scenario
    # the writer gains it in every scenario: no loss, no margin; the perpetual has no decay
    assert regime.breakdown(np.array([0.0, -1.0]), market)["im"] == 0.0
    assert regime.breakdown(np.array([1.0, 0.0]), market)["im"] == 0.0
    # the decay is the whole difference from an unaged revaluation (which gives 0 here)
    unaged = regime.rev.relative(market, np.zeros((2, 3)))
    aged = regime.rev.relative(market, np.zeros((2, 3)), years_shift=2.0 / 365.0)
    np.testing.assert_allclose(aged - unaged, [[0.0] * 3, [-theta] * 3], rtol=1e-9)
