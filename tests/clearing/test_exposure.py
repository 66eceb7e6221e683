"""The clearing house's kept position matrices (clearing.exposure): after fills, order changes and
new accounts, every matrix and every requirement equals a fresh computation from the ledger, to
the bit."""

from __future__ import annotations

import numpy as np
import pytest

from clearing.exposure import ExposureBook, worst_case
from sim.core.instruments import Asset
from clearing.ledger import FIRST_TRADER, QUOTE, Ledger
from clearing.margin.base import Positions
from clearing.margin.examples import benchmark_book
from clearing.margin.portfolio import PortfolioRegime
from clearing.margin.span import SpanRegime
from clearing.margin.tims import TimsRegime
from clearing.margin.config import PortfolioConfig
from sim.market.resting import RestingSize

N = 600


REGIMES = {"portfolio": PortfolioRegime, "span": SpanRegime, "tims": TimsRegime,
           "portfolio_joint": lambda t: PortfolioRegime(t, PortfolioConfig(cross_asset="joint"))}


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
    assert np.array_equal(book.abs_exposure[:n], np.abs(fresh))
    assert np.array_equal(book.held[:n], ledger.position[:n].astype(np.float64))
    assert np.array_equal(book.exposed[:n], (fresh != 0).any(axis=1))
    assert np.array_equal(book.has_orders[:n], ((resting.bids[:n] + resting.asks[:n]) != 0).any(axis=1))
    got = book.requirements(rows, market, full=True)
    want = regime.requirements(Positions(fresh[rows]), market)
    assert np.array_equal(got.im, want.im) and np.array_equal(got.mm, want.mm)


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
