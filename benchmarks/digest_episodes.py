"""A digest of episodes' results, to show that an optimisation changed nothing.

Runs each episode (counterfactual off) and hashes every column of every result table; prints one
line per episode and ends with ``digest=<hex>`` over all of them. Run it before and after a change
meant to preserve behaviour: the digests must match. (A change that alters results on purpose --
a fix -- changes them; say so in its commit.)

    python benchmarks/digest_episodes.py [EPISODE.yaml ...] [--regime NAME]

``--regime`` runs every episode under that margin regime (``margin.regime`` overridden, as
``bench_episode.py --regime`` does), so a change to one regime's path can be checked on the
episodes. Each line also gives the run's CPU seconds (building and running the episode).

Default episodes: the RMSC04-like day, the default crash, LUNA, Mango and the hedged-options book.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import sim  # noqa: E402,F401 -- before numpy: the product's arithmetic (sim.core.arithmetic)
import numpy as np  # noqa: E402

from sim.experiment.config import load_episode  # noqa: E402
from sim.experiment.episode import run  # noqa: E402

DEFAULT = ["configs/bench/rmsc04_like.yaml", "configs/default.yaml", "configs/luna.yaml", "configs/mango.yaml",
           "configs/hedged_options.yaml"]


def digest(tables: dict[str, dict[str, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for name in sorted(tables):
        for column in sorted(tables[name]):
            values = np.asarray(tables[name][column])
            h.update(f"{name}.{column}:{values.dtype}:{values.shape}".encode())
            h.update(values.tobytes() if values.dtype != object else repr(values.tolist()).encode())
    return h.hexdigest()


def main(paths: list[str], regime: str | None = None) -> None:
    overall = hashlib.sha256()
    overrides: dict = {"outputs": {"counterfactual": False}}
    if regime is not None:
        overrides["margin"] = {"regime": regime}
    for path in paths or [str(ROOT / p) for p in DEFAULT]:
        cpu = time.process_time()
        result = run(load_episode(path, overrides))
        cpu = time.process_time() - cpu
        d = digest(result.tables)
        overall.update(d.encode())
        print(f"{Path(path).name:28s} {d[:16]}  events={result.stats['events']} fills={result.stats['fills']}"
              f"  cpu_s={cpu:.1f}")
    print(f"digest={overall.hexdigest()[:16]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("episodes", nargs="*")
    parser.add_argument("--regime", default=None, help="override margin.regime in every episode (e.g. span)")
    args = parser.parse_args()
    main(args.episodes, args.regime)
