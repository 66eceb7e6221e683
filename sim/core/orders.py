"""Orders, fills and rejects: the vocabulary shared by the book, the venue and the clearing house.

Prices are integer ticks and sizes integer lots. Sides are the integers +1 (buy) and -1 (sell)
so that signed quantities are ``side * size`` without a branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum, IntFlag

BUY = 1
SELL = -1


class TimeInForce(IntEnum):
    """How long an order may live and how much of it must fill."""

    GTC = 0  # limit order that rests until filled or cancelled
    IOC = 1  # fill what crosses now, cancel the rest
    FOK = 2  # fill entirely now or not at all
    POST_ONLY = 3  # rest without taking liquidity, or be rejected
    MARKET = 4  # IOC bounded by a protection price (never fills beyond it)


class STPMode(IntEnum):
    """Self-trade prevention: what happens when an order would trade with its own account."""

    CANCEL_NEWEST = 0  # the incoming order's remainder is cancelled
    CANCEL_OLDEST = 1  # the resting order is cancelled and matching continues
    DECREMENT_BOTH = 2  # both shrink by the overlap; no trade is printed


class FillFlag(IntFlag):
    """Why a trade happened, so that later layers can trace causes."""

    NONE = 0
    LIQUIDATION = 1
    ADL = 2
    BACKSTOP = 4
    AUCTION = 8
    EXTERNAL = 16  # the no-feedback twin: a liquidation order filled outside the market at the mark


class RejectReason(str, Enum):
    """Machine-readable reasons an order is refused; a reject changes nothing."""

    BAD_TICK = "bad_tick"
    BAD_LOT = "bad_lot"
    NON_POSITIVE_SIZE = "non_positive_size"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    UNKNOWN_ORDER = "unknown_order"
    POST_ONLY_WOULD_CROSS = "post_only_would_cross"
    REDUCE_ONLY_WOULD_INCREASE = "reduce_only_would_increase"
    FOK_CANNOT_FILL = "fok_cannot_fill"
    OUTSIDE_PRICE_BAND = "outside_price_band"
    HALTED = "halted"
    RISK_CHECK_FAILED = "risk_check_failed"
    DUPLICATE_ORDER_ID = "duplicate_order_id"


@dataclass(slots=True)
class Order:
    """A live order. ``size`` is what remains; ``price`` is in ticks (for MARKET, the protection price)."""

    order_id: int
    account: int
    side: int
    price: int
    size: int
    tif: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    flags: FillFlag = FillFlag.NONE


@dataclass(slots=True)
class Fill:
    """One trade between a resting (maker) and an incoming (taker) order."""

    instrument: int
    price: int
    size: int
    aggressor_side: int
    maker_order_id: int
    taker_order_id: int
    maker_account: int
    taker_account: int
    flags: FillFlag = FillFlag.NONE


@dataclass(slots=True)
class SubmitResult:
    """What a submit or amend did: fills, whether a remainder rests, and orders STP removed."""

    order_id: int
    reject: RejectReason | None = None
    fills: list[Fill] = field(default_factory=list)
    resting_size: int = 0
    cancelled_size: int = 0  # incoming remainder cancelled (IOC/MARKET remainder, STP)
    stp_cancelled: list[int] = field(default_factory=list)  # resting order ids removed by STP
    # (resting order id, lots removed) for every resting order STP shrank or removed; a tuple so
    # the common case (no STP) allocates nothing.
    stp_reduced: tuple[tuple[int, int], ...] = ()

    @property
    def accepted(self) -> bool:
        return self.reject is None

    @property
    def filled_size(self) -> int:
        return sum(f.size for f in self.fills)
