"""The ledger proves conservation exactly: hypothesis drives random flows against a plain reference."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sim.core.instruments import Asset, Instrument, InstrumentKind, tick_value_minor
from clearing.ledger import FIRST_TRADER, Ledger, LedgerError, SystemAccount

USD = Asset("USD", 6)
ETH = Asset("ETH", 8, haircut=0.2, price_source="ETH")


def perp(i: int, symbol: str) -> Instrument:
    return Instrument(i, symbol, InstrumentKind.PERPETUAL, "BTC", "USD", 0.5, 0.01, 1.0,
                      tick_value_minor(0.5, 0.01, 1.0, 6))


INSTRUMENTS = [perp(0, "BTC-PERP"), perp(1, "BTC-DEC")]


class LedgerMachine(RuleBasedStateMachine):
    """Random deposits, trades, fees, funding, transfers and settlements; a dict-of-ints reference."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger([USD, ETH], INSTRUMENTS, capacity=6)  # small: forces growth
        self.accounts = [self.ledger.open_account() for _ in range(3)]
        self.cash = {a: [0, 0] for a in range(FIRST_TRADER)}
        self.cash.update({a: [0, 0] for a in self.accounts})
        self.pos = {(a, i): 0 for a in self.cash for i in range(2)}
        self.deposited = [0, 0]

    @rule()
    def open_account(self):
        a = self.ledger.open_account()
        self.accounts.append(a)
        self.cash[a] = [0, 0]
        for i in range(2):
            self.pos[(a, i)] = 0

    @rule(data=st.data(), asset=st.integers(0, 1), amount=st.integers(0, 10**12))
    def deposit(self, data, asset, amount):
        a = data.draw(st.sampled_from(self.accounts))
        self.ledger.deposit(a, asset, amount)
        self.cash[a][asset] += amount
        self.deposited[asset] += amount

    @rule(data=st.data(), instrument=st.integers(0, 1), price=st.integers(1, 10**7), lots=st.integers(1, 10**4))
    def trade(self, data, instrument, price, lots):
        buyer = data.draw(st.sampled_from(self.accounts))
        seller = data.draw(st.sampled_from(self.accounts))
        self.ledger.trade(buyer, seller, instrument, price, lots)
        notional = price * lots * INSTRUMENTS[instrument].tick_value
        self.cash[buyer][0] -= notional
        self.cash[seller][0] += notional
        self.pos[(buyer, instrument)] += lots
        self.pos[(seller, instrument)] -= lots

    @rule(data=st.data(), fee=st.integers(-10**6, 10**8))
    def fee(self, data, fee):
        a = data.draw(st.sampled_from(self.accounts))
        self.ledger.charge_fee(a, fee)
        self.cash[a][0] -= fee
        self.cash[SystemAccount.FEE_POOL][0] += fee

    @rule(instrument=st.integers(0, 1), per_lot=st.integers(-10**5, 10**5))
    def funding(self, instrument, per_lot):
        self.ledger.pay_funding(instrument, per_lot)
        for a in self.accounts:
            self.cash[a][0] -= self.pos[(a, instrument)] * per_lot

    @rule(instrument=st.integers(0, 1), price=st.integers(1, 10**7))
    def settle(self, instrument, price):
        self.ledger.settle_expiry(instrument, price)
        for a in self.accounts:
            self.cash[a][0] += self.pos[(a, instrument)] * price * INSTRUMENTS[instrument].tick_value
            self.pos[(a, instrument)] = 0

    @rule(data=st.data(), amount=st.integers(0, 10**9), asset=st.integers(0, 1))
    def insurance_payout(self, data, amount, asset):
        a = data.draw(st.sampled_from(self.accounts))
        self.ledger.transfer(SystemAccount.INSURANCE_FUND, a, asset, amount, "insurance")
        self.cash[SystemAccount.INSURANCE_FUND][asset] -= amount
        self.cash[a][asset] += amount

    @precondition(lambda self: any(self.cash[a][0] < 0 for a in self.accounts))
    @rule(data=st.data())
    def write_off_bad_debt(self, data):
        a = data.draw(st.sampled_from([a for a in self.accounts if self.cash[a][0] < 0]))
        deficit = -self.cash[a][0]
        self.ledger.transfer(SystemAccount.BAD_DEBT, a, 0, deficit, "bad_debt")
        self.cash[a][0] = 0
        self.cash[SystemAccount.BAD_DEBT][0] -= deficit

    @invariant()
    def matches_reference_and_conserves(self):
        self.ledger.check()
        for a, balances in self.cash.items():
            assert self.ledger.cash[a].tolist() == balances
        for (a, i), lots in self.pos.items():
            assert int(self.ledger.position[a, i]) == lots
        assert self.ledger.bad_debt() == -self.cash[SystemAccount.BAD_DEBT][0]


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)


def make_ledger() -> tuple[Ledger, int, int]:
    ledger = Ledger([USD], INSTRUMENTS)
    a, b = ledger.open_account(), ledger.open_account()
    ledger.deposit(a, 0, 10**10)
    ledger.deposit(b, 0, 10**10)
    return ledger, a, b


def test_realised_pnl_and_average_entry_follow_closes_and_flips():
    ledger, a, b = make_ledger()
    tv = INSTRUMENTS[0].tick_value
    ledger.trade(a, b, 0, 1000, 10)  # a long 10 @ 1000
    ledger.trade(a, b, 0, 1100, 10)  # a long 20 @ 1050
    assert ledger.average_entry_ticks(a, 0) == 1050
    ledger.trade(b, a, 0, 1200, 5)  # a sells 5 @ 1200: +150 ticks x 5 lots
    assert int(ledger.realised_pnl[a]) == 150 * 5 * tv
    assert ledger.average_entry_ticks(a, 0) == 1050
    ledger.trade(b, a, 0, 900, 25)  # closes 15 (-150 each), opens short 10 @ 900
    assert int(ledger.realised_pnl[a]) == (150 * 5 - 150 * 15) * tv
    assert int(ledger.position[a, 0]) == -10
    assert ledger.average_entry_ticks(a, 0) == 900
    assert int(ledger.realised_pnl[a] + ledger.realised_pnl[b]) == 0
    ledger.check()


def test_funding_is_zero_sum_and_settlement_flattens():
    ledger, a, b = make_ledger()
    ledger.trade(a, b, 0, 1000, 7)
    paid = ledger.pay_funding(0, 13)
    assert paid == 7 * 13
    assert int(ledger.funding_paid[a]) == 91 and int(ledger.funding_paid[b]) == -91
    ledger.settle_expiry(0, 1010)
    assert not ledger.position.any()
    ledger.check()


def test_check_reports_which_asset_and_by_how_much():
    ledger, a, _b = make_ledger()
    ledger.cash[a, 0] += 5  # money from nowhere
    with pytest.raises(LedgerError, match=r"asset USD: .* \(off by 5\)"):
        ledger.check()


def test_check_reports_open_interest_that_does_not_net():
    ledger, a, _b = make_ledger()
    ledger.position[a, 1] += 3
    with pytest.raises(LedgerError, match="BTC-DEC: open interest nets to 3"):
        ledger.check()


def test_withdraw_more_than_held_is_refused_and_changes_nothing():
    ledger, a, _b = make_ledger()
    with pytest.raises(ValueError, match="cannot withdraw"):
        ledger.withdraw(a, 0, 10**11)
    assert int(ledger.cash[a, 0]) == 10**10
    ledger.check()


def test_collateral_value_applies_haircut_to_positive_balances_only():
    ledger = Ledger([USD, ETH], INSTRUMENTS)
    a = ledger.open_account()
    ledger.deposit(a, 1, 2 * 10**8)  # 2 ETH
    ledger.transfer(a, SystemAccount.FEE_POOL, 0, 1_000_000, "test")  # owes 1 USD
    value = ledger.collateral_value(np.array([1.0, 3000.0]))[a]
    assert value == pytest.approx(2 * 3000 * 0.8 * 1e6 - 1e6)
