"""Margin-regime configuration: one pydantic model per regime, a discriminated union on ``regime``.

Defaults are the values of the project's reference methods (METHODS.md sections 1-6); where
METHODS.md names no value the default is an explicit, documented choice (docs/METHODOLOGY.md).
Every model forbids unknown keys, so a typo is an error naming the field path.

Registry names and what they preset (explicit fields always win):

- ``standard``            StandardConfig, cross margin
- ``standard_isolated``   StandardConfig, isolated margin
- ``span``                SpanConfig
- ``tims``                TimsConfig
- ``portfolio``           PortfolioConfig, cross_asset="sum"
- ``portfolio_joint``     PortfolioConfig, cross_asset="joint"
- ``var``                 VaRConfig, no anti-procyclicality tool
- ``var_apc``             VaRConfig, stressed weighting 25% + 10-year floor
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, field_validator, model_validator

from sim.core.strict_model import StrictModel

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NonNeg = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Correlation = Annotated[float, Field(ge=-1.0, le=1.0)]


# --------------------------------------------------------------------------------------- add-ons
class LiquidityConfig(StrictModel):
    """Liquidity / concentration add-on on top of any regime (METHODS.md section 6).

    ``mode="sqrt"``: Drift-style size premium w' = max(w, 0.8 w + imf sqrt(size in underlying
    units)), w being the account's requirement / gross notional. ``mode="book"``: the cost of
    closing each position against the book's depth versus the mark (depth supplied per
    instrument); size beyond the listed depth costs ``beyond_depth_slippage`` x mark per unit.
    """

    mode: Literal["sqrt", "book"] = "sqrt"
    imf: NonNeg = 0.001
    keep_fraction: Fraction = 0.8
    beyond_depth_slippage: NonNeg = 0.05
    apply_to_mm: bool = True


class _RegimeConfig(StrictModel):
    liquidity: LiquidityConfig | None = None
    label: str | None = Field(None, min_length=1, max_length=64,
                              description="this variant's name in comparisons (default: the regime's name), "
                                          "e.g. 'standard 5%/2.5%' next to 'standard tiers'")


# -------------------------------------------------------------------------------------- standard
class RiskTier(StrictModel):
    """One risk-limit tier: applies to a position whose notional is <= ``max_notional``."""

    max_notional: Positive | None = None  # None: unbounded (the last tier)
    im_rate: Annotated[float, Field(gt=0.0, le=1.0)]
    mm_rate: Annotated[float, Field(gt=0.0, le=1.0)]

    @model_validator(mode="after")
    def _mm_below_im(self) -> "RiskTier":
        if self.mm_rate > self.im_rate:
            raise ValueError(f"mm_rate {self.mm_rate} exceeds im_rate {self.im_rate}")
        return self


def _check_tiers(tiers: list[RiskTier]) -> list[RiskTier]:
    if not tiers:
        raise ValueError("at least one tier is required")
    caps = [t.max_notional for t in tiers]
    if caps[-1] is not None:
        raise ValueError("the last tier must be unbounded (max_notional: null)")
    if any(c is None for c in caps[:-1]):
        raise ValueError("only the last tier may be unbounded")
    bounded = [c for c in caps[:-1] if c is not None]  # every one (checked above): typed as float
    if any(b >= a for a, b in zip(bounded[1:], bounded[:-1])):
        raise ValueError("tier max_notional must increase strictly")
    for a, b in zip(tiers[:-1], tiers[1:]):
        if b.im_rate < a.im_rate or b.mm_rate < a.mm_rate:
            raise ValueError("tier rates must not decrease with size")
    return tiers


class OpenInterestCaps(StrictModel):
    """dYdX-style: IM fraction rises linearly from its base at ``lower`` open-interest notional
    to 100% at ``upper``."""

    lower: NonNeg
    upper: Positive

    @model_validator(mode="after")
    def _ordered(self) -> "OpenInterestCaps":
        if self.upper <= self.lower:
            raise ValueError(f"upper ({self.upper}) must exceed lower ({self.lower})")
        return self


class ShortOptionRule(StrictModel):
    """Short option under standard margin, per lot, as a fraction of underlying notional:
    IM = max(im_base - OTM%, im_floor) x S + mark; MM = max(mm_base - OTM%, mm_floor) x S + mark."""

    im_base: Fraction = 0.15
    im_floor: Fraction = 0.10
    mm_base: Fraction = 0.075
    mm_floor: Fraction = 0.075
    add_mark: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> "ShortOptionRule":
        if self.im_floor > self.im_base:
            raise ValueError("im_floor exceeds im_base")
        if self.mm_floor > self.mm_base:
            raise ValueError("mm_floor exceeds mm_base")
        return self


class StandardConfig(_RegimeConfig):
    """Rule-based margin (METHODS.md section 1)."""

    regime: Literal["standard", "standard_isolated"] = "standard"
    margin_mode: Literal["cross", "isolated"] | None = None  # None: from the regime name
    tiers: list[RiskTier] = Field(default_factory=lambda: [RiskTier(im_rate=0.10, mm_rate=0.05)])
    tiers_by_underlying: dict[str, list[RiskTier]] = Field(default_factory=dict)
    open_interest_caps: OpenInterestCaps | None = None
    open_interest_caps_by_underlying: dict[str, OpenInterestCaps] = Field(default_factory=dict)
    short_option: ShortOptionRule = Field(default_factory=ShortOptionRule)

    @field_validator("tiers")
    @classmethod
    def _v_tiers(cls, v: list[RiskTier]) -> list[RiskTier]:
        return _check_tiers(v)

    @field_validator("tiers_by_underlying")
    @classmethod
    def _v_tiers_by(cls, v: dict[str, list[RiskTier]]) -> dict[str, list[RiskTier]]:
        for tiers in v.values():
            _check_tiers(tiers)
        return v

    @model_validator(mode="after")
    def _mode(self) -> "StandardConfig":
        if self.margin_mode is None:
            object.__setattr__(self, "margin_mode", "isolated" if self.regime == "standard_isolated" else "cross")
        return self


# ------------------------------------------------------------------------------------------ SPAN
class InterCommoditySpread(StrictModel):
    """A CME inter-commodity spread: ``ratio_a`` delta of ``leg_a`` against ``ratio_b`` of
    ``leg_b``; credit = ``credit_rate`` x the outright margins of the legs in the spread."""

    leg_a: str
    leg_b: str
    ratio_a: Positive = 1.0
    ratio_b: Positive = 1.0
    credit_rate: Fraction
    opposite: bool = True  # legs must have opposite net deltas (long one, short the other)

    @model_validator(mode="after")
    def _distinct(self) -> "InterCommoditySpread":
        if self.leg_a == self.leg_b:
            raise ValueError("leg_a and leg_b must be different commodities")
        return self


def check_risk_array(arr: list[float], what: str) -> None:
    """A SPAN risk array: 16 finite values (``what`` names it in the error)."""
    if len(arr) != 16:
        raise ValueError(f"{what} has {len(arr)} values, expected 16")
    if not all(math.isfinite(x) for x in arr):
        raise ValueError(f"{what} has a non-finite value")


class SpanConfig(_RegimeConfig):
    """SPAN-style scenario margin (METHODS.md section 2).

    IM = ``im_multiplier`` x SPAN requirement, MM = ``mm_multiplier`` x SPAN requirement
    (CME: maintenance = the SPAN figure, initial = 110% of it for speculators).

    Price scan range per commodity: ``price_scan_mode='volatility'`` (the default) sets it as a CME
    risk team does, to cover ``scan_confidence`` of moves over the margin period of risk:
    scan = z(``scan_confidence``) x vol x sqrt(``margin_period_of_risk_days`` / 365), vol being
    ``scan_vol_by_underlying`` or else the underlying's ATM vol at the regime's first valuation
    (a published parameter, held until the next review -- not re-set intraday).
    ``relative``/``absolute`` take ``price_scan`` (or ``price_scan_by_underlying``) as given.
    """

    regime: Literal["span"] = "span"
    price_scan: Positive | None = None  # relative (default 0.10) or absolute; not with 'volatility'
    price_scan_mode: Literal["volatility", "relative", "absolute"] = "volatility"
    margin_period_of_risk_days: Positive = 2.0
    scan_confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.99
    scan_vol_by_underlying: dict[str, Positive] = Field(default_factory=dict)
    price_scan_by_underlying: dict[str, Positive] = Field(default_factory=dict)
    vol_scan: NonNeg = 0.25
    vol_scan_mode: Literal["relative", "absolute"] = "relative"
    vol_scan_by_underlying: dict[str, NonNeg] = Field(default_factory=dict)
    extreme_multiple: Positive = 2.0
    cover_fraction: Fraction = 0.35
    intra_spread_charge: NonNeg = 0.0  # absolute, per spread (one lot-equivalent per leg)
    intra_spread_rate: NonNeg = 0.01  # fraction of one reference lot's notional, per spread
    intra_spread_charge_by_underlying: dict[str, NonNeg] = Field(default_factory=dict)
    inter_commodity: list[InterCommoditySpread] = Field(default_factory=list)
    short_option_minimum: NonNeg = 0.0  # absolute, per short option lot
    short_option_minimum_rate: NonNeg = 0.01  # fraction of underlying notional per short lot
    net_option_value: bool = False  # True: requirement = risk - NOV (collateral excludes options)
    im_multiplier: Annotated[float, Field(ge=1.0, le=10.0)] = 1.1
    mm_multiplier: Annotated[float, Field(gt=0.0, le=10.0)] = 1.0
    risk_arrays: dict[str, list[float]] = Field(default_factory=dict)  # symbol -> 16 values
    risk_array_convention: Literal["profit", "loss"] = "profit"
    deltas: dict[str, float] = Field(default_factory=dict)  # symbol -> composite delta (ref lots)

    @field_validator("risk_arrays")
    @classmethod
    def _sixteen(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        for sym, arr in v.items():
            check_risk_array(arr, f"risk array for {sym!r}")
        return v

    @model_validator(mode="after")
    def _mm_le_im(self) -> "SpanConfig":
        given = [f for f in ("price_scan", "price_scan_by_underlying") if getattr(self, f)]
        if self.price_scan_mode == "volatility" and given:
            raise ValueError(f"{given[0]} is set but price_scan_mode is 'volatility' (the scan comes "
                             "from vol x margin period of risk); set price_scan_mode: relative or absolute")
        if self.price_scan_mode == "absolute" and self.price_scan is None and not self.price_scan_by_underlying:
            raise ValueError("price_scan_mode 'absolute' needs price_scan (price units)")
        if self.price_scan_mode == "relative" and self.price_scan is None:
            self.price_scan = 0.10
        if self.mm_multiplier > self.im_multiplier:
            raise ValueError(f"mm_multiplier ({self.mm_multiplier}) exceeds im_multiplier ({self.im_multiplier})")
        return self


# ------------------------------------------------------------------------------------------ TIMS
class TimsRange(StrictModel):
    up: Annotated[float, Field(gt=0.0, lt=1.0)]
    down: Annotated[float, Field(gt=0.0, lt=1.0)]


class ProductGroup(StrictModel):
    """Class groups (underlyings) whose gains offset each other's losses at ``offset``."""

    underlyings: list[str] = Field(min_length=1)
    offset: Fraction = 0.5


class TimsConfig(_RegimeConfig):
    """TIMS / FINRA 4210(g)-style portfolio margin (METHODS.md section 3)."""

    regime: Literal["tims"] = "tims"
    up: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15
    down: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15
    range_by_underlying: dict[str, TimsRange] = Field(default_factory=dict)
    points: Annotated[int, Field(ge=2, le=200)] = 10
    minimum_per_contract: NonNeg = 0.375  # x contract_units (the multiplier), per lot
    product_groups: dict[str, ProductGroup] = Field(default_factory=dict)
    mm_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0

    @field_validator("points")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("points must be even (half below, half above the current price)")
        return v

    @model_validator(mode="after")
    def _disjoint(self) -> "TimsConfig":
        seen: dict[str, str] = {}
        for name, pg in self.product_groups.items():
            for u in pg.underlyings:
                if u in seen:
                    raise ValueError(f"underlying {u!r} is in product groups {seen[u]!r} and {name!r}")
                seen[u] = name
        return self


# ------------------------------------------------------------------------------------- portfolio
class PortfolioConfig(_RegimeConfig):
    """Crypto portfolio margin, Deribit's published method (METHODS.md section 4; the parameters
    and their sources are in docs/METHODOLOGY.md, "Portfolio"). Defaults are Deribit's BTC values."""

    regime: Literal["portfolio", "portfolio_joint"] = "portfolio"
    cross_asset: Literal["sum", "joint"] | None = None  # None: from the regime name
    price_range: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.16
    price_steps: Annotated[int, Field(ge=1, le=50)] = 4  # per side: 2 x steps + 1 price points
    vol_up: NonNeg = 0.5  # Deribit "Volatility Range Up"
    vol_down: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.25  # "Volatility Range Down"
    min_vol_up: NonNeg = 0.5  # "Min Volatility For Shock Up" (absolute, annualised)
    vega_power_short: NonNeg = 0.3
    vega_power_long: NonNeg = 0.13
    vega_power_switch_days: Positive = 30.0
    min_dte_days: Positive = 1.0  # DTE floor inside (30/DTE)^p
    extended_moves: list[Annotated[float, Field(gt=-1.0)]] = Field(
        default_factory=lambda: [-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0])
    extended_table_factor: NonNeg = 1.0  # a move m's P&L counts at factor x price_range / |m|
    extended_dampener: NonNeg = 100_000.0  # quote units taken off per range multiple beyond the first
    delta_shock_threshold: NonNeg = 20_000_000.0  # "Delta Total Liquidity Shock Threshold", quote units
    max_delta_shock: Fraction = 0.10  # "Max Delta Shock"
    delta_shock_increment: Fraction = 0.01  # shock rate added per unit of underlying beyond the threshold
    roll_shock_rate: NonNeg = 0.075  # "Annualised Move Risk": dated futures' basis move exp(rate x T) - 1
    roll_shock_floor: NonNeg = 0.01  # "Min Annualised Move"
    mm_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    correlation: Correlation = 0.8  # joint mode: default pairwise correlation
    decorrelation: NonNeg = 2.0  # joint mode: against/beyond moves at rho -/+ this x sqrt(1 - rho^2)
    correlations: dict[str, Correlation] = Field(default_factory=dict)  # "BTC/ETH": 0.9
    dtype: Literal["float64", "float32"] = "float64"

    @field_validator("correlations")
    @classmethod
    def _pairs(cls, v: dict[str, float]) -> dict[str, float]:
        for k in v:
            parts = k.split("/")
            if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
                raise ValueError(f"correlation key {k!r} must be 'A/B' with two different underlyings")
        return v

    @model_validator(mode="after")
    def _mode(self) -> "PortfolioConfig":
        if self.cross_asset is None:
            object.__setattr__(self, "cross_asset", "joint" if self.regime == "portfolio_joint" else "sum")
        return self


# ------------------------------------------------------------------------------------------- VaR
class VaRConfig(_RegimeConfig):
    """Historical / filtered-historical VaR or ES margin with EMIR Art. 28 anti-procyclicality
    tools (METHODS.md section 5). Horizons and lookbacks are in days of time, turned into rows of
    the price history by its row interval (``clearing.history.row_interval``): with hourly rows a
    2-day MPOR is 48 rows and a 365-day lookback 8,760 (a lookback longer than the history uses
    all of it). The MPOR must be a whole number of rows.

    ``mm_ratio``: MM as a fraction of IM. A CCP calls for IM and declares a default only when a
    call goes unmet; liquidating at IM itself (``mm_ratio`` 1) would close every account the
    moment its margin rises, so MM defaults to 80% of IM (the tolerance a call-and-cure period
    stands in for, as Deribit's portfolio MM is 80% of its IM).
    """

    regime: Literal["var", "var_apc"] = "var"
    method: Literal["historical", "filtered"] = "historical"
    measure: Literal["var", "es"] = "var"
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.99
    mpor_days: Annotated[float, Field(gt=0.0, le=60.0)] = 2.0
    lookback_days: Annotated[float, Field(ge=1.0)] = 365.0  # EMIR Art. 25: at least 12 months
    ewma_lambda: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.94
    buffer: NonNeg | None = None  # e.g. 0.25; released in stress
    release_threshold: NonNeg = 0.10  # buffer is drawn when the buffered margin would rise > this
    stressed_weight: Fraction | None = None  # e.g. 0.25
    stressed_period_days: tuple[NonNeg, Positive] | None = None  # [start, end) days from the history's first row
    floor_lookback_days: Annotated[float, Field(ge=1.0)] | None = None  # e.g. 3650 (10 years)
    mm_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    chunk_accounts: Annotated[int, Field(ge=1)] = 8192

    @model_validator(mode="before")
    @classmethod
    def _apc_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("regime") == "var_apc":
            data = dict(data)
            data.setdefault("stressed_weight", 0.25)
            data.setdefault("floor_lookback_days", 3650.0)
        return data

    @model_validator(mode="after")
    def _period(self) -> "VaRConfig":
        if self.stressed_period_days is not None:
            a, b = self.stressed_period_days
            if b <= a:
                raise ValueError(f"stressed_period_days {self.stressed_period_days} must be [start, end) with start < end")
        return self


MarginConfig = Annotated[
    Union[StandardConfig, SpanConfig, TimsConfig, PortfolioConfig, VaRConfig],
    Field(discriminator="regime"),
]

REGIME_NAMES: tuple[str, ...] = (
    "standard", "standard_isolated", "span", "tims", "portfolio", "portfolio_joint", "var", "var_apc",
)

_ADAPTER: TypeAdapter = TypeAdapter(MarginConfig)


def parse_margin_config(data: "str | dict | StrictModel") -> StandardConfig | SpanConfig | TimsConfig | PortfolioConfig | VaRConfig:
    """Validate a regime name, a dict with a ``regime`` key, or an existing config model."""
    if isinstance(data, (StandardConfig, SpanConfig, TimsConfig, PortfolioConfig, VaRConfig)):
        return data
    if isinstance(data, str):
        data = {"regime": data}
    return _ADAPTER.validate_python(data)


# ------------------------------------------------------------------------------ portfolio files
