"""Socialised loss and depositor haircuts: exact integer allocation on a real Ledger."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.core.instruments import Asset, Instrument, InstrumentKind
from clearing.ledger import FIRST_TRADER, QUOTE, Ledger
from clearing.socialised import allocate_pro_rata, haircut_depositors, socialise_over_open_interest


def _ledger(n_traders: int = 0) -> tuple[Ledger, list[int]]:
    ins = Instrument(0, "X-PERP", InstrumentKind.PERPETUAL, "X", "USD", tick_size=0.01, lot_size=1.0,
                     multiplier=1.0, tick_value=1)
    ledger = Ledger([Asset("USD", decimals=2)], [ins], capacity=8)
    return ledger, [ledger.open_account() for _ in range(n_traders)]


# ----------------------------------------------------------------------------- allocate_pro_rata


def test_allocate_exact_sum_and_largest_remainder():
    assert allocate_pro_rata(10, [1, 1, 1]).tolist() == [4, 3, 3]           # tie -> lowest index
    assert allocate_pro_rata(10, [1, 1, 1], keys=[9, 3, 5]).tolist() == [3, 4, 3]  # tie -> lowest key
    assert allocate_pro_rata(7, np.array([3.0, 0.0, 5.0])).tolist() == [3, 0, 4]
    assert allocate_pro_rata(0, [1, 2]).tolist() == [0, 0]
    assert allocate_pro_rata(0, []).tolist() == []


def test_allocate_huge_values_exact():
    w = [10**15, 3 * 10**15, 1]
    out = allocate_pro_rata(10**12 + 7, w)
    assert int(out.sum()) == 10**12 + 7
    share = [(10**12 + 7) * x / sum(w) for x in w]
    assert all(0 <= o - int(s) <= 1 for o, s in zip(out.tolist(), share))


def test_allocate_rejects_bad_input():
    with pytest.raises(ValueError, match="negative total"):
        allocate_pro_rata(-1, [1])
    with pytest.raises(ValueError, match="non-negative"):
        allocate_pro_rata(3, [1, -1])
    with pytest.raises(ValueError, match="sum to 0"):
        allocate_pro_rata(3, [0, 0])
    with pytest.raises(ValueError, match="whole numbers"):
        allocate_pro_rata(3, [0.5, 1.0])
    with pytest.raises(ValueError, match="sum to 0"):
        allocate_pro_rata(5, [])


# ----------------------------------------------------------------------------- open interest


def _book(ledger, accounts, positions, price=10_000):
    """Give accounts the signed positions (summing to zero) by trading against the last one."""
    mm = accounts[-1]
    for a, p in zip(accounts[:-1], positions):
        if p > 0:
            ledger.trade(a, mm, 0, price, p)
        elif p < 0:
            ledger.trade(mm, a, 0, price, -p)


def test_socialise_all_holders_pro_rata_exact():
    ledger, acc = _ledger(6)
    for a in acc:
        ledger.deposit(a, QUOTE, 10_000_000)
    bankrupt = acc[0]
    _book(ledger, acc[1:], [10, 20, 30, 0])          # acc[5] is short 60
    charged = socialise_over_open_interest(ledger, 0, 1_000, bankrupt)
    # 120 lots in all: 10/120, 20/120, 30/120, 60/120 of 1000 = 83.3, 166.7, 250, 500
    assert charged == {acc[1]: 83, acc[2]: 167, acc[3]: 250, acc[5]: 500}
    assert sum(charged.values()) == 1_000
    assert int(ledger.cash[bankrupt, QUOTE]) == 10_001_000
    assert ledger.flows["socialised loss"] == 1_000
    ledger.check()


def test_socialise_sides_and_profitable():
    ledger, acc = _ledger(5)
    for a in acc:
        ledger.deposit(a, QUOTE, 10_000_000)
    bankrupt = acc[0]
    ledger.trade(acc[1], acc[3], 0, 10_000, 10)   # acc1 long 10 @ 100.00, acc3 short
    ledger.trade(acc[2], acc[4], 0, 12_000, 30)   # acc2 long 30 @ 120.00, acc4 short
    assert socialise_over_open_interest(ledger, 0, 400, bankrupt, side="long") == {acc[1]: 100, acc[2]: 300}
    assert socialise_over_open_interest(ledger, 0, 400, bankrupt, side="short") == {acc[3]: 100, acc[4]: 300}
    # at 110.00: acc1 long gains, acc2 long loses, acc3 short loses, acc4 short gains
    assert socialise_over_open_interest(ledger, 0, 400, bankrupt, side="profitable",
                                        mark_ticks=11_000) == {acc[1]: 100, acc[4]: 300}
    with pytest.raises(ValueError, match="mark_ticks"):
        socialise_over_open_interest(ledger, 0, 400, bankrupt, side="profitable")
    with pytest.raises(ValueError, match="side"):
        socialise_over_open_interest(ledger, 0, 400, bankrupt, side="winners")
    ledger.check()


def test_socialise_excludes_beneficiary_and_nobody_to_charge():
    ledger, acc = _ledger(3)
    assert socialise_over_open_interest(ledger, 0, 500, acc[0]) == {}      # no open interest
    ledger.trade(acc[0], acc[1], 0, 10_000, 5)
    charged = socialise_over_open_interest(ledger, 0, 500, acc[0])
    assert charged == {acc[1]: 500}                                         # the bankrupt never pays itself
    assert socialise_over_open_interest(ledger, 0, 0, acc[0]) == {}
    assert socialise_over_open_interest(ledger, 0, 500, acc[0], side="long") == {}
    ledger.check()


# ----------------------------------------------------------------------------- depositors


def test_haircut_depositors_pro_rata_capped_at_equity():
    ledger, acc = _ledger(4)
    bankrupt = acc[0]
    equity = np.zeros(ledger.n_accounts)
    equity[acc] = [-50.0, 300.7, 100.0, -1.0]
    charged = haircut_depositors(ledger, 200, bankrupt, equity)
    assert charged == {acc[1]: 150, acc[2]: 50}
    ledger.check()
    # a loss beyond all positive equity takes the equity and no more
    ledger2, acc2 = _ledger(3)
    eq2 = np.zeros(ledger2.n_accounts, dtype=np.int64)
    eq2[acc2] = [0, 70, 30]
    assert haircut_depositors(ledger2, 1_000, acc2[0], eq2) == {acc2[1]: 70, acc2[2]: 30}
    # nobody with equity: nothing moves
    assert haircut_depositors(ledger2, 1_000, acc2[0], np.zeros(ledger2.n_accounts)) == {}
    with pytest.raises(ValueError, match="1-d array"):
        haircut_depositors(ledger2, 10, acc2[0], np.zeros(2))
    ledger2.check()


def test_haircut_ignores_system_rows_and_beneficiary():
    ledger, acc = _ledger(2)
    equity = np.full(ledger.n_accounts, 1_000.0)   # system rows "have equity" too: ignored
    charged = haircut_depositors(ledger, 10, acc[0], equity)
    assert charged == {acc[1]: 10}
    assert all(a >= FIRST_TRADER for a in charged)
    ledger.check()


# ----------------------------------------------------------------------------- property


@settings(max_examples=60, deadline=None)
@given(positions=st.lists(st.integers(-50, 50), min_size=1, max_size=12),
       loss=st.integers(0, 10**9), side=st.sampled_from(["all", "long", "short"]))
def test_random_open_interest_allocation_is_exact(positions, loss, side):
    ledger, acc = _ledger(len(positions) + 2)
    bankrupt, mm, holders = acc[0], acc[1], acc[2:]
    for a, p in zip(holders, positions):
        if p > 0:
            ledger.trade(a, mm, 0, 5_000, p)
        elif p < 0:
            ledger.trade(mm, a, 0, 5_000, -p)
    before = ledger.cash[:, QUOTE].copy()
    charged = socialise_over_open_interest(ledger, 0, loss, bankrupt, side=side)
    lots = ledger.position[: ledger.n_accounts, 0].copy()
    eligible = {a for a in range(FIRST_TRADER, ledger.n_accounts) if a != bankrupt and lots[a] != 0
                and (side == "all" or (side == "long") == (lots[a] > 0))}
    if loss == 0 or not eligible:
        assert charged == {}
    else:
        assert sum(charged.values()) == loss
        total = sum(abs(int(lots[a])) for a in eligible)
        for a in eligible:
            share = loss * abs(int(lots[a])) / total
            got = charged.get(a, 0)
            assert loss * abs(int(lots[a])) // total <= got <= share + 1
        assert set(charged) <= eligible
    assert int(ledger.cash[bankrupt, QUOTE] - before[bankrupt]) == sum(charged.values())
    ledger.check()


@settings(max_examples=60, deadline=None)
@given(equity=st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=12), loss=st.integers(0, 10**7))
def test_random_haircut_allocation_is_exact(equity, loss):
    ledger, acc = _ledger(len(equity) + 1)
    bankrupt = acc[0]
    eq = np.zeros(ledger.n_accounts, dtype=np.int64)
    eq[acc[1:]] = equity
    charged = haircut_depositors(ledger, loss, bankrupt, eq)
    pos = sum(e for e in equity if e > 0)
    assert sum(charged.values()) == (min(loss, pos) if loss > 0 else 0)
    for a, e in zip(acc[1:], equity):
        got = charged.get(a, 0)
        assert 0 <= got <= max(e, 0)
        if pos:
            assert got <= min(loss, pos) * max(e, 0) / pos + 1
    ledger.check()
