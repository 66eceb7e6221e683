"""But-for breach attribution and distress spells, on scenarios whose answer is known.

Each scenario is built so that one channel decides: a forced sale into a thin book that drags the
mark through a second account's maintenance with no index move (endogenous, generation 1); the
same flow into a deep book (the second account breaches later on an index move: a root); a
collateral depeg (exogenous, collateral channel); a socialised charge (endogenous through the loss
allocation); one account liquidated in several partial steps (one spell, one cascade node).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from clearing.attribution import endogenous_rule
from clearing.causality import CauseKind
from clearing.ledger import QUOTE
from sim.experiment.metrics import summarise
from tests.scenarios.harness import USD, Scenario, crash

CHANNELS = ("equity_change_index", "equity_change_collateral", "equity_change_impact", "equity_change_allocation",
            "equity_change_other")


def but_for_holds(liquidations: dict[str, np.ndarray], materiality: float = 0.01) -> None:
    """The documented rule, re-checked from the liquidations table's own columns."""
    loss = -(liquidations["equity_change_impact"] + liquidations["equity_change_allocation"])
    mm = liquidations["mm_at_breach"]
    rule = (loss > 0) & (loss >= materiality * mm) & (liquidations["equity_at_breach"] + loss >= mm)
    np.testing.assert_array_equal(liquidations["endogenous"], rule)
    linked = np.isin(liquidations["cause"].astype(str), ("liquidation", "loss_allocation"))
    np.testing.assert_array_equal(liquidations["endogenous"], linked)
    np.testing.assert_array_equal(liquidations["parent"] >= 0, linked)
    np.testing.assert_array_equal(liquidations["generation"] > 0, linked)


def _mark_contagion(deep: bool) -> tuple[Scenario, int, int]:
    """A (thin margin) breaches on a 6% index drop and is liquidated through the book; B, healthy
    after the drop, holds the same position. After the crash the book is either thin (one lot near
    the index, then nothing above $40,000) or deep (1,000 lots at $46,900). A further 10% index drop
    at t=200 breaches B in any case."""
    shocks = {"paths": {"shocks": [{"kind": "crash", "start": 100.0, "drop": 0.06, "duration": 1.0},
                                   {"kind": "crash", "start": 200.0, "drop": 0.10, "duration": 1.0}]}}
    s = Scenario(shocks, {"oracle": {"mark_basis_cap": 0.05, "mark_basis_window": 1.0}})
    whale = s.account(10_000_000)
    a = s.account(1_000)
    b = s.account(1_100)
    s.position(a, whale, 19)  # after the 6% drop: equity $430 < MM $446.5
    s.position(b, whale, 19)  # after the drop: equity $530 > MM $446.5; a 5% basis takes $446
    s.ask(whale, 50_100.0, 1000)
    s.bid(whale, 49_900.0, 1000)

    def requote_after_the_crash() -> None:
        s.ep.venue.cancel_all_now(whale)
        s.ask(whale, 47_100.0, 1000)
        if deep:
            s.bid(whale, 46_900.0, 1000)
        else:
            s.bid(whale, 46_900.0, 1)
            s.bid(whale, 40_000.0, 1000)

    s.ep.world.call_later(102.0, requote_after_the_crash)
    s.run(300.0)
    return s, a, b


def test_a_forced_sale_into_a_thin_book_makes_the_next_breach_a_generation_one_child():
    s, a, b = _mark_contagion(deep=False)
    first = s.events[0]
    assert first.account == a and first.generation == 0 and first.cause.kind == CauseKind.ORACLE
    b_first = next(e for e in s.events if e.account == b)
    assert b_first.breach_time < 200.0  # before the second index drop: the book did it
    why = b_first.why
    assert why.endogenous and why.parent == first.liq_id
    assert b_first.cause.kind == CauseKind.LIQUIDATION and b_first.parent == first.liq_id
    assert b_first.generation == 1
    assert why.equity_change_index == pytest.approx(0.0, abs=1e-6)  # the index moved nothing since B was healthy
    # the clamp lets the book take 5% of the index off the mark: 0.19 BTC x 5% x $47,000 = $446.50
    assert why.equity_change_impact == pytest.approx(-446.5 * USD, rel=1e-6)
    assert b_first.equity_at_breach - why.equity_change_impact >= b_first.mm_at_breach
    # A's own re-breaches are never contagion from itself
    assert all(not e.why.endogenous and e.generation == 0 for e in s.events if e.account == a)
    liquidations = s.recorder.tables()["liquidations"]
    but_for_holds(liquidations)
    summary = summarise(s.config, s.recorder.tables())
    assert summary["cascades"]["max_generation"] == 1 and summary["cascades"]["endogenous_count"] >= 1
    assert summary["liquidations"]["endogenous_breaches"] == int(liquidations["endogenous"].sum()) >= 1
    assert summary["liquidations"]["attribution_materiality"] == s.config.clearing.attribution.materiality


def test_the_same_sale_into_a_deep_book_leaves_the_second_account_a_root():
    s, a, b = _mark_contagion(deep=True)
    assert s.events[0].account == a
    b_first = next(e for e in s.events if e.account == b)
    assert b_first.breach_time >= 200.0  # only the second index drop breaches it
    assert not b_first.why.endogenous and b_first.generation == 0 and b_first.cause.kind == CauseKind.ORACLE
    assert b_first.why.equity_change_impact == pytest.approx(0.0, abs=1e-6)
    assert b_first.why.equity_change_index < 0
    liquidations = s.recorder.tables()["liquidations"]
    but_for_holds(liquidations)
    assert not liquidations["endogenous"].any()  # the control: nothing endogenous at all
    summary = summarise(s.config, s.recorder.tables())
    assert summary["cascades"]["endogenous_count"] == 0 and summary["liquidations"]["endogenous_breaches"] == 0


def _depeg() -> dict[str, Any]:
    return {
        "market": {"collateral": [{"name": "USDE", "decimals": 6, "haircut": 0.05, "price_source": "USDE"}]},
        "paths": {"models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0, "vol": 0.0}]},
                             {"kind": "gbm", "underlyings": [{"name": "USDE", "s0": 1.0, "vol": 0.0}]}],
                  "shocks": [{"kind": "depeg", "underlying": "USDE", "start": 100.0, "trough": 0.3,
                              "duration": 10.0}]},
    }


def test_a_collateral_depeg_breach_is_exogenous_through_the_collateral_channel():
    s = Scenario(_depeg())
    whale = s.account(10_000_000)
    trader = s.account(100)
    s.ep.ledger.deposit(trader, 1, 2_000 * USD)  # 2,000 USDE: $1,900 after the 5% haircut
    s.position(trader, whale, 38)  # $19,000 long: MM $950; equity $2,000 at the peg
    s.bid(whale, 49_900.0, 1000)
    s.run(200.0)
    first = next(e for e in s.events if e.account == trader)
    why = first.why
    assert not why.endogenous and first.cause.kind == CauseKind.ORACLE and first.generation == 0
    assert why.equity_change_index == pytest.approx(0.0, abs=1e-6)
    assert why.equity_change_impact == 0.0 and why.equity_change_allocation == 0.0
    assert why.equity_change_collateral < 0
    # what the depeg took since the last healthy valuation is the whole fall below maintenance
    assert first.equity_at_breach - why.equity_change_collateral - why.equity_change_other >= first.mm_at_breach
    but_for_holds(s.recorder.tables()["liquidations"])


def test_a_socialised_charge_that_breaches_an_account_links_it_to_the_bankrupt_liquidation():
    # every holder pays (the default charges only the profitable side, and ``thin`` is a losing long)
    s = Scenario(crash(100.0, 0.40), {"clearing": {"loss_absorption": {
        "insurance_fund": 0.0, "adl": "off", "socialised": "open_interest", "socialised_side": "all",
        "order": ["insurance_fund", "socialised"]}}})
    trader = s.account(1_000)
    s1, s2, s3 = s.account(2_000), s.account(5_000), s.account(10_000)
    whale = s.account(10_000_000)
    thin = s.account(870)
    s.position(trader, s1, 4)
    s.position(trader, s2, 4)
    s.position(whale, s3, 4)
    s.position(thin, s3, 4)  # at $30,000: lost $800, equity $70 >= MM $60 -- until it is charged
    bidder = s.account(1_000_000)
    s.bid(bidder, 25_000.0, 100)
    s.run()
    bankrupt = next(e for e in s.events if e.account == trader)
    (charged,) = [e for e in s.events if e.account == thin][:1]
    why = charged.why
    assert why.endogenous and why.parent == bankrupt.liq_id and why.parent_by_allocation
    assert charged.cause.kind == CauseKind.LOSS_ALLOCATION and charged.generation == bankrupt.generation + 1
    # breached the instant it was charged, not at its next valuation
    assert charged.breach_time == pytest.approx(bankrupt.end_time)
    paid = sum(t.amount for t in s.ep.ledger.journal if t.reason == "socialised loss" and t.source == thin
               and t.time <= charged.breach_time)
    assert why.equity_change_allocation == pytest.approx(-paid)
    assert why.equity_change_index == pytest.approx(0.0, abs=1e-6)
    but_for_holds(s.recorder.tables()["liquidations"])


def _partial_steps(quiet: float) -> Scenario:
    shocks = {"paths": {"shocks": [{"kind": "crash", "start": 100.0, "drop": 0.10, "duration": 1.0},
                                   {"kind": "crash", "start": 160.0, "drop": 0.03, "duration": 1.0}]}}
    s = Scenario(shocks, {"outputs": {"spell_quiet_time": quiet}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    s.bid(whale, 44_900.0, 1000)
    s.bid(whale, 43_400.0, 1000)
    s.run(300.0)
    return s


def test_an_account_liquidated_in_several_partial_steps_is_one_spell():
    s = _partial_steps(quiet=300.0)
    assert len(s.events) >= 2 and {e.account for e in s.events} == {s.events[0].account}
    assert s.events[0].outcome == "restored"  # the partial step restored it; the second drop re-breached it
    tables = s.recorder.tables()
    assert set(tables["liquidations"]["spell"].tolist()) == {s.events[0].liq_id}
    summary = summarise(s.config, tables)
    assert summary["liquidations"]["count"] == len(s.events)
    assert summary["liquidations"]["spells"] == 1
    assert summary["cascades"]["count"] == 1 and summary["cascades"]["largest_size"] == 1
    # one spell, several liquidations: the largest cascade's size in liquidations is all of them
    assert summary["cascades"]["largest_liquidations"] == len(s.events)
    from sim.experiment.compare_report import cascade_sizes

    sizes, generations = cascade_sizes(tables)  # the comparison's figure counts the same trees
    assert sizes.tolist() == [len(s.events)] and generations.tolist() == [0]


def test_a_breach_after_the_quiet_time_starts_a_new_spell():
    s = _partial_steps(quiet=10.0)  # the control: the same run, but 59 s of health is a new spell
    tables = s.recorder.tables()
    assert len(set(tables["liquidations"]["spell"].tolist())) == len(s.events) >= 2
    assert summarise(s.config, tables)["cascades"]["count"] == len(s.events)


def test_no_liquidation_means_no_spell_and_no_cascade():
    s = Scenario()
    whale = s.account(10_000_000)
    trader = s.account(100_000)
    s.position(trader, whale, 1)
    s.run(120.0)
    summary = summarise(s.config, s.recorder.tables())
    assert summary["liquidations"]["spells"] == 0 and summary["cascades"]["count"] == 0
    assert summary["cascades"]["largest_size"] == 0 and summary["cascades"]["largest_liquidations"] == 0
    assert int(s.ep.ledger.cash[trader, QUOTE]) < 100_000 * USD  # it did trade: the control is not empty


@pytest.mark.parametrize(("equity", "impact", "allocation", "endogenous"), [
    (90.0, -20.0, 0.0, True),  # 90 + 20 >= 100: but for the impact it would have held
    (90.0, 0.0, -15.0, True),  # the same through a loss allocation
    (70.0, -20.0, 0.0, False),  # 70 + 20 < 100: it would have breached anyway
    (99.5, -0.6, 0.0, False),  # 0.6 < 1% of MM: immaterial, however close the account was
    (99.0, -1.0, 0.0, True),  # exactly 1% of MM and exactly back to MM
    (90.0, 20.0, -5.0, False),  # the endogenous channels gained it money overall
])
def test_the_but_for_rule_with_its_materiality(equity, impact, allocation, endogenous):
    assert endogenous_rule(equity, 100.0, impact, allocation, materiality=0.01) is endogenous


def test_a_re_breach_inside_a_spell_is_no_generation_of_its_own():
    """Known answer for the figures' generations (the run report's cascade tree, the comparison's
    distributions): liquidation 1 is account A's re-breach inside spell 0, caused by its own
    liquidation 0; liquidation 2 starts account B's spell, caused by liquidation 1; 3 is a root.
    By event links the generations would be 0, 1, 2, 0; by spells, as the headline counts, 0, 0, 1, 0."""
    from sim.experiment.spells import spell_generations

    liq, parent = np.array([0, 1, 2, 3]), np.array([-1, 0, 1, -1])
    spell, notional = np.array([0, 0, 2, 3]), np.array([10.0, 5.0, 7.0, 1.0])
    assert spell_generations(liq, parent, spell, notional).tolist() == [0, 0, 1, 0]
    # the control: every liquidation its own spell gives the event links' generations
    assert spell_generations(liq, parent, liq, notional).tolist() == [0, 1, 2, 0]
