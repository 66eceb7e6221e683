"""Portfolio-margin re-valuation on the clearing house's own path: ``ClearingHouse.revalue_all``.

Book (``clearing.margin.examples.benchmark_book``, seeded): 100,000 accounts, each holding a
Poisson(3) number (at least one) of 50 instruments -- per underlying (BTC, ETH, SOL) a perpetual,
two dated futures and calls/puts over 5 strikes x 3 expiries -- with random signed lots, settled
into a real ledger (one maker account takes the other side). The house is the one an episode builds
(``sim.experiment.episode.build``: ledger, venue, oracle, mark pricer, regime ``portfolio``: 27 core scenarios
+ 8 extended + delta/roll shocks per underlying), every account well capitalised.

The episode then runs: the oracle publishes every simulated second (heartbeat 1 s), and each
publication moves the marks and re-values every account (``on_publication`` -> ``revalue_all``:
the P&L matrix for the new market state, every account's requirement, equity, health, slack,
attribution, the margin sample). Half a second after each publication ``--traded`` accounts (1%
by default) trade one lot through the venue's settlement path (``venue.off_book_trade`` ->
``house.on_fill``), so that every re-valuation also finds rows that changed since the last.

Timed: each ``revalue_all`` (median of ``--repeat`` publications after the first); the first
re-valuation, which builds the house's kept position matrices and grouping, is reported
separately (setup). BLAS/OpenMP are pinned to one thread (one core). Usage:
``python benchmarks/bench_margin.py [--accounts N] [--repeat R] [--traded F]``.
The last line is ``accounts_per_s=<int>`` (accounts / median revalue_all).
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sim  # noqa: E402,F401 -- before numpy: the product's arithmetic (sim.core.arithmetic)
import numpy as np  # noqa: E402

from sim.core.instruments import InstrumentTable  # noqa: E402
from clearing.ledger import QUOTE  # noqa: E402
from clearing.margin.examples import benchmark_book  # noqa: E402
from sim.experiment.assembled import Episode
from sim.experiment.episode import build  # noqa: E402
from sim.core.orders import Fill  # noqa: E402
from sim.experiment.schema.episode import EpisodeConfig  # noqa: E402
from machine import describe  # noqa: E402 -- benchmarks/machine.py: the processor and Python, one line

CAPITAL = 10**11  # minor units (a billion dollars at 2 decimals): nobody breaches, so no liquidations


def episode_config(table: InstrumentTable, seconds: float) -> EpisodeConfig:
    """An episode over the benchmark book's instruments, portfolio margin, no agents."""
    instruments = []
    for ins in table.instruments:
        spec = {"symbol": ins.symbol, "kind": ins.kind.name.lower(), "underlying": ins.underlying,
                "tick_size": 0.01, "lot_size": 1.0}
        if ins.expiry is not None:
            spec["expiry"] = float(ins.expiry)
        if ins.strike is not None:
            spec.update(strike=float(ins.strike), option_type="call" if ins.is_call else "put")
        instruments.append(spec)
    return EpisodeConfig.model_validate({
        "name": "bench_margin", "seed": 7, "duration": seconds,
        "market": {"quote": {"name": "USD", "decimals": 2}, "instruments": instruments},
        "paths": {"dt": 1.0, "models": [{"kind": "gbm", "underlyings": [
            {"name": "BTC", "s0": 60000.0, "vol": 0.6}, {"name": "ETH", "s0": 3000.0, "vol": 0.75},
            {"name": "SOL", "s0": 150.0, "vol": 0.9}]}]},
        "oracle": {"sample_interval": 1.0, "heartbeat": 1.0, "latency": 0.0},
        "margin": {"regime": "portfolio"},
        "population": {"groups": []},
    })


def build_house(n_accounts: int, seed: int, seconds: float) -> tuple[Episode, int, int]:
    """The episode, its maker account and its first benchmark account."""
    table, _market, account, instrument, lots = benchmark_book(n_accounts=n_accounts, seed=seed)
    ep = build(episode_config(table, seconds))
    ledger = ep.ledger
    maker = ledger.open_account()
    ledger.deposit(maker, QUOTE, CAPITAL * n_accounts)
    first = ledger.n_accounts
    for _ in range(n_accounts):
        ledger.open_account()
    ep.house.grow()
    ticks = ep.marks.ticks
    for a, i, n in zip((account + first).tolist(), instrument.tolist(), lots.astype(np.int64).tolist()):
        price = max(1, int(round(ticks[i])))
        if n > 0:
            ledger.trade(a, maker, i, price, n)
        else:
            ledger.trade(maker, a, i, price, -n)
    for a in range(first, first + n_accounts):
        ledger.deposit(a, QUOTE, CAPITAL)
    return ep, maker, first


def run(n_accounts: int, repeat: int, traded: float, seed: int) -> dict[str, float]:
    ep, maker, first = build_house(n_accounts, seed, seconds=repeat + 2.0)
    house, venue, world = ep.house, ep.venue, ep.world
    times: list[float] = []
    cpu_times: list[float] = []  # the same calls in process CPU time: what the guest did not lose
    real = house.revalue_all

    def timed(cause) -> None:
        gc.disable()
        t0, c0 = time.perf_counter(), time.process_time()
        real(cause)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        gc.enable()

    house.revalue_all = timed  # on_publication calls it through the instance
    rng = np.random.default_rng(seed + 1)
    k = int(round(traded * n_accounts))
    n_ins = len(ep.table)

    def trade() -> None:  # fills between publications: these rows change before the next re-valuation
        for a in (first + rng.choice(n_accounts, k, replace=False)).tolist():
            i = int(rng.integers(n_ins))
            side = 1 if rng.random() < 0.5 else -1
            price = max(1, int(round(house.marks.ticks[i])))
            venue.off_book_trade(Fill(i, price, 1, side, 0, 0, maker, a))

    if k:
        world.every(1.0, trade, start=0.5)
    ep.oracle.start()
    world.run(until=repeat + 1.5)
    assert len(times) >= repeat + 1, f"only {len(times)} re-valuations"
    steady = np.array(times[1:]) * 1e3
    return {"setup_ms": times[0] * 1e3, "median_ms": float(np.median(steady)), "best_ms": float(steady.min()),
            "median_cpu_ms": float(np.median(np.array(cpu_times[1:]) * 1e3)),
            "runs": float(steady.size), "traded": float(k), "healthy": float((house.health[first:] == 0).mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--traded", type=float, default=0.01, help="share of accounts trading between publications")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    print(f"machine: {describe()} (shared); load average "
          f"{os.getloadavg()[0]:.2f}; numpy {np.__version__}; "
          f"BLAS threads pinned to 1")
    r = run(a.accounts, a.repeat, a.traded, a.seed)
    print(f"{a.accounts:,} accounts x ~3 of 50 instruments, portfolio margin, {int(r['traded']):,} accounts "
          f"trading between publications; {r['healthy']:.0%} healthy")
    print(f"  first revalue_all (builds the kept matrices and grouping): {r['setup_ms']:8.2f} ms")
    print(f"  revalue_all after a publication, median of {int(r['runs'])}: {r['median_ms']:8.2f} ms "
          f"(best {r['best_ms']:.2f} ms; median CPU {r['median_cpu_ms']:.2f} ms -- below the wall figure when "
          f"the machine took time from the process)")
    print(f"accounts_per_s={int(a.accounts / (r['median_ms'] / 1e3))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
