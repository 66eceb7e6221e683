"""Scale without changing answers: small first blocks of per-account draws, and noise groups as one
agent over an array of accounts (agents.noise.NoiseCrowd)."""

import numpy as np
import pytest

from sim.latency import Latency, LatencyConfig


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
    assert len(lat._block) == 16
    assert Latency(LatencyConfig(), None).next() == 0.001  # constant: no stream, no block
