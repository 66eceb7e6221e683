"""A hypothesis strategy for random but valid episodes, and the invariants every one must keep.

The strategy draws over every margin regime, liquidation policy and worst-price rule, absorption
order, ADL mode, enforcement cadence, oracle setting (deviation, heartbeat, latency, median
aggregation with the venue's price, outages), path model and shock, population shape (makers,
noise, leveraged longs and shorts, momentum, auction bidders, a backstop vault), price scale
(1e-2 .. 1e5) and quote decimals (2 .. 8). Episodes are short (a few simulated minutes, a few
dozen agents) so that hundreds run in a minute.

``check_episode`` runs one and asserts: it finishes; ``verify`` holds (ledger conservation,
health at breach and at every step that moved positions); the ledger is exact in Python integers
(cash per asset, open interest, the journal of transfers); nothing is left at or below
maintenance margin by its positions without a liquidation in progress (continuous enforcement).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

from clearing.ledger import FIRST_TRADER, SystemAccount
from sim.experiment.config import parse_episode
from sim.experiment.episode import run

REGIMES = ["standard", "standard_isolated", "span", "tims", "portfolio", "portfolio_joint", "var", "var_apc"]
LAYERS = ["insurance_fund", "waterfall", "socialised"]


@st.composite
def episodes(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid episode dict (validated by the caller)."""
    decimals = draw(st.integers(2, 8))
    price_exp = draw(st.integers(-2, 5))
    s0 = draw(st.sampled_from([1.0, 2.5, 6.0])) * 10.0**price_exp
    tick_exp = price_exp - draw(st.integers(3, 5))  # 1e-3 .. 1e-5 of the price per tick
    # one lot worth roughly 10 .. 10,000 quote units; tick x lot x 10^decimals must be a whole number
    lot_exp = draw(st.integers(1, 4)) - price_exp
    lot_exp = max(lot_exp, -decimals - tick_exp)
    tick_size, lot_size = 10.0**tick_exp, 10.0**lot_exp
    duration = float(draw(st.sampled_from([240, 420, 600])))
    vol = draw(st.sampled_from([0.3, 0.8, 2.0]))
    model = draw(st.sampled_from(["gbm", "merton", "garch", "regime"]))
    und = {"name": "X", "s0": s0, "vol": vol}
    models: list[dict[str, Any]] = [{"kind": model, "underlyings": [und]}]
    if model == "merton":
        models[0]["jumps"] = {"X": {"intensity": 2000.0, "mean": -0.02, "std": 0.03}}
    if model == "garch":
        models[0].update(alpha=0.1, beta=0.85)
    shocks: list[dict[str, Any]] = []
    shape = draw(st.sampled_from(["none", "crash", "recovering", "gap_up", "gap_down"]))
    start = draw(st.sampled_from([30.0, 90.0]))
    drop = draw(st.sampled_from([0.05, 0.15, 0.35, 0.6]))
    if shape in ("crash", "recovering"):
        shock = {"kind": "crash", "start": start, "drop": drop, "duration": draw(st.sampled_from([1.0, 20.0]))}
        if shape == "recovering":
            shock.update(recovery=1.0, recovery_duration=draw(st.sampled_from([5.0, 20.0, 60.0])))
        shocks.append(shock)
    elif shape.startswith("gap"):
        shocks.append({"kind": "gap", "start": start, "size": drop if shape == "gap_up" else -drop})
    instruments = [{"symbol": "X-PERP", "kind": "perpetual", "underlying": "X", "tick_size": tick_size,
                    "lot_size": lot_size, "funding_interval": draw(st.sampled_from([60.0, 28_800.0]))}]
    symbols = ["X-PERP"]
    if draw(st.booleans()):
        instruments.append({"symbol": "X-FUT", "kind": "future", "underlying": "X", "tick_size": tick_size,
                            "lot_size": lot_size, "expiry": draw(st.sampled_from([duration / 2, 10 * duration]))})
        symbols.append("X-FUT")

    regime = draw(st.sampled_from(REGIMES))
    margin: dict[str, Any] = {"regime": regime}
    if regime.startswith("standard"):
        im = draw(st.sampled_from([0.05, 0.1, 0.2]))
        margin["tiers"] = [{"im_rate": im, "mm_rate": im / 2}]
    policy = draw(st.sampled_from(["book", "backstop", "auction"]))
    order = draw(st.permutations(LAYERS))[: draw(st.integers(1, 3))]
    waterfall = "waterfall" in order or draw(st.booleans())
    capital_unit = 10.0 ** draw(st.integers(3, min(5, 11 - decimals)))  # fits the ledger's headroom
    clearing = {
        "enforcement": {"cadence": draw(st.sampled_from(["continuous", "continuous", "interval"])),
                        "interval": draw(st.sampled_from([5.0, 30.0])),
                        "cancel_level": draw(st.sampled_from([0.0, 0.5, 1.0])),
                        "pre_trade_check": draw(st.booleans())},
        "liquidation": {
            "policy": policy, "fee_rate": draw(st.sampled_from([0.0, 0.01])),
            "book": {"worst_price": draw(st.sampled_from(["bankruptcy", "between", "band"])),
                     "cooldown": draw(st.sampled_from([0.0, 1.0, 10.0])),
                     "latency": draw(st.sampled_from([0.0, 0.2])),
                     "slice_notional": draw(st.sampled_from([0.0, 1e5]))},
            "backstop": {"enabled": draw(st.booleans()), "capital": 50 * capital_unit,
                         "discount": draw(st.sampled_from([0.0, 0.02]))},
            "auction": {"duration": draw(st.sampled_from([5.0, 30.0])), "min_bidders": draw(st.integers(0, 2))},
        },
        "loss_absorption": {
            "insurance_fund": draw(st.sampled_from([0.0, 1.0, 10.0])) * capital_unit,
            "adl": draw(st.sampled_from(["off", "ranked", "pro_rata"])),
            "socialised": draw(st.sampled_from(["off", "open_interest", "depositors"])),
            "order": list(order),
            # the default fund is sized early enough to exist in every drawn episode
            "waterfall": {"ccp_capital": capital_unit, "members": 5, "sizing_time": 30.0} if waterfall else None,
        },
        "funding": {"enabled": draw(st.booleans())},
        # hourly or daily rows: a 2-day VaR margin period of risk needs at least 48 (or 2) of them
        "history": {"pre_episode_rows": 60, "row_interval": draw(st.sampled_from([3_600.0, 86_400.0]))},
        "settlement": {"variation_margin": draw(st.sampled_from(["continuous", "interval"])), "interval": 60.0},
    }
    oracle: dict[str, Any] = {
        "sample_interval": draw(st.sampled_from([0.5, 1.0, 5.0])),
        "heartbeat": draw(st.sampled_from([10.0, 60.0])),
        "deviation": draw(st.sampled_from([0.0, 0.001, 0.01])),
        "latency": draw(st.sampled_from([0.0, 0.5])),
    }
    if draw(st.booleans()):
        oracle.update(aggregation="median", venue_weight=draw(st.sampled_from([0.0, 0.5])), external_sources=3)
    if draw(st.booleans()):
        oracle["outages"] = [{"start": start, "end": start + draw(st.sampled_from([10.0, 60.0]))}]

    lot_value = s0 * lot_size
    lots_for = lambda quote: max(1, int(quote / lot_value))  # noqa: E731 -- lots worth ``quote``
    groups: list[dict[str, Any]] = [
        {"type": "market_maker", "count": draw(st.integers(0, 3)), "capital": 200 * capital_unit,
         "instruments": symbols, "size": lots_for(capital_unit * draw(st.sampled_from([1, 10]))),
         "levels": draw(st.integers(1, 3)), "max_inventory": lots_for(100 * capital_unit),
         "half_spread_bps": draw(st.sampled_from([2.0, 20.0]))},
        {"type": "noise", "count": draw(st.integers(0, 8)), "capital": 5 * capital_unit, "instruments": symbols,
         "rate": 0.05, "size": lots_for(capital_unit)},
        {"type": "leveraged", "name": "longs", "count": draw(st.integers(1, 10)),
         "capital": {"dist": "lognormal", "mean": capital_unit, "sigma": 0.5, "high": 20 * capital_unit},
         "instruments": symbols, "leverage": {"dist": "uniform", "low": 2.0, "high": draw(st.sampled_from([5.0, 25.0, 60.0]))},
         "long_prob": draw(st.sampled_from([0.5, 0.9])), "on_margin_call": draw(st.sampled_from(["cut", "hold"]))},
        {"type": "leveraged", "name": "shorts", "count": draw(st.integers(0, 5)), "capital": 5 * capital_unit,
         "instruments": symbols, "leverage": 3.0, "long_prob": 0.0},
    ]
    if draw(st.booleans()):
        groups.append({"type": "momentum", "count": draw(st.integers(1, 4)), "capital": 5 * capital_unit,
                       "instruments": symbols, "panic_drop": 0.03, "panic_size": lots_for(capital_unit)})
    if policy == "auction" or draw(st.booleans()):
        groups.append({"type": "auction_bidder", "count": draw(st.integers(0, 3)), "capital": 50 * capital_unit})
    if draw(st.booleans()):
        groups.append({"type": "backstop_provider", "capital": 100 * capital_unit})
    return {
        "name": "fuzz", "seed": draw(st.integers(0, 2**31 - 1)), "duration": duration,
        "market": {"quote": {"name": "USD", "decimals": decimals}, "instruments": instruments},
        "paths": {"dt": 1.0, "models": models, "shocks": shocks},
        "oracle": oracle, "margin": margin, "clearing": clearing,
        "population": {"groups": groups},
        "outputs": {"sample_interval": 30.0, "counterfactual": False, "report": False, "parquet": False},
    }


def check_episode(data: dict[str, Any]) -> dict[str, int]:
    """Run one episode and assert every invariant (raises AssertionError naming the first broken).
    Returns what it exercised: liquidations, their steps, policies used, ADL fills, bad debt."""
    config = parse_episode(data, "fuzz")
    result = run(config, keep_episode=True)  # run() itself calls verify()
    episode = result.episode
    assert episode is not None
    ledger, house, engine = episode.ledger, episode.house, episode.engine
    assert episode.world.now == config.duration, f"the clock stopped at {episode.world.now}"
    n = ledger.n_accounts
    # exact in Python integers, independently of Ledger.check(): balances, open interest, journal
    for k, asset in enumerate(ledger.assets):
        held = sum(ledger.cash[:n, k].tolist())
        assert held == int(ledger.deposits[k]) - int(ledger.withdrawals[k]), f"{asset.name} not conserved"
        assert all(-(2**62) < v < 2**62 for v in ledger.cash[:n, k].tolist()), f"{asset.name} near the int64 edge"
    for i in range(len(ledger.instruments)):
        assert sum(ledger.position[:n, i].tolist()) == 0, f"open interest of instrument {i} does not net"
    for transfer in ledger.journal:
        assert isinstance(transfer.amount, int) and transfer.amount != 0
    assert int(ledger.cash[SystemAccount.BAD_DEBT, 0]) <= 0, "bad debt row holds a surplus"
    # nobody is left below MM by their positions without a liquidation in progress. Checked under
    # continuous enforcement, at the final marks (marks move only on publications, and every other
    # change re-checks the account when it happens); resting orders are left out -- an order that
    # would take the worst case below MM is cancelled, not liquidated. Under interval enforcement
    # a change after the last run legitimately waits for the next one.
    rows = np.arange(FIRST_TRADER, n)
    below = rows[:0]
    if config.clearing.enforcement.cadence == "continuous":
        equity = house.equities(rows)
        mm = house.requirements(ledger.position[rows].astype(np.float64)).mm * house.scale
        below = rows[(equity < mm) & (np.abs(ledger.position[rows]).sum(axis=1) > 0)]
    missed = [int(a) for a in below.tolist() if not engine.is_active(int(a))]
    if missed:
        a = missed[0]
        k = int(np.flatnonzero(rows == a)[0])
        raise AssertionError(f"{len(missed)} accounts end below MM with no liquidation in progress, e.g. account "
                             f"{a}: equity {equity[k]:.0f} < MM {mm[k]:.0f} of its positions (house last saw health "
                             f"{int(house.health[a])}, equity {house.equity[a]:.0f}, MM with orders {house.mm[a]:.0f})")
    assert math.isfinite(float(result.stats["wall_seconds"]))
    return {"liquidations": len(engine.events), "steps": len(engine.steps),
            "auction": sum(st.policy == "auction" for st in engine.steps),
            "backstop": sum(st.policy == "backstop" for st in engine.steps),
            "adl": sum(st.policy == "adl" for st in engine.steps),
            "takeover": sum(st.policy == "takeover" for st in engine.steps),
            "bad_debt": int(ledger.bad_debt() > 0)}
