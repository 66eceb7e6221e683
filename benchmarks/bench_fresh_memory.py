"""What touching fresh memory costs on this machine: system CPU seconds per GiB, cold and warm.

A fresh process fills a ``--gib`` GiB numpy array with ones and reports its own system time
(``getrusage``); a second fresh process does the same right after, and a third after ``--wait``
seconds. On bare metal the three read alike (the kernel zeroes and maps each page: ~0.4 s a GiB).
On a virtual machine whose host takes back the memory the guest frees, the first (and, once the
host has taken it back again, the third) pays the host's fault on every page as well: the
episode's CPU figures in docs/BENCHMARKS.md include that time wherever a run touches fresh memory
(``benchmarks/bench_scale.py`` prints each size's system seconds).

    python benchmarks/bench_fresh_memory.py [--gib 4] [--wait 120]

Ends with ``cold_seconds_per_gib=`` (the first process's system seconds per GiB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

_CHILD = """
import json, resource, time
import numpy as np
before = resource.getrusage(resource.RUSAGE_SELF)
started = time.perf_counter()
a = np.ones({n})
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"system_s": after.ru_stime - before.ru_stime, "wall_s": time.perf_counter() - started}}))
"""


def fill(gib: float) -> dict:
    """A fresh process's system and wall seconds to fill ``gib`` GiB of float64 ones."""
    code = _CHILD.format(n=int(gib * 2**30) // 8)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gib", type=float, default=4.0)
    p.add_argument("--wait", type=float, default=120.0, help="seconds idle before the third process")
    args = p.parse_args()
    first = fill(args.gib)
    second = fill(args.gib)
    time.sleep(args.wait)
    third = fill(args.gib)
    for name, r in (("first", first), ("right after", second), (f"after {args.wait:.0f} s idle", third)):
        print(f"{name:>18}: {args.gib:g} GiB in {r['system_s']:.2f} s of system time ({r['system_s'] / args.gib:.2f} s "
              f"per GiB), {r['wall_s']:.2f} s wall")
    print(f"cold_seconds_per_gib={first['system_s'] / args.gib:.2f}")


if __name__ == "__main__":
    main()
