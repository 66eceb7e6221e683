"""The kept ADL queue against a fresh ranking: row-independent equities, the change log as the
only source of what changed between price updates, and random histories (hypothesis)."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from clearing.adl import AdlQueue, adl_candidates, select_ranked
from clearing.ledger import row_equities
from clearing.ledger import QUOTE, Ledger
from sim.core.instruments import Asset, Instrument, InstrumentKind


def _instruments(m: int) -> list[Instrument]:
    return [Instrument(i, f"X{i}-PERP", InstrumentKind.PERPETUAL, f"X{i}", "USD", tick_size=0.01, lot_size=1.0,
                       multiplier=1.0, tick_value=1 + i % 3) for i in range(m)]


def _assets(k: int) -> list[Asset]:
    return [Asset("USD", decimals=2)] + [Asset(f"C{j}", decimals=2 + j, haircut=0.05 * j, price_source=f"C{j}")
                                         for j in range(1, k)]


@settings(max_examples=60, deadline=None)
@given(m=st.sampled_from([1, 2, 3, 5, 8, 9, 13]), k=st.sampled_from([1, 2, 3]), n=st.integers(1, 300),
       seed=st.integers(0, 2**32 - 1))
def test_row_equities_do_not_depend_on_the_other_rows(m, k, n, seed):
    """A row's equity has the same bits valued alone, among a few rows or in the whole ledger --
    what lets the queue re-rank a few rows and still equal a fresh ranking. (The house's
    ``equities`` has it too since its canonical equity sum: a BLAS product had given a row bits
    that depended on where the row fell in the matrix, for two or more instruments.)"""
    rng = np.random.default_rng(seed)
    ledger = Ledger(_assets(k), _instruments(m), capacity=8)
    for _ in range(n):
        ledger.open_account()
    rows_all = np.arange(ledger.n_accounts)
    ledger.cash[:ledger.n_accounts] = rng.integers(-10**9, 10**12, size=(ledger.n_accounts, k))
    lots = rng.integers(-10**5, 10**5, size=(ledger.n_accounts, m))
    lots[rng.random(lots.shape) < 0.4] = 0
    ledger.position[:ledger.n_accounts] = lots
    mark_value = rng.random(m) * 1e5 * ledger.tick_value
    prices = np.concatenate([[1.0], rng.random(k - 1) * 1e4])
    full = row_equities(ledger, rows_all, mark_value, prices)
    assert row_equities(ledger, slice(0, ledger.n_accounts), mark_value, prices).tobytes() == full.tobytes()
    with mock.patch("clearing.ledger.MARK_VALUE_BLOCK", 7):  # rows split across many blocks: the same bits
        assert row_equities(ledger, rows_all, mark_value, prices).tobytes() == full.tobytes()
    for size in (1, 2, 3, 5, 17):
        rows = np.sort(rng.choice(ledger.n_accounts, size=min(size, ledger.n_accounts), replace=False))
        assert row_equities(ledger, rows, mark_value, prices).tobytes() == full[rows].tobytes()
    # and the value is the equity: collateral after haircuts plus positions at mark
    want = ledger.value_cash(ledger.cash[:ledger.n_accounts], prices) + lots.astype(np.float64) @ mark_value
    np.testing.assert_allclose(full, want, rtol=1e-12, atol=1e-3)


def test_row_equities_known_answer():
    ledger = Ledger(_assets(2), _instruments(2), capacity=8)
    a = ledger.open_account()
    ledger.deposit(a, QUOTE, 1_000)
    ledger.deposit(a, 1, 2_000)  # 2,000 minor units of C1 (3 decimals) = 2 units, worth 2 x 50 x 0.95 quote
    ledger.position[a] = [3, -2]
    eq = row_equities(ledger, np.array([a]), np.array([10.0, 4.0]), np.array([1.0, 50.0]))
    assert eq[0] == 1_000 + 2 * 50 * 0.95 * 100 + 3 * 10.0 - 2 * 4.0
    assert row_equities(ledger, np.array([a]), np.array([0.0, 0.0]), np.array([1.0, 0.0]))[0] == 1_000


class _World:
    """A multi-instrument ledger, marks and collateral prices, a queue, and the fresh answer."""

    def __init__(self, m: int, k: int, n: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.ledger = Ledger(_assets(k), _instruments(m), capacity=8)
        self.marks = np.full(m, 100, dtype=np.int64)
        self.prices = np.concatenate([[1.0], np.full(k - 1, 20.0)])
        self.seq = 0
        self.market = self.ledger.open_account()
        self.ledger.deposit(self.market, QUOTE, 10**13)
        self.accounts = [self.ledger.open_account() for _ in range(n)]
        for a in self.accounts:
            self.ledger.deposit(a, QUOTE, int(self.rng.choice([3_000, 10_000, 20_000])))
            if k > 1 and self.rng.random() < 0.5:
                self.ledger.deposit(a, 1, int(self.rng.integers(1, 5_000)))
            for i in range(m):
                self.trade(a, i)
        self.queue = AdlQueue(self.ledger, self.equity_of, lambda: (self.seq, self.prices.tobytes()))

    def mark_value(self) -> np.ndarray:
        return self.marks * self.ledger.tick_value

    def equity_of(self, rows: np.ndarray) -> np.ndarray:
        return row_equities(self.ledger, rows, self.mark_value(), self.prices)

    def trade(self, a: int, i: int) -> None:
        lots = int(self.rng.choice([-3, -2, -1, 1, 2, 3]))
        price = int(self.marks[i] + self.rng.choice([-10, 0, 10]))
        if lots > 0:
            self.ledger.trade(a, self.market, i, price, lots)
        else:
            self.ledger.trade(self.market, a, i, price, -lots)

    def fresh(self, held: int, instrument: int, bankrupt: int, override: dict[int, float] | None) -> list:
        eq = self.equity_of(np.arange(self.ledger.n_accounts))
        for a, v in (override or {}).items():
            eq[a] = v
        c = adl_candidates(self.ledger, instrument, int(self.marks[instrument]), eq, exclude=bankrupt)
        return select_ranked(held, c.accounts, c.ranks, c.lots)


class QueueMachine(RuleBasedStateMachine):
    """Random trades, fees, transfers, deposits, new accounts, mark and collateral moves and ADL
    executions between bankruptcies: the queue's answer is always the fresh ranking's."""

    @initialize(m=st.sampled_from([1, 2, 3]), k=st.sampled_from([1, 2]), n=st.integers(5, 60),
                seed=st.integers(0, 2**32 - 1), resort=st.sampled_from([0.25, 100.0]))
    def setup(self, m, k, n, seed, resort):
        self.w = _World(m, k, n, seed)
        self.w.queue.RESORT_FRACTION = resort  # 100: re-rank whatever changed, never re-sort for it
        self.selects = 0

    @rule(data=st.data())
    def trade(self, data):
        w = self.w
        w.trade(data.draw(st.sampled_from(w.accounts)), data.draw(st.integers(0, len(w.marks) - 1)))

    @rule(data=st.data(), fee=st.integers(-50, 500))
    def fee(self, data, fee):
        self.w.ledger.charge_fee(data.draw(st.sampled_from(self.w.accounts)), fee)

    @rule(data=st.data(), amount=st.integers(1, 3_000))
    def transfer(self, data, amount):
        w = self.w
        w.ledger.transfer(data.draw(st.sampled_from(w.accounts)), data.draw(st.sampled_from(w.accounts)), QUOTE,
                          amount, "charge")

    @rule(data=st.data(), amount=st.integers(1, 3_000))
    def deposit(self, data, amount):
        w = self.w
        w.ledger.deposit(data.draw(st.sampled_from(w.accounts)), len(w.prices) - 1, amount)

    @rule()
    def new_account(self):
        w = self.w
        a = w.ledger.open_account()
        w.accounts.append(a)
        w.ledger.deposit(a, QUOTE, 10_000)
        w.trade(a, 0)

    @rule(data=st.data(), move=st.sampled_from([-7, -1, 1, 7]))
    def mark_moves(self, data, move):
        w = self.w
        i = data.draw(st.integers(0, len(w.marks) - 1))
        w.marks[i] = max(20, int(w.marks[i]) + move)
        w.seq += 1

    @precondition(lambda self: len(self.w.prices) > 1)
    @rule(up=st.booleans())
    def collateral_price_moves(self, up):
        self.w.prices[1] *= 1.1 if up else 0.9

    @rule()
    def funding(self):
        self.w.ledger.pay_funding(0, 3)

    @rule(data=st.data(), with_override=st.booleans(), execute=st.booleans())
    def bankruptcy(self, data, with_override, execute):
        w = self.w
        holders = [a for a in w.accounts if w.ledger.position[a].any()]
        if not holders:
            return
        bankrupt = data.draw(st.sampled_from(holders))
        instrument = int(np.flatnonzero(w.ledger.position[bankrupt])[0])
        held = int(w.ledger.position[bankrupt, instrument])
        override = None
        if with_override:  # some accounts ranked with an equity the caller gives (the engine's "before")
            some = data.draw(st.lists(st.sampled_from(w.accounts), max_size=4, unique=True))
            override = {a: float(w.equity_of(np.array([a]))[0]) - data.draw(st.sampled_from([0.0, 500.0]))
                        for a in some}
        want = w.fresh(held, instrument, bankrupt, override)
        got = w.queue.select(held, instrument, int(w.marks[instrument]), exclude=bankrupt, equity_override=override)
        assert got == want
        self.selects += 1
        if execute and got:
            for a, lots in got:
                if held < 0:
                    w.ledger.trade(bankrupt, a, instrument, int(w.marks[instrument]), lots)
                else:
                    w.ledger.trade(a, bankrupt, instrument, int(w.marks[instrument]), lots)

    @invariant()
    def conserved(self):
        if hasattr(self, "w"):
            self.w.ledger.check()


QueueMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestQueueMatchesFreshRanking = QueueMachine.TestCase


def test_between_price_updates_only_the_logged_holders_are_ranked_again():
    """The work per bankruptcy follows what changed: after one sort, a bankruptcy with one trade
    since re-ranks the two parties of that trade, not the other holders."""
    w = _World(2, 1, 400, 7)
    bankrupt = next(a for a in w.accounts if w.ledger.position[a, 0] < 0)
    held = int(w.ledger.position[bankrupt, 0])
    w.queue.select(held, 0, 100, exclude=bankrupt)
    assert (w.queue.sorts, w.queue.reranked) == (1, 0)
    w.trade(w.accounts[3], 0)
    assert w.queue.select(held, 0, 100, exclude=bankrupt) == w.fresh(held, 0, bankrupt, None)
    assert w.queue.sorts == 1 and w.queue.reranked == 2  # the trade's two parties: account 3 and the market
    w.seq += 1  # a publication: everyone's equity may have moved
    assert w.queue.select(held, 0, 100, exclude=bankrupt) == w.fresh(held, 0, bankrupt, None)
    assert w.queue.sorts == 2


def test_a_log_emptied_past_the_cursor_sorts_afresh():
    w = _World(1, 1, 50, 3)
    bankrupt = next(a for a in w.accounts if w.ledger.position[a, 0] < 0)
    held = int(w.ledger.position[bankrupt, 0])
    w.queue.select(held, 0, 100, exclude=bankrupt)
    w.ledger.pay_funding(0, 5)  # every holder's cash moved: the log is emptied
    assert w.ledger.changes_since(w.queue._queues[0].cursor)[0] is None
    assert w.queue.select(held, 0, 100, exclude=bankrupt) == w.fresh(held, 0, bankrupt, None)
    assert w.queue.sorts == 2


@pytest.mark.parametrize("at_sort", [True, False])
def test_an_equity_override_ranks_the_account_and_is_forgotten_at_the_next_select(at_sort):
    """``equity_override`` on the sort path (the first select) and on the re-rank path (a select
    between sorts): the overridden account is ranked with the caller's equity -- here a huge one,
    which sinks the top-ranked long below the others -- and the next select without the override
    ranks it with its own equity again (``_Kept.pending``). The stateful test's small overrides
    rarely reorder a queue; this one must."""
    w = _World(1, 1, 50, 3)
    held = -1  # a bankrupt short of one lot: the top-ranked long takes it
    bankrupt = next(a for a in w.accounts if w.ledger.position[a, 0] < 0)
    plain = w.fresh(held, 0, bankrupt, None)
    override = {plain[0][0]: 1e15}
    assert w.fresh(held, 0, bankrupt, override) != plain  # the control: the override changes the answer
    if not at_sort:
        assert w.queue.select(held, 0, 100, exclude=bankrupt) == plain
    assert w.queue.select(held, 0, 100, exclude=bankrupt, equity_override=override) == \
        w.fresh(held, 0, bankrupt, override)
    assert w.queue.sorts == 1
    assert w.queue.select(held, 0, 100, exclude=bankrupt) == plain
