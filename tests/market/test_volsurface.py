import math

import numpy as np
import pytest
from pydantic import ValidationError

from sim.core.instruments import SECONDS_PER_YEAR, Instrument, InstrumentKind, InstrumentTable
from sim.market.pricing import black76_price
from sim.market.volsurface import VolSurface
from sim.market.volsurface_config import VolSurfaceConfig


def surface(**kw) -> VolSurface:
    cfg = VolSurfaceConfig(**{"atm_vol": 0.6, **kw})
    return VolSurface.from_config(cfg, spot_ref=100.0, name="BTC")


def test_flat_surface_is_flat():
    s = surface()
    k = np.linspace(50, 200, 7)
    np.testing.assert_allclose(s.vol(k, 0.5, 100.0), 0.6)
    np.testing.assert_allclose(s.atm_vols(np.array([100.0])), [0.6])


def test_skew_sign_puts_richer_than_calls():
    s = surface(skew=-0.2)
    lo, atm, hi = s.vol(np.array([80.0, 100.0, 125.0]), 30 / 365, 100.0)
    assert lo > atm > hi
    assert lo - atm == pytest.approx(-0.2 * math.log(0.8), rel=1e-12)
    # positive skew (a call-skewed market) flips the ordering
    lo, atm, hi = surface(skew=0.2).vol(np.array([80.0, 100.0, 125.0]), 30 / 365, 100.0)
    assert lo < atm < hi


def test_smile_curvature_raises_both_wings():
    s = surface(curvature=0.5)
    v = s.vol(np.array([70.0, 100.0, 140.0]), 0.1, 100.0)
    assert v[0] > v[1] and v[2] > v[1]


def test_spot_vol_link_power_and_additive():
    p = surface(spot_vol_beta=1.5)
    assert float(p.atm(np.array([70.0]))[0]) == pytest.approx(0.6 * 0.7**-1.5, rel=1e-12)
    assert float(p.atm(np.array([130.0]))[0]) < 0.6  # symmetric link: rallies calm vol
    a = surface(spot_vol_beta=0.5, spot_vol_mode="additive")
    assert float(a.atm(np.array([70.0]))[0]) == pytest.approx(0.6 - 0.5 * math.log(0.7), rel=1e-12)
    d = surface(spot_vol_beta=1.5, downside_only=True)
    assert float(d.atm(np.array([130.0]))[0]) == pytest.approx(0.6)
    assert float(d.atm(np.array([70.0]))[0]) > 0.6


def test_stress_raises_vol_and_floor_cap_apply():
    s = surface(spot_vol_beta=2.0, vol_cap=1.5, vol_floor=0.2, skew=-0.3)
    calm = s.vol(100.0, 0.1, 100.0)
    stressed = s.vol(70.0, 0.1, 70.0)  # ATM after a 30% fall
    assert stressed > calm
    assert s.vol(100.0, 0.1, 20.0).item() == 1.5  # capped
    assert s.vol(1e6, 0.1, 100.0).item() == 0.2  # floored (deep OTM call with negative skew)


def test_term_structure_power_and_linear():
    inverted = surface(term_slope=-0.2, term_ref_years=30 / 365)
    short, ref, long_ = inverted.vol(100.0, np.array([7 / 365, 30 / 365, 1.0]), 100.0)
    assert short > ref > long_
    assert ref == pytest.approx(0.6)
    assert short == pytest.approx(0.6 * (7 / 30) ** -0.2, rel=1e-12)
    lin = surface(term_structure="linear", term_slope=0.1, term_ref_years=0.25)
    assert lin.vol(100.0, 1.25, 100.0).item() == pytest.approx(0.6 * 1.1, rel=1e-12)
    # below min_years the factor is frozen (no blow-up into expiry)
    assert inverted.vol(100.0, 0.0, 100.0).item() == inverted.vol(100.0, 1 / 365, 100.0).item()


def test_options_gain_value_under_stress():
    """A 30% fall: puts gain more with the spot-vol link than without; OTM calls keep more value."""
    linked = surface(spot_vol_beta=1.5, skew=-0.1)
    static = surface(spot_vol_beta=0.0, skew=-0.1)
    strikes = np.array([60.0, 80.0, 100.0, 120.0])
    t = 14 / 365
    for call in (False, True):
        before = black76_price(100.0, strikes, t, linked.vol(strikes, t, 100.0), call)
        with_link = black76_price(70.0, strikes, t, linked.vol(strikes, t, 70.0), call)
        without = black76_price(70.0, strikes, t, static.vol(strikes, t, 70.0), call)
        assert np.all(with_link > without)
        if not call:
            assert np.all(with_link > before)


def test_multi_underlying_broadcast_and_take():
    cfg_b = VolSurfaceConfig(atm_vol=0.5, skew=-0.1, spot_vol_beta=1.0)
    cfg_e = VolSurfaceConfig(atm_vol=0.7, skew=-0.2, spot_ref=3000.0)
    s = VolSurface.from_configs({"BTC": cfg_b, "ETH": cfg_e}, {"BTC": 60000.0})
    assert s.names == ("BTC", "ETH")
    np.testing.assert_allclose(s.spot_ref, [60000.0, 3000.0])
    spots = np.array([[60000.0, 42000.0], [3000.0, 2100.0]])  # (U, S)
    atm = s.atm_vols(spots)
    assert atm.shape == (2, 2)
    assert atm[0, 1] > atm[0, 0] and atm[1, 1] == pytest.approx(atm[1, 0])
    per = s.take(np.array([0, 1, 1]))
    v = per.vol(np.array([50000.0, 2500.0, 3500.0])[:, None], 0.1, spots[[0, 1, 1]])
    assert v.shape == (3, 2)
    assert v[1, 0] > v[2, 0]  # ETH skew
    # re-anchoring
    assert float(s.with_spot_ref([42000.0, 3000.0]).atm_vols(np.array([42000.0, 3000.0]))[0]) == pytest.approx(0.5)


def test_instrument_vols_from_table():
    def ins(i, sym, kind, u, **kw):
        return Instrument(i, sym, kind, u, "USD", 0.1, 1.0, 1.0, 100000, **kw)

    day = 86400.0
    table = InstrumentTable.from_instruments(
        [
            ins(0, "BTC-PERP", InstrumentKind.PERPETUAL, "BTC", funding_interval=3600.0),
            ins(1, "BTC-P-50k", InstrumentKind.OPTION, "BTC", expiry=30 * day, strike=50000.0, is_call=False),
            ins(2, "ETH-C-4k", InstrumentKind.OPTION, "ETH", expiry=7 * day, strike=4000.0, is_call=True),
        ]
    )
    s = VolSurface.from_configs(
        {"ETH": VolSurfaceConfig(atm_vol=0.8, skew=-0.2), "BTC": VolSurfaceConfig(atm_vol=0.5, skew=-0.1)},
        {"ETH": 3000.0, "BTC": 60000.0},
    )
    v = s.instrument_vols(table, 0.0, np.array([60000.0, 3000.0]))  # table order: BTC, ETH
    assert v.shape == (3,)
    assert v[0] == pytest.approx(0.5)
    assert v[1] == pytest.approx(float(s.take([1]).vol(50000.0, 30 * day / SECONDS_PER_YEAR, 60000.0)[0]))
    assert v[2] == pytest.approx(float(s.take([0]).vol(4000.0, 7 * day / SECONDS_PER_YEAR, 3000.0)[0]))
    scen = np.array([[60000.0, 48000.0], [3000.0, 2400.0]])
    vs = s.instrument_vols(table, 0.0, scen)
    assert vs.shape == (3, 2)
    np.testing.assert_allclose(vs[:, 0], v)


def test_config_validation_names_fields():
    with pytest.raises(ValidationError) as e:
        VolSurfaceConfig(atm_vol=0.5, vol_floor=0.5, vol_cap=0.4)
    assert "vol_cap" in str(e.value) and "must exceed vol_floor" in str(e.value)
    with pytest.raises(ValidationError) as e:
        VolSurfaceConfig(atm_vol=-0.1)
    assert "atm_vol" in str(e.value)
    with pytest.raises(ValidationError) as e:
        VolSurfaceConfig(atm_vol=0.5, smile=1.0)
    assert "smile" in str(e.value)
    with pytest.raises(ValueError, match="spot_ref"):
        VolSurface.from_config(VolSurfaceConfig(atm_vol=0.5), None, "BTC")
