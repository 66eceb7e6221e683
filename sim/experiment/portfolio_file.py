"""The portfolio file ``clearsim margin <portfolio.yaml>`` reads (``sim.experiment.portfolio``):
instruments, a market state, accounts' positions, optional regime parameters, external SPAN risk
arrays, book depth and a price history for the VaR regimes. The margin backtest reads the same
file for its portfolios."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from clearing.margin.config import Correlation, MarginConfig, NonNeg, Positive, check_risk_array
from sim.core.strict_model import StrictModel


class UnderlyingSpec(StrictModel):
    price: Positive
    vol: Positive  # ATM implied vol, annualised


class DepthSpec(StrictModel):
    bids: list[tuple[Positive, NonNeg]] = Field(default_factory=list)  # (price, lots), best first
    asks: list[tuple[Positive, NonNeg]] = Field(default_factory=list)


class InstrumentSpec(StrictModel):
    symbol: Annotated[str, Field(min_length=1)]
    kind: Literal["perpetual", "future", "option"]
    underlying: Annotated[str, Field(min_length=1)]
    contract_units: Positive = 1.0
    expiry_days: Positive | None = None
    strike: Positive | None = None
    call: bool | None = None
    mark: Positive | None = None  # linear: default the underlying price; option: default Black-76
    vol: Positive | None = None  # option implied vol; default the underlying's ATM vol
    risk_array: list[float] | None = None  # 16 SPAN scenario values (see risk_array_convention)
    delta: float | None = None  # SPAN composite delta (reference lots) for a supplied array
    depth: DepthSpec | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> "InstrumentSpec":
        if self.kind == "perpetual" and self.expiry_days is not None:
            raise ValueError("a perpetual has no expiry_days")
        if self.kind in ("future", "option") and self.expiry_days is None:
            raise ValueError(f"a {self.kind} needs expiry_days")
        if self.kind == "option":
            if self.strike is None or self.call is None:
                raise ValueError("an option needs strike and call (true/false)")
        elif self.strike is not None or self.call is not None or self.vol is not None:
            raise ValueError("strike, call and vol are for options only")
        if self.risk_array is not None:
            check_risk_array(self.risk_array, "risk_array")
        return self


class AccountSpec(StrictModel):
    name: Annotated[str, Field(min_length=1)]
    positions: dict[str, float]  # symbol -> signed lots
    collateral: NonNeg | None = None  # equity now (quote currency); None: exactly its IM under each regime

    @field_validator("positions")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        for sym, q in v.items():
            if not math.isfinite(q):
                raise ValueError(f"position in {sym!r} is not finite")
        return v


class SyntheticHistory(StrictModel):
    """Seeded geometric-Brownian history at each underlying's ATM vol, ending at today's price
    (an illustration, not market data)."""

    days: Annotated[int, Field(ge=30, le=20_000)] = 750
    seed: int = 0
    correlation: Correlation = 0.8


class HistorySpec(StrictModel):
    prices: dict[str, list[Positive]] | None = None  # per underlying, oldest first, equal lengths
    synthetic: SyntheticHistory | None = None

    @model_validator(mode="after")
    def _one(self) -> "HistorySpec":
        if (self.prices is None) == (self.synthetic is None):
            raise ValueError("give exactly one of prices or synthetic")
        if self.prices is not None:
            lengths = {len(v) for v in self.prices.values()}
            if len(lengths) != 1:
                raise ValueError(f"price series have different lengths {sorted(lengths)}")
            if lengths.pop() < 3:
                raise ValueError("price series need at least 3 rows")
        return self


class PortfolioFile(StrictModel):
    name: str = ""
    description: str = ""
    underlyings: dict[str, UnderlyingSpec] = Field(min_length=1)
    instruments: list[InstrumentSpec] = Field(min_length=1)
    accounts: list[AccountSpec] = Field(min_length=1)
    regimes: dict[str, MarginConfig] = Field(default_factory=dict)  # label -> config (label = name if no 'regime')
    risk_array_convention: Literal["profit", "loss"] = "profit"
    history: HistorySpec | None = None

    @field_validator("regimes", mode="before")
    @classmethod
    def _label_is_name(cls, v: Any) -> Any:
        if isinstance(v, dict):
            out = {}
            for label, cfg in v.items():
                cfg = {} if cfg is None else cfg
                if isinstance(cfg, dict) and "regime" not in cfg:
                    cfg = {**cfg, "regime": label}
                out[label] = cfg
            return out
        return v

    @model_validator(mode="after")
    def _references(self) -> "PortfolioFile":
        symbols = [i.symbol for i in self.instruments]
        dup = {s for s in symbols if symbols.count(s) > 1}
        if dup:
            raise ValueError(f"instruments: duplicate symbols {sorted(dup)}")
        for k, ins in enumerate(self.instruments):
            if ins.underlying not in self.underlyings:
                raise ValueError(f"instruments[{k}] ({ins.symbol}): unknown underlying {ins.underlying!r}")
        names = [a.name for a in self.accounts]
        if len(set(names)) != len(names):
            raise ValueError("accounts: duplicate names")
        known = set(symbols)
        for k, acc in enumerate(self.accounts):
            bad = sorted(set(acc.positions) - known)
            if bad:
                raise ValueError(f"accounts[{k}] ({acc.name}): unknown instruments {bad}")
        if self.history is not None and self.history.prices is not None:
            missing = sorted(set(self.underlyings) - set(self.history.prices))
            extra = sorted(set(self.history.prices) - set(self.underlyings))
            if missing or extra:
                raise ValueError(f"history.prices: missing {missing}, unknown {extra}")
        return self
