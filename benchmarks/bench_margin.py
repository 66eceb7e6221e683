"""Portfolio-margin throughput: a full re-margin of every account after a price update.

Book (``clearing.margin.examples.benchmark_book``, seeded): 100,000 accounts, each holding a
Poisson(3) number (at least one) of 50 instruments -- per underlying (BTC, ETH, SOL) a perpetual,
two dated futures and calls/puts over 5 strikes x 3 expiries -- with random signed lots.
Regime: portfolio (Deribit-style, 27 core scenarios + 8 extended + delta/roll shocks, per
underlying, summed).

Timed, separately (median of ``--repeat`` runs each):

- matrix: building the instruments x columns P&L matrix for a new market state (Black-76 over
  all option x scenario cells) -- once per price update;
- requirements: ``regime.requirements(positions, market)`` with the matrix cached -- the sparse
  gather/multiply/prefix-add over the positions' non-zeros, row minima, per-account sums;
- full re-margin = matrix + requirements (the figure that matters after a price update).

Segments are reduced block by block while in cache (``base.segment_reduce_t``), so the full
(columns x segments) array is never written out.

The positions' (account, underlying) grouping is built once per Positions object (untimed setup,
reported). BLAS/OpenMP are pinned to one thread (one core). Usage:
``python benchmarks/bench_margin.py [--accounts N] [--repeat R] [--dtype float64|float32]``.
The last line is always ``accounts_per_s=<int>`` (accounts / median full re-margin, float64
unless --dtype says otherwise).
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.core.instruments import MarketState  # noqa: E402
from clearing.margin.base import Positions, segments_by_group  # noqa: E402
from clearing.margin.examples import benchmark_book  # noqa: E402
from clearing.margin.portfolio import PortfolioRegime  # noqa: E402
from clearing.margin.config import PortfolioConfig  # noqa: E402


BEST: dict[str, float] = {}


def _median_ms(fn, repeat: int, label: str = "") -> float:
    """Median wall time in ms over ``repeat`` runs (the best run is kept in BEST[label])."""
    times = []
    for _ in range(repeat):
        gc.disable()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        gc.enable()
    BEST[label] = float(min(times) * 1e3)
    return float(np.median(times) * 1e3)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(n_accounts: int, repeat: int, dtype: str, seed: int) -> dict[str, float]:
    table, market, acc, ins, lots = benchmark_book(n_accounts=n_accounts, seed=seed)
    positions = Positions.from_coo(n_accounts, len(table), acc, ins, lots)
    regime = PortfolioRegime(table, PortfolioConfig(dtype=dtype))

    t0 = time.perf_counter()
    seg = segments_by_group(positions, regime.underlying, regime.n_under)
    setup_ms = (time.perf_counter() - t0) * 1e3

    state = {"k": 0}

    def moved_market() -> MarketState:  # a fresh price update each time: no matrix cache hit
        state["k"] += 1
        f = 1.0 + 1e-6 * state["k"]
        return MarketState(market.now, market.underlying_prices * f, market.atm_vols, market.marks * f, market.vols)

    markets = [moved_market() for _ in range(repeat + 1)]
    it = iter(markets)
    matrix_ms = _median_ms(lambda: regime.pnl_matrix(next(it)), repeat)
    regime.pnl_matrix(market)
    regime.requirements(positions, market)  # warm the workspace
    req_ms = _median_ms(lambda: regime.requirements(positions, market), repeat)
    it2 = iter([moved_market() for _ in range(repeat)])
    full_ms = _median_ms(lambda: regime.requirements(positions, next(it2)), repeat, "full")
    return {"nnz": float(positions.csr()[1].size), "segments": float(seg.n), "setup_ms": setup_ms,
            "matrix_ms": matrix_ms, "requirements_ms": req_ms, "full_ms": full_ms,
            "columns": float(regime.pnl_matrix(market).shape[1]), "full_best_ms": BEST["full"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--both", action="store_true", help="also time the other dtype (reported, not the last line)")
    a = p.parse_args(argv)
    print(f"machine: {_cpu()}, {os.cpu_count()} logical CPUs; python {platform.python_version()}, "
          f"numpy {np.__version__}; BLAS threads pinned to 1")
    dtypes = [a.dtype] + ([d for d in ("float64", "float32") if d != a.dtype] if a.both else [])
    results = {}
    for dt in dtypes:
        r = run(a.accounts, a.repeat, dt, a.seed)
        results[dt] = r
        print(f"[{dt}] {a.accounts:,} accounts, {int(r['nnz']):,} positions, {int(r['segments']):,} "
              f"(account, underlying) segments, 50 instruments x {int(r['columns'])} columns "
              f"(27 core + 8 extended + delta notional and units + 2 roll)")
        print(f"[{dt}]   grouping setup (once per Positions): {r['setup_ms']:8.2f} ms")
        print(f"[{dt}]   P&L matrix build (per price update):  {r['matrix_ms']:8.2f} ms")
        print(f"[{dt}]   requirements() with cached matrix:    {r['requirements_ms']:8.2f} ms")
        print(f"[{dt}]   full re-margin (matrix + requirements): {r['full_ms']:6.2f} ms "
              f"-> {a.accounts / (r['full_ms'] / 1e3):,.0f} accounts/s (best run {r['full_best_ms']:.2f} ms)")
    main_r = results[a.dtype]
    print(f"accounts_per_s={int(a.accounts / (main_r['full_ms'] / 1e3))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
