"""The clearing house on its own, with small fakes for its world, venue, oracle, marks, regime and
liquidation engine (tests/clearing/fakes.py): valuation, enforcement, the pre-trade bounds at their
boundary, settlement.

Book: USD with 2 decimals (100 minor units a dollar); one perpetual and one future, a tick worth
1 minor unit per lot, marks at 10,000 ticks ($100). The fake regime asks 1/8 of notional as IM and
1/16 as MM (binary fractions: every figure below is exact).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.causality import Cause, CauseKind
from clearing.health import Health
from clearing.house import ClearingHouse
from clearing.ledger import QUOTE
from tests.clearing.fakes import MARK, FakeEngine, make_house


@pytest.fixture()
def house() -> ClearingHouse:
    h = make_house()
    h.attach(FakeEngine())
    return h


def _trader(house: ClearingHouse, cash: int) -> int:
    account = house.ledger.open_account()
    house.ledger.deposit(account, QUOTE, cash)
    house.grow()
    return account


def _revalue(house: ClearingHouse) -> None:
    house.revalue_all(Cause(CauseKind.ORACLE, 0, 0.0))


def test_valuation_equity_im_mm(house: ClearingHouse) -> None:
    market = _trader(house, 10**9)
    trader = _trader(house, 20_000)
    house.ledger.trade(trader, market, 0, MARK, 10)  # $1,000 long, paid from $200
    _revalue(house)
    assert house.equity[trader] == 20_000  # -80,000 cash + 10 x 10,000 x 1
    assert house.im[trader] == 12_500 and house.mm[trader] == 6_250
    assert house.health[trader] == Health.HEALTHY
    equity, im, mm = house.valuation(np.array([trader]))
    assert (equity[0], im[0], mm[0]) == (20_000, 12_500, 6_250)
    # a resting sell larger than the long makes the worst case the short side: 15 lots
    house.venue.resting.add(trader, 0, -1, 25)
    assert house.valuation(np.array([trader]))[1][0] == 15 * MARK / 8
    _revalue(house)
    assert house.im[trader] == 15 * MARK / 8


def test_enforcement_cancels_below_the_cancel_level_and_liquidates_below_mm(house: ClearingHouse) -> None:
    market = _trader(house, 10**9)
    a, b = _trader(house, 20_000), _trader(house, 20_000)
    house.ledger.trade(a, market, 0, MARK, 10)
    house.ledger.trade(b, market, 0, MARK, 10)
    house.venue.resting.add(a, 1, 1, 1)  # a has an order (1 lot of the future: IM +1,250)
    _revalue(house)
    assert house.health[a] == house.health[b] == Health.HEALTHY
    # marks fall 10%: equity 10,000 each; b: IM 11,250, MM 5,625, cancel 8,437.5 -> below IM only;
    # a (11 lots worst case): IM 12,500, MM 6,250, cancel 9,375 -> below IM
    house.marks.ticks[0] = 9_000
    _revalue(house)
    assert house.health[b] == Health.BELOW_IM and not house.venue.cancelled
    # marks fall to 8,700: equity 7,000; a: MM (10 x 8,700 + 10,000) / 16 = 6,062.5, cancel
    # 9,093.75 -> its order is cancelled, no liquidation (b is below its cancel level too, with no
    # orders to cancel)
    house.marks.ticks[0] = 8_700
    _revalue(house)
    assert house.health[a] == Health.BELOW_CANCEL and house.venue.cancelled == [a]
    assert not house.liquidations.started
    # marks fall to 8,400: b's equity 4,000 < MM 5,250 -> liquidation starts at that equity
    house.marks.ticks[0] = 8_400
    _revalue(house)
    assert (b, 4_000.0, 5_250.0) in house.liquidations.started
    assert house.health[b] == Health.BELOW_MM


def test_pre_trade_bounds_accept_and_refuse_at_the_boundary(house: ClearingHouse) -> None:
    trader = _trader(house, 12_500)  # exactly 10 lots' IM at the mark
    _revalue(house)
    assert house.would_accept(trader, 0, 1, MARK, 10)
    assert not house.would_accept(trader, 0, 1, MARK, 11)
    # a buy 100 ticks above the mark loses 100 x lots at once: 9 lots need 11,250 + 900 <= 12,500
    assert house.would_accept(trader, 0, 1, MARK + 100, 9)
    assert not house.would_accept(trader, 0, 1, MARK + 300, 9)  # 11,250 + 2,700 > 12,500
    # the venue's hook accepts the boundary order and the kept bounds drop to what is left: 0
    assert house.venue.risk_check(trader, 0, 1, MARK, 10)
    assert house.bounds.headroom[trader] == 0 and house.bounds.slack[trader] == 0
    house.venue.resting.add(trader, 0, 1, 10)  # it rests: no room for another lot
    assert not house.pre_trade_check(trader, 0, 1, MARK, 1)
    assert house.pre_trade_check(trader, 0, -1, MARK, 10)  # a sell of the same size adds no IM


def test_settlement_conserves_the_ledger_exactly(house: ClearingHouse) -> None:
    ledger = house.ledger
    market = _trader(house, 10**9)
    long_, short = _trader(house, 500_000), _trader(house, 500_000)
    ledger.trade(long_, market, 0, MARK, 7)
    ledger.trade(market, short, 0, MARK, 3)
    ledger.trade(long_, short, 1, MARK, 5)
    _revalue(house)

    def total() -> int:
        return int(ledger.cash[: ledger.n_accounts, QUOTE].sum())

    before = total()
    house.marks.basis_ticks[0] = 100.0  # mark 1% over the index: longs pay shorts
    house.settlement.pay_funding(0)
    assert total() == before
    assert ledger.cash[long_, QUOTE] < 500_000 - 7 * MARK  # the long paid
    house.oracle.index[0] = 103.21
    house.settlement.settle_expiry(1)
    assert total() == before and not ledger.position[:, 1].any()
    assert house.venue.halted == [1]
    free = house.free_collateral(long_)
    withdrawn_before = int(ledger.withdrawals[QUOTE])
    paid = house.withdraw(long_, 10**9)
    assert 0 < paid == int(free)
    assert total() == before - paid and int(ledger.withdrawals[QUOTE]) == withdrawn_before + paid
    assert house.free_collateral(long_) < 1.0  # what is left is IM


@pytest.mark.parametrize("all_healthy", [True, False])
def test_attribution_valued_on_a_range_matches_the_same_rows_as_an_array(all_healthy: bool) -> None:
    """``BreachAttribution.valued`` stores a whole healthy range without selecting (the calm
    market's every publication); it must leave exactly what the per-row selections leave, charged
    accounts included -- those outside the range stay."""
    from tests.clearing.fakes import make_house

    states = []
    for as_range in (True, False):
        house = make_house(capacity=16)
        for _ in range(12):
            _trader(house, 1_000)
        attribution = house.attribution
        rng = np.random.default_rng(7)
        for name in ("index", "collateral", "equity0", "mm0"):
            getattr(attribution, name)[:] = rng.normal(size=getattr(attribution, name).shape)
        attribution.seq0[:] = rng.integers(0, 5, size=attribution.seq0.shape)
        attribution.updates = 9
        for account in (1, 4, 7, 13):  # 1 is below the range (a system row), 13 past its end
            attribution.charge(account, 3, -5.0)
        rows = slice(3, 13)
        equity = rng.normal(100.0, 1.0, 10)
        mm = np.full(10, 50.0)
        if not all_healthy:
            mm[[2, 5]] = 500.0  # two accounts below maintenance keep their windows
        attribution.valued(rows if as_range else np.arange(3, 13), equity, mm)
        states.append(({name: getattr(attribution, name).copy()
                        for name in ("index", "collateral", "equity0", "mm0", "seq0", "seen")},
                       {a: dict(v) for a, v in attribution._charged.items()}))
    (columns, charged), (columns_ref, charged_ref) = states
    for name, values in columns.items():
        np.testing.assert_array_equal(values, columns_ref[name], err_msg=name)
    assert charged == charged_ref
    assert set(charged) == {1, 13}  # 4 and 7 were valued healthy


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 14), st.integers(0, 14), st.floats(0.0, 1.0),
       st.sets(st.integers(0, 15), max_size=6))
def test_attribution_all_healthy_shortcut_equals_the_general_path(seed, start, length, healthy_share, charged):
    """Generated states: whatever the columns, the range and the charged accounts, ``valued`` on a
    range leaves what it leaves on the same rows as an array (the general path, row by row
    selections). With every row healthy the range takes the shortcut -- forced here in a third of
    the cases -- and it must still leave the same columns and drop the same charged accounts."""
    from tests.clearing.fakes import make_house

    rng = np.random.default_rng(seed)
    stop = min(start + length, 16)
    rows = slice(start, stop)
    size = stop - start
    columns = {name: rng.normal(size=16) for name in ("index", "collateral", "equity0", "mm0")}
    seq0, seen = rng.integers(0, 5, size=16), rng.random(16) < 0.5
    equity = rng.normal(100.0, 30.0, size)
    mm = np.where(rng.random(size) < healthy_share, equity - rng.random(size) * 10, equity + 1 + rng.random(size))
    if seed % 3 == 0:
        mm = np.minimum(mm, equity)  # every row healthy (equal counts as healthy)
    all_ok = bool((equity >= mm).all())
    states = []
    for as_range in (True, False):
        house = make_house(capacity=16)
        attribution = house.attribution
        for name, values in columns.items():
            getattr(attribution, name)[:] = values
        attribution.seq0[:], attribution.seen[:] = seq0, seen
        attribution.updates = 9
        for account in sorted(charged):
            attribution.charge(account, 3, -5.0)
            attribution.charge(account, 4, -1.0)
        calls = []
        real_where = np.where
        np.where = lambda *a: calls.append(1) or real_where(*a)  # the general path selects row by row
        try:
            attribution.valued(rows if as_range else np.arange(start, stop), equity, mm)
        finally:
            np.where = real_where
        assert bool(calls) != (as_range and all_ok)  # the shortcut is taken exactly there
        states.append(({name: getattr(attribution, name).copy()
                        for name in ("index", "collateral", "equity0", "mm0", "seq0", "seen")},
                       {a: dict(v) for a, v in attribution._charged.items()}))
    (got, got_charged), (want, want_charged) = states
    for name in got:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert got_charged == want_charged
    ok_rows = set(np.arange(start, stop)[equity >= mm].tolist())
    assert set(want_charged) == set(charged) - ok_rows  # the control: healthy rows drop their charges


def test_a_publication_adds_index_pnl_on_positions_traded_since_the_last_valuation(house: ClearingHouse) -> None:
    """The index P&L of a publication is on what each account holds at that moment, read from the
    house's kept float positions (``ExposureBook.held``) -- brought up to date first: a trade after
    the last valuation counts. (Read stale, the trader's P&L here would be 0.)"""
    market = _trader(house, 10**9)
    trader = _trader(house, 20_000)
    _revalue(house)  # the kept copy is current, and flat
    house.ledger.trade(trader, market, 0, MARK, 10)  # 10 lots long at the mark, after that valuation
    house.marks.index_ticks[0] -= 1_000  # the index falls 1,000 ticks: -10,000 minor units on 10 lots
    house._continuous = False  # the move only: no re-valuation resets the windows
    house.on_publication(np.array([0]))
    assert house.attribution.index[trader] == -10 * 1_000 * float(house.ledger.tick_value[0])
    assert house.attribution.index[market] == 10 * 1_000 * float(house.ledger.tick_value[0])
