"""Configs that cannot run are refused up front, with the field and an estimate of the cost (issue 14).

Regressions: ``duration: .inf`` validated and then failed at run time; duration 1e9 or dt 1e-6
exhausted memory; a sample interval of 1e-6 ran for hours; a VaR episode with a very volatile
path validated and then raised ``history prices must be finite and positive`` at build.
"""

from __future__ import annotations

import pytest

from sim.experiment.errors import ConfigError
from sim.experiment.io import deep_merge
from sim.experiment.config import parse_episode
from sim.experiment.episode import build
from tests.scenarios.harness import BASE


def _refused(override: dict, *needles: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse_episode(deep_merge(BASE, override))
    text = str(e.value)
    for needle in needles:
        assert needle in text, text
    return text


def test_infinite_or_nan_duration_is_refused():
    _refused({"duration": float("inf")}, "duration", "finite")
    _refused({"duration": float("nan")}, "duration")


def test_price_grids_that_cannot_fit_in_memory_are_refused_with_their_size():
    _refused({"duration": 1e9}, "paths.dt", "grid steps", "GiB of price paths")
    _refused({"paths": {"dt": 1e-6}}, "paths.dt", "6e+08 grid steps", "GiB")


def test_sample_and_event_counts_that_would_run_for_hours_are_refused_with_an_estimate():
    _refused({"outputs": {"sample_interval": 1e-6}}, "outputs.sample_interval", "sample rounds")
    _refused({"oracle": {"sample_interval": 1e-6}}, "oracle.sample_interval", "events", " h at ")
    group = {"type": "noise", "count": 1000, "rate": 1e4, "instruments": ["BTC-PERP"], "capital": 1000.0}
    _refused({"population": {"groups": [group]}}, "population.groups.0 (noise) count x rate", "events")


VOLATILE = {"margin": {"regime": "var"},
            "paths": {"models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0, "vol": 60.0}]}]}}


def _without_margin() -> dict:
    data = {k: v for k, v in BASE.items() if k != "margin"}
    return data


def test_a_var_history_that_cannot_be_built_is_refused_at_validation():
    with pytest.raises(ConfigError, match=r"clearing\.history: a VaR regime needs a 1000-row history"):
        parse_episode(deep_merge(_without_margin(), VOLATILE))
    # the same path under a regime that needs no history is fine, and so is a shorter history
    parse_episode(deep_merge(_without_margin(), {**VOLATILE, "margin": {"regime": "standard"}}))
    ok = parse_episode(deep_merge(_without_margin(), {**VOLATILE, "clearing": {"history": {
        "pre_episode_rows": 60, "row_interval": 3600.0}}}))
    build(ok)  # a config that validates builds
    # a history shorter than one margin period of risk would leave the regime without scenarios
    with pytest.raises(ConfigError, match=r"clearing\.history: a 2-day margin period of risk is 48 rows of 3600 s, "
                                          r"but the pre-episode history holds 30"):
        parse_episode(deep_merge(_without_margin(), {**VOLATILE, "clearing": {"history": {
            "pre_episode_rows": 30, "row_interval": 3600.0}}}))
