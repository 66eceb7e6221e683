"""Scale: 10,000 agents for one simulated hour through a crash complete, with every whole-episode
invariant (ledger conservation, no liquidation at or above MM, no refused order resting) checked
by ``sim.experiment.episode.run`` at the end."""

from pathlib import Path

import pytest

from sim.experiment.config import load_episode
from sim.experiment.episode import run

CONFIG = Path(__file__).parents[2] / "configs" / "bench" / "stress_10k.yaml"


@pytest.mark.slow
def test_ten_thousand_agents_for_an_hour_run_to_completion():
    config = load_episode(CONFIG, {"outputs": {"counterfactual": False}})
    result = run(config)
    assert result.stats["accounts"] == 10_000
    assert result.stats["simulated_seconds"] == 3600.0
    assert result.stats["fills"] > 10_000
    assert len(result.tables["liquidations"]["liq_id"]) > 0  # the crash liquidates leveraged traders
