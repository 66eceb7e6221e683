"""The loss absorber on its own: a bankrupt account's deficit through the insurance fund, the
default waterfall, socialised loss (with its caps) and bad debt, on a real ``Ledger`` and
``ClearingHouse`` over the fakes of tests/clearing/fakes.py, with a fake liquidation engine.

The absorber reaches through the house for the ledger, the clock, the marks (the mark of the
market it socialises over), equities, collateral prices and free collateral, and it reports who
paid back to the house (breach attribution and a re-valuation) -- so the house is real here. The
market and the backstop vault are handed to ``absorb`` by the engine (market 0, no vault here).

Book: one perpetual at a mark of 10,000 ticks, a tick worth 1 minor unit per lot. Open interest:
A long 3 bought at 9,000 (+3,000 at the mark), B long 5 at 9,500 (+2,500), C short 2 sold at
11,000 (+2,000): the profitable side is A, B and C with 3 + 5 + 2 = 10 lots. D (short 8) and E
(long 2) took the other sides and are losing: they never pay socialised loss over the profitable
side. The bankrupt T holds no position and owes ``deficit`` (negative quote cash).
"""

from __future__ import annotations

import pytest

from clearing.absorption import LossAbsorber
from clearing.causality import Cause, CauseKind, LiquidationEvent
from clearing.config import LossAbsorptionConfig
from clearing.house import ClearingHouse
from clearing.insurance import InsuranceFund
from clearing.ledger import QUOTE, SystemAccount
from clearing.waterfall import DefaultWaterfall
from sim.core.instruments import Asset
from tests.clearing.fakes import MARK, PERP_ONLY, FakeEngine, make_house, open_trader, total_cash

HOLDERS = ("A", "B", "C", "D", "E")


def _world(fund: int, waterfall: bool = False, **config) -> tuple[ClearingHouse, LossAbsorber, dict[str, int]]:
    house = make_house(PERP_ONLY)
    house.attach(FakeEngine())
    ledger = house.ledger
    acc = {name: open_trader(house, 1_000_000) for name in HOLDERS}
    ledger.trade(acc["A"], acc["D"], 0, 9_000, 3)
    ledger.trade(acc["B"], acc["D"], 0, 9_500, 5)
    ledger.trade(acc["E"], acc["C"], 0, 11_000, 2)
    insurance = InsuranceFund(ledger)
    if fund:
        insurance.seed(fund)
    wf = None
    if waterfall:
        # A and B contribute 1,000 each to the default fund; the CCP commits a quarter of its 2,000;
        # no assessment power
        wf = DefaultWaterfall(ledger, {acc["A"]: 1_000, acc["B"]: 1_000}, ccp_capital=2_000,
                              skin_in_game_fraction=0.25, assessment_cap=0.0)
        wf.fund()
    absorber = LossAbsorber(house, LossAbsorptionConfig(**config), insurance, wf)
    return house, absorber, acc


def _bankrupt(house: ClearingHouse, deficit: int, liq_id: int = 0) -> tuple[int, LiquidationEvent]:
    """A flat account owing ``deficit``: it bought a lot at the mark + deficit from a dealer and
    sold it back at the mark (the dealer, flat too, holds the money: the ledger stays balanced)."""
    ledger = house.ledger
    trader, dealer = open_trader(house, 0), open_trader(house, 0)
    ledger.trade(trader, dealer, 0, MARK + deficit, 1)
    ledger.trade(dealer, trader, 0, MARK, 1)
    assert int(ledger.cash[trader, QUOTE]) == -deficit and not ledger.position[trader].any()
    event = LiquidationEvent(liq_id=liq_id, account=trader, breach_time=0.0, start_time=0.0,
                             cause=Cause(CauseKind.ORACLE, 0, 0.0), parent=-1, generation=0,
                             equity_at_breach=float(-deficit), mm_at_breach=0.0)
    return trader, event


def _cash(house: ClearingHouse, account: int) -> int:
    return int(house.ledger.cash[account, QUOTE])


def _paid(house: ClearingHouse, acc: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: before[name] - _cash(house, acc[name]) for name in HOLDERS}


@pytest.mark.parametrize("fund", [7_000, 10_000])
def test_a_deficit_the_fund_can_cover_comes_out_of_the_fund_exactly(fund: int) -> None:
    house, absorber, acc = _world(fund)
    trader, event = _bankrupt(house, 7_000)
    before, total = {n: _cash(house, acc[n]) for n in HOLDERS}, total_cash(house.ledger)
    assert absorber.deficit(trader) == 7_000
    assert absorber.absorb(trader, event) == 0  # no bad debt
    assert absorber.fund.balance() == fund - 7_000
    assert _cash(house, trader) == 0 and absorber.deficit(trader) == 0
    assert absorber.records == [(0.0, 0, trader, "insurance_fund", 7_000)]
    assert absorber.absorbed == {"insurance_fund": 7_000}
    assert _paid(house, acc, before) == dict.fromkeys(HOLDERS, 0)  # nobody else paid
    assert total_cash(house.ledger) == total and house.ledger.bad_debt() == 0
    house.ledger.check()


def test_what_the_fund_cannot_cover_is_socialised_over_the_profitable_side_pro_rata() -> None:
    house, absorber, acc = _world(2_000)
    trader, event = _bankrupt(house, 7_001)
    before, total = {n: _cash(house, acc[n]) for n in HOLDERS}, total_cash(house.ledger)
    assert absorber.absorb(trader, event) == 0
    # the fund pays its 2,000; 5,001 over A 3, B 5, C 2 lots: 1,500.3, 2,500.5, 1,000.2 -> floors
    # 1,500 + 2,500 + 1,000 = 5,000, the one minor unit left to the largest remainder (B's 0.5)
    assert absorber.fund.balance() == 0
    assert _paid(house, acc, before) == {"A": 1_500, "B": 2_501, "C": 1_000, "D": 0, "E": 0}
    assert absorber.records == [(0.0, 0, trader, "insurance_fund", 2_000),
                                (0.0, 0, trader, "socialised:open_interest", 5_001)]
    assert (absorber.socialised_total, absorber.socialised_by_event) == (5_001, {0: 5_001})
    assert _cash(house, trader) == 0 and house.ledger.bad_debt() == 0
    assert total_cash(house.ledger) == total
    house.ledger.check()


def test_socialised_all_holders_spreads_over_every_open_lot() -> None:
    house, absorber, acc = _world(0, socialised_side="all")
    trader, event = _bankrupt(house, 2_000)
    before = {n: _cash(house, acc[n]) for n in HOLDERS}
    absorber.absorb(trader, event)
    # 20 open lots (A 3, B 5, C 2, D 8, E 2): 100 a lot, exactly
    assert _paid(house, acc, before) == {"A": 300, "B": 500, "C": 200, "D": 800, "E": 200}
    house.ledger.check()


def test_socialised_caps_per_event_and_per_episode_send_the_rest_to_bad_debt() -> None:
    # caps in quote units: 30.00 per liquidation, 40.00 per episode (3,000 and 4,000 minor units)
    house, absorber, acc = _world(2_000, socialised_cap_per_event=30.0, socialised_cap_per_episode=40.0)
    total = total_cash(house.ledger)
    first, event = _bankrupt(house, 7_001)
    before = {n: _cash(house, acc[n]) for n in HOLDERS}
    # fund 2,000; socialised min(5,001, 3,000) = 3,000 over 10 lots: A 900, B 1,500, C 600 (exact);
    # the 2,001 left is bad debt
    assert absorber.absorb(first, event) == 2_001
    assert _paid(house, acc, before) == {"A": 900, "B": 1_500, "C": 600, "D": 0, "E": 0}
    assert absorber.records == [(0.0, 0, first, "insurance_fund", 2_000),
                                (0.0, 0, first, "socialised:open_interest", 3_000),
                                (0.0, 0, first, "bad_debt", 2_001)]
    assert absorber.socialisable(0, 10) == 0  # this liquidation's cap is spent
    assert _cash(house, first) == 0 and house.ledger.bad_debt() == 2_001
    # a second liquidation, 2,000 short with the fund empty: the episode cap leaves 4,000 - 3,000
    # = 1,000 (A 300, B 500, C 200); 1,000 more bad debt
    second, event2 = _bankrupt(house, 2_000, liq_id=1)
    before = {n: _cash(house, acc[n]) for n in HOLDERS}
    assert absorber.socialisable(1, 2_000) == 1_000
    assert absorber.absorb(second, event2) == 1_000
    assert _paid(house, acc, before) == {"A": 300, "B": 500, "C": 200, "D": 0, "E": 0}
    assert absorber.socialised_by_event == {0: 3_000, 1: 1_000} and absorber.socialised_total == 4_000
    assert absorber.absorbed == {"insurance_fund": 2_000, "socialised:open_interest": 4_000, "bad_debt": 3_001}
    assert house.ledger.bad_debt() == 3_001 and _cash(house, second) == 0
    assert total_cash(house.ledger) == total  # bad debt is a row of the ledger, not money lost
    house.ledger.check()


def test_no_layer_at_all_leaves_the_whole_deficit_as_bad_debt() -> None:
    house, absorber, acc = _world(0, socialised="off")
    trader, event = _bankrupt(house, 1_234)
    assert absorber.absorb(trader, event) == 1_234
    assert absorber.records == [(0.0, 0, trader, "bad_debt", 1_234)]
    assert house.ledger.bad_debt() == 1_234 and _cash(house, trader) == 0
    house.ledger.check()


def test_the_waterfall_sits_between_the_fund_and_socialised_loss_by_default() -> None:
    house, absorber, acc = _world(2_000, waterfall=True)
    trader, event = _bankrupt(house, 7_001)
    before, total = {n: _cash(house, acc[n]) for n in HOLDERS}, total_cash(house.ledger)
    assert absorber.absorb(trader, event) == 0
    # fund 2,000 -> 5,001; waterfall (T is no member): CCP skin 2,000 / 4 = 500, survivors' fund
    # 2,000 -> 2,501; socialised 2,501 over 10 lots: 750.3, 1,250.5, 500.2 -> B gets the extra unit
    assert absorber.records == [(0.0, 0, trader, "insurance_fund", 2_000),
                                (0.0, 0, trader, "waterfall:ccp_skin_in_game", 500),
                                (0.0, 0, trader, "waterfall:survivors_default_fund", 2_000),
                                (0.0, 0, trader, "socialised:open_interest", 2_501)]
    assert _paid(house, acc, before) == {"A": 750, "B": 1_251, "C": 500, "D": 0, "E": 0}
    balances = house.ledger.system_balances()
    assert (balances["insurance_fund"], balances["default_fund"], balances["ccp_capital"]) == (0, 0, 1_500)
    assert total_cash(house.ledger) == total
    house.ledger.check()


@pytest.mark.parametrize("order, records, fund_left, default_fund_left", [
    # the fund first: it alone covers 2,000; the waterfall is never reached
    (["insurance_fund", "waterfall", "socialised"], [("insurance_fund", 2_000)], 0, 2_000),
    # the waterfall first: CCP skin 500, then 1,500 of the survivors' 2,000; the fund is untouched
    (["waterfall", "insurance_fund", "socialised"],
     [("waterfall:ccp_skin_in_game", 500), ("waterfall:survivors_default_fund", 1_500)], 2_000, 500),
])
def test_the_layers_pay_in_the_configured_order(order, records, fund_left, default_fund_left) -> None:
    house, absorber, _acc = _world(2_000, waterfall=True, order=order)
    trader, event = _bankrupt(house, 2_000)
    total = total_cash(house.ledger)
    assert absorber.absorb(trader, event) == 0
    assert [(layer, amount) for _t, _id, _a, layer, amount in absorber.records] == records
    assert absorber.fund.balance() == fund_left
    assert house.ledger.system_balances()["default_fund"] == default_fund_left
    assert total_cash(house.ledger) == total
    house.ledger.check()


@pytest.mark.parametrize("with_vault", [True, False])
def test_other_collateral_is_sold_first_to_the_vault_then_to_the_fund(with_vault: bool) -> None:
    # a second collateral asset, 2 decimals, priced at 100.0 by the oracle: a minor unit (0.01) is
    # worth 100 minor units of USD
    house = make_house(PERP_ONLY, assets=[Asset("USD", 2), Asset("XC", 2, price_source="X")])
    house.attach(FakeEngine())
    ledger = house.ledger
    absorber = LossAbsorber(house, LossAbsorptionConfig(), InsuranceFund(ledger))
    absorber.fund.seed(10_000)
    vault = open_trader(house, 2_000)  # free collateral 2,000: no position, no IM
    trader, event = _bankrupt(house, 7_000)
    ledger.deposit(trader, 1, 30)  # 30 minor units of XC, worth 3,000
    total = total_cash(ledger)
    assert absorber.absorb(trader, event, vault=vault if with_vault else None) == 0
    fund = int(SystemAccount.INSURANCE_FUND)
    if with_vault:
        # the vault buys what its 2,000 pays for (20 units); the fund the other 10 for 1,000 and
        # covers the 4,000 left: it ends with 10,000 - 1,000 - 4,000 = 5,000 and 10 units
        assert [(layer, amount) for *_, layer, amount in absorber.records] == [
            ("collateral_sold", 2_000), ("collateral_sold", 1_000), ("insurance_fund", 4_000)]
        assert (int(ledger.cash[vault, 1]), int(ledger.cash[vault, QUOTE])) == (20, 0)
        assert (int(ledger.cash[fund, 1]), int(ledger.cash[fund, QUOTE])) == (10, 5_000)
    else:
        # the fund buys all 30 for 3,000 and covers the 4,000 left: 3,000 and 30 units remain
        assert [(layer, amount) for *_, layer, amount in absorber.records] == [
            ("collateral_sold", 3_000), ("insurance_fund", 4_000)]
        assert (int(ledger.cash[fund, 1]), int(ledger.cash[fund, QUOTE])) == (30, 3_000)
    assert int(ledger.cash[trader, QUOTE]) == 0 and int(ledger.cash[trader, 1]) == 0
    assert total_cash(ledger) == total
    ledger.check()
