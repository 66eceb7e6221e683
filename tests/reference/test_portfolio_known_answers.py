"""Deribit portfolio margin on outright positions: known answers from the published method.

Sources:
* Deribit, "Portfolio Margin" (support.deribit.com, Segregated Portfolio Margin components): the
  underlying is moved over +/-16% in 9 evenly spaced buckets under vol up / same / down; an
  extended table of -66%, -33%, +50%, +100%, +200%, +300%, +400%, +500% on vol up counts only a
  fraction of its simulated P&L, with a dampener; delta and roll shocks replaced the old futures and
  options contingencies (Deribit's 2024 model change).
* Deribit's published BTC parameters (margin page): price range 16%, volatility range up 50% /
  down 25%, short/long-term vega power 0.30 / 0.13, min volatility for shock up 50%, extended table
  factor 1, extended dampener 100,000 USD, delta total liquidity shock threshold 20,000,000 USD,
  max delta shock 10%, annualised move risk 7.5%, min annualised move 1%; MM = 80% of IM. (Values
  as reproduced by public re-implementations of Deribit's calculator; the extended fractions
  16% / |move| -- 24%, 48%, 32%, 16%, 8%, 5.33%, 4%, 3.2% -- as Paradex, which states its engine
  is Deribit-compatible, publishes them.)
Published example for an outright: 1 BTC long perpetual at 60,000 -> worst risk-matrix loss at
-16% = 9,600 USD of IM, MM 7,680; no delta shock below the 20M USD threshold.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.core.instruments import InstrumentTable
from clearing.margin.examples import make_instrument, make_market
from clearing.margin.portfolio import PortfolioRegime
from clearing.margin.config import PortfolioConfig


@pytest.fixture()
def perp():
    table = InstrumentTable.from_instruments([make_instrument(0, "BTC-PERP", "perpetual", "BTC")])
    return table, make_market(table, {"BTC": 60_000.0}, {"BTC": 0.5})


def test_an_outright_perpetual_costs_the_price_range_not_range_plus_a_flat_delta_shock(perp):
    table, market = perp
    for lots in (1.0, -1.0):
        b = PortfolioRegime(table).breakdown(np.array([lots]), market)
        assert b["im"] == pytest.approx(9_600.0) and b["mm"] == pytest.approx(7_680.0)
        assert b["delta_shock"] == 0.0 and b["roll_shock"] == 0.0


def test_extended_fractions_are_the_range_over_the_move():
    r = PortfolioRegime(InstrumentTable.from_instruments([make_instrument(0, "X", "perpetual", "X")]))
    np.testing.assert_allclose(r.ext_fraction, [0.2424, 0.4848, 0.32, 0.16, 0.08, 0.0533, 0.04, 0.032], atol=1e-4)
    # dampener: (|move| / range - 1) x 100,000 -- 312,500 at +66%, 3,025,000 at +500%
    np.testing.assert_allclose(r.ext_dampener[:8, 0], (np.abs(r.extended) / 0.16 - 1) * 100_000.0)


@pytest.mark.parametrize("btc, rate", [
    (300.0, 0.0),                    # 18M USD: below the 20M threshold, no shock
    (340.0, 0.01 * 400_000 / 60_000),  # 20.4M: 6.67 BTC beyond -> 6.67%
    (400.0, 0.10),                   # 24M: 66.7 BTC beyond -> capped at 10%
])
def test_delta_shock_is_a_liquidity_charge_on_delta_beyond_the_threshold(perp, btc, rate):
    table, market = perp
    b = PortfolioRegime(table).breakdown(np.array([-btc]), market)
    assert b["delta_shock"] == pytest.approx(rate * btc * 60_000.0)
    assert b["im"] == pytest.approx(0.16 * btc * 60_000.0 + rate * btc * 60_000.0)


def test_a_linear_position_is_never_driven_by_the_extended_table(perp):
    table, market = perp
    r = PortfolioRegime(table, PortfolioConfig(extended_dampener=0.0))  # even with no dampener
    b = r.breakdown(np.array([1.0]), market)
    assert b["extended"] == pytest.approx(b["core"])  # each extended row loses range x notional
