"""The backtest's HTML report: a table per regime, coverage by regime, exceedances over time and
each plotted portfolio's requirement against its realised loss (self-contained, opens offline)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from sim.experiment.fmt import axis, quantity
from sim.experiment.report import _page, _png, fmt

if TYPE_CHECKING:
    from sim.experiment.backtest.config import BacktestConfig
    from sim.experiment.backtest.engine import RegimeBacktest

# (summary key, header): the rates, rejections and zones are over the tested portfolios (their
# denominators are in the headers), the untested beside them
COLUMNS = (("regime", "regime"), ("scale", "scale"), ("portfolios", "portfolios"), ("tested", "tested"),
           ("untested", "untested"), ("runs", "runs per portfolio"), ("exceedances", "exceedances"),
           ("exceedance_rate", "exceedance rate (of tested × runs)"), ("coverage", "coverage"),
           ("kupiec_rejected", "Kupiec rejects (of tested)"),
           ("christoffersen_rejected", "Christoffersen rejects (of tested)"),
           ("zones", "green / yellow / red (tested)"), ("largest_shortfall", "largest shortfall ({quote})"),
           ("median_peak_to_trough", "median peak / trough"))


def _cell(key: str, v: Any) -> str:
    """The escaped HTML text of one figure of the regime table."""
    if key == "zones":
        return html.escape(f"{v['green']:,} / {v['yellow']:,} / {v['red']:,}")
    if key == "exceedance_rate":
        return html.escape(quantity(v, "fraction"))  # a share of runs in %, however small: never 1e-05
    return fmt(v)


def _regime_table(summary: Mapping[str, Any]) -> str:
    quote = summary["quote_currency"]
    head = ("<tr><th>label</th>" + "".join(f"<th>{html.escape(t.format(quote=quote))}</th>" for _, t in COLUMNS)
            + "</tr>")
    rows = []
    for label, r in summary["regimes"].items():
        cells = "".join(f"<td class=n>{_cell(key, r.get(key))}</td>" for key, _ in COLUMNS)
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _fig_coverage(summary: Mapping[str, Any]) -> str:
    labels = list(summary["regimes"])
    rates = [summary["regimes"][k]["exceedance_rate"] or 0.0 for k in labels]
    fig = Figure(figsize=(8, 0.5 + 0.45 * max(len(labels), 2)))
    ax = fig.add_subplot()
    ax.barh(labels, [100 * r for r in rates], color="#1f77b4")
    ax.axvline(100 * (1 - summary["coverage"]), color="#d62728", linestyle="--",
               label=f"expected {100 * (1 - summary['coverage']):.2g}%")
    ax.set_xlabel("exceedances, % of margin runs of the tested portfolios")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _png(fig)


def _fig_over_time(results: Mapping[str, RegimeBacktest], runs: np.ndarray, summary: Mapping[str, Any]) -> str:
    fig = Figure(figsize=(10, 3.6))
    ax = fig.add_subplot()
    for label, res in results.items():
        # per tested portfolio, as the headline rate: an untested book never exceeds
        tested = summary["regimes"][label]["tested"]
        ax.plot(runs, np.cumsum(res.exceeding) / max(tested, 1), label=label, linewidth=1.2)
    ax.set_xlabel("day of the path")
    ax.set_ylabel("cumulative exceedances per tested portfolio")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def _fig_portfolio(results: Mapping[str, RegimeBacktest], runs: np.ndarray, j: int, name: str, quote: str) -> str:
    fig = Figure(figsize=(10, 3.4))
    ax = fig.add_subplot()
    first = next(iter(results.values()))
    ax.plot(runs, first.shown_loss[:, j], color="#444", linewidth=0.7, label="realised loss over the MPOR")
    for label, res in results.items():
        ax.plot(runs, res.shown_margin[:, j], linewidth=1.1, label=f"{label} requirement")
        hit = res.shown_loss[:, j] > res.shown_margin[:, j]
        ax.scatter(runs[hit], res.shown_loss[hit, j], s=10, marker="x")
    ax.set_title(name, fontsize="medium")
    ax.set_xlabel("day of the path")
    ax.set_ylabel(f"requirement, loss ({quote})")
    axis(ax, "y")  # K / M ticks, not matplotlib's 1e6 offset
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    return _png(fig)


def backtest_report(cfg: BacktestConfig, summary: Mapping[str, Any], results: Mapping[str, RegimeBacktest],
                    names: list[str], runs: np.ndarray, shown: np.ndarray) -> str:
    body = [f"<h1>Margin backtest: {html.escape(cfg.name)}</h1>",
            f"<p class=muted>{html.escape(cfg.description)}</p>" if cfg.description else "",
            (f"<p>{summary['portfolios']:,} portfolios, {summary['runs']:,} margin runs from day "
             f"{summary['first_run_day']}, loss realised over {cfg.horizon_days} day(s), requirement "
             f"{cfg.requirement.upper()}, tested at {100 * cfg.coverage:g}% coverage, significance "
             f"{cfg.significance:g}. An exceedance is a realised loss above the requirement. Money is in "
             f"{html.escape(summary['quote_currency'])}.</p>"),
            ("<p>A portfolio with no requirement and no profit or loss on any margin run (a flat book) is "
             "not a test of the model: it is counted as <i>untested</i>, and the exceedance rate "
             "(exceedances / (tested portfolios × runs)), coverage, rejections and zones are over the "
             "tested portfolios only.</p>"),
            "<h2>Regimes</h2>", _regime_table(summary),
            "<h2>Coverage by regime</h2>", _fig_coverage(summary),
            "<h2>Exceedances over time</h2>", _fig_over_time(results, runs, summary),
            f"<h2>Requirement against realised loss ({html.escape(summary['quote_currency'])})</h2>"]
    body += [_fig_portfolio(results, runs, j, names[k], summary["quote_currency"]) for j, k in enumerate(shown)]
    return _page(f"backtest {cfg.name}", "\n".join(body))
