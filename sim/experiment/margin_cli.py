"""``clearsim margin``: what margin would a portfolio need, under one regime or every regime.

Positions come from a portfolio file (:class:`sim.experiment.portfolio_file.PortfolioFile`, see
configs/portfolios/) and/or the command line (``--position BTC-PERP=+2``). For each account and
regime it shows IM and MM, both as a share of the account's gross notional, totals over the
accounts, the liquidation price per underlying (where equity meets MM, moving that underlying
alone), the worst scenario of the scenario regimes (SPAN's 16-scenario risk array, the portfolio
regime's worst move and vol state), and what-if shocks (``--shock BTC=-20%,vol=+30%``).

Equity: an account's ``collateral`` (quote currency) when the file or ``--collateral`` gives it,
otherwise exactly its IM under each regime (the least it could have opened with); equity moves
with the positions' P&L under a shock. Everything is validated before anything is computed; every
error names its field. ``margin_command`` returns the exit code: 0 ok, 2 invalid input.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from sim.experiment.errors import ConfigError
from clearing.margin.config import REGIME_NAMES
from sim.experiment.margin_calculator import compute, rounded
from sim.experiment.portfolio import VAR_REGIMES, build_portfolio, parse_shock
from sim.market.market_config import DEFAULT_QUOTE



# ------------------------------------------------------------------------------------- printing
def _liq_cell(price: float | None, spot: float) -> str:
    from sim.experiment.fmt import DASH, number, percent

    if price is None:
        return DASH
    return f"{number(price)} ({'+' if price >= spot else ''}{percent(price / spot - 1.0)})"


def _titled(console: Any, heading: str) -> Any:
    """A table whose heading is printed as its own line (a rich title wraps to the table's width)."""
    from rich.table import Table

    console.print(f"\n[bold]{heading}[/bold]", no_wrap=True, overflow="ellipsis")
    return Table()


def _move(fraction: float) -> str:
    from sim.experiment.fmt import percent

    return ("+" if fraction > 0 else "") + percent(fraction, 0)


def _print_rich(result: dict[str, Any], breakdown: bool = False, quote: str = DEFAULT_QUOTE) -> None:
    """Per account: regimes x (IM, MM, shares), liquidation prices; totals; scenarios; shocks.
    Every table fits 80 columns without wrapping a number."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from sim.experiment.fmt import DASH, cell, number, percent

    console = Console(soft_wrap=False)
    labels = list(result["regimes"])
    names = result["accounts"]
    title = escape(result["portfolio"]) if result["portfolio"] else "portfolio"
    console.print(f"[bold]Margin: {title}[/bold]  ({quote})")
    console.print("IM % and MM %: shares of gross notional (options at their underlying's notional)")

    def margin_table(caption: str, rows: list[tuple[str, dict]]) -> Table:
        t = _titled(console, caption)
        t.add_column("regime", no_wrap=True)
        for head in ("IM", "MM", "IM %", "MM %"):
            t.add_column(head, justify="right", no_wrap=True)
        for label, v in rows:
            t.add_row(escape(label), number(v["im"], 2), number(v["mm"], 2), percent(v["im_share"]),
                      percent(v["mm_share"]))
        return t

    for name in names:
        caption = f"{escape(name)} · notional {number(result['notional'][name], 2)}"
        console.print(margin_table(caption, [(lab, result["regimes"][lab]["accounts"][name]) for lab in labels]))
        liq = _titled(console, f"{escape(name)} · liquidation price (equity = MM)")
        liq.add_column("regime", no_wrap=True)
        liq.add_column("und.", no_wrap=True)
        liq.add_column("equity", justify="right", no_wrap=True)
        liq.add_column("price down", justify="right", no_wrap=True)
        liq.add_column("price up", justify="right", no_wrap=True)
        for lab in labels:
            acc = result["regimes"][lab]["accounts"][name]
            for u, sides in acc["liquidation"].items():
                spot = result["underlyings"][u]
                if acc["below_mm"]:
                    liq.add_row(escape(lab), escape(u), number(acc["equity"], 0), "below MM now", "below MM now")
                    continue
                if sides["down"] is None and sides["up"] is None:
                    continue
                liq.add_row(escape(lab), escape(u), number(acc["equity"], 0), _liq_cell(sides["down"], spot),
                            _liq_cell(sides["up"], spot))
        if liq.row_count:
            console.print(liq)
    if len(names) > 1:
        console.print(margin_table(f"all {len(names)} accounts · notional {number(sum(result['notional'].values()), 2)}",
                                   [(lab, result["regimes"][lab]["total"]) for lab in labels]))
    worst = _titled(console, "worst scenario (P&L of the positions, profit > 0)")
    for head, right in (("regime", False), ("account", False), ("und.", False), ("scenario", False), ("P&L", True)):
        worst.add_column(head, justify="right" if right else "left", no_wrap=True)
    arrays: list[tuple[str, str, str, list[str], list[float]]] = []
    for lab in labels:
        entry = result["regimes"][lab]
        for name, per in entry.get("worst_scenario", {}).items():
            for u, w in per.items():
                what = f"{w['driver']} " if "driver" in w else ""
                worst.add_row(escape(lab), escape(name), escape(u), f"{what}{_move(w['move'])}, vol {w['vol']}",
                              number(w["pnl"], 2))
        if "risk_array" in entry:
            scen = entry["risk_array"]["scenarios"]
            for name, per in entry["risk_array"]["accounts"].items():
                for u, values in per.items():
                    k = int(np.argmin(values))
                    worst.add_row(escape(lab), escape(name), escape(u), f"#{k + 1} {scen[k]}", number(values[k], 2))
                    arrays.append((lab, name, u, scen, values))
    if worst.row_count:
        console.print(worst)
    if breakdown:
        for lab, name, u, scen, values in arrays:
            k_worst = int(np.argmin(values))
            t = _titled(console, f"{escape(lab)} · {escape(name)} · risk array {escape(u)} (P&L)")
            t.add_column("#", justify="right", no_wrap=True)
            t.add_column("scenario", no_wrap=True)
            t.add_column("P&L", justify="right", no_wrap=True)
            for k, (sc, v) in enumerate(zip(scen, values)):
                t.add_row(str(k + 1), sc, number(v, 2) + (" ◀ worst" if k == k_worst else ""))
            console.print(t)
    for shock in result["shocks"]:
        for name in names:
            t = _titled(console, f"what if {escape(shock['label'])} · {escape(name)}")
            t.add_column("regime", no_wrap=True)
            for head in ("IM", "MM", "equity", "over MM"):
                t.add_column(head, justify="right", no_wrap=True)
            for lab, accs in shock["regimes"].items():
                v = accs[name]
                t.add_row(escape(lab), number(v["im"], 2), number(v["mm"], 2), number(v["equity"], 2),
                          ("[red]" if v["excess"] < 0 else "") + number(v["excess"], 2) + ("[/red]" if v["excess"] < 0 else ""))
            console.print(t)
    if breakdown:
        for name in names:
            t = _titled(console, f"{escape(name)} · breakdown")
            t.add_column("regime", no_wrap=True)
            t.add_column("component", no_wrap=True)
            t.add_column("value", justify="right", no_wrap=True)
            for lab in labels:
                for k, (comp, v) in enumerate(result["regimes"][lab]["accounts"][name]["breakdown"].items()):
                    t.add_row(escape(lab) if k == 0 else "", escape(comp), cell(v) if v is not None else DASH)
                t.add_section()
            console.print(t)
    for label, why in result["skipped"].items():
        console.print(f"[yellow]skipped {escape(label)}: {escape(why)}[/yellow]")


def margin_command(portfolio_path: str | None, regime: str | None, as_json: bool, *, positions: Sequence[str] = (),
                   prices: Sequence[str] = (), vols: Sequence[str] = (), shocks: Sequence[str] = (),
                   quiet: bool = False, collateral: float | None = None, breakdown: bool | None = None) -> int:
    """Print the margin of every account (see the module docstring); 0 ok, 2 bad input."""
    from sim.experiment.errors import error_line

    try:
        pf = build_portfolio(portfolio_path, list(positions), list(prices), list(vols), collateral)
        source = portfolio_path or "positions"
        if regime is not None and regime not in pf.regimes and regime not in REGIME_NAMES:
            known = sorted(set(REGIME_NAMES) | set(pf.regimes))
            raise ConfigError(f"unknown regime {regime!r}; choose one of: {', '.join(known)}")
        var_labels = VAR_REGIMES + tuple(k for k, c in pf.regimes.items() if c.regime in VAR_REGIMES)
        if regime is not None and regime in var_labels and pf.history is None:
            raise ConfigError(f"regime {regime!r} needs a price history: add a 'history' section to {source}")
        parsed = [parse_shock(s) for s in shocks]
        result = compute(pf, regime, parsed)
    except ConfigError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return 2
    except (ValueError, KeyError) as exc:  # a regime refusing this book (e.g. a missing risk parameter)
        print(error_line(str(exc)), file=sys.stderr)
        return 2
    if as_json:
        from sim.experiment.io import dump_json

        sys.stdout.write(dump_json(rounded(result)))
    elif not quiet:
        _print_rich(result, breakdown=regime is not None if breakdown is None else breakdown)
    return 0
