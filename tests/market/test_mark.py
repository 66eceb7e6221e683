"""Mark prices: index x (1 + clamped EMA of the book premium) for linear contracts; Black-76 on
the surface vol for options, with the spot-vol link raising option marks in a crash."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sim.core.instruments import SECONDS_PER_YEAR, Instrument, InstrumentKind, InstrumentTable
from sim.market.pricing import black76_price
from sim.market.volsurface import VolSurface
from sim.market.book import OrderBook
from sim.market.mark import MarkPricer
from sim.core.orders import BUY, SELL, TimeInForce
from sim.market.oracle_config import OracleConfig
from sim.market.volsurface_config import VolSurfaceConfig

TICK = 0.5
EXPIRY = 30 * 24 * 3600.0


def _table() -> InstrumentTable:
    def ins(i, sym, kind, und, **kw):
        return Instrument(i, sym, kind, und, "USD", tick_size=kw.pop("tick", TICK), lot_size=0.01, multiplier=1.0,
                          tick_value=kw.pop("tv", 500), **kw)

    return InstrumentTable.from_instruments([
        ins(0, "BTC-PERP", InstrumentKind.PERPETUAL, "BTC", funding_interval=3600.0),
        ins(1, "ETH-PERP", InstrumentKind.PERPETUAL, "ETH", tick=0.05, tv=50),
        ins(2, "BTC-P-90", InstrumentKind.OPTION, "BTC", expiry=EXPIRY, strike=90.0, is_call=False),
        ins(3, "BTC-C-110", InstrumentKind.OPTION, "BTC", expiry=EXPIRY, strike=110.0, is_call=True),
        ins(4, "BTC-C-100", InstrumentKind.OPTION, "BTC", expiry=EXPIRY, strike=100.0, is_call=True),
    ])


def _pricer(index=(100.0, 20.0), beta: float = 0.0, skew: float = 0.0, cap: float = 0.005,
            window: float = 10.0, oracle_order=("ETH", "BTC"), last_trade=None, **mark):
    """``mark``: the oracle config's mark_* fields (mark_method, mark_impact_notional, mark_band)."""
    table = _table()
    # the oracle may list underlyings in another order than the table: the pricer maps columns
    values = dict(zip(("BTC", "ETH"), index))
    oracle = SimpleNamespace(
        underlyings=list(oracle_order),
        index=np.array([values[u] for u in oracle_order], dtype=float),
        config=OracleConfig(sample_interval=1.0, mark_basis_window=window, mark_basis_cap=cap, **mark),
    )
    surface = VolSurface.from_configs(
        {"BTC": VolSurfaceConfig(atm_vol=0.6, skew=skew, spot_vol_beta=beta),
         "ETH": VolSurfaceConfig(atm_vol=0.8)},
        spot_refs={"BTC": 100.0, "ETH": 20.0},
    )
    books = [OrderBook(i) for i in range(len(table))]
    return MarkPricer(table, books, oracle, surface, last_trade=last_trade), oracle, books


def _quote(book: OrderBook, bid: int, ask: int) -> None:
    for oid in [o.order_id for side in (BUY, SELL) for o in book.resting_orders(side)]:
        book.cancel(oid)
    book.submit(10_000 + bid, 1, BUY, bid, 1)
    book.submit(20_000 + ask, 2, SELL, ask, 1)


def _set_index(oracle, btc: float, eth: float | None = None) -> None:
    oracle.index[oracle.underlyings.index("BTC")] = btc
    if eth is not None:
        oracle.index[oracle.underlyings.index("ETH")] = eth


# ------------------------------------------------------------------ linear contracts

def test_mark_is_index_when_the_books_are_empty():
    marks, oracle, books = _pricer()
    for _ in range(50):
        marks.sample_books()
    marks.update(0.0)
    assert marks.index.tolist() == [100.0, 20.0]  # in table order, not the oracle's
    assert marks.ticks[0] * TICK == pytest.approx(100.0)
    assert marks.ticks[1] * 0.05 == pytest.approx(20.0)
    assert marks.basis_ticks[:2].tolist() == [0.0, 0.0]
    assert marks.premium.tolist() == [0.0] * 5


def test_one_sided_book_has_no_mid_and_leaves_the_mark_at_index():
    marks, oracle, books = _pricer()
    books[0].submit(1, 1, BUY, 210, 3)  # bid at 105, no ask
    for _ in range(20):
        marks.sample_books()
    marks.update(0.0)
    assert marks.ticks[0] * TICK == pytest.approx(100.0)


def test_mark_follows_index_moves_with_an_empty_book():
    marks, oracle, books = _pricer()
    _set_index(oracle, 60.0, 25.0)
    marks.update(1.0)
    assert marks.ticks[0] * TICK == pytest.approx(60.0)
    assert marks.ticks[1] * 0.05 == pytest.approx(25.0)


def test_basis_ema_follows_a_book_premium_within_the_cap():
    # mid 100.2 vs index 100 -> premium 0.2%, inside a 0.5% cap; alpha = 1/10
    marks, oracle, books = _pricer(cap=0.005, window=10.0)
    _quote(books[0], 200, 201)  # 100.0 / 100.5 -> mid 100.25 -> premium 0.25%
    premium = 0.0025
    expected = 0.0
    for _ in range(5):
        marks.sample_books()
        expected += 0.1 * (premium - expected)
    assert marks.premium[0] == pytest.approx(expected)
    for _ in range(300):
        marks.sample_books()
    marks.update(0.0)
    assert marks.premium[0] == pytest.approx(premium)
    assert marks.ticks[0] * TICK == pytest.approx(100.0 * (1 + premium))
    assert marks.index_ticks[0] * TICK == pytest.approx(100.0)
    assert marks.basis_ticks[0] * TICK == pytest.approx(100.0 * premium)
    assert marks.ticks[0] == pytest.approx(marks.index_ticks[0] + marks.basis_ticks[0])
    # the other linear contract's book is empty: its mark stays at index
    assert marks.ticks[1] * 0.05 == pytest.approx(20.0)


def test_plain_float_update_of_linear_marks_gives_the_array_path_bits():
    # without options or the median method a few linear marks are updated in plain floats
    # (MarkPricer._update_plain); the array path must give the same bits: premia inside and beyond
    # the cap on both sides, awkward tick sizes, the oracle's columns in another order
    def ins(i, sym, und, tick):
        return Instrument(i, sym, InstrumentKind.PERPETUAL, und, "USD", tick_size=tick, lot_size=0.01,
                          multiplier=1.0, tick_value=7, funding_interval=3600.0)

    table = InstrumentTable.from_instruments([ins(0, "BTC-PERP", "BTC", 0.1), ins(1, "ETH-PERP", "ETH", 0.03),
                                              ins(2, "BTC-PERP2", "BTC", 0.7)])
    rng = np.random.default_rng(5)
    seen = []
    for plain in (True, False):
        oracle = SimpleNamespace(underlyings=["ETH", "BTC"], index=np.array([20.0, 100.0]),
                                 config=OracleConfig(sample_interval=1.0, mark_basis_window=10.0,
                                                     mark_basis_cap=0.004))
        surface = VolSurface.from_configs({"BTC": VolSurfaceConfig(atm_vol=0.6), "ETH": VolSurfaceConfig(atm_vol=0.8)},
                                          spot_refs={"BTC": 100.0, "ETH": 20.0})
        marks = MarkPricer(table, [OrderBook(i) for i in range(3)], oracle, surface)
        assert marks._plain
        marks._plain = plain
        rows = []
        for k in range(200):
            oracle.index[:] = rng.lognormal(0.0, 0.3, 2) * [20.0, 100.0] if plain else seen[k][0]
            marks.premium[:] = rng.normal(0.0, 0.005, 3) if plain else seen[k][1]
            marks.update(float(k))
            state = marks.market_state(float(k))
            rows.append((oracle.index.copy(), marks.premium.copy(), marks.index_ticks.copy(),
                         marks.basis_ticks.copy(), marks.ticks.copy(), state.marks.copy(),
                         state.underlying_prices.copy()))
        seen = rows
        if plain:
            plain_rows = rows
    assert any(abs(p) > 0.004 for r in plain_rows for p in r[1])  # some premia were clamped
    for a, b in zip(plain_rows, seen):
        for x, y in zip(a, b):
            assert np.array_equal(x, y) and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("bid,ask,sign", [(260, 262, 1), (140, 142, -1)])  # mid 130.5 / 70.5
def test_basis_is_clamped_at_mark_basis_cap(bid, ask, sign):
    marks, oracle, books = _pricer(cap=0.005)
    _quote(books[0], bid, ask)
    for _ in range(200):
        marks.sample_books()
    marks.update(0.0)
    # each sample is clamped before averaging: the EMA never holds more than the cap, so a spike on a
    # thin book cannot pin the mark at the cap long after the book has come back
    assert marks.premium[0] == pytest.approx(sign * 0.005)
    assert marks.ticks[0] * TICK == pytest.approx(100.0 * (1 + sign * 0.005))
    assert marks.basis_ticks[0] * TICK == pytest.approx(sign * 0.5)


def test_zero_cap_pins_mark_to_index_whatever_the_book():
    marks, oracle, books = _pricer(cap=0.0)
    _quote(books[0], 300, 302)
    for _ in range(100):
        marks.sample_books()
    marks.update(0.0)
    assert marks.ticks[0] * TICK == pytest.approx(100.0)


def test_premium_is_measured_against_the_current_index():
    marks, oracle, books = _pricer(window=1.0)  # alpha = 1: the EMA is the last premium
    _quote(books[0], 200, 201)  # mid 100.25
    _set_index(oracle, 100.25)
    marks.sample_books()
    assert marks.premium[0] == pytest.approx(0.0)


def test_market_state_snapshot_is_cached_until_the_next_update():
    marks, oracle, books = _pricer()
    s1 = marks.market_state(0.0)
    assert marks.market_state(0.0) is s1
    assert s1.marks[0] == pytest.approx(100.0)
    assert s1.underlying_prices.tolist() == pytest.approx([100.0, 20.0])
    marks.update(1.0)
    assert marks.market_state(1.0) is not s1


# ------------------------------------------------------------------ options

def _black76(marks: MarkPricer, i: int, forward: float, vol: float, now: float = 0.0) -> float:
    t = marks.table
    years = (t.expiry[i] - now) / SECONDS_PER_YEAR
    return float(black76_price(forward, t.strike[i], years, vol, t.is_call[i]))


@pytest.mark.parametrize("skew", [0.0, -0.3])
def test_option_marks_equal_black76_on_the_surface_vol(skew):
    marks, oracle, books = _pricer(skew=skew)
    now = 3 * 24 * 3600.0
    marks.update(now)
    years = (EXPIRY - now) / SECONDS_PER_YEAR
    for i in (2, 3, 4):
        surface_vol = float(marks.surface.vol(marks.table.strike[i], years, 100.0)[0])
        assert marks.vols[i] == pytest.approx(surface_vol)
        assert marks.ticks[i] * TICK == pytest.approx(_black76(marks, i, 100.0, surface_vol, now), rel=1e-12)
        assert marks.basis_ticks[i] == 0.0
    if skew:
        assert marks.vols[2] > marks.vols[4] > marks.vols[3]  # put skew: low strikes richer
    else:
        assert marks.vols[2] == marks.vols[3] == marks.vols[4] == pytest.approx(0.6)


def test_option_forward_is_the_perp_mark_including_its_basis():
    marks, oracle, books = _pricer(window=1.0, cap=0.01)
    _quote(books[0], 201, 202)  # mid 100.75: +0.75% premium, inside the 1% cap
    marks.sample_books()
    marks.update(0.0)
    fwd = marks.ticks[0] * TICK
    assert fwd == pytest.approx(100.75)
    assert marks.underlying_marks()[0] == pytest.approx(fwd)
    i = 4
    assert marks.ticks[i] * TICK == pytest.approx(_black76(marks, i, fwd, marks.vols[i]))


def test_option_marks_rise_when_the_underlying_falls_with_a_spot_vol_link():
    linked, o1, _ = _pricer(beta=2.0)
    unlinked, o2, _ = _pricer(beta=0.0)
    before_vol = float(linked.vols[3])
    before = linked.ticks.copy()
    for marks, oracle in ((linked, o1), (unlinked, o2)):
        _set_index(oracle, 80.0)  # a 20% crash
        marks.update(0.0)
    # ATM vol rises by (80/100)^-2 = 1.5625x: every BTC option is marked on the higher vol
    assert linked.vols[3] == pytest.approx(before_vol * 1.5625)
    assert unlinked.vols[3] == pytest.approx(0.6)
    for i in (2, 3, 4):
        assert linked.ticks[i] * TICK == pytest.approx(_black76(linked, i, 80.0, linked.vols[i]))
        assert linked.ticks[i] > unlinked.ticks[i]  # the spot-vol link adds to every option's mark
    assert linked.ticks[2] > before[2]  # the put gains from both the move and the vol
    put_gain_linked = linked.ticks[2] - before[2]
    put_gain_unlinked = unlinked.ticks[2] - before[2]
    assert put_gain_linked > 1.2 * put_gain_unlinked


def test_option_mark_at_expiry_is_intrinsic():
    marks, oracle, books = _pricer()
    _set_index(oracle, 80.0)
    marks.update(EXPIRY + 1.0)
    assert marks.ticks[2] * TICK == pytest.approx(10.0)  # 90 put, spot 80
    assert marks.ticks[3] == 0.0 and marks.ticks[4] == 0.0


# ------------------------------------------------------------------ the book-reading (median) mark
# BTC-PERP: tick 0.5, lot 0.01 -> at index 100 (200 ticks) a lot is worth 1 USD, so an impact
# notional of 10 USD is an impact size of 10 lots.

def _ladder(book: OrderBook, depth: int) -> None:
    """Bids 199..190 and asks 201..210 ticks, ``depth`` lots a level (accounts 1 and 2)."""
    for k in range(10):
        book.submit(1_000 + k, 1, BUY, 199 - k, depth)
        book.submit(2_000 + k, 2, SELL, 201 + k, depth)


def _sell_into(book: OrderBook, last: list, lots: int) -> None:
    """A market sell of ``lots`` (account 3) walking the bids; the venue's last trade follows it."""
    result = book.submit(3_000, 3, SELL, 1, lots, TimeInForce.IOC)
    assert result.fills
    last[0] = result.fills[-1].price


def _median_pricer(**mark):
    last = [None] * 5
    marks, oracle, books = _pricer(last_trade=last, mark_method="median", mark_impact_notional=10.0, **mark)
    return marks, oracle, books, last


def test_median_mark_moves_when_a_large_sell_walks_a_thin_book():
    marks, oracle, books, last = _median_pricer()
    _ladder(books[0], depth=1)
    marks.update(0.0)
    assert marks.ticks[0] == 200.0  # median(index 200, impact mid 200 -- 194.5/205.5 -- , no trade yet)
    _sell_into(books[0], last, 30)  # takes all 10 bids, down to 190; the bid side is gone
    assert marks.ticks[0] == 200.0  # marks move only in update
    marks.sample_books()  # one-sided book: no mid, the averaged basis stays 0
    marks.update(1.0)
    # no impact bid (the side cannot fill 10 lots): median(200, last 190) = their mean
    assert marks.ticks[0] == 195.0
    assert marks.basis_ticks[0] == -5.0 and marks.index_ticks[0] == 200.0


def test_median_mark_stays_put_when_the_same_sell_meets_a_deep_book():
    marks, oracle, books, last = _median_pricer()
    _ladder(books[0], depth=1_000)
    marks.update(0.0)
    _sell_into(books[0], last, 30)  # fills at 199, the bid level survives
    marks.sample_books()
    marks.update(1.0)
    # median(index 200, impact mid (199 + 201) / 2 = 200, last 199) = 200: no move at all
    assert marks.ticks[0] == 200.0 and marks.basis_ticks[0] == 0.0


def test_index_basis_mark_ignores_the_same_sweep():
    last = [None] * 5
    marks, oracle, books = _pricer(last_trade=last)
    _ladder(books[0], depth=1)
    marks.update(0.0)
    _sell_into(books[0], last, 30)
    marks.sample_books()
    marks.update(1.0)
    assert marks.ticks[0] == 200.0  # the book enters only through the averaged mid (none: one-sided)


def test_mark_band_clips_the_median_mark_around_the_index():
    marks, oracle, books, last = _median_pricer(mark_band=0.02)
    _ladder(books[0], depth=1)
    _sell_into(books[0], last, 30)
    marks.update(1.0)
    assert marks.ticks[0] == pytest.approx(196.0)  # 195 clipped to 200 x (1 - 2%)


def test_impact_price_needs_the_whole_impact_size():
    marks, oracle, books, last = _median_pricer()
    _ladder(books[0], depth=1)  # 10 lots a side: exactly the impact size
    assert marks.impact_prices(0, 200.0) == (194.5, 205.5)
    books[0].cancel(1_009)  # one bid lot fewer: the bid side can no longer fill 10 lots
    assert marks.impact_prices(0, 200.0) == (None, 205.5)


def test_mark_from_book_is_what_the_next_update_sets_and_moves_nothing():
    marks, oracle, books, last = _median_pricer()
    _ladder(books[0], depth=1)
    marks.sample_books()
    marks.update(0.0)
    assert marks.mark_from_book(0, sample=False) == marks.ticks[0]
    before = marks.mark_from_book(0)
    _sell_into(books[0], last, 30)
    after = marks.mark_from_book(0)
    assert (before, after) == (200.0, 195.0)  # the sell's own impact on the mark
    assert marks.ticks[0] == 200.0 and marks.premium[0] == 0.0  # nothing moved
    marks.sample_books()
    marks.update(1.0)
    assert marks.ticks[0] == after
    assert marks.mark_from_book(2) == marks.ticks[2]  # an option's mark does not read the book


def test_index_plus_basis_is_the_mark_exactly_under_the_median_method():
    marks, oracle, books, last = _median_pricer()
    _ladder(books[0], depth=3)
    _quote(books[1], 399, 405)
    last[1] = 403
    for t in range(5):
        _set_index(oracle, 100.0 + 0.37 * t, 20.0 - 0.11 * t)
        marks.sample_books()
        marks.update(float(t))
        assert np.array_equal(marks.ticks, marks.index_ticks + marks.basis_ticks)


def test_mark_band_without_the_median_method_is_refused():
    with pytest.raises(ValueError, match="mark_band .* applies only to mark_method 'median'"):
        OracleConfig(mark_band=0.05)
