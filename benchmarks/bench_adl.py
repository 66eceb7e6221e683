"""Auto-deleveraging cost per bankrupt account in a crash of many accounts.

Book: ``--accounts`` (1,000,000 by default) traders each holding a random signed position in one
perpetual, bought at one of a few entry prices, with random deposits; the mark is fixed (one
oracle publication), and ``--bankruptcies`` accounts go bankrupt one after another. Each is
deleveraged against the opposite ADL queue and the selections are traded (``execute_adl``), so
the positions of the ranked accounts change between bankruptcies, as in a liquidation cascade.

Timed per bankruptcy, both ways on the same sequence (selections checked equal):

- fresh: ``adl_candidates`` + ``select_ranked`` -- every holder ranked and sorted per bankrupt
  account (the engine's path before ``AdlQueue``);
- queue: ``AdlQueue.select`` -- sorted once per mark, the holders the ledger's change log names
  re-ranked and merged in.

The fresh path takes the equity vector of every account as given (outside its timing; the engine
computed it once per bankruptcy before the queue); the queue computes the equity of the rows it
ranks itself (``row_equities``), inside its timing.
Usage: ``python benchmarks/bench_adl.py [--accounts N] [--bankruptcies B]``. The last line is
``adl_ms_per_bankruptcy=<float>`` (the queue's median).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sim  # noqa: E402,F401 -- before numpy: the product's arithmetic (sim.core.arithmetic)
import numpy as np  # noqa: E402

from clearing.adl import AdlQueue, adl_candidates, execute_adl, select_ranked  # noqa: E402
from sim.core.instruments import Asset, Instrument, InstrumentKind  # noqa: E402
from clearing.ledger import FIRST_TRADER, QUOTE, Ledger, row_equities  # noqa: E402
from machine import describe  # noqa: E402 -- benchmarks/machine.py: the processor and Python, one line


def book(n: int, seed: int) -> tuple[Ledger, int]:
    """A ledger of ``n`` holders of one perpetual (positions set column-wise: building a million
    accounts through ``trade`` would take longer than the benchmark) and the market account."""
    ins = Instrument(0, "X-PERP", InstrumentKind.PERPETUAL, "X", "USD", tick_size=0.01, lot_size=1.0,
                     multiplier=1.0, tick_value=1)
    ledger = Ledger([Asset("USD", decimals=2)], [ins], capacity=n + FIRST_TRADER + 2)
    market = ledger.open_account()
    rows = np.arange(ledger.n_accounts, ledger.n_accounts + n)
    ledger.n_accounts += n
    rng = np.random.default_rng(seed)
    lots = rng.choice([-5, -3, -2, -1, 1, 2, 3, 5], n)
    price = rng.choice([9_000, 10_000, 11_000], n)
    ledger.position[rows, 0] = lots
    ledger.entry_value[rows, 0] = lots * price
    ledger.position[market, 0] = -lots.sum()
    ledger.cash[rows, QUOTE] = rng.integers(2_000, 60_000, n)
    return ledger, market


def run(n: int, bankruptcies: int, seed: int) -> dict[str, float]:
    mark = 10_000
    ledgers = [book(n, seed)[0], book(n, seed)[0]]  # one per method: the same sequence on each
    mark_value = np.array([mark], dtype=np.float64) * ledgers[1].tick_value
    queue = AdlQueue(ledgers[1], lambda rows: row_equities(ledgers[1], rows, mark_value))
    rng = np.random.default_rng(seed + 1)
    times: dict[str, list[float]] = {"fresh": [], "queue": []}
    for _ in range(bankruptcies):
        bankrupt = int(rng.integers(FIRST_TRADER + 1, FIRST_TRADER + 1 + n))
        chosen = []
        for name, ledger in zip(("fresh", "queue"), ledgers):
            held = int(ledger.position[bankrupt, 0])
            if name == "fresh":
                equity = row_equities(ledger, np.arange(ledger.n_accounts), mark_value)
                t0 = time.perf_counter()
                c = adl_candidates(ledger, 0, mark, equity, exclude=bankrupt)
                picked = select_ranked(held, c.accounts, c.ranks, c.lots)
            else:
                t0 = time.perf_counter()
                picked = queue.select(held, 0, mark, exclude=bankrupt)
            times[name].append(time.perf_counter() - t0)
            execute_adl(ledger, bankrupt, 0, mark, picked)
            chosen.append(picked)
        assert chosen[0] == chosen[1], "the queue selected differently from a fresh sort"
    return {"fresh_ms": float(np.median(times["fresh"]) * 1e3), "queue_ms": float(np.median(times["queue"]) * 1e3),
            "queue_first_ms": times["queue"][0] * 1e3, "sorts": float(queue.sorts),
            "reranked": float(queue.reranked)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=1_000_000)
    p.add_argument("--bankruptcies", type=int, default=50)
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args(argv)
    print(f"machine: {describe()} (shared); load average {os.getloadavg()[0]:.2f}")
    r = run(a.accounts, a.bankruptcies, a.seed)
    print(f"{a.accounts:,} holders, {a.bankruptcies} bankruptcies at one mark, selections identical")
    print(f"  fresh rank and sort per bankruptcy: {r['fresh_ms']:8.2f} ms (median)")
    print(f"  kept queue per bankruptcy:          {r['queue_ms']:8.2f} ms (median; the first, which sorts: "
          f"{r['queue_first_ms']:.1f} ms; {int(r['sorts'])} sorts in all; {int(r['reranked'])} rows re-ranked)")
    print(f"adl_ms_per_bankruptcy={r['queue_ms']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
