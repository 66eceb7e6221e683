"""Episode-level controls for the contagion measures (docs/METHODOLOGY.md, "Breach attribution").

The default episode's crash liquidates into books that its market makers thin out and then leave;
with the book-reading mark some of those liquidations move the marks enough to breach others. The
control is the same episode with market makers 50x deeper that never withdraw and carry 50x the
capital: liquidations can no longer move the book, so (almost) no breach may be endogenous. If the
attribution blamed liquidations for moves they did not cause (the old rule blamed 33% here), this
fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sim.experiment.config import parse_episode
from sim.experiment.io import read_yaml
from sim.experiment.episode import run
from sim.experiment.metrics import summarise

EPISODE = Path(__file__).resolve().parents[2] / "sim" / "episodes" / "default.yaml"


def _deep_book_default() -> Any:
    data = read_yaml(EPISODE)
    for group in data["population"]["groups"]:
        if group["type"] != "market_maker":
            continue
        size = group["size"]
        group["size"] = {**size, "low": size["low"] * 50, "high": size["high"] * 50} if isinstance(size, dict) \
            else size * 50
        group["max_inventory"] = group.get("max_inventory", 100) * 50
        group["capital"] = group["capital"] * 50
        group["withdraw_vol"] = None
        group["withdraw_move"] = None
        group["withdraw_drawdown"] = None
    data["name"] = "default_deep_book"
    data["outputs"]["counterfactual"] = False
    return parse_episode(data, "default with deep, ever-present market makers")


def _default() -> Any:
    data = read_yaml(EPISODE)
    data["outputs"]["counterfactual"] = False
    return parse_episode(data, "default")


@pytest.mark.slow
def test_deep_ever_present_books_leave_almost_no_endogenous_breach():
    result = run(_deep_book_default())
    liquidations = result.tables["liquidations"]
    n = liquidations["liq_id"].size
    assert n > 50  # the crash still liquidates: the control is not empty
    assert liquidations["endogenous"].sum() <= 0.01 * n
    cascades = summarise(result.config, result.tables, result.stats)["cascades"]
    assert cascades["endogenous_count"] == 0 and cascades["max_generation"] == 0


@pytest.mark.slow
def test_the_default_episode_itself_has_liquidations_that_breach_others():
    """The other side of the control: thin, withdrawing makers and a mark that reads the book."""
    result = run(_default())
    cascades = summarise(result.config, result.tables, result.stats)["cascades"]
    assert cascades["endogenous_count"] >= 1 and cascades["max_generation"] >= 1
    assert cascades["amplification"] > 1.0
