"""Self-contained HTML reports: matplotlib figures (Agg, no pyplot state) embedded as base64 PNG.

``episode_report(config, tables, summary)`` -- one run: price vs oracle per underlying, margin
totals vs equity, liquidations over time by policy, the cascade tree, insurance fund and bad debt,
and the summary metrics. The regime comparison's page is ``sim.experiment.compare_report``.
No external asset is referenced: the file opens offline.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sim.experiment.fmt import axis as human_axis
from sim.experiment.headline import rows as headline_rows
from sim.experiment.metrics.columns import POLICIES, Tables, column_of
from sim.experiment.metrics.price import mid_price
from sim.experiment.metrics import flatten
from sim.experiment.spells import liquidation_spells, spell_generations

POLICY_COLOURS = {"book": "#1f77b4", "backstop": "#2ca02c", "auction": "#9467bd", "takeover": "#ff7f0e",
                  "adl": "#d62728"}
OUTCOME_COLOURS = {"restored_by_cancel": "#8c8c8c", "restored": "#2ca02c", "closed": "#1f77b4",
                   "bankrupt": "#d62728", "open": "#ff7f0e"}

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0} td,th{border:1px solid #ddd;padding:3px 8px}
th{background:#f4f4f4;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%} .muted{color:#777;font-size:.9em} details{margin:.8em 0}
"""


# ------------------------------------------------------------------------------------ helpers
def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    return '<img alt="figure" src="data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode("ascii") + '">'


def _time_unit(duration: float) -> tuple[float, str]:
    if duration >= 2 * 86_400:
        return 86_400.0, "days"
    if duration >= 2 * 3_600:
        return 3_600.0, "hours"
    if duration >= 120:
        return 60.0, "minutes"
    return 1.0, "seconds"


def fmt(value: Any) -> str:
    """A number for a table cell (``sim.experiment.fmt.cell``: thousands separators, "—" for undefined)."""
    from sim.experiment.fmt import cell

    if isinstance(value, (list, dict)):
        return html.escape(json.dumps(value))
    return html.escape(cell(value))


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    # a seed is a name, not a quantity: no thousands separators (it reads as the config writes it)
    body = "".join(f"<tr><th>{html.escape(k)}</th><td class=n>"
                   f"{html.escape(str(v)) if k.endswith('.seed') and isinstance(v, int) else fmt(v)}</td></tr>"
                   for k, v in rows)
    return f"<table>{body}</table>"


# ------------------------------------------------------------------------------------ figures
def _fig_prices(config: Any, tables: Tables) -> str:
    names = list(config.paths.names())
    instruments = list(config.market.instruments)
    dur = float(config.duration)
    scale, unit = _time_unit(dur)
    n = max(1, len(names))
    fig = Figure(figsize=(10, 2.8 * n), layout="constrained")
    o_u, o_t = column_of(tables, "oracle", "underlying"), column_of(tables, "oracle", "time")
    o_i, o_true = column_of(tables, "oracle", "index"), column_of(tables, "oracle", "true")
    m_ins, m_t = column_of(tables, "market", "instrument"), column_of(tables, "market", "time")
    bid, ask = column_of(tables, "market", "best_bid"), column_of(tables, "market", "best_ask")
    for u, name in enumerate(names):
        ax = fig.add_subplot(n, 1, u + 1)
        sel = o_u == u
        if sel.any():
            ax.plot(o_t[sel] / scale, o_true[sel], color="black", lw=1.2, label="true path")
            ax.plot(o_t[sel] / scale, o_i[sel], color="#1f77b4", lw=1.0, ls="--", drawstyle="steps-post",
                    label="published index")
        venue_colours = iter(("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"))
        for k, ins in enumerate(instruments):
            if ins.underlying != name or ins.kind == "option":
                continue
            s = m_ins == k
            b, a = bid[s].astype(float), ask[s].astype(float)
            mid = mid_price(b, a) * ins.tick_size  # one side stands in when the other is empty (as in the metrics)
            ax.plot(m_t[s] / scale, mid, lw=1.0, alpha=0.9, color=next(venue_colours, None),
                    label=f"venue mid {ins.symbol}")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("price")
        human_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if fig.axes:
        fig.axes[-1].set_xlabel(unit)
    return _png(fig)


def _fig_margin(config: Any, tables: Tables) -> str:
    scale_t, unit = _time_unit(float(config.duration))
    money = 10 ** int(config.market.quote.decimals)
    t = column_of(tables, "margin_totals", "time")
    fig = Figure(figsize=(10, 5.0), layout="constrained")
    ax, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    if t.size:
        eq = column_of(tables, "margin_totals", "equity").astype(float)
        im = column_of(tables, "margin_totals", "im").astype(float)
        mm = column_of(tables, "margin_totals", "mm").astype(float)
        ax.plot(t / scale_t, eq / money, color="black", lw=1.1, drawstyle="steps-post", label="total equity")
        ax.plot(t / scale_t, im / money, color="#d62728", lw=1.1, drawstyle="steps-post", label="total IM")
        ax.plot(t / scale_t, mm / money, color="#ff7f0e", lw=1.1, drawstyle="steps-post", label="total MM")
        if (np.concatenate([eq, im, mm]) > 0).all():
            ax.set_yscale("log")
        with np.errstate(divide="ignore", invalid="ignore"):
            ax2.plot(t / scale_t, np.where(eq > 0, im / eq, np.nan), color="#d62728", lw=1.0,
                     drawstyle="steps-post", label="IM / equity")
            ax2.plot(t / scale_t, np.where(eq > 0, mm / eq, np.nan), color="#ff7f0e", lw=1.0,
                     drawstyle="steps-post", label="MM / equity")
        ax.legend(fontsize=8, loc="best")
        ax2.legend(fontsize=8, loc="best")
    ax.set_ylabel(config.market.quote.name)
    human_axis(ax)
    ax2.set_ylabel("utilisation")
    ax2.set_xlabel(unit)
    for a in (ax, ax2):
        a.grid(alpha=0.3)
    return _png(fig)


def _fig_liquidations(config: Any, tables: Tables) -> str:
    dur = float(config.duration)
    scale_t, unit = _time_unit(dur)
    money = 10 ** int(config.market.quote.decimals)
    t = column_of(tables, "liquidation_steps", "time").astype(float)
    pol = column_of(tables, "liquidation_steps", "policy").astype(str)
    notional = column_of(tables, "liquidation_steps", "notional").astype(float) / money
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    ax1, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    bins = np.linspace(0.0, dur, 61)
    width = (bins[1] - bins[0]) / scale_t
    left = bins[:-1] / scale_t
    bottom_c, bottom_n = np.zeros(60), np.zeros(60)
    for p in sorted(set(POLICIES) | set(pol.tolist()), key=lambda x: (x not in POLICIES, x)):
        m = pol == p
        if not m.any():
            continue
        c, _ = np.histogram(t[m], bins=bins)
        v, _ = np.histogram(t[m], bins=bins, weights=notional[m])
        colour = POLICY_COLOURS.get(p)
        ax1.bar(left, c, width=width, bottom=bottom_c, align="edge", color=colour, label=p)
        ax2.bar(left, v, width=width, bottom=bottom_n, align="edge", color=colour, label=p)
        bottom_c += c
        bottom_n += v
    ax1.set_ylabel("steps")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 2.5 steps
    ax2.set_ylabel(f"notional ({config.market.quote.name})")
    human_axis(ax2)
    ax2.set_xlabel(unit)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, dur / scale_t)
    if t.size:
        ax1.legend(fontsize=8, loc="upper right")
    else:
        ax1.text(0.5, 0.5, "no liquidations", transform=ax1.transAxes, ha="center", va="center")
    return _png(fig)


def _fig_cascades(config: Any, tables: Tables) -> str:
    scale_t, unit = _time_unit(float(config.duration))
    liq = column_of(tables, "liquidations", "liq_id").astype(np.int64)
    parent = column_of(tables, "liquidations", "parent").astype(np.int64)
    spell = column_of(tables, "liquidations", "spell", np.int64)
    t = column_of(tables, "liquidations", "breach_time").astype(float) / scale_t
    outcome = column_of(tables, "liquidations", "outcome").astype(str)
    notional = column_of(tables, "liquidations", "notional").astype(float)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    if liq.size:
        # the headline's cascades: trees of distress spells (``sim.experiment.spells``); each
        # liquidation sits at its spell's generation, and an edge joins the liquidation that caused a
        # spell to the spell's first one (a spell's later re-breaches are the same account's, no edge)
        spell = liquidation_spells(liq, spell)
        gen = spell_generations(liq, parent, spell, notional).astype(float)
        pos = {int(x): k for k, x in enumerate(liq.tolist())}
        segs_x, segs_y = [], []
        for k in range(liq.size):
            j = pos.get(int(parent[k]))
            if spell[k] == liq[k] and parent[k] >= 0 and j is not None and spell[j] != spell[k]:
                segs_x += [t[j], t[k], np.nan]
                segs_y += [gen[j], gen[k], np.nan]
        if segs_x:
            ax.plot(segs_x, segs_y, color="#999999", lw=0.6, zorder=1)
        size = 12 + 120 * np.sqrt(notional / notional.max()) if notional.max() > 0 else np.full(liq.size, 12.0)
        for o in sorted(set(outcome.tolist())):
            m = outcome == o
            ax.scatter(t[m], gen[m], s=size[m], color=OUTCOME_COLOURS.get(o, "#17becf"), alpha=0.75, label=o,
                       zorder=2, edgecolors="none")
        ax.legend(fontsize=8, loc="upper right", title="outcome", title_fontsize=8)
        ax.set_ylim(max(1.0, gen.max()) + 0.5, -0.5)  # generation 0 (the exogenous roots) on top
    else:
        ax.text(0.5, 0.5, "no liquidations", transform=ax.transAxes, ha="center", va="center")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("generation (distress spells)")
    ax.set_xlabel(f"breach time ({unit})")
    ax.grid(alpha=0.3)
    return _png(fig)


def _fig_fund(config: Any, tables: Tables) -> str:
    scale_t, unit = _time_unit(float(config.duration))
    money = 10 ** int(config.market.quote.decimals)
    t = column_of(tables, "fund", "time")
    fig = Figure(figsize=(10, 3.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    if t.size:
        ax.plot(t / scale_t, column_of(tables, "fund", "insurance_fund") / money, color="#2ca02c", lw=1.2,
                label="insurance fund")
        ax.plot(t / scale_t, column_of(tables, "fund", "bad_debt") / money, color="#d62728", lw=1.2, label="bad debt")
        ax.legend(fontsize=8, loc="best")
    ax.set_ylabel(config.market.quote.name)
    human_axis(ax)
    ax.set_xlabel(unit)
    ax.grid(alpha=0.3)
    return _png(fig)


def _fig_rates(config: Any, tables: Tables, start: float | None) -> str:
    scale_t, unit = _time_unit(float(config.duration))
    fig = Figure(figsize=(10, 3.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for table, label, colour in (("margin_totals", "population IM / gross", "#d62728"),
                                 ("reference_margin", "reference portfolio IM / gross", "#1f77b4")):
        t = column_of(tables, table, "time").astype(float)
        if t.size:
            im, gross = column_of(tables, table, "im").astype(float), column_of(tables, table, "gross").astype(float)
            with np.errstate(divide="ignore", invalid="ignore"):
                ax.plot(t / scale_t, np.where(gross > 0, im / gross, np.nan), color=colour, lw=1.0,
                        drawstyle="steps-post", label=label)
    if start is not None:
        ax.axvline(start / scale_t, color="black", ls="--", lw=0.8)
    if ax.lines:
        ax.legend(fontsize=8, loc="best")
    ax.set_ylabel("IM / gross notional")
    ax.set_xlabel(unit)
    ax.grid(alpha=0.3)
    return _png(fig)


def _procyclicality_table(flat: Mapping[str, Any]) -> str:
    names = (("population_im", "total IM"), ("population_rate", "population IM / gross"),
             ("reference_rate", "reference portfolio IM / gross"))
    cols = (("peak_to_trough_ratio", "peak / trough"), ("max_increase", "largest increase"),
            ("max_increase_time", "at (s)"), ("max_increase_relative", "largest relative increase"),
            ("max_increase_relative_time", "at (s)"))
    head = "<tr><th>series</th>" + "".join(f"<th>{html.escape(c)}</th>" for _, c in cols) + "</tr>"
    body = "".join("<tr><th>" + html.escape(label) + "</th>"
                   + "".join(f"<td class=n>{fmt(flat.get(f'margin.{key}.{c}'))}</td>" for c, _ in cols) + "</tr>"
                   for key, label in names)
    return f"<table>{head}{body}</table>"


def _who_paid_table(flat: Mapping[str, Any], quote: str) -> str:
    from sim.experiment.who_paid import LAYERS

    rows = "".join(f"<tr><th>{html.escape(layer.replace('_', ' '))}</th><td>{html.escape(whose)}</td>"
                   f"<td class=n>{fmt(flat.get(f'losses.who_paid.{layer}'))}</td></tr>"
                   for layer, whose in LAYERS.items())
    total = (f"<tr><th>borne by others</th><td>others</td><td class=n><b>{fmt(flat.get('losses.borne_by_others'))}"
             "</b></td></tr>")
    vault = ("<p class=muted>Backstop vault: capital " + fmt(flat.get("losses.backstop_vault.capital"))
             + ", P&amp;L at the end " + fmt(flat.get("losses.backstop_vault.pnl_final"))
             + ", worst " + fmt(flat.get("losses.backstop_vault.pnl_min"))
             + "; insurance fund received " + fmt(flat.get("losses.insurance_fund_received"))
             + ", net " + fmt(flat.get("losses.insurance_fund_net")) + f" ({html.escape(quote)}). The fund's payouts"
             " are counted as the penalties it received first (liquidation penalties), then as its own capital"
             " (insurance fund): each amount once.</p>")
    return (f"<table><tr><th>layer</th><th>whose money</th><th>{html.escape(quote)}</th></tr>{rows}{total}</table>"
            + vault)


# ------------------------------------------------------------------------------------ pages
def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def episode_report(config: Any, tables: Mapping[str, Mapping[str, np.ndarray]], summary: Mapping[str, Any]) -> str:
    """The HTML report of one run."""
    flat = flatten(summary)
    quote = config.market.quote.name
    head = (f"<h1>{html.escape(str(config.name))}</h1>"
            f"<p class=muted>seed {config.seed} · {float(config.duration):,.0f} simulated seconds · margin regime "
            f"<b>{html.escape(str(getattr(config.margin, 'regime', '?')))}</b> · money in {html.escape(quote)}</p>")
    if getattr(config, "description", ""):
        head += f"<p>{html.escape(config.description)}</p>"
    headline = _kv_table(headline_rows(summary, quote))  # labels with units, values formatted
    if not config.outputs.counterfactual:  # say why the twin's rows are dashes
        headline += ("<p class=muted>— against the no-feedback twin: not run (<code>outputs.counterfactual: "
                     "true</code> runs it).</p>")
    everything = _kv_table(sorted(flat.items()))
    horizon, start = flat.get("margin.horizon_seconds"), flat.get("margin.measure_from")
    sections = [
        head,
        "<h2>Summary</h2>", headline,
        "<h2>Price vs oracle</h2><p class=muted>True path, published index and venue mid, per underlying.</p>",
        _fig_prices(config, tables),
        "<h2>Margin utilisation</h2><p class=muted>Total IM and MM over all trader accounts against their total "
        "equity.</p>",
        _fig_margin(config, tables),
        "<h2>Procyclicality</h2><p class=muted>Margin rate (IM / gross notional) of the population and of the "
        f"fixed reference portfolio; figures measured from {fmt(start)} s (dashed line) over a horizon of "
        f"{fmt(horizon)} s.</p>",
        _fig_rates(config, tables, start), _procyclicality_table(flat),
        "<h2>Who paid</h2><p class=muted>The loss ledger by layer (see docs/METHODOLOGY.md, <i>Who paid</i>): what "
        "the liquidated accounts paid themselves, and what others bore.</p>", _who_paid_table(flat, quote),
        "<h2>Liquidations over time</h2><p class=muted>Liquidation steps per bin (1/60 of the episode), by policy.</p>",
        _fig_liquidations(config, tables),
        "<h2>Cascade tree</h2><p class=muted>Each dot is a liquidation (size ~ notional) at the generation of "
        "its distress spell (an account's liquidations until it is flat, bankrupt or healthy for the quiet "
        "time), as the headline counts cascades; an edge joins a spell's first liquidation to the earlier one "
        "whose price impact or loss allocation caused it.</p>",
        _fig_cascades(config, tables),
        "<h2>Insurance fund and bad debt</h2>", _fig_fund(config, tables),
        f"<details><summary>All metrics</summary>{everything}</details>",
    ]
    return _page(f"clearsim — {config.name}", "\n".join(sections))
