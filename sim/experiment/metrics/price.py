"""Prices: drawdowns, run-ups and one-sided books, and the amplification measured against the
no-feedback twin."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.core.orders import FillFlag
from sim.experiment.metrics.columns import OFF_BOOK_FLAGS, Tables, column_of, safe_ratio
from sim.experiment.metrics.losses import bad_debt_figures


# ------------------------------------------------------------------------------------ pieces
def _drawdown(p: np.ndarray) -> float | None:
    """Largest fall from a running peak, as a fraction of the peak: max_t (1 - p_t / max_{s<=t} p_s)."""
    p = np.asarray(p, dtype=np.float64)
    p = p[np.isfinite(p) & (p > 0)]
    if p.size == 0:
        return None
    return float(np.max(1.0 - p / np.maximum.accumulate(p)))


def _trough_to_peak(p: np.ndarray) -> float | None:
    """Largest ratio to a running trough, max_t p_t / min_{s<=t} p_s, over the finite positive
    values (None if there are none)."""
    p = np.asarray(p, dtype=np.float64)
    p = p[np.isfinite(p) & (p > 0)]
    if p.size == 0:
        return None
    return float(np.max(p / np.minimum.accumulate(p)))


def _runup(p: np.ndarray) -> float | None:
    """Largest rise from a running trough: max_t (p_t / min_{s<=t} p_s - 1)."""
    r = _trough_to_peak(p)
    return None if r is None else r - 1.0


class _MarketSamples:
    """The ``market`` table's columns, read once; ``rows(k)`` are instrument k's samples in time order."""

    def __init__(self, tables: Tables) -> None:
        self.instrument = column_of(tables, "market", "instrument")
        self.time = column_of(tables, "market", "time")
        self.bid = column_of(tables, "market", "best_bid").astype(np.float64)
        self.ask = column_of(tables, "market", "best_ask").astype(np.float64)

    def rows(self, instrument: int) -> np.ndarray:
        sel = self.instrument == instrument
        return np.flatnonzero(sel)[np.argsort(self.time[sel], kind="stable")]

    def book_sides(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.bid[rows], self.ask[rows]


def mid_price(bid: np.ndarray, ask: np.ndarray) -> np.ndarray:
    """Venue price per sample: the mid when both sides quote, the one side left when the other is
    empty (liquidity withdrawn), NaN when the book is empty."""
    return np.where(np.isfinite(bid) & np.isfinite(ask), 0.5 * (bid + ask), np.where(np.isfinite(bid), bid, ask))


def _mid_series(bid: np.ndarray, ask: np.ndarray) -> np.ndarray:
    """Venue price (ticks) in time order (see ``mid_price``), skipped when the book is empty."""
    mid = mid_price(bid, ask)
    return mid[np.isfinite(mid)]


def _one_sided(bid: np.ndarray, ask: np.ndarray) -> float | None:
    """Fraction of samples at which at least one side of the book was empty."""
    return float(np.mean(~(np.isfinite(bid) & np.isfinite(ask)))) if bid.size else None


def price_figures(tables: Tables, cv: dict[str, Any], counterfactual: Tables | None) -> dict[str, Any]:
    o_und = column_of(tables, "oracle", "underlying", np.int64)
    o_time = column_of(tables, "oracle", "time").astype(np.float64)
    o_index = column_of(tables, "oracle", "index").astype(np.float64)
    o_true = column_of(tables, "oracle", "true").astype(np.float64)
    order = np.argsort(o_time, kind="stable")
    o_und, o_index, o_true = o_und[order], o_index[order], o_true[order]
    by_underlying = {}
    for u, name in enumerate(cv["underlyings"]):
        m = o_und == u
        by_underlying[name] = {"true_drawdown": _drawdown(o_true[m]), "index_drawdown": _drawdown(o_index[m]),
                               "true_runup": _runup(o_true[m]), "index_runup": _runup(o_index[m])}
    by_instrument = {}
    worst: tuple[float, str] | None = None
    market = _MarketSamples(tables)
    m_mark = column_of(tables, "market", "mark").astype(np.float64)
    cf_market = _MarketSamples(counterfactual) if counterfactual is not None else None
    # prints on the book only: backstop, ADL and auction transfers happen off-book at
    # discounts or bankruptcy prices and are not market prices
    on_book = (column_of(tables, "trades", "flags", np.int64) & OFF_BOOK_FLAGS) == 0
    t_ins = column_of(tables, "trades", "instrument", np.int64)
    t_price = column_of(tables, "trades", "price").astype(np.float64)
    for k, symbol in enumerate(cv["symbols"]):
        if cv["kinds"][k] == "option":
            continue
        und = by_underlying.get(cv["underlying_of"][k], {})
        rows = market.rows(k)
        mark = m_mark[rows]
        bid, ask = market.book_sides(rows)
        mid = _mid_series(bid, ask)
        trades = t_price[(t_ins == k) & on_book]
        venue_dd, true_dd = _drawdown(mid), und.get("true_drawdown")
        row = {
            "venue_drawdown": venue_dd,
            "mark_drawdown": _drawdown(mark),
            "trade_drawdown": _drawdown(trades),
            "venue_runup": _runup(mid),
            "one_sided_fraction": _one_sided(bid, ask),
            "true_drawdown": true_dd,
            "index_drawdown": und.get("index_drawdown"),
            "amplification_vs_true": safe_ratio(venue_dd, true_dd) if venue_dd is not None and true_dd else None,
        }
        if cf_market is not None:
            cf_dd = _drawdown(_mid_series(*cf_market.book_sides(cf_market.rows(k))))
            row["counterfactual_venue_drawdown"] = cf_dd
            row["amplification_vs_counterfactual"] = (safe_ratio(venue_dd, cf_dd)
                                                      if venue_dd is not None and cf_dd else None)
        by_instrument[symbol] = row
        if venue_dd is not None and (worst is None or venue_dd > worst[0]):
            worst = (venue_dd, symbol)
    out: dict[str, Any] = {"by_underlying": by_underlying, "by_instrument": by_instrument,
                           "worst_instrument": None if worst is None else worst[1]}
    w = by_instrument[worst[1]] if worst is not None else {}
    out["max_venue_drawdown"] = w.get("venue_drawdown")
    out["true_drawdown"] = w.get("true_drawdown")
    out["amplification_vs_true"] = w.get("amplification_vs_true")
    if counterfactual is not None:
        out["counterfactual_venue_drawdown"] = w.get("counterfactual_venue_drawdown")
        out["amplification_vs_counterfactual"] = w.get("amplification_vs_counterfactual")
    return out


def _vs(main: float | None, twin: float | None, what: str, notes: list[str]) -> tuple[float | None, float | None]:
    """(main / twin, main - twin); the ratio is None, with a note, where the twin's figure is zero."""
    if main is None or twin is None:
        notes.append(f"{what}: not measured in one of the runs")
        return None, None
    if twin == 0:
        notes.append(f"{what}: zero in the twin, ratio undefined" + (" (zero in both)" if main == 0 else ""))
        return None, main - twin
    return main / twin, main - twin


def counterfactual_figures(tables: Tables, cv: dict[str, Any], twin: Tables, price: dict[str, Any]) -> dict[str, Any]:
    """The run against its no-feedback twin (same paths, agents and streams; liquidations absorbed
    outside the market at mark): venue (sampled mid), on-book trade and mark drawdown of the run's
    worst instrument, liquidated notional and bad debt, each as run / twin and run - twin."""
    scale = cv["scale"]
    notes: list[str] = []
    worst = price.get("worst_instrument")
    k = cv["symbols"].index(worst) if worst is not None else None
    row = price["by_instrument"].get(worst, {}) if worst is not None else {}
    twin_mark_dd = twin_trade_dd = None
    if k is not None:
        t_market = _MarketSamples(twin)
        twin_mark_dd = _drawdown(column_of(twin, "market", "mark").astype(np.float64)[t_market.rows(k)])
        on_book = (column_of(twin, "trades", "flags", np.int64) & OFF_BOOK_FLAGS) == 0
        t_ins = column_of(twin, "trades", "instrument", np.int64)
        twin_trade_dd = _drawdown(column_of(twin, "trades", "price").astype(np.float64)[(t_ins == k) & on_book])
    out: dict[str, Any] = {"instrument": worst}
    for name, main, other in (
            ("venue_drawdown", row.get("venue_drawdown"), row.get("counterfactual_venue_drawdown")),
            ("trade_drawdown", row.get("trade_drawdown"), twin_trade_dd),
            ("mark_drawdown", row.get("mark_drawdown"), twin_mark_dd)):
        ratio, diff = _vs(main, other, name, notes)
        out.update({name: main, f"twin_{name}": other, f"{name}_amplification": ratio, f"{name}_difference": diff})
    notional = float(column_of(tables, "liquidations", "notional").astype(np.float64).sum()) / scale
    twin_notional = float(column_of(twin, "liquidations", "notional").astype(np.float64).sum()) / scale
    bad, twin_bad = bad_debt_figures(tables, cv)["total"], bad_debt_figures(twin, cv)["total"]
    out["liquidations"] = int(column_of(tables, "liquidations", "liq_id").size)
    out["twin_liquidations"] = int(column_of(twin, "liquidations", "liq_id").size)
    for name, main, other in (("liquidated_notional", notional, twin_notional), ("bad_debt", bad, twin_bad)):
        ratio, diff = _vs(main, other, name, notes)
        out.update({name: main, f"twin_{name}": other, f"{name}_ratio": ratio, f"{name}_difference": diff})
    # the control: the twin's book never printed a liquidation (must be 0)
    flags = column_of(twin, "trades", "flags", np.int64)
    out["twin_liquidation_fills_on_book"] = int(((flags & int(FillFlag.LIQUIDATION)) != 0).sum())
    out["notes"] = notes
    return out
