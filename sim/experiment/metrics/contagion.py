"""Liquidations and their contagion: counts by cause, policy and outcome, cascades as trees of
distress spells, delays and slippage."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.experiment.spells import liquidation_spells, spell_forest
from sim.experiment.metrics.columns import POLICIES, OUTCOMES, CAUSES, Tables, column_of, distribution


def liquidation_figures(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    notional = column_of(tables, "liquidations", "notional").astype(np.float64)
    outcome = column_of(tables, "liquidations", "outcome").astype(str)
    cause = column_of(tables, "liquidations", "cause").astype(str)
    account = column_of(tables, "liquidations", "account", np.int64)
    policy = column_of(tables, "liquidation_steps", "policy").astype(str)
    s_not = column_of(tables, "liquidation_steps", "notional").astype(np.float64)
    s_lots = column_of(tables, "liquidation_steps", "lots", np.int64)
    s_fee = column_of(tables, "liquidation_steps", "fee").astype(np.float64)
    s_ins = column_of(tables, "liquidation_steps", "instrument", np.int64)
    by_policy = {}
    for p in sorted(set(POLICIES) | set(policy.tolist())):
        m = policy == p
        by_policy[p] = {"steps": int(m.sum()), "notional": float(s_not[m].sum()) / scale,
                        "lots": int(np.abs(s_lots[m]).sum())}
    by_outcome = {o: int((outcome == o).sum()) for o in sorted(set(OUTCOMES) | set(outcome.tolist()))}
    by_cause = {c: int((cause == c).sum()) for c in sorted(set(CAUSES) | set(cause.tolist()))}
    by_market = {s: float(s_not[s_ins == k].sum()) / scale for k, s in enumerate(cv["symbols"])}
    spell = column_of(tables, "liquidations", "spell", np.int64)
    endogenous = column_of(tables, "liquidations", "endogenous", bool)
    return {
        "count": int(notional.size),
        "spells": int(np.unique(spell).size) if spell.size else int(notional.size),
        "endogenous_breaches": int(endogenous.sum()),
        "attribution_materiality": cv["materiality"],
        "accounts": int(np.unique(account).size),
        "notional": float(notional.sum()) / scale,
        "steps": int(policy.size),
        "fees": float(s_fee.sum()) / scale,
        "by_policy": by_policy,
        "by_outcome": by_outcome,
        "by_cause": by_cause,
        "notional_by_market": by_market,
    }


def cascade_figures(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    """Cascades as trees of distress spells (``sim.experiment.spells``): a root spell began with an exogenous
    breach, a child spell's first breach was endogenous under the but-for rule."""
    scale = cv["scale"]
    liq = column_of(tables, "liquidations", "liq_id", np.int64)
    parent = column_of(tables, "liquidations", "parent", np.int64)
    notional = column_of(tables, "liquidations", "notional").astype(np.float64)
    spell = liquidation_spells(liq, column_of(tables, "liquidations", "spell", np.int64))
    empty: dict[str, Any] = {
        "count": 0, "contagious": 0, "max_generation": None, "largest_size": 0, "largest_size_notional": 0.0,
        "largest_liquidations": 0,
        "largest_notional": 0.0, "largest_notional_size": 0, "mean_size": None, "root_notional": 0.0,
        "endogenous_count": 0, "endogenous_notional": 0.0, "amplification": None,
        "amplification_note": "no liquidations", "endogenous_share": None, "by_generation": []}
    if liq.size == 0:
        return empty
    forest = spell_forest(liq, parent, spell, notional)
    m = forest.count
    is_root = forest.parent < 0
    roots = np.flatnonzero(is_root)
    size = forest.per_tree(np.ones(m))  # spells per tree
    tree_notional = forest.per_tree(forest.notional)
    tree_events = forest.per_tree(forest.events)  # liquidations per tree
    r_size, r_not = size[roots], tree_notional[roots]
    k_size = roots[np.lexsort((roots, -r_size))[0]]  # largest by spells (ties: smallest id)
    k_not = roots[np.lexsort((roots, -r_not))[0]]
    all_n = float(forest.notional.sum())
    root_n = float(forest.notional[is_root].sum())
    if root_n > 0:
        amp, note = all_n / root_n, None
    elif all_n == 0:
        amp, note = 1.0, "no notional liquidated: nothing to amplify"
    else:
        amp, note = None, "exogenous roots liquidated zero notional: undefined (see endogenous_share)"
    gen = forest.generation
    gmax = int(gen.max())
    by_gen = [{"generation": g, "count": int((gen == g).sum()),
               "notional": float(forest.notional[gen == g].sum()) / scale} for g in range(gmax + 1)]
    return {
        "count": int(roots.size),
        "contagious": int((r_size > 1).sum()),
        "max_generation": gmax,
        "largest_size": int(size[k_size]),
        "largest_size_notional": float(tree_notional[k_size]) / scale,
        "largest_liquidations": int(tree_events[roots].max()),
        "largest_notional": float(tree_notional[k_not]) / scale,
        "largest_notional_size": int(size[k_not]),
        "mean_size": float(r_size.mean()),
        "root_notional": root_n / scale,
        "endogenous_count": int(m - roots.size),
        "endogenous_notional": (all_n - root_n) / scale,
        "amplification": amp,
        "amplification_note": note,
        "endogenous_share": (all_n - root_n) / all_n if all_n > 0 else None,
        "by_generation": by_gen,
    }


def delay_figures(tables: Tables) -> dict[str, Any]:
    breach = column_of(tables, "liquidations", "breach_time").astype(np.float64)
    start = column_of(tables, "liquidations", "start_time").astype(np.float64)
    end = column_of(tables, "liquidations", "end_time").astype(np.float64)
    return {"breach_to_start": distribution(start - breach), "breach_to_end": distribution(end - breach),
            "open_at_end": int((~np.isfinite(end)).sum())}


def slippage_figures(tables: Tables) -> dict[str, Any]:
    policy = column_of(tables, "liquidation_steps", "policy").astype(str)
    lots = column_of(tables, "liquidation_steps", "lots", np.int64)
    notional = column_of(tables, "liquidation_steps", "notional").astype(np.float64)
    avg = column_of(tables, "liquidation_steps", "avg_price").astype(np.float64)
    mark = column_of(tables, "liquidation_steps", "mark").astype(np.float64)
    ok = np.isfinite(avg) & np.isfinite(mark) & (mark > 0) & (lots != 0) & (notional > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        bps = np.where(ok, np.sign(lots) * (avg - mark) / mark * 1e4, np.nan)

    def wavg(m: np.ndarray) -> float | None:
        m = m & ok
        return float(np.average(bps[m], weights=notional[m])) if m.any() else None

    return {
        "mean_bps": wavg(np.ones(policy.size, dtype=bool)),
        "max_bps": float(np.nanmax(bps)) if ok.any() else None,
        "by_policy": {p: wavg(policy == p) for p in sorted(set(POLICIES) | set(policy.tolist()))},
    }
