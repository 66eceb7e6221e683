"""``executors._without_ray_monitors``: while ``ray.init`` starts a sweep's own cluster, Ray's private
``RayParams`` default to no log monitor and no autoscaler monitor; a Ray whose private module has
another shape (or none) is left alone, and the original ``__init__`` is back afterwards either way.
Fake modules stand in for Ray, so these run without it (and without starting a cluster)."""

from __future__ import annotations

import sys
import types

import pytest

from sim.experiment.executors import _without_ray_monitors


def _fake_ray(monkeypatch, params_cls: type | None) -> None:
    ray = types.ModuleType("ray")
    private = types.ModuleType("ray._private")
    ray._private = private
    modules = {"ray": ray, "ray._private": private}
    if params_cls is not None:
        parameter = types.ModuleType("ray._private.parameter")
        parameter.RayParams = params_cls
        private.parameter = parameter
        modules["ray._private.parameter"] = parameter
    else:
        monkeypatch.delitem(sys.modules, "ray._private.parameter", raising=False)
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


class _Params:
    def __init__(self, num_cpus=None, include_log_monitor=None, no_monitor=False):
        self.num_cpus, self.include_log_monitor, self.no_monitor = num_cpus, include_log_monitor, no_monitor


class _OtherShape:
    def __init__(self, num_cpus=None):
        self.num_cpus = num_cpus


def test_monitors_are_off_only_inside_the_context(monkeypatch):
    _fake_ray(monkeypatch, _Params)
    original = _Params.__init__
    with _without_ray_monitors():
        p = _Params(num_cpus=2)
        assert (p.num_cpus, p.include_log_monitor, p.no_monitor) == (2, False, True)
        asked = _Params(include_log_monitor=True, no_monitor=False)  # a caller's own choice wins
        assert (asked.include_log_monitor, asked.no_monitor) == (True, False)
    assert _Params.__init__ is original
    assert _Params().include_log_monitor is None


def test_monitors_restored_when_the_start_raises(monkeypatch):
    _fake_ray(monkeypatch, _Params)
    original = _Params.__init__
    with pytest.raises(RuntimeError), _without_ray_monitors():
        raise RuntimeError("ray.init failed")
    assert _Params.__init__ is original


@pytest.mark.parametrize("shape", [_OtherShape, None], ids=["other-signature", "no-parameter-module"])
def test_another_ray_is_left_alone(monkeypatch, shape):
    _fake_ray(monkeypatch, shape)
    if shape is not None:
        original = shape.__init__
    with _without_ray_monitors():
        if shape is not None:
            assert shape.__init__ is original
            assert shape(num_cpus=3).num_cpus == 3
    if shape is not None:
        assert shape.__init__ is original


def test_the_installed_ray_has_the_shape_patched():
    """If this fails, an upgraded Ray no longer takes the two switches: its own clusters start with both
    monitors again (silently, by design) -- the measured start and idle figures no longer hold."""
    pytest.importorskip("ray")
    import inspect

    from ray._private import parameter

    known = inspect.signature(parameter.RayParams.__init__).parameters
    assert "include_log_monitor" in known and "no_monitor" in known
