"""The clearing house's kept position matrices (clearing.exposure): after fills, order changes and
new accounts, every matrix and every requirement equals a fresh computation from the ledger, to
the bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.exposure import ExposureBook, worst_case
from sim.core.instruments import Asset
from clearing.ledger import FIRST_TRADER, QUOTE, Ledger
from clearing.margin.base import Positions
from clearing.margin.examples import benchmark_book
from clearing.margin.portfolio import PortfolioRegime
from clearing.margin.span import SpanRegime
from clearing.margin.tims import TimsRegime
from clearing.margin.config import OpenInterestCaps, PortfolioConfig, RiskTier, StandardConfig
from clearing.margin.standard import StandardRegime
from sim.market.resting import RestingSize

N = 600


TIERS = [RiskTier(max_notional=1000.0, im_rate=0.05, mm_rate=0.025), RiskTier(im_rate=0.10, mm_rate=0.05)]
REGIMES = {"portfolio": PortfolioRegime, "span": SpanRegime, "tims": TimsRegime,
           "portfolio_joint": lambda t: PortfolioRegime(t, PortfolioConfig(cross_asset="joint")),
           # options in the table: the entry-by-entry path, on the kept snapshot's distinct entries
           "standard": lambda t: StandardRegime(t, StandardConfig(tiers=TIERS)),
           "standard_isolated": lambda t: StandardRegime(t, StandardConfig(tiers=TIERS, margin_mode="isolated"))}


@pytest.fixture(params=sorted(REGIMES))
def world(request):
    table, market, acc, ins, lots = benchmark_book(n_accounts=N, n_instruments=12, seed=3)
    ledger = Ledger([Asset("USD", 2)], table.instruments, capacity=16)
    maker = ledger.open_account()
    first = ledger.n_accounts
    for _ in range(N):
        ledger.open_account()
    for a, i, n in zip((acc + first).tolist(), ins.tolist(), lots.astype(np.int64).tolist()):
        if n > 0:
            ledger.trade(a, maker, i, 100, n)
        else:
            ledger.trade(maker, a, i, 100, -n)
    resting = RestingSize(len(table))
    regime = REGIMES[request.param](table)
    assert regime.row_separable
    book = ExposureBook(ledger, resting, regime)
    book.MIN_ROWS = 0  # exercise the base-and-changed-rows path on a small book
    book.BLOCK = 64  # and the rewriting of rows block by block
    return ledger, resting, regime, market, book, maker


def _fresh(ledger: Ledger, resting: RestingSize) -> np.ndarray:
    n = ledger.n_accounts
    resting.ensure(n)
    return worst_case(ledger.position[:n], resting.bids[:n], resting.asks[:n])


def _check(ledger, resting, regime, market, book) -> None:
    rows = slice(FIRST_TRADER, ledger.n_accounts)
    book.refresh()
    fresh = _fresh(ledger, resting)
    n = ledger.n_accounts
    assert np.array_equal(book.exposure[:n], fresh)
    # the kept per-instrument sums of |lots| are a fresh pass's, to the bit (whole lots), and the
    # traders' part of them is the traders' rows' sums
    assert np.array_equal(book.abs_lots, np.abs(fresh).sum(axis=0))
    assert np.array_equal(book.gross_lots(rows), np.abs(fresh[rows]).sum(axis=0))
    assert np.array_equal(book.held[:n], ledger.position[:n].astype(np.float64))
    assert np.array_equal(book.exposed[:n], (fresh != 0).any(axis=1))
    assert np.array_equal(book.has_orders[:n], ((resting.bids[:n] + resting.asks[:n]) != 0).any(axis=1))
    got = book.requirements(rows, market, full=True)
    want = regime.requirements(Positions(fresh[rows]), market)
    assert np.array_equal(got.im, want.im) and np.array_equal(got.mm, want.mm)
    if isinstance(regime, StandardRegime):  # the kept snapshot was margined on its distinct entries
        assert book._base.reused and "entries" in book._base._cache


def test_kept_matrices_and_requirements_equal_a_fresh_computation(world) -> None:
    ledger, resting, regime, market, book, maker = world
    rng = np.random.default_rng(11)
    _check(ledger, resting, regime, market, book)
    for round_ in range(6):
        # fills (some closing positions to zero, some opening new instruments), resting orders
        # placed and cancelled, and now and then new accounts
        for _ in range(int(rng.integers(1, 40))):
            a = int(rng.integers(FIRST_TRADER + 1, ledger.n_accounts))
            i = int(rng.integers(0, 12))
            held = int(ledger.position[a, i])
            lots = -held if held and rng.random() < 0.4 else int(rng.integers(1, 4)) * int(rng.choice([-1, 1]))
            if lots > 0:
                ledger.trade(a, maker, i, 100, lots)
            elif lots < 0:
                ledger.trade(maker, a, i, 100, -lots)
        for _ in range(int(rng.integers(0, 20))):
            a = int(rng.integers(FIRST_TRADER + 1, ledger.n_accounts))
            i, side = int(rng.integers(0, 12)), int(rng.choice([-1, 1]))
            resting.add(a, i, side, int(rng.integers(1, 5)))
        for a in np.flatnonzero(resting.bids[:ledger.n_accounts].any(axis=1))[:3].tolist():
            i = int(np.flatnonzero(resting.bids[a])[0])
            resting.add(a, i, 1, -int(resting.bids[a, i]))  # a cancel
        if round_ % 2:
            for _ in range(5):
                b = ledger.open_account()
                ledger.trade(b, maker, int(rng.integers(0, 12)), 100, 2)
        _check(ledger, resting, regime, market, book)


def test_many_changed_rows_rebuild_the_base(world) -> None:
    ledger, resting, regime, market, book, maker = world
    _check(ledger, resting, regime, market, book)
    base = book._base
    for a in range(FIRST_TRADER + 1, FIRST_TRADER + 1 + N // 2):  # half the rows move
        ledger.trade(a, maker, 0, 100, 1)
    _check(ledger, resting, regime, market, book)
    assert book._base is not base and not book._stale.any()


def test_expiry_marks_every_holder_moved(world) -> None:
    ledger, resting, regime, market, book, maker = world
    _check(ledger, resting, regime, market, book)
    ledger.settle_expiry(1, 100)
    assert not ledger.position[:, 1].any()
    _check(ledger, resting, regime, market, book)
    assert ledger.cash[:, QUOTE].sum() == 0  # expiry moves cash between holders only


OPS = st.lists(st.one_of(
    st.tuples(st.just("open")),
    st.tuples(st.just("trade"), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 3),
              st.integers(1, 5)),
    st.tuples(st.just("rest"), st.integers(0, 10**6), st.integers(0, 3), st.sampled_from([-1, 1]),
              st.integers(-5, 5)),
    st.tuples(st.just("expire"), st.integers(0, 3)),
    st.tuples(st.just("refresh"))), max_size=40)


@settings(max_examples=120, deadline=None)
@given(OPS)
def test_small_book_shortcut_equals_the_moved_rows_path(ops) -> None:
    """Generated fills, orders placed and cancelled, accounts opened and expiries, with refreshes in
    between: a small book rewrites every row through slices (its shortcut); the same book made to
    rewrite only the moved and new rows (``MIN_ROWS = 0``, the general path) keeps the same matrices
    at every refresh -- so the ledger's and the venue's moved-row notes leave nothing out."""
    from clearing.margin.standard import StandardRegime

    table, _market, _acc, _ins, _lots = benchmark_book(n_accounts=4, n_instruments=4, seed=3)
    worlds = []
    for min_rows in (ExposureBook.MIN_ROWS, 0):
        ledger = Ledger([Asset("USD", 2)], table.instruments, capacity=4)
        for _ in range(3):
            ledger.open_account()
        resting = RestingSize(len(table), capacity=4)
        book = ExposureBook(ledger, resting, StandardRegime(table))
        book.MIN_ROWS, book.BLOCK = min_rows, 2  # the general path in blocks of two rows
        worlds.append((ledger, resting, book))

    def compare() -> None:
        (la, _ra, a), (lb, _rb, b) = worlds
        a.refresh()
        b.refresh()
        assert a._base is None and la.n_accounts <= a.MIN_ROWS  # the shortcut's case
        n = la.n_accounts
        for name in ("exposure", "held", "has_orders", "exposed"):
            np.testing.assert_array_equal(getattr(a, name)[:n], getattr(b, name)[:n], err_msg=name)
        np.testing.assert_array_equal(a.abs_lots, b.abs_lots, err_msg="abs_lots")
        assert a.rows_valid == b.rows_valid == n

    for op in ops:
        for ledger, resting, _book in worlds:
            n = ledger.n_accounts
            if op[0] == "open":
                ledger.open_account()
            elif op[0] == "trade":
                buyer, seller = FIRST_TRADER + op[1] % (n - FIRST_TRADER), FIRST_TRADER + op[2] % (n - FIRST_TRADER)
                if buyer != seller:
                    ledger.trade(buyer, seller, op[3], 100, op[4])
            elif op[0] == "rest":
                account = FIRST_TRADER + op[1] % (n - FIRST_TRADER)
                resting.ensure(n)
                held = int((resting.bids if op[3] == 1 else resting.asks)[account, op[2]])
                resting.add(account, op[2], op[3], max(op[4], -held))  # a cancel takes at most what rests
            elif op[0] == "expire":
                ledger.settle_expiry(op[1], 100)
        if op[0] == "refresh":
            compare()
    compare()
    # the control: a fresh computation from the ledger agrees too (and is zero with nothing traded)
    ledger, resting, book = worlds[0]
    n = ledger.n_accounts
    np.testing.assert_array_equal(book.exposure[:n], worst_case(ledger.position[:n], resting.bids[:n],
                                                                resting.asks[:n]))


def test_standard_margin_with_open_interest_caps_is_margined_whole() -> None:
    """The control: with caps an entry's rate reads the whole market's open interest, so changed rows
    cannot be margined on their own (no kept snapshot)."""
    table = benchmark_book(n_accounts=10, n_instruments=12, seed=3)[0]
    capped = StandardRegime(table, StandardConfig(open_interest_caps=OpenInterestCaps(lower=1e3, upper=1e6)))
    assert not capped.row_separable
    assert StandardRegime(table).row_separable
