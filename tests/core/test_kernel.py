"""The event kernel: named streams, latency draws, scheduled calls and periodic processes."""

import numpy as np
import pytest
from pydantic import ValidationError

from sim.core.kernel import World
from sim.market.latency import Latency, LatencyConfig
from sim.core.streams import RandomStreams


def test_named_streams_are_reproducible_and_independent_of_creation_order():
    a = RandomStreams(42)
    b = RandomStreams(42)
    a.stream("agent/1")
    first = a.stream("agent/2").integers(0, 1 << 30, 5)
    second = b.stream("agent/2").integers(0, 1 << 30, 5)  # agent/1 never created here
    assert first.tolist() == second.tolist()


def test_different_names_and_seeds_give_different_streams():
    s = RandomStreams(7)
    x = s.fresh("oracle").random(4)
    assert not np.allclose(x, s.fresh("venue").random(4))
    assert not np.allclose(x, RandomStreams(8).fresh("oracle").random(4))


@pytest.mark.parametrize("seed", [0, 7, 2**32 + 5, 2**70 + 3])
def test_a_named_stream_is_seedsequence_of_the_seed_with_the_name_as_spawn_key(seed):
    """The documented derivation, whatever shortcut builds it: SeedSequence(seed, spawn_key=digest
    of the name) -> PCG64."""
    import hashlib

    name = "agent/value/17"
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()
    key = tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
    expected = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))
    assert RandomStreams(seed).stream(name).random(8).tolist() == expected.random(8).tolist()


def test_negative_seed_is_rejected():
    with pytest.raises(ValueError, match="seed must be non-negative"):
        RandomStreams(-1)


def test_call_later_runs_in_time_order_and_every_repeats():
    world = World(0)
    seen: list[tuple[float, str]] = []
    world.call_later(2.0, lambda: seen.append((world.now, "late")))
    world.call_later(0.5, lambda: seen.append((world.now, "early")))
    world.every(1.0, lambda: seen.append((world.now, "tick")), start=1.0, until=3.0)
    world.run(until=10)
    assert seen == [(0.5, "early"), (1.0, "tick"), (2.0, "late"), (2.0, "tick"), (3.0, "tick")]


def test_call_soon_runs_before_normal_events_at_the_same_time():
    world = World(0)
    order: list[str] = []
    world.call_later(0.0, order.append, "normal")
    world.call_soon(order.append, "urgent")
    world.run(until=1)
    assert order == ["urgent", "normal"]


def test_every_rejects_non_positive_interval():
    with pytest.raises(ValueError, match="interval must be positive"):
        World(0).every(0.0, lambda: None)


@pytest.mark.parametrize("kind", ["exponential", "lognormal", "uniform"])
def test_random_latency_has_configured_mean_and_floor(kind):
    cfg = LatencyConfig(kind=kind, mean=0.01, min=0.002, sigma=0.5)
    lat = Latency(cfg, np.random.default_rng(1))
    draws = np.array([lat.next() for _ in range(40_000)])
    assert draws.min() >= 0.002
    assert draws.mean() == pytest.approx(0.01, rel=0.03)


def test_constant_latency_needs_no_stream_and_random_latency_does():
    assert Latency(LatencyConfig(kind="constant", mean=0.003)).next() == 0.003
    with pytest.raises(ValueError, match="needs a random stream"):
        Latency(LatencyConfig(kind="exponential", mean=0.003))


def test_latency_config_names_the_bad_field():
    with pytest.raises(ValidationError, match="mean"):
        LatencyConfig(kind="exponential", mean=-1.0)
    with pytest.raises(ValidationError, match=r"min \(0.5\) must not exceed mean"):
        LatencyConfig(kind="uniform", mean=0.1, min=0.5)


def test_episode_events_are_those_processed_not_those_still_queued(monkeypatch):
    """``stats['events']`` (the benchmark's numerator) counts events the kernel processed: wake-ups
    and messages still queued past the end of the clock are not events of the run."""
    from sim.core import kernel
    from sim.experiment.config import load_episode
    from sim.experiment.episode import run

    import heapq

    import simpy.core

    # every processed event leaves the queue by one pop: the kernel's loop for its plain calls,
    # simpy's step for its events
    processed = [0]

    def counting(queue):
        processed[0] += 1
        return heapq.heappop(queue)

    monkeypatch.setattr(kernel, "heappop", counting)
    monkeypatch.setattr(simpy.core, "heappop", counting)
    config = load_episode("configs/bench/rmsc04_like.yaml", {"duration": 600.0, "outputs": {"counterfactual": False}})
    result = run(config)
    assert result.stats["events"] == processed[0]


def test_running_the_world_restores_the_garbage_collector_settings():
    import gc

    before = gc.get_threshold(), gc.get_freeze_count()
    world = World(0)
    seen = []
    world.call_later(1.0, lambda: seen.append(gc.get_threshold()[2]))
    world.run(until=2.0)
    assert seen and seen[0] >= 1000  # full collections held back during the run
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_call_at_runs_at_the_given_time_exactly_and_never_before_now():
    world = World(1)
    seen: list[tuple[str, float]] = []
    due = 0.1 + 0.2  # 0.30000000000000004: now + (due - now) need not give it back
    world.call_later(0.7, lambda: world.call_at(due + 0.7, lambda: seen.append(("at", world.now))))
    world.call_later(0.7, lambda: world.call_at(0.0, lambda: seen.append(("past", world.now))))
    world.run(until=5.0)
    assert seen == [("past", 0.7), ("at", due + 0.7)]
