"""Bad debt: a final deficit moves to the BAD_DEBT row, the account ends at zero, nothing is lost."""

import pytest

from clearing.bad_debt import record_bad_debt
from sim.core.instruments import Asset, Instrument, InstrumentKind
from clearing.ledger import QUOTE, Ledger, SystemAccount


def _ledger(n_traders: int, assets=None) -> tuple[Ledger, list[int]]:
    ins = Instrument(0, "X-PERP", InstrumentKind.PERPETUAL, "X", "USD", tick_size=0.01, lot_size=1.0,
                     multiplier=1.0, tick_value=1)
    ledger = Ledger(assets or [Asset("USD", decimals=2)], [ins], capacity=8)
    return ledger, [ledger.open_account() for _ in range(n_traders)]


def test_deficit_moves_to_bad_debt_row():
    ledger, (a, b) = _ledger(2)
    ledger.deposit(a, QUOTE, 1_000)
    ledger.deposit(b, QUOTE, 1_000)
    ledger.trade(a, b, 0, 10_000, 1)      # a long 1 @ 100.00
    ledger.trade(b, a, 0, 8_500, 1)       # closed at 85.00: a loses 15.00 with 10.00 of cash
    assert int(ledger.cash[a, QUOTE]) == -500
    assert record_bad_debt(ledger, a) == 500
    assert int(ledger.cash[a, QUOTE]) == 0
    assert int(ledger.cash[SystemAccount.BAD_DEBT, QUOTE]) == -500
    assert ledger.bad_debt() == 500
    assert ledger.flows["bad debt"] == 500
    assert record_bad_debt(ledger, a) == 0            # idempotent: nothing left to write off
    ledger.check()


def test_nothing_recorded_while_positions_remain_or_cash_positive():
    ledger, (a, b) = _ledger(2)
    ledger.trade(a, b, 0, 10_000, 1)      # a owes 100.00 but still holds the position
    assert record_bad_debt(ledger, a) == 0
    assert int(ledger.cash[a, QUOTE]) == -10_000       # the deficit stays visible
    assert record_bad_debt(ledger, b) == 0             # positive cash
    assert ledger.bad_debt() == 0
    with pytest.raises(ValueError):
        record_bad_debt(ledger, int(SystemAccount.INSURANCE_FUND))
    ledger.check()


def test_other_collateral_blocks_write_off():
    ledger, (a, b) = _ledger(2, [Asset("USD", decimals=2), Asset("BTC", decimals=8, haircut=0.1, price_source="BTC")])
    ledger.deposit(a, 1, 1_000)
    ledger.transfer(a, b, QUOTE, 300, "loss")
    assert record_bad_debt(ledger, a) == 0             # BTC collateral would be sold first
    ledger.transfer(a, b, 1, 1_000, "collateral sold")
    assert record_bad_debt(ledger, a) == 300
    ledger.check()
