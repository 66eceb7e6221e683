"""Ledger exactness at the int64 edge (issue 14).

Regressions: with quote decimals 12 funding wrapped an account's true -1.1e19 to +7.4e18 and
``check()`` (an int64 sum) still passed; ``deposit``/``trade`` raised a bare ``OverflowError``; a
capital of 1e13 USD or a fund of 1e30 crashed the build. Now every mutation is checked (nothing
changes, ``LedgerOverflowError`` names the account), ``check()`` sums in Python integers, and the
schema refuses such amounts up front naming the field.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.core.instruments import Asset, Instrument, InstrumentKind
from clearing.ledger import INT64_MAX, FIRST_TRADER, Ledger, LedgerError, LedgerOverflowError
from sim.experiment.errors import ConfigError
from sim.experiment.io import deep_merge
from sim.experiment.config import parse_episode
from tests.scenarios.harness import BASE


def _ledger(decimals: int = 12, tick_value: int = 10**10) -> tuple[Ledger, int, int]:
    perp = Instrument(0, "BTC-PERP", InstrumentKind.PERPETUAL, "BTC", "USD", 1.0, 0.01, 1.0, tick_value,
                      funding_interval=28_800.0, funding_cap=0.0075)
    ledger = Ledger([Asset("USD", decimals)], [perp])
    a, b = ledger.open_account(), ledger.open_account()
    return ledger, a, b


def _state(ledger: Ledger) -> tuple:
    return (ledger.cash.copy(), ledger.position.copy(), ledger.entry_value.copy(), ledger.realised_pnl.copy(),
            ledger.funding_paid.copy(), ledger.deposits.copy())


def _same(before: tuple, ledger: Ledger) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(before, _state(ledger)))


def test_funding_that_would_wrap_is_refused_and_changes_nothing():
    ledger, a, b = _ledger()
    ledger.deposit(a, 0, 10**18)
    ledger.deposit(b, 0, 10**18)
    ledger.trade(a, b, 0, 1, 10**6)  # a long 1e6 lots at 1 tick
    before = _state(ledger)
    # 1e6 lots x 1.2e13 per lot = 1.2e19: a's balance would be -1.1e19 (the wrap to +7.4e18)
    with pytest.raises(LedgerOverflowError, match=r"funding on BTC-PERP: .*outside the exact int64 range"):
        ledger.pay_funding(0, 12 * 10**12)
    assert _same(before, ledger)
    ledger.check()


def test_deposit_and_trade_overflow_name_the_account_and_change_nothing():
    ledger, a, b = _ledger()
    with pytest.raises(LedgerOverflowError, match=r"deposit: account 5's USD balance would be 1000000000000000000"
                                                  r"000000000000 minor units.*12 decimals"):
        ledger.deposit(a, 0, 10**30)
    ledger.deposit(a, 0, INT64_MAX - 10)
    before = _state(ledger)
    with pytest.raises(LedgerOverflowError, match="deposit"):
        ledger.deposit(b, 0, 100)  # b's balance fits, but total deposits would not
    with pytest.raises(LedgerOverflowError, match=r"trade: account 5's USD balance"):
        ledger.trade(b, a, 0, 1, 2)  # a (the seller) would receive 2e10 on top of ~INT64_MAX
    assert _same(before, ledger)
    ledger.check()


def test_self_trade_and_expiry_stay_exact():
    ledger, a, b = _ledger(decimals=6, tick_value=1)
    ledger.deposit(a, 0, 1000)
    ledger.trade(a, a, 0, 7, 3)
    ledger.trade(a, b, 0, 7, 3)
    ledger.settle_expiry(0, 9)
    ledger.check()
    assert ledger.cash[a, 0] == 1000 - 21 + 27 and ledger.position[a, 0] == 0


def test_check_cannot_pass_on_a_wrapped_ledger():
    """Four balances of 2^62 sum to 2^64, which an int64 sum wraps to 0 = deposits - withdrawals."""
    ledger, a, b = _ledger()
    c, d = ledger.open_account(), ledger.open_account()
    for account in (a, b, c, d):
        ledger.cash[account, 0] = 2**62  # written directly: the ledger's own methods refuse this
    assert int(ledger.cash[: ledger.n_accounts, 0].sum(dtype=np.int64)) == 0  # what the old check saw
    with pytest.raises(LedgerError, match=r"balances sum to 18446744073709551616, deposits - withdrawals = 0"):
        ledger.check()


@pytest.mark.parametrize("override, field", [
    ({"market": {"quote": {"name": "USD", "decimals": 12}},
      "population": {"groups": [{"type": "noise", "count": 100, "capital": 100_000.0,
                                 "instruments": ["BTC-PERP"]}]}},
     "population.groups.0.capital"),
    ({"population": {"groups": [{"type": "noise", "count": 1, "capital": 1e13, "instruments": ["BTC-PERP"]}]}},
     "population.groups.0.capital"),
    ({"clearing": {"loss_absorption": {"insurance_fund": 1e30}}}, "clearing.loss_absorption.insurance_fund"),
    ({"paths": {"models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 1e17, "vol": 0.0}]}]}},
     "market.instruments.0.tick_size"),
])
def test_amounts_the_ledger_cannot_hold_are_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.") + r".*(int64|2\^53)"):
        parse_episode(deep_merge(BASE, override))


def test_the_shipped_amounts_fit():
    parse_episode(BASE)
