"""Order-book throughput on a realistic mixed stream, one core, pure Python.

The stream is built before timing from a seeded numpy Generator: ~70% passive limit orders near
the touch, ~20% cancels of orders that are live at that moment, ~10% marketable orders (IOC,
MARKET with a protection price, and crossing GTC limits whose remainder rests). To know which
orders are live when a cancel is drawn, the generator drives its own (untimed) book; the timed
replay on a fresh book is deterministic, so every cancel in it hits a live order.

Usage: ``python benchmarks/bench_book.py [--ops N] [--seed S] [--repeat R]``. The last line of
output is always ``orders_per_s=<int>`` (best of the repeats).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sim  # noqa: E402,F401 -- before numpy: the product's arithmetic (sim.core.arithmetic)
import numpy as np  # noqa: E402

from sim.market.book import OrderBook  # noqa: E402
from sim.core.orders import BUY, SELL, TimeInForce  # noqa: E402
from machine import describe  # noqa: E402 -- benchmarks/machine.py: the processor and Python, one line

CANCEL = 0
SUBMIT = 1
REFERENCE_PRICE = 10_000  # ticks; where the book starts and where an empty side restarts
ACCOUNTS = 200


def build_stream(n_ops: int, seed: int) -> tuple[list[tuple], dict[str, int]]:
    """Generate ``n_ops`` operations as replayable tuples ``(code, id, account, side, price,
    size, tif)`` and count them by kind."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n_ops, p=[0.70, 0.20, 0.10])  # 0 passive, 1 cancel, 2 marketable
    sides = rng.choice(np.array([BUY, SELL]), size=n_ops)
    # How far behind the touch a passive order goes: 0 improves by a tick, 1 joins, 2+ behind.
    behind = rng.geometric(0.35, size=n_ops) - 1
    passive_size = rng.integers(1, 11, size=n_ops)
    # Marketable orders are larger so that what they take roughly balances what rests.
    taker_size = rng.integers(5, 51, size=n_ops)
    taker_style = rng.choice(3, size=n_ops, p=[0.6, 0.2, 0.2])  # IOC, MARKET, crossing GTC
    # Order flow comes in waves: the sign of a persistent AR(1) picks the side of marketable
    # orders (with some noise), so the price wanders and levels are created and emptied.
    flow_noise = rng.normal(size=n_ops)
    flow = np.empty(n_ops)
    level = 0.0
    for i in range(n_ops):
        level = 0.999 * level + 0.05 * flow_noise[i]
        flow[i] = level
    taker_sides = np.where(flow + 0.5 * rng.normal(size=n_ops) > 0, BUY, SELL)
    accounts = rng.integers(0, ACCOUNTS, size=n_ops)
    cancel_pick = rng.random(size=n_ops)

    book = OrderBook(0)
    live: list[int] = []  # candidate ids for cancels; filled ones are dropped when drawn
    ops: list[tuple] = []
    counts = {"passive": 0, "cancel": 0, "ioc": 0, "market": 0, "crossing_gtc": 0}
    next_id = 1
    for i in range(n_ops):
        k = int(kind[i])
        if k == 1:
            target = None
            while live:
                j = int(cancel_pick[i] * len(live))
                candidate = live[j]
                live[j] = live[-1]
                live.pop()
                if candidate in book:
                    target = candidate
                    break
            if target is not None:
                book.cancel(target)
                ops.append((CANCEL, target, 0, 0, 0, 0, 0))
                counts["cancel"] += 1
                continue
            k = 0  # nothing to cancel yet: add liquidity instead
        side = int(sides[i])
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None:
            bid = (ask - 1) if ask is not None else REFERENCE_PRICE - 1
        if ask is None:
            ask = bid + 1
        account = int(accounts[i])
        if k == 0:
            if side == BUY:
                price = min(bid + 1 - int(behind[i]), ask - 1)
            else:
                price = max(ask - 1 + int(behind[i]), bid + 1)
            size, tif = int(passive_size[i]), TimeInForce.GTC
            counts["passive"] += 1
        else:
            side = int(taker_sides[i])
            style = int(taker_style[i])
            touch = ask if side == BUY else bid
            size = int(taker_size[i])
            if style == 0:
                price, tif = touch + side * 2, TimeInForce.IOC
                counts["ioc"] += 1
            elif style == 1:
                price, tif = touch + side * 5, TimeInForce.MARKET  # protection price
                counts["market"] += 1
            else:
                price, tif = touch, TimeInForce.GTC
                counts["crossing_gtc"] += 1
        order_id = next_id
        next_id += 1
        result = book.submit(order_id, account, side, price, size, tif)
        if result.resting_size:
            live.append(order_id)
        ops.append((SUBMIT, order_id, account, side, price, size, tif))
    return ops, counts


def replay(ops: list[tuple]) -> tuple[float, float, OrderBook, int, int]:
    """Run the stream on a fresh book; returns (wall seconds, CPU seconds, book, fills, cancels
    that missed). CPU time is shown too because the machine may be shared: a wall figure well
    above the CPU figure means the run was waiting for a core."""
    book = OrderBook(0)
    submit = book.submit
    cancel = book.cancel
    fills = 0
    missed = 0
    gc.collect()
    start = time.perf_counter()
    cpu_start = time.process_time()
    for code, order_id, account, side, price, size, tif in ops:
        if code:
            fills += len(submit(order_id, account, side, price, size, tif).fills)
        elif cancel(order_id) is None:
            missed += 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return elapsed, cpu, book, fills, missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    ops, counts = build_stream(args.ops, args.seed)
    mix = ", ".join(f"{name}={n} ({n / len(ops):.1%})" for name, n in counts.items())
    print(f"machine: {describe()}")
    print(f"ops={len(ops)}; seed={args.seed}")
    print(f"mix: {mix}")
    best = float("inf")
    for run in range(args.repeat):
        elapsed, cpu, book, fills, missed = replay(ops)
        best = min(best, elapsed)
        bids, asks = book.depth(1)
        print(
            f"run {run + 1}: wall={elapsed:.3f}s cpu={cpu:.3f}s ops/s={len(ops) / elapsed:,.0f} fills={fills} "
            f"cancel_misses={missed} resting_orders={len(book)} "
            f"levels={book.level_count(BUY)}+{book.level_count(SELL)} touch={bids}/{asks}"
        )
    print(f"best wall={best:.3f}s")
    print(f"orders_per_s={int(len(ops) / best)}")


if __name__ == "__main__":
    main()
