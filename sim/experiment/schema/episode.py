"""The episode: one YAML file (optionally ``extends``-ing another) validated in one go.

An episode is market + stress path + oracle + venue + margin regime + clearing rules +
population + duration + seed + outputs. Cross-references (instrument underlyings, collateral
price sources, oracle bounds, agents' instruments) are checked here, before anything runs.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from sim.core.strict_model import StrictModel
from clearing.config import ClearingConfig
from clearing.margin.config import MarginConfig, StandardConfig
from sim.market.market_config import MarketConfig
from sim.market.oracle_config import OracleConfig
from sim.market.paths_config import PathsConfig
from sim.market.volsurface_config import VolSurfaceConfig
from agents.config import PopulationConfig
from sim.market.venue_config import VenueConfig
from sim.experiment.schema.bounds import check_amounts, check_cost, check_history
from sim.experiment.schema.outputs import OutputsConfig, window_seconds


class EpisodeConfig(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    seed: int = Field(0, ge=0)
    duration: float = Field(gt=0.0, allow_inf_nan=False, description="simulated seconds")
    market: MarketConfig
    paths: PathsConfig
    vol_surfaces: dict[str, VolSurfaceConfig] = Field(default_factory=dict)
    oracle: OracleConfig = OracleConfig()
    venue: VenueConfig = VenueConfig()
    margin: MarginConfig = StandardConfig()
    clearing: ClearingConfig = ClearingConfig()
    population: PopulationConfig
    compare_regimes: list[MarginConfig] = Field(default_factory=list,
                                                description="regimes `clearsim compare` uses when none are given")
    outputs: OutputsConfig = OutputsConfig()

    @model_validator(mode="after")
    def _references(self) -> "EpisodeConfig":
        wf = self.clearing.loss_absorption.waterfall
        if wf is not None and wf.sizing_time >= self.duration:
            raise ValueError(f"clearing.loss_absorption.waterfall.sizing_time ({wf.sizing_time:g} s) is not before "
                             f"the end of the episode (duration {self.duration:g} s): the fund would never exist")
        interval = self.clearing.history.row_interval
        for where, regime in [("margin", self.margin)] + [(f"compare_regimes.{k}", r)
                                                         for k, r in enumerate(self.compare_regimes)]:
            days = getattr(regime, "mpor_days", None)
            if days is not None:
                rows = days * 86_400.0 / interval
                if rows < 1.0 - 1e-9 or abs(rows - round(rows)) > 1e-6:
                    raise ValueError(f"{where}.mpor_days: {days:g} days is {rows:g} rows of the price history "
                                     f"(clearing.history.row_interval {interval:g} s); it must be a whole number >= 1")
        known = set(self.paths.names())
        for k, ins in enumerate(self.market.instruments):
            if ins.underlying not in known:
                raise ValueError(f"market.instruments.{k} ({ins.symbol}): underlying {ins.underlying!r} has no "
                                 f"price path (paths define {sorted(known)})")
        for k, asset in enumerate(self.market.collateral):
            if asset.price_source is not None and asset.price_source not in known:
                raise ValueError(f"market.collateral.{k} ({asset.name}): price_source {asset.price_source!r} has no "
                                 f"price path")
        for field in ("floor", "ceiling"):
            for name in getattr(self.oracle, field):
                if name not in known:
                    raise ValueError(f"oracle.{field}: unknown underlying {name!r}")
        for name in self.vol_surfaces:
            if name not in known:
                raise ValueError(f"vol_surfaces: unknown underlying {name!r}")
        assets = [self.market.quote.name] + [a.name for a in self.market.collateral]
        for g, group in enumerate(self.population.groups):
            if group.collateral is not None and group.collateral.asset not in assets:
                raise ValueError(f"population.groups.{g} ({group.type}): collateral asset {group.collateral.asset!r} "
                                 f"is not in the market (assets: {assets})")
        for k, shock in enumerate(self.paths.shocks):
            if shock.start >= self.duration:
                raise ValueError(f"paths.shocks.{k} ({shock.kind}): starts at {shock.start:g} s, at or after the "
                                 f"end of the episode (duration {self.duration:g} s)")
        for g, group in enumerate(self.population.groups):
            if group.start >= self.duration:
                raise ValueError(f"population.groups.{g} ({group.group_name}): starts at {group.start:g} s, at or "
                                 f"after the end of the episode (duration {self.duration:g} s)")
        symbols = {i.symbol for i in self.market.instruments}
        self._check_measurement(symbols)
        for g, group in enumerate(self.population.groups):
            for symbol in getattr(group, "instruments", []) or []:
                if symbol not in symbols:
                    raise ValueError(f"population.groups.{g} ({group.type}): unknown instrument {symbol!r} "
                                     f"(market has {sorted(symbols)})")
        check_cost(self)
        check_amounts(self)
        check_history(self)
        return self

    def _check_measurement(self, symbols: set[str]) -> None:
        out = self.outputs
        start = self.measurement_start()
        if out.measure_from is not None and not out.measure_from < self.duration:
            raise ValueError(f"outputs.measure_from: {out.measure_from:g} s is not inside the episode "
                             f"(duration {self.duration:g} s)")
        if out.procyclicality_horizon is not None and out.procyclicality_horizon > self.duration - start:
            raise ValueError(f"outputs.procyclicality_horizon: {out.procyclicality_horizon:g} s is longer than the "
                             f"measurement window ({start:g} s to the end at {self.duration:g} s)")
        for symbol in out.reference_portfolio or {}:
            if symbol not in symbols:
                raise ValueError(f"outputs.reference_portfolio: unknown instrument {symbol!r} "
                                 f"(market has {sorted(symbols)})")

    def measurement_start(self) -> float:
        """Where procyclicality is measured from: ``outputs.measure_from``, else the start of the
        first scripted shock that starts inside the episode, else 0."""
        if self.outputs.measure_from is not None:
            return float(self.outputs.measure_from)
        starts = [float(s.start) for s in self.paths.shocks if s.start < self.duration]
        return min(starts) if starts else 0.0

    def horizon(self) -> float:
        """The n of the largest n-second margin increase (``outputs.procyclicality_horizon``, else
        ``sim.experiment.schema.outputs.window_seconds`` of the measurement window)."""
        if self.outputs.procyclicality_horizon is not None:
            return float(self.outputs.procyclicality_horizon)
        return window_seconds(self.duration - self.measurement_start(), self.outputs.sample_interval)

    def reference_notional(self) -> dict[str, float]:
        """The reference portfolio: symbol -> signed quote notional (the default: long 1 quote unit
        of every linear instrument)."""
        if self.outputs.reference_portfolio is not None:
            return dict(self.outputs.reference_portfolio)
        return {i.symbol: 1.0 for i in self.market.instruments if i.kind != "option"}
