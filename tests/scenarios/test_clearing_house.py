"""Clearing-house scenarios: enforcement, liquidation policies and every loss-absorption layer.

Each scenario runs a real episode (oracle, venue, clearing house, liquidation engine) on a
scripted path and ends with the whole-episode invariants of ``sim.experiment.episode.verify``: the ledger
conserves cash exactly, nobody was liquidated at or above MM, no refused order rested.
"""

from __future__ import annotations

import pytest

from clearing.causality import CauseKind
from clearing.ledger import QUOTE, SystemAccount
from sim.core.orders import TimeInForce
from tests.scenarios.harness import USD, Scenario, crash


def test_breach_is_liquidated_after_the_configured_latency_and_restores_health():
    s = Scenario(crash(100.0, 0.10))
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)  # $9,000 long on $1,000: IM $900, MM $450
    s.bid(whale, 44_900.0, 100)
    ep = s.run()
    assert len(s.events) == 1
    event = s.events[0]
    assert event.account == trader
    assert event.cause.kind == CauseKind.ORACLE and event.generation == 0
    assert event.breach_time == pytest.approx(101.0)
    first = next(st for st in s.steps if st.liq_id == event.liq_id)
    assert first.time - event.breach_time == pytest.approx(0.25)
    assert first.policy == "book" and first.lots < 0
    # a partial step, not a full close: the Drift size restores MM plus the buffer before slippage
    assert abs(first.lots) < 18
    assert event.outcome in ("restored", "closed")
    assert ep.house.account_equity(trader) >= ep.house.mm[trader] or not ep.ledger.position[trader].any()


def test_cancelling_open_orders_alone_restores_the_account():
    s = Scenario(crash(100.0, 0.02), {"clearing": {"enforcement": {"cancel_level": 0.0}}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 10)
    s.bid(trader, 40_000.0, 30)  # worst-case exposure 40 lots: MM $1,000 at 50k
    s.run()
    assert [e.outcome for e in s.events] == ["restored_by_cancel"]
    assert s.steps == []  # nothing traded
    assert int(s.ep.venue.open_bids[trader].sum()) == 0
    assert int(s.ep.ledger.position[trader, 0]) == 10


def test_orders_alone_below_maintenance_are_cancelled_not_liquidated():
    """An account with no position whose resting orders' worst-case MM outgrows its equity (here the
    price rises under a big resting bid) has nothing to liquidate: its orders are cancelled."""
    s = Scenario({"paths": {"shocks": [{"kind": "gap", "start": 100.0, "size": 0.5}]}},
                 {"clearing": {"enforcement": {"cancel_level": 0.0}}})
    quoter = s.account(1_000)
    s.bid(quoter, 40_000.0, 30)  # worst case 0.3 BTC long: MM $750 at 50k, $1,125 after the gap
    s.run(99.0)
    assert int(s.ep.venue.open_bids[quoter].sum()) == 30  # below IM only: the bid stays
    s.ep.world.run(until=200.0)
    assert s.events == []
    assert int(s.ep.venue.open_bids[quoter].sum()) == 0
    assert int(s.ep.ledger.position[quoter].sum()) == 0
    assert s.equity(quoter) == pytest.approx(1_000.0)


def test_a_breach_the_book_caused_is_attributed_to_the_liquidation_that_moved_it():
    """Contagion through the mark: A's liquidation sells through the only nearby bid, the book's mid
    falls, the mark's basis follows, and B -- healthy after the oracle move -- breaches at the next
    publication. B's breach is generation 1 of A's liquidation; A's own re-breach is not counted as
    contagion from itself."""
    s = Scenario(crash(100.0, 0.06), {"oracle": {"mark_basis_cap": 0.05, "mark_basis_window": 1.0}})
    whale = s.account(10_000_000)
    a = s.account(1_000)
    b = s.account(1_100)
    s.position(a, whale, 19)  # after the 6% drop: equity $430 < MM $446.5
    s.position(b, whale, 19)  # after the drop: equity $530 > MM; after a 5% basis: $163 < MM $424
    s.ask(whale, 50_100.0, 1000)
    s.bid(whale, 49_900.0, 1000)

    def requote_after_the_crash():
        s.ep.venue.cancel_all_now(whale)
        s.ask(whale, 47_100.0, 1000)
        s.bid(whale, 46_900.0, 1)  # one lot near the index, then nothing above $40,000
        s.bid(whale, 40_000.0, 1000)

    s.ep.world.call_later(102.0, requote_after_the_crash)
    s.run(300.0)
    first = s.events[0]
    assert first.account == a and first.generation == 0 and first.cause.kind == CauseKind.ORACLE
    (b_event,) = [e for e in s.events if e.account == b]
    assert b_event.cause.kind == CauseKind.LIQUIDATION and b_event.cause.ref == first.liq_id
    assert b_event.parent == first.liq_id and b_event.generation == 1
    assert all(e.generation == 0 for e in s.events if e.account == a)


def test_fill_worse_than_bankruptcy_draws_on_the_insurance_fund():
    s = Scenario(crash(100.0, 0.10), {"clearing": {"liquidation": {"book": {"worst_price": "band"}}}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    s.bid(whale, 40_000.0, 100)  # the only liquidity is far below the bankruptcy price (44,444)
    fund_before = s.ep.fund.balance()
    ep = s.run()
    assert not ep.ledger.position[trader].any()
    # 18 lots sold at 40,000 against entry 50,000: loss $1,800 on $1,000 of equity
    assert s.losses().get("insurance_fund") == 800 * USD
    assert ep.ledger.bad_debt() == 0
    assert int(ep.ledger.cash[trader, QUOTE]) == 0
    assert s.ep.fund.balance() == fund_before - 800 * USD


@pytest.mark.parametrize("worst_price", ["fillable", "bankruptcy"])
def test_fillable_price_keeps_a_barely_breached_liquidation_near_the_mark(worst_price):
    """dYdX v4's bound: at the breach equity is $100 against MM $405 (0.18 BTC at 45,000), so the
    order may give up (1 - 100/405) x 0.1 x 405 = $30.50, i.e. fill down to 44,830.56 -- the bid at
    44,800 is out of reach, though it is far above the bankruptcy price (44,444) a bankruptcy limit allows."""
    s = Scenario(crash(100.0, 0.10), {"clearing": {"liquidation": {"book": {"worst_price": worst_price}}}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    s.bid(whale, 44_900.0, 3)
    low = s.bid(whale, 44_800.0, 100)
    s.run(200.0)
    prices = {st.avg_price_ticks for st in s.steps}
    if worst_price == "fillable":
        assert prices == {44_900.0} and s.ep.venue.books[0].order(low).size == 100
        from clearing.liquidation_math import fillable_price

        # the engine's bound for this breach (not the test's own arithmetic): 44,830.56
        bound = fillable_price(45_000.0, 18, 0.01, equity=100.0, total_mm=405.0, position_mm=405.0)
        assert bound == pytest.approx(44_830.56, abs=0.01)
    else:
        assert min(prices) == 44_800.0


def _adl_setup(*overrides):
    s = Scenario(crash(100.0, 0.40), *overrides)
    trader = s.account(1_000)
    s1, s2, s3 = s.account(2_000), s.account(5_000), s.account(10_000)
    whale = s.account(10_000_000)
    s.position(trader, s1, 4)
    s.position(trader, s2, 4)
    s.position(whale, s3, 4)
    return s, trader, (s1, s2, s3), whale


def test_empty_fund_triggers_adl_in_rank_order_at_the_bankruptcy_price():
    s, trader, (s1, s2, s3), _whale = _adl_setup({"clearing": {"loss_absorption": {"insurance_fund": 0.0}}})
    ep = s.run()
    adl = [st for st in s.steps if st.policy == "adl"]
    # s1 is the most leveraged profitable short, then s2; s3 is never touched
    assert [(st.lots, st.avg_price_ticks) for st in adl] == [(-4, 37_500.0), (-4, 37_500.0)]
    fills = s.recorder.tables()["trades"]
    adl_makers = [m for m, f in zip(fills["maker"], fills["flags"]) if f & 2]
    assert adl_makers == [s1, s2]
    assert int(ep.ledger.position[s3, 0]) == -4
    assert not ep.ledger.position[trader].any()
    assert ep.ledger.bad_debt() == 0
    assert s.events[0].outcome in ("closed", "bankrupt")


@pytest.mark.parametrize("side", [None, "all"])
def test_with_adl_off_the_loss_is_socialised_over_open_interest(side):
    """By default only the profitable holders pay (the shorts, and the bidder who bought at 25,000
    under the 30,000 mark); the whale's long is losing and pays only when every holder pays."""
    s, trader, shorts, whale = _adl_setup({"clearing": {"loss_absorption": {
        "insurance_fund": 0.0, "adl": "off", "socialised": "open_interest", "order": ["insurance_fund", "socialised"],
        **({} if side is None else {"socialised_side": side})}}})
    bidder = s.account(1_000_000)
    s.bid(bidder, 25_000.0, 100)
    ep = s.run()
    # 8 lots sold at 25,000 against 50,000: loss $2,000 on $1,000 -> $1,000 socialised
    assert s.losses() == {"socialised:open_interest": 1_000 * USD}
    assert ep.ledger.bad_debt() == 0
    assert int(ep.ledger.cash[trader, QUOTE]) == 0
    charged = [t for t in ep.ledger.journal if t.reason == "socialised loss"]
    assert sum(t.amount for t in charged) == 1_000 * USD
    assert {t.source for t in charged} == ({*shorts, whale, bidder} if side == "all" else {*shorts, bidder})


def test_ccp_waterfall_consumes_its_layers_in_order():
    s, trader, shorts, whale = _adl_setup({"clearing": {"loss_absorption": {
        "insurance_fund": 0.0, "adl": "off", "socialised": "off", "order": ["waterfall"],
        "waterfall": {"cover": 2, "members": 5, "sizing_time": 60.0, "ccp_capital": 100.0,
                      "skin_in_game": 0.25, "assessment_cap": 1.0}}}})
    bidder = s.account(1_000_000)
    s.bid(bidder, 25_000.0, 100)
    ep = s.run()
    layers = [r[3] for r in ep.absorber.records]
    order = ["waterfall:defaulter_default_fund", "waterfall:ccp_skin_in_game", "waterfall:survivors_default_fund",
             "waterfall:assessments", "waterfall:vm_gains_haircut", "bad_debt"]
    assert layers == sorted(layers, key=order.index)  # never out of order
    assert layers[0] == "waterfall:defaulter_default_fund"
    assert "waterfall:ccp_skin_in_game" in layers
    assert sum(r[4] for r in ep.absorber.records) == 1_000 * USD
    assert int(ep.ledger.cash[SystemAccount.CCP_CAPITAL, QUOTE]) == 75 * USD


def test_liquidation_fee_goes_to_the_insurance_fund_when_the_fill_beats_bankruptcy():
    s = Scenario(crash(100.0, 0.10), {"clearing": {"liquidation": {"fee_rate": 0.01}}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    s.bid(whale, 44_990.0, 100)
    before = s.ep.fund.balance()
    ep = s.run()
    fees = sum(st.fee for st in s.steps)
    assert fees > 0
    assert ep.fund.balance() == before + fees
    assert ep.ledger.bad_debt() == 0


def test_backstop_takes_over_when_equity_is_far_below_maintenance():
    s = Scenario(crash(100.0, 0.105), {"clearing": {"liquidation": {
        "backstop": {"enabled": True, "discount": 0.01, "capital": 1_000_000.0, "equity_fraction_of_mm": 0.667}}}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    ep = s.run()
    backstop = [st for st in s.steps if st.policy == "backstop"]
    assert len(backstop) == 1 and backstop[0].lots == -18
    vault = ep.backstop_account
    assert int(ep.ledger.position[vault, 0]) == 18
    assert not ep.ledger.position[trader].any()


def test_periodic_enforcement_detects_the_breach_only_at_its_interval():
    s = Scenario(crash(100.0, 0.10), {"clearing": {"enforcement": {"cadence": "interval", "interval": 60.0}}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    s.bid(whale, 44_900.0, 100)
    s.run()
    assert s.events[0].breach_time == pytest.approx(120.0)
    assert s.events[0].cause.kind == CauseKind.INTERVAL


def test_pre_trade_check_refuses_an_order_that_would_leave_the_account_below_im():
    s = Scenario()
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.ask(whale, 50_000.0, 100)
    s.ep.house.revalue_all(_oracle_cause())
    venue = s.ep.venue
    ok = venue.execute(venue.new_order_id(), trader, 0, 1, 50_000, 19)  # $9,500: IM $950 <= $1,000
    refused = venue.execute(venue.new_order_id(), trader, 0, 1, 50_000, 2)  # now IM would be $1,050
    assert ok.reject is None and ok.filled_size == 19
    assert refused.reject is not None and refused.reject.value == "risk_check_failed"
    reducing = venue.execute(venue.new_order_id(), trader, 0, -1, 50_000, 5)
    assert reducing.reject is None  # risk-reducing orders are always accepted
    s.run(200.0)


@pytest.mark.parametrize("cached", [True, False])
def test_pre_trade_check_margins_the_order_on_its_own_side_of_the_worst_case(cached):
    """Resting asks make the worst case short; a larger buy makes it long. The order is margined on
    the side it rests on (25 lots long), not netted against the other side's orders (15 lots)."""
    s = Scenario()
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.ask(whale, 50_100.0, 100)
    s.ask(trader, 50_200.0, 10)  # worst case 10 lots short: IM $500
    if cached:  # the fast path has the account's headroom; otherwise only the exact check runs
        s.ep.house.revalue_all(_oracle_cause())
    house, venue = s.ep.house, s.ep.venue
    assert not house.would_accept(trader, 0, 1, 50_000, 25)  # IM $1,250 > $1,000 (netted: $750)
    assert house.would_accept(trader, 0, 1, 50_000, 19)  # IM $950
    refused = venue.execute(venue.new_order_id(), trader, 0, 1, 50_000, 25)
    assert refused.reject is not None and refused.reject.value == "risk_check_failed"
    ok = venue.execute(venue.new_order_id(), trader, 0, 1, 50_000, 19)
    assert ok.reject is None and ok.resting_size == 19
    s.run(100.0)


def test_an_accepted_order_uses_up_slack_so_later_fill_costs_are_rechecked_at_once():
    """Slack and headroom are lower bounds since the last valuation: an accepted order's IM comes
    off both. Here the order takes the account to 95% of its equity in IM, its fill's maker fee
    then takes equity below the cancel level (= IM here) -- seen at the fill, not at the next
    publication."""
    from clearing.health import Health

    s = Scenario({"venue": {"maker_fee_bps": 100.0}}, {"clearing": {"enforcement": {"cancel_level": 1.0}}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    house, venue = s.ep.house, s.ep.venue
    house.revalue_all(_oracle_cause())  # flat: slack and headroom are the whole $1,000
    bid = venue.execute(venue.new_order_id(), trader, 0, 1, 50_000, 19)  # IM $950: accepted
    assert bid.reject is None and bid.resting_size == 19
    sell = venue.execute(venue.new_order_id(), whale, 0, -1, 50_000, 19, TimeInForce.IOC)
    assert sell.filled_size == 19  # the trader pays a $95 maker fee: equity $905 < IM $950
    s.ep.world.run(until=0.5)  # before any publication
    assert house.health[trader] == Health.BELOW_CANCEL
    assert s.equity(trader) == pytest.approx(905.0)


def test_pre_trade_check_holds_back_the_open_loss_of_orders_priced_through_the_mark():
    """Binance's open-loss rule: a resting buy above the mark would lose (price - mark) x size at
    once if filled, so that amount is not available to margin further orders; a buy below the
    mark gains if filled, but that gain is not equity yet."""
    s = Scenario()
    trader = s.account(1_000)
    house, venue = s.ep.house, s.ep.venue
    house.revalue_all(_oracle_cause())
    through = venue.execute(venue.new_order_id(), trader, 0, 1, 50_600, 10)  # IM $500, open loss $60
    assert through.reject is None and through.resting_size == 10
    # 9 more lots: IM $950 for 19 -- covered by $1,000, not by the $940 left after the open loss
    assert not house.would_accept(trader, 0, 1, 50_000, 9)
    refused = venue.execute(venue.new_order_id(), trader, 0, 1, 50_000, 9)
    assert refused.reject is not None and refused.reject.value == "risk_check_failed"
    assert house.would_accept(trader, 0, 1, 50_000, 8)  # IM $900 <= $940
    # a sell far above the mark would gain $4,200 if filled: not counted, so 21 lots (a worst case
    # of 21 short, IM $1,050) are refused
    assert not house.would_accept(trader, 0, -1, 70_000, 21)


def test_a_resting_order_left_above_a_falling_mark_holds_its_open_loss_back_from_the_shortcut():
    """After the price falls, a resting buy priced above the new mark would lose at once if filled.
    The exact check holds that back; the shortcut's headroom, set at the re-valuation, must too --
    or it would accept what the exact check refuses."""
    s = Scenario({"paths": {"shocks": [{"kind": "gap", "start": 100.0, "size": -0.02}]}})
    trader = s.account(1_000)
    house, venue = s.ep.house, s.ep.venue
    house.revalue_all(_oracle_cause())
    resting = venue.execute(venue.new_order_id(), trader, 0, 1, 50_000, 10)  # nothing to sell to it
    assert resting.reject is None and resting.resting_size == 10
    s.run(110.0)  # the mark is 49,000: the bid's open loss is $100, IM for 10 lots $490
    assert float(s.ep.marks.ticks[0]) == pytest.approx(49_000.0)
    assert house.bounds.headroom[trader] / USD == pytest.approx(1_000 - 490 - 100)
    # 9 more lots: IM $931 > $900 once the open loss is held back (the shortcut alone would say $510 > $441)
    assert not house.would_accept(trader, 0, 1, 49_000, 9)
    refused = venue.execute(venue.new_order_id(), trader, 0, 1, 49_000, 9)
    assert refused.reject is not None and refused.reject.value == "risk_check_failed"


def test_pre_trade_check_includes_a_liquidity_add_on():
    """With a size premium on top of standard margin, IM is no longer a sum of per-position base
    rates: the pre-trade check must margin the add-on too, not the base regime's per-position IM."""
    s = Scenario({"margin": {"regime": "standard", "tiers": [{"im_rate": 0.10, "mm_rate": 0.05}],
                             "liquidity": {"mode": "sqrt", "imf": 0.1}}})
    trader = s.account(1_000)
    house, venue = s.ep.house, s.ep.venue
    house.revalue_all(_oracle_cause())
    # 19 lots: base IM $950, with the premium 0.8 x 10% + 0.1 x sqrt(0.19) = 12.4% -> $1,174
    assert not house.would_accept(trader, 0, 1, 50_000, 19)
    refused = venue.execute(venue.new_order_id(), trader, 0, 1, 50_000, 19)
    assert refused.reject is not None and refused.reject.value == "risk_check_failed"
    assert house.would_accept(trader, 0, 1, 50_000, 15)  # 11.9% of $7,500: $894


def _oracle_cause():
    from clearing.causality import Cause

    return Cause(CauseKind.ORACLE, 0, 0.0)


def _rally(start: float, size: float):
    return {"paths": {"shocks": [{"kind": "gap", "start": start, "size": size}]}}


@pytest.mark.parametrize("mode,withdrawable", [("continuous", True), ("interval", False)])
def test_paper_gains_are_withdrawable_only_once_variation_margin_settles_them(mode, withdrawable):
    s = Scenario(_rally(100.0, 0.10), {"clearing": {"settlement": {"variation_margin": mode, "interval": 3600.0}}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 10)  # $5,000 long: IM $500, free collateral $500 at the start
    s.run(200.0)
    free = s.ep.house.free_collateral(trader) / USD
    # the 10% rally is worth $500 to the long
    # equity $1,500 against IM $550 (10 lots at 55,000 x 10%); the interval mode holds back the $500 gain
    assert free == pytest.approx(950 if withdrawable else 450, abs=1.0)
    paid = s.ep.house.withdraw(trader, 10_000 * USD)
    assert paid == pytest.approx(free * USD, abs=1)
    s.ep.ledger.check()


class _Bidder:
    """A stub auction bidder with a fixed discount (1.0 is a zero bid)."""

    def __init__(self, account: int, discount: float | None) -> None:
        self.account = account
        self.discount = discount
        self.asked: list = []

    def auction_discount(self, lots, marks_value):
        self.asked.append(lots.copy())
        return self.discount


@pytest.mark.parametrize("discounts,winning", [((0.05, 0.02), 0.02), ((1.0,), 1.0)])
def test_auction_goes_to_the_best_bid_after_its_duration_and_a_zero_bid_can_win(discounts, winning):
    s = Scenario(crash(100.0, 0.08), {"clearing": {
        "liquidation": {"policy": "auction", "auction": {"duration": 60.0}},
        "loss_absorption": {"insurance_fund": 0.0, "adl": "off", "socialised": "off", "order": ["insurance_fund"]}}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    bidders = [_Bidder(s.account(1_000_000), d) for d in discounts]
    s.ep.engine.bidders.extend(bidders)
    ep = s.run()
    auction = [st for st in s.steps if st.policy == "auction"]
    assert len(auction) == 1
    step = auction[0]
    assert step.time == pytest.approx(101.0 + 0.25 + 60.0)  # breach, latency, auction duration
    assert bidders[0].asked[0].tolist() == [18]  # bidders see the lots they would take over
    assert step.avg_price_ticks == pytest.approx(46_000 * (1 - winning), abs=1.0)  # floored to a tick
    winner = min(bidders, key=lambda b: b.discount)
    assert int(ep.ledger.position[winner.account, 0]) == 18
    if winning == 1.0:  # the zero bid leaves the whole position value as a deficit: bad debt
        assert ep.ledger.bad_debt() > 0
        assert ep.engine.auction_outcomes[0][2] == 1.0


def test_dated_future_settles_at_the_index_at_expiry_and_its_book_closes():
    s = Scenario({"market": {"instruments": [
        {"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.01},
        {"symbol": "BTC-0300", "kind": "future", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.01,
         "expiry": 300.0}]}}, crash(100.0, 0.10))
    whale = s.account(10_000_000)
    trader = s.account(10_000)
    s.position(trader, whale, 10, instrument=1)  # long 10 lots at 50,000
    s.bid(whale, 40_000.0, 5, instrument=1)
    cash_before = int(s.ep.ledger.cash[trader, 0])
    ep = s.run(400.0)
    assert not ep.ledger.position[:, 1].any()
    assert ep.venue.books[1].halted and len(ep.venue.books[1]) == 0
    # settled at the index (45,000): the long lost 10 lots x 0.01 x 5,000
    assert int(ep.ledger.cash[trader, 0]) - cash_before == 10 * 45_000 * 10_000
    assert int(ep.ledger.realised_pnl[trader]) == -500 * USD


def test_perpetual_funding_flows_from_longs_to_shorts_when_the_mark_is_above_the_index():
    s = Scenario({"oracle": {"mark_basis_cap": 0.01, "mark_basis_window": 10.0},
                  "clearing": {"funding": {"enabled": True, "premium_clamp": 0.0}},
                  "market": {"instruments": [{"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC",
                                              "tick_size": 1.0, "lot_size": 0.01, "funding_interval": 100.0}]}})
    whale = s.account(10_000_000)
    long_, short = s.account(100_000), s.account(100_000)
    s.position(long_, short, 10)
    s.bid(whale, 50_240.0, 1)  # the book trades 0.5% above the index: mid 50,250
    s.ask(whale, 50_260.0, 1)
    ep = s.run(350.0)
    paid = int(ep.ledger.funding_paid[long_])
    assert paid > 0 and int(ep.ledger.funding_paid[short]) == -paid
    ep.ledger.check()
