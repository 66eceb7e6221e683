"""Liquidation correctness under recovery and illiquidity (issue 14).

Regressions:
* an auction (and the no-bid takeover) handed positions over without re-valuing: an account that
  recovered during the auction was sold at the auction discount;
* ``_takeover`` re-scheduled itself with ``cooldown: 0`` even when nothing filled: tens of
  thousands of steps at one instant, the clock never advancing;
* ``verify()`` checked health only at the breach, so neither showed up as a failure.
"""

from __future__ import annotations

import pytest

from sim.experiment.episode import verify
from tests.scenarios.harness import Scenario, crash
from tests.scenarios.test_clearing_house import _Bidder

AUCTION = {"clearing": {
    "liquidation": {"policy": "auction", "auction": {"duration": 60.0}},
    "loss_absorption": {"insurance_fund": 0.0, "adl": "off", "socialised": "off", "order": ["insurance_fund"]}}}


def _recovering(recovery_duration: float) -> dict:
    shock = crash(100.0, 0.08)
    shock["paths"]["shocks"][0].update(recovery=1.0, recovery_duration=recovery_duration)
    return shock


def test_an_account_that_recovers_during_the_auction_is_released_not_sold():
    s = Scenario(_recovering(20.0), AUCTION)  # the crash is won back 20 s after it ends
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    bidder = _Bidder(s.account(1_000_000), 0.05)
    s.ep.engine.bidders.append(bidder)
    ep = s.run()
    assert len(s.events) == 1 and s.events[0].outcome == "restored"
    assert [st for st in s.steps if st.account == trader] == []  # nothing was sold
    assert bidder.asked == []  # the auction was not settled
    assert int(ep.ledger.position[trader, 0]) == 18 and int(ep.ledger.position[bidder.account, 0]) == 0


def test_an_account_still_below_mm_at_settlement_is_auctioned():
    s = Scenario(crash(100.0, 0.08), AUCTION)  # no recovery: the auction goes ahead
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    bidder = _Bidder(s.account(1_000_000), 0.05)
    s.ep.engine.bidders.append(bidder)
    ep = s.run()
    assert int(ep.ledger.position[bidder.account, 0]) == 18
    assert [t for _liq, t, _e, _m in ep.engine.health_checks] == [pytest.approx(101.25),
                                                                  pytest.approx(161.25)]


def test_verify_fails_a_step_taken_at_or_above_mm():
    s = Scenario(crash(100.0, 0.08), AUCTION)
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    s.ep.engine.bidders.append(_Bidder(s.account(1_000_000), 0.05))
    ep = s.run()
    liq_id, at, _equity, mm = ep.engine.health_checks[-1]
    ep.engine.health_checks.append((liq_id, at, mm, mm))  # a step decided with equity == MM
    with pytest.raises(AssertionError, match=r"moved account \d+'s positions at t=161\.250 with equity"):
        verify(ep)


def test_a_takeover_that_cannot_fill_waits_instead_of_spinning_at_one_instant():
    """A bankrupt account, an empty book, no ADL, no vault, cooldown 0: before the fix the
    takeover re-ran at the same instant forever (the episode never finished)."""
    s = Scenario(crash(100.0, 0.30), {"clearing": {
        "liquidation": {"book": {"cooldown": 0.0}, "backstop": {"enabled": False}},
        "loss_absorption": {"adl": "off"}}}, {"duration": 400.0})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)  # no resting orders: nothing can fill
    ep = s.run()
    decisions = [t for liq, t, _e, _m in ep.engine.health_checks if liq == 0]
    instants = sorted(set(decisions))
    assert len(instants) >= 2
    # one step per instant (its re-valuation and its takeover), and the next at least a second later
    assert max(decisions.count(t) for t in instants) <= 2
    assert all(b - a >= 1.0 for a, b in zip(instants, instants[1:]))
    assert int(ep.ledger.position[trader, 0]) == 18 and s.events[0].outcome == "open"  # still waiting


def test_an_account_a_loss_charge_pushes_below_mm_is_liquidated_without_waiting_for_the_oracle():
    """Why fuzzed episodes ended with accounts below MM that were never liquidated: a socialised
    loss (like a liquidation or ADL fill against an account) changed its equity without a
    re-check, and only the next oracle publication would have noticed. With the price flat after
    the crash and a long heartbeat, none came: the account ended the episode at negative equity."""
    from clearing.causality import CauseKind

    s = Scenario(crash(100.0, 0.40), {"oracle": {"heartbeat": 100_000.0}, "clearing": {"loss_absorption": {
        "insurance_fund": 0.0, "adl": "off", "socialised": "open_interest", "socialised_side": "all",
        "order": ["insurance_fund", "socialised"]}}})  # all holders pay: the charged account is a losing long
    trader = s.account(1_000)
    near = s.account(870)  # 4 lots long: $70 of equity over its $60 MM after the crash
    short = s.account(100_000)
    whale = s.account(10_000_000)
    s.position(trader, short, 8)
    s.position(near, short, 4)
    s.bid(whale, 29_000.0, 100)
    ep = s.run()
    assert s.losses().get("socialised:open_interest", 0) > 0
    charged = [ev for ev in s.events if ev.account == near]
    assert len(charged) == 1 and charged[0].cause.kind == CauseKind.LOSS_ALLOCATION
    assert charged[0].breach_time == pytest.approx(s.events[0].end_time)  # at once, not at a publication
    assert not ep.ledger.position[near].any()


def test_with_the_pre_trade_check_off_a_fill_that_takes_an_account_below_mm_is_caught_at_once():
    """The fill re-check counted only what a fill cost, not how it grew the requirement -- safe
    only when the pre-trade check had margined the order. With the check off, a fill could leave
    an account below MM until the next publication (with a flat price and a long heartbeat: never)."""
    from sim.core.orders import BUY, TimeInForce

    # publications at the heartbeat until an oracle outage from t=45 to the end
    s = Scenario({"oracle": {"heartbeat": 20.0, "outages": [{"start": 45.0, "end": 600.0}]},
                  "clearing": {"enforcement": {"pre_trade_check": False}}})
    small = s.account(100)
    whale = s.account(10_000_000)
    s.ask(whale, 50_000.0, 10)
    ep = s.ep

    def take() -> None:  # $5,000 bought on $100: MM of the position $250
        ep.venue.execute(ep.venue.new_order_id(), small, 0, BUY, 50_000, 10, TimeInForce.IOC)

    ep.world.call_later(50.0, take)
    ep = s.run()
    assert int(ep.ledger.position[small, 0]) == 0 or ep.engine.is_active(small)
    assert len(s.events) == 1 and s.events[0].account == small
    assert s.events[0].breach_time == pytest.approx(50.0)


def _var_after_a_gap_up(monkeypatch):
    import copy

    from tests.scenarios import harness

    base = copy.deepcopy(harness.BASE)
    # one 20 s history row of margin period; a lookback longer than the history uses all of it
    base["margin"] = {"regime": "var", "mpor_days": 20.0 / 86_400, "lookback_days": 1.0, "mm_ratio": 1.0}
    base["clearing"]["history"] = {"pre_episode_rows": 30, "row_interval": 20.0}
    base["oracle"]["heartbeat"] = 100_000.0
    monkeypatch.setattr(harness, "BASE", base)
    return harness.Scenario({"paths": {"shocks": [{"kind": "gap", "start": 50.0, "size": 0.2}]}})


def test_a_resting_bid_does_not_hide_a_short_below_its_own_mm(monkeypatch):
    """Found by the long fuzz profile: the worst-case exposure takes the side with more lots, so
    a short of 5 with a resting bid for 12 was margined as a long of 7 -- under VaR after a gap up
    a long needs almost nothing, the short a lot. It ended below its own MM, never liquidated."""
    s = _var_after_a_gap_up(monkeypatch)
    whale = s.account(10_000_000)
    short = s.account(1_000)
    s.position(whale, short, 5)
    s.bid(short, 30_000.0, 12)  # far below the market: it rests
    ep = s.run()
    assert [e.account for e in s.events] == [short]
    assert s.events[0].breach_time == pytest.approx(60.0)
    event = s.events[0]
    assert event.equity_at_breach < event.mm_at_breach  # margined as the short it is
    # its bid was cancelled; with nobody offering, the liquidation waits for the book to the end (the
    # lookback, a day at least, keeps the gap in the VaR window for the whole episode)
    assert ep.venue.open_bids[short, 0] == 0 and event.outcome == "open"


def test_a_var_margin_run_that_raises_requirements_re_values_everyone(monkeypatch):
    """Found by the long fuzz profile: a history-based regime's new row (its margin run) raised
    every requirement, but nothing re-valued the accounts until the next publication -- none came
    after a gap on a flat path, and a short ended below MM, never liquidated."""
    from clearing.causality import CauseKind

    s = _var_after_a_gap_up(monkeypatch)
    whale = s.account(10_000_000)
    short = s.account(1_000)
    s.position(whale, short, 5)  # $2,500 short; the +20% gap costs it $500, the flat history margins ~0
    s.run()
    assert [(e.account, e.cause.kind) for e in s.events] == [(short, CauseKind.INTERVAL)]
    assert s.events[0].breach_time == pytest.approx(60.0)  # the first margin run after the gap


def test_the_pre_trade_check_margins_the_side_an_order_can_fill_into(monkeypatch):
    """Found by the fourth long fuzz run: with a resting bid of 1, a sell of 1 ties the two sides,
    the check took the long (VaR after a gap up: almost no margin) and accepted a sell that filled
    into a short needing far more than the account held; the fill's slack shortcut then did not
    re-check it."""
    from sim.core.orders import SELL, TimeInForce

    s = _var_after_a_gap_up(monkeypatch)
    whale = s.account(10_000_000)
    small = s.account(100)
    s.bid(whale, 59_000.0, 100)
    s.bid(small, 40_000.0, 1)  # rests far below the market
    ep = s.ep
    results = []

    def sell() -> None:
        results.append(ep.venue.execute(ep.venue.new_order_id(), small, 0, SELL, 59_000, 1, TimeInForce.IOC))

    ep.world.call_later(70.0, sell)  # after the first margin run that holds the gap
    ep = s.run()
    assert results[0].reject is not None and not results[0].fills
    assert int(ep.ledger.position[small, 0]) == 0
