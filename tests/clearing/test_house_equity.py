"""``ClearingHouse.account_equity`` (one account, plain floats where it can) and ``equities`` (rows,
numpy) must give the same number to the bit: the valuation, the liquidation engine and the
pre-trade check read one or the other for the same account. Generated books of 1 and several
instruments, one and several collateral assets (haircuts on positive balances, negative ones
owed in full), rows asked as a range (the exposure book's float copy) and as an index array."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.config import ClearingConfig
from clearing.house import ClearingHouse
from clearing.ledger import Ledger
from sim.core.instruments import Asset, Instrument, InstrumentKind, InstrumentTable
from tests.clearing.fakes import EighthOfNotional, FakeMarks, FakeOracle, FakeVenue, FakeWorld


def _house(n_instruments: int, tick_values: list[int], n_assets: int, prices: list[float],
           haircuts: list[float]) -> ClearingHouse:
    instruments = [Instrument(i, f"U{i}-PERP", InstrumentKind.PERPETUAL, f"U{i}", "USD", tick_size=0.01,
                              lot_size=1.0, multiplier=1.0, tick_value=tick_values[i]) for i in range(n_instruments)]
    assets = [Asset("USD", 2)] + [Asset(f"A{k}", 2 + k, haircut=haircuts[k], price_source=f"S{k}")
                                  for k in range(n_assets - 1)]
    ledger = Ledger(assets, instruments, capacity=4)
    oracle = FakeOracle(index=np.array(prices[: max(n_assets - 1, 1)]),
                        underlyings=tuple(f"S{k}" for k in range(max(n_assets - 1, 1))))
    marks = FakeMarks(n_instruments)
    table = InstrumentTable.from_instruments(instruments)
    return ClearingHouse(FakeWorld(), ledger, FakeVenue(n_instruments), oracle, marks, table,
                         EighthOfNotional(table, marks, 100.0), ClearingConfig())


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([1, 2, 3, 5, 8, 9, 17, 40]), st.sampled_from([1, 2, 3, 9]), st.integers(1, 12),
       st.integers(0, 2**32 - 1))
def test_account_equity_equals_equities_to_the_bit(n_instruments, n_assets, n_accounts, seed):
    rng = np.random.default_rng(seed)
    house = _house(n_instruments, rng.integers(1, 1000, n_instruments).tolist(), n_assets,
                   (rng.random(8) * 10 ** rng.uniform(-3, 5, 8)).tolist(), rng.uniform(0, 0.5, 8).tolist())
    ledger = house.ledger
    for _ in range(n_accounts):
        ledger.open_account()
    house.grow()
    n = ledger.n_accounts
    # states no ledger operation is needed for: the sums are the point, not how they were reached
    ledger.position[:n] = rng.integers(-10**6, 10**6, (n, n_instruments)) * (rng.random((n, n_instruments)) < 0.7)
    ledger.cash[:n] = rng.integers(-10**12, 10**12, (n, n_assets))
    house.marks.ticks[:] = rng.random(n_instruments) * 10 ** rng.uniform(0, 7, n_instruments)
    as_range = house.equities(slice(0, n))
    for account in range(n):
        one = house.account_equity(account)
        as_rows = house.equities(np.array([account]))[0]
        assert one.hex() == float(as_rows).hex() == float(as_range[account]).hex(), (account, one, as_rows,
                                                                                    as_range[account])


def test_control_a_hand_worked_equity():
    """Known answer: $1,000 cash, 2 units of an asset at $50 with a 10% haircut, -1 unit of another
    at $20 (owed in full), long 3 lots at 12,345 ticks worth 2 minor units, short 1 at 100 ticks
    worth 5: 100,000 + 9,000 - 2,000 + 74,070 - 500 = 180,570 minor units; zero for an empty account."""
    house = _house(2, [2, 5], 3, [50.0, 20.0], [0.1, 0.0])
    ledger = house.ledger
    a, empty = ledger.open_account(), ledger.open_account()
    house.grow()
    ledger.cash[a] = [100_000, 2 * 10**2, -1 * 10**3]  # A0 has 2 decimals, A1 3
    ledger.position[a] = [3, -1]
    house.marks.ticks[:] = [12_345.0, 100.0]
    assert house.account_equity(a) == house.equities(np.array([a]))[0] == 180_570.0
    assert house.account_equity(empty) == house.equities(slice(empty, empty + 1))[0] == 0.0
