"""``clearsim margin <portfolio.yaml> [--regime NAME] [--json]``: margin of a portfolio file under
one regime or every regime side by side.

The file format is :class:`sim.schema.margin.PortfolioFile` (see configs/portfolios/ and
docs/METHODOLOGY.md); it is validated before anything is computed and every error names its
field path. ``margin_command`` returns the process exit code: 0 ok, 2 invalid input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from sim.schema.margin import REGIME_NAMES, PortfolioFile, parse_margin_config

VAR_REGIMES = ("var", "var_apc")


# ------------------------------------------------------------------------------------- loading
def load_portfolio(path: str | Path) -> PortfolioFile:
    """Read and validate a portfolio YAML file (raises FileNotFoundError, yaml.YAMLError,
    ValidationError)."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping")
    return PortfolioFile.model_validate(data)


def build_book(pf: PortfolioFile):
    """(table, market, positions, account names, context) from a validated portfolio file."""
    from clearing.instruments import InstrumentTable
    from clearing.margin.base import Positions
    from clearing.margin.examples import make_instrument, make_market

    instruments = [make_instrument(k, s.symbol, s.kind, s.underlying, s.contract_units, s.expiry_days,
                                   s.strike, s.call) for k, s in enumerate(pf.instruments)]
    table = InstrumentTable.from_instruments(instruments)
    prices = {u: pf.underlyings[u].price for u in table.underlyings}
    vols = {u: pf.underlyings[u].vol for u in table.underlyings}
    market = make_market(
        table, prices, vols,
        linear_marks={s.symbol: s.mark for s in pf.instruments if s.kind != "option" and s.mark is not None},
        option_vols={s.symbol: s.vol for s in pf.instruments if s.vol is not None},
        option_marks={s.symbol: s.mark for s in pf.instruments if s.kind == "option" and s.mark is not None},
    )
    index = {s.symbol: k for k, s in enumerate(pf.instruments)}
    lots = np.zeros((len(pf.accounts), len(table)))
    for a, acc in enumerate(pf.accounts):
        for sym, q in acc.positions.items():
            lots[a, index[sym]] += q
    context: dict[str, Any] = {}
    arrays = {s.symbol: s.risk_array for s in pf.instruments if s.risk_array is not None}
    if arrays:
        context["risk_arrays"] = arrays
        context["risk_array_convention"] = pf.risk_array_convention
    deltas = {s.symbol: s.delta for s in pf.instruments if s.delta is not None}
    if deltas:
        context["deltas"] = deltas
    depth = {s.symbol: {"bids": s.depth.bids, "asks": s.depth.asks} for s in pf.instruments if s.depth is not None}
    if depth:
        context["depth"] = depth
    if pf.history is not None:
        context["history"] = _history(pf, table, prices, vols)
    return table, market, Positions.of(lots), [a.name for a in pf.accounts], context


def _history(pf: PortfolioFile, table, prices: dict, vols: dict) -> np.ndarray:
    h = pf.history
    if h.prices is not None:
        return np.column_stack([np.asarray(h.prices[u], dtype=np.float64) for u in table.underlyings])
    syn = h.synthetic
    u = len(table.underlyings)
    corr = np.full((u, u), syn.correlation)
    np.fill_diagonal(corr, 1.0)
    chol = np.linalg.cholesky(corr + 1e-12 * np.eye(u))
    rng = np.random.default_rng(syn.seed)
    daily = np.array([vols[x] for x in table.underlyings]) / np.sqrt(365.0)
    steps = (rng.standard_normal((syn.days, u)) @ chol.T) * daily - 0.5 * daily**2
    path = np.vstack([np.zeros((1, u)), np.cumsum(steps, axis=0)])
    return np.exp(path - path[-1]) * np.array([prices[x] for x in table.underlyings])


def regime_configs(pf: PortfolioFile, regime: str | None) -> dict[str, Any]:
    """Label -> validated config: the named one, or every registry name (file overrides applied)
    plus any extra labelled configs in the file."""
    if regime is not None:
        if regime in pf.regimes:
            return {regime: pf.regimes[regime]}
        return {regime: parse_margin_config(regime)}
    out = {name: pf.regimes.get(name) or parse_margin_config(name) for name in REGIME_NAMES}
    out.update({label: cfg for label, cfg in pf.regimes.items() if label not in out})
    return out


# ------------------------------------------------------------------------------------ computing
def compute(pf: PortfolioFile, regime: str | None) -> dict[str, Any]:
    """{"portfolio", "accounts", "regimes": {label: {"accounts": {name: {"im", "mm", "breakdown"}}}},
    "skipped": {label: reason}}."""
    from clearing.margin.registry import build_regime

    table, market, positions, names, context = build_book(pf)
    result: dict[str, Any] = {"portfolio": pf.name, "accounts": names, "regimes": {}, "skipped": {}}
    for label, cfg in regime_configs(pf, regime).items():
        if cfg.regime in VAR_REGIMES and "history" not in context:
            result["skipped"][label] = "needs a price history (add a 'history' section)"
            continue
        reg = build_regime(cfg, table, **context)
        req = reg.requirements(positions, market)
        accounts = {}
        for a, name in enumerate(names):
            b = reg.breakdown(positions.dense[a], market)
            accounts[name] = {"im": float(req.im[a]), "mm": float(req.mm[a]),
                              "breakdown": {k: v for k, v in b.items() if k not in ("im", "mm")}}
        result["regimes"][label] = {"regime": cfg.regime, "accounts": accounts}
    return result


# ------------------------------------------------------------------------------------- printing
def _print_rich(result: dict[str, Any]) -> None:
    """Summary (regimes x accounts, IM and MM), then per account: regimes x (IM, MM, breakdown)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    labels = list(result["regimes"])
    title = f"Margin: {escape(result['portfolio'])}" if result["portfolio"] else "Margin"
    summary = Table(title=title + "  (IM / MM)")
    summary.add_column("regime")
    for name in result["accounts"]:
        summary.add_column(escape(name), justify="right")
    for label in labels:
        accs = result["regimes"][label]["accounts"]
        summary.add_row(escape(label), *(f"{accs[n]['im']:,.2f} / {accs[n]['mm']:,.2f}" for n in result["accounts"]))
    console.print(summary)
    for name in result["accounts"]:
        t = Table(title=f"account {escape(name)}: breakdown")
        t.add_column("regime")
        t.add_column("IM", justify="right")
        t.add_column("MM", justify="right")
        t.add_column("components")
        for label in labels:
            acc = result["regimes"][label]["accounts"][name]
            parts = ", ".join(f"{k}={v:,.2f}" for k, v in acc["breakdown"].items())
            t.add_row(escape(label), f"{acc['im']:,.2f}", f"{acc['mm']:,.2f}", escape(parts))
        console.print(t)
    for label, why in result["skipped"].items():
        console.print(f"[yellow]skipped {escape(label)}: {escape(why)}[/yellow]")


def _format_validation(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        lines.append(f"  {loc or '<file>'}: {e['msg']}")
    return "\n".join(lines)


def margin_command(portfolio_path: str, regime: str | None, as_json: bool) -> int:
    """Print IM, MM and the breakdown of every account in ``portfolio_path``; 0 ok, 2 bad input."""
    try:
        pf = load_portfolio(portfolio_path)
    except FileNotFoundError:
        print(f"error: no such portfolio file: {portfolio_path}", file=sys.stderr)
        return 2
    except yaml.YAMLError as e:
        print(f"error: {portfolio_path} is not valid YAML: {e}", file=sys.stderr)
        return 2
    except ValidationError as e:
        print(f"error: {portfolio_path} is not a valid portfolio file:\n{_format_validation(e)}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if regime is not None and regime not in pf.regimes and regime not in REGIME_NAMES:
        known = sorted(set(REGIME_NAMES) | set(pf.regimes))
        print(f"error: unknown regime {regime!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    if regime is not None and regime in VAR_REGIMES + tuple(k for k, c in pf.regimes.items() if c.regime in VAR_REGIMES) \
            and pf.history is None:
        print(f"error: regime {regime!r} needs a price history: add a 'history' section to {portfolio_path}",
              file=sys.stderr)
        return 2
    try:
        result = compute(pf, regime)
    except (ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        _print_rich(result)
    return 0
