"""Book steps that cannot fill (issue 18: liquidation steps grew faster than liquidations).

In a crash most book steps find the book below their limit and retry a second later. The engine
now reads the top of the book before it sends (an order nothing can fill is not sent), and a step
whose inputs -- the house's valuation epoch, the account's and the vault's rows and resting
orders -- are unchanged since a step that filled nothing, with the book still unable to fill,
repeats that step without re-valuing. These tests pin the known answers (no order sent while the
book is below the limit; the fill at the first step after a bid arrives; the hand-over at the first
step after the vault can take it) and show that the shortcut changes nothing: each scenario run
with every step taken in full gives the same valuations, steps, outcomes and ledger -- and a
shortcut that ignored one of its inputs would not (the controls at the end fail it).
"""

from __future__ import annotations

from typing import Callable

import pytest

from clearing.ledger import QUOTE
from sim.experiment.assembled import Episode
from tests.scenarios.harness import USD, Scenario

# the account breaches at the crash (t=100: equity $280 against $414 MM), stays above zero, and a
# second leg at t=130 takes it lower; every step's order is limited at the bankruptcy price
TWO_LEGS = {"paths": {"shocks": [{"kind": "crash", "start": 100.0, "drop": 0.08, "duration": 1.0},
                                 {"kind": "crash", "start": 130.0, "drop": 0.02, "duration": 1.0}]}}
VAULT = {"clearing": {"liquidation": {"backstop": {"enabled": True, "capital": 100.0, "equity_fraction_of_mm": 1.0}}}}


def _scenario(*overrides: dict, bid_at: float | None = None, fund_vault_at: float | None = None,
              patch: Callable | None = None) -> tuple[Scenario, int]:
    s = Scenario(TWO_LEGS, *overrides, {"duration": 200.0})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)  # nothing rests on the book: no step can fill
    ep = s.ep
    if bid_at is not None:
        ep.world.call_later(bid_at, lambda: s.bid(whale, 45_000.0, 100))
    if fund_vault_at is not None:
        ep.world.call_later(fund_vault_at, lambda: ep.ledger.deposit(ep.backstop_account, QUOTE, 1_000_000 * USD))
    if patch is not None:
        patch(ep)
    return s, trader


def _every_step_in_full(ep: Episode) -> None:
    """Never take the shortcut: no two steps' inputs compare equal."""
    ep.engine._inputs_of = lambda account: (object(),)


def _outcome(s: Scenario) -> dict:
    ep = s.run()
    return {"health_checks": list(ep.engine.health_checks), "steps": repr(ep.engine.steps),  # repr: a hand-over has no bankruptcy price (nan != nan)
            "events": [(e.outcome, e.end_time) for e in ep.engine.events],
            "position": ep.ledger.position.tolist(), "cash": ep.ledger.cash.tolist(),
            "fills": ep.venue.counts["fills"], "orders": ep.venue.counts["orders"]}


def _valuations(ep: Episode) -> list[float]:
    """Times the engine values an account (a spy on its one-account valuation)."""
    times: list[float] = []
    value = ep.engine._value

    def spy(account: int):
        times.append(ep.world.now)
        return value(account)

    ep.engine._value = spy
    return times


def test_an_order_the_book_cannot_fill_is_not_sent():
    s, trader = _scenario()
    ep = s.run(until=199.0)
    assert ep.venue.counts["orders"] == 0  # the harness placed none; the engine sent none
    assert s.events[0].outcome == "open" and int(ep.ledger.position[trader, 0]) == 18
    # still a decision at every step -- the breach at the t=101 publication, the latency's 0.25 s,
    # then the 5 s cool-down of a partial order -- each below MM
    times = [t for _liq, t, _e, _m in ep.engine.health_checks]
    assert len(times) == 20 and times[0] == pytest.approx(101.25)
    assert all(b - a == pytest.approx(5.0) for a, b in zip(times, times[1:]))
    assert all(0 < e < mm for _liq, _t, e, mm in ep.engine.health_checks)


def test_repeated_steps_are_not_revalued_until_something_they_read_changes():
    s, _ = _scenario()
    valued = _valuations(s.ep)
    s.run(until=199.0)
    # the first step, then only steps after a publication (the second leg, the heartbeats)
    publications = [t for t, *_ in s.ep.house.margin_samples]
    assert 2 <= len(valued) < 10  # of the 20 steps
    assert all(any(p < t <= p + 1.0 for p in publications) for t in valued[1:])


def test_a_bid_that_arrives_is_taken_at_the_next_step():
    s, trader = _scenario(bid_at=150.5)
    ep = s.run()
    book_steps = [st for st in s.steps if st.policy == "book"]
    assert len(book_steps) == 1 and book_steps[0].time == pytest.approx(151.25)
    assert ep.venue.counts["orders"] == 2  # the bid and the one liquidation order that met it
    assert s.events[0].outcome in ("restored", "closed")


def test_a_vault_that_can_take_the_positions_takes_them_at_the_next_step():
    s, trader = _scenario(VAULT, fund_vault_at=150.5)
    ep = s.run()
    backstop = [st for st in s.steps if st.policy == "backstop"]
    assert len(backstop) == 1 and backstop[0].time == pytest.approx(151.25) and backstop[0].lots == -18
    assert not ep.ledger.position[trader].any()


@pytest.mark.parametrize("overrides, kwargs", [
    ((), {}),                                      # the second leg: a publication moves the valuation
    ((), {"bid_at": 150.5}),                       # the book: a bid arrives
    ((VAULT,), {"fund_vault_at": 150.5}),          # the vault: it can take the positions
], ids=["publication", "book", "vault"])
def test_the_shortcut_gives_what_every_step_in_full_gives(overrides, kwargs):
    fast = _outcome(_scenario(*overrides, **kwargs)[0])
    full = _outcome(_scenario(*overrides, **kwargs, patch=_every_step_in_full)[0])
    assert fast == full


@pytest.mark.parametrize("overrides, kwargs, drop", [
    ((), {}, lambda inputs: inputs[1:]),                        # without the valuation epoch
    ((VAULT,), {"fund_vault_at": 150.5}, lambda inputs: inputs[:5]),  # without the vault's rows
], ids=["no-epoch", "no-vault"])
def test_controls_a_shortcut_blind_to_one_input_changes_the_results(overrides, kwargs, drop):
    def blind(ep: Episode) -> None:
        inputs_of = ep.engine._inputs_of
        ep.engine._inputs_of = lambda account: drop(inputs_of(account))

    blinded = _outcome(_scenario(*overrides, **kwargs, patch=blind)[0])
    full = _outcome(_scenario(*overrides, **kwargs, patch=_every_step_in_full)[0])
    assert blinded != full
