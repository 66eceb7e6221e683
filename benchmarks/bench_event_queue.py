"""The kernel's event queue at the sizes a scaled episode keeps: CPU per event against pending events.

``World.call_later`` puts ``(time, priority, id, call)`` tuples on simpy's heap and the kernel's loop
pops them. An episode's heap holds one timer per individual agent (market makers, momentum traders,
arbitrageurs) and the messages in flight: ~2,500 entries at 200k accounts, ~12,500 at 1M
(docs/BENCHMARKS.md). This runs the real kernel with N self-rescheduling timers -- each call draws
its next delay from a pre-drawn list, reschedules itself with ``call_later`` and, as an episode's
events do, touches 4 KiB of a large array (``--pressure-mib``; 0 for none), so the heap competes
for the caches -- and prints the CPU seconds per event at each N. The difference between sizes is
what the heap's depth and its scattered entries cost each event; the loop, the call and the touch
cost the same at every N.

    python benchmarks/bench_event_queue.py [--sizes 100,2500,12500,50000] [--events 400000] [--pressure-mib 800]

Ends with ``us_per_event_12500=`` (the 1M-account heap's size; ``nan`` when it is not among the sizes).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sim  # noqa: E402,F401 -- before numpy: the product's arithmetic (sim.core.arithmetic)
import numpy as np  # noqa: E402

from sim.core.kernel import World  # noqa: E402
from machine import describe  # noqa: E402 -- benchmarks/machine.py: the processor and Python, one line

TOUCH = 512  # float64s: 4 KiB an event


def per_event(size: int, events: int, pressure: np.ndarray, seed: int = 1) -> float:
    """CPU seconds per event with ``size`` timers pending, over about ``events`` events."""
    world = World(seed)
    rng = np.random.default_rng(seed)
    mean_gap = 2.0  # seconds: a maker's requote gap
    draws = 1 << 16  # pre-drawn, read round: a list read per event at every size
    delays = rng.exponential(mean_gap, draws).tolist()
    spots = rng.integers(0, max(pressure.size - TOUCH, 1), draws).tolist()
    done = [0]

    def timer() -> None:
        k = done[0] & (draws - 1)
        done[0] += 1
        if pressure.size > 1:
            j = spots[k]
            pressure[j:j + TOUCH] += 1.0
        world.call_later(delays[k], timer)

    for k in range(size):
        world.call_later(float(rng.uniform(0.0, mean_gap)), timer)
    # ``size`` timers of mean gap ``mean_gap`` make size / mean_gap events a simulated second
    started = time.process_time()
    world.run(until=events * mean_gap / size)
    return (time.process_time() - started) / done[0]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="100,2500,12500,50000")
    p.add_argument("--events", type=int, default=400_000)
    p.add_argument("--pressure-mib", type=int, default=800)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pressure = np.ones(max(1, args.pressure_mib * 2**20 // 8))  # touched once here: no first-touch cost inside
    print(f"machine: {describe()}")
    print(f"events per size {args.events:,}; cache pressure: 4 KiB of {args.pressure_mib} MiB touched per event")
    results = {}
    for size in sizes:
        results[size] = per_event(size, args.events, pressure)
        print(f"pending {size:>7,}: {results[size] * 1e6:.2f} us CPU per event")
    base = results[sizes[0]]
    for size in sizes[1:]:
        print(f"pending {size:>7,} vs {sizes[0]:,}: +{(results[size] - base) * 1e6:.2f} us per event")
    print(f"us_per_event_12500={results[12500] * 1e6:.2f}" if 12500 in results else f"us_per_event_12500={math.nan}")


if __name__ == "__main__":
    main()
