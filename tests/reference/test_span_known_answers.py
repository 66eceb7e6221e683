"""SPAN known answers.

Sources: METHODS.md section 2 ("SPAN-style scenario margin (CME)") and its "Public known-answer
cases":

- the long Dec 410 call and long future risk arrays from L. G. McMillan, *Options as a Strategic
  Investment* (SPAN chapter), PROFIT convention, scenarios 1-16 in CME order, extreme rows already
  including the 35% cover; SPAN requirement of the long call: 3,990;
- the CME inter-commodity spread credit example: corn vs soybeans at 2:1, outright margins 1,750
  (corn) and 2,500 (soybeans), 55% credit: 2 corn against 1 soy -> 6,000 - 3,300 = 2,700 (CME
  Group, "SPAN Methodology Overview" / inter-commodity spread credit).
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.core.instruments import InstrumentTable
from clearing.margin.base import Positions
from clearing.margin.examples import make_instrument, make_market
from clearing.margin.span import SpanRegime
from clearing.margin.config import InterCommoditySpread, SpanConfig

CALL_410 = [460, -610, 2640, 1730, -1270, -2340, 5210, 4540, -2540, -3430, 8060, 7640, -3380, -3990, 3130, -1500]
LONG_FUTURE = [0, 0, 3330, 3330, -3330, -3330, 6670, 6670, -6670, -6670, 10000, 10000, -10000, -10000, 7000, -7000]


@pytest.fixture()
def sp_table():
    # An index future with a 500 multiplier and a 20-point price scan range: 20 x 500 = 10,000
    # per contract at 3/3 of the range, as in the McMillan array.
    ins = [
        make_instrument(0, "SP-DEC", "future", "SP", 500.0, expiry_days=60),
        make_instrument(1, "SP-DEC-410-C", "option", "SP", 500.0, expiry_days=60, strike=410.0, is_call=True),
    ]
    table = InstrumentTable.from_instruments(ins)
    market = make_market(table, {"SP": 410.0}, {"SP": 0.2})
    return table, market


def _span(table, **kw) -> SpanRegime:
    arrays = kw.pop("risk_arrays", {"SP-DEC": LONG_FUTURE, "SP-DEC-410-C": CALL_410})
    cfg = SpanConfig(price_scan=20.0, price_scan_mode="absolute", **kw)
    return SpanRegime(table, cfg, risk_arrays=arrays)


def test_mcmillan_long_call_requirement_3990(sp_table):
    table, market = sp_table
    regime = _span(table)
    b = regime.breakdown(np.array([0.0, 1.0]), market)
    assert b["scan_risk"] == pytest.approx(3990.0)
    assert b["span"] == pytest.approx(3990.0)
    assert b["mm"] == pytest.approx(3990.0)  # maintenance = the SPAN requirement
    assert b["im"] == pytest.approx(1.1 * 3990.0)  # initial = 110% (CME speculator)
    req = regime.requirements(Positions.of([[0.0, 1.0], [0.0, 2.0]]), market)
    np.testing.assert_allclose(req.mm, [3990.0, 7980.0])


def test_mcmillan_long_future_array(sp_table):
    table, market = sp_table
    regime = _span(table)
    assert regime.breakdown(np.array([1.0, 0.0]), market)["mm"] == pytest.approx(10000.0)
    assert regime.breakdown(np.array([-1.0, 0.0]), market)["mm"] == pytest.approx(10000.0)


def test_loss_convention_input_is_the_same_answer(sp_table):
    table, market = sp_table
    regime = SpanRegime(table, SpanConfig(price_scan=20.0, price_scan_mode="absolute", risk_array_convention="loss"),
                        risk_arrays={"SP-DEC-410-C": [-x for x in CALL_410]})
    assert regime.breakdown(np.array([0.0, 1.0]), market)["mm"] == pytest.approx(3990.0)


def test_arrays_sum_per_combined_commodity(sp_table):
    """Derived from the published arrays: long call + short future = the worst row of the
    difference (scenario 15: 3130 - 7000 = -3870)."""
    table, market = sp_table
    regime = _span(table, intra_spread_rate=0.0)
    assert regime.breakdown(np.array([-1.0, 1.0]), market)["mm"] == pytest.approx(3870.0)


def test_model_built_future_array_matches_published(sp_table):
    """The simulator's own array for the future (PSR 20 points, extreme 2x, cover 35%) reproduces
    McMillan's future array to its rounding."""
    table, market = sp_table
    regime = SpanRegime(table, SpanConfig(price_scan=20.0, price_scan_mode="absolute"))
    built = regime.risk_arrays(market)[0]
    np.testing.assert_allclose(built, LONG_FUTURE, atol=3.5)


def test_model_built_call_array_has_the_published_shape(sp_table):
    """Model-built call array: gains up, losses down, vol up beats vol down at each price move."""
    table, market = sp_table
    arr = SpanRegime(table, SpanConfig(price_scan=20.0, price_scan_mode="absolute")).risk_arrays(market)[1]
    assert np.all(arr[0::2][:7] > arr[1::2][:7])  # vol up > vol down (a long call is long vega)
    assert arr[11] > arr[7] > arr[3] > 0 > arr[5] > arr[9] > arr[13]  # vol-down rows monotone in price
    assert int(np.argmin(arr)) == 13  # worst: -3/3, vol down -- as in the published array


def test_cme_corn_soy_inter_commodity_credit_2700():
    ins = [
        make_instrument(0, "CORN", "future", "CORN", 5000.0, expiry_days=90),
        make_instrument(1, "SOY", "future", "SOY", 5000.0, expiry_days=90),
    ]
    table = InstrumentTable.from_instruments(ins)
    market = make_market(table, {"CORN": 4.0, "SOY": 10.0}, {"CORN": 0.25, "SOY": 0.2})
    # outright margins 1,750 and 2,500: scan risk of one long contract
    corn = [0, 0, -1750 / 3, -1750 / 3, 1750 / 3, 1750 / 3, -3500 / 3, -3500 / 3, 3500 / 3, 3500 / 3,
            -1750, -1750, 1750, 1750, -1000, 1000]
    soy = [x * 2500 / 1750 for x in corn]
    cfg = SpanConfig(inter_commodity=[InterCommoditySpread(leg_a="CORN", leg_b="SOY", ratio_a=2, ratio_b=1,
                                                           credit_rate=0.55)],
                     risk_array_convention="loss")
    regime = SpanRegime(table, cfg, risk_arrays={"CORN": corn, "SOY": soy})
    b = regime.breakdown(np.array([2.0, -1.0]), market)
    assert b["scan_risk"] == pytest.approx(6000.0)
    assert b["inter_credit"] == pytest.approx(3300.0)
    assert b["mm"] == pytest.approx(2700.0)
    # same direction: no spread, no credit
    assert regime.breakdown(np.array([2.0, 1.0]), market)["mm"] == pytest.approx(6000.0)
    # vectorised over accounts, with one account holding twice the spread
    req = regime.requirements(Positions.of([[2.0, -1.0], [4.0, -2.0], [2.0, 0.0]]), market)
    np.testing.assert_allclose(req.mm, [2700.0, 5400.0, 3500.0])


# --------------------------------------------------------------------- scan range from vol x MPOR
# CME sets a product's price scan range to cover a confidence level of its price moves over the
# margin period of risk (CME Clearing, "SPAN margin parameters": coverage of at least 99% over a
# 1- or 2-day MPOR; EMIR RTS 153/2013 Art. 24-26 for the 99% / 2-day exchange-traded minimum).
# Square-root-of-time scaling: scan = z_0.99 x vol x sqrt(2 / 365); z_0.99 = 2.326348.

@pytest.fixture()
def crypto_table():
    ins = [make_instrument(0, "BTC-PERP", "perpetual", "BTC"), make_instrument(1, "ALT-PERP", "perpetual", "ALT")]
    table = InstrumentTable.from_instruments(ins)
    return table, make_market(table, {"BTC": 120_000.0, "ALT": 2.5}, {"BTC": 0.45, "ALT": 1.10})


def test_scan_range_is_z_times_vol_times_root_mpor(crypto_table):
    table, market = crypto_table
    regime = SpanRegime(table, SpanConfig())  # the default: volatility mode, 99%, 2 days
    z = 2.3263478740408408
    btc, alt = z * 0.45 * (2 / 365) ** 0.5, z * 1.10 * (2 / 365) ** 0.5
    np.testing.assert_allclose(regime.scan_ranges(market), [btc, alt])
    assert btc == pytest.approx(0.07749, abs=1e-5) and alt == pytest.approx(0.18942, abs=1e-5)
    # a long outright loses the full scan at 3/3 (the extreme 2 x 35% = 0.7 of it is smaller)
    assert regime.breakdown(np.array([1.0, 0.0]), market)["scan_risk"] == pytest.approx(120_000.0 * btc)
    assert regime.breakdown(np.array([0.0, 1000.0]), market)["scan_risk"] == pytest.approx(2_500.0 * alt)


def test_scan_range_follows_the_mpor_and_confidence_and_is_held_once_set(crypto_table):
    table, market = crypto_table
    one_day = SpanRegime(table, SpanConfig(margin_period_of_risk_days=1.0, scan_confidence=0.995,
                                           scan_vol_by_underlying={"ALT": 0.9}))
    z = 2.5758293035489
    np.testing.assert_allclose(one_day.scan_ranges(market), [z * 0.45 / 365 ** 0.5, z * 0.9 / 365 ** 0.5])
    calm = make_market(table, {"BTC": 120_000.0, "ALT": 2.5}, {"BTC": 0.20, "ALT": 0.5})
    np.testing.assert_allclose(one_day.scan_ranges(calm), one_day.scan_ranges(market))  # published, not re-set


def test_a_fixed_scan_needs_its_mode_said():
    with pytest.raises(ValueError, match="price_scan is set but price_scan_mode is 'volatility'"):
        SpanConfig(price_scan=0.10)
    assert SpanConfig(price_scan=0.10, price_scan_mode="relative").price_scan == 0.10
