"""What every trader agent shares: its account, its random stream, and public reads of the market.

Agents are simpy processes (or scheduled callbacks) that wake on their own schedule or on events,
read only public state -- books, the oracle's published index, marks, their own account -- and act
through the venue, whose messages carry latency. They never touch the ledger or another account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from clearing.ledger import QUOTE
from sim.orders import SubmitResult, TimeInForce

if TYPE_CHECKING:
    from clearing.house import ClearingHouse
    from clearing.instruments import InstrumentTable
    from clearing.ledger import Ledger
    from sim.kernel import World
    from sim.mark import MarkPricer
    from sim.oracle import Oracle
    from sim.venue import Venue


@dataclass(slots=True)
class AgentContext:
    """The handles an agent is built with (read-only use of everything but the venue)."""

    world: "World"
    venue: "Venue"
    ledger: "Ledger"
    oracle: "Oracle"
    marks: "MarkPricer"
    house: "ClearingHouse"
    table: "InstrumentTable"


class Agent:
    """Base class: public reads and order helpers. Subclasses implement ``start``."""

    kind: ClassVar[str] = "agent"

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator) -> None:
        self.ctx = ctx
        self.name = name
        self.account = account
        self.rng = rng
        self.orders_sent = 0
        self.rejects = 0

    def start(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ public reads
    @property
    def now(self) -> float:
        return self.ctx.world.now

    def best_bid(self, instrument: int) -> int | None:
        return self.ctx.venue.books[instrument].best_bid()

    def best_ask(self, instrument: int) -> int | None:
        return self.ctx.venue.books[instrument].best_ask()

    def mid(self, instrument: int) -> float | None:
        return self.ctx.venue.books[instrument].mid()

    def mark_ticks(self, instrument: int) -> float:
        return float(self.ctx.marks.ticks[instrument])

    def index_ticks(self, instrument: int) -> float:
        """The oracle's published index of ``instrument``'s underlying, in its ticks."""
        return float(self.ctx.marks.index_ticks[instrument]) if self.ctx.table.kind[instrument] != 2 else float(
            self.ctx.marks.index[self.ctx.table.underlying_index[instrument]] / self.ctx.table.tick_size[instrument])

    def position(self, instrument: int) -> int:
        return int(self.ctx.ledger.position[self.account, instrument])

    def cash(self) -> int:
        return int(self.ctx.ledger.cash[self.account, QUOTE])

    def equity(self) -> float:
        """Own equity in quote minor units at current marks."""
        return self.ctx.house.account_equity(self.account)

    # ------------------------------------------------------------------ actions (with latency)
    def submit(self, instrument: int, side: int, price: int, lots: int, tif: TimeInForce = TimeInForce.GTC,
               reduce_only: bool = False, on_result: Any = None) -> int:
        self.orders_sent += 1
        return self.ctx.venue.submit(self.account, instrument, side, max(1, int(price)), int(lots), tif,
                                     reduce_only, on_result)

    def cancel(self, order_id: int, instrument: int) -> None:
        self.ctx.venue.cancel(order_id, instrument)

    def cancel_all(self, instrument: int | None = None) -> None:
        self.ctx.venue.cancel_all(self.account, instrument)

    def _on_result(self, result: SubmitResult) -> None:
        if result.reject is not None:
            self.rejects += 1
