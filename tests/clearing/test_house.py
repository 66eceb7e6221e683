"""The clearing house on its own, with small fakes for its world, venue, oracle, marks, regime and
liquidation engine: valuation, enforcement, the pre-trade bounds at their boundary, settlement.

Book: USD with 2 decimals (100 minor units a dollar); one perpetual and one future, a tick worth
1 minor unit per lot, marks at 10,000 ticks ($100). The fake regime asks 1/8 of notional as IM and
1/16 as MM (binary fractions: every figure below is exact).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from clearing.causality import Cause, CauseKind
from clearing.health import Health
from clearing.house import ClearingHouse
from sim.core.phases import Subscribers
from sim.core.instruments import Asset, Instrument, InstrumentKind, InstrumentTable
from clearing.ledger import QUOTE, Ledger
from clearing.margin.base import MarginRegime, Positions, Requirements
from sim.market.resting import RestingSize
from clearing.config import ClearingConfig

MARK = 10_000
INSTRUMENTS = [
    Instrument(0, "X-PERP", InstrumentKind.PERPETUAL, "X", "USD", tick_size=0.01, lot_size=1.0, multiplier=1.0,
               tick_value=1),
    Instrument(1, "X-FUT", InstrumentKind.FUTURE, "X", "USD", tick_size=0.01, lot_size=1.0, multiplier=1.0,
               tick_value=1, expiry=3600.0),
]


class FakeWorld:
    def __init__(self) -> None:
        self.now = 0.0
        self.soon: list = []
        self.scheduled: list = []

    def call_soon(self, fn, *args) -> None:
        self.soon.append((fn, args))

    def call_later(self, delay, fn, *args) -> None:
        self.scheduled.append((delay, fn, args))

    def every(self, interval, fn, start=None) -> None:
        self.scheduled.append((interval, fn, ()))

    def drain(self) -> None:
        while self.soon:
            fn, args = self.soon.pop(0)
            fn(*args)


class FakeBook:
    def orders_through(self, mark):
        return []

    def orders_of(self, account):
        return []


class FakeVenue:
    def __init__(self, n_instruments: int) -> None:
        self.resting = RestingSize(n_instruments)
        self.books = [FakeBook() for _ in range(n_instruments)]
        self.reference = [MARK] * n_instruments
        self.trade_listeners: Subscribers = Subscribers()
        self.risk_check = None
        self.cancelled: list[int] = []
        self.halted: list[int] = []

    @property
    def open_bids(self) -> np.ndarray:
        return self.resting.bids

    @property
    def open_asks(self) -> np.ndarray:
        return self.resting.asks

    def cancel_all_now(self, account: int, instrument: int | None = None) -> int:
        self.cancelled.append(account)
        return 1

    def halt(self, instrument: int) -> None:
        self.halted.append(instrument)

    def accounts_with_orders(self, instrument: int) -> list[int]:
        return []


@dataclass
class FakeOracle:
    index: np.ndarray = field(default_factory=lambda: np.array([100.0]))
    underlyings: tuple = ("X",)
    listeners: Subscribers = field(default_factory=Subscribers)


class FakeMarks:
    def __init__(self, n: int) -> None:
        self.ticks = np.full(n, float(MARK))
        self.index_ticks = self.ticks.copy()
        self.basis_ticks = np.zeros(n)
        self.impact_ticks = np.zeros(n)

    def market_state(self, now: float) -> None:
        return None


class EighthOfNotional(MarginRegime):
    """IM = notional / 8, MM = notional / 16 (quote units), per account."""

    name = "eighth"

    def __init__(self, table: InstrumentTable, marks: FakeMarks, scale: float) -> None:
        super().__init__(table)
        self.marks, self.scale = marks, scale

    def requirements(self, positions: Positions, market) -> Requirements:
        notional = np.abs(positions.dense).dot(self.marks.ticks) / self.scale  # tick value 1
        return Requirements(im=notional / 8, mm=notional / 16)

    def breakdown(self, lots, market) -> dict[str, float]:
        raise NotImplementedError


class FakeEngine:
    def __init__(self) -> None:
        self.started: list[tuple[int, float, float]] = []

    def is_active(self, account: int) -> bool:
        return any(a == account for a, _e, _m in self.started)

    def liquidations_of(self, account: int) -> set[int]:
        return set()

    def start(self, account: int, equity: float, mm: float, cause, why) -> None:
        self.started.append((account, equity, mm))


@pytest.fixture()
def house() -> ClearingHouse:
    ledger = Ledger([Asset("USD", 2)], INSTRUMENTS, capacity=8)
    world, venue, oracle, marks = FakeWorld(), FakeVenue(2), FakeOracle(), FakeMarks(2)
    table = InstrumentTable.from_instruments(INSTRUMENTS)
    regime = EighthOfNotional(table, marks, 100.0)
    h = ClearingHouse(world, ledger, venue, oracle, marks, table, regime, ClearingConfig())
    h.attach(FakeEngine())
    return h


def _trader(house: ClearingHouse, cash: int) -> int:
    account = house.ledger.open_account()
    house.ledger.deposit(account, QUOTE, cash)
    house._grow()
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
