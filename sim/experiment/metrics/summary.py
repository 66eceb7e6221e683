"""The summary of one run: ``summarise`` assembles the metric families into one nested dict;
``flatten`` and the headline figures read it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sim.experiment.metrics.groups import group_margin
from sim.experiment.schema.outputs import window_seconds
from sim.experiment.metrics.columns import Tables, rnd
from sim.experiment.metrics.contagion import cascade_figures, delay_figures, liquidation_figures, slippage_figures
from sim.experiment.metrics.losses import (adl_figures, bad_debt_figures, insurance_figures, loss_figures,
                                           solvency_figures)
from sim.experiment.metrics.margin import margin_figures
from sim.experiment.metrics.price import counterfactual_figures, price_figures




# ------------------------------------------------------------------------------------ config view
def _config_view(config: Any) -> dict[str, Any]:
    """What the metrics need from the config (works on an EpisodeConfig or anything shaped like one)."""
    market = config.market
    instruments = list(market.instruments)
    try:
        underlyings = list(config.paths.names())
    except Exception:  # a replay file that is gone, say: fall back to first-use order
        underlyings = list(dict.fromkeys(i.underlying for i in instruments))
    margin = getattr(config, "margin", None)
    return {
        "scale": 10 ** int(market.quote.decimals),
        "quote": market.quote.name,
        "symbols": [i.symbol for i in instruments],
        "kinds": [i.kind for i in instruments],
        "underlying_of": [i.underlying for i in instruments],
        "underlyings": underlyings,
        "duration": float(config.duration),
        "sample_interval": float(getattr(getattr(config, "outputs", None), "sample_interval", 60.0)),
        "regime": getattr(margin, "regime", None),
        "materiality": float(getattr(getattr(getattr(config, "clearing", None), "attribution", None), "materiality", 0.0)),
        # the procyclicality measurement window and horizon (EpisodeConfig computes the defaults)
        "measure_from": float(config.measurement_start()) if hasattr(config, "measurement_start") else 0.0,
        "horizon": (float(config.horizon()) if hasattr(config, "horizon") else
                    window_seconds(float(config.duration), float(getattr(getattr(config, "outputs", None),
                                                                         "sample_interval", 60.0)))),
    }


# ------------------------------------------------------------------------------------ public
def summarise(config: Any, tables: Tables, stats: Mapping[str, Any] | None = None,
              counterfactual: Tables | None = None) -> dict[str, Any]:
    """The deterministic summary of one run (see ``METRICS_DOC``). ``counterfactual`` is the tables
    of the same run without feedback (the API layer produces it); with it the price amplification
    against the counterfactual venue is reported too."""
    cv = _config_view(config)
    stats = dict(stats or {})
    run = {
        "name": getattr(config, "name", None),
        "seed": getattr(config, "seed", None),
        "duration": cv["duration"],
        "regime": cv["regime"],
        "quote": cv["quote"],
        "quote_decimals": int(config.market.quote.decimals),
    }
    for key in ("accounts", "events", "orders", "cancels", "fills", "rejects", "oracle_publications",
                "revaluations"):
        if key in stats and stats[key] is not None:
            run[key] = int(stats[key])
    summary = {
        "run": run,
        "bad_debt": bad_debt_figures(tables, cv),
        "insurance_fund": insurance_figures(tables, cv),
        "losses": loss_figures(tables, cv),
        "liquidations": liquidation_figures(tables, cv),
        "adl": adl_figures(tables, cv),
        "cascades": cascade_figures(tables, cv),
        "price": price_figures(tables, cv, counterfactual),
        "margin": margin_figures(tables, cv),
        "liquidation_delay": delay_figures(tables),
        "slippage": slippage_figures(tables),
        "solvency": solvency_figures(tables, cv),
        "groups": group_margin(tables, cv["scale"]),
    }
    if counterfactual is not None:
        summary["counterfactual"] = counterfactual_figures(tables, cv, counterfactual, summary["price"])
    return rnd(summary)


def timing(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Wall-clock figures of a run (not deterministic; kept out of the summary)."""
    out = {k: stats[k] for k in ("wall_seconds", "peak_memory_bytes") if k in stats}
    wall, events = stats.get("wall_seconds"), stats.get("events")
    if wall and events:
        out["events_per_second"] = events / wall
    sim = stats.get("simulated_seconds")
    if wall and sim:
        out["simulated_seconds_per_wall_second"] = sim / wall
    return {k: (None if v is None else (float(v) if isinstance(v, (float, np.floating)) else v))
            for k, v in out.items()}


def flatten(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay lists (callers encode them)."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


# The headline figures reports and comparison tables show (flattened key, label).
HEADLINE = (
    ("bad_debt.total", "bad debt"),
    ("bad_debt.accounts", "accounts leaving bad debt"),
    ("insurance_fund.min", "insurance fund minimum"),
    ("insurance_fund.final", "insurance fund final"),
    ("liquidations.count", "liquidations"),
    ("liquidations.notional", "liquidated notional"),
    ("adl.notional", "ADL notional"),
    ("losses.socialised", "socialised losses"),
    ("losses.borne_by_others", "losses borne by others (not the liquidated accounts)"),
    ("losses.who_paid.defaulter_margin", "paid by: defaulters' own margin"),
    ("losses.who_paid.defaulter_default_fund", "paid by: defaulters' default-fund contributions"),
    ("losses.who_paid.liquidation_penalties", "paid by: liquidation penalties (through the insurance fund)"),
    ("losses.who_paid.insurance_fund", "paid by: insurance fund's own capital"),
    ("losses.who_paid.ccp_capital", "paid by: CCP capital"),
    ("losses.who_paid.survivors_default_fund", "paid by: survivors' default fund"),
    ("losses.who_paid.assessments", "paid by: assessments"),
    ("losses.who_paid.vm_gains_haircut", "paid by: VM gains haircut"),
    ("losses.who_paid.adl", "paid by: ADL counterparties (vs mark)"),
    ("losses.who_paid.socialised", "paid by: socialised loss"),
    ("losses.who_paid.backstop_vault", "paid by: backstop vault losses"),
    ("losses.who_paid.bad_debt", "paid by: nobody (bad debt)"),
    ("losses.backstop_vault.pnl_final", "backstop vault P&L"),
    ("solvency.bad_debt_recoveries", "bad-debt recoveries in kind"),
    ("solvency.hidden_loss", "loss hidden by the oracle (true prices)"),
    ("price.amplification_vs_counterfactual", "price amplification vs no-feedback run"),
    ("counterfactual.mark_drawdown_amplification", "mark drawdown amplification vs no-feedback twin"),
    ("counterfactual.liquidated_notional_ratio", "liquidated notional vs no-feedback twin (ratio)"),
    ("counterfactual.bad_debt_difference", "bad debt minus no-feedback twin's"),
    ("cascades.count", "cascades"),
    ("cascades.max_generation", "deepest generation"),
    ("cascades.largest_size", "largest cascade (distress spells)"),
    ("cascades.largest_liquidations", "largest cascade (liquidations)"),
    ("cascades.amplification", "liquidation amplification"),
    ("price.max_venue_drawdown", "venue drawdown (worst instrument)"),
    ("price.true_drawdown", "true drawdown (same underlying)"),
    ("price.amplification_vs_true", "price amplification vs true path"),
    ("margin.im_peak", "peak total IM"),
    ("margin.population_im.peak_to_trough_ratio", "total IM: peak / trough in the measurement window"),
    ("margin.population_im.max_increase", "total IM: largest rise over the horizon"),
    ("margin.reference_rate.peak_to_trough_ratio", "reference portfolio IM / gross: peak / trough"),
    ("margin.reference_rate.max_increase_relative",
     "reference portfolio IM / gross: largest relative rise over the horizon"),
    ("margin.im_over_gross", "IM / gross notional (options at premium; lower = less capital)"),
    ("liquidation_delay.breach_to_start.mean", "breach to first step (s, mean)"),
    ("slippage.mean_bps", "liquidation slippage (bps)"),
)


def headline(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of a summary, label -> value (for consoles and comparison tables)."""
    flat = flatten(summary)
    return {label: flat.get(key) for key, label in HEADLINE}
