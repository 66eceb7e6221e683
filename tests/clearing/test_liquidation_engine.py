"""The liquidation engine on its own: a real ``ClearingHouse`` and ``Ledger`` over the fakes of
tests/clearing/fakes.py (a world that runs scheduled calls in time order, books with scripted
levels, marks that stay where the test puts them), no episode.

The engine reaches through the house for its ledger, world, marks, venue, valuation, exposure and
requirements, so the house is real and everything around it is fake.

Book: one perpetual, a tick worth 1 minor unit per lot (USD, 2 decimals), MM = notional / 16,
IM = notional / 8. The liquidated account T deposits 20,000 and buys 10 lots at 10,000: its cash
is -80,000. Defaults unless a test says otherwise: first step after 0.05 s, limit halfway from the
mark to the bankruptcy price, buffer 2%, fee 1% of notional (out of what the fill beat bankruptcy by).
"""

from __future__ import annotations

import math

import pytest

from clearing.absorption import LossAbsorber
from clearing.causality import Cause, CauseKind
from clearing.config import BackstopConfig, LiquidationConfig, LossAbsorptionConfig
from clearing.house import ClearingHouse
from clearing.insurance import InsuranceFund
from clearing.ledger import QUOTE, SystemAccount
from clearing.liquidation import LiquidationEngine
from sim.core.orders import BUY, SELL, FillFlag, TimeInForce
from tests.clearing.fakes import MARK, PERP_ONLY, make_house, open_trader

FUND = int(SystemAccount.INSURANCE_FUND)


def _engine(policy: str = "book", adl: str = "ranked", fund: int = 0, vault_cash: int = 0,
            discount: float = 0.01) -> tuple[ClearingHouse, LiquidationEngine]:
    house = make_house(PERP_ONLY)
    insurance = InsuranceFund(house.ledger)
    if fund:
        insurance.seed(fund)
    absorber = LossAbsorber(house, LossAbsorptionConfig(adl=adl), insurance)
    vault = open_trader(house, vault_cash) if vault_cash else None
    # the backstop's "equity below 2/3 of MM" trigger is off: each test picks its policy
    config = LiquidationConfig(policy=policy, backstop=BackstopConfig(enabled=False, discount=discount))
    engine = LiquidationEngine(house, config, absorber, vault, adl=adl)
    house.attach(engine)
    return house, engine


def _long_ten(house: ClearingHouse) -> tuple[int, int]:
    """T: 20,000 deposited, long 10 at 10,000 (cash -80,000) from a deep-pocketed seller."""
    seller = open_trader(house, 10**9)
    trader = open_trader(house, 20_000)
    house.ledger.trade(trader, seller, 0, MARK, 10)
    return trader, seller


def _mark(house: ClearingHouse, ticks: int, seq: int = 1) -> Cause:
    house.marks.ticks[0] = ticks
    cause = Cause(CauseKind.ORACLE, seq, house.world.now)
    house.revalue_all(cause)
    return cause


def _cash(house: ClearingHouse, account: int) -> int:
    return int(house.ledger.cash[account, QUOTE])


def _held(house: ClearingHouse, account: int) -> int:
    return int(house.ledger.position[account, 0])


# ------------------------------------------------------------------ lifecycle
def test_a_breach_starts_one_event_per_account_with_the_cause_passed_in() -> None:
    house, engine = _engine()
    trader, _ = _long_ten(house)
    # mark 8,400: equity -80,000 + 84,000 = 4,000 < MM 84,000 / 16 = 5,250
    cause = _mark(house, 8_400, seq=3)
    _mark(house, 8_300, seq=4)  # a second breach while the first is active starts nothing
    assert len(engine.events) == 1 and engine.is_active(trader)
    event = engine.events[0]
    assert (event.liq_id, event.account, event.cause, event.parent, event.generation) == (0, trader, cause, -1, 0)
    assert (event.equity_at_breach, event.mm_at_breach) == (4_000.0, 5_250.0)
    assert engine.liquidations_of(trader) == {0}
    # the first step comes after the latency, not at the breach
    assert house.world.next_time() == pytest.approx(0.05)


def test_start_links_an_endogenous_cause_to_its_parent() -> None:
    house, engine = _engine()
    a, b, c, d = (open_trader(house, 0) for _ in range(4))
    engine.start(a, -1.0, 1.0, Cause(CauseKind.ORACLE, 7, 0.0))
    engine.start(b, -1.0, 1.0, Cause(CauseKind.LIQUIDATION, 0, 0.0))  # impact of liquidation 0
    engine.start(c, -1.0, 1.0, Cause(CauseKind.LOSS_ALLOCATION, 1, 0.0))  # charged for liquidation 1
    engine.start(d, -1.0, 1.0, Cause(CauseKind.LIQUIDATION, 9, 0.0))  # no liquidation 9: a root
    assert [(e.parent, e.generation) for e in engine.events] == [(-1, 0), (0, 1), (1, 2), (-1, 0)]
    assert [e.cause.kind for e in engine.events] == [CauseKind.ORACLE, CauseKind.LIQUIDATION,
                                                     CauseKind.LOSS_ALLOCATION, CauseKind.LIQUIDATION]


def test_an_account_restored_before_its_first_step_is_released_by_the_cancel() -> None:
    house, engine = _engine()
    trader, _ = _long_ten(house)
    _mark(house, 8_400)
    house.marks.ticks[0] = 9_000  # back before the first step: equity 10,000 >= MM 5,625
    house.world.run()
    assert engine.events[0].outcome == "restored_by_cancel" and not engine.steps
    assert house.venue.cancelled[-1] == trader and not engine.active
    # a later breach is a new liquidation of the same account
    _mark(house, 8_400, seq=2)
    assert engine.liquidations_of(trader) == {0, 1}


def test_register_bidder_registers_each_bidder_once_in_order() -> None:
    house, engine = _engine(policy="auction")

    class Bidder:
        def __init__(self, account: int) -> None:
            self.account = account

        def auction_discount(self, lots, marks_value):
            return None

    first, second = Bidder(5), Bidder(6)
    engine.register_bidder(first)
    house.register_bidder(first)  # the desk's door leads to the same list
    engine.register_bidder(second)
    engine.register_bidder(first)
    assert engine.bidders == [first, second]


# ------------------------------------------------------------------ book policy
def test_book_step_closes_enough_to_restore_mm_and_stops() -> None:
    house, engine = _engine()
    trader, _ = _long_ten(house)
    m1, m2 = open_trader(house, 10**7), open_trader(house, 10**7)
    book = house.venue.books[0]
    book.bids = [[8_350, 2, m1], [8_300, 5, m2]]
    book.asks = [[8_450, 5, m2]]
    _mark(house, 8_400)  # equity 4,000, MM 5,250
    house.world.run()
    # lots to restore MM x 1.02 = 5,355: shortage 1,355 over 8,400 x (1/16 x 1.02 - 1% fee) = 451.5
    # a lot -> 3.001 -> 4 lots. Bankruptcy price 8,400 - 4,000 / 10 = 8,000; limit halfway: 8,200.
    assert house.venue.orders == [(trader, 0, SELL, 8_200, 4, TimeInForce.IOC, True)]
    # fills 2 @ 8,350 + 2 @ 8,300 = 33,300 (avg 8,325); beat bankruptcy by 325 x 4 = 1,300 >= fee
    # floor(1% x 33,300) = 333 -> the fund takes 333
    step = engine.steps[0]
    assert len(engine.steps) == 1
    assert (step.liq_id, step.time, step.account, step.instrument, step.policy) == (0, 0.05, trader, 0, "book")
    assert (step.lots, step.notional, step.avg_price_ticks, step.mark_ticks) == (-4, 33_300, 8_325.0, 8_400.0)
    assert (step.bankruptcy_ticks, step.fee) == (8_000.0, 333)
    # cash -80,000 + 33,300 - 333 = -47,033; equity -47,033 + 6 x 8,400 = 3,367 >= MM 3,150: restored
    assert _held(house, trader) == 6 and _cash(house, trader) == -47_033
    assert _cash(house, FUND) == 333
    event = engine.events[0]
    assert (event.outcome, event.end_time, event.notional) == ("restored", 0.05, 33_300)
    assert not engine.active and not house.world.scheduled
    assert engine.health_checks == [(0, 0.05, 4_000.0, 5_250.0)]
    # its own impact: the mid went from (8,350 + 8,450) / 2 = 8,400 to (8,300 + 8,450) / 2 = 8,375
    assert house.marks.impact.records == [(0, 0, -25.0)]
    house.ledger.check()


def test_book_steps_close_fully_when_restoring_is_out_of_reach() -> None:
    house, engine = _engine()
    trader, _ = _long_ten(house)
    m1, m2 = open_trader(house, 10**7), open_trader(house, 10**7)
    book = house.venue.books[0]
    book.bids = [[8_090, 4, m1], [8_060, 4, m1], [8_000, 10, m2]]
    book.asks = [[8_200, 10, m2]]
    _mark(house, 8_100)  # equity 1,000, MM 5,062.5
    house.world.run(until=0.5)
    # step 1 (t 0.05): shortage 5,163.75 - 1,000 over 8,100 x 0.05375 = 435.375 a lot -> 9.56 -> all
    # 10; bankruptcy 8,100 - 1,000 / 10 = 8,000, limit 8,050: 4 @ 8,090 + 4 @ 8,060 fill (64,600,
    # avg 8,075), 8,000 is beyond the limit. Fee: floor(1% x 64,600) = 646 owed, but the fill beat
    # bankruptcy by only 75 x 8 = 600 -> 600. Cash -80,000 + 64,600 - 600 = -16,000; equity
    # -16,000 + 2 x 8,100 = 200 < MM 1,012.5.
    # step 2 (t 0.10, the latency after a whole-position order): 2 lots (shortage 832.75 / 435.375
    # = 1.91), bankruptcy 8,100 - 200 / 2 = 8,000, limit 8,050: nothing on the book could fill, so
    # no order is sent; the next try waits at least a second
    assert [s.lots for s in engine.steps] == [-8]
    assert (engine.steps[0].notional, engine.steps[0].fee) == (64_600, 600)
    assert _held(house, trader) == 2 and _cash(house, trader) == -16_000
    assert house.venue.orders == [(trader, 0, SELL, 8_050, 10, TimeInForce.IOC, True)]
    assert engine.is_active(trader) and house.world.next_time() == pytest.approx(1.10)
    # the book refills: step 3 (t 1.10) sells the last 2 @ 8,080 = 16,160; fee min(floor(161.6),
    # 80 x 2) = 160; cash -16,000 + 16,160 - 160 = 0: flat at zero equity -> closed, nothing owed
    book.bids.insert(0, [8_080, 5, m1])
    house.world.run()
    assert [(s.policy, s.lots, s.notional, s.avg_price_ticks, s.fee) for s in engine.steps] == [
        ("book", -8, 64_600, 8_075.0, 600), ("book", -2, 16_160, 8_080.0, 160)]
    assert [s.time for s in engine.steps] == pytest.approx([0.05, 1.10])
    assert _held(house, trader) == 0 and _cash(house, trader) == 0 and _cash(house, FUND) == 760
    event = engine.events[0]
    assert event.outcome == "closed" and event.end_time == pytest.approx(1.10) and not engine.active
    assert len(engine.health_checks) == 3  # one before every order sent
    house.ledger.check()


# ------------------------------------------------------------------ backstop
def test_backstop_takes_every_position_at_mark_less_the_discount() -> None:
    house, engine = _engine(policy="backstop", vault_cash=10**7, discount=1 / 64)
    trader, _ = _long_ten(house)
    vault = engine.backstop_account
    _mark(house, 8_400)  # equity 4,000, MM 5,250; the vault's IM for 10 lots: 10,500 << its 10**7
    house.world.run()
    # 10 lots sold to the vault at floor(8,400 x 63/64) = floor(8,268.75) = 8,268: 82,680, no fee;
    # cash -80,000 + 82,680 = 2,680, flat -> closed
    assert not house.venue.orders  # nothing went to the book
    assert [(f.price, f.size, f.aggressor_side, f.maker_account, f.taker_account, f.flags)
            for f in house.venue.off_book] == [(8_268, 10, SELL, vault, trader, FillFlag.BACKSTOP)]
    step = engine.steps[0]
    assert (step.policy, step.lots, step.notional, step.avg_price_ticks, step.fee) == ("backstop", -10, 82_680,
                                                                                      8_268.0, 0)
    assert math.isnan(step.bankruptcy_ticks)
    assert _cash(house, trader) == 2_680 and _held(house, trader) == 0
    assert _held(house, vault) == 10 and _cash(house, vault) == 10**7 - 82_680
    assert engine.events[0].outcome == "closed"
    house.ledger.check()


def test_backstop_without_room_falls_back_to_the_book() -> None:
    # a vault of 10,000 cannot carry 10 lots' IM (10,500): the book takes them
    house, engine = _engine(policy="backstop", vault_cash=10_000, discount=1 / 64)
    trader, _ = _long_ten(house)
    m1 = open_trader(house, 10**7)
    house.venue.books[0].bids = [[8_350, 10, m1]]
    _mark(house, 8_400)
    house.world.run()
    assert not house.venue.off_book and [s.policy for s in engine.steps] == ["book"]
    assert engine.events[0].outcome == "restored"


# ------------------------------------------------------------------ bankruptcy
def test_bankrupt_with_the_fund_behind_it_is_taken_over_through_the_book() -> None:
    house, engine = _engine(fund=10_000)
    trader, _ = _long_ten(house)
    m1 = open_trader(house, 10**7)
    book = house.venue.books[0]
    book.bids = [[7_400, 10, m1]]
    book.asks = [[7_600, 5, m1]]
    _mark(house, 7_500)  # equity -80,000 + 75,000 = -5,000: the fund's 10,000 can stand behind it
    house.world.run()
    # a market order for all 10 lots: 10 @ 7,400 = 74,000, no fee (no bankruptcy price);
    # cash -6,000 with no position: the fund covers exactly 6,000 and keeps 4,000
    assert house.venue.orders == [(trader, 0, SELL, 7_500, 10, TimeInForce.MARKET, True)]
    step = engine.steps[0]
    assert (step.policy, step.lots, step.notional, step.fee) == ("takeover", -10, 74_000, 0)
    assert _cash(house, trader) == 0 and _cash(house, FUND) == 4_000
    assert engine.absorber.records == [(0.05, 0, trader, "insurance_fund", 6_000)]
    assert engine.events[0].outcome == "bankrupt"
    # the bid side emptied: the impact is to the last fill, 7,400 - 7,500
    assert house.marks.impact.records == [(0, 0, -100.0)]
    house.ledger.check()


@pytest.mark.parametrize("adl, expected", [
    # ranked (BitMEX): rank = PnL% x |mark value| / equity; every short is 25% in profit at 7,500:
    # S2 0.25 x 45,000 / 35,000 = 0.321 > S1 0.25 x 30,000 / 110,000 = 0.068
    #   > S3 0.25 x 60,000 / 1,020,000 = 0.015 -> S2 gives all 6, S1 all 4
    ("ranked", {"S2": 6, "S1": 4}),
    # pro rata over the 4 + 6 + 8 = 18 profitable short lots: 10 x 4 / 18 = 2 r 4, 10 x 6 / 18 = 3 r 6,
    # 10 x 8 / 18 = 4 r 8 -> the one lot left goes to the largest remainder, S3
    ("pro_rata", {"S1": 2, "S2": 3, "S3": 5}),
])
def test_adl_closes_a_bankrupt_long_against_the_shorts_a_hand_ranking_picks(adl: str, expected: dict) -> None:
    house, engine = _engine(adl=adl)  # an empty fund: ADL, not a takeover
    names = {"T": 20_000, "S1": 100_000, "S2": 20_000, "L": 1_000_000, "S3": 1_000_000}
    acc = {name: open_trader(house, cash) for name, cash in names.items()}
    ledger = house.ledger
    ledger.trade(acc["T"], acc["S1"], 0, MARK, 4)
    ledger.trade(acc["T"], acc["S2"], 0, MARK, 6)
    ledger.trade(acc["L"], acc["S3"], 0, MARK, 8)
    # mark 7,500: T's equity -80,000 + 75,000 = -5,000; bankruptcy price 7,500 + 5,000 / 10 = 8,000.
    # Equities: S1 140,000 - 30,000 = 110,000; S2 80,000 - 45,000 = 35,000; S3 1,080,000 - 60,000
    _mark(house, 7_500)
    house.world.run()
    by_account = {f.maker_account: f for f in house.venue.off_book}
    assert {name: by_account[acc[name]].size for name in expected} == expected
    assert len(by_account) == len(expected)
    assert all(f.price == 8_000 and f.flags == FillFlag.ADL and f.aggressor_side == SELL
               for f in house.venue.off_book)
    assert [(s.policy, s.avg_price_ticks, s.bankruptcy_ticks, s.fee) for s in engine.steps] == \
        [("adl", 8_000.0, 8_000.0, 0)] * len(expected)
    assert sum(s.lots for s in engine.steps) == -10
    # at the bankruptcy price the account ends at exactly zero: closed, nothing left to absorb
    assert _cash(house, acc["T"]) == 0 and _held(house, acc["T"]) == 0
    assert engine.events[0].outcome == "closed" and not engine.absorber.records
    for name in ("S1", "S2", "S3"):
        assert _held(house, acc[name]) == -{"S1": 4, "S2": 6, "S3": 8}[name] + expected.get(name, 0)
    assert not house.venue.orders  # ADL never touches the book
    house.ledger.check()


def test_a_short_is_bought_back_on_the_book_at_the_mirror_prices() -> None:
    house, engine = _engine()
    buyer = open_trader(house, 10**9)
    trader = open_trader(house, 20_000)
    house.ledger.trade(buyer, trader, 0, MARK, 10)  # short 10 at 10,000: cash 120,000
    m1 = open_trader(house, 10**7)
    book = house.venue.books[0]
    book.asks = [[11_650, 2, m1], [11_700, 5, m1]]
    book.bids = [[11_550, 5, m1]]
    _mark(house, 11_600)  # equity 120,000 - 116,000 = 4,000 < MM 7,250
    house.world.run()
    # shortage 7,395 - 4,000 over 11,600 x 0.05375 = 623.5 a lot -> 5.44 -> 6 lots; bankruptcy
    # 11,600 + 4,000 / 10 = 12,000, limit 11,800: 2 @ 11,650 + 4 @ 11,700 = 70,100 (avg 11,683.33);
    # beat bankruptcy by floor(316.67 x 6) = 1,900 >= fee floor(701) = 701. Cash 120,000 - 70,100
    # - 701 = 49,199; equity 49,199 - 4 x 11,600 = 2,799, still below MM 2,900 -> a second step
    # after the 30 s cool-down (6 of 10 lots was a partial close): shortage 2,958 - 2,799 = 159
    # over 623.5 -> 1 lot; bankruptcy 11,600 + 2,799 / 4 = 12,299.75, limit halfway 11,949.875 ->
    # 11,949 (a buy rounds down): 1 @ 11,700, fee floor(117) = 117; cash 49,199 - 11,700 - 117 =
    # 37,382; equity 37,382 - 3 x 11,600 = 2,582 >= MM 2,175: restored
    assert [o[2:5] for o in house.venue.orders] == [(BUY, 11_800, 6), (BUY, 11_949, 1)]
    assert [(s.lots, s.notional, s.fee) for s in engine.steps] == [(6, 70_100, 701), (1, 11_700, 117)]
    assert [s.time for s in engine.steps] == pytest.approx([0.05, 30.05])
    assert _held(house, trader) == -3 and _cash(house, trader) == 37_382
    assert engine.events[0].outcome == "restored" and _cash(house, FUND) == 818
    house.ledger.check()
