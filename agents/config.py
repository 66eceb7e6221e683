"""Trader population configuration: groups of agents of one type each, with their parameters.

A population is a list of groups. Every group has a ``type`` (the discriminator), a ``name``
(default: its type; names must be unique because each agent's random stream is named
``agent/{name}/{k}`` -- a noise, leveraged or value group's one stream ``group/{name}``, see
``agents.population`` -- so adding
a group never perturbs another), a ``count``, a ``capital`` per
agent (quote units), the ``instruments`` (symbols) it trades, and an active window
``[start, end)`` in simulated seconds. The rest are the type's own parameters, with defaults.

Several parameters are a :data:`Dist`: a plain number, or a distribution
``{dist: uniform, low, high}``, ``{dist: normal, mean, std, [low], [high]}`` (clipped to
``[low, high]``), ``{dist: lognormal, mean, sigma, [low], [high]}`` (``mean`` of the distribution,
``sigma`` the std of its log) or ``{dist: choice, values, [weights]}``. Each field says whether it is drawn once per agent (at
build time, from the agent's own stream; for a noise or leveraged group, from the group's) or per order/event. A field's declared bounds are checked
against the distribution's whole support, so ``capital: {dist: normal, mean: 1e5, std: 5e4}`` is
refused (it could draw a negative capital) unless it is clipped with ``low``.

Units: prices and spreads in basis points of the reference price or in ticks as named; sizes in
integer lots (a drawn size is rounded to the nearest lot, at least 1); rates per second; vols
annualised; times in simulated seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Union

from pydantic import Field, model_validator

from agents.distributions import AnyDist, ChoiceDist, LotsDist, NonNegDist, PositiveDist, UniformDist
from sim.core.strict_model import StrictModel

__all__ = [
    "MarketMakerGroup", "NoiseGroup", "LeveragedGroup", "BasisArbGroup", "ValueGroup", "MomentumGroup",
    "OptionSellerGroup", "DeltaHedgerGroup", "BackstopProviderGroup", "AuctionBidderGroup", "PairTraderGroup",
    "ManipulatorGroup", "CollateralSplit", "GroupConfig",
    "PopulationConfig",
]

Finite = Annotated[float, Field(allow_inf_nan=False)]


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$", min_length=1, max_length=64)]
Seconds = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
PosSeconds = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Bps = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Lots = Annotated[int, Field(ge=1)]


class CollateralSplit(StrictModel):
    """Deposit ``fraction`` of each agent's capital as ``asset`` (converted at its starting price)
    instead of the quote currency -- wrong-way collateral (an exchange token, a depegging dollar)."""

    asset: Annotated[str, Field(min_length=1)]
    fraction: float = Field(1.0, gt=0.0, le=1.0)


class _Group(StrictModel):
    """Fields every group has."""

    name: Name | None = Field(None, description="group name (default: the type); names the random streams")
    count: int = Field(1, ge=0)
    capital: PositiveDist = Field(100_000.0, description="quote units deposited per agent (drawn per agent)")
    instruments: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="symbols traded; validated against the market by the episode")
    start: Seconds = Field(0.0, description="first activity (seconds)")
    end: Seconds | None = Field(None, description="no new activity at or after this time (None: never)")
    collateral: CollateralSplit | None = Field(None, description="part of the capital deposited as another asset")

    _needs_instruments: ClassVar[bool] = True
    if TYPE_CHECKING:  # each group declares its own Literal ``type``: not a field of the base
        type: str

    @model_validator(mode="after")
    def _window(self) -> "_Group":
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if self._needs_instruments and self.count > 0 and not self.instruments:
            raise ValueError(f"a {self.type} group needs at least one instrument")
        if len(set(self.instruments)) != len(self.instruments):
            raise ValueError(f"instruments lists a symbol twice: {self.instruments}")
        return self

    @property
    def group_name(self) -> str:
        return self.name or self.type


class MarketMakerGroup(_Group):
    """Two-sided ladders around a reference; skew by inventory; widen/shrink with volatility;
    withdraw past a volatility or drawdown threshold and re-enter after a calm spell.

    ABIDES adaptive-maker flavour: ``levels`` > 1, ``pov`` sizing from the volume traded since the
    last requote, ``adaptive_spread`` (half-spread follows an EWMA of the observed book spread and
    of recent mid moves), ``price_skew_ticks`` (centre shifted by the recent trade imbalance).
    """

    type: Literal["market_maker"] = "market_maker"
    interval: PosSeconds = Field(1.0, description="seconds between requotes (the mean if poisson)")
    poisson: bool = False
    reference: Literal["index", "mark", "mid", "last", "blend"] = Field(
        "index", description="quote centre (options use the mark); last: the venue's last trade; blend: "
                             "(1 - reference_weight) x index + reference_weight x last trade")
    reference_weight: float = Field(0.5, ge=0.0, le=1.0, description="blend: weight of the venue's last trade")
    half_spread_bps: NonNegDist = Field(5.0, description="base half-spread (drawn per agent)")
    min_half_spread_ticks: int = Field(1, ge=1)
    levels: int = Field(1, ge=1, le=100)
    level_spacing: float = Field(1.0, gt=0.0, description="gap between levels, in half-spreads")
    size: LotsDist = Field(10.0, description="lots per level when pov is off (drawn per agent)")
    pov: float | None = Field(None, gt=0.0, le=1.0, description="lots per level = pov x volume since last requote")
    min_size: Lots = 1
    adaptive_spread: bool = False
    spread_alpha: float = Field(0.75, gt=0.0, le=1.0, description="EWMA weight of the newest observed spread")
    mid_move_mult: float = Field(0.0, ge=0.0, description="half-spread >= this x EWMA of |mid change| per requote")
    price_skew_ticks: float = Field(0.0, ge=0.0, description="centre shift per unit of trade imbalance")
    inventory_skew: float = Field(0.5, ge=0.0, description="centre shift at max_inventory, in half-spreads")
    max_inventory: Lots = Field(100, description="no quotes that would take |inventory| beyond this")
    vol_halflife: PosSeconds = 300.0
    vol_ref: float = Field(0.8, gt=0.0, description="annualised vol at which quotes are at base width and size")
    vol_widen: float = Field(1.0, ge=0.0, description="half-spread x (vol/vol_ref)^vol_widen above vol_ref")
    size_shrink: float = Field(1.0, ge=0.0, description="size x (vol_ref/vol)^size_shrink above vol_ref")
    withdraw_vol: float | None = Field(3.0, gt=0.0, description="withdraw above this annualised vol")
    withdraw_drawdown: float | None = Field(0.5, gt=0.0, lt=1.0, description="withdraw after losing this share of peak equity")
    withdraw_move: float | None = Field(None, gt=0.0, lt=1.0,
                                        description="withdraw when the index moved this much within move_window")
    move_window: PosSeconds = 300.0
    reentry_calm: Seconds = Field(300.0, description="seconds of calm before quoting again")
    reentry_vol_ratio: float = Field(0.5, gt=0.0, le=1.0, description="calm = vol below this x withdraw_vol")


class NoiseGroup(_Group):
    """Poisson arrivals of random limit orders (around the reference) and market orders."""

    type: Literal["noise"] = "noise"
    arrivals: Literal["poisson", "uniform"] = Field(
        "poisson", description="poisson: exponential gaps at `rate`; uniform: `max_orders` times drawn "
                               "uniformly over [start, end) (the ABIDES noise agent: one order, uniform time)")
    rate: float = Field(0.05, gt=0.0, description="orders per second per agent (Poisson intensity)")
    max_orders: int | None = Field(None, ge=1, description="stop after this many (ABIDES noise agents: 1)")
    market_prob: Fraction = 0.2
    buy_prob: Fraction = 0.5
    size: LotsDist = Field(1.0, description="lots per order (drawn per order)")
    limit_offset_bps: AnyDist = Field(
        default_factory=lambda: UniformDist(dist="uniform", low=0.0, high=20.0),
        description="limit distance from the reference, away from the other side (drawn per order; negative crosses)")
    reference: Literal["mid", "index", "mark"] = Field("mid", description="falls back to the index if the book is empty")
    order_lifetime: PosSeconds | None = Field(120.0, description="cancel an unfilled limit order after this")
    max_position: Lots | None = Field(None, description="beyond this |position| only orders that reduce it")

    @model_validator(mode="after")
    def _uniform_needs_window(self) -> "NoiseGroup":
        if self.arrivals == "uniform" and (self.end is None or self.max_orders is None):
            raise ValueError("arrivals 'uniform' needs end (the window's close) and max_orders")
        return self


class LeveragedGroup(_Group):
    """A directional position at a drawn leverage (notional = leverage x equity), on margin."""

    type: Literal["leveraged"] = "leveraged"
    leverage: PositiveDist = Field(5.0, description="drawn per entry")
    long_prob: Fraction = 0.5
    entry_delay: NonNegDist = Field(0.0, description="seconds after start before the first entry (drawn per agent)")
    max_slippage: float = Field(0.005, ge=0.0, lt=0.5, description="IOC limit beyond the touch, fraction of price")
    fit_to_margin: bool = Field(True, description="shrink an entry the pre-trade margin check would refuse "
                                                  "to the largest size it accepts (else send it and be refused)")
    retry_after: PosSeconds = 2.0
    max_retries: int = Field(5, ge=0)
    stop_loss: float | None = Field(None, gt=0.0, lt=1.0, description="close after this adverse price move")
    take_profit: float | None = Field(None, gt=0.0, description="close after this favourable price move")
    on_margin_call: Literal["cut", "hold"] = Field("hold", description="cut: reduce the position near MM")
    cut_ratio: float = Field(1.25, gt=1.0, description="'cut' acts when equity < cut_ratio x MM")
    cut_fraction: float = Field(0.5, gt=0.0, le=1.0)
    cut_cooldown: PosSeconds = 5.0
    reentry_prob: Fraction = Field(0.0, description="chance of a new entry after the position is gone")
    reentry_delay: NonNegDist = Field(600.0, description="seconds flat before re-entering (drawn per re-entry)")


class BasisArbGroup(_Group):
    """Trades the perpetual's book back toward the index when the gap exceeds fees + threshold.

    Its hedge (spot, elsewhere) is outside the simulation, so its perp position is capped and
    unwound when the book comes back to the index.
    """

    type: Literal["basis_arb"] = "basis_arb"
    interval: PosSeconds = 1.0
    poisson: bool = True
    threshold_bps: Bps = Field(5.0, description="required edge beyond fees")
    fee_bps: Bps | None = Field(None, description="cost per trade (None: the venue's taker fee)")
    size: LotsDist = Field(10.0, description="largest lots per trade (drawn per trade)")
    max_position: Lots = 100
    unwind: bool = True
    unwind_bps: Bps = Field(2.0, description="unwind when the touch is within this of the index")


class ValueGroup(_Group):
    """ABIDES value agent: a noisy private estimate of the fundamental, filtered and traded toward."""

    type: Literal["value"] = "value"
    rate: float = Field(0.0057, gt=0.0, description="wake-ups per second (Poisson)")
    r_bar: float | None = Field(None, gt=0.0, description="long-run mean (quote units; None: the first index)")
    kappa: float = Field(1.67e-6, ge=0.0, description="mean reversion of the belief per second")
    obs_noise: float = Field(3.16e-4, ge=0.0, description="observation noise std, fraction of price")
    belief_vol: float = Field(0.3, ge=0.0, description="annualised vol the belief allows the value to move")
    prior_std: float = Field(0.01, ge=0.0, description="initial uncertainty, fraction of price")
    horizon: Seconds | None = Field(None, description="project the estimate this far ahead (None: no projection)")
    aggressive_prob: Fraction = Field(0.1, description="chance of taking the touch instead of resting inside it")
    depth_spread: float = Field(2.0, ge=0.0, description="passive orders rest up to this x spread from the touch")
    size: LotsDist = Field(1.0, description="lots per order (drawn per order)")
    max_position: Lots | None = 100


class MomentumGroup(_Group):
    """ABIDES momentum agent (short vs long moving average) and panic selling."""

    type: Literal["momentum"] = "momentum"
    interval: PosSeconds = 37.0
    poisson: bool = True
    reference: Literal["mid", "index", "last"] = Field(
        "mid", description="price watched by the averages and the panic trigger; last: the venue's last trade")
    short_window: int = Field(20, ge=1, description="observations in the short average")
    long_window: int = Field(50, ge=2, description="observations in the long average")
    size: LotsDist = Field(default_factory=lambda: ChoiceDist(dist="choice", values=list(range(1, 11))))
    aggressive: bool = Field(True, description="orders at the opposite touch (cross) instead of the same side")
    max_position: Lots | None = 100
    panic_drop: float | None = Field(None, gt=0.0, lt=1.0, description="market-sell when the price fell this much")
    panic_window: PosSeconds = 300.0
    panic_size: LotsDist = 10.0
    panic_cooldown: PosSeconds = 60.0

    @model_validator(mode="after")
    def _windows(self) -> "MomentumGroup":
        if self.short_window >= self.long_window:
            raise ValueError(f"short_window ({self.short_window}) must be < long_window ({self.long_window})")
        return self


class OptionSellerGroup(_Group):
    """Opens a short option structure at start (resting orders at mark less a concession) and holds."""

    type: Literal["option_seller"] = "option_seller"
    structure: Literal["short_straddle", "short_strangle", "iron_condor", "covered_call"] = "short_straddle"
    lots: LotsDist = Field(10.0, description="lots per leg (drawn per agent)")
    strangle_width: float = Field(0.1, gt=0.0, lt=1.0, description="OTM distance of short strikes, fraction of forward")
    wing_width: float = Field(0.1, gt=0.0, lt=1.0, description="iron condor: long wings this much further OTM")
    concession: float = Field(0.02, ge=0.0, lt=1.0, description="limit price away from mark, fraction of mark")
    expiry: Literal["nearest", "farthest"] = "nearest"


class DeltaHedgerGroup(_Group):
    """Holds an option position and keeps its net delta within a band with the linear contract."""

    type: Literal["delta_hedger"] = "delta_hedger"
    position: Literal["long_call", "short_call", "long_put", "short_put", "long_straddle", "short_straddle"] = \
        "short_straddle"
    lots: LotsDist = Field(10.0, description="option lots per leg (drawn per agent)")
    moneyness: float = Field(1.0, gt=0.0, description="strike nearest to forward x moneyness")
    expiry: Literal["nearest", "farthest"] = "nearest"
    band: float = Field(1.0, gt=0.0, description="allowed |net delta|, units of underlying")
    hedge_to: Literal["zero", "edge"] = "zero"
    concession: float = Field(0.02, ge=0.0, lt=1.0, description="option orders away from mark, fraction of mark")
    max_slippage: float = Field(0.01, ge=0.0, lt=0.5, description="hedge IOC limit beyond the touch")
    open_options: bool = Field(True, description="False: the option position is given (tests, preloaded books)")


class BackstopProviderGroup(_Group):
    """Capital in an account the clearing house uses as its backstop vault (at most one agent)."""

    type: Literal["backstop_provider"] = "backstop_provider"
    capital: PositiveDist = 5_000_000.0
    unwind: bool = True
    unwind_interval: PosSeconds = 60.0
    unwind_fraction: float = Field(0.25, gt=0.0, le=1.0)
    unwind_offset_bps: Bps = 10.0

    _needs_instruments: ClassVar[bool] = False


class AuctionBidderGroup(_Group):
    """Bids for liquidated positions: a discount rising with size and recent volatility; no bid
    (or a zero bid, if ``zero_bidder``) when its free capital cannot carry the position's margin."""

    type: Literal["auction_bidder"] = "auction_bidder"
    capital: PositiveDist = 1_000_000.0
    base_discount: Fraction = 0.01
    size_discount: float = Field(0.05, ge=0.0, description="extra discount per unit of notional / equity")
    vol_discount: float = Field(0.05, ge=0.0, description="extra discount per unit of annualised vol")
    max_discount: Fraction = 0.5
    vol_window: PosSeconds = Field(600.0, description="seconds of published index used for recent vol")
    margin_buffer: float = Field(1.0, ge=1.0, description="needs equity >= this x IM after taking the lots")
    zero_bidder: bool = False

    _needs_instruments: ClassVar[bool] = False


class PairTraderGroup(_Group):
    """Relative value in one account: long the first instrument, short the second, at a drawn
    leverage per leg, scaled in over ``slices`` steps so that each step is margined as a hedge.
    The book portfolio margin rewards -- and the one a correlation breakdown breaks."""

    type: Literal["pair_trader"] = "pair_trader"
    leverage: PositiveDist = Field(5.0, description="notional of each leg over equity (drawn per agent)")
    hedge_ratio: float = Field(1.0, gt=0.0, description="short-leg notional over long-leg notional")
    flip_prob: Fraction = Field(0.0, description="chance of being short the first and long the second")
    slices: int = Field(10, ge=1, le=1000)
    slice_interval: PosSeconds = 5.0
    entry_delay: NonNegDist = 0.0
    max_slippage: float = Field(0.005, ge=0.0, lt=0.5)

    @model_validator(mode="after")
    def _two_legs(self) -> "PairTraderGroup":
        if self.count > 0 and len(self.instruments) != 2:
            raise ValueError(f"a pair_trader group trades exactly two instruments, got {self.instruments}")
        return self


class ManipulatorGroup(_Group):
    """The Mango attack: build a long on a thin perpetual, push its book up with aggressive buys
    while the index weights in the venue's own price, withdraw the unrealised profit as free
    collateral, and walk away."""

    type: Literal["manipulator"] = "manipulator"
    position_leverage: float = Field(3.0, gt=0.0, description="initial long notional over equity")
    pump_start: Seconds = 600.0
    pump_duration: PosSeconds = 1200.0
    pump_interval: PosSeconds = 5.0
    pump_step: float = Field(0.05, gt=0.0, lt=1.0, description="each buy bids this fraction above the touch")
    pump_notional: float = Field(0.05, gt=0.0, description="each buy's notional over starting equity")
    withdraw_interval: PosSeconds = 30.0


GroupConfig = Annotated[
    Union[MarketMakerGroup, NoiseGroup, LeveragedGroup, BasisArbGroup, ValueGroup, MomentumGroup,
          OptionSellerGroup, DeltaHedgerGroup, BackstopProviderGroup, AuctionBidderGroup, PairTraderGroup,
          ManipulatorGroup],
    Field(discriminator="type"),
]


class PopulationConfig(StrictModel):
    groups: list[GroupConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "PopulationConfig":
        seen: dict[str, int] = {}
        for k, g in enumerate(self.groups):
            n = g.group_name
            if n in seen:
                raise ValueError(f"groups[{k}].name: group name {n!r} is also used by groups[{seen[n]}]; "
                                 f"give each group of the same type its own name")
            seen[n] = k
        vaults = sum(g.count for g in self.groups if g.type == "backstop_provider")
        if vaults > 1:
            raise ValueError(f"at most one backstop_provider agent (the vault), got {vaults}")
        return self

    def check_symbols(self, symbols: Mapping[str, int] | list[str]) -> None:
        """Raise ValueError naming ``groups[i].instruments[j]`` for a symbol not in the market."""
        known = set(symbols)
        for i, g in enumerate(self.groups):
            for j, s in enumerate(g.instruments):
                if s not in known:
                    raise ValueError(f"population.groups[{i}].instruments[{j}]: unknown instrument {s!r} "
                                     f"(the market lists {sorted(known)})")

    @property
    def total_agents(self) -> int:
        return sum(g.count for g in self.groups)
