"""Market configuration: the quote currency, collateral assets, underlyings and contracts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sim.core.instruments import Asset, Instrument, InstrumentKind, tick_value_minor
from sim.core.strict_model import StrictModel


class DynamicHaircutConfig(StrictModel):
    """A haircut that follows the collateral's risk, as CCPs and venues set them (clearing/haircuts.py).

    At each oracle publication: haircut = clip(z(``confidence``) x realised vol x
    sqrt(``mpor_days`` / 365) + depeg, the asset's ``haircut`` (the floor), ``cap``), with the
    realised vol an EWMA of the published price's returns per unit time (``vol_halflife`` seconds;
    it starts at ``initial_vol``, else the price path's starting vol) and depeg = max(0, 1 -
    price / ``peg``) when a peg is given (a stablecoin at 0.65 of its dollar adds 35 points).
    """

    cap: float = Field(0.5, gt=0.0, lt=1.0)
    confidence: float = Field(0.99, gt=0.5, lt=1.0)
    mpor_days: float = Field(2.0, gt=0.0)
    vol_halflife: float = Field(3_600.0, gt=0.0, description="seconds")
    initial_vol: float | None = Field(None, ge=0.0)
    peg: float | None = Field(None, gt=0.0)


class AssetConfig(StrictModel):
    """A collateral asset. ``price_source`` is the underlying whose path prices it (none: worth 1).
    ``haircut`` is the static haircut, or the floor of a ``dynamic_haircut``."""

    name: str = Field(min_length=1)
    decimals: int = Field(6, ge=0, le=12)
    haircut: float = Field(0.0, ge=0.0, lt=1.0)
    price_source: str | None = None
    dynamic_haircut: DynamicHaircutConfig | None = None

    @model_validator(mode="after")
    def _dynamic_needs_a_price(self) -> "AssetConfig":
        if self.dynamic_haircut is not None:
            if self.price_source is None:
                raise ValueError(f"dynamic_haircut of {self.name!r} needs a price_source (a fixed price has no risk)")
            if self.dynamic_haircut.cap < self.haircut:
                raise ValueError(f"dynamic_haircut.cap ({self.dynamic_haircut.cap}) is below the floor "
                                 f"haircut ({self.haircut}) of {self.name!r}")
        return self


class InstrumentConfig(StrictModel):
    """A contract. Times are seconds from the episode start; rates are fractions."""

    symbol: str = Field(min_length=1)
    kind: Literal["perpetual", "future", "option"]
    underlying: str
    tick_size: float = Field(gt=0.0)
    lot_size: float = Field(gt=0.0)
    multiplier: float = Field(1.0, gt=0.0)
    expiry: float | None = Field(None, gt=0.0)
    strike: float | None = Field(None, gt=0.0)
    option_type: Literal["call", "put"] | None = None
    funding_interval: float = Field(28_800.0, gt=0.0, description="perpetuals: seconds between funding payments")
    funding_cap: float = Field(0.0075, ge=0.0, lt=1.0, description="perpetuals: max funding rate per interval")

    @model_validator(mode="after")
    def _kind_fields(self) -> "InstrumentConfig":
        if self.kind in ("future", "option") and self.expiry is None:
            raise ValueError(f"a {self.kind} needs an expiry")
        if self.kind == "option" and (self.strike is None or self.option_type is None):
            raise ValueError("an option needs a strike and an option_type (call or put)")
        if self.kind != "option" and (self.strike is not None or self.option_type is not None):
            raise ValueError(f"strike/option_type only apply to options, not a {self.kind}")
        if self.kind == "perpetual" and self.expiry is not None:
            raise ValueError("a perpetual has no expiry")
        return self


# the quote currency of a market that names none (and of portfolio files, which carry no currency)
DEFAULT_QUOTE = "USD"


class MarketConfig(StrictModel):
    quote: AssetConfig = AssetConfig(name=DEFAULT_QUOTE)
    collateral: list[AssetConfig] = Field(default_factory=list)
    instruments: list[InstrumentConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "MarketConfig":
        names = [self.quote.name] + [a.name for a in self.collateral]
        if len(set(names)) != len(names):
            raise ValueError(f"asset names must be unique, got {names}")
        if self.quote.haircut != 0.0 or self.quote.price_source is not None:
            raise ValueError("the quote asset is worth exactly 1 with no haircut")
        symbols = [i.symbol for i in self.instruments]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"instrument symbols must be unique, got {symbols}")
        for k, ins in enumerate(self.instruments):
            try:
                tick_value_minor(ins.tick_size, ins.lot_size, ins.multiplier, self.quote.decimals)
            except ValueError as exc:
                raise ValueError(f"instruments.{k} ({ins.symbol}): {exc}") from None
        return self

    def build_assets(self) -> list[Asset]:
        return [Asset(a.name, a.decimals, a.haircut, a.price_source) for a in [self.quote, *self.collateral]]

    def build_instruments(self) -> list[Instrument]:
        kinds = {"perpetual": InstrumentKind.PERPETUAL, "future": InstrumentKind.FUTURE, "option": InstrumentKind.OPTION}
        return [
            Instrument(
                id=k, symbol=c.symbol, kind=kinds[c.kind], underlying=c.underlying, settlement_asset=self.quote.name,
                tick_size=c.tick_size, lot_size=c.lot_size, multiplier=c.multiplier,
                tick_value=tick_value_minor(c.tick_size, c.lot_size, c.multiplier, self.quote.decimals),
                expiry=c.expiry, strike=c.strike, is_call=None if c.option_type is None else c.option_type == "call",
                funding_interval=c.funding_interval if c.kind == "perpetual" else None,
                funding_cap=c.funding_cap if c.kind == "perpetual" else None,
            )
            for k, c in enumerate(self.instruments)
        ]
