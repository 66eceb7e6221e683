"""Positions at mark over many rows: ``clearing.ledger.mark_value`` (the canonical sum, instrument
by instrument in blocks of rows, the same bits as one account's ``mark_value_of``) against the BLAS
matrix-vector product it replaced (``held.dot(values)``, whose bits for a row depend on how many
rows are in the product).

Usage: ``python benchmarks/bench_mark_value.py [--rows 10000 100000 1000000] [--instruments 1 2 12 40]``.
Prints the best of 7 repeats per case (process CPU time: the machine is shared) and ends with
exactly one line ``mark_value_ms_100k_x12=<float>`` (100,000 rows, 12 instruments).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sim  # noqa: E402,F401 -- before numpy: the product's arithmetic (sim.core.arithmetic)
import numpy as np  # noqa: E402

from clearing.ledger import mark_value  # noqa: E402


def best(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--instruments", type=int, nargs="+", default=[1, 2, 12, 40])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    headline = None
    print(f"{'rows':>9} {'instr':>5} {'dot ms':>8} {'mark_value ms':>14} {'ratio':>6}")
    for n in args.rows:
        for k in args.instruments:
            held = rng.integers(-1000, 1000, (n, k)).astype(np.float64)
            values = rng.random(k) * 1e4
            dot = best(lambda: held.dot(values)) * 1e3
            ours = best(lambda: mark_value(held, values)) * 1e3
            print(f"{n:>9,} {k:>5} {dot:8.3f} {ours:14.3f} {ours / max(dot, 1e-9):6.2f}")
            if n == 100_000 and k == 12:
                headline = ours
    if headline is not None:
        print(f"mark_value_ms_100k_x12={headline:.3f}")


if __name__ == "__main__":
    main()
