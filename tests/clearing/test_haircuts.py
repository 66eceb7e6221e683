"""Dynamic collateral haircuts: the formula, the EWMA vol, and a depeg valued through the house.

Known answers: a pegged coin at 0.65 carries a 35-point depeg on top of its vol term; with no vol
and no depeg the haircut is exactly the floor; the cap binds. The episode scenario is the issue's
case: USDE keeps 5% through a 35% depeg under a static haircut, and follows it under a dynamic one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from clearing.haircuts import haircut_of
from clearing.ledger import QUOTE
from sim.market.market_config import AssetConfig, DynamicHaircutConfig
from tests.scenarios.harness import USD, Scenario

Z99 = 2.3263478740408408


def test_haircut_formula_floor_depeg_and_cap():
    cfg = DynamicHaircutConfig(peg=1.0, cap=0.5)
    assert haircut_of(cfg, 0.05, 0.0, 1.0) == 0.05  # no vol, on the peg: the floor exactly
    assert haircut_of(cfg, 0.05, 0.0, 0.65) == pytest.approx(0.35)  # the depeg
    vol_term = Z99 * 0.8 * math.sqrt(2 / 365)
    assert haircut_of(cfg, 0.05, 0.8, 0.95) == pytest.approx(vol_term + 0.05)
    assert haircut_of(cfg, 0.05, 3.0, 0.65) == 0.5  # capped
    assert haircut_of(DynamicHaircutConfig(), 0.10, 0.8, 0.65) == pytest.approx(vol_term)  # no peg: no depeg term


def test_a_dynamic_haircut_needs_a_price_and_a_cap_above_its_floor():
    with pytest.raises(ValueError, match="needs a price_source"):
        AssetConfig(name="X", dynamic_haircut={})
    with pytest.raises(ValueError, match="below the floor"):
        AssetConfig(name="X", haircut=0.6, price_source="X", dynamic_haircut={"cap": 0.5})


def _depeg(dynamic: bool) -> Scenario:
    usde = {"name": "USDE", "decimals": 6, "haircut": 0.05, "price_source": "USDE"}
    if dynamic:
        usde["dynamic_haircut"] = {"peg": 1.0, "cap": 0.5, "vol_halflife": 600.0}
    return Scenario({
        "market": {"collateral": [usde]},
        "paths": {"models": [
            {"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0, "vol": 0.0}]},
            {"kind": "gbm", "underlyings": [{"name": "USDE", "s0": 1.0, "vol": 0.0}]}],
            "shocks": [{"kind": "depeg", "underlying": "USDE", "start": 100.0, "trough": 0.65, "duration": 300.0}]},
    })


@pytest.mark.parametrize("dynamic", [False, True])
def test_a_depegged_coin_is_haircut_by_its_depeg_and_vol_only_when_the_haircut_is_dynamic(dynamic):
    s = _depeg(dynamic)
    a = s.ep.ledger.open_account()
    s.ep.ledger.deposit(a, 1, 10_000 * USD)  # 10,000 USDE, no position
    s.run(90.0)
    assert s.equity(a) == pytest.approx(10_000 * 0.95)  # on the peg, no vol: the 5% floor either way
    s.ep.world.run(until=600.0)
    price = float(s.ep.house.asset_prices()[1])
    assert price == pytest.approx(0.65, abs=1e-6)
    if not dynamic:
        assert s.ep.haircuts is None
        assert s.equity(a) == pytest.approx(10_000 * price * 0.95)  # still 5% through a 35% depeg
        return
    h = s.ep.haircuts
    sigma = h.sigma(1)
    expected = min(max(Z99 * sigma * math.sqrt(2 / 365) + 0.35, 0.05), 0.5)
    assert expected > 0.35  # the fall itself is realised vol on top of the depeg
    assert 1.0 - s.ep.ledger.haircut_keep[1] == pytest.approx(expected)
    assert s.equity(a) == pytest.approx(10_000 * price * (1.0 - expected))
    times = [t for t, _ in h.history]
    assert times == sorted(times) and h.history[0][1][1] == pytest.approx(0.05)


def test_the_ewma_vol_is_the_decayed_mean_of_squared_returns_per_second():
    s = _depeg(True)
    h = s.ep.haircuts
    index = s.ep.oracle.index
    col = list(s.ep.oracle.underlyings).index("USDE")
    assert h.sigma(1) == 0.0
    index[col] = 0.9
    h.update(60.0)  # one return of log(0.9) over 60 s, half-life 600 s
    a = 2.0 ** (-60.0 / 600.0)
    var = (1 - a) * math.log(0.9) ** 2 / 60.0
    assert h.sigma(1) == pytest.approx(math.sqrt(var * 365 * 86_400))
    index[col] = 0.9
    h.update(660.0)  # no move for 600 s: the variance halves
    assert h.sigma(1) == pytest.approx(math.sqrt(var / 2 * 365 * 86_400))
