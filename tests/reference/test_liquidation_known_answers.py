"""Known-answer cases for liquidation and loss absorption (METHODS.md, "Public known-answer cases").

Sources named there: Drift v2 (``calculate_base_asset_amount_to_cover_margin_shortage`` in the
protocol-v2 liquidation math), dYdX v4 (bankruptcy quote and worst fill of the liquidations
module; the fillable price of ``x/clob/keeper/liquidations_test.go``, ``TestGetFillablePrice``), BitMEX (auto-deleveraging queue by ranking).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.adl import adl_rank, execute_adl, select_ranked
from sim.core.instruments import Asset, Instrument, InstrumentKind, tick_value_minor
from clearing.ledger import QUOTE, Ledger
from clearing.liquidation_math import (
    bankruptcy_price,
    bankruptcy_price_ticks,
    bankruptcy_quote,
    fillable_price,
    liquidation_fee,
    lots_to_restore,
    partial_liquidation_base,
    settle_liquidation_fee,
    worst_fill_price,
    worst_fill_price_ticks,
)


def _btc_ledger() -> tuple[Ledger, Instrument]:
    # 1 tick = 1 USD, 1 lot = 0.001 BTC, USD with 6 decimals -> 1,000 minor units per tick per lot.
    ins = Instrument(0, "BTC-PERP", InstrumentKind.PERPETUAL, "BTC", "USD", tick_size=1.0, lot_size=0.001,
                     multiplier=1.0, tick_value=tick_value_minor(1.0, 0.001, 1.0, 6))
    return Ledger([Asset("USD", decimals=6)], [ins]), ins


# ----------------------------------------------------------------------------- Drift v2


def test_drift_partial_liquidation_no_fees():
    """METHODS.md section 7 / known answers: Drift v2 partial liquidation, shortage 10, margin ratio
    10%, price 100 -> base 1.0 (Drift protocol-v2, calculate_base_asset_amount_to_cover_margin_shortage)."""
    assert partial_liquidation_base(10.0, 100.0, 0.10) == pytest.approx(1.0, rel=1e-12)


def test_drift_partial_liquidation_liquidation_fee():
    """METHODS.md known answers: Drift v2, same case with a 1% liquidation fee -> 1.111 (10 / 9)."""
    base = partial_liquidation_base(10.0, 100.0, 0.10, liquidation_fee=0.01)
    assert base == pytest.approx(10.0 / 9.0, rel=1e-12)
    assert round(base, 3) == 1.111


def test_drift_partial_liquidation_liquidation_and_insurance_fee():
    """METHODS.md known answers: Drift v2, 1% liquidation fee + 1% insurance fee -> 1.25 (10 / 8)."""
    assert partial_liquidation_base(10.0, 100.0, 0.10, 0.01, 0.01) == pytest.approx(1.25, rel=1e-12)


def test_drift_case_in_lots_without_buffer():
    """METHODS.md known answers (Drift v2) through ``lots_to_restore``: equity 0 vs MM 10 is the
    shortage 10; with 0.001-unit lots the 1.25 base is exactly 1,250 lots."""
    assert lots_to_restore(0.0, 10.0, 0.0, 100.0, 0.10, 0.001, liquidation_fee=0.01, insurance_fee=0.01) == 1250
    assert lots_to_restore(0.0, 10.0, 0.0, 100.0, 0.10, 0.001, liquidation_fee=0.01) == 1112  # 1.111.. rounded up


# ----------------------------------------------------------------------------- dYdX v4


def test_dydx_bankruptcy_quote_and_price():
    """METHODS.md section 7 / known answers: dYdX v4, BTC 50,000, MM 10%, long 0.1 BTC, cash -4,501
    -> equity 499 < MM 500 -> bankruptcy quote for the whole position 4,501, price 45,010
    (dYdX v4 protocol, liquidations: bankruptcy price / fillable price)."""
    cash, size, mark = -4501.0, 0.1, 50_000.0
    equity = cash + size * mark
    mm = 0.10 * size * mark
    assert equity == pytest.approx(499.0) and mm == pytest.approx(500.0) and equity < mm
    assert bankruptcy_quote(equity, 1, size, mark) == pytest.approx(4501.0, rel=1e-12)
    assert bankruptcy_price(equity, 1, size, mark) == pytest.approx(45_010.0, rel=1e-12)
    # the worst acceptable fill runs from the mark (fraction 0) to the bankruptcy price (fraction 1)
    assert worst_fill_price(mark, 45_010.0, 0.0) == mark
    assert worst_fill_price(mark, 45_010.0, 1.0) == pytest.approx(45_010.0)


def test_dydx_bankruptcy_on_the_exact_ledger():
    """METHODS.md known answers (dYdX v4) in ledger units: 100 lots of 0.001 BTC, cash -4,501 USD;
    the integer bankruptcy price is 45,010 ticks and closing there leaves equity exactly 0."""
    ledger, ins = _btc_ledger()
    trader, other = ledger.open_account(), ledger.open_account()
    ledger.deposit(trader, QUOTE, 499_000_000)          # 499 USD, then buy 0.1 BTC at 50,000
    ledger.deposit(other, QUOTE, 10_000_000_000)
    ledger.trade(trader, other, 0, 50_000, 100)
    assert int(ledger.cash[trader, QUOTE]) == -4_501_000_000
    equity = int(ledger.cash[trader, QUOTE]) + 100 * 50_000 * ins.tick_value
    assert equity == 499_000_000
    p_b = bankruptcy_price_ticks(equity, 100, ins.tick_value, 50_000)
    assert p_b == 45_010
    assert p_b * 100 * ins.tick_value == 4_501_000_000   # the bankruptcy quote, exactly
    ledger.trade(other, trader, 0, p_b, 100)               # close at the bankruptcy price
    assert int(ledger.cash[trader, QUOTE]) == 0 and int(ledger.position[trader, 0]) == 0
    ledger.check()


# ----------------------------------------------------------------------------- BitMEX ADL


def test_bitmex_adl_ordering():
    """METHODS.md section 8 / known answers: BitMEX auto-deleveraging, six longs with ranks
    3, 6, 1, 4, 5, 2 and sizes 10, 10, 20, 30, 20, 10; a short of 20 goes bankrupt -> the rank-6
    account is closed fully (10) and the rank-5 account for 10 of its 20 (BitMEX ADL ranking)."""
    accounts = np.array([11, 12, 13, 14, 15, 16])
    ranks = np.array([3.0, 6.0, 1.0, 4.0, 5.0, 2.0])
    sizes = np.array([10, 10, 20, 30, 20, 10])
    assert select_ranked(-20, accounts, ranks, sizes) == [(12, 10), (15, 10)]


def test_bitmex_adl_ordering_executed_on_ledger():
    """METHODS.md known answers (BitMEX ADL) settled on a real ledger at the bankruptcy price."""
    ledger, ins = _btc_ledger()
    longs = [ledger.open_account() for _ in range(6)]
    short = ledger.open_account()
    mm = ledger.open_account()
    for a in longs + [short, mm]:
        ledger.deposit(a, QUOTE, 1_000_000_000)
    sizes = [10, 10, 20, 30, 20, 10]
    for a, s in zip(longs, sizes):
        ledger.trade(a, mm, 0, 50_000, s)
    ledger.trade(mm, short, 0, 50_000, 20)   # the short that will go bankrupt
    ranks = np.array([3.0, 6.0, 1.0, 4.0, 5.0, 2.0])
    sel = select_ranked(int(ledger.position[short, 0]), np.array(longs), ranks, np.array(sizes))
    assert sel == [(longs[1], 10), (longs[4], 10)]
    assert execute_adl(ledger, short, 0, 51_000, sel) == 20
    assert int(ledger.position[short, 0]) == 0
    assert int(ledger.position[longs[1], 0]) == 0 and int(ledger.position[longs[4], 0]) == 10
    ledger.check()


def test_adl_rank_formula_sign_convention():
    """METHODS.md section 8: rank = PnL% x leverage if PnL% > 0 else PnL% / leverage."""
    r = adl_rank(np.array([0.5, -0.5, 0.5]), np.array([4.0, 4.0, 2.0]))
    np.testing.assert_allclose(r, [2.0, -0.125, 1.0])


# ----------------------------------------------------------------------------- behaviour around the cases


def test_partial_liquidation_denominator_not_positive_is_an_error():
    """METHODS.md section 7 formula: when fees >= margin ratio no partial close restores health."""
    with pytest.raises(ValueError, match="close the whole position"):
        partial_liquidation_base(10.0, 100.0, 0.02, liquidation_fee=0.01, insurance_fee=0.01)
    with pytest.raises(ValueError, match="price"):
        partial_liquidation_base(10.0, 0.0, 0.1)
    assert partial_liquidation_base(-3.0, 100.0, 0.1) == 0.0


def test_lots_to_restore_buffer_and_cap():
    """METHODS.md section 7: restore health plus a buffer (MM x (1 + buffer)); capped at the position."""
    # equity 90, MM 100, 2% buffer: target 102, shortage 12; each unit at 100 frees 100 x 0.1 x 1.02
    assert lots_to_restore(90.0, 100.0, 0.02, 100.0, 0.10, 0.01) == 118   # 12 / 10.2 = 1.176 -> 117.6 lots
    assert lots_to_restore(90.0, 100.0, 0.02, 100.0, 0.10, 0.01, position_lots=-50) == 50
    assert lots_to_restore(200.0, 100.0, 0.02, 100.0, 0.10, 0.01) == 0
    # closing the returned lots lands at or above the buffered target
    lots = lots_to_restore(90.0, 100.0, 0.02, 100.0, 0.10, 0.01, liquidation_fee=0.005)
    closed = lots * 0.01
    assert 90.0 - closed * 100 * 0.005 >= (100.0 - closed * 100 * 0.10) * 1.02 - 1e-9


def test_bankruptcy_short_and_worst_fill_ticks():
    """METHODS.md section 7: a short's bankruptcy price is above the mark; the IOC limit stays within it."""
    assert bankruptcy_price(499.0, -1, 0.1, 50_000.0) == pytest.approx(54_990.0)
    assert bankruptcy_price_ticks(499_000_000, -100, 1_000, 50_000) == 54_990
    assert bankruptcy_price_ticks(-100, 1, 1, 1_000) == 1_100        # already under water: above the mark
    assert worst_fill_price_ticks(50_000, 45_010, 0.5) == 47_505
    assert worst_fill_price_ticks(50_000, 45_011, 0.5) == 47_506      # rounded toward the mark
    assert worst_fill_price_ticks(50_000, 54_990, 1.0) == 54_990
    with pytest.raises(ValueError):
        worst_fill_price(1.0, 2.0, 1.5)
    assert liquidation_fee(1_000_000, 0.0029) == 2_900              # exact decimal rate
    assert liquidation_fee(-1_000_000, 0.01, cap=5_000) == 5_000
    assert settle_liquidation_fee(10_000, 2_900) == (2_900, 0)
    assert settle_liquidation_fee(1_000, 2_900) == (1_000, 0)
    assert settle_liquidation_fee(-700, 2_900) == (0, 700)


@settings(max_examples=200, deadline=None)
@given(equity=st.integers(-10**9, 10**12), lots=st.integers(-10**6, 10**6).filter(bool),
       tick_value=st.integers(1, 10**4), mark=st.integers(1, 10**7))
def test_bankruptcy_ticks_never_leaves_account_below_zero(equity, lots, tick_value, mark):
    """METHODS.md section 7: closing at the (tick-rounded) bankruptcy price leaves equity in
    [0, |lots| x tick_value) -- never below zero, and within one tick of exactly zero."""
    p_b = bankruptcy_price_ticks(equity, lots, tick_value, mark)
    after = equity + lots * tick_value * (p_b - mark)
    assert 0 <= after < abs(lots) * tick_value


# dYdX v4 TestGetFillablePrice: BTC at 50,000, 20% initial / 10% maintenance, 0.1 BTC position.
@pytest.mark.parametrize("lots, cash, ba, smmr, expected", [
    (0.1, -4_501.0, 1.0, 0.1, 49_999.0),   # slightly below maintenance: TNC 499, TMMR 500
    (0.1, -4_501.0, 2.0, 0.1, 49_998.0),   # bankruptcy adjustment 2_000_000 ppm
    (0.1, -4_501.0, 1.0, 0.2, 49_998.0),   # spread-to-maintenance ratio 200_000 ppm
    (-0.1, 5_499.0, 1.0, 0.1, 50_001.0),   # short slightly below maintenance
    (-0.1, 5_499.0, 2.0, 0.1, 50_002.0),
    (0.1, -5_000.0, 1.0, 0.1, 49_500.0),   # at the bankruptcy price: the whole SMMR x PMMR
    (-0.1, 5_000.0, 1.0, 0.1, 50_500.0),
    (0.1, -5_500.0, 1.0, 0.1, 49_500.0),   # below bankruptcy: the rating is clamped at 1
    (0.1, -4_501.0, 4294.967295, 0.1, 49_500.0),  # BA = max uint32 ppm: clamped at 1 as well
])
def test_dydx_fillable_price(lots, cash, ba, smmr, expected):
    mark = 50_000.0
    equity = cash + lots * mark
    mm = 0.10 * abs(lots) * mark
    assert fillable_price(mark, lots, 1.0, equity, mm, mm, ba, smmr) == pytest.approx(expected, abs=1e-9)


def test_dydx_fillable_price_of_one_position_in_a_two_position_account():
    """dYdX v4: 0.004 BTC long at 50,000 and 0.1 ETH long at 3,000 with cash -490 (TNC 10, TMMR 50):
    closing the ETH long may fill down to 2,976 (372/125 subticks in the test)."""
    equity = -490.0 + 0.004 * 50_000.0 + 0.1 * 3_000.0
    assert fillable_price(3_000.0, 0.1, 1.0, equity, 50.0, 30.0) == pytest.approx(2_976.0)


def test_fillable_price_refuses_bad_parameters():
    with pytest.raises(ValueError, match="bankruptcy_adjustment"):
        fillable_price(100.0, 1, 1.0, 5.0, 10.0, 10.0, bankruptcy_adjustment=0.5)
    with pytest.raises(ValueError, match="spread_to_mm_ratio"):
        fillable_price(100.0, 1, 1.0, 5.0, 10.0, 10.0, spread_to_mm_ratio=0.0)
    with pytest.raises(ValueError, match="zero position"):
        fillable_price(100.0, 0, 1.0, 5.0, 10.0, 10.0)
