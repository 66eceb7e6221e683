"""clearsim's RMSC04-like day against ABIDES-jpmc's RMSC04, on equal work, side by side here.

Issue 18 asks for the day at 20x ABIDES or more per unit of work -- orders, cancels and trades --
on the same machine. Pairs alternate: an ABIDES day in a fresh process of ABIDES's interpreter,
then clearsim's day in a fresh process of this one (a process's first run, as a user gets it).
Each child reports the process CPU seconds of the run alone (building the agents and every event;
imports excluded) and the work it counted. A pair's ratio is clearsim's units per CPU second over
ABIDES's; the headline is the median of the pairs.

ABIDES's side: RMSC04 as its own ``build_config`` makes it (one exchange, 1,000 noise, 102 value
and 12 momentum agents, 2 POV market makers), the whole day (09:30-16:00), seed = the pair's
number, every log off (``log_orders``, ``book_logging``, ``exchange_log_orders``; stdout at
WARNING). Its work, counted at the exchange: limit and market orders received (orders), cancels and
partial cancels received (cancels), executions sent divided by two (trades: one message to each
side). clearsim's side: ``configs/bench/rmsc04_like.yaml`` run once; the venue's orders, cancels
and fills (a fill is one trade); its amends, which ABIDES's agents never send, are printed beside
and not counted.

ABIDES is not a dependency of clearsim: give the interpreter of an environment where its packages
import. As measured (Python 3.11):

    git clone https://github.com/jpmorganchase/abides-jpmc-public abides && cd abides
    python3 -m venv venv
    venv/bin/pip install "numpy==1.26.4" "pandas==1.5.3" "scipy<1.14" coloredlogs tqdm psutil
    venv/bin/pip install --no-deps -e abides-core -e abides-markets

(ABIDES pins pandas 1.2 and numpy 1.22, which have no Python 3.11 builds; pandas 2 breaks its date
handling.) Its order-size model needs pomegranate 0.14, which does not build on Python 3.11: the
child puts a stand-in in ``sys.modules`` before ABIDES imports it -- the same mixture (the
lognormal and normal components and weights ABIDES loads from JSON), sampled from the caller's
RandomState: a component by its weight, then a draw from it. A draw costs ~13 us, ~0.5 CPU s of
ABIDES's ~17 (noise, value and momentum agents draw a size per order): were pomegranate's own draws
free, the ratio would read ~3% lower.

    python benchmarks/bench_abides.py --abides-python ../abides/venv/bin/python [--pairs 3]

Ends with ``abides_ratio=`` (the median of the pairs' ratios).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "bench" / "rmsc04_like.yaml"

# Runs in ABIDES's interpreter: argv[1] is the seed; prints one JSON line.
ABIDES_CHILD = r'''
import collections, json, sys, time, types
import numpy as np


class GeneralMixtureModel:
    """pomegranate 0.14's mixture, as ABIDES's OrderSizeModel uses it (from_json, sample)."""

    def __init__(self, components, weights):
        self.components = components
        self.weights = np.asarray(weights, dtype=float) / np.sum(weights)

    @classmethod
    def from_json(cls, text):
        spec = json.loads(text)
        return cls([(d["name"], d["parameters"]) for d in spec["distributions"]], spec["weights"])

    def sample(self, random_state=None):
        rs = np.random if random_state is None else random_state
        name, (a, b) = self.components[rs.choice(len(self.weights), p=self.weights)]
        return rs.lognormal(a, b) if name == "LogNormalDistribution" else rs.normal(a, b)


try:
    import pomegranate  # noqa: F401 -- the real one, where it builds
except ImportError:
    sys.modules["pomegranate"] = types.SimpleNamespace(GeneralMixtureModel=GeneralMixtureModel)

from abides_core import abides
from abides_markets.agents.exchange_agent import ExchangeAgent
from abides_markets.configs.rmsc04 import build_config

counts = collections.Counter()
received, sent = ExchangeAgent.receive_message, ExchangeAgent.send_message


def counting_receive(self, current_time, sender_id, message):
    counts[type(message).__name__] += 1
    return received(self, current_time, sender_id, message)


def counting_send(self, recipient_id, message, *rest):
    counts["sent " + type(message).__name__] += 1
    return sent(self, recipient_id, message, *rest)


ExchangeAgent.receive_message, ExchangeAgent.send_message = counting_receive, counting_send
config = build_config(seed=int(sys.argv[1]), end_time="16:00:00", log_orders=False, book_logging=False,
                      exchange_log_orders=False, stdout_log_level="WARNING")
started = time.process_time()
abides.run(config)
cpu = time.process_time() - started
print(json.dumps({"cpu_s": cpu, "orders": counts["LimitOrderMsg"] + counts["MarketOrderMsg"],
                  "cancels": counts["CancelOrderMsg"] + counts["PartialCancelOrderMsg"],
                  "amends": counts["ModifyOrderMsg"] + counts["ReplaceOrderMsg"],
                  "trades": counts["sent OrderExecutedMsg"] // 2}))
'''


def clearsim_child() -> None:
    """One run of the RMSC04-like day in this process; prints one JSON line."""
    sys.path.insert(0, str(ROOT))
    from sim.experiment.config import load_episode
    from sim.experiment.episode import run

    config = load_episode(CONFIG, {"outputs": {"counterfactual": False}})
    started = time.process_time()
    s = run(config).stats
    cpu = time.process_time() - started
    print(json.dumps({"cpu_s": cpu, "orders": s["orders"], "cancels": s["cancels"], "amends": s["amends"],
                      "trades": s["fills"]}))


def _json_child(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _rate(r: dict) -> float:
    """Units of work (orders + cancels + trades) per CPU second."""
    return (r["orders"] + r["cancels"] + r["trades"]) / r["cpu_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--abides-python", help="an interpreter where abides_core and abides_markets import")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--clearsim-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.clearsim_child:
        clearsim_child()
        return
    if not args.abides_python:
        p.error("--abides-python is required (an interpreter with ABIDES installed; see this script's docstring)")
    from machine import describe

    print(f"machine: {describe()}")
    print(f"ABIDES RMSC04 (whole day, logs off) in {args.abides_python}; clearsim {CONFIG.relative_to(ROOT)}")
    ratios = []
    for pair in range(1, args.pairs + 1):
        abides = _json_child([args.abides_python, "-c", ABIDES_CHILD, str(pair)])
        ours = _json_child([sys.executable, __file__, "--clearsim-child"])
        ratios.append(_rate(ours) / _rate(abides))
        for name, r in (("ABIDES", abides), ("clearsim", ours)):
            print(f"pair {pair} {name:8s} {r['cpu_s']:6.2f} CPU s: {r['orders']:,} orders, {r['cancels']:,} cancels, "
                  f"{r['trades']:,} trades ({r['amends']:,} amends not counted): {_rate(r):,.0f} units per CPU s")
        print(f"pair {pair} ratio    {ratios[-1]:.2f}x")
    print(f"ratios {' '.join(f'{x:.2f}' for x in ratios)}; median {statistics.median(ratios):.2f}x")
    print(f"abides_ratio={statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
