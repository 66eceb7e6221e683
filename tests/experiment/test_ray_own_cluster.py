"""A Ray sweep that starts its own cluster (``executors.start_local_ray``, with its quiet settings:
no metrics export, no usage report, no task events) gives the local pool's rows, and stops that
cluster and restores the driver's environment afterwards. A file of its own: the other distributed
tests keep one Ray session for their whole module, and this one needs Ray not yet initialised."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.distributed

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'clearsim[ray]')")

from sim.experiment.config import PACKAGED_DEFAULT  # noqa: E402
from sim.experiment.executors import RAY_QUIET_ENV  # noqa: E402
from sim.experiment.sweep import sweep  # noqa: E402
from test_distributed import short_overrides  # noqa: E402


def test_ray_own_cluster_matches_the_local_pool(tmp_path):
    if ray.is_initialized():
        pytest.skip("a Ray session is already up in this process")
    spec = {"name": "own", "base": str(PACKAGED_DEFAULT), "overrides": short_overrides(),
            "grid": {"margin": ["standard", "span"]}, "seeds": [1]}
    before = {k: os.environ.get(k) for k in RAY_QUIET_ENV}
    local = sweep(spec, backend="local", workers=2, progress=False, out=tmp_path / "local.parquet")
    own = sweep(spec, backend="ray", workers=2, progress=False, out=tmp_path / "ray.parquet")
    assert not ray.is_initialized()  # the sweep's cluster is gone with it
    assert {k: os.environ.get(k) for k in RAY_QUIET_ENV} == before
    assert set(own.column("status").to_pylist()) == {"ok"}
    assert own.drop_columns(["wall_seconds"]).equals(local.drop_columns(["wall_seconds"]))


def test_own_cluster_workers_run_at_the_pools_niceness():
    """Ray's default worker niceness (15) made each run dearer than in the local pool's workers
    (niceness 0, like this process's); the cluster a sweep starts runs its workers at 0 on top of
    the niceness it starts with: this process's (not 0 when the tests run under ``nice``)."""
    if ray.is_initialized():
        pytest.skip("a Ray session is already up in this process")
    from sim.experiment.executors import start_local_ray

    start_local_ray(1)
    try:
        niceness = ray.get(ray.remote(num_cpus=1)(lambda: os.nice(0)).remote())
    finally:
        ray.shutdown()
    assert niceness == os.nice(0)
