"""The project fuzzes itself: random valid episodes must finish, verify, stay exact, and never
liquidate a healthy account (issue 14; the strategy and the checks are in ``tests/fuzz/episodes.py``).

* fast profile (the normal suite): ``FAST_EXAMPLES`` episodes, a fixed derandomised set so CI is
  reproducible (~10-20 s);
* long profile: ``pytest -m fuzz`` runs ``CLEARSIM_FUZZ_EXAMPLES`` (default 2,000) random episodes;
  see docs/RELIABILITY.md for the command and the figures recorded.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.episodes import check_episode, episodes
from tests.fuzz.regressions import found

FAST_EXAMPLES = 40
LONG_EXAMPLES = int(os.environ.get("CLEARSIM_FUZZ_EXAMPLES", "2000"))
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


@settings(max_examples=FAST_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=_QUIET)
@given(episodes())
def test_random_episodes_keep_every_invariant(data):
    check_episode(data)


@pytest.mark.parametrize("name", sorted(found()))
def test_episodes_the_long_profile_once_failed_on(name):
    check_episode(found()[name])


@pytest.mark.fuzz
@settings(max_examples=LONG_EXAMPLES, deadline=None, database=None, suppress_health_check=_QUIET)
@given(episodes())
def test_random_episodes_keep_every_invariant_long(data):
    exercised = check_episode(data)
    report = os.environ.get("CLEARSIM_FUZZ_REPORT")
    if report:  # one JSON line per episode: what it exercised (the figures in docs/RELIABILITY.md)
        import json

        row = {"regime": data["margin"]["regime"], "policy": data["clearing"]["liquidation"]["policy"], **exercised}
        with open(report, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")


def test_the_fuzzer_checks_can_fail(monkeypatch):
    """A control: the end-state check catches an account left below MM with no liquidation."""
    import sim.experiment.episode
    from clearing.liquidation import LiquidationEngine

    monkeypatch.setattr(LiquidationEngine, "start", lambda self, account, equity, mm, cause, why=None: None)
    monkeypatch.setattr(sim.experiment.episode, "verify", lambda episode: None)
    from tests.scenarios.harness import BASE, crash
    from sim.experiment.io import deep_merge

    data = deep_merge(BASE, crash(100.0, 0.3))
    data["population"] = {"groups": [
        {"type": "market_maker", "capital": 1e7, "instruments": ["BTC-PERP"], "size": 5},
        {"type": "leveraged", "count": 5, "capital": 1000.0, "instruments": ["BTC-PERP"], "leverage": 9.0,
         "long_prob": 1.0}]}
    with pytest.raises(AssertionError, match="end below MM with no liquidation in progress"):
        check_episode(data)
