"""Default-fund sizing from the regime's own stress scenarios, per clearing member.

Known answers: under SPAN (99%, 2-day MPOR) a BTC at 45% vol has a 7.749% scan, so the extreme move
is 2 x 7.749% = 15.50% and a long 1-BTC perpetual at 120,000 loses 18,598 in it; assets are stressed
separately (a BTC/ETH hedge is charged both legs' worst cases); a member whose accounts are all
covered by their IM contributes nothing (the zero control); the fund is the two largest member
shortfalls (Cover-2, CPMI-IOSCO PFMI Principle 4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.core.instruments import InstrumentTable
from clearing.margin.examples import make_instrument, make_market
from clearing.margin.portfolio import PortfolioRegime
from clearing.margin.span import SpanRegime
from clearing.stress import account_stress_losses, margin_moves, member_uncovered, stress_pnl
from clearing.waterfall import size_default_fund
from clearing.margin.config import SpanConfig

Z99 = 2.3263478740408408


@pytest.fixture()
def book():
    ins = [make_instrument(0, "BTC-PERP", "perpetual", "BTC"), make_instrument(1, "ETH-PERP", "perpetual", "ETH"),
           make_instrument(2, "BTC-C", "option", "BTC", 1.0, 30, 130_000.0, True),
           make_instrument(3, "BTC-P", "option", "BTC", 1.0, 30, 110_000.0, False)]
    table = InstrumentTable.from_instruments(ins)
    return table, make_market(table, {"BTC": 120_000.0, "ETH": 4_000.0}, {"BTC": 0.45, "ETH": 0.65})


def test_the_extreme_move_is_a_multiple_of_the_regimes_own_margined_move(book):
    table, market = book
    span = SpanRegime(table, SpanConfig())
    scan = Z99 * np.array([0.45, 0.65]) * math.sqrt(2 / 365)
    np.testing.assert_allclose(margin_moves(span, market), scan)
    np.testing.assert_allclose(margin_moves(PortfolioRegime(table), market), [0.16, 0.16])
    pnl = stress_pnl(span, market, 2.0, 0.5)
    loss = account_stress_losses(np.array([[1.0, 0, 0, 0]]), pnl, 2)[0]
    assert loss == pytest.approx(120_000.0 * 2 * scan[0])
    assert loss == pytest.approx(18_598.0, abs=1.0)


def test_assets_are_stressed_separately_so_a_cross_asset_hedge_pays_both_legs(book):
    table, market = book
    span = SpanRegime(table, SpanConfig())
    pnl = stress_pnl(span, market, 2.0, 0.5)
    scan = margin_moves(span, market)
    hedge = account_stress_losses(np.array([[1.0, -30.0, 0, 0]]), pnl, 2)[0]
    assert hedge == pytest.approx(2 * scan[0] * 120_000.0 + 2 * scan[1] * 120_000.0)


def test_options_are_revalued_and_the_vol_up_scenario_counts(book):
    table, market = book
    span = SpanRegime(table, SpanConfig())
    strangle = np.array([[0, 0, -1.0, -1.0]])
    calm = account_stress_losses(strangle, stress_pnl(span, market, 2.0, 0.0), 2)[0]
    wild = account_stress_losses(strangle, stress_pnl(span, market, 2.0, 0.5), 2)[0]
    assert wild > calm > 0  # a short strangle loses more when vol rises with the move
    # a short put loses more than its delta says on the way down (gamma), the call far less
    delta_only = account_stress_losses(np.array([[0, 0, 0, -1.0]]), stress_pnl(span, market, 0.01, 0.0), 2)[0] * 200
    assert account_stress_losses(np.array([[0, 0, 0, -1.0]]), stress_pnl(span, market, 2.0, 0.0), 2)[0] > delta_only


def test_members_sum_their_accounts_shortfalls_and_cover_2_takes_the_two_largest():
    stress = np.array([100.0, 50.0, 500.0, 10.0, 300.0, 80.0])
    im = np.array([60.0, 70.0, 100.0, 20.0, 100.0, 80.0])  # shortfalls 40, 0, 400, 0, 200, 0
    member = np.array([0, 0, 1, 2, 3, 2])
    got = member_uncovered(stress, im, member, 4)
    np.testing.assert_allclose(got, [40.0, 400.0, 0.0, 200.0])  # member 2: all covered -> exactly 0
    total, contributions = size_default_fund(got, np.zeros(4), cover=2)
    assert total == 600 and contributions.sum() == 600 and contributions[2] == 0


def test_an_episode_sizes_its_fund_at_the_configured_time_per_clearing_member():
    from clearing.ledger import FIRST_TRADER, QUOTE, SystemAccount
    from tests.scenarios.harness import USD, Scenario

    s = Scenario({"clearing": {"loss_absorption": {"order": ["waterfall"], "waterfall": {
        "cover": 2, "members": 3, "sizing_time": 60.0, "ccp_capital": 1_000.0}}}})
    whale = s.account(10_000_000)
    traders = [s.account(1_000) for _ in range(6)]
    for k, t in enumerate(traders):
        s.position(t, whale, 2 * (k + 1))  # longs of 0.02 .. 0.12 BTC at 50,000
    s.run(59.0)
    assert s.ep.waterfall is None
    s.ep.world.run(until=61.0)
    wf = s.ep.waterfall
    assert wf.sizing["time"] == pytest.approx(60.0)
    # standard 10% IM: the margined move is 10%, the extreme move 20%, so each account's shortfall
    # is 10% of its notional; the whale (short all of it) is short 20% of its notional beyond 10%
    rows = np.arange(FIRST_TRADER, s.ep.ledger.n_accounts)
    member = s.ep.world.streams.fresh("ccp/members").integers(0, 3, size=rows.size)
    lots = s.ep.ledger.position[rows, 0].astype(float)
    shortfall = 0.10 * np.abs(lots) * 0.01 * 50_000.0 * USD
    per_member = np.bincount(member, weights=shortfall, minlength=3)
    np.testing.assert_allclose(wf.sizing["member_uncovered"], per_member, rtol=1e-9)
    fund = int(np.sort(np.ceil(per_member))[::-1][:2].sum())
    assert wf.sizing["fund"] == fund
    assert int(s.ep.ledger.cash[SystemAccount.DEFAULT_FUND, QUOTE]) == fund
    assert wf.member_of[whale] == member[list(rows).index(whale)]


def test_extends_replaces_a_margin_of_another_regime_family_and_merges_a_variant():
    from sim.experiment.io import deep_merge

    base = {"margin": {"regime": "standard", "tiers": [{"im_rate": 0.1, "mm_rate": 0.05}]}}
    assert deep_merge(base, {"margin": {"regime": "span", "cover_fraction": 0.3}})["margin"] == {
        "regime": "span", "cover_fraction": 0.3}
    merged = deep_merge(base, {"margin": {"regime": "standard_isolated"}})["margin"]
    assert merged == {"regime": "standard_isolated", "tiers": [{"im_rate": 0.1, "mm_rate": 0.05}]}
    assert deep_merge({"a": {"b": 1}}, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}


def test_configs_that_cannot_run_are_refused_naming_the_field():
    from sim.experiment.errors import ConfigError
    from sim.experiment.config import parse_episode
    from clearing.config import HistoryConfig
    from tests.scenarios.harness import BASE

    with pytest.raises(ConfigError, match=r"waterfall.sizing_time \(700 s\) is not before the end"):
        parse_episode(dict(BASE, clearing=dict(BASE["clearing"], loss_absorption={
            "order": ["waterfall"], "waterfall": {"sizing_time": 700.0}})), "x")
    with pytest.raises(ValueError, match=r"stressed.start_days_before \(800\) is before the history's first row"):
        HistoryConfig(pre_episode_rows=750, stressed={"start_days_before": 800.0, "days": 5.0})
    with pytest.raises(ValueError, match=r"days \(9\) runs past the episode start"):
        HistoryConfig(stressed={"start_days_before": 5.0, "days": 9.0})
