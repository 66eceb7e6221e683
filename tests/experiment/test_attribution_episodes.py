"""Every shipped episode's liquidations table satisfies the documented but-for rule, checked from the
table's own columns (docs/METHODOLOGY.md, "Breach attribution")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.experiment.config import load_episode
from sim.experiment.episode import run
from tests.scenarios.test_attribution import but_for_holds

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EPISODES = sorted([*CONFIGS.glob("*.yaml"), *CONFIGS.glob("regimes/*.yaml")])


@pytest.mark.slow
@pytest.mark.parametrize("path", EPISODES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_liquidation_of_a_shipped_episode_satisfies_the_but_for_rule(path: Path) -> None:
    config = load_episode(path)
    result = run(config)
    liquidations = result.tables["liquidations"]
    but_for_holds(liquidations, config.clearing.attribution.materiality)
    # the channels are finite numbers on every row (the rule reads them)
    for name in ("equity_change_index", "equity_change_collateral", "equity_change_impact",
                 "equity_change_allocation", "equity_change_other", "mm_change"):
        assert np.isfinite(liquidations[name]).all(), name
