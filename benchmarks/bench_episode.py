"""End-to-end episode throughput: the RMSC04-like day with the clearing house on.

Runs ``configs/bench/rmsc04_like.yaml`` (1,000 noise, 102 value, 12 momentum traders and 2 adaptive
market makers on one perpetual, a mean-reverting oracle with rare large shocks, every account on
margin) and prints wall time, simulated seconds per wall second, the work done -- orders, cancels,
amends and fills as the venue counted them in the run (not estimated), rejects, oracle updates,
margin runs -- and its rate, peak resident memory and events per second. Events are simpy events processed (message
deliveries, wake-ups, oracle samples, periodic margin work). One core; the figure is recorded in
docs/BENCHMARKS.md.

The episode is built and run ``--repeat`` times (3 by default) in one process, as ``timeit`` does:
the headline is the fastest run, whose wall time covers building the world, every event and the
final sample; the first run also pays one-off costs (lazy imports, first calls) and is printed
next to it. Every run must give the same counts (same config and seed).

    python benchmarks/bench_episode.py [EPISODE.yaml] [--duration SECONDS] [--repeat N] [--regime NAME]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.experiment.config import load_episode  # noqa: E402
from machine import describe  # noqa: E402 -- benchmarks/machine.py: the processor and Python, one line
from sim.experiment.episode import run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("episode", nargs="?", default=str(ROOT / "configs" / "bench" / "rmsc04_like.yaml"))
    p.add_argument("--duration", type=float, default=None, help="override the simulated seconds")
    p.add_argument("--repeat", type=int, default=3, help="runs in this process; the fastest is reported")
    p.add_argument("--regime", default=None, help="override margin.regime (e.g. var_apc)")
    args = p.parse_args()
    overrides: dict = {"outputs": {"counterfactual": False}}
    if args.duration is not None:
        overrides["duration"] = args.duration
    if args.regime is not None:
        overrides["margin"] = {"regime": args.regime}
    config = load_episode(args.episode, overrides)
    walls: list[float] = []
    cpus: list[float] = []
    s: dict = {}
    for _ in range(max(1, args.repeat)):
        cpu = time.process_time()
        stats = run(config).stats
        cpus.append(time.process_time() - cpu)
        counts = {k: v for k, v in stats.items() if k not in ("wall_seconds", "peak_memory_bytes")}
        if s and counts != {k: v for k, v in s.items() if k not in ("wall_seconds", "peak_memory_bytes")}:
            raise SystemExit(f"runs of the same config and seed differ: {counts} vs {s}")
        s = stats
        walls.append(stats["wall_seconds"])
    wall = min(walls)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"episode            {config.name} ({Path(args.episode).name}), seed {config.seed}")
    print(f"machine            {describe()}")
    print(f"accounts           {s['accounts']}")
    print(f"simulated seconds  {s['simulated_seconds']:.0f}")
    print(f"wall seconds       {wall:.2f} (fastest of {len(walls)}: {' '.join(f'{w:.2f}' for w in walls)})")
    print(f"first run          {walls[0]:.2f} s, {s['events'] / walls[0]:,.0f} events/s")
    # on a shared machine the CPU time is what an idle machine's wall clock would show
    print(f"CPU seconds        {' '.join(f'{c:.2f}' for c in cpus)} (fastest {s['events'] / min(cpus):,.0f} events per"
          f" CPU s, first run {s['events'] / cpus[0]:,.0f}); load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"sim s / wall s     {s['simulated_seconds'] / wall:.0f}")
    print(f"events             {s['events']}")
    print(f"orders             {s['orders']}")
    print(f"cancels            {s['cancels']}")
    print(f"amends             {s['amends']}")
    print(f"fills              {s['fills']}")
    print(f"rejects            {s['rejects']}")
    work = s["orders"] + s["cancels"] + s["fills"]
    print(f"orders+cancels+fills per s  {work / wall:,.0f} fastest, {work / walls[0]:,.0f} first run"
          f" (+amends: {(work + s['amends']) / wall:,.0f})")
    print(f"oracle updates     {s['oracle_publications']}")
    print(f"margin runs        {s['revaluations']}")
    print(f"peak RSS MB        {peak_mb:.0f}")
    print(f"events_per_s={s['events'] / wall:.0f}")


if __name__ == "__main__":
    main()
