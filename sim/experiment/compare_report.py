"""The regime comparison report: one self-contained HTML page a risk committee can act on.

``comparison_page(config, runs, rows, stats, metrics, seeds, folders)`` writes: the headline table
(each metric's mean over the seeds, its spread, and the paired-difference interval against the first
regime with the verdict written next to it), the per-group margin and leverage table, and the
figures -- price paths (true, oracle, venue) with the shock windows shaded; liquidated notional over
time; who paid, stacked by layer; cascade size and generation distributions; total IM and the
margin rate over time in the measurement window; the leverage each regime allowed per trader group;
counterfactual amplification; the multi-seed intervals. Each regime's own run report is linked.

Every number is formatted for people (K/M/B, %, thousands separators; never scientific notation);
every figure's money axis is in K/M/B; identical lines stay visible (thicker lines drawn first, each
regime its own dash); legends sit outside the axes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from sim.experiment.compare import Metric, short_verdict
from sim.experiment.fmt import axis, difference, quantity, short, significant
from sim.experiment.metrics.columns import Tables, column_of
from sim.experiment.metrics.price import mid_price
from sim.experiment.report import CSS, _png, _time_unit
from sim.experiment.spells import liquidation_spells, spell_forest

if TYPE_CHECKING:
    from matplotlib.axes import Axes

LINESTYLES = ("-", (0, (6, 2)), (0, (3, 1, 1, 1)), (0, (1, 1)), (0, (8, 2, 2, 2)), (0, (4, 4)))
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
UNIT_HEADERS = {"count": "count", "ratio": "ratio", "fraction": "%", "x": "×", "bps": "bps", "s": "s"}
# regime label -> (summary, tables) of its first seed
Runs = Mapping[str, tuple[Mapping[str, Any], Tables]]
Rows = Sequence[Mapping[str, Any]]  # one per (regime, seed), or the stats: one per (regime, metric)

FIGURES = ("fig-prices", "fig-liquidated", "fig-who-paid", "fig-cascades", "fig-margin", "fig-leverage",
           "fig-counterfactual", "fig-intervals")


# ------------------------------------------------------------------------------------ numbers
def unit_header(unit: str, quote: str) -> str:
    return quote if unit == "money" else UNIT_HEADERS.get(unit, unit)


def _style(k: int) -> dict[str, Any]:
    """Regime k's line: its own colour and dash, and thinner than the ones before it, so a line
    lying exactly on an earlier one leaves that one visible around it."""
    return {"color": COLOURS[k % len(COLOURS)], "ls": LINESTYLES[k % len(LINESTYLES)], "lw": max(3.2 - 0.6 * k, 1.0)}


def _legend(fig: Figure) -> None:
    handles, labels = [], []
    for ax in fig.axes:
        h, l_ = ax.get_legend_handles_labels()
        for hh, ll in zip(h, l_):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


# ------------------------------------------------------------------------------------ figures
def _shock_windows(config: Any, underlying: str) -> list[tuple[float, float, float]]:
    """(start, end of the move, end of the recovery) of each scripted shock touching ``underlying``."""
    out = []
    for shock in getattr(config.paths, "shocks", []) or []:
        names = list(getattr(shock, "underlyings", None) or [])
        one = getattr(shock, "underlying", None)
        if one is not None:
            names.append(one)
        if names and underlying not in names:
            continue
        start = float(shock.start)
        move = start + float(getattr(shock, "duration", 0.0) or 0.0)
        out.append((start, move, move + float(getattr(shock, "recovery_duration", 0.0) or 0.0)))
    return out


def _fig_prices(config: Any, runs: Runs) -> str:
    names = list(config.paths.names())
    scale, unit = _time_unit(float(config.duration))
    fig = Figure(figsize=(11, 2.6 * max(1, len(names))), layout="constrained")
    first_tables = next(iter(runs.values()))[1]
    o_u, o_t = column_of(first_tables, "oracle", "underlying"), column_of(first_tables, "oracle", "time")
    o_i, o_true = column_of(first_tables, "oracle", "index"), column_of(first_tables, "oracle", "true")
    instruments = list(config.market.instruments)
    for u, name in enumerate(names):
        ax = fig.add_subplot(len(names), 1, u + 1)
        for a, b, c in _shock_windows(config, name):
            ax.axvspan(a / scale, max(b, a + scale / 100) / scale, color="#f2a14e", alpha=0.35, lw=0,
                       label="shock: the move")
            if c > b:
                ax.axvspan(b / scale, c / scale, color="#f2d98e", alpha=0.3, lw=0, label="shock: the recovery")
        sel = o_u == u
        if sel.any():
            ax.plot(o_t[sel] / scale, o_true[sel], color="black", lw=3.4, label="true path", zorder=1)
            ax.plot(o_t[sel] / scale, o_i[sel], color="#7f7f7f", lw=2.2, ls="--", drawstyle="steps-post",
                    label="oracle index", zorder=2)
        linear = [k for k, ins in enumerate(instruments) if ins.underlying == name and ins.kind == "perpetual"]
        linear = linear or [k for k, ins in enumerate(instruments) if ins.underlying == name and ins.kind != "option"]
        if linear:
            k = linear[0]
            tick = instruments[k].tick_size
            for j, (label, (_s, tables)) in enumerate(runs.items()):
                m = column_of(tables, "market", "instrument") == k
                t = column_of(tables, "market", "time")[m]
                mid = mid_price(column_of(tables, "market", "best_bid")[m].astype(float),
                                 column_of(tables, "market", "best_ask")[m].astype(float)) * tick
                ax.plot(t / scale, mid, label=f"venue mid · {label}", zorder=3 + j, **_style(j))
            ax.set_title(f"{name} (venue: {instruments[k].symbol})", fontsize=10)
        else:
            ax.set_title(name, fontsize=10)
        ax.set_ylabel(f"price ({config.market.quote.name})")
        axis(ax, "y", short)
        ax.grid(alpha=0.3)
    fig.axes[-1].set_xlabel(f"time ({unit})")
    _legend(fig)
    return _png(fig)


def _fig_liquidated(config: Any, runs: Runs) -> str:
    scale_t, unit = _time_unit(float(config.duration))
    money = 10 ** int(config.market.quote.decimals)
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for j, (label, (_s, tables)) in enumerate(runs.items()):
        t = column_of(tables, "liquidation_steps", "time").astype(float)
        v = column_of(tables, "liquidation_steps", "notional").astype(float) / money
        order = np.argsort(t, kind="stable")
        x = np.r_[0.0, t[order], float(config.duration)] / scale_t
        y = np.r_[0.0, np.cumsum(v[order]), float(v.sum())]
        ax.plot(x, y, drawstyle="steps-post", label=label, **_style(j))
    ax.set_ylabel(f"cumulative liquidated notional ({config.market.quote.name})")
    ax.set_xlabel(f"time ({unit})")
    axis(ax, "y", short)
    ax.grid(alpha=0.3)
    _legend(fig)
    return _png(fig)


def _seed_mean(rows: Rows, label: str, key: str) -> float | None:
    vals = [v for r in rows if r["regime"] == label and (v := r.get(key)) is not None]
    return float(np.mean(vals)) if vals else None


def _who_paid(runs: Runs, rows: Rows) -> tuple[dict[str, dict[str, float]], str]:
    """Per regime, layer -> amount: the who-paid ledger (seed means) when the summaries carry it,
    else the loss-absorption records by layer (first seed)."""
    keys = sorted({k for r in rows for k in r if k.startswith("losses.who_paid.")})
    if keys:
        return ({label: {k[len("losses.who_paid."):]: _seed_mean(rows, label, k) or 0.0 for k in keys}
                 for label in runs}, "who-paid ledger, mean over seeds")
    # collateral_sold is the fund buying a bankrupt's collateral (an exchange of value, not a loss)
    return ({label: {k: v for k, v in (s.get("losses", {}).get("by_layer") or {}).items() if k != "collateral_sold"}
             for label, (s, _t) in runs.items()},
            "loss-absorption records by layer, first seed, without collateral the fund bought; the who-paid "
            "ledger is not in these summaries")


def _fig_who_paid(config: Any, runs: Runs, rows: Rows) -> tuple[str, str]:
    paid, source = _who_paid(runs, rows)
    layers = sorted({layer for d in paid.values() for layer in d})
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    labels = list(runs)
    if not layers or not any(v for d in paid.values() for v in d.values()):
        _no_data(ax, "no losses beyond the defaulters' own margin under any regime")
        return _png(fig), source
    bottom_pos, bottom_neg = np.zeros(len(labels)), np.zeros(len(labels))
    for k, layer in enumerate(layers):
        v = np.array([paid[label].get(layer, 0.0) or 0.0 for label in labels])
        pos, neg = np.maximum(v, 0.0), np.minimum(v, 0.0)
        colour = COLOURS[k % len(COLOURS)] if k < len(COLOURS) else None
        ax.bar(labels, pos, bottom=bottom_pos, color=colour, label=layer.replace("_", " "))
        ax.bar(labels, neg, bottom=bottom_neg, color=colour)
        bottom_pos += pos
        bottom_neg += neg
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_ylabel(f"loss paid ({config.market.quote.name})")
    axis(ax, "y", short)
    ax.grid(alpha=0.3, axis="y")
    _legend(fig)
    return _png(fig), source


def cascade_sizes(tables: Tables) -> tuple[np.ndarray, np.ndarray]:
    """(liquidations per cascade tree, generation of each distress spell): the trees of distress
    spells the headline's cascade figures count (``sim.experiment.spells``), so the figure's trees
    are the table's."""
    liq = column_of(tables, "liquidations", "liq_id", np.int64)
    parent = column_of(tables, "liquidations", "parent", np.int64)
    spell = column_of(tables, "liquidations", "spell", np.int64)
    notional = column_of(tables, "liquidations", "notional").astype(np.float64)
    if liq.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    forest = spell_forest(liq, parent, liquidation_spells(liq, spell), notional)
    return forest.per_tree(forest.events).astype(np.int64)[forest.parent < 0], forest.generation


SIZE_BUCKETS = ((1, 1, "1"), (2, 2, "2"), (3, 5, "3–5"), (6, 20, "6–20"), (21, 100, "21–100"), (101, 10**12, ">100"))


def _fig_cascades(config: Any, runs: Runs) -> str:
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    labels = list(runs)
    width = 0.8 / max(1, len(labels))
    gmax = 0
    data = {}
    for label, (_s, tables) in runs.items():
        sizes, gen = cascade_sizes(tables)
        data[label] = (sizes, gen)
        gmax = max(gmax, int(gen.max()) if gen.size else 0)
    for j, label in enumerate(labels):
        sizes, gen = data[label]
        counts = [int(((sizes >= lo) & (sizes <= hi)).sum()) for lo, hi, _n in SIZE_BUCKETS]
        x = np.arange(len(SIZE_BUCKETS)) + (j - (len(labels) - 1) / 2) * width
        ax1.bar(x, counts, width=width, color=COLOURS[j % len(COLOURS)], label=label)
        g = np.bincount(gen, minlength=gmax + 1) if gen.size else np.zeros(gmax + 1)
        ax2.bar(np.arange(gmax + 1) + (j - (len(labels) - 1) / 2) * width, g, width=width,
                color=COLOURS[j % len(COLOURS)])
    ax1.set_xticks(np.arange(len(SIZE_BUCKETS)), [n for _a, _b, n in SIZE_BUCKETS])
    ax1.set_xlabel("cascade size (liquidations per tree)")
    ax1.set_ylabel("cascades (count)")
    ax2.set_xticks(np.arange(gmax + 1))
    ax2.set_xlabel("generation (0 = exogenous root)")
    ax2.set_ylabel("distress spells (count)")
    for ax in (ax1, ax2):
        ax.set_yscale("symlog", linthresh=10)
        axis(ax, "y", short)
        ax.grid(alpha=0.3, axis="y")
    _legend(fig)
    return _png(fig)


def _reference_series(tables: Tables) -> tuple[np.ndarray, np.ndarray] | None:
    """The fixed reference portfolio's margin rate (IM / gross) over time, from the recorder's
    ``reference_margin`` table (None when the run has none)."""
    table = tables.get("reference_margin") or {}
    if "time" not in table or not np.asarray(table["time"]).size:
        return None
    im, gross = (np.asarray(table[c], dtype=float) for c in ("im", "gross"))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(table["time"], dtype=float), np.where(gross > 0, im / gross, np.nan)


def _fig_margin(config: Any, runs: Runs) -> tuple[str, bool]:
    scale_t, unit = _time_unit(float(config.duration))
    money = 10 ** int(config.market.quote.decimals)
    start = config.measurement_start()
    has_reference = any(_reference_series(t) is not None for _s, t in runs.values())
    n = 3 if has_reference else 2
    fig = Figure(figsize=(11, 2.8 * n), layout="constrained")
    axes = [fig.add_subplot(n, 1, k + 1) for k in range(n)]
    for j, (label, (_s, tables)) in enumerate(runs.items()):
        t = column_of(tables, "margin_totals", "time").astype(float)
        keep = t >= start
        im = column_of(tables, "margin_totals", "im").astype(float)[keep]
        gross = column_of(tables, "margin_totals", "gross").astype(float)[keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(gross > 0, im / gross, np.nan)
        axes[0].plot(t[keep] / scale_t, im / money, drawstyle="steps-post", label=label, **_style(j))
        axes[1].plot(t[keep] / scale_t, rate, drawstyle="steps-post", **_style(j))
        ref = _reference_series(tables) if has_reference else None
        if ref is not None:
            rt, rv = ref
            axes[2].plot(rt[rt >= start] / scale_t, rv[rt >= start], drawstyle="steps-post", **_style(j))
    axes[0].set_ylabel(f"total IM ({config.market.quote.name})")
    axis(axes[0], "y", short)
    axes[1].set_ylabel("population IM / gross (ratio)")
    if has_reference:
        axes[2].set_ylabel("reference portfolio IM rate")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(f"time ({unit}), from the measurement window's start at {significant(start / scale_t)} {unit}")
    _legend(fig)
    return _png(fig), has_reference


def _group_names(runs: Runs) -> list[str]:
    names: list[str] = []
    for s, _t in runs.values():
        for g, d in (s.get("groups") or {}).items():
            if g not in names and (d.get("gross_mean") or 0) > 0:
                names.append(g)
    return names


def _fig_leverage(config: Any, runs: Runs, rows: Rows) -> str:
    groups = _group_names(runs)
    labels = list(runs)
    fig = Figure(figsize=(11, 0.45 * max(len(groups), 4) + 1.2), layout="constrained")
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    if not groups:
        _no_data(ax1, "no groups recorded")
        _no_data(ax2, "no groups recorded")
        return _png(fig)
    height = 0.8 / max(1, len(labels))
    y = np.arange(len(groups))
    for j, label in enumerate(labels):
        lev = [_seed_mean(rows, label, f"groups.{g}.leverage") or 0.0 for g in groups]
        rate = [_seed_mean(rows, label, f"groups.{g}.im_over_gross") or np.nan for g in groups]
        off = (j - (len(labels) - 1) / 2) * height
        ax1.barh(y + off, lev, height=height, color=COLOURS[j % len(COLOURS)], label=label)
        ax2.barh(y + off, rate, height=height, color=COLOURS[j % len(COLOURS)])
    for ax in (ax1, ax2):
        ax.set_yticks(y, groups)
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
    ax2.set_yticklabels([])
    ax1.set_xlabel("leverage held: gross / equity (×, mean over samples and seeds)")
    ax2.set_xscale("log")
    ax2.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: significant(v, 2)))
    ax2.set_xlabel("IM / gross notional (ratio, log scale)")
    _legend(fig)
    return _png(fig)


def _counterfactual_keys(rows: Rows) -> list[str]:
    # the ratios only (x / twin's x): drawdowns and differences are in other units
    keys = sorted({k for r in rows for k, v in r.items() if k.startswith("counterfactual.") and v is not None
                   and k.endswith(("_amplification", "_ratio"))})
    if not keys and any(r.get("price.amplification_vs_counterfactual") is not None for r in rows):
        keys = ["price.amplification_vs_counterfactual"]
    return keys


def _fig_counterfactual(config: Any, runs: Runs, rows: Rows) -> str:
    keys = _counterfactual_keys(rows)
    labels = list(runs)
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    if not keys:
        _no_data(ax, "the no-feedback twin was not run (outputs.counterfactual: true runs it)")
        return _png(fig)
    width = 0.8 / max(1, len(labels))
    for j, label in enumerate(labels):
        v = [_seed_mean(rows, label, k) or np.nan for k in keys]
        ax.bar(np.arange(len(keys)) + (j - (len(labels) - 1) / 2) * width, v, width=width,
               color=COLOURS[j % len(COLOURS)], label=label)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(keys)), [k.split(".", 1)[1].replace("_", " ") for k in keys], fontsize=8)
    ax.set_ylabel("actual / no-feedback twin (×)")
    ax.grid(alpha=0.3, axis="y")
    _legend(fig)
    return _png(fig)


INTERVAL_KEYS = ("losses.borne_by_others", "bad_debt.total", "liquidations.notional", "liquidations.count",
                 "insurance_fund.min", "margin.im_peak", "margin.im_over_gross", "cascades.max_generation")


def _fig_intervals(stats: Rows, metrics: Sequence[Metric], labels: Sequence[str], quote: str) -> str:
    by = {(s["regime"], s["metric"]): s for s in stats}
    units = {m.key: m for m in metrics}
    # a metric no regime moves (every difference exactly 0) says "identical" in the table; a plot of
    # zeros would only show an axis scaled around nothing
    keys = [k for k in INTERVAL_KEYS if k in units and any(by.get((r, k), {}).get("diff_mean") not in (None, 0.0)
                                                            for r in labels[1:])]
    fig = Figure(figsize=(11, 1.0 + 1.6 * max(1, math.ceil(len(keys) / 2))), layout="constrained")
    if len(labels) < 2 or not keys:
        _no_data(fig.add_subplot(1, 1, 1), "one regime, or no metric that differs between regimes")
        return _png(fig)
    rows_n = math.ceil(len(keys) / 2)
    others = list(labels[1:])
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows_n, 2, i + 1)
        m = units[key]
        for j, r in enumerate(others):
            s = by[(r, key)]
            if s["diff_mean"] is None:
                continue
            lo = s["diff_low"] if s["diff_low"] is not None else s["diff_mean"]
            hi = s["diff_high"] if s["diff_high"] is not None else s["diff_mean"]
            colour = COLOURS[(j + 1) % len(COLOURS)]
            ax.plot([lo, hi], [j, j], color=colour, lw=3.0, solid_capstyle="butt")
            ax.plot([s["diff_mean"]], [j], "o", color=colour, ms=6)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_yticks(range(len(others)), others, fontsize=8)
        ax.set_ylim(len(others) - 0.5, -0.5)
        ax.set_title(f"{m.label} ({unit_header(m.unit, quote)}): difference vs {labels[0]}", fontsize=9)
        if m.unit == "fraction":
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: significant(v * 100, 2) + " %"))
        else:
            axis(ax, "x", short, nbins=5)
        ax.grid(alpha=0.3, axis="x")
    return _png(fig)


# ------------------------------------------------------------------------------------ tables
def _headline_table(stats: Rows, metrics: Sequence[Metric], labels: Sequence[str], quote: str, n_seeds: int) -> str:
    by = {(s["regime"], s["metric"]): s for s in stats}
    head = "<tr><th>metric</th>" + "".join(f"<th>{html.escape(r)}</th>" for r in labels) + "</tr>"
    body = []
    for m in metrics:
        if m.key.startswith("groups."):
            continue
        cells = []
        for r in labels:
            s = by.get((r, m.key), {})
            text = quantity(s.get("mean"), m.unit)
            if n_seeds > 1 and s.get("std") is not None:
                text += f" <span class=muted>± {quantity(s['std'], m.unit)}</span>"
            if s.get("verdict") == "one seed: no interval":
                text += f"<br><span class=d>Δ {difference(s.get('diff_mean'), m.unit)}</span>"
            elif s.get("verdict") not in (None, "baseline", "not measured"):
                iv = ""
                if s.get("diff_low") is not None and s.get("verdict") != "identical on every seed":
                    iv = f" [{difference(s['diff_low'], m.unit)}, {difference(s['diff_high'], m.unit)}]"
                text += (f"<br><span class=d>Δ {difference(s.get('diff_mean'), m.unit)}{iv}</span>"
                         f"<br><span class='v {_verdict_class(s['verdict'])}'>{html.escape(s['verdict'])}</span>")
            cells.append(f"<td class=n>{text}</td>")
        body.append(f"<tr><th>{html.escape(m.label)} ({html.escape(unit_header(m.unit, quote))})</th>"
                    + "".join(cells) + "</tr>")
    return f"<table class=cmp>{head}{''.join(body)}</table>"


def _verdict_class(verdict: str) -> str:
    return {"distinguishable from seed noise": "sig", "distinguishable": "sig", "within seed noise": "noise",
            "within noise": "noise"}.get(verdict, "same")


def _group_table(runs: Runs, rows: Rows, stats: Rows, labels: Sequence[str]) -> str:
    """Per group and regime: seed means, each with its short verdict against the first regime."""
    by = {(s["regime"], s["metric"]): s for s in stats}
    groups = _group_names(runs)
    if not groups:
        return "<p class=muted>No population groups recorded.</p>"
    first = next(iter(runs.values()))[0].get("groups", {})
    head = ("<tr><th rowspan=2>group</th><th rowspan=2>agent type</th><th rowspan=2>accounts (count)</th>"
            + f"<th colspan={len(labels)}>IM / gross notional (ratio)</th>"
            + f"<th colspan={len(labels)}>leverage held: gross / equity (×)</th>"
            + f"<th colspan={len(labels)}>liquidations (count)</th></tr><tr>"
            + "".join(f"<th>{html.escape(r)}</th>" for r in labels) * 3 + "</tr>")
    body = []
    for g in groups:
        info = first.get(g, {})
        cells = [f"<th>{html.escape(g)}</th><td>{html.escape(str(info.get('agent_type', '')))}</td>"
                 f"<td class=n>{quantity(info.get('accounts'), 'count')}</td>"]
        for field, unit in (("im_over_gross", "ratio"), ("leverage", "x"), ("liquidations", "count")):
            for r in labels:
                verdict = short_verdict(by.get((r, f"groups.{g}.{field}"), {}))
                mark = f"<br><span class='v {_verdict_class(verdict)}'>{verdict}</span>" if verdict else ""
                cells.append(f"<td class=n>{quantity(_seed_mean(rows, r, f'groups.{g}.{field}'), unit)}{mark}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class=cmp>{head}{''.join(body)}</table>"


EXTRA_CSS = """
table.cmp td{vertical-align:top} .d{font-size:.85em;color:#444} .v{font-size:.8em}
.sig{color:#b00020;font-weight:600} .noise{color:#777} .same{color:#777} figure{margin:1em 0}
"""


def comparison_page(config: Any, runs: Runs, rows: Rows, stats: Rows,
                    metrics: Sequence[Metric], seeds: Sequence[int], folders: Mapping[str, str],
                    linked: bool = True) -> str:
    """The comparison report (see the module docstring)."""
    labels = list(runs)
    quote = config.market.quote.name
    title = f"{config.name}: margin regime comparison"
    seeds_text = (f"seed {seeds[0]}" if len(seeds) == 1 else
                  f"{len(seeds)} paired seeds ({seeds[0]}–{seeds[-1]}): seed k is the same price path and the same "
                  f"traders under every regime")
    links = " · ".join(f'<a href="{html.escape(folders[r])}/report.html">{html.escape(r)}</a>' for r in labels) \
        if linked else ""
    who_png, who_source = _fig_who_paid(config, runs, rows)
    margin_png, has_reference = _fig_margin(config, runs)

    def figure(fid: str, heading: str, note: str, png: str) -> str:
        img = png.replace('alt="figure"', f'alt="{fid}"')
        return f"<h2>{html.escape(heading)}</h2><p class=muted>{note}</p><figure id={fid}>{img}</figure>"

    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=muted>{html.escape(getattr(config, 'description', '') or '')}</p>",
        f"<p>{html.escape(seeds_text)}; money in {html.escape(quote)}. Each cell: the mean over seeds"
        + (" ± its standard deviation" if len(seeds) > 1 else "")
        + (f"; under the other regimes, Δ = the mean paired difference against <b>{html.escape(labels[0])}</b> "
           f"and its 95% confidence interval, with whether it is distinguishable from seed noise.</p>"
           if len(seeds) > 1 else
           f"; under the other regimes, Δ = the difference against <b>{html.escape(labels[0])}</b> on the same "
           "seed. One seed gives no interval and no verdict on seed noise: run <code>clearsim compare --seeds N"
           "</code> for them.</p>"),
        f"<p>Each regime's own run report (first seed): {links}</p>" if links else "",
        "<h2>Headline</h2>", _headline_table(stats, metrics, labels, quote, len(seeds)),
        "<h2>Who gets capital relief, who pays for it</h2>"
        "<p class=muted>Per population group, mean over samples and seeds. IM / gross: summed IM over summed "
        "gross notional of the group's accounts (option notional is premium at mark).</p>",
        _group_table(runs, rows, stats, labels),
        figure("fig-prices", "Price paths", "True path, oracle index and each regime's venue mid, per "
               "underlying; shaded: the scripted shocks (darker: the move; lighter: the recovery).",
               _fig_prices(config, runs)),
        figure("fig-liquidated", "Liquidated notional over time", "Cumulative notional of liquidation steps, "
               "first seed.", _fig_liquidated(config, runs)),
        figure("fig-who-paid", "Who paid", f"Losses by layer per regime ({html.escape(who_source)}).", who_png),
        figure("fig-cascades", "Cascades", "Cascade size (liquidations per tree of distress spells) and the "
               "spells' generations, first seed.", _fig_cascades(config, runs)),
        figure("fig-margin", "Margin in the measurement window", "Total IM over all trader accounts and the "
               "population's IM / gross notional"
               + (" and the reference portfolio's margin rate" if has_reference else
                  " (these results hold no reference-portfolio series)")
               + ", first seed.", margin_png),
        figure("fig-leverage", "Leverage held per trader group", "Gross / equity and IM / gross per group "
               "under each regime (groups holding positions).", _fig_leverage(config, runs, rows)),
        figure("fig-counterfactual", "Counterfactual amplification", "Each regime against its no-feedback twin "
               "(liquidations absorbed off the book).", _fig_counterfactual(config, runs, rows)),
        figure("fig-intervals", "Multi-seed intervals" if len(seeds) > 1 else "Differences (one seed)",
               f"Paired difference against {html.escape(labels[0])}: "
               + ("dot = mean, bar = 95% confidence interval; a bar clear of the zero line is distinguishable from "
                  "seed noise." if len(seeds) > 1 else "dot = the one seed's difference, no interval (run with "
                  "--seeds N for one)."), _fig_intervals(stats, metrics, labels, quote)),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}{EXTRA_CSS}</style></head><body>\n"
            + "\n".join(s for s in sections if s) + "\n</body></html>\n")
