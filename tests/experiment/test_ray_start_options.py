"""``executors.start_local_ray`` with a fake ``ray`` module: what a sweep's own cluster is started
with (workers at niceness 0 beside the quiet settings, the environment the daemons inherit, and
the driver's environment restored afterwards, also when the start raises). Runs without Ray."""

from __future__ import annotations

import os
import sys
import types

import pytest

from sim.experiment import executors


def _fake_ray(monkeypatch, fail: bool = False) -> list[dict]:
    calls: list[dict] = []
    ray = types.ModuleType("ray")

    def init(**kwargs):
        calls.append({"kwargs": kwargs, "env": {k: os.environ.get(k) for k in executors.RAY_QUIET_ENV}})
        if fail:
            raise RuntimeError("the raylet did not start")

    ray.init = init
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.delitem(sys.modules, "ray._private.parameter", raising=False)  # no monitors to patch
    return calls


def test_workers_at_niceness_zero_and_quiet(monkeypatch):
    calls = _fake_ray(monkeypatch)
    for k in executors.RAY_QUIET_ENV:
        monkeypatch.delenv(k, raising=False)
    executors.start_local_ray(3)
    [call] = calls
    config = call["kwargs"]["_system_config"]
    assert config["worker_niceness"] == 0
    assert {k: config[k] for k in executors.RAY_QUIET_CONFIG} == executors.RAY_QUIET_CONFIG
    assert call["kwargs"]["num_cpus"] == 3
    assert call["env"] == executors.RAY_QUIET_ENV  # the daemons ray.init starts inherit it
    assert all(k not in os.environ for k in executors.RAY_QUIET_ENV)  # the driver's own is back


def test_environment_restored_when_the_start_raises(monkeypatch):
    _fake_ray(monkeypatch, fail=True)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")  # the user's own value survives
    with pytest.raises(RuntimeError):
        executors.start_local_ray(2)
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"
