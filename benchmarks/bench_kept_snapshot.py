"""The standard regime on the clearing house's kept snapshot: how many of its entries are distinct,
how often it is rebuilt, and one base computation entry by entry vs once per distinct entry.

Runs the scaled stress episode (``bench_scale.scaled_config``: ``configs/bench/stress_10k.yaml`` with
every group x factor) until ``--until`` simulated seconds, counting the publications at which the
house rebuilt its snapshot (``ExposureBook`` took a new base: more than ``REBASE_FRACTION`` of the
rows had changed), then times on the snapshot it holds (median CPU of repeated calls):

* ``every entry``: ``StandardRegime._entry_requirements`` on all CSR entries and the sums (what
  each publication computed before the snapshot was kept, after building the CSR afresh);
* ``distinct``: the same on the distinct (instrument, lots) entries, plus the gather and the
  per-account sums -- what ``requirements`` on the kept snapshot does now;
* the grouping paid at each rebuild: the CSR and ``distinct_entries`` -- beside the one-call
  grouping it replaced, ``np.unique(axis=0)`` of the (instrument, lots bits) pairs.

Both give the same bits (checked here too).

    python benchmarks/bench_kept_snapshot.py [--factor 20] [--until 1500]

Ends with ``distinct_share=`` (distinct entries / entries).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import sim  # noqa: E402,F401 -- before numpy: the product's arithmetic (sim.core.arithmetic)
import numpy as np  # noqa: E402


class _Stop(Exception):
    pass


def _cpu_ms(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    from bench_scale import scaled_config

    from clearing.margin.base import Positions, distinct_entries
    from sim.experiment.episode import run

    p = argparse.ArgumentParser()
    p.add_argument("--factor", type=int, default=20, help="multiple of the 10k config (20: 200k accounts)")
    p.add_argument("--until", type=float, default=1500.0, help="simulated seconds to run first")
    args = p.parse_args()

    held: dict = {}
    rebuilds = [0]

    def observe(ep) -> None:
        held["ep"] = ep
        book = ep.house.book
        requirements = book.requirements
        last = [None]

        def counted(rows, market, full):
            out = requirements(rows, market, full)
            if book._base is not last[0]:
                rebuilds[0] += 1
                last[0] = book._base
            return out

        book.requirements = counted

        def stop() -> None:
            raise _Stop

        ep.world.call_later(args.until, stop)

    started = time.process_time()
    try:
        run(scaled_config(args.factor, 3600.0), observe=observe)
    except _Stop:
        pass
    ep = held["ep"]
    house, book = ep.house, ep.house.book
    regime = house.regime
    market = house.marks.market_state(ep.world.now)
    base = book._base
    if base is None:
        raise SystemExit(f"the house keeps no snapshot for {regime.name} (not row-separable)")
    indptr, cols, lots = base.csr()
    pair_cols, pair_lots, inverse = base.entries()
    rows, n = base.rows(), base.n_accounts

    def every_entry():
        im, mm = regime._entry_requirements(cols, lots, market, None)
        return np.bincount(rows, weights=im, minlength=n), np.bincount(rows, weights=mm, minlength=n)

    def distinct():
        im, mm = regime._entry_requirements(pair_cols, pair_lots, market, None)
        return (np.bincount(rows, weights=im[inverse], minlength=n),
                np.bincount(rows, weights=mm[inverse], minlength=n))

    a, b = every_entry(), distinct()
    assert all(np.array_equal(x, y) for x, y in zip(a, b)), "the distinct path must give the same bits"
    fresh = base.dense.copy()
    print(f"episode            stress_10k x {args.factor} ({n:,} accounts), run to {ep.world.now:,.0f} s "
          f"in {time.process_time() - started:.1f} CPU s; regime {regime.name}")
    print(f"publications       {house.oracle_seq:,}; snapshot rebuilt at {rebuilds[0]:,} of them")
    print(f"snapshot           {cols.size:,} entries, {pair_cols.size:,} distinct ({pair_cols.size / cols.size:.1%})")
    print(f"every entry        {_cpu_ms(every_entry):8.2f} ms  (entry requirements + sums)")
    print(f"distinct           {_cpu_ms(distinct):8.2f} ms  (distinct entries + gather + sums)")
    print(f"at each rebuild    CSR {_cpu_ms(lambda: Positions(fresh).csr()):.2f} ms, "
          f"grouping {_cpu_ms(lambda: distinct_entries(cols, lots)):.2f} ms")
    pairs = np.stack([cols, lots.view(np.int64)], axis=1)
    print(f"grouping before    np.unique(axis=0) of the pairs {_cpu_ms(lambda: np.unique(pairs, axis=0, return_inverse=True), 3):.2f} ms")
    print(f"distinct_share={pair_cols.size / cols.size:.4f}")


if __name__ == "__main__":
    main()
