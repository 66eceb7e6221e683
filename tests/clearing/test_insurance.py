"""Insurance fund on a real Ledger: income, cover up to balance and per-market cap, balance path."""

import pytest

from sim.core.instruments import Asset, Instrument, InstrumentKind
from clearing.insurance import InsuranceFund
from clearing.ledger import QUOTE, Ledger, SystemAccount


def _ledger(n_traders: int) -> tuple[Ledger, list[int]]:
    ins = [Instrument(i, f"X{i}-PERP", InstrumentKind.PERPETUAL, f"X{i}", "USD", tick_size=0.01, lot_size=1.0,
                      multiplier=1.0, tick_value=1) for i in range(2)]
    ledger = Ledger([Asset("USD", decimals=2)], ins, capacity=8)
    return ledger, [ledger.open_account() for _ in range(n_traders)]


def test_collect_and_cover_move_cash_exactly():
    ledger, (a, b) = _ledger(2)
    ledger.deposit(a, QUOTE, 10_000)
    fund = InsuranceFund(ledger)
    assert fund.balance() == 0 and fund.history == [(0.0, 0)]
    ledger.now = 5.0
    assert fund.collect(a, 700, market=0) == 700
    assert fund.balance() == 700 and int(ledger.cash[a, QUOTE]) == 9_300
    assert ledger.flows["liquidation fee"] == 700
    ledger.now = 7.5
    ledger.transfer(b, a, QUOTE, 1_000, "loss")       # b goes bankrupt by 1,000
    paid = fund.cover(b, 1_000, market=0)
    assert paid == 700                                 # only what it holds
    assert fund.balance() == 0 and int(ledger.cash[b, QUOTE]) == -300
    assert fund.paid == {0: 700} and fund.collected == {0: 700}
    assert fund.history == [(0.0, 0), (5.0, 700), (7.5, 0)]
    assert fund.cover(b, 300, market=0) == 0           # empty: pays nothing, history unchanged
    assert len(fund.history) == 3
    ledger.check()


def test_per_market_cap_limits_total_payouts():
    ledger, (a, b) = _ledger(2)
    fund = InsuranceFund(ledger, cap_per_market={0: 1_000})
    fund.seed(5_000)
    assert fund.balance() == 5_000 and int(ledger.cash[SystemAccount.INSURANCE_FUND, QUOTE]) == 5_000
    assert fund.available(0) == 1_000 and fund.available(1) == 5_000
    assert fund.cover(a, 600, market=0) == 600
    assert fund.available(0) == 400
    fund.collect(b, 2_000, market=0)                   # income does not raise the payout cap
    assert fund.available(0) == 400
    assert fund.cover(a, 600, market=0) == 400
    assert fund.available(0) == 0
    assert fund.cover(b, 3_000, market=1) == 3_000     # an uncapped market: limited by balance only
    assert fund.balance() == 5_000 - 1_000 + 2_000 - 3_000
    assert fund.total_paid() == 4_000 and fund.total_collected() == 2_000
    ledger.check()


def test_rejects_negative_amounts_and_caps():
    ledger, (a,) = _ledger(1)
    fund = InsuranceFund(ledger)
    with pytest.raises(ValueError):
        fund.collect(a, -1, market=0)
    with pytest.raises(ValueError):
        fund.cover(a, -1, market=0)
    with pytest.raises(ValueError):
        InsuranceFund(ledger, cap_per_market={0: -5})
    assert fund.cover(a, 0, market=0) == 0
    ledger.check()
