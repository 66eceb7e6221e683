"""Isolated vs cross margin on a two-position account.

Source: how venues define isolated margin -- Binance ("Isolated Margin: the margin assigned to a
position is restricted to a certain amount; if it falls below maintenance, that position alone is
liquidated and the rest of the balance is not used"), dYdX v4 (isolated positions are held in their
own subaccount, funded from the parent). The case: $3,000 of collateral, long 0.2 BTC at 50,000 and
long 5 ETH at 2,000 ($10,000 each; IM 10%, MM 5%). ETH falls 30% (-$3,000):

* cross: one pool -- equity 0 against MM 850, the account is liquidated, BTC included;
* isolated: each position funded with its IM ($1,000); the ETH position (equity -$2,000) is
  liquidated alone and its deficit is the insurance fund's; the BTC position and the owner's free
  $1,000 are untouched.
"""

from __future__ import annotations

import pytest

from clearing.ledger import QUOTE
from sim.core.orders import BUY, SELL, TimeInForce
from tests.scenarios.harness import USD, Scenario

TWO = {
    "market": {"instruments": [
        {"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.01},
        {"symbol": "ETH-PERP", "kind": "perpetual", "underlying": "ETH", "tick_size": 1.0, "lot_size": 0.1}]},
    "paths": {"models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0, "vol": 0.0},
                                                        {"name": "ETH", "s0": 2_000.0, "vol": 0.0}]}],
              "shocks": [{"kind": "crash", "underlyings": ["ETH"], "start": 100.0, "drop": 0.30, "duration": 1.0}]},
    "clearing": {"liquidation": {"book": {"worst_price": "band"}},
                 "loss_absorption": {"insurance_fund": 1_000_000.0, "adl": "off", "socialised": "off"}},
}


def _scenario(mode: str) -> Scenario:
    return Scenario(TWO, {"margin": {"regime": mode, "tiers": [{"im_rate": 0.10, "mm_rate": 0.05}]}})


def _open(s: Scenario, owner: int, whale: int) -> None:
    """The owner buys 20 BTC lots and 50 ETH lots from the whale's asks through the venue."""
    venue = s.ep.venue
    s.ask(whale, 50_000.0, 20, instrument=0)
    s.ask(whale, 2_000.0, 50, instrument=1)
    iso = s.ep.isolated
    for i, lots, price in ((0, 20, 50_000), (1, 50, 2_000)):
        account = owner if iso is None else iso.account_for(owner, i)
        result = venue.execute(venue.new_order_id(), account, i, BUY, price, lots, TimeInForce.IOC)
        assert sum(f.size for f in result.fills) == lots, result.reject


def _bids(s: Scenario, whale: int) -> None:
    s.bid(whale, 49_000.0, 100, instrument=0)
    s.bid(whale, 1_390.0, 500, instrument=1)


def test_cross_margin_liquidates_the_whole_account_when_one_position_loses():
    s = _scenario("standard")
    whale, owner = s.account(10_000_000), s.account(3_000)
    _open(s, owner, whale)
    _bids(s, whale)
    ep = s.run(300.0)
    assert ep.isolated is None
    assert [e.account for e in s.events] == [owner]
    assert not ep.ledger.position[owner].any()  # BTC went with it


def test_isolated_margin_liquidates_the_losing_position_alone():
    s = _scenario("standard_isolated")
    whale, owner = s.account(10_000_000), s.account(3_000)
    _open(s, owner, whale)
    iso = s.ep.isolated
    btc, eth = iso.account_for(owner, 0), iso.account_for(owner, 1)
    # each position funded with exactly its IM; the rest stays with the owner
    assert s.ep.house.account_equity(btc) == pytest.approx(1_000 * USD)
    assert s.ep.house.account_equity(eth) == pytest.approx(1_000 * USD)
    assert int(s.ep.ledger.cash[owner, QUOTE]) == 1_000 * USD
    _bids(s, whale)
    fund_before = s.ep.fund.balance()
    ep = s.run(300.0)
    assert [e.account for e in s.events] == [eth]  # only the ETH position was liquidated
    assert not ep.ledger.position[eth].any()
    assert ep.ledger.position[btc, 0] == 20  # the BTC position is untouched
    assert s.ep.house.account_equity(btc) == pytest.approx(1_000 * USD)
    assert int(ep.ledger.cash[owner, QUOTE]) == 1_000 * USD  # and so is the owner's free collateral
    # 50 ETH lots (5 ETH) sold at 1,390 against entry 2,000: -3,050 on 1,000 of margin
    assert fund_before - s.ep.fund.balance() == 2_050 * USD
    assert int(ep.ledger.cash[eth, QUOTE]) == 0


def test_an_underfunded_isolated_order_is_refused_and_a_flat_position_returns_its_margin():
    s = _scenario("standard_isolated")
    whale, owner = s.account(10_000_000), s.account(500)
    iso = s.ep.isolated
    venue = s.ep.venue
    s.ask(whale, 50_000.0, 20, instrument=0)
    sub = iso.account_for(owner, 0)
    # 0.2 BTC needs $1,000 of IM; the owner has $500: refused, nothing moved but what it had
    result = venue.execute(venue.new_order_id(), sub, 0, BUY, 50_000, 20, TimeInForce.IOC)
    assert result.reject is not None and not s.ep.ledger.position[sub].any()
    iso.sweep(sub)
    assert int(s.ep.ledger.cash[owner, QUOTE]) == 500 * USD and int(s.ep.ledger.cash[sub, QUOTE]) == 0
    # 0.1 BTC fits ($500): bought, then sold back at 49,999: the margin, less the $0.10 lost, returns
    result = venue.execute(venue.new_order_id(), sub, 0, BUY, 50_000, 10, TimeInForce.IOC)
    assert sum(f.size for f in result.fills) == 10
    assert int(s.ep.ledger.cash[owner, QUOTE]) == 0
    s.bid(whale, 49_999.0, 10, instrument=0)
    venue.execute(venue.new_order_id(), sub, 0, SELL, 49_999, 10, TimeInForce.IOC, reduce_only=True)
    s.ep.world.run(until=1.0)
    assert not s.ep.ledger.position[sub].any()
    assert int(s.ep.ledger.cash[owner, QUOTE]) == 499_900_000 and int(s.ep.ledger.cash[sub, QUOTE]) == 0


def test_a_chosen_leverage_funds_the_position_to_notional_over_leverage():
    """Binance/dYdX: an isolated position opened at 4x holds notional / 4 of margin, not the IM of
    the regime's maximum leverage (10x here)."""
    s = _scenario("standard_isolated")
    whale, owner = s.account(10_000_000), s.account(3_000)
    iso, venue = s.ep.isolated, s.ep.venue
    s.ask(whale, 50_000.0, 20, instrument=0)
    iso.set_leverage(owner, 0, 4.0)
    sub = iso.account_for(owner, 0)
    venue.execute(venue.new_order_id(), sub, 0, BUY, 50_000, 20, TimeInForce.IOC)
    assert s.ep.ledger.position[sub, 0] == 20
    assert s.ep.house.account_equity(sub) == pytest.approx(2_500 * USD)  # $10,000 / 4
    assert int(s.ep.ledger.cash[owner, QUOTE]) == 500 * USD
    with pytest.raises(ValueError, match="leverage must be positive"):
        iso.set_leverage(owner, 0, 0.0)
