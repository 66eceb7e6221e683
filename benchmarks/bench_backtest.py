"""Margin-backtest throughput: years of daily margin runs for many portfolios under every regime.

Book: the six contracts of ``configs/portfolios/short_strangle_two_underlyings.yaml`` (BTC and ETH
perpetuals, 14-day puts and calls) and ``--portfolios`` random books on them (Poisson(3) contracts
each, +-1..3 lots), without the file's own accounts. Path: correlated GBM, BTC 60% / ETH 75% vol,
250 warm-up days then ``--years`` x 252 daily runs, two-day margin period of risk, a run every day
(``step_days: 1``, overlapping periods: the heaviest case). Regimes: every registry regime
(``--regimes`` to choose), each with its registry defaults (``var``: 365-day lookback; ``var_apc``:
plus 25% stressed weighting and the 10-year floor).

Everything runs through ``sim.experiment.api.backtest`` -- the function ``clearsim backtest`` calls -- with
``--workers`` spawned processes (a task per regime x block of portfolios: 10,000 portfolios make
two blocks of 5,000; ``var`` and ``var_apc``, which share the lookback set, are one task per block,
``var_apc`` first, ``var`` taking its lookback measure), nothing cached between runs; only the
results folder is not written (``write=False``: parquet and HTML writing is not what is measured).

Prints the wall time and the CPU seconds (this process and its workers) of the whole backtest --
on a shared machine CPU seconds / workers is about what two idle cores' wall time would be -- and,
with ``--each``, first each regime alone on one process: wall, CPU seconds and CPU milliseconds per
margin run (one run = every portfolio's requirement on one day, plus that regime's share of the
statistics); the per-regime CPU figures add up to the single-process total (alone, ``var`` measures
its own lookback set: in the whole set it costs only its statistics). The last line is
``backtest_seconds=<wall seconds of the whole backtest>``.
Usage: ``python benchmarks/bench_backtest.py [--portfolios N] [--years Y] [--workers W] [--regimes a,b] [--each]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.api import backtest  # noqa: E402
from clearing.margin.config import REGIME_NAMES  # noqa: E402
from machine import describe  # noqa: E402 -- benchmarks/machine.py: the processor and Python, one line


def config(portfolios: int, years: int, regimes: list[str]) -> dict:
    return {
        "name": "bench", "seed": 1, "days": 250 + 252 * years, "warmup_days": 250,
        "paths": {"models": [{"kind": "gbm", "correlation": [[1.0, 0.8], [0.8, 1.0]], "underlyings": [
            {"name": "BTC", "s0": 60000.0, "vol": 0.6}, {"name": "ETH", "s0": 3000.0, "vol": 0.75}]}]},
        "portfolios": {"file": str(ROOT / "configs" / "portfolios" / "short_strangle_two_underlyings.yaml"),
                       "random": {"count": portfolios, "seed": 7}, "include_file_accounts": False},
        "regimes": {r: r for r in regimes}, "horizon_days": 2, "step_days": 1, "report": False,
    }


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(cfg: dict, workers: int) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), _cpu()
    out = backtest(cfg, write=False, workers=workers)
    return time.perf_counter() - wall, _cpu() - cpu, out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--portfolios", type=int, default=10_000)
    p.add_argument("--years", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--regimes", default=",".join(REGIME_NAMES))
    p.add_argument("--each", action="store_true", help="also time each regime alone on one process")
    a = p.parse_args()
    regimes = [r.strip() for r in a.regimes.split(",") if r.strip()]
    print(f"machine: {describe()}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    if a.each:
        total = 0.0
        for r in regimes:
            wall, cpu, out = timed(config(a.portfolios, a.years, [r]), 1)
            total += cpu
            print(f"  {r:18s} {wall:7.1f} s wall, {cpu:7.1f} s CPU, {1e3 * cpu / out.summary['runs']:6.1f} CPU-ms "
                  f"per run ({out.summary['runs']} runs x {out.summary['portfolios']} portfolios)", flush=True)
        print(f"  {'sum':18s} {total:7.1f} s CPU on one process", flush=True)
    wall, cpu, out = timed(config(a.portfolios, a.years, regimes), a.workers)
    print(f"{len(regimes)} regimes x {out.summary['portfolios']:,} portfolios x {out.summary['runs']:,} runs on "
          f"{a.workers} worker(s): {wall:.1f} s wall, {cpu:.1f} CPU-seconds (workers included); "
          f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"backtest_seconds={wall:.1f}")


if __name__ == "__main__":
    main()
