"""The reverse stress test's HTML report: the breaking point per regime with its band over seeds,
and how the criterion and the headline measures grew along the scale (self-contained)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure

from sim.experiment.compare import metric_of
from sim.experiment.compare_report import unit_header
from sim.experiment.fmt import axis, quantity
from sim.experiment.report import _page, _png, fmt


def _heading(key: str, quote: str) -> str:
    """A summary key as a person reads it: its label and unit (``sim.experiment.compare.metric_of``)."""
    m = metric_of(key)
    unit = unit_header(m.unit, quote)
    return f"{m.label} ({unit})" if unit else m.label


def _table(summary: Mapping[str, Any]) -> str:
    head = ("<tr><th>regime</th><th>breaking scale (median)</th><th>band over seeds</th><th>mean interval</th>"
            "<th>min</th><th>max</th><th>seeds bracketed</th><th>held</th><th>broke at low</th><th>errors</th>"
            "<th>stress at the breaking point</th></tr>")
    rows = []
    for label, r in summary["regimes"].items():
        b = r["breaking_scale"]
        band = "–" if b["band"] is None else f"{fmt(b['band'][0])} – {fmt(b['band'][1])}"
        mean_iv = "–" if b["mean_interval"] is None else f"{fmt(b['mean_interval'][0])} – {fmt(b['mean_interval'][1])}"
        stress = r["stress_at_breaking_point"]
        stress_txt = "–" if stress is None else "<br>".join(f"{html.escape(k)} = {fmt(v)}" for k, v in stress.items())
        rows.append(f"<tr><th>{html.escape(label)}</th><td class=n>{fmt(b['median'])}</td><td class=n>{band}</td>"
                    f"<td class=n>{mean_iv}</td><td class=n>{fmt(b['min'])}</td><td class=n>{fmt(b['max'])}</td>"
                    f"<td class=n>{b['seeds']}</td><td class=n>{r['held']}</td><td class=n>{r['broken_at_low']}</td>"
                    f"<td class=n>{r['errors']}</td><td>{stress_txt}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _fig_criterion(summary: Mapping[str, Any], rows: list[dict[str, Any]], key: str, threshold: float,
                   quote: str) -> str:
    fig = Figure(figsize=(10, 4))
    ax = fig.add_subplot()
    for k, label in enumerate(summary["regimes"]):
        colour = f"C{k}"
        # runs without a value for the criterion are left out, not drawn at 0
        pts = sorted((r["point"]["scale"], r["metrics"][key]) for r in rows
                     if r["point"]["regime"] == label and r["status"] == "ok" and r["metrics"].get(key) is not None)
        if pts:
            x, y = zip(*pts)
            ax.scatter(x, y, s=12, color=colour, alpha=0.6)
        prof = summary["regimes"][label]["profile"]
        xs = [p["scale"] for p in prof if p.get(key) is not None]
        ys = [p[key] for p in prof if p.get(key) is not None]
        ax.plot(xs, ys, color=colour, label=f"{label} (median of the scan)")
        b = summary["regimes"][label]["breaking_scale"]
        if b["band"] is not None:
            ax.axvspan(b["band"][0], b["band"][1], color=colour, alpha=0.12)
            ax.axvline(b["median"], color=colour, linestyle=":")
    ax.axhline(threshold, color="#d62728", linestyle="--", label="threshold")
    ax.set_xlabel("stress scale")
    ax.set_ylabel(_heading(key, quote))
    unit = metric_of(key).unit
    axis(ax, "y", fmt=lambda v: quantity(v, unit))  # ticks in the measure's own unit, as the tables
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def _profiles(summary: Mapping[str, Any], quote: str) -> str:
    out = []
    for label, r in summary["regimes"].items():
        prof = r["profile"]
        keys = [k for k in prof[0] if k not in ("scale", "broken")] if prof else []
        # the measures that moved: one never computed (null) or zero all along says nothing here
        keys = [k for k in keys if any(p.get(k) not in (None, 0.0) for p in prof)][:10]
        units = {k: metric_of(k).unit for k in keys}
        head = ("<tr><th>scale</th><th>seeds broken</th>"
                + "".join(f"<th>{html.escape(_heading(k, quote))}</th>" for k in keys) + "</tr>")
        body = "".join("<tr>" + f"<td class=n>{fmt(p['scale'])}</td><td class=n>{p['broken']}</td>"
                       + "".join(f"<td class=n>{quantity(p.get(k), units[k])}</td>" for k in keys) + "</tr>"
                       for p in prof)
        out.append(f"<h3>{html.escape(label)}</h3><table>{head}{body}</table>")
    return "".join(out)


def reverse_stress_report(cfg: Any, summary: Mapping[str, Any], rows: list[dict[str, Any]], key: str,
                          quote: str) -> str:
    """``quote``: the episodes' quote currency, the unit of their money figures."""
    from sim.experiment.reverse_stress_config import parse_criterion

    _, op, threshold = parse_criterion(cfg.criterion)
    stress = ", ".join(f"{html.escape(k)}: {fmt(a)} → {fmt(b)}" for k, (a, b) in cfg.stress.items())
    body = [f"<h1>Reverse stress test: {html.escape(cfg.name)}</h1>",
            f"<p class=muted>{html.escape(cfg.description)}</p>" if cfg.description else "",
            f"<p>Breaks when <b>{html.escape(_heading(key, quote))} {html.escape(op)} "
            f"{quantity(threshold, metric_of(key).unit)}</b> (<code>{html.escape(cfg.criterion)}</code>). "
            f"Scale 0 → 1 moves {stress}; searched over "
            f"[{fmt(cfg.scale.low)}, {fmt(cfg.scale.high)}] to a tolerance of {fmt(cfg.tolerance)}; "
            f"{len(summary['seeds'])} seed(s), {summary['episodes']} episodes. The band is the "
            f"{100 * cfg.confidence:g}% range of the seeds' breaking points.</p>",
            "<h2>Breaking point by regime</h2>", _table(summary),
            "<h2>The criterion along the scale</h2>", _fig_criterion(summary, rows, key, threshold, quote),
            "<h2>Measures along the scale (median over seeds)</h2>", _profiles(summary, quote)]
    return _page(f"reverse stress {cfg.name}", "\n".join(body))


__all__ = ["reverse_stress_report"]
