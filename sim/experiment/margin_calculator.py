"""What the margin calculator computes for a portfolio: IM and MM per account and regime, the
liquidation price per underlying (bisected where equity meets MM), SPAN's risk array and the
portfolio regime's worst scenario, and what-if shocks. ``clearsim margin`` prints it
(``sim.experiment.margin_cli``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim.experiment.errors import ConfigError
from sim.experiment.portfolio_file import PortfolioFile
from sim.experiment.portfolio import VAR_REGIMES, Book, regime_configs


# relative moves of one underlying searched for the liquidation price (then bisected)
_DOWN = -np.concatenate([np.linspace(0.005, 0.1, 20), np.linspace(0.11, 0.5, 14), np.linspace(0.55, 0.99, 9)])


_UP = np.concatenate([np.linspace(0.005, 0.1, 20), np.linspace(0.11, 0.5, 14), np.linspace(0.6, 3.0, 13)])


_BISECT = 14


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
