"""Liquidation steps that repeat the last one: how many of an episode's steps took the shortcut of
``LiquidationEngine._step`` (inputs unchanged since a step that filled nothing, the book still
unable to fill: no re-valuation, no order) -- what that shortcut can save depends on the episode.

Counts, per episode: the engine's steps (``_step`` calls), those that valued the account (the
others are repeats), and the orders the engine got as far as sizing (``_through_book`` calls;
those the book could not fill were not sent).

    python benchmarks/bench_liquidation_steps.py [EPISODE.yaml ...]

Default: LUNA and the 10k stress episode. Ends with ``repeated_share=`` over all of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.experiment.config import load_episode  # noqa: E402
from sim.experiment.episode import run  # noqa: E402

DEFAULT = ["configs/luna.yaml", "configs/bench/stress_10k.yaml"]


def counted(path: str) -> dict[str, int]:
    counts = {"steps": 0, "repeated": 0, "sized": 0}

    def observe(ep) -> None:
        engine = ep.engine
        step, value, through = engine._step, engine._value, engine._through_book
        valued = [False]

        def spy_value(account):
            valued[0] = True
            return value(account)

        def spy_step(*args, **kwargs):
            valued[0] = False
            step(*args, **kwargs)
            counts["steps"] += 1
            counts["repeated"] += not valued[0]

        def spy_through(*args, **kwargs):
            counts["sized"] += 1
            return through(*args, **kwargs)

        engine._value, engine._step, engine._through_book = spy_value, spy_step, spy_through

    run(load_episode(path, {"outputs": {"counterfactual": False}}), observe=observe)
    return counts


def main(paths: list[str]) -> None:
    steps = repeated = 0
    for path in paths or [str(ROOT / p) for p in DEFAULT]:
        c = counted(path)
        steps, repeated = steps + c["steps"], repeated + c["repeated"]
        share = c["repeated"] / c["steps"] if c["steps"] else 0.0
        print(f"{Path(path).name:24s} steps={c['steps']:,} repeated={c['repeated']:,} ({share:.0%}) "
              f"orders sized={c['sized']:,}")
    print(f"repeated_share={repeated / steps if steps else 0.0:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
