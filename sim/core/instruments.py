"""Collateral assets and derivative contract specifications.

A contract's price is quoted in its settlement asset per unit of underlying; the book trades it in
integer ticks of ``tick_size`` and integer lots of ``lot_size`` contracts, each contract being
``multiplier`` units of the underlying. ``tick_value`` -- the cash, in minor units of the
settlement asset, of one tick on one lot -- must be a whole number so that every trade moves an
exact integer amount of cash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

SECONDS_PER_YEAR = 365.0 * 24.0 * 3600.0


class InstrumentKind(IntEnum):
    PERPETUAL = 0
    FUTURE = 1
    OPTION = 2


@dataclass(frozen=True, slots=True)
class Asset:
    """A collateral asset. ``price_source`` names the index that prices it (None: the quote currency)."""

    name: str
    decimals: int = 6
    haircut: float = 0.0
    price_source: str | None = None

    @property
    def minor_per_unit(self) -> int:
        return 10**self.decimals


@dataclass(frozen=True, slots=True)
class Instrument:
    """A derivative contract. Times (``expiry``, ``funding_interval``) are simulated seconds."""

    id: int
    symbol: str
    kind: InstrumentKind
    underlying: str
    settlement_asset: str
    tick_size: float
    lot_size: float
    multiplier: float
    tick_value: int
    expiry: float | None = None
    strike: float | None = None
    is_call: bool | None = None
    funding_interval: float | None = None
    funding_cap: float | None = None  # largest funding rate per interval (perpetuals)

    @property
    def contract_units(self) -> float:
        """Units of underlying per lot."""
        return self.lot_size * self.multiplier


def tick_value_minor(tick_size: float, lot_size: float, multiplier: float, decimals: int) -> int:
    """Minor units of cash per tick per lot; raises if that is not a whole number."""
    exact = tick_size * lot_size * multiplier * 10**decimals
    rounded = round(exact)
    if rounded <= 0 or abs(exact - rounded) > 1e-9 * max(1.0, abs(exact)):
        raise ValueError(
            f"tick_size x lot_size x multiplier = {tick_size * lot_size * multiplier!r} is not a whole "
            f"number of minor units (10^-{decimals}); choose sizes that make every trade an exact amount"
        )
    return int(rounded)


@dataclass(frozen=True, slots=True)
class InstrumentTable:
    """Column view of the instrument set for vectorised risk (index i = instrument id)."""

    instruments: tuple[Instrument, ...]
    underlyings: tuple[str, ...]
    kind: np.ndarray  # int8 (I,)
    underlying_index: np.ndarray  # int64 (I,)
    contract_units: np.ndarray  # float64 (I,)
    strike: np.ndarray  # float64 (I,), nan for non-options
    expiry: np.ndarray  # float64 (I,), inf for perpetuals
    is_call: np.ndarray  # bool (I,)
    tick_size: np.ndarray  # float64 (I,)
    is_option: np.ndarray  # bool (I,)

    @classmethod
    def from_instruments(cls, instruments: list[Instrument] | tuple[Instrument, ...]) -> "InstrumentTable":
        instruments = tuple(instruments)
        for i, ins in enumerate(instruments):
            if ins.id != i:
                raise ValueError(f"instrument ids must be 0..n-1 in order; {ins.symbol} has id {ins.id} at {i}")
        underlyings = tuple(dict.fromkeys(ins.underlying for ins in instruments))
        where = {u: k for k, u in enumerate(underlyings)}
        return cls(
            instruments=instruments,
            underlyings=underlyings,
            kind=np.array([int(i.kind) for i in instruments], dtype=np.int8),
            underlying_index=np.array([where[i.underlying] for i in instruments], dtype=np.int64),
            contract_units=np.array([i.contract_units for i in instruments], dtype=np.float64),
            strike=np.array([np.nan if i.strike is None else i.strike for i in instruments], dtype=np.float64),
            expiry=np.array([np.inf if i.expiry is None else i.expiry for i in instruments], dtype=np.float64),
            is_call=np.array([bool(i.is_call) for i in instruments], dtype=bool),
            tick_size=np.array([i.tick_size for i in instruments], dtype=np.float64),
            is_option=np.array([i.kind == InstrumentKind.OPTION for i in instruments], dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.instruments)

    def years_to_expiry(self, now: float) -> np.ndarray:
        """Time to expiry in years (inf for perpetuals, floored at zero)."""
        return np.maximum(self.expiry - now, 0.0) / SECONDS_PER_YEAR


class MarketState:
    """What the risk models see: prices in quote currency per unit of underlying, vols annualised.

    ``underlying_prices``/``atm_vols`` are per underlying; ``marks``/``vols`` per instrument (an
    option's vol is read off the surface at its strike and expiry). ``now`` is simulated seconds.
    ``atm_vols`` and ``vols`` may be given as zero-argument functions, evaluated on first read:
    reading the vol surface costs more than the rest of a mark update, and regimes over linear
    contracts never look at it.
    """

    __slots__ = ("now", "underlying_prices", "marks", "_atm_vols", "_vols")

    def __init__(self, now: float, underlying_prices: np.ndarray,
                 atm_vols: np.ndarray | Callable[[], np.ndarray], marks: np.ndarray,
                 vols: np.ndarray | Callable[[], np.ndarray]) -> None:
        self.now = now
        self.underlying_prices = underlying_prices
        self.marks = marks
        self._atm_vols = atm_vols
        self._vols = vols

    @property
    def atm_vols(self) -> np.ndarray:
        if callable(self._atm_vols):
            self._atm_vols = self._atm_vols()
        return self._atm_vols

    @property
    def vols(self) -> np.ndarray:
        if callable(self._vols):
            self._vols = self._vols()
        return self._vols

    def __repr__(self) -> str:
        return (f"MarketState(now={self.now}, underlying_prices={self.underlying_prices}, marks={self.marks}, "
                f"atm_vols={self.atm_vols}, vols={self.vols})")
