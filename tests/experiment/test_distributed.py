"""Distributed sweeps: a local Ray and a local Dask cluster give the same table as the local pool,
and the same config + seed gives byte-identical summary.json in-process, in a process pool, on Ray
and on Dask.

Uses a short, small episode (the packaged default shortened to 300 s, populations cut to a tenth,
the crash moved inside the window) so the whole file runs in about a minute on two cores.
"""

from __future__ import annotations

import copy
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = pytest.mark.distributed

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'clearsim[ray]')")
distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                                        "(pip install 'clearsim[dask]')")

from sim.experiment.config import PACKAGED_DEFAULT, parse_episode
from sim.experiment.io import read_yaml  # noqa: E402
from sim.experiment.metrics import flatten, summarise  # noqa: E402
from sim.experiment.io import dump_json  # noqa: E402
from sim.experiment.sweep import summary_json, sweep  # noqa: E402

WORKERS = 2


def short_overrides() -> dict:
    """Fixed overrides that make the default episode short and small but still eventful."""
    base = read_yaml(PACKAGED_DEFAULT)
    groups = copy.deepcopy(base["population"]["groups"])
    for g in groups:
        if g.get("count", 1) > 4:
            g["count"] = max(4, g["count"] // 10)
        if "entry_delay" in g:
            g["entry_delay"] = {"dist": "uniform", "low": 0.0, "high": 60.0}
    return {
        "duration": 300.0,
        "outputs.sample_interval": 10.0,
        "population.groups": groups,
        "paths.shocks": [
            {"kind": "crash", "underlyings": ["BTC", "ETH"], "start": 120.0, "drop": 0.15, "duration": 120.0},
            {"kind": "crash", "underlyings": ["ALT"], "start": 150.0, "drop": 0.5, "duration": 60.0},
        ],
    }


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    return {"name": "dist", "base": str(PACKAGED_DEFAULT), "overrides": short_overrides(),
            "grid": {"margin": ["standard", "span"]}, "seeds": 2, "output": str(out / "local.parquet")}


@pytest.fixture(scope="module")
def episode_data(spec):
    from sim.experiment.sweep import plan

    _cfg, tasks = plan(spec)
    return tasks[0]["data"]


@pytest.fixture(scope="module")
def local_table(spec):
    return sweep(spec, backend="local", workers=WORKERS, progress=False)


@pytest.fixture(scope="module")
def ray_session():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def dask_client():
    import logging

    cluster = distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _comparable(table):
    return table.drop_columns(["wall_seconds"])


def _start_ups_once_per_worker(out) -> None:
    """Each row on disk names its worker; a worker's start-up (imports included) is reported on one row
    only, the first it ran: paid once per worker, not per run."""
    from sim.experiment.sweep import parts_dir

    from sim.experiment.parts import Rows

    rows = [row for _, row in Rows(parts_dir(out)).items()]
    assert len(rows) == 4
    # every run had the driver's floating-point arithmetic (sim.core.arithmetic), wherever it ran
    from sim.core.arithmetic import profile

    assert [r["timing"]["arithmetic"] for r in rows] == [profile()] * 4
    for worker in {r["timing"]["worker"] for r in rows}:
        mine = [r["timing"] for r in rows if r["timing"]["worker"] == worker]
        assert sum(t["startup_cpu_seconds"] is not None for t in mine) <= 1
        assert all(t["cpu_seconds"] > 0 for t in mine)


def test_local_sweep_is_sound(local_table, spec):
    rows = local_table.to_pylist()
    assert len(rows) == 4
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert sum(r["liquidations.count"] for r in rows) > 0  # the short episode still liquidates someone


def test_ray_table_equals_local(spec, local_table, ray_session, tmp_path):
    table = sweep(spec, backend="ray", workers=WORKERS, progress=False, out=tmp_path / "ray.parquet")
    assert _comparable(table).equals(_comparable(local_table))
    _start_ups_once_per_worker(tmp_path / "ray.parquet")


def test_dask_table_equals_local(spec, local_table, dask_client, tmp_path):
    table = sweep(spec, backend="dask", workers=WORKERS, progress=False, out=tmp_path / "dask.parquet",
                  client=dask_client)
    assert _comparable(table).equals(_comparable(local_table))
    _start_ups_once_per_worker(tmp_path / "dask.parquet")


def test_dask_existing_cluster_by_address(spec, local_table, dask_client, tmp_path):
    """The recipe for a cluster beyond this machine: a running scheduler's address (here the module's
    local cluster, reached as any remote one is), from the API and from the CLI."""
    address = dask_client.scheduler.address
    assert address.startswith("tcp://")
    table = sweep(spec, backend="dask", progress=False, out=tmp_path / "by_address.parquet", address=address)
    assert _comparable(table).equals(_comparable(local_table))
    from sim.experiment.cli import main

    grid_file = tmp_path / "spec.yaml"
    grid_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "cli.parquet"
    assert main(["sweep", str(grid_file), "--backend", "dask", "--address", address, "--out", str(out), "--quiet"]) == 0
    assert _comparable(pq.read_table(out)).equals(_comparable(local_table))


def test_an_address_needs_a_cluster_backend(spec, tmp_path, capsys):
    from sim.experiment.cli import main

    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--address", "tcp://10.0.0.1:8786"]) == 2
    assert "--address: a cluster address needs --backend ray or dask" in capsys.readouterr().err


def test_dask_own_cluster(spec, local_table, tmp_path):
    """Without a client the sweep starts (and stops) its own local cluster."""
    one = dict(spec, grid={"margin": ["span"]}, seeds=[1])
    table = sweep(one, backend="dask", workers=1, progress=False, out=tmp_path / "own.parquet")
    expected = [r for r in local_table.to_pylist() if r["margin"] == "span" and r["seed"] == 1]
    got = table.to_pylist()
    # a table's columns are the union over its runs: the four-run table has columns (None here)
    # that this run's summary does not produce, so compare the values this run has
    got = [{k: v for k, v in r.items() if v is not None and k != "wall_seconds"} for r in got]
    expected = [{k: v for k, v in r.items() if v is not None and k != "wall_seconds"} for r in expected]
    assert got == expected
    # its workers load numpy before clearsim: they get the driver's arithmetic from the nanny
    from sim.core.arithmetic import profile
    from sim.experiment.parts import Rows
    from sim.experiment.sweep import parts_dir

    assert [row["timing"]["arithmetic"] for _, row in Rows(parts_dir(tmp_path / "own.parquet")).items()] == [profile()]


def test_summary_bytes_identical_everywhere(episode_data, local_table, ray_session, dask_client):
    from sim.experiment.episode import run

    config = parse_episode(episode_data)
    result = run(config)
    summary = summarise(config, result.tables, result.stats)
    in_process = dump_json(summary)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pooled = pool.submit(summary_json, episode_data).result()
    on_ray = ray.get(ray.remote(summary_json).remote(episode_data))
    on_dask = dask_client.submit(summary_json, episode_data, pure=False).result()
    assert pooled == in_process
    assert on_ray == in_process
    assert on_dask == in_process
    # and the sweep row for this run holds the same figures
    row = next(r for r in local_table.to_pylist() if r["margin"] == "standard" and r["seed"] == config.seed)
    for key, value in flatten(summary).items():
        if not isinstance(value, list):
            assert row[key] == value, key
