"""Small fakes for testing the clearing house, the liquidation engine and the loss absorber on their
own, without an episode: a world that runs scheduled calls in time order, a venue with scripted
books, an oracle, marks that stay where a test puts them, and a margin regime whose answers are
exact binary fractions.

Book: USD with 2 decimals (100 minor units a dollar); a perpetual and a future, a tick worth 1 minor
unit per lot, marks at 10,000 ticks ($100). ``EighthOfNotional`` asks 1/8 of notional as IM and
1/16 as MM, so every figure a test works out by hand is exact.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from clearing.config import ClearingConfig
from clearing.house import ClearingHouse
from clearing.ledger import QUOTE, Ledger
from clearing.margin.base import MarginRegime, Positions, Requirements
from sim.core.instruments import Asset, Instrument, InstrumentKind, InstrumentTable
from sim.core.orders import BUY, Fill, FillFlag, SubmitResult, TimeInForce
from sim.core.phases import Subscribers
from sim.market.resting import RestingSize

MARK = 10_000
INSTRUMENTS = [
    Instrument(0, "X-PERP", InstrumentKind.PERPETUAL, "X", "USD", tick_size=0.01, lot_size=1.0, multiplier=1.0,
               tick_value=1),
    Instrument(1, "X-FUT", InstrumentKind.FUTURE, "X", "USD", tick_size=0.01, lot_size=1.0, multiplier=1.0,
               tick_value=1, expiry=3600.0),
]
PERP_ONLY = INSTRUMENTS[:1]  # nothing scheduled by the house itself (no expiry): a test's clock is its own


class FakeWorld:
    """``call_later`` calls run in time order (ties in the order scheduled) when a test calls
    ``run``; ``call_soon`` calls run after each of them, as the kernel runs them later in the same
    instant. ``every`` is recorded and never run (funding and margin runs are not under test)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.soon: list = []
        self.scheduled: list = []  # heap of (time, sequence, fn, args)
        self.periodic: list = []
        self._seq = 0

    def call_soon(self, fn, *args) -> None:
        self.soon.append((fn, args))

    def call_later(self, delay, fn, *args) -> None:
        heapq.heappush(self.scheduled, (self.now + delay, self._seq, fn, args))
        self._seq += 1

    def every(self, interval, fn, start=None) -> None:
        self.periodic.append((interval, fn))

    def drain(self) -> None:
        while self.soon:
            fn, args = self.soon.pop(0)
            fn(*args)

    def run(self, until: float = math.inf) -> None:
        """Run every scheduled call due at or before ``until``; the clock ends at the last one run."""
        self.drain()
        while self.scheduled and self.scheduled[0][0] <= until:
            when, _seq, fn, args = heapq.heappop(self.scheduled)
            self.now = when
            fn(*args)
            self.drain()

    def next_time(self) -> float | None:
        return self.scheduled[0][0] if self.scheduled else None


class FakeBook:
    """Scripted resting liquidity: ``bids`` / ``asks`` are ``[price, lots, maker account]`` levels,
    best first. An order takes them in that order while they satisfy its limit."""

    def __init__(self) -> None:
        self.bids: list[list[int]] = []
        self.asks: list[list[int]] = []
        self.halted = False

    def orders_through(self, mark):
        return []

    def orders_of(self, account):
        return []

    def mid(self) -> float | None:
        if not self.bids or not self.asks:
            return None
        return (self.bids[0][0] + self.asks[0][0]) / 2


class FakeVenue:
    """Books that fill incoming orders against their scripted levels and publish every fill to the
    trade listeners (the house settles it), as the venue does. No price band: a MARKET order takes
    whatever the book holds. ``orders`` keeps every order sent, ``cancelled`` every cancel-all."""

    def __init__(self, n_instruments: int) -> None:
        self.resting = RestingSize(n_instruments)
        self.books = [FakeBook() for _ in range(n_instruments)]
        self.reference = [MARK] * n_instruments
        self.trade_listeners: Subscribers = Subscribers()
        self.risk_check = None
        self.cancelled: list[int] = []
        self.halted: list[int] = []
        self.orders: list[tuple[int, int, int, int, int, TimeInForce, bool]] = []
        self.off_book: list[Fill] = []
        self._next_id = 1

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

    def new_order_id(self) -> int:
        oid = self._next_id
        self._next_id += 1
        return oid

    def can_fill(self, instrument: int, side: int, price: int, tif: TimeInForce = TimeInForce.IOC,
                 flags: FillFlag = FillFlag.NONE) -> bool:
        """Whether ``execute`` would fill something: the best level meets the limit (a MARKET order
        takes any level)."""
        book = self.books[instrument]
        levels = book.asks if side == BUY else book.bids
        if not levels:
            return False
        return tif == TimeInForce.MARKET or (levels[0][0] <= price if side == BUY else levels[0][0] >= price)

    def execute(self, oid: int, account: int, instrument: int, side: int, price: int, lots: int,
                tif: TimeInForce = TimeInForce.GTC, reduce_only: bool = False,
                flags: FillFlag = FillFlag.NONE, check_risk: bool = True) -> SubmitResult:
        self.orders.append((account, instrument, side, price, lots, tif, reduce_only))
        book = self.books[instrument]
        levels = book.asks if side == BUY else book.bids
        fills: list[Fill] = []
        left = lots
        while left and levels:
            level_price, level_lots, maker = levels[0]
            crosses = level_price <= price if side == BUY else level_price >= price
            if tif != TimeInForce.MARKET and not crosses:
                break
            take = min(left, level_lots)
            fills.append(Fill(instrument, level_price, take, side, 0, oid, maker, account, flags))
            left -= take
            if take == level_lots:
                levels.pop(0)
            else:
                levels[0][1] -= take
        for fill in fills:
            for listener in self.trade_listeners.calls:
                listener(fill, 0, 0)
        return SubmitResult(oid, fills=fills, cancelled_size=left)

    def off_book_trade(self, fill: Fill) -> None:
        self.off_book.append(fill)
        for listener in self.trade_listeners.calls:
            listener(fill, 0, 0)


@dataclass
class FakeOracle:
    index: np.ndarray = field(default_factory=lambda: np.array([100.0]))
    underlyings: tuple = ("X",)
    listeners: Subscribers = field(default_factory=Subscribers)


class FakeImpact:
    """Keeps what the engine reports of its own price impact: (instrument, liq id, ticks moved)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, int, float]] = []

    def record(self, instrument: int, liq_id: int, moved: float) -> None:
        self.records.append((instrument, liq_id, moved))


class FakeMarks:
    def __init__(self, n: int) -> None:
        self.ticks = np.full(n, float(MARK))
        self.index_ticks = self.ticks.copy()
        self.basis_ticks = np.zeros(n)
        self.impact_ticks = np.zeros(n)
        self.impact = FakeImpact()

    def market_state(self, now: float) -> None:
        return None

    def sample_books(self) -> None:  # the marks are set by hand in these tests
        pass

    def update(self, now: float) -> None:
        pass


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
    """Records the breaches the house hands over; no liquidation runs."""

    def __init__(self) -> None:
        self.started: list[tuple[int, float, float]] = []
        self.steps: list = []  # declared by ``clearing.causality.Liquidator``
        self.backstop_account: int | None = None

    def is_active(self, account: int) -> bool:
        return any(a == account for a, _e, _m in self.started)

    def liquidations_of(self, account: int) -> set[int]:
        return set()

    def register_bidder(self, bidder) -> None:
        raise NotImplementedError

    def start(self, account: int, equity: float, mm: float, cause, why=None) -> None:
        self.started.append((account, equity, mm))


def make_house(instruments: list[Instrument] = INSTRUMENTS, config: ClearingConfig | None = None,
               capacity: int = 8, assets: list[Asset] | None = None) -> ClearingHouse:
    """A clearing house over a fresh ledger and the fakes above; not yet attached to an engine.
    ``assets``: USD (2 decimals) alone unless given (the first is the quote; another asset priced by
    the fake oracle names ``price_source="X"``, at 100.0)."""
    ledger = Ledger(assets or [Asset("USD", 2)], instruments, capacity=capacity)
    n = len(instruments)
    world, venue, oracle, marks = FakeWorld(), FakeVenue(n), FakeOracle(), FakeMarks(n)
    table = InstrumentTable.from_instruments(instruments)
    regime = EighthOfNotional(table, marks, 100.0)
    return ClearingHouse(world, ledger, venue, oracle, marks, table, regime, config or ClearingConfig())


def open_trader(house: ClearingHouse, cash: int) -> int:
    """A new trader account with ``cash`` minor units deposited."""
    account = house.ledger.open_account()
    if cash:
        house.ledger.deposit(account, QUOTE, cash)
    house.grow()
    return account


def total_cash(ledger: Ledger) -> int:
    """Every row's quote cash, system rows included (what ``ledger.check`` holds to the deposits)."""
    return sum(ledger.cash[: ledger.n_accounts, QUOTE].tolist())
