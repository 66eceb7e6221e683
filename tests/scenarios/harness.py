"""A small hand-built clearing scenario: one perpetual, a scripted price path, accounts placed by hand.

Tests set up positions and resting liquidity directly (trades through the ledger at t=0, orders
through the venue with no latency), then run the clock and inspect what the clearing house did.
"""

from __future__ import annotations

from typing import Any

from clearing.ledger import QUOTE
from sim.experiment.io import deep_merge
from sim.experiment.config import parse_episode
from sim.experiment.assembled import Episode
from sim.experiment.episode import build, verify
from sim.core.orders import BUY, SELL, TimeInForce
from sim.experiment.recorder import Recorder

USD = 1_000_000  # minor units per dollar

BASE: dict[str, Any] = {
    "name": "scenario",
    "seed": 1,
    "duration": 600.0,
    "market": {"instruments": [
        {"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.01},
    ]},
    "paths": {"dt": 1.0, "models": [
        {"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0, "vol": 0.0}]},
    ]},
    "oracle": {"sample_interval": 1.0, "heartbeat": 30.0, "deviation": 0.0005, "mark_basis_cap": 0.0},
    "venue": {"maker_fee_bps": 0.0, "taker_fee_bps": 0.0, "price_band": 0.5, "market_protection": 0.3,
              "to_venue_latency": {"kind": "constant", "mean": 0.001},
              "to_agent_latency": {"kind": "constant", "mean": 0.001}},
    "margin": {"regime": "standard", "tiers": [{"im_rate": 0.10, "mm_rate": 0.05}]},
    "clearing": {
        "liquidation": {"policy": "book", "fee_rate": 0.0,
                        "book": {"latency": 0.25, "worst_price": "bankruptcy", "cooldown": 5.0},
                        "backstop": {"enabled": False}},
        "loss_absorption": {"insurance_fund": 1_000_000.0},
        "funding": {"enabled": False},
    },
    "population": {"groups": []},
    "outputs": {"sample_interval": 10.0},
}


def crash(start: float, drop: float, duration: float = 1.0) -> dict[str, Any]:
    return {"paths": {"shocks": [{"kind": "crash", "start": start, "drop": drop, "duration": duration}]}}


class Scenario:
    """Build an episode from BASE + overrides; place accounts and orders; run; check invariants."""

    def __init__(self, *overrides: dict[str, Any]) -> None:
        data = BASE
        for o in overrides:
            data = deep_merge(data, o)
        self.config = parse_episode(data, "scenario")
        self.ep: Episode = build(self.config)
        self.recorder = Recorder(self.ep, self.config.outputs.sample_interval)
        self.recorder.attach()
        self.ep.recorder = self.recorder

    def account(self, dollars: float) -> int:
        a = self.ep.ledger.open_account()
        self.ep.ledger.deposit(a, QUOTE, int(dollars * USD))
        self.ep.venue.resting.ensure(self.ep.ledger.n_accounts)
        return a

    def position(self, buyer: int, seller: int, lots: int, price: float = 50_000.0, instrument: int = 0) -> None:
        ticks = int(round(price / self.ep.table.tick_size[instrument]))
        self.ep.ledger.trade(buyer, seller, instrument, ticks, lots)

    def bid(self, account: int, price: float, lots: int, instrument: int = 0) -> int:
        return self._order(account, BUY, price, lots, instrument)

    def ask(self, account: int, price: float, lots: int, instrument: int = 0) -> int:
        return self._order(account, SELL, price, lots, instrument)

    def _order(self, account: int, side: int, price: float, lots: int, instrument: int) -> int:
        oid = self.ep.venue.new_order_id()
        ticks = int(round(price / self.ep.table.tick_size[instrument]))
        result = self.ep.venue.execute(oid, account, instrument, side, ticks, lots, TimeInForce.GTC, check_risk=False)
        assert result.reject is None, result.reject
        return oid

    def run(self, until: float | None = None) -> Episode:
        ep = self.ep
        ep.oracle.start()
        ep.world.run(until=until or self.config.duration)
        verify(ep)
        return ep

    @property
    def events(self):
        return self.ep.engine.events

    @property
    def steps(self):
        return self.ep.engine.steps

    def losses(self) -> dict[str, int]:
        return dict(self.ep.absorber.absorbed)

    def equity(self, account: int) -> float:
        return self.ep.house.account_equity(account) / USD
