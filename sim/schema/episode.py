"""The episode: one YAML file (optionally ``extends``-ing another) validated in one go.

An episode is market + stress path + oracle + venue + margin regime + clearing rules +
population + duration + seed + outputs. Cross-references (instrument underlyings, collateral
price sources, oracle bounds, agents' instruments) are checked here, before anything runs.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from sim.schema.base import StrictModel
from sim.schema.clearing import ClearingConfig
from sim.schema.margin import MarginConfig, StandardConfig
from sim.schema.market import MarketConfig
from sim.schema.oracle import OracleConfig
from sim.schema.paths import PathsConfig, VolSurfaceConfig
from sim.schema.population import PopulationConfig
from sim.schema.venue import VenueConfig


class OutputsConfig(StrictModel):
    directory: str | None = Field(None, description="results folder; default results/<episode name>")
    sample_interval: float = Field(60.0, gt=0.0, description="seconds between account-state samples")
    parquet: bool = True
    report: bool = True
    counterfactual: bool = Field(False, description="also run with liquidations moved off-book at mark, "
                                                     "to measure the price amplification liquidations cause")


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
        symbols = {i.symbol for i in self.market.instruments}
        for g, group in enumerate(self.population.groups):
            for symbol in getattr(group, "instruments", []) or []:
                if symbol not in symbols:
                    raise ValueError(f"population.groups.{g} ({group.type}): unknown instrument {symbol!r} "
                                     f"(market has {sorted(symbols)})")
        from sim.schema.bounds import check_amounts, check_cost, check_history

        check_cost(self)
        check_amounts(self)
        check_history(self)
        return self
