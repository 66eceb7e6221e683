"""The assembled episode: every live component of one run, and what a finished run leaves.

Its own module so the observers that read a running episode (the recorder, the who-paid vault
tracker, the reference-portfolio margin, the accounts directory) can name the type without importing
the code that builds and runs it (``sim.experiment.episode``), which imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agents.base import Agent
from clearing.absorption import LossAbsorber
from clearing.haircuts import DynamicHaircuts
from clearing.house import ClearingHouse
from clearing.insurance import InsuranceFund
from clearing.isolated import IsolatedMargin
from clearing.ledger import Ledger
from clearing.liquidation import LiquidationEngine
from clearing.margin.base import MarginRegime
from clearing.waterfall import DefaultWaterfall
from sim.core.instruments import InstrumentTable
from sim.core.kernel import World
from sim.experiment.schema.episode import EpisodeConfig
from sim.market.mark import MarkPricer
from sim.market.oracle import Oracle
from sim.market.paths import PricePaths
from sim.market.venue import Venue


class EpisodeRecorder(Protocol):
    """What the episode needs of the recorder it carries (``sim.experiment.recorder.Recorder``)."""

    def tables(self) -> dict[str, dict[str, np.ndarray]]: ...

    def check_refused_not_resting(self) -> None: ...


@dataclass
class Episode:
    """Every live component of one run (what agents, tests and metrics may inspect)."""

    config: EpisodeConfig
    world: World
    paths: PricePaths
    table: InstrumentTable
    ledger: Ledger
    venue: Venue
    oracle: Oracle
    marks: MarkPricer
    regime: MarginRegime
    house: ClearingHouse
    engine: LiquidationEngine
    absorber: LossAbsorber
    fund: InsuranceFund
    waterfall: DefaultWaterfall | None
    agents: list[Agent] = field(default_factory=list)
    recorder: EpisodeRecorder | None = None
    backstop_account: int | None = None
    external_account: int | None = None  # the no-feedback twin's absorber (liquidation.absorb_outside)
    haircuts: DynamicHaircuts | None = None
    isolated: IsolatedMargin | None = None
    # every row's balances and the assets' prices before the first event (the accounts table)
    initial_cash: np.ndarray | None = None
    initial_asset_prices: np.ndarray | None = None
    # (account, group, agent type, initial capital in quote units) for every trader account
    accounts_meta: list[tuple[int, str, str, float]] = field(default_factory=list)


@dataclass
class EpisodeResult:
    """What a finished run leaves: the config, the recorded tables, and run statistics."""

    config: EpisodeConfig
    tables: dict[str, dict[str, np.ndarray]]
    stats: dict[str, Any]
    episode: Episode | None = None  # kept only when asked (it holds the whole world)
