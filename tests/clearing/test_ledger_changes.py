"""The ledger's change log: every public mutator names the accounts whose cash, position or entry
value it changed (or empties the log, which tells readers that anything may have changed)."""

import inspect

import numpy as np
import pytest

from clearing.ledger import QUOTE, Ledger
from sim.core.instruments import Asset, Instrument, InstrumentKind

# every public name of Ledger, sorted into those that change balances and those that only read.
# A new public method fails test_every_public_name_is_classified until it is put in one of these
# -- and a mutator also needs a case in CASES below, so it cannot skip the log unseen
MUTATORS = {"open_account", "deposit", "withdraw", "transfer", "charge_fee", "trade", "pay_funding",
            "settle_expiry", "sync_haircuts"}
READERS = {"changes_since", "change_cursor", "traders", "average_entry_ticks", "value_cash",
           "value_account_cash", "collateral_value", "system_balances", "bad_debt", "check"}


def _ledger() -> tuple[Ledger, list[int]]:
    ins = [Instrument(i, f"X{i}-PERP", InstrumentKind.PERPETUAL, f"X{i}", "USD", tick_size=0.01, lot_size=1.0,
                      multiplier=1.0, tick_value=1) for i in range(2)]
    ledger = Ledger([Asset("USD", decimals=2), Asset("C", decimals=4, haircut=0.1, price_source="C")], ins, capacity=8)
    accounts = [ledger.open_account() for _ in range(4)]
    for a in accounts:
        ledger.deposit(a, QUOTE, 100_000)
        ledger.deposit(a, 1, 5_000)
    ledger.trade(accounts[0], accounts[1], 0, 100, 3)
    ledger.trade(accounts[2], accounts[3], 1, 50, 2)
    return ledger, accounts


CASES = {
    "open_account": lambda led, a: led.open_account(),
    "deposit": lambda led, a: led.deposit(a[0], 1, 700),
    "withdraw": lambda led, a: led.withdraw(a[1], QUOTE, 900),
    "transfer": lambda led, a: led.transfer(a[2], a[3], QUOTE, 1_234, "charge"),
    "charge_fee": lambda led, a: led.charge_fee(a[3], 55),
    "trade": lambda led, a: led.trade(a[1], a[2], 0, 101, 2),
    "pay_funding": lambda led, a: led.pay_funding(0, 7),
    "settle_expiry": lambda led, a: led.settle_expiry(1, 52),
    "sync_haircuts": lambda led, a: led.sync_haircuts(),
}


def test_every_public_name_is_classified():
    public = {name for name, _ in inspect.getmembers(Ledger) if not name.startswith("_")}
    assert public == MUTATORS | READERS, f"classify these: {sorted(public ^ (MUTATORS | READERS))}"
    assert set(CASES) == MUTATORS


@pytest.mark.parametrize("name", sorted(MUTATORS))
def test_each_mutator_logs_the_accounts_it_changed(name):
    ledger, accounts = _ledger()
    cursor = ledger.change_cursor()
    assert ledger.changes_since(cursor) == ([], cursor)
    before = {k: getattr(ledger, k)[: ledger.n_accounts].copy() for k in ("cash", "position", "entry_value")}
    CASES[name](ledger, accounts)
    n = len(before["cash"])
    changed = set()
    for k, old in before.items():
        changed |= set(np.flatnonzero((getattr(ledger, k)[:n] != old).any(axis=1)).tolist())
    logged, end = ledger.changes_since(cursor)
    assert end == ledger.change_cursor()
    if logged is None:  # emptied: a reader starts afresh -- the vector settlements do this
        assert name in ("pay_funding", "settle_expiry")
        return
    assert changed - {1} <= set(logged)  # the fee pool's row (1) on a fee is a system row no reader ranks
    assert set(logged) <= changed | {1}  # and nothing is named that did not change (here)
    if name in ("trade", "transfer", "deposit", "withdraw", "charge_fee"):
        assert changed, f"{name} should have changed a balance in this case"


def test_the_log_is_bounded_and_a_reader_behind_it_is_told():
    ledger, accounts = _ledger()
    cursor = ledger.change_cursor()
    for _ in range(ledger._changes_limit):  # each fee logs its account: twice the bound in all, past it
        ledger.charge_fee(accounts[0], 1)
        ledger.charge_fee(accounts[0], -1)
    assert len(ledger.changes) <= ledger._changes_limit
    assert ledger.changes_since(cursor)[0] is None
    now = ledger.change_cursor()
    ledger.trade(accounts[0], accounts[1], 0, 100, 1)
    assert ledger.changes_since(now) == ([accounts[0], accounts[1]], now + 2)
