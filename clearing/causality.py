"""Why each liquidation happened: the records that let metrics walk a cascade as a tree.

A liquidation's cause is either exogenous -- an oracle publication moved the account below
maintenance -- or endogenous: but for an earlier liquidation's price impact on the mark, or a loss
allocation (ADL, socialised loss, default-fund assessment) charged for it, the account would have
stayed at or above maintenance (``clearing.attribution``). Endogenous causes name the parent
liquidation, so each cascade is a tree rooted at an exogenous breach.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

from clearing.attribution import BreachExplanation


class CauseKind(IntEnum):
    ORACLE = 0  # an index publication (exogenous)
    LIQUIDATION = 1  # price impact of an earlier liquidation's trades
    LOSS_ALLOCATION = 2  # ADL, socialised loss or an assessment charged the account
    INTERVAL = 3  # a periodic margin run with no finer attribution (interval cadence, no move)


@dataclass(frozen=True, slots=True)
class Cause:
    kind: CauseKind
    ref: int  # oracle publication number, or the parent liquidation id
    time: float

    @property
    def exogenous(self) -> bool:
        return self.kind in (CauseKind.ORACLE, CauseKind.INTERVAL)


@dataclass(slots=True)
class LiquidationEvent:
    """One liquidation of one account (it may take several steps; each step is a ``LiquidationStep``)."""

    liq_id: int
    account: int
    breach_time: float
    start_time: float
    cause: Cause
    parent: int  # parent liquidation id, -1 for exogenous roots
    generation: int  # 0 for roots
    equity_at_breach: float
    mm_at_breach: float
    outcome: str = "open"  # restored_by_cancel | restored | closed | bankrupt
    why: BreachExplanation = field(default_factory=BreachExplanation)  # the but-for split at the breach
    notional: int = 0  # minor units closed over all steps
    end_time: float = float("nan")


@dataclass(frozen=True, slots=True)
class LiquidationStep:
    """A piece of a liquidation: lots closed by one policy at an average price."""

    liq_id: int
    time: float
    account: int
    instrument: int
    policy: str  # book | backstop | auction | takeover | adl
    lots: int  # signed change of the liquidated account's position
    notional: int  # minor units
    avg_price_ticks: float
    mark_ticks: float
    bankruptcy_ticks: float
    fee: int


class Liquidator(Protocol):
    """What the clearing house and its parts need of the engine they hand breaches to
    (``clearing.liquidation.LiquidationEngine``), declared where both can name it without importing
    each other."""

    def is_active(self, account: int) -> bool: ...

    def register_bidder(self, bidder: Any) -> None: ...

    def liquidations_of(self, account: int) -> set[int]: ...

    def start(self, account: int, equity: float, mm: float, cause: Cause,
              why: BreachExplanation | None = None) -> None: ...
