"""Scale: the stress episode at 10k, 100k and 1M accounts -- peak memory, events/s, and the cost
ratio when accounts double ("no hidden quadratics": each ratio near 2, not 4).

Every group of ``configs/bench/stress_10k.yaml`` (10,000 accounts: makers, noise, value, momentum,
basis arbitrageurs, leveraged traders, one backstop provider) is multiplied by a factor -- x10 is
100k accounts, x100 is 1M (the single backstop provider stays one: it is the house's vault; its
capital and the insurance fund are multiplied instead, so that each size is the same market with
more accounts -- ``--fixed-pools`` keeps them at the 10k config's, as figures before 2026-12-05
09:30 UTC did) -- with the quote currency in 1e-5 units (1e-6 would overflow the ledger's checked
headroom at 1M),
and run as a whole episode (``sim.experiment.episode.run``: build, every event, the final sample, the
whole-episode checks and the result tables). Each size runs in a fresh process, so that its peak
resident memory (``ru_maxrss``) is its own; the figure per account is (peak - the process after
imports) / accounts. Events are the kernel's events processed (message deliveries, wake-ups,
oracle samples, margin work); events/s divides them by the whole episode's CPU seconds (build
included) -- on a shared machine CPU time is what an idle machine's wall clock would show; the wall
time is printed beside it. The build time is wall time (short enough not to be disturbed much).
Of the CPU seconds, the kernel's (system time) and the page faults are printed per size: mapping
memory in as the episode first touches it. On a virtual machine whose host takes back the memory
the guest frees (this one does within minutes), that costs ~25x what it does on bare metal
(docs/BENCHMARKS.md, *The machine's memory*).

The doubling ratios compare x1 with x2, x5 with x10 and x10 with x20 (10k -> 20k, 50k -> 100k,
100k -> 200k accounts): the build (opening accounts, agents, streams), one re-valuation (the median
CPU time of ``ClearingHouse.revalue_all``: every account's margin and equity at a publication, and
acting on the new states), one liquidation wave (the median, over publications after which the
liquidation engine worked, of its CPU time until the next publication: the steps, takeovers and ADL
that publication's breaches set off and the retries of liquidations still open; the engine's total
beside it) and the whole episode. When the episode reaches the
crash, the CPU seconds are split at its start (a marker event at that time reads the process
clock and the events so far; the event counts leave it out): the calm leg before it and the crash
leg from it to the end (liquidation waves, ADL, the re-valuations they cause, the recorder's tables
at the end), each with its events per CPU second.
Without a 1M run, the largest run's CPU seconds x (999,901 / its accounts) is printed as the
linear extrapolation to 1M (informational; the last two lines stay ``nan``).

    python benchmarks/bench_scale.py [--max-accounts N] [--quick] [--duration SECONDS] [--factors 10,100]
                                     [--fixed-pools] [--glibc-defaults]

Each size's process sets glibc's allocator as the ``clearsim`` command does
(``sim.experiment.allocator``: freed memory kept in the process); ``--glibc-defaults`` leaves it.
``--quick`` stops at 100k accounts and shortens the episode to 1,500 s (the crash starts at 1,200 s);
with ``--duration`` below 1,200 s the episode has no crash.
Ends with ``rss_gib_1m=`` and then ``events_per_s_1m=`` (events per CPU second; both ``nan`` when 1M
was not run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from machine import describe  # noqa: E402 -- benchmarks/machine.py: the processor and Python, one line

CONFIG = ROOT / "configs" / "bench" / "stress_10k.yaml"
BASE_ACCOUNTS = 10_000
QUOTE_DECIMALS = 5


def scaled_config(factor: int, duration: float | None = None, fixed_pools: bool = False):
    """``stress_10k.yaml`` with every group's count x ``factor`` (the backstop provider stays one
    account) and, unless ``fixed_pools``, the loss-absorbing pools x ``factor`` too: the vault's
    capital and the insurance fund. A vault and a fund sized for 10k accounts stand behind 100x as
    many positions at 1M: more of every crash then goes through the book and ADL, and a size's
    extra cost is that other episode's, not an algorithm's."""
    from sim.experiment.config import load_episode

    base = load_episode(CONFIG)
    pools = 1 if fixed_pools else factor
    groups = []
    for g in base.population.groups:
        data = g.model_dump(mode="json", exclude_unset=True) | {"type": g.type}
        if g.type == "backstop_provider":
            data["capital"] = g.capital * pools
        else:
            data["count"] = g.count * factor
        groups.append(data)
    clearing = base.clearing
    # USD in 1e-5 (not 1e-6) minor units at every size: 1M accounts' capital in 1e-6 units leaves less
    # than the 1024x int64 headroom the config checks demand (sim.experiment.schema.bounds)
    overrides: dict = {"outputs": {"counterfactual": False}, "population": {"groups": groups},
                       "market": {"quote": {"decimals": QUOTE_DECIMALS}},
                       "clearing": {"loss_absorption": {"insurance_fund": clearing.loss_absorption.insurance_fund * pools},
                                    "liquidation": {"backstop": {"capital": clearing.liquidation.backstop.capital * pools}}}}
    # the episode schema caps the account-state samples kept in memory (MAX_SAMPLE_ROWS rows: sample
    # rounds x accounts); at 1M accounts the config's 60 s interval is over it, so the interval is
    # doubled until the samples fit (240 s at 1M: 15 rounds; the sampling cost is linear either way)
    from sim.experiment.schema.bounds import MAX_SAMPLE_ROWS

    accounts = sum(g.get("count", 1) for g in groups) + 100  # + system rows, external accounts: generously
    span = base.duration if duration is None else duration
    interval = base.outputs.sample_interval
    while span / interval * accounts > MAX_SAMPLE_ROWS:
        interval *= 2
    if interval != base.outputs.sample_interval:
        overrides["outputs"]["sample_interval"] = interval
    if duration is not None:
        overrides["duration"] = duration
        # a shorter episode keeps only the shocks that start inside it (the crash starts at 1,200 s)
        overrides["paths"] = {"shocks": [sh.model_dump(mode="json", exclude_unset=True) | {"kind": sh.kind}
                                         for sh in base.paths.shocks if sh.start < duration]}
    return load_episode(CONFIG, overrides)


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB


def one(factor: int, duration: float | None, fixed_pools: bool = False, glibc_defaults: bool = False) -> dict:
    """Run one size in this process and return its figures: with glibc's allocator set as the
    ``clearsim`` command sets it (``sim.experiment.allocator``) unless ``glibc_defaults``."""
    from sim.experiment.allocator import keep_freed_memory
    from sim.experiment.episode import run

    allocator = "glibc defaults" if glibc_defaults else \
        ("freed memory kept" if keep_freed_memory() else "not set (not glibc, or set in the environment)")
    from sim.experiment.progress import live_counts

    config = scaled_config(factor, duration, fixed_pools)
    crash = min((sh.start for sh in config.paths.shocks if sh.start < config.duration), default=None)
    import_rss = _rss_bytes()
    marks: dict[str, float] = {}
    usage_started = resource.getrusage(resource.RUSAGE_SELF)
    started, cpu_started = time.perf_counter(), time.process_time()

    revaluations: list[float] = []  # CPU s of each full re-valuation (ClearingHouse.revalue_all)
    waves: dict[int, float] = {}  # publication -> CPU s of the liquidation engine's steps after it

    def observe(ep) -> None:
        marks["built"] = time.perf_counter()
        _time_revaluations(ep, revaluations)
        _time_waves(ep, waves)
        if crash is not None:  # one marker event: the process clock and the events so far when the crash starts
            def at_crash() -> None:
                marks.setdefault("crash_cpu", time.process_time())
                # the events processed so far, read as the progress display reads them (without taking
                # an id from simpy's counter), less this marker
                marks.setdefault("crash_events", live_counts(ep)[1] - 1)
            ep.world.call_later(crash, at_crash)

    result = run(config, observe=observe)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    s = result.stats
    crash_cpu = cpu_started + cpu - marks["crash_cpu"] if "crash_cpu" in marks else None
    return {"factor": factor, "accounts": s["accounts"], "simulated_seconds": s["simulated_seconds"],
            "build_s": marks["built"] - started, "wall_s": wall, "cpu_s": cpu, "crash_cpu_s": crash_cpu,
            # of the CPU seconds, the kernel's (mostly mapping fresh memory in) and the page faults
            "system_s": usage.ru_stime - usage_started.ru_stime,
            "page_faults": usage.ru_minflt - usage_started.ru_minflt + usage.ru_majflt - usage_started.ru_majflt,
            "calm_events": marks.get("crash_events"),
            "events": s["events"] - (crash is not None), "orders": s["orders"],
            "cancels": s["cancels"], "fills": s["fills"], "liquidations": len(result.tables["liquidations"]["liq_id"]),
            "peak_rss": _rss_bytes(), "import_rss": import_rss,
            "sample_interval": config.outputs.sample_interval,
            "revaluations": len(revaluations), "revaluation_median_s": _median(revaluations),
            "allocator": allocator, "waves": len(waves), "wave_median_s": _median(list(waves.values())), "engine_cpu_s": sum(waves.values())}


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def _time_revaluations(ep, times: list[float]) -> None:
    """Time every full re-valuation -- ``ClearingHouse.revalue_all``: every account's margin and
    equity at a publication, and acting on the new states -- in process CPU seconds."""
    house = ep.house
    revalue_all = house.revalue_all

    def timed(cause) -> None:
        start = time.process_time()
        revalue_all(cause)
        times.append(time.process_time() - start)

    house.revalue_all = timed  # looked up on the instance at every call (publications, intervals)


def _time_waves(ep, waves: dict[int, float]) -> None:
    """A liquidation wave: the liquidation engine's work between one publication and the next (the
    steps, takeovers and ADL of the liquidations that publication set off, and the retries of those
    still open), in process CPU seconds, keyed by the publication's number. About half a
    microsecond of clock reads per step is added to the episode."""
    engine, house = ep.engine, ep.house
    for name in ("_step", "_settle_auction"):  # every step the engine takes runs in one of these
        method = getattr(engine, name)

        def timed(*args, _method=method, **kwargs) -> None:
            start = time.process_time()
            _method(*args, **kwargs)
            seq = house.oracle_seq
            waves[seq] = waves.get(seq, 0.0) + time.process_time() - start

        setattr(engine, name, timed)


def _child(factor: int, duration: float | None, fixed_pools: bool, glibc_defaults: bool) -> dict:
    cmd = [sys.executable, __file__, "--one", str(factor)]
    if duration is not None:
        cmd += ["--duration", str(duration)]
    if fixed_pools:
        cmd.append("--fixed-pools")
    if glibc_defaults:
        cmd.append("--glibc-defaults")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--max-accounts", type=int, default=1_000_000)
    p.add_argument("--quick", action="store_true", help="up to 100k accounts, 1,500 simulated seconds")
    p.add_argument("--duration", type=float, default=None, help="simulated seconds (default: the config's 3,600)")
    p.add_argument("--factors", default=None, help="comma-separated multiples of the 10k config to run "
                                                    "(default 1,2,5,10,100 up to --max-accounts)")
    p.add_argument("--fixed-pools", action="store_true",
                   help="keep the vault's capital and the insurance fund at the 10k config's (figures before 2026-12-05 09:30)")
    p.add_argument("--glibc-defaults", action="store_true",
                   help="leave glibc's allocator at its defaults (figures before 2026-12-05 12:00), not as clearsim's "
                        "command sets it")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child: one size, JSON out
    args = p.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.duration, args.fixed_pools, args.glibc_defaults)))
        return
    max_accounts = min(args.max_accounts, 100_000) if args.quick else args.max_accounts
    duration = args.duration if args.duration is not None else (1500.0 if args.quick else None)
    wanted = (1, 2, 5, 10, 100) if args.factors is None else tuple(int(f) for f in args.factors.split(","))
    factors = [f for f in wanted if f * BASE_ACCOUNTS <= max_accounts]
    runs = {f: _child(f, duration, args.fixed_pools, args.glibc_defaults) for f in factors}
    pools = "the vault's capital and the insurance fund fixed" if args.fixed_pools else \
        "the vault's capital and the insurance fund x factor too"
    print(f"config             {CONFIG.name} x factor (every group's count; {pools}), one fresh process per size")
    if runs:
        print(f"allocator          {next(iter(runs.values()))['allocator']}")
    print(f"machine            {describe()}; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'accounts':>10} {'sim s':>6} {'build s':>8} {'wall s':>8} {'CPU s':>8} {'events':>11} {'ev/CPU s':>9} "
          f"{'orders':>9} {'fills':>9} {'liqs':>6} {'peak GiB':>9} {'kB/account':>10} {'crash CPU s':>11}")
    for f, r in runs.items():
        per_account = (r["peak_rss"] - r["import_rss"]) / r["accounts"] / 1e3
        print(f"{r['accounts']:>10,} {r['simulated_seconds']:>6.0f} {r['build_s']:>8.2f} {r['wall_s']:>8.1f} "
              f"{r['cpu_s']:>8.1f} {r['events']:>11,} {r['events'] / r['cpu_s']:>9,.0f} {r['orders']:>9,} {r['fills']:>9,} "
              f"{r['liquidations']:>6,} {r['peak_rss'] / 2**30:>9.2f} {per_account:>10.2f} "
              f"{'-' if r.get('crash_cpu_s') is None else format(r['crash_cpu_s'], '.1f'):>11}")
    for f, r in runs.items():
        print(f"{r['accounts']:>10,} of its {r['cpu_s']:.1f} CPU s, {r['system_s']:.1f} in the kernel "
              f"({r['page_faults']:,} page faults: memory mapped in as the episode first touches it)")
    for f, r in runs.items():
        if r.get("sample_interval", 60.0) != 60.0:
            print(f"{r['accounts']:>10,} sampled every {r['sample_interval']:.0f} s (the schema's cap on sample rows), not 60 s")
    for f, r in runs.items():
        if r.get("crash_cpu_s") is not None and r.get("calm_events"):
            calm_cpu = r["cpu_s"] - r["crash_cpu_s"]
            print(f"{r['accounts']:>10,} calm leg (build to the crash): {calm_cpu:.1f} CPU s, {r['calm_events']:,} events, "
                  f"{r['calm_events'] / calm_cpu:,.0f} events per CPU s; crash leg: "
                  f"{(r['events'] - r['calm_events']) / r['crash_cpu_s']:,.0f} events per CPU s")
    for f, r in runs.items():
        if "revaluations" in r:
            print(f"{r['accounts']:>10,} one re-valuation: {r['revaluation_median_s'] * 1e3:.1f} ms CPU (median of "
                  f"{r['revaluations']:,}); one liquidation wave: {r['wave_median_s'] * 1e3:.1f} ms CPU (median of "
                  f"{r['waves']:,} publications with liquidation work; {r['engine_cpu_s']:.1f} CPU s in all)")
    for a, b in ((1, 2), (5, 10), (10, 20)):
        if a in runs and b in runs:
            ra, rb = runs[a], runs[b]
            parts = ""
            if "revaluations" in ra and "revaluations" in rb:
                parts = (f", one re-valuation x{rb['revaluation_median_s'] / ra['revaluation_median_s']:.2f}, "
                         f"one liquidation wave x{rb['wave_median_s'] / ra['wave_median_s']:.2f} "
                         f"(the engine in all x{rb['engine_cpu_s'] / ra['engine_cpu_s']:.2f})")
            print(f"doubling {ra['accounts']:,} -> {rb['accounts']:,}: build x{rb['build_s'] / ra['build_s']:.2f}, "
                  f"whole episode x{rb['wall_s'] / ra['wall_s']:.2f} wall, x{rb['cpu_s'] / ra['cpu_s']:.2f} CPU, "
                  f"events x{rb['events'] / ra['events']:.2f}{parts}")
    big = runs.get(100)
    if big is None and runs:
        largest = runs[max(runs)]
        scale = 999_901 / largest["accounts"]
        print(f"linear extrapolation to 999,901 accounts from {largest['accounts']:,}: "
              f"{largest['cpu_s'] * scale:,.0f} CPU s ({largest['cpu_s'] * scale / 60:.1f} CPU min), "
              f"{largest['events'] * scale:,.0f} events")
    print(f"rss_gib_1m={big['peak_rss'] / 2**30:.2f}" if big else f"rss_gib_1m={math.nan}")
    if big:
        print(f"wall-clock events/s at 1M: {big['events'] / big['wall_s']:.0f} (load-dependent)")
    print(f"events_per_s_1m={big['events'] / big['cpu_s']:.0f}" if big else f"events_per_s_1m={math.nan}")


if __name__ == "__main__":
    main()
