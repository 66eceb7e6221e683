"""Auto-deleveraging: ranking from the ledger, selection (ranked and pro rata), execution."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.adl import (
    adl_candidates,
    adl_rank,
    effective_leverage,
    execute_adl,
    select_pro_rata,
    select_ranked,
)
from sim.core.instruments import Asset, Instrument, InstrumentKind
from clearing.ledger import QUOTE, Ledger, row_equities


def _ledger(n_traders: int) -> tuple[Ledger, list[int]]:
    ins = Instrument(0, "X-PERP", InstrumentKind.PERPETUAL, "X", "USD", tick_size=0.01, lot_size=1.0,
                     multiplier=1.0, tick_value=1)
    ledger = Ledger([Asset("USD", decimals=2)], [ins], capacity=8)
    return ledger, [ledger.open_account() for _ in range(n_traders)]


def _equity(ledger: Ledger, mark: int) -> np.ndarray:
    return row_equities(ledger, slice(0, ledger.n_accounts), np.array([float(mark)]) * ledger.tick_value)


def test_effective_leverage_and_rank_vectorised():
    # long: mark value 1000, bankrupt value 800 -> equity 200, leverage 5
    # short: mark value -1000, bankrupt value -1250 -> equity 250, leverage 4
    lev = effective_leverage(np.array([1000.0, -1000.0, 1000.0]), np.array([800.0, -1250.0, 1200.0]))
    np.testing.assert_allclose(lev[:2], [5.0, 4.0])
    assert np.isnan(lev[2])                                   # equity <= 0: not eligible
    r = adl_rank(np.array([0.1, -0.1, 0.1]), lev)
    np.testing.assert_allclose(r[:2], [0.5, -0.025])
    assert np.isnan(r[2])


def test_candidates_from_ledger():
    ledger, acc = _ledger(4)
    a, b, c, d = acc
    for x, cash in zip(acc, [100_00, 1_000_00, 500_00, 10_000_00]):
        ledger.deposit(x, QUOTE, cash)
    ledger.trade(a, d, 0, 100_00, 10)        # a long 10 @ 100
    ledger.trade(b, d, 0, 120_00, 5)         # b long 5 @ 120
    ledger.trade(d, c, 0, 100_00, 5)         # c short 5 @ 100 (d net short 10)
    mark = 110_00
    cand = adl_candidates(ledger, 0, mark, _equity(ledger, mark))
    assert cand.accounts.tolist() == [a, b, c, d]
    assert cand.lots.tolist() == [10, 5, -5, -10]
    # a: pnl +100.00 on cost 1000.00 -> 10%; equity 100 + 100 = 200.00, value 1100.00 -> lev 5.5
    assert cand.pnl[0] == pytest.approx(100_00)
    assert cand.pnl_pct[0] == pytest.approx(0.10)
    assert cand.leverage[0] == pytest.approx(1_100_00 / 200_00)
    assert cand.ranks[0] == pytest.approx(0.10 * 5.5)
    # b loses 10% -> negative rank; c short loses 10% -> negative rank
    assert cand.ranks[1] < 0 and cand.ranks[2] < 0
    excl = adl_candidates(ledger, 0, mark, _equity(ledger, mark), exclude=a)
    assert a not in excl.accounts.tolist()
    with pytest.raises(ValueError, match="1-d array"):
        adl_candidates(ledger, 0, mark, np.zeros(2))


def test_sides_ranked_separately_and_ties_by_account():
    accounts = np.array([20, 21, 22, 23, 24])
    lots = np.array([5, -5, -5, 5, -10])
    ranks = np.array([9.0, 2.0, 2.0, 1.0, np.nan])
    # a bankrupt long is deleveraged against shorts only; equal ranks -> lower account first
    assert select_ranked(7, accounts, ranks, lots) == [(21, 5), (22, 2)]
    # a bankrupt short against longs only, highest rank first
    assert select_ranked(-7, accounts, ranks, lots) == [(20, 5), (23, 2)]
    # more to close than eligible size: everything eligible, no more
    assert select_ranked(-100, accounts, ranks, lots) == [(20, 5), (23, 5)]
    assert select_ranked(0, accounts, ranks, lots) == []


def test_losing_and_insolvent_accounts_are_not_deleveraged():
    accounts = np.array([1, 2, 3])
    lots = np.array([5, 5, 5])
    assert select_ranked(-10, accounts, np.array([-0.5, np.nan, 0.0]), lots) == []
    assert select_pro_rata(-10, accounts, lots, np.array([-1.0, 0.0, 3.0])) == [(3, 5)]


def test_select_pro_rata_exact_largest_remainder():
    accounts = np.array([30, 10, 20, 40])
    lots = np.array([10, 10, 10, -50])
    pnl = np.array([1.0, 1.0, 1.0, 1.0])
    # 10 lots over three equal longs: 3.33 each -> the extra lot to the lowest account id
    assert select_pro_rata(-10, accounts, lots, pnl) == [(10, 4), (20, 3), (30, 3)]
    assert select_pro_rata(-40, accounts, lots, pnl) == [(10, 10), (20, 10), (30, 10)]


def test_execute_adl_bankrupt_long_against_shorts_and_validation():
    ledger, acc = _ledger(4)
    bankrupt, s1, s2, mm = acc
    for x in acc:
        ledger.deposit(x, QUOTE, 1_000_00)
    ledger.trade(bankrupt, mm, 0, 100_00, 8)
    ledger.trade(mm, s1, 0, 100_00, 3)
    ledger.trade(mm, s2, 0, 100_00, 6)
    before = (ledger.cash.copy(), ledger.position.copy())
    bad = [
        [(s1, 4)],                      # more than s1 holds
        [(mm, 1)],                      # same side as the bankrupt (mm is long)
        [(s1, 3), (s2, 6)],             # more than the bankrupt holds
        [(s1, 1), (s1, 1)],             # twice
        [(s1, 0)],                      # not positive
        [(bankrupt, 1)],                # itself
    ]
    for sel in bad:
        with pytest.raises(ValueError):
            execute_adl(ledger, bankrupt, 0, 90_00, sel)
        assert (ledger.cash == before[0]).all() and (ledger.position == before[1]).all()
    assert execute_adl(ledger, bankrupt, 0, 90_00, [(s1, 3), (s2, 5)]) == 8
    assert ledger.position[[bankrupt, s1, s2], 0].tolist() == [0, 0, -1]
    # s1 shorted 3 at 100, bought back at 90: +30.00
    assert int(ledger.cash[s1, QUOTE]) == 1_000_00 + 30_00
    assert execute_adl(ledger, bankrupt, 0, 90_00, [(s2, 1)]) == 0    # nothing left to close
    ledger.check()


def test_rank_then_execute_on_ledger():
    ledger, acc = _ledger(5)
    bankrupt, l1, l2, l3, mm = acc
    for x in acc:
        ledger.deposit(x, QUOTE, 1_000_00)
    ledger.deposit(l3, QUOTE, 9_000_00)                 # l3 low leverage
    for x in (l1, l2, l3):
        ledger.trade(x, mm, 0, 100_00, 10)
    ledger.trade(mm, bankrupt, 0, 100_00, 12)
    mark = 120_00
    cand = adl_candidates(ledger, 0, mark, _equity(ledger, mark), exclude=bankrupt)
    sel = select_ranked(int(ledger.position[bankrupt, 0]), cand.accounts, cand.ranks, cand.lots)
    # l1 and l2 tie (same pnl, same leverage) -> l1 first, then l2; l3 (low leverage) last
    assert sel == [(l1, 10), (l2, 2)]
    assert execute_adl(ledger, bankrupt, 0, 125_00, sel) == 12
    ledger.check()


@settings(max_examples=80, deadline=None)
@given(sizes=st.lists(st.integers(-40, 40), min_size=1, max_size=10),
       pnl=st.lists(st.floats(-5, 5, allow_nan=False), min_size=10, max_size=10),
       bankrupt_lots=st.integers(-200, 200))
def test_pro_rata_selection_is_exact(sizes, pnl, bankrupt_lots):
    n = len(sizes)
    accounts = np.arange(100, 100 + n)
    lots, p = np.array(sizes), np.array(pnl[:n])
    sel = select_pro_rata(bankrupt_lots, accounts, lots, p)
    opposite = (lots < 0) if bankrupt_lots > 0 else (lots > 0)
    eligible = opposite & (p > 0)
    total = int(np.abs(lots[eligible]).sum())
    need = min(abs(bankrupt_lots), total)
    assert sum(k for _, k in sel) == need
    by = dict(sel)
    for a, size, ok in zip(accounts.tolist(), lots.tolist(), eligible.tolist()):
        got = by.get(a, 0)
        if not ok:
            assert got == 0
        else:
            assert got <= abs(size) and got <= need * abs(size) / total + 1


def _fresh_selection(ledger: Ledger, held: int, mark: int, equity: np.ndarray, bankrupt: int):
    c = adl_candidates(ledger, 0, mark, equity, exclude=bankrupt)
    return select_ranked(held, c.accounts, c.ranks, c.lots)


def test_ranking_queue_gives_the_fresh_sort_s_fills_after_positions_change():
    """Bankruptcy after bankruptcy at one mark, with ADL fills, other trades, charges and new
    accounts in between: the kept queue selects exactly what a fresh ranking and sort would,
    while sorting once per mark (not once per bankrupt account)."""
    from clearing.adl import AdlQueue

    rng = np.random.default_rng(5)
    ledger, accounts = _ledger(400)
    market = ledger.open_account()
    ledger.deposit(market, QUOTE, 10**12)
    for a in accounts:  # many ties: few distinct entry prices, sizes and deposits
        ledger.deposit(a, QUOTE, int(rng.choice([5_000, 10_000, 20_000])))
        lots = int(rng.choice([-3, -2, -1, 1, 2, 3]))
        price = int(rng.choice([90, 100, 110]))
        if lots > 0:
            ledger.trade(a, market, 0, price, lots)
        else:
            ledger.trade(market, a, 0, price, -lots)
    mark, checked = 100, 0
    queue = AdlQueue(ledger, lambda rows: row_equities(ledger, rows, np.array([mark]) * ledger.tick_value))
    for step in range(60):
        if step == 30:
            mark = 104  # a new mark: a new sort
        equity = row_equities(ledger, np.arange(ledger.n_accounts), np.array([mark]) * ledger.tick_value)
        holders = [a for a in accounts if ledger.position[a, 0] != 0]
        bankrupt = int(rng.choice(holders))
        held = int(ledger.position[bankrupt, 0])
        want = _fresh_selection(ledger, held, mark, equity, bankrupt)
        got = queue.select(held, 0, mark, exclude=bankrupt)
        assert got == want
        checked += bool(want)
        execute_adl(ledger, bankrupt, 0, mark, got)  # the positions of the ranked accounts change
        for a in rng.choice(accounts, 3).tolist():  # other trades and charges between bankruptcies
            ledger.trade(int(a), market, 0, int(rng.choice([95, 105])), 1)
        ledger.transfer(int(rng.choice(accounts)), market, QUOTE, 700, "charge")
        if step % 20 == 10:  # an account opened: the queue covers it too
            new = ledger.open_account()
            accounts.append(new)
            ledger.deposit(new, QUOTE, 50_000)
            ledger.trade(market, new, 0, 130, 5)
    assert checked > 20
    assert queue.sorts < 15  # once per mark, plus re-sorts after many changes
    assert queue.reranked > 0
