"""Liquidation arithmetic (METHODS.md section 7): how much to close, at what worst price, for what fee.

Small pure functions; the clearing house's enforcement code calls them and moves the money.

Units. The float functions work in any one currency unit, as long as prices are that currency per
unit of underlying and sizes are units of underlying (or lots with ``contract_units`` = units of
underlying per lot). The ``*_ticks`` functions work in the ledger's exact units: cash in integer
minor units, prices in integer ticks, sizes in signed integer lots, ``tick_value`` = minor units per
tick per lot (``Instrument.tick_value``).

Sign convention: a position (``lots``) is signed, long > 0, short < 0.
"""

from __future__ import annotations

import math
from fractions import Fraction

__all__ = [
    "partial_liquidation_base",
    "lots_to_restore",
    "bankruptcy_price",
    "bankruptcy_price_ticks",
    "bankruptcy_quote",
    "worst_fill_price",
    "worst_fill_price_ticks",
    "fillable_price",
    "liquidation_fee",
    "settle_liquidation_fee",
]

# Relative slack when turning a float size into whole lots, so 10.000000000000002 lots is 10.
_LOT_EPS = 1e-9


def partial_liquidation_base(shortage: float, price: float, margin_ratio: float,
                             liquidation_fee: float = 0.0, insurance_fee: float = 0.0) -> float:
    """Units of underlying to close so that the margin shortage is covered (Drift v2).

        base = shortage / (P * (mr - liquidation_fee) - P * insurance_fee)

    Closing one unit at price ``P`` releases ``P * mr`` of margin requirement but costs the
    account ``P * liquidation_fee`` (to the liquidator) and ``P * insurance_fee`` (to the insurance
    fund), so each unit closed improves ``equity - requirement`` by the denominator. ``shortage``
    is ``requirement - equity`` in the currency of ``P``; a shortage <= 0 needs nothing closed (0.0).

    Known answer (Drift v2, ``calculate_base_asset_amount_to_cover_margin_shortage``): shortage 10,
    mr 10%, price 100 -> 1.0; with a 1% liquidation fee -> 1.111...; with 1% + 1% insurance fee
    -> 1.25. Raises ``ValueError`` when the denominator is <= 0 (the fees eat all the margin a
    close would release, so no partial close can restore health) or the price is not positive.
    """
    if not price > 0:
        raise ValueError(f"price must be positive, got {price}")
    if shortage <= 0:
        return 0.0
    denominator = price * (margin_ratio - liquidation_fee) - price * insurance_fee
    if not denominator > 0:
        raise ValueError(
            f"partial liquidation cannot restore health: each unit closed releases margin "
            f"{price * margin_ratio:g} (P x mr) but costs fees {price * (liquidation_fee + insurance_fee):g} "
            f"(P x (liquidation_fee + insurance_fee)); denominator {denominator:g} <= 0 -- close the whole position")
    return shortage / denominator


def lots_to_restore(equity: float, mm: float, buffer: float, price: float, margin_ratio: float,
                    contract_units: float, position_lots: int | None = None,
                    liquidation_fee: float = 0.0, insurance_fee: float = 0.0) -> int:
    """Whole lots of one instrument to close so equity is back at ``mm * (1 + buffer)``.

    * target    = mm * (1 + buffer)               (e.g. buffer 0.02: MM + 2%)
    * shortage  = max(target - equity, 0)
    * base      = partial_liquidation_base(shortage, price, margin_ratio * (1 + buffer),
                                           liquidation_fee, insurance_fee)   [units of underlying]
    * lots      = ceil(base / contract_units), capped at |position_lots| when given.

    The margin ratio is scaled by ``(1 + buffer)`` because closing one unit lowers the buffered
    target by ``P * mr * (1 + buffer)``; with that, closing ``base`` units lands exactly on the
    buffered target for a linear margin (Drift adds its buffer to the ratio instead -- the same
    thing for ``buffer = buffer_ratio / mr``). Rounding up to whole lots never leaves the account
    short of the target; a float slack of 1e-9 relative keeps 10.000000000000002 lots at 10.

    ``equity``, ``mm`` and ``price`` must be in one currency unit (e.g. quote minor units and
    minor units per unit of underlying). Returns a non-negative lot count: 0 when equity already
    meets the target. ``ValueError`` as for ``partial_liquidation_base`` when the fees exceed the
    margin released per unit (the caller should then close everything).
    """
    if not contract_units > 0:
        raise ValueError(f"contract_units must be positive, got {contract_units}")
    if buffer < 0:
        raise ValueError(f"buffer must be >= 0, got {buffer}")
    target = mm * (1.0 + buffer)
    shortage = target - equity
    if shortage <= 0:
        return 0
    base = partial_liquidation_base(shortage, price, margin_ratio * (1.0 + buffer),
                                    liquidation_fee, insurance_fee)
    raw = base / contract_units
    lots = max(math.ceil(raw - _LOT_EPS * max(1.0, raw)), 0)
    if position_lots is not None:
        lots = min(lots, abs(int(position_lots)))
    return int(lots)


def bankruptcy_price(equity: float, lots: float, contract_units: float, mark: float) -> float:
    """Price at which closing ``lots`` (signed) leaves the account's equity at exactly zero.

        P_b = mark - equity / (lots * contract_units)

    Every other position stays at ``mark``; closing a long at P < mark loses (mark - P) per unit,
    closing a short at P > mark loses (P - mark). So a long's bankruptcy price is below the mark
    and a short's above it by equity / size (beyond the mark when equity < 0). ``equity`` is in
    the currency of ``mark``. Known answer (dYdX v4): equity 499, long 0.1 BTC, mark 50,000 ->
    45,010. Raises ``ValueError`` for a zero size.
    """
    size = lots * contract_units
    if size == 0:
        raise ValueError("bankruptcy price of a zero position is undefined")
    return mark - equity / size


def bankruptcy_price_ticks(equity_minor: int, lots: int, tick_value: int, mark_ticks: int) -> int:
    """``bankruptcy_price`` in exact ledger units, rounded in the account's favour.

    ``mark_ticks - equity_minor / (lots * tick_value)``, rounded *up* for a long (the account sells
    at it) and *down* for a short (the account buys at it). Closing ``lots`` at the returned price
    therefore leaves the account's equity in ``[0, |lots| * tick_value)`` minor units -- never below
    zero; the sub-tick difference is borne by whoever takes the other side (insurance fund or ADL
    counterparty). Pure integer arithmetic, exact for any size.
    """
    lots, tick_value = int(lots), int(tick_value)
    if lots == 0:
        raise ValueError("bankruptcy price of a zero position is undefined")
    if tick_value <= 0:
        raise ValueError(f"tick_value must be positive, got {tick_value}")
    per_tick = abs(lots) * tick_value
    if lots > 0:
        # ceil(mark - E / per_tick) = mark - floor(E / per_tick)
        return int(mark_ticks) - (int(equity_minor) // per_tick)
    # floor(mark + E / per_tick)
    return int(mark_ticks) + (int(equity_minor) // per_tick)


def bankruptcy_quote(equity: float, lots: float, contract_units: float, mark: float) -> float:
    """Quote amount of closing the whole position at its bankruptcy price (a magnitude).

    ``|P_b * lots * contract_units|``: for a long, what the account must receive for the position
    to end with zero equity; for a short, the most it can pay. Known answer (dYdX v4): BTC 50,000,
    long 0.1 BTC, cash -4,501 (equity 499 < MM 500) -> 4,501.
    """
    return abs(bankruptcy_price(equity, lots, contract_units, mark) * lots * contract_units)


def worst_fill_price(mark: float, bankruptcy: float, fraction: float) -> float:
    """Worst acceptable liquidation price: ``mark + fraction * (bankruptcy - mark)``.

    ``fraction`` 0 is the mark (no slippage allowed), 1 is the bankruptcy price (all of the
    account's remaining equity may be spent on slippage). For a long being sold, the result is the
    limit price of the IOC sell; for a short being bought, of the IOC buy. ``ValueError`` unless
    0 <= fraction <= 1.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return mark + fraction * (bankruptcy - mark)


def worst_fill_price_ticks(mark_ticks: int, bankruptcy_ticks: int, fraction: float) -> int:
    """``worst_fill_price`` in whole ticks, rounded toward the mark.

    Rounding toward the mark keeps the limit at or inside the allowed fraction, so an IOC with this
    limit never fills beyond the bankruptcy price. Fraction 1 gives exactly ``bankruptcy_ticks``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    span = int(bankruptcy_ticks) - int(mark_ticks)
    step = math.floor(abs(span) * fraction + 1e-9)
    step = min(step, abs(span))
    return int(mark_ticks) + (step if span >= 0 else -step)


def fillable_price(mark: float, lots: float, contract_units: float, equity: float, total_mm: float,
                   position_mm: float, bankruptcy_adjustment: float = 1.0,
                   spread_to_mm_ratio: float = 0.1) -> float:
    """dYdX v4's fillable price: the worst price a liquidation order of this position may fill at.

        ABR    = clamp(BA x (1 - TNC / TMMR), 0, 1)          adjusted bankruptcy rating
        spread = ABR x SMMR x PMMR                           quote the liquidation may give up
        price  = mark - spread / size   (long, sells)  or   mark + spread / |size|   (short, buys)

    with TNC the account's total net collateral (``equity``), TMMR its total maintenance
    requirement (``total_mm``), PMMR this position's maintenance requirement (``position_mm``), BA
    the bankruptcy adjustment (``bankruptcy_adjustment`` >= 1) and SMMR the spread-to-maintenance
    ratio (``spread_to_mm_ratio`` in (0, 1]); size = ``lots * contract_units``. An account just
    under maintenance may give up almost nothing; one at or below zero equity the whole
    SMMR x PMMR. The bound does not depend on how much of the position one order closes.

    Known answers (dYdX v4 ``TestGetFillablePrice``; BTC 50,000, 10% maintenance, 0.1 BTC):
    long with cash -4,501 -> 49,999 (BA 1, SMMR 0.1), 49,998 with BA 2; short with cash 5,499 ->
    50,001; long with cash -5,000 (zero equity) -> 49,500. ``ValueError`` for a zero size, a
    non-positive ``total_mm``, BA < 1 or SMMR outside (0, 1].
    """
    size = lots * contract_units
    if size == 0:
        raise ValueError("fillable price of a zero position is undefined")
    if not total_mm > 0:
        raise ValueError(f"total_mm must be positive (an account under maintenance has one), got {total_mm}")
    if not bankruptcy_adjustment >= 1.0:
        raise ValueError(f"bankruptcy_adjustment must be >= 1, got {bankruptcy_adjustment}")
    if not 0.0 < spread_to_mm_ratio <= 1.0:
        raise ValueError(f"spread_to_mm_ratio must be in (0, 1], got {spread_to_mm_ratio}")
    rating = min(max(bankruptcy_adjustment * (1.0 - equity / total_mm), 0.0), 1.0)
    spread = rating * spread_to_mm_ratio * position_mm
    return mark - spread / size


def _exact_rate(rate: float) -> Fraction:
    # 0.29 is stored as 0.28999999999999998; read it as the decimal the user wrote.
    return Fraction(rate).limit_denominator(10**12)


def liquidation_fee(notional: int, rate: float, cap: int | None = None) -> int:
    """Liquidation fee in integer minor units: ``min(floor(|notional| * rate), cap)``.

    ``notional`` is in quote minor units. ``rate`` is read as the nearest fraction with a
    denominator up to 10^12 (so 0.29% is exactly 29/10000) and the product is floored -- the fee
    never exceeds the stated rate. ``cap`` None means uncapped. ``ValueError`` for a negative rate
    or cap.
    """
    if rate < 0:
        raise ValueError(f"liquidation fee rate must be >= 0, got {rate}")
    if cap is not None and cap < 0:
        raise ValueError(f"liquidation fee cap must be >= 0, got {cap}")
    r = _exact_rate(rate)
    fee = abs(int(notional)) * r.numerator // r.denominator
    if cap is not None:
        fee = min(fee, int(cap))
    return int(fee)


def settle_liquidation_fee(surplus: int, fee: int) -> tuple[int, int]:
    """Split a liquidation fill between the fee owed and any deficit (METHODS.md section 7).

    ``surplus`` is what the fill left above the bankruptcy price, in minor units:
    ``(fill_ticks - bankruptcy_ticks) * lots * tick_value`` for the signed ``lots`` closed (>= 0
    when the fill beat the bankruptcy price). Returns ``(fee_to_fund, deficit)``:

    * surplus >= fee: the full fee goes to the insurance fund, no deficit;
    * 0 <= surplus < fee: only the surplus is collected (the fee never makes an account bankrupt);
    * surplus < 0: no fee, and the fund owes ``-surplus`` (the fill was worse than bankruptcy).
    """
    surplus, fee = int(surplus), int(fee)
    if fee < 0:
        raise ValueError(f"fee must be >= 0, got {fee}")
    if surplus < 0:
        return 0, -surplus
    return min(fee, surplus), 0
