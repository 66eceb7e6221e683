"""Scale without changing answers: small first blocks of per-account draws, and noise groups as one
agent over an array of accounts (agents.noise.NoiseCrowd)."""

import numpy as np
import pytest

from sim.market.latency import Latency, LatencyConfig


@pytest.mark.parametrize("kind", ["exponential", "lognormal", "uniform"])
def test_latency_blocks_that_grow_draw_what_one_big_block_draws(kind):
    cfg = LatencyConfig(kind=kind, mean=0.01, min=0.002, sigma=0.7)
    lat = Latency(cfg, np.random.Generator(np.random.PCG64(3)))
    got = [lat.next() for _ in range(10_000)]  # blocks of 16, 32, ..., 4096, 4096
    rng = np.random.Generator(np.random.PCG64(3))
    spread = cfg.mean - cfg.min
    if kind == "exponential":
        want = rng.exponential(spread, 10_000)
    elif kind == "lognormal":
        want = rng.lognormal(np.log(spread) - 0.5 * cfg.sigma**2, cfg.sigma, 10_000)
    else:
        want = rng.uniform(0.0, 2.0 * spread, 10_000)
    assert got == (want + cfg.min).tolist()


def test_latency_first_block_is_small():
    lat = Latency(LatencyConfig(kind="exponential", mean=0.01), np.random.Generator(np.random.PCG64(1)))
    lat.next()
    assert lat._size == 16
    assert Latency(LatencyConfig(), None).next() == 0.001  # constant: no stream, no block


# ------------------------------------------------------------------------------------ noise groups
from agents.noise import NoiseCrowd  # noqa: E402
from sim.experiment.accounts import account_directory  # noqa: E402
from test_agents_behaviour import MAKER, episode, of, start  # noqa: E402


def _noise(**kw):
    return {"type": "noise", "name": "crowd", "capital": 100_000.0, "instruments": ["BTC-PERP"], **kw}


def test_an_empty_noise_group_opens_nothing_and_schedules_nothing():
    ep = episode(MAKER, _noise(count=0))
    (crowd,) = of(ep, NoiseCrowd)
    assert crowd.members == 0
    queued = len(ep.world.env._queue)
    crowd.start()
    assert len(ep.world.env._queue) == queued


def test_a_noise_group_is_one_agent_and_one_pending_event():
    ep = episode(MAKER, _noise(count=500, rate=0.01))
    assert len(of(ep, NoiseCrowd)) == 1
    (crowd,) = of(ep, NoiseCrowd)
    queued = len(ep.world.env._queue)
    crowd.start()
    assert len(ep.world.env._queue) == queued + 1  # the group's next arrival, not one per member
    directory = account_directory(ep)
    rows = crowd.accounts
    assert directory["name"][rows].tolist() == [f"crowd/{k}" for k in range(500)]
    assert set(directory["group"][rows].tolist()) == {"crowd"}
    assert set(directory["type"][rows].tolist()) == {"noise"}


def test_uniform_arrivals_give_each_member_max_orders_inside_the_window():
    ep = episode(MAKER, _noise(count=40, arrivals="uniform", max_orders=2, start=100.0, end=200.0, market_prob=1.0))
    times: list[float] = []
    submit = ep.venue.submit

    def recording(*args, **kw):
        times.append(ep.world.now)
        return submit(*args, **kw)

    ep.venue.submit = recording  # type: ignore[method-assign]
    start(ep, oracle=False)
    (crowd,) = of(ep, NoiseCrowd)
    # the group's one pair of links serves every member from the start (Venue.share_links)
    assert set(crowd.accounts.tolist()) <= set(ep.venue._links_in)
    ep.world.run(until=300.0)
    assert crowd.member_orders.tolist() == [2] * 40
    noise_times = [t for t in times if t >= 100.0]  # the maker quotes at 0
    assert len(noise_times) == 80 and max(noise_times) < 200.0
    assert noise_times == sorted(noise_times)


def test_same_seed_same_noise_orders_in_a_worker_process():
    import concurrent.futures as cf
    with cf.ProcessPoolExecutor(1) as pool:
        there = pool.submit(_noise_log).result()
    assert there == _noise_log()


def _noise_log() -> list[tuple]:
    ep = episode(MAKER, _noise(count=300, rate=0.05, max_orders=3))
    log: list[tuple] = []
    submit = ep.venue.submit

    def recording(account, instrument, side, price, lots, tif=0, reduce_only=False, reply=None):
        log.append((ep.world.now, account, side, price, lots, int(tif)))
        return submit(account, instrument, side, price, lots, tif, reduce_only, reply)

    ep.venue.submit = recording  # type: ignore[method-assign]
    start(ep, oracle=False)
    ep.world.run(until=600.0)
    return log


# ------------------------------------------------------------------------------------ benchmarks' inputs
def test_bench_scale_multiplies_every_group_but_the_vault():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    import bench_scale

    base = bench_scale.scaled_config(1)
    assert sum(g.count for g in base.population.groups) == 10_000
    big = bench_scale.scaled_config(100, duration=600.0)
    counts = {g.group_name: g.count for g in big.population.groups}
    assert counts["backstop_provider"] == 1 and counts["noise"] == 750_000 and counts["levered"] == 198_000
    assert sum(counts.values()) == 999_901
    assert big.duration == 600.0 and big.paths.shocks == []  # the crash at 1,200 s is past the end
    assert len(bench_scale.scaled_config(1, duration=1500.0).paths.shocks) == 1
    assert big.market.quote.decimals == base.market.quote.decimals == 5
    # the whole hour at 1M is accepted: its samples fit the schema's cap once the interval is raised
    assert bench_scale.scaled_config(100).outputs.sample_interval == 240.0
    assert bench_scale.scaled_config(10).outputs.sample_interval == base.outputs.sample_interval == 60.0
    # the vault's capital and the insurance fund grow with the accounts they stand behind
    vault = {g.group_name: g for g in big.population.groups}["backstop_provider"]
    base_vault = {g.group_name: g for g in base.population.groups}["backstop_provider"]
    assert vault.capital == 100 * base_vault.capital == 2e9
    assert big.clearing.loss_absorption.insurance_fund == 100 * base.clearing.loss_absorption.insurance_fund
    fixed = bench_scale.scaled_config(100, fixed_pools=True)
    assert {g.group_name: g for g in fixed.population.groups}["backstop_provider"].capital == base_vault.capital
    assert fixed.clearing.loss_absorption.insurance_fund == base.clearing.loss_absorption.insurance_fund


def test_episode_stats_count_amends_from_the_run():
    from sim.experiment.config import parse_episode
    from sim.experiment.episode import run
    from test_agents_behaviour import BASE
    from sim.experiment.io import deep_merge

    def stats(*groups):
        data = deep_merge(BASE, {"duration": 60.0, "outputs": {"counterfactual": False}})
        data["population"] = {"groups": list(groups)}
        return run(parse_episode(data, "test")).stats

    alone = stats(_noise(count=20, rate=0.5))  # noise traders submit and cancel, never amend
    assert alone["amends"] == 0 and alone["orders"] > 0
    assert stats(MAKER, _noise(count=20, rate=0.5))["amends"] > 0  # a maker re-prices its quotes by amending
