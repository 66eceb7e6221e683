"""A portfolio to margin: read from a portfolio file (``sim.experiment.portfolio_file.PortfolioFile``, see
configs/portfolios/) and/or ``--position`` arguments, and the book it is valued in (instruments,
prices, vols, a price history for the VaR regimes). Used by ``clearsim margin`` and by the margin
backtest's portfolio input."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from sim.experiment.errors import ConfigError
from sim.experiment.config import format_validation_error
from sim.experiment.io import parse_yaml
from clearing.margin.config import REGIME_NAMES, parse_margin_config
from sim.experiment.portfolio_file import HistorySpec, PortfolioFile

if TYPE_CHECKING:
    from sim.core.instruments import InstrumentTable


VAR_REGIMES = ("var", "var_apc")


DEFAULT_VOL = 0.6


DEFAULT_EXPIRY_DAYS = 30.0


CLI_ACCOUNT = "positions"


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
        raise ConfigError(format_validation_error(exc, f"{path} is not a valid portfolio file", PortfolioFile)) from None


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


def build_portfolio(path: str | None, positions: Sequence[str], prices: Sequence[str] = (),
                    vols: Sequence[str] = (), collateral: float | None = None) -> PortfolioFile:
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
        raise ConfigError(format_validation_error(exc, "positions", PortfolioFile)) from None


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
        self._model0: np.ndarray | None = None  # the model's option prices at the file's state, when needed
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
            context["history"] = _history(pf.history, self.table, self.prices, self.vols)
        return context


def build_book(pf: PortfolioFile) -> tuple[Any, Any, Any, list[str], dict[str, Any]]:
    """(table, market, positions, account names, context) from a validated portfolio file."""
    book = Book(pf)
    return book.table, book.market, book.positions, book.names, book.context()


def _history(h: HistorySpec, table: InstrumentTable, prices: Mapping[str, float], vols: Mapping[str, float]
             ) -> np.ndarray:
    if h.prices is not None:
        return np.column_stack([np.asarray(h.prices[u], dtype=np.float64) for u in table.underlyings])
    syn = h.synthetic
    assert syn is not None  # HistorySpec holds exactly one of prices and synthetic
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
