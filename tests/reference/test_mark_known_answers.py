"""Known answers for the book-reading (median) mark, constructed by hand.

Source of the method: Binance's perpetual mark price (median of index-based prices and the
contract's last price) and Hyperliquid's (median of oracle + an EMA of its book's basis and its
own best bid / best ask / last trade); impact bid/ask as on BitMEX and Binance (the average fill
price of an impact notional walked into the book). The numbers below are ours, worked by hand.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sim.core.instruments import Instrument, InstrumentKind, InstrumentTable
from sim.market.volsurface import VolSurface
from sim.market.book import OrderBook
from sim.market.mark import MarkPricer, median_mark
from sim.core.orders import BUY, SELL
from sim.market.oracle_config import OracleConfig
from sim.market.volsurface_config import VolSurfaceConfig


@pytest.mark.parametrize("parts, expected", [
    ((201.0, 198.5, 197.0), 198.5),   # the middle one
    ((190.0, 210.0, 200.0), 200.0),   # order does not matter
    ((200.0, None, 190.0), 195.0),    # no impact price: the mean of the two left
    ((200.0, 204.0, None), 202.0),    # no trade yet
    ((200.0, None, None), 200.0),     # index x (1 + basis) alone
])
def test_median_mark_of_three_constructed_prices(parts, expected):
    assert median_mark(*parts) == expected


def test_median_mark_from_a_constructed_book():
    """index 100 (tick 0.5: 200 ticks), averaged basis +0.4% -> 200.8 ticks; impact size 10 lots
    (10 USD at 1 USD a lot): impact bid = (5 x 199 + 5 x 198) / 10 = 198.5, impact ask = 202,
    impact mid 200.25; last trade 197. Median(200.8, 200.25, 197) = 200.25 ticks = 100.125 USD."""
    table = InstrumentTable.from_instruments([
        Instrument(0, "BTC-PERP", InstrumentKind.PERPETUAL, "BTC", "USD", tick_size=0.5, lot_size=0.01,
                   multiplier=1.0, tick_value=500)])
    oracle = SimpleNamespace(underlyings=["BTC"], index=np.array([100.0]),
                             config=OracleConfig(mark_method="median", mark_impact_notional=10.0))
    surface = VolSurface.from_configs({"BTC": VolSurfaceConfig(atm_vol=0.6)}, spot_refs={"BTC": 100.0})
    book = OrderBook(0)
    book.submit(1, 1, BUY, 199, 5)
    book.submit(2, 1, BUY, 198, 5)
    book.submit(3, 2, SELL, 202, 10)
    marks = MarkPricer(table, [book], oracle, surface, last_trade=[197])
    marks.premium[0] = 0.004
    marks.update(1.0)
    assert marks.impact_prices(0, 200.0) == (198.5, 202.0)
    assert marks.ticks[0] == pytest.approx(200.25, abs=1e-12)
    assert marks.ticks[0] * 0.5 == pytest.approx(100.125)
    assert marks.basis_ticks[0] == pytest.approx(0.25, abs=1e-12)
