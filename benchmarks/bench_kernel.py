"""Event-kernel throughput: N agents exchanging latency-delayed messages with one venue.

Each agent wakes on its own Poisson clock (mean gap ``--gap`` s, drawn in blocks from its own
stream, as ``agents.base.Arrivals`` does) and sends one message through the venue's public,
latency-carrying API: a cancel of its oldest live order (when it has three live, or with
probability 0.4 when it has any) or else a new limit order near the touch (10% of them marketable
IOCs). Messages reach the venue after an exponential latency (mean 2 ms, floor 0.5 ms) and every
order gets a reply back after another draw; the agent drops an order from its live list when the
reply says nothing rests. No clearing house: the venue's default risk check accepts everything.

What is counted, over a fixed simulated time:

* events -- simpy events processed: scheduled ids (``env._eid``) minus those still queued at the
  end;
* messages -- agent->venue submits and cancels plus venue->agent replies delivered.

Usage: ``python benchmarks/bench_kernel.py [--agents 1000 10000] [--sim-seconds S] [--gap G]
[--repeat R] [--profile]``. Prints one line per N (best wall time of the repeats, with CPU time
next to it: the machine is shared) and ends with exactly one line ``events_per_s=<int>`` for the
1,000-agent case (the first N when 1,000 is not among them). ``--profile`` runs the first N once
under cProfile and prints the top functions by own time instead.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.base import UNIT, Arrivals  # noqa: E402
from sim.core.kernel import World  # noqa: E402
from sim.market.latency import LatencyConfig  # noqa: E402
from sim.core.orders import BUY, SELL, TimeInForce  # noqa: E402
from agents.distributions import Sampler  # noqa: E402
from sim.market.venue_config import VenueConfig  # noqa: E402
from sim.market.venue import Venue  # noqa: E402

REFERENCE = 10_000  # ticks
LATENCY = LatencyConfig(kind="exponential", mean=0.002, min=0.0005)


class BenchAgent:
    """A Poisson-clock trader: one message per wake-up, replies tracked."""

    __slots__ = ("world", "venue", "account", "rng", "arrivals", "live", "uniform", "stats")

    def __init__(self, world: World, venue: Venue, account: int, gap: float, stats: list[int]) -> None:
        self.world = world
        self.venue = venue
        self.account = account
        self.rng = world.stream(f"agent/{account}")
        self.arrivals = Arrivals(gap, self.rng)
        self.live: deque[int] = deque()
        self.uniform = Sampler(UNIT, self.rng, 256)  # uniforms, drawn in blocks like the arrival gaps
        self.stats = stats  # [wakes, submits, cancels, replies]

    def start(self) -> None:
        self.world.call_later(self.arrivals.next(), self.wake)

    def wake(self) -> None:
        stats = self.stats
        stats[0] += 1
        live = self.live
        if live and (len(live) >= 3 or self.uniform() < 0.4):
            self.venue.cancel(self.account, live.popleft(), 0)
            stats[2] += 1
        else:
            book = self.venue.books[0]
            side = BUY if self.uniform() < 0.5 else SELL
            r = self.uniform()
            if side == BUY:
                touch = book.best_bid() or book.best_ask() or REFERENCE
            else:
                touch = book.best_ask() or book.best_bid() or REFERENCE
            if r < 0.1:  # marketable: cross the spread by a few ticks
                price, tif = touch + side * (1 + int(r * 50)), TimeInForce.IOC
                opposite = book.best_ask() if side == BUY else book.best_bid()
                if opposite is not None:
                    price = opposite + side * 2
            else:  # passive: join or sit a few ticks behind the touch
                price, tif = touch - side * int((r - 0.1) * 10), TimeInForce.GTC
            oid = self.venue.submit(self.account, 0, side, max(1, price), 1 + int(self.uniform() * 9), tif,
                                    reply=self.on_reply)
            if tif == TimeInForce.GTC:
                live.append(oid)
            stats[1] += 1
        self.world.call_later(self.arrivals.next(), self.wake)

    def on_reply(self, result) -> None:
        self.stats[3] += 1
        if result.resting_size == 0 and result.order_id in self.live:
            self.live.remove(result.order_id)


def build(n_agents: int, gap: float, seed: int = 7) -> tuple[World, Venue, list[int]]:
    world = World(seed)
    venue = Venue(world, VenueConfig(to_venue_latency=LATENCY, to_agent_latency=LATENCY), [1])
    venue.resting.ensure(n_agents)
    stats = [0, 0, 0, 0]
    for a in range(n_agents):
        BenchAgent(world, venue, a, gap, stats).start()
    return world, venue, stats


def run_once(n_agents: int, sim_seconds: float, gap: float) -> dict[str, float]:
    t0 = time.perf_counter()
    world, venue, stats = build(n_agents, gap)
    setup = time.perf_counter() - t0
    env = world.env
    eid0 = next(env._eid)  # events scheduled during set-up (the first wake-ups)
    queued0 = len(env._queue)
    gc.collect()
    gc.disable()
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        world.run(until=sim_seconds)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    finally:
        gc.enable()
    eid1 = next(env._eid)
    # processed during the run = queued at the start + scheduled during the run - still queued
    events = queued0 + (eid1 - eid0 - 1) - len(env._queue)
    messages = stats[1] + stats[2] + stats[3]
    book = venue.books[0]
    return {
        "agents": n_agents, "sim_s": sim_seconds, "setup_s": setup, "wall_s": wall, "cpu_s": cpu,
        "events": events, "wakes": stats[0], "submits": stats[1],
        "cancels": stats[2], "replies": stats[3], "messages": messages, "fills": venue.counts["fills"],
        "resting": len(book), "levels": book.level_count(BUY) + book.level_count(SELL),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--sim-seconds", type=float, default=30.0)
    ap.add_argument("--gap", type=float, default=1.0, help="mean seconds between an agent's wake-ups")
    ap.add_argument("--repeat", type=int, default=3, help="runs per N (best wall time is reported)")
    ap.add_argument("--profile", action="store_true", help="cProfile the first N once")
    args = ap.parse_args(argv)

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        world, venue, stats = build(args.agents[0], args.gap)
        prof.enable()
        world.run(until=args.sim_seconds)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0

    headline = None
    for n in args.agents:
        best = None
        for _ in range(max(1, args.repeat)):
            r = run_once(n, args.sim_seconds, args.gap)
            if best is None or r["wall_s"] < best["wall_s"]:
                best = r
        assert best is not None
        eps = best["events"] / best["wall_s"]
        print(f"agents={n:>6} sim_s={best['sim_s']:g} wakes={best['wakes']} messages={best['messages']} "
              f"(submits={best['submits']} cancels={best['cancels']} replies={best['replies']}) "
              f"fills={best['fills']} resting={best['resting']} levels={best['levels']} "
              f"events={best['events']}")
        print(f"    wall={best['wall_s']:.3f}s cpu={best['cpu_s']:.3f}s setup={best['setup_s']:.3f}s "
              f"events/s={eps:,.0f} (cpu: {best['events'] / best['cpu_s']:,.0f}) "
              f"messages/s={best['messages'] / best['wall_s']:,.0f} "
              f"sim_s_per_wall_s={best['sim_s'] / best['wall_s']:.2f}")
        if n == 1000 or headline is None:
            headline = eps if n == 1000 or 1000 not in args.agents else None
    print(f"events_per_s={int(round(headline))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
