"""End-to-end episode throughput: the RMSC04-like day with the clearing house on.

Runs ``configs/bench/rmsc04_like.yaml`` (1,000 noise, 102 value, 12 momentum traders and 2 adaptive
market makers on one perpetual, a mean-reverting oracle with rare large shocks, every account on
margin) and prints wall time, simulated seconds per wall second, event/order/cancel/fill counts,
peak resident memory and events per second. Events are simpy events processed (message
deliveries, wake-ups, oracle samples, periodic margin work). One core; the figure is recorded in
docs/BENCHMARKS.md.

    python benchmarks/bench_episode.py [EPISODE.yaml] [--duration SECONDS]
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.config import load_episode  # noqa: E402
from sim.episode import run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("episode", nargs="?", default=str(ROOT / "configs" / "bench" / "rmsc04_like.yaml"))
    p.add_argument("--duration", type=float, default=None, help="override the simulated seconds")
    args = p.parse_args()
    overrides = {"outputs": {"counterfactual": False}}
    if args.duration is not None:
        overrides["duration"] = args.duration
    config = load_episode(args.episode, overrides)
    result = run(config)
    s = result.stats
    wall = s["wall_seconds"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"episode            {config.name} ({Path(args.episode).name}), seed {config.seed}")
    print(f"machine            {platform.machine()}, Python {platform.python_version()}")
    print(f"accounts           {s['accounts']}")
    print(f"simulated seconds  {s['simulated_seconds']:.0f}")
    print(f"wall seconds       {wall:.2f}")
    print(f"sim s / wall s     {s['simulated_seconds'] / wall:.0f}")
    print(f"events             {s['events']}")
    print(f"orders             {s['orders']}")
    print(f"cancels            {s['cancels']}")
    print(f"fills              {s['fills']}")
    print(f"oracle updates     {s['oracle_publications']}")
    print(f"margin runs        {s['revaluations']}")
    print(f"peak RSS MB        {peak_mb:.0f}")
    print(f"events_per_s={s['events'] / wall:.0f}")


if __name__ == "__main__":
    main()
