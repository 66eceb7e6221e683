"""``clearsim margin``: what margin would a portfolio need, under one regime or every regime.

Positions come from a portfolio file (:class:`clearing.margin.config.PortfolioFile`, see
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

import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from sim.experiment.errors import ConfigError
from sim.experiment.config import format_validation_error
from sim.experiment.io import parse_yaml
from clearing.margin.config import REGIME_NAMES, PortfolioFile, parse_margin_config

VAR_REGIMES = ("var", "var_apc")
DEFAULT_VOL = 0.6
DEFAULT_EXPIRY_DAYS = 30.0
CLI_ACCOUNT = "positions"
# relative moves of one underlying searched for the liquidation price (then bisected)
_DOWN = -np.concatenate([np.linspace(0.005, 0.1, 20), np.linspace(0.11, 0.5, 14), np.linspace(0.55, 0.99, 9)])
_UP = np.concatenate([np.linspace(0.005, 0.1, 20), np.linspace(0.11, 0.5, 14), np.linspace(0.6, 3.0, 13)])
_BISECT = 14


# ------------------------------------------------------------------------------------- loading
def read_portfolio(path: str | Path) -> PortfolioFile:
    """Read and validate a portfolio YAML file; ``ConfigError`` names the file, field and reason."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no such portfolio file: {path}")
    data = parse_yaml(path.read_text(encoding="utf-8"), str(path))  # repeated keys refused
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        return PortfolioFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{path} is not a valid portfolio file")) from None


def load_portfolio(path: str | Path) -> PortfolioFile:
    """Read and validate a portfolio YAML file (raises ``ConfigError``)."""
    return read_portfolio(path)


_SIGNED = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{what} {item!r}: expected NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


def _number(text: str, what: str) -> float:
    if not _SIGNED.match(text):
        raise ConfigError(f"{what}: {text!r} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise ConfigError(f"{what}: {text!r} is not finite")
    return value


def _symbol_spec(symbol: str) -> dict[str, Any]:
    """An instrument from its name, for positions given without a portfolio file:
    ``BTC-PERP``, ``BTC-FUT-90d``, ``BTC-C-60000`` / ``BTC-P-55000-7d`` (options default 30 days)."""
    parts = symbol.split("-")
    und = parts[0]
    if len(parts) == 2 and parts[1].upper() == "PERP":
        return {"symbol": symbol, "kind": "perpetual", "underlying": und}
    days = DEFAULT_EXPIRY_DAYS
    if len(parts) >= 3 and parts[-1].lower().endswith("d") and parts[-1][:-1].replace(".", "", 1).isdigit():
        days = float(parts[-1][:-1])
        parts = parts[:-1]
    if len(parts) == 2 and parts[1].upper() == "FUT":
        return {"symbol": symbol, "kind": "future", "underlying": und, "expiry_days": days}
    if len(parts) == 3 and parts[1].upper() in ("C", "P") and _SIGNED.match(parts[2]):
        return {"symbol": symbol, "kind": "option", "underlying": und, "expiry_days": days,
                "strike": float(parts[2]), "call": parts[1].upper() == "C"}
    raise ConfigError(f"--position {symbol}: unknown instrument; without a portfolio file name it as UND-PERP, "
                      f"UND-FUT[-<days>d] or UND-C|P-<strike>[-<days>d] (e.g. BTC-C-60000-30d)")


def build_portfolio(path: str | None, positions: list[str], prices: list[str] = (), vols: list[str] = (),
                    collateral: float | None = None) -> PortfolioFile:
    """The portfolio to margin: the file, with ``--position``s replacing its accounts by one account
    (``positions``); or, without a file, instruments named by the positions at ``--price``/``--vol``."""
    if path is None and not positions:
        raise ConfigError("give a portfolio file, or positions with --position SYMBOL=LOTS")
    lots = {sym: _number(q, f"--position {sym}") for sym, q in _pairs(list(positions), "--position").items()}
    if path is not None:
        pf = read_portfolio(path)
        data = pf.model_dump(mode="json", exclude_none=True)
        if lots:
            data["accounts"] = [{"name": CLI_ACCOUNT, "positions": lots}]
        if prices or vols:
            for und, text in _pairs(list(prices), "--price").items():
                data["underlyings"].setdefault(und, {"vol": DEFAULT_VOL})["price"] = _number(text, f"--price {und}")
            for und, text in _pairs(list(vols), "--vol").items():
                if und not in data["underlyings"]:
                    raise ConfigError(f"--vol {und}: not an underlying of the portfolio")
                data["underlyings"][und]["vol"] = _number(text, f"--vol {und}")
    else:
        instruments = [_symbol_spec(sym) for sym in lots]
        price_of = {u: _number(t, f"--price {u}") for u, t in _pairs(list(prices), "--price").items()}
        vol_of = {u: _number(t, f"--vol {u}") for u, t in _pairs(list(vols), "--vol").items()}
        unders = sorted({i["underlying"] for i in instruments})
        missing = [u for u in unders if u not in price_of]
        if missing:
            raise ConfigError(f"--price: give the price of {', '.join(missing)} (e.g. --price {missing[0]}=60000)")
        data = {"name": "command line", "underlyings": {u: {"price": price_of[u], "vol": vol_of.get(u, DEFAULT_VOL)}
                                                        for u in unders},
                "instruments": instruments, "accounts": [{"name": CLI_ACCOUNT, "positions": lots}]}
    if collateral is not None:
        for acc in data["accounts"]:
            acc["collateral"] = collateral
    try:
        return PortfolioFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "positions")) from None


def parse_shock(text: str) -> dict[str, Any]:
    """``BTC=-20%,vol=+30%`` -> {"label", "prices": {BTC: -0.2}, "vol": 0.3} (relative moves; a bare
    number is a fraction: ``BTC=-0.2``; ``vol`` applies to every underlying's vols)."""
    out: dict[str, Any] = {"label": text, "prices": {}, "vol": 0.0}
    for part in [p for p in text.split(",") if p.strip()]:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ConfigError(f"--shock {text!r}: expected UND=±X% or vol=±Y%, comma-separated")
        pct = value.endswith("%")
        move = _number(value.rstrip("%"), f"--shock {key}") / (100.0 if pct else 1.0)
        if move <= -1.0:
            raise ConfigError(f"--shock {key}={value}: a move must stay above -100%")
        if key.lower() == "vol":
            out["vol"] = move
        else:
            out["prices"][key] = move
    return out


# ------------------------------------------------------------------------------------- the book
class Book:
    """Instruments, positions and a market-state builder for one portfolio."""

    def __init__(self, pf: PortfolioFile) -> None:
        from sim.core.instruments import InstrumentTable
        from clearing.margin.base import Positions
        from clearing.margin.examples import make_instrument

        self.pf = pf
        instruments = [make_instrument(k, s.symbol, s.kind, s.underlying, s.contract_units, s.expiry_days,
                                       s.strike, s.call) for k, s in enumerate(pf.instruments)]
        self.table = InstrumentTable.from_instruments(instruments)
        self.underlyings = list(self.table.underlyings)
        self.prices = {u: pf.underlyings[u].price for u in self.underlyings}
        self.vols = {u: pf.underlyings[u].vol for u in self.underlyings}
        index = {s.symbol: k for k, s in enumerate(pf.instruments)}
        self.lots = np.zeros((len(pf.accounts), len(self.table)))
        for a, acc in enumerate(pf.accounts):
            for sym, q in acc.positions.items():
                self.lots[a, index[sym]] += q
        self.positions = Positions.of(self.lots)
        self.names = [a.name for a in pf.accounts]
        self.units = np.asarray(self.table.contract_units, dtype=np.float64)
        self._model0 = None
        self.market = self.at({}, 0.0)
        self.marks0 = np.asarray(self.market.marks, dtype=np.float64).copy()

    def at(self, moves: dict[str, float], vol_move: float) -> Any:
        """The market with underlying u at price x (1 + moves[u]) and every vol x (1 + vol_move).
        Explicit linear marks move with their underlying; an explicit option mark keeps its offset
        from the model price."""
        from clearing.margin.examples import make_market

        pf = self.pf
        scale = {u: 1.0 + moves.get(u, 0.0) for u in self.underlyings}
        vscale = 1.0 + vol_move
        prices = {u: self.prices[u] * scale[u] for u in self.underlyings}
        vols = {u: self.vols[u] * vscale for u in self.underlyings}
        linear = {s.symbol: s.mark * scale[s.underlying] for s in pf.instruments
                  if s.kind != "option" and s.mark is not None}
        option_vols = {s.symbol: s.vol * vscale for s in pf.instruments if s.vol is not None}
        market = make_market(self.table, prices, vols, linear_marks=linear, option_vols=option_vols)
        explicit = [(k, s.mark) for k, s in enumerate(pf.instruments) if s.kind == "option" and s.mark is not None]
        if explicit:
            if self._model0 is None:  # the model's prices at the file's own state
                self._model0 = np.asarray(make_market(self.table, self.prices, self.vols, linear_marks={
                    s.symbol: s.mark for s in pf.instruments if s.kind != "option" and s.mark is not None},
                    option_vols={s.symbol: s.vol for s in pf.instruments if s.vol is not None}).marks).copy()
            marks = np.asarray(market.marks, dtype=np.float64).copy()
            for k, mark in explicit:
                marks[k] = max(marks[k] + (mark - self._model0[k]), 0.0)
            market.marks = marks
        return market

    def pnl(self, market: Any) -> np.ndarray:
        """Each account's P&L from the file's state to ``market`` (quote currency)."""
        return self.lots @ ((np.asarray(market.marks, dtype=np.float64) - self.marks0) * self.units)

    def gross_notional(self) -> np.ndarray:
        """Each account's gross notional: |lots| x contract units x the underlying's price (options
        on their underlying's notional)."""
        price = np.array([self.prices[u] for u in self.underlyings])[self.table.underlying_index]
        return np.abs(self.lots) @ (self.units * price)

    def context(self) -> dict[str, Any]:
        pf = self.pf
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
            context["history"] = _history(pf, self.table, self.prices, self.vols)
        return context


def build_book(pf: PortfolioFile) -> tuple[Any, Any, Any, list[str], dict[str, Any]]:
    """(table, market, positions, account names, context) from a validated portfolio file."""
    book = Book(pf)
    return book.table, book.market, book.positions, book.names, book.context()


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
def _share(x: float, notional: float) -> float | None:
    return x / notional if notional > 0 else None


def _liquidation_prices(book: Book, reg: Any, equity0: np.ndarray) -> dict[str, dict[str, list]]:
    """Per underlying: per account the (down, up) price where equity + P&L meets MM, moving that
    underlying alone (None where it does not happen within -99% .. +300%)."""
    from clearing.margin.base import Positions

    n = len(book.names)
    out: dict[str, dict[str, list]] = {}

    def gap(u: str, move: float, rows: np.ndarray) -> np.ndarray:
        market = book.at({u: move}, 0.0)
        pos = book.positions if rows.size == n else Positions.of(book.lots[rows])
        mm = np.asarray(reg.requirements(pos, market).mm, dtype=np.float64)
        return equity0[rows] + book.pnl(market)[rows] - mm

    for k, u in enumerate(book.underlyings):
        exposed = np.abs(book.lots[:, book.table.underlying_index == k]).sum(axis=1) > 0
        res = {"down": [None] * n, "up": [None] * n}
        everyone = np.arange(n)
        g0 = gap(u, 0.0, everyone)
        for side, grid in (("down", _DOWN), ("up", _UP)):
            open_ = (g0 >= 0) & exposed
            lo = np.zeros(n)
            for move in grid:
                if not open_.any():
                    break
                g = gap(u, float(move), everyone)
                hit = open_ & (g < 0)
                for a in np.flatnonzero(hit):
                    a_rows = np.array([a])
                    good, bad = lo[a], float(move)
                    for _ in range(_BISECT):
                        mid = 0.5 * (good + bad)
                        if gap(u, mid, a_rows)[0] < 0:
                            bad = mid
                        else:
                            good = mid
                    res[side][a] = book.prices[u] * (1.0 + 0.5 * (good + bad))
                open_ &= ~hit
                lo[open_] = move
        out[u] = res
    return out


def _span_scenarios(book: Book, reg: Any) -> dict[str, dict[str, list[float]]]:
    """Per account, per underlying: the 16 SPAN scenario P&Ls of its positions (profit > 0)."""
    arrays = reg._prepare(book.market)["arrays"]
    out: dict[str, dict[str, list[float]]] = {}
    for a, name in enumerate(book.names):
        per = {}
        for k, u in enumerate(book.underlyings):
            sel = np.where(reg.commodity == k, book.lots[a], 0.0)
            if sel.any():
                per[u] = (sel @ arrays).tolist()
        out[name] = per
    return out


def _portfolio_worst(book: Book, reg: Any) -> dict[str, dict[str, Any]]:
    """Per account (and underlying, in "sum" mode): the worst core scenario of the portfolio regime."""
    matrix = reg.pnl_matrix(book.market)
    core = matrix[:, : reg.n_core].astype(np.float64)
    moves = reg.moves
    states = ("unchanged", "up", "down")
    per_block = 3 * len(moves)

    # joint mode: one block per (driver, beta) -- the others move with the correlation, less than it
    # (against, for low correlations) or beyond it (the regime's ``betas`` order)
    betas = ("with", "against", "beyond")

    def describe(col: int) -> dict[str, Any]:
        block, within = divmod(col, per_block)
        state, m = divmod(within, len(moves))
        out = {"move": float(moves[m]), "vol": states[state]}
        if reg.joint:
            driver, beta = divmod(block, len(reg.betas))
            out["driver"] = book.underlyings[driver]
            out["others"] = betas[beta]
        return out

    result: dict[str, dict[str, Any]] = {}
    for a, name in enumerate(book.names):
        per = {}
        groups = [(None, book.lots[a])] if reg.joint else [
            (u, np.where(reg.underlying == k, book.lots[a], 0.0)) for k, u in enumerate(book.underlyings)]
        for u, lots in groups:
            if not lots.any():
                continue
            pnl = lots @ core
            col = int(np.argmin(pnl))
            per[u or "joint"] = {**describe(col), "pnl": float(pnl[col])}
        result[name] = per
    return result


def compute(pf: PortfolioFile, regime: str | None, shocks: list[dict[str, Any]] | None = None,
            liquidation: bool = True) -> dict[str, Any]:
    """{"portfolio", "accounts", "notional", "regimes": {label: {"regime", "accounts": {name: {"im",
    "mm", "im_share", "mm_share", "equity", "breakdown", "liquidation"}}, "total", ...}},
    "shocks": [...], "skipped": {label: reason}}."""
    from clearing.margin.registry import build_regime

    book = Book(pf)
    context = book.context()
    notional = book.gross_notional()
    collateral = [a.collateral for a in pf.accounts]
    result: dict[str, Any] = {"portfolio": pf.name, "accounts": book.names,
                              "notional": dict(zip(book.names, notional.tolist())),
                              "underlyings": dict(book.prices), "regimes": {}, "skipped": {}, "shocks": []}
    shocked = [(s, book.at(s["prices"], s["vol"])) for s in (shocks or [])]
    for s, _ in shocked:
        unknown = [u for u in s["prices"] if u not in book.prices]
        if unknown:
            raise ConfigError(f"--shock {s['label']}: unknown underlying {unknown[0]!r} "
                              f"(the portfolio has {', '.join(book.underlyings)})")
    shock_rows: list[dict[str, Any]] = [{"label": s["label"], "regimes": {}} for s, _ in shocked]
    for label, cfg in regime_configs(pf, regime).items():
        if cfg.regime in VAR_REGIMES and "history" not in context:
            result["skipped"][label] = "needs a price history (add a 'history' section)"
            continue
        reg = build_regime(cfg, book.table, **context)
        req = reg.requirements(book.positions, book.market)
        im, mm = np.asarray(req.im, dtype=np.float64), np.asarray(req.mm, dtype=np.float64)
        equity = np.array([c if c is not None else im[a] for a, c in enumerate(collateral)])
        liq = _liquidation_prices(book, reg, equity) if liquidation else {}
        accounts = {}
        for a, name in enumerate(book.names):
            b = reg.breakdown(book.positions.dense[a], book.market)
            accounts[name] = {
                "im": float(im[a]), "mm": float(mm[a]), "im_share": _share(float(im[a]), notional[a]),
                "mm_share": _share(float(mm[a]), notional[a]), "equity": float(equity[a]),
                "below_mm": bool(equity[a] < mm[a]),  # liquidatable now: no liquidation price to search
                "breakdown": {k: v for k, v in b.items() if k not in ("im", "mm")},
                "liquidation": {u: {"down": liq[u]["down"][a], "up": liq[u]["up"][a]} for u in liq},
            }
        total_notional = float(notional.sum())
        entry: dict[str, Any] = {"regime": cfg.regime, "accounts": accounts, "total": {
            "im": float(im.sum()), "mm": float(mm.sum()), "im_share": _share(float(im.sum()), total_notional),
            "mm_share": _share(float(mm.sum()), total_notional)}}
        if cfg.regime == "span":
            from clearing.margin.span import SCENARIO_LABELS

            entry["risk_array"] = {"scenarios": list(SCENARIO_LABELS), "accounts": _span_scenarios(book, reg)}
        if cfg.regime in ("portfolio", "portfolio_joint"):
            entry["worst_scenario"] = _portfolio_worst(book, reg)
        result["regimes"][label] = entry
        for row, (_s, market) in zip(shock_rows, shocked):
            r = reg.requirements(book.positions, market)
            eq = equity + book.pnl(market)
            row["regimes"][label] = {name: {"im": float(r.im[a]), "mm": float(r.mm[a]), "equity": float(eq[a]),
                                            "excess": float(eq[a] - r.mm[a])} for a, name in enumerate(book.names)}
    result["shocks"] = shock_rows
    return result


def rounded(data: Any) -> Any:
    """Floats rounded for JSON: to the cent from 1 up, six significant digits below."""
    if isinstance(data, dict):
        return {k: rounded(v) for k, v in data.items()}
    if isinstance(data, list):
        return [rounded(v) for v in data]
    if isinstance(data, float):
        if not math.isfinite(data):
            return None
        if abs(data) >= 1 or data == 0:
            return round(data, 2)
        return float(f"{data:.6g}")
    return data


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


def _print_rich(result: dict[str, Any], breakdown: bool = False, quote: str = "USD") -> None:
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
    console.print(f"[bold]Margin: {title}[/bold]  ({quote}; shares of gross notional)")

    def margin_table(caption: str, rows: list[tuple[str, dict]]) -> Table:
        t = _titled(console, caption)
        t.add_column("regime", no_wrap=True)
        for head in (f"IM", f"MM", "IM %", "MM %"):
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


def margin_command(portfolio_path: str | None, regime: str | None, as_json: bool, *, positions: list[str] = (),
                   prices: list[str] = (), vols: list[str] = (), shocks: list[str] = (), quiet: bool = False,
                   collateral: float | None = None, breakdown: bool | None = None) -> int:
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
