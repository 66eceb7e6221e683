"""Per-run metrics: one JSON-serialisable, deterministic summary of an episode's recorded tables.

``summarise(config, tables, stats)`` reads the tables ``sim.experiment.recorder.Recorder.tables()`` produces
and returns a nested dict of plain Python numbers, strings, lists and dicts. It contains no wall
clock figure (``timing(stats)`` returns those separately), and every float is rounded to
``SIGNIFICANT_DIGITS`` significant digits, so the same config and seed give a byte-identical
``summary.json`` in any process (in-process, a process pool, Ray or Dask).

Conventions: money in quote units (minor units / 10**quote.decimals); times in simulated
seconds; prices as the tables hold them (ticks for the venue, quote units for the oracle) and only
ever compared as ratios; slippage in basis points; ``None`` where a figure is undefined (the reason
is given next to it where it is not obvious). Every metric is defined in ``METRICS_DOC``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sim.experiment.groups import group_margin
from sim.experiment.schema.outputs import window_seconds
from sim.core.orders import FillFlag
from sim.experiment.spells import spell_forest
from sim.experiment.who_paid import LAYERS as WHO_PAID_LAYERS

SIGNIFICANT_DIGITS = 10
POLICIES = ("book", "backstop", "auction", "takeover", "adl")
OUTCOMES = ("restored_by_cancel", "restored", "closed", "bankrupt", "open")
CAUSES = ("oracle", "liquidation", "loss_allocation", "interval")
ADL_FLAG = int(FillFlag.ADL)
# transfers that happen off the book at discounts or bankruptcy prices (not market prices)
OFF_BOOK_FLAGS = int(FillFlag.ADL | FillFlag.BACKSTOP | FillFlag.AUCTION | FillFlag.EXTERNAL)

Tables = Mapping[str, Mapping[str, np.ndarray]]


# ------------------------------------------------------------------------------------ rounding
def rnd(x: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """A JSON-safe value: numpy scalars to Python, floats to ``digits`` significant digits,
    NaN/inf to None; containers recursively (dict keys become strings)."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if not math.isfinite(v):
            return None
        v = float(f"{v:.{digits}g}")
        return 0.0 if v == 0.0 else v  # no -0.0
    if isinstance(x, Mapping):
        return {str(k): rnd(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [rnd(v, digits) for v in x]
    raise TypeError(f"cannot put a {type(x).__name__} in a summary")


def _col(tables: Tables, table: str, column: str, dtype=None) -> np.ndarray:
    t = tables.get(table) or {}
    a = t.get(column)
    if a is None:
        return np.zeros(0, dtype=dtype or np.float64)
    a = np.asarray(a)
    return a.astype(dtype) if dtype is not None and a.dtype != dtype else a


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den and math.isfinite(den) and math.isfinite(num) else None


def _dist(x: np.ndarray) -> dict[str, Any]:
    """count / mean / median / p95 / max of the finite values."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"count": 0, "mean": None, "median": None, "p95": None, "max": None}
    return {"count": int(x.size), "mean": float(x.mean()), "median": float(np.median(x)),
            "p95": float(np.quantile(x, 0.95)), "max": float(x.max())}


# ------------------------------------------------------------------------------------ config view
def _config_view(config: Any) -> dict[str, Any]:
    """What the metrics need from the config (works on an EpisodeConfig or anything shaped like one)."""
    market = config.market
    instruments = list(market.instruments)
    try:
        underlyings = list(config.paths.names())
    except Exception:  # a replay file that is gone, say: fall back to first-use order
        underlyings = list(dict.fromkeys(i.underlying for i in instruments))
    margin = getattr(config, "margin", None)
    return {
        "scale": 10 ** int(market.quote.decimals),
        "quote": market.quote.name,
        "symbols": [i.symbol for i in instruments],
        "kinds": [i.kind for i in instruments],
        "underlying_of": [i.underlying for i in instruments],
        "underlyings": underlyings,
        "duration": float(config.duration),
        "sample_interval": float(getattr(getattr(config, "outputs", None), "sample_interval", 60.0)),
        "regime": getattr(margin, "regime", None),
        "materiality": float(getattr(getattr(getattr(config, "clearing", None), "attribution", None), "materiality", 0.0)),
        # the procyclicality measurement window and horizon (EpisodeConfig computes the defaults)
        "measure_from": float(config.measurement_start()) if hasattr(config, "measurement_start") else 0.0,
        "horizon": (float(config.horizon()) if hasattr(config, "horizon") else
                    window_seconds(float(config.duration), float(getattr(getattr(config, "outputs", None),
                                                                         "sample_interval", 60.0)))),
    }


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
        self.instrument = _col(tables, "market", "instrument")
        self.time = _col(tables, "market", "time")
        self.bid = _col(tables, "market", "best_bid").astype(np.float64)
        self.ask = _col(tables, "market", "best_ask").astype(np.float64)

    def rows(self, instrument: int) -> np.ndarray:
        sel = self.instrument == instrument
        return np.flatnonzero(sel)[np.argsort(self.time[sel], kind="stable")]

    def book_sides(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.bid[rows], self.ask[rows]


def _mid(bid: np.ndarray, ask: np.ndarray) -> np.ndarray:
    """Venue price per sample: the mid when both sides quote, the one side left when the other is
    empty (liquidity withdrawn), NaN when the book is empty."""
    return np.where(np.isfinite(bid) & np.isfinite(ask), 0.5 * (bid + ask), np.where(np.isfinite(bid), bid, ask))


def _mid_series(bid: np.ndarray, ask: np.ndarray) -> np.ndarray:
    """Venue price (ticks) in time order (see ``_mid``), skipped when the book is empty."""
    mid = _mid(bid, ask)
    return mid[np.isfinite(mid)]


def _one_sided(bid: np.ndarray, ask: np.ndarray) -> float | None:
    """Fraction of samples at which at least one side of the book was empty."""
    return float(np.mean(~(np.isfinite(bid) & np.isfinite(ask)))) if bid.size else None


def _bad_debt(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    layer = _col(tables, "losses", "layer").astype(str)
    amount = _col(tables, "losses", "amount").astype(np.float64)
    liq = _col(tables, "losses", "liq_id", np.int64)
    account = _col(tables, "losses", "account", np.int64)
    bad = (layer == "bad_debt") & (amount > 0)
    # the market a deficit belongs to: the instrument of the liquidation's last step (as the absorber does)
    s_liq = _col(tables, "liquidation_steps", "liq_id", np.int64)
    s_ins = _col(tables, "liquidation_steps", "instrument", np.int64)
    last_instrument = {int(l_): int(i) for l_, i in zip(s_liq.tolist(), s_ins.tolist())}
    by_market = {s: 0.0 for s in cv["symbols"]}
    unattributed = 0.0
    for lid, amt in zip(liq[bad].tolist(), amount[bad].tolist()):
        ins = last_instrument.get(lid)
        if ins is None or not 0 <= ins < len(cv["symbols"]):
            unattributed += amt
        else:
            by_market[cv["symbols"][ins]] += amt
    fund_bad = _col(tables, "fund", "bad_debt").astype(np.float64)
    return {
        "total": float(amount[bad].sum()) / scale,
        "by_market": {k: v / scale for k, v in by_market.items()},
        "unattributed": unattributed / scale,
        "accounts": int(np.unique(account[bad]).size),
        "events": int(np.unique(liq[bad]).size),
        "ledger_last_sample": float(fund_bad[-1]) / scale if fund_bad.size else 0.0,
    }


def _insurance(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    t = _col(tables, "fund", "time").astype(np.float64)
    f = _col(tables, "fund", "insurance_fund").astype(np.float64)
    fee = _col(tables, "fund", "fee_pool").astype(np.float64)
    if f.size == 0:
        return {"initial": None, "min": None, "min_time": None, "final": None, "max_drawdown": None,
                "fee_pool_final": None}
    k = int(np.argmin(f))
    peak = np.maximum.accumulate(f)
    return {
        "initial": float(f[0]) / scale,
        "min": float(f[k]) / scale,
        "min_time": float(t[k]),
        "final": float(f[-1]) / scale,
        "max_drawdown": float(np.max(peak - f)) / scale,
        "fee_pool_final": float(fee[-1]) / scale if fee.size else None,
    }


def _losses(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    layer = _col(tables, "losses", "layer").astype(str)
    amount = _col(tables, "losses", "amount").astype(np.float64)
    by_layer = {str(name): float(amount[layer == name].sum()) / scale for name in sorted(set(layer.tolist()))}
    socialised = float(amount[np.char.startswith(layer, "socialised")].sum()) / scale if layer.size else 0.0
    waterfall = float(amount[np.char.startswith(layer, "waterfall")].sum()) / scale if layer.size else 0.0
    deficits = float(amount[layer != "collateral_sold"].sum()) / scale if layer.size else 0.0
    return {"by_layer": by_layer, "socialised": socialised, "waterfall": waterfall,
            "insurance_fund_paid": by_layer.get("insurance_fund", 0.0),
            "deficits_total": deficits, **_who_paid(tables, cv)}


def _who_paid(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    """The loss ledger by layer (the ``who_paid`` table, see ``sim.experiment.who_paid``) and the backstop
    vault's P&L (the ``backstop_vault`` table)."""
    scale = cv["scale"]
    layer = _col(tables, "who_paid", "layer").astype(str)
    borne = _col(tables, "who_paid", "borne_by").astype(str)
    amount = _col(tables, "who_paid", "amount").astype(np.float64)
    who = {name: float(amount[layer == name].sum()) / scale for name in WHO_PAID_LAYERS}
    pnl = _col(tables, "backstop_vault", "pnl").astype(np.float64)
    capital = _col(tables, "backstop_vault", "capital").astype(np.float64)
    equity = _col(tables, "backstop_vault", "equity").astype(np.float64)
    vault = {"capital": float(capital[0]) / scale if capital.size else None,
             "equity_final": float(equity[-1]) / scale if equity.size else None,
             "pnl_final": float(pnl[-1]) / scale if pnl.size else None,
             "pnl_min": float(pnl.min()) / scale if pnl.size else None}
    # every fee goes to the insurance fund: what it received is the liquidation penalties
    received = who["liquidation_penalties"]
    return {
        "who_paid": who,
        "borne_by_others": float(amount[borne == "others"].sum()) / scale,
        "paid_by_liquidated": float(amount[(borne == "defaulter") | (borne == "liquidated")].sum()) / scale,
        "insurance_fund_received": received,
        "insurance_fund_net": received - who["insurance_fund"],
        "backstop_vault": vault,
    }


def _liquidations(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    notional = _col(tables, "liquidations", "notional").astype(np.float64)
    outcome = _col(tables, "liquidations", "outcome").astype(str)
    cause = _col(tables, "liquidations", "cause").astype(str)
    account = _col(tables, "liquidations", "account", np.int64)
    policy = _col(tables, "liquidation_steps", "policy").astype(str)
    s_not = _col(tables, "liquidation_steps", "notional").astype(np.float64)
    s_lots = _col(tables, "liquidation_steps", "lots", np.int64)
    s_fee = _col(tables, "liquidation_steps", "fee").astype(np.float64)
    s_ins = _col(tables, "liquidation_steps", "instrument", np.int64)
    by_policy = {}
    for p in sorted(set(POLICIES) | set(policy.tolist())):
        m = policy == p
        by_policy[p] = {"steps": int(m.sum()), "notional": float(s_not[m].sum()) / scale,
                        "lots": int(np.abs(s_lots[m]).sum())}
    by_outcome = {o: int((outcome == o).sum()) for o in sorted(set(OUTCOMES) | set(outcome.tolist()))}
    by_cause = {c: int((cause == c).sum()) for c in sorted(set(CAUSES) | set(cause.tolist()))}
    by_market = {s: float(s_not[s_ins == k].sum()) / scale for k, s in enumerate(cv["symbols"])}
    spell = _col(tables, "liquidations", "spell", np.int64)
    endogenous = _col(tables, "liquidations", "endogenous", bool)
    return {
        "count": int(notional.size),
        "spells": int(np.unique(spell).size) if spell.size else int(notional.size),
        "endogenous_breaches": int(endogenous.sum()),
        "attribution_materiality": cv["materiality"],
        "accounts": int(np.unique(account).size),
        "notional": float(notional.sum()) / scale,
        "steps": int(policy.size),
        "fees": float(s_fee.sum()) / scale,
        "by_policy": by_policy,
        "by_outcome": by_outcome,
        "by_cause": by_cause,
        "notional_by_market": by_market,
    }


def _adl(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    policy = _col(tables, "liquidation_steps", "policy").astype(str)
    m = policy == "adl"
    s_not = _col(tables, "liquidation_steps", "notional").astype(np.float64)
    flags = _col(tables, "trades", "flags", np.int64)
    maker = _col(tables, "trades", "maker", np.int64)
    adl_trades = (flags & ADL_FLAG) != 0
    return {
        "notional": float(s_not[m].sum()) / scale,
        "steps": int(m.sum()),
        "liquidations": int(np.unique(_col(tables, "liquidation_steps", "liq_id", np.int64)[m]).size),
        "counterparties": int(np.unique(maker[adl_trades]).size),
    }


def _cascades(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    """Cascades as trees of distress spells (``sim.experiment.spells``): a root spell began with an exogenous
    breach, a child spell's first breach was endogenous under the but-for rule."""
    scale = cv["scale"]
    liq = _col(tables, "liquidations", "liq_id", np.int64)
    parent = _col(tables, "liquidations", "parent", np.int64)
    notional = _col(tables, "liquidations", "notional").astype(np.float64)
    spell = _col(tables, "liquidations", "spell", np.int64)
    if spell.size != liq.size:  # tables from before spells: every liquidation its own spell
        spell = liq
    empty = {"count": 0, "contagious": 0, "max_generation": None, "largest_size": 0, "largest_size_notional": 0.0,
             "largest_notional": 0.0, "largest_notional_size": 0, "mean_size": None, "root_notional": 0.0,
             "endogenous_count": 0, "endogenous_notional": 0.0, "amplification": None,
             "amplification_note": "no liquidations", "endogenous_share": None, "by_generation": []}
    if liq.size == 0:
        return empty
    forest = spell_forest(liq, parent, spell, notional)
    m = forest.count
    root_pos = np.searchsorted(forest.spell, forest.root)  # spells are sorted ids (np.unique)
    is_root = forest.parent < 0
    roots = np.flatnonzero(is_root)
    size = np.bincount(root_pos, minlength=m)
    tree_notional = np.bincount(root_pos, weights=forest.notional, minlength=m)
    r_size, r_not = size[roots], tree_notional[roots]
    k_size = roots[np.lexsort((roots, -r_size))[0]]  # largest by spells (ties: smallest id)
    k_not = roots[np.lexsort((roots, -r_not))[0]]
    all_n = float(forest.notional.sum())
    root_n = float(forest.notional[is_root].sum())
    if root_n > 0:
        amp, note = all_n / root_n, None
    elif all_n == 0:
        amp, note = 1.0, "no notional liquidated: nothing to amplify"
    else:
        amp, note = None, "exogenous roots liquidated zero notional: undefined (see endogenous_share)"
    gen = forest.generation
    gmax = int(gen.max())
    by_gen = [{"generation": g, "count": int((gen == g).sum()),
               "notional": float(forest.notional[gen == g].sum()) / scale} for g in range(gmax + 1)]
    return {
        "count": int(roots.size),
        "contagious": int((r_size > 1).sum()),
        "max_generation": gmax,
        "largest_size": int(size[k_size]),
        "largest_size_notional": float(tree_notional[k_size]) / scale,
        "largest_notional": float(tree_notional[k_not]) / scale,
        "largest_notional_size": int(size[k_not]),
        "mean_size": float(r_size.mean()),
        "root_notional": root_n / scale,
        "endogenous_count": int(m - roots.size),
        "endogenous_notional": (all_n - root_n) / scale,
        "amplification": amp,
        "amplification_note": note,
        "endogenous_share": (all_n - root_n) / all_n if all_n > 0 else None,
        "by_generation": by_gen,
    }


def _price(tables: Tables, cv: dict[str, Any], counterfactual: Tables | None) -> dict[str, Any]:
    o_und = _col(tables, "oracle", "underlying", np.int64)
    o_time = _col(tables, "oracle", "time").astype(np.float64)
    o_index = _col(tables, "oracle", "index").astype(np.float64)
    o_true = _col(tables, "oracle", "true").astype(np.float64)
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
    m_mark = _col(tables, "market", "mark").astype(np.float64)
    cf_market = _MarketSamples(counterfactual) if counterfactual is not None else None
    # prints on the book only: backstop, ADL and auction transfers happen off-book at
    # discounts or bankruptcy prices and are not market prices
    on_book = (_col(tables, "trades", "flags", np.int64) & OFF_BOOK_FLAGS) == 0
    t_ins = _col(tables, "trades", "instrument", np.int64)
    t_price = _col(tables, "trades", "price").astype(np.float64)
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
            "amplification_vs_true": _ratio(venue_dd, true_dd) if venue_dd is not None and true_dd else None,
        }
        if cf_market is not None:
            cf_dd = _drawdown(_mid_series(*cf_market.book_sides(cf_market.rows(k))))
            row["counterfactual_venue_drawdown"] = cf_dd
            row["amplification_vs_counterfactual"] = (_ratio(venue_dd, cf_dd)
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


def _counterfactual(tables: Tables, cv: dict[str, Any], twin: Tables, price: dict[str, Any]) -> dict[str, Any]:
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
        twin_mark_dd = _drawdown(_col(twin, "market", "mark").astype(np.float64)[t_market.rows(k)])
        on_book = (_col(twin, "trades", "flags", np.int64) & OFF_BOOK_FLAGS) == 0
        t_ins = _col(twin, "trades", "instrument", np.int64)
        twin_trade_dd = _drawdown(_col(twin, "trades", "price").astype(np.float64)[(t_ins == k) & on_book])
    out: dict[str, Any] = {"instrument": worst}
    for name, main, other in (
            ("venue_drawdown", row.get("venue_drawdown"), row.get("counterfactual_venue_drawdown")),
            ("trade_drawdown", row.get("trade_drawdown"), twin_trade_dd),
            ("mark_drawdown", row.get("mark_drawdown"), twin_mark_dd)):
        ratio, diff = _vs(main, other, name, notes)
        out.update({name: main, f"twin_{name}": other, f"{name}_amplification": ratio, f"{name}_difference": diff})
    notional = float(_col(tables, "liquidations", "notional").astype(np.float64).sum()) / scale
    twin_notional = float(_col(twin, "liquidations", "notional").astype(np.float64).sum()) / scale
    bad, twin_bad = _bad_debt(tables, cv)["total"], _bad_debt(twin, cv)["total"]
    out["liquidations"] = int(_col(tables, "liquidations", "liq_id").size)
    out["twin_liquidations"] = int(_col(twin, "liquidations", "liq_id").size)
    for name, main, other in (("liquidated_notional", notional, twin_notional), ("bad_debt", bad, twin_bad)):
        ratio, diff = _vs(main, other, name, notes)
        out.update({name: main, f"twin_{name}": other, f"{name}_ratio": ratio, f"{name}_difference": diff})
    # the control: the twin's book never printed a liquidation (must be 0)
    flags = _col(twin, "trades", "flags", np.int64)
    out["twin_liquidation_fills_on_book"] = int(((flags & int(FillFlag.LIQUIDATION)) != 0).sum())
    out["notes"] = notes
    return out


_ROUNDING = 1e-12  # relative size of a float-rounding difference


def _procyclicality(t: np.ndarray, x: np.ndarray, start: float, horizon: float) -> dict[str, Any]:
    """Peak-to-trough and the largest ``horizon``-second increase of the series ``x`` sampled at
    times ``t`` (sorted), on the samples at or after ``start`` only.

    peak-to-trough = max / min of the positive values in the window; the increase at sample k is
    x_k - x_j with j the last window sample at or before t_k - horizon (none: no increase at k);
    the relative increase x_k / x_j - 1 (x_j > 0), its largest found independently. An increase
    within 1e-12 of x_j is float rounding and counts as 0."""
    keep = (t >= start) & np.isfinite(x)
    t, x = t[keep], x[keep]
    out: dict[str, Any] = {"samples": int(t.size), "peak": None, "trough": None, "peak_to_trough_ratio": None,
                           "max_increase": None, "max_increase_time": None, "max_increase_relative": None,
                           "max_increase_relative_time": None}
    if t.size == 0:
        return out
    out["peak"], out["trough"] = float(x.max()), float(x.min())
    positive = x[x > 0]
    if positive.size:
        out["peak_to_trough_ratio"] = float(positive.max() / positive.min())
    base = np.searchsorted(t, t - horizon, side="right") - 1
    ok = base >= 0
    if ok.any():
        k = np.flatnonzero(ok)
        inc = x[k] - x[base[k]]
        # a change within float rounding of the base (a constant rate recomputed at new prices) is none
        inc[np.abs(inc) <= _ROUNDING * np.abs(x[base[k]])] = 0.0
        i = int(np.argmax(inc))
        out["max_increase"], out["max_increase_time"] = float(inc[i]), float(t[k[i]])
        den = x[base[k]]
        rel_ok = den > 0
        if rel_ok.any():
            rel = np.full(k.size, -np.inf)
            rel[rel_ok] = np.where(inc[rel_ok] == 0.0, 0.0, x[k[rel_ok]] / den[rel_ok] - 1.0)
            j = int(np.argmax(rel))
            out["max_increase_relative"], out["max_increase_relative_time"] = float(rel[j]), float(t[k[j]])
    return out


def _in_money(block: dict[str, Any], scale: float) -> dict[str, Any]:
    """A ``_procyclicality`` block of a money series, converted to quote units."""
    return {k: (v / scale if k in ("peak", "trough", "max_increase") and v is not None else v)
            for k, v in block.items()}


def _rate(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _margin(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    start, horizon = cv["measure_from"], cv["horizon"]
    t = _col(tables, "margin_totals", "time").astype(np.float64)
    im = _col(tables, "margin_totals", "im").astype(np.float64)
    mm = _col(tables, "margin_totals", "mm").astype(np.float64)
    eq = _col(tables, "margin_totals", "equity").astype(np.float64)
    gross = _col(tables, "margin_totals", "gross").astype(np.float64)
    order = np.argsort(t, kind="stable")
    t, im, mm, eq, gross = t[order], im[order], mm[order], eq[order], gross[order]
    rate = _rate(im, gross)
    rt = _col(tables, "reference_margin", "time").astype(np.float64)
    r_order = np.argsort(rt, kind="stable")
    rt = rt[r_order]
    ref_rate = _rate(_col(tables, "reference_margin", "im").astype(np.float64)[r_order],
                     _col(tables, "reference_margin", "gross").astype(np.float64)[r_order])
    reference = _procyclicality(rt, ref_rate, start, horizon)
    in_window = (rt >= start) & np.isfinite(ref_rate)
    reference["at_measure_from"] = float(ref_rate[in_window][0]) if in_window.any() else None
    reference["final"] = float(ref_rate[np.isfinite(ref_rate)][-1]) if np.isfinite(ref_rate).any() else None
    out: dict[str, Any] = {
        "measure_from": start,
        "horizon_seconds": horizon,
        # procyclicality, from measure_from on: the population's total IM, its rate IM / gross,
        # and the rate of the fixed reference portfolio
        "population_im": _in_money(_procyclicality(t, im, start, horizon), scale),
        "population_rate": _procyclicality(t, rate, start, horizon),
        "reference_rate": reference,
    }
    if t.size == 0:
        out.update({"im_initial": None, "im_peak": None, "im_peak_time": None, "im_final": None, "mm_peak": None,
                    "gross_peak": None, "max_utilisation": None, "im_over_gross": None, "mm_over_gross": None})
        return out
    k_peak = int(np.argmax(im))
    util = _rate(im, eq)
    # samples come at re-valuations (irregular): each value holds until the next sample, the last
    # until the end of the episode
    held = np.diff(np.append(t, max(cv["duration"], float(t[-1]))))
    if not held.any():
        held = np.ones_like(held)

    def time_avg(x: np.ndarray) -> float | None:
        ok = np.isfinite(x)
        w = held[ok]
        return float(np.average(x[ok], weights=w)) if ok.any() and w.sum() > 0 else None
    out.update({
        # levels over the whole episode
        "im_initial": float(im[0]) / scale,
        "im_peak": float(im[k_peak]) / scale,
        "im_peak_time": float(t[k_peak]),
        "im_final": float(im[-1]) / scale,
        "mm_peak": float(mm.max()) / scale,
        "gross_peak": float(gross.max()) / scale,
        "max_utilisation": float(np.nanmax(util)) if np.isfinite(util).any() else None,
        # capital: IM (MM) over the gross notional of the same worst-case lots, time-weighted
        "im_over_gross": time_avg(rate),
        "mm_over_gross": time_avg(_rate(mm, gross)),
    })
    return out


def _delays(tables: Tables) -> dict[str, Any]:
    breach = _col(tables, "liquidations", "breach_time").astype(np.float64)
    start = _col(tables, "liquidations", "start_time").astype(np.float64)
    end = _col(tables, "liquidations", "end_time").astype(np.float64)
    return {"breach_to_start": _dist(start - breach), "breach_to_end": _dist(end - breach),
            "open_at_end": int((~np.isfinite(end)).sum())}


def _slippage(tables: Tables) -> dict[str, Any]:
    policy = _col(tables, "liquidation_steps", "policy").astype(str)
    lots = _col(tables, "liquidation_steps", "lots", np.int64)
    notional = _col(tables, "liquidation_steps", "notional").astype(np.float64)
    avg = _col(tables, "liquidation_steps", "avg_price").astype(np.float64)
    mark = _col(tables, "liquidation_steps", "mark").astype(np.float64)
    ok = np.isfinite(avg) & np.isfinite(mark) & (mark > 0) & (lots != 0) & (notional > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        bps = np.where(ok, np.sign(lots) * (avg - mark) / mark * 1e4, np.nan)

    def wavg(m: np.ndarray) -> float | None:
        m = m & ok
        return float(np.average(bps[m], weights=notional[m])) if m.any() else None

    return {
        "mean_bps": wavg(np.ones(policy.size, dtype=bool)),
        "max_bps": float(np.nanmax(bps)) if ok.any() else None,
        "by_policy": {p: wavg(policy == p) for p in sorted(set(POLICIES) | set(policy.tolist()))},
    }


def _solvency(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    """Deficits at the end, with collateral at published prices and at true prices (an oracle
    stuck above the market hides the difference); ``kind`` 0 is the insurance fund, 1 the
    bad-debt row's recoveries in kind, 2 the traders."""
    if "solvency" not in tables or _col(tables, "solvency", "account").size == 0:
        return {}
    scale = cv["scale"]
    kind = _col(tables, "solvency", "kind", np.int64)
    seen = _col(tables, "solvency", "equity").astype(np.float64) / scale
    true = _col(tables, "solvency", "equity_true_collateral").astype(np.float64) / scale
    traders = kind == 2
    fund_seen, fund_true = float(seen[kind == 0].sum()), float(true[kind == 0].sum())
    rec_seen, rec_true = float(seen[kind == 1].sum()), float(true[kind == 1].sum())
    deficit_seen = float(np.maximum(-seen[traders], 0.0).sum())
    deficit_true = float(np.maximum(-true[traders], 0.0).sum())
    return {
        "insolvent_accounts": int((seen[traders] < 0).sum()),
        "insolvent_accounts_at_true_prices": int((true[traders] < 0).sum()),
        "deficit": deficit_seen,
        "deficit_at_true_prices": deficit_true,
        "insurance_fund_value": fund_seen,
        "insurance_fund_value_at_true_prices": fund_true,
        "bad_debt_recoveries": rec_seen,
        "bad_debt_recoveries_at_true_prices": rec_true,
        "hidden_loss": deficit_true - deficit_seen + (fund_seen - fund_true) + (rec_seen - rec_true),
    }


# ------------------------------------------------------------------------------------ public
def summarise(config: Any, tables: Tables, stats: Mapping[str, Any] | None = None,
              counterfactual: Tables | None = None) -> dict[str, Any]:
    """The deterministic summary of one run (see ``METRICS_DOC``). ``counterfactual`` is the tables
    of the same run without feedback (the API layer produces it); with it the price amplification
    against the counterfactual venue is reported too."""
    cv = _config_view(config)
    stats = dict(stats or {})
    run = {
        "name": getattr(config, "name", None),
        "seed": getattr(config, "seed", None),
        "duration": cv["duration"],
        "regime": cv["regime"],
        "quote": cv["quote"],
        "quote_decimals": int(config.market.quote.decimals),
    }
    for key in ("accounts", "events", "orders", "cancels", "fills", "rejects", "oracle_publications",
                "revaluations"):
        if key in stats and stats[key] is not None:
            run[key] = int(stats[key])
    summary = {
        "run": run,
        "bad_debt": _bad_debt(tables, cv),
        "insurance_fund": _insurance(tables, cv),
        "losses": _losses(tables, cv),
        "liquidations": _liquidations(tables, cv),
        "adl": _adl(tables, cv),
        "cascades": _cascades(tables, cv),
        "price": _price(tables, cv, counterfactual),
        "margin": _margin(tables, cv),
        "liquidation_delay": _delays(tables),
        "slippage": _slippage(tables),
        "solvency": _solvency(tables, cv),
        "groups": group_margin(tables, cv["scale"]),
    }
    if counterfactual is not None:
        summary["counterfactual"] = _counterfactual(tables, cv, counterfactual, summary["price"])
    return rnd(summary)


def timing(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Wall-clock figures of a run (not deterministic; kept out of the summary)."""
    out = {k: stats[k] for k in ("wall_seconds", "peak_memory_bytes") if k in stats}
    wall, events = stats.get("wall_seconds"), stats.get("events")
    if wall and events:
        out["events_per_second"] = events / wall
    sim = stats.get("simulated_seconds")
    if wall and sim:
        out["simulated_seconds_per_wall_second"] = sim / wall
    return {k: (None if v is None else (float(v) if isinstance(v, (float, np.floating)) else v))
            for k, v in out.items()}


def flatten(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay lists (callers encode them)."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


# The headline figures reports and comparison tables show (flattened key, label).
HEADLINE = (
    ("bad_debt.total", "bad debt"),
    ("bad_debt.accounts", "accounts leaving bad debt"),
    ("insurance_fund.min", "insurance fund minimum"),
    ("insurance_fund.final", "insurance fund final"),
    ("liquidations.count", "liquidations"),
    ("liquidations.notional", "liquidated notional"),
    ("adl.notional", "ADL notional"),
    ("losses.socialised", "socialised losses"),
    ("losses.borne_by_others", "losses borne by others (not the liquidated accounts)"),
    ("losses.who_paid.defaulter_margin", "paid by: defaulters' own margin"),
    ("losses.who_paid.defaulter_default_fund", "paid by: defaulters' default-fund contributions"),
    ("losses.who_paid.liquidation_penalties", "paid by: liquidation penalties"),
    ("losses.who_paid.insurance_fund", "paid by: insurance fund payouts"),
    ("losses.who_paid.ccp_capital", "paid by: CCP capital"),
    ("losses.who_paid.survivors_default_fund", "paid by: survivors' default fund"),
    ("losses.who_paid.assessments", "paid by: assessments"),
    ("losses.who_paid.vm_gains_haircut", "paid by: VM gains haircut"),
    ("losses.who_paid.adl", "paid by: ADL counterparties (vs mark)"),
    ("losses.who_paid.socialised", "paid by: socialised loss"),
    ("losses.who_paid.backstop_vault", "paid by: backstop vault losses"),
    ("losses.who_paid.bad_debt", "paid by: nobody (bad debt)"),
    ("losses.backstop_vault.pnl_final", "backstop vault P&L"),
    ("solvency.bad_debt_recoveries", "bad-debt recoveries in kind"),
    ("solvency.hidden_loss", "loss hidden by the oracle (true prices)"),
    ("price.amplification_vs_counterfactual", "price amplification vs no-feedback run"),
    ("counterfactual.mark_drawdown_amplification", "mark drawdown amplification vs no-feedback twin"),
    ("counterfactual.liquidated_notional_ratio", "liquidated notional vs no-feedback twin (ratio)"),
    ("counterfactual.bad_debt_difference", "bad debt minus no-feedback twin's"),
    ("cascades.count", "cascades"),
    ("cascades.max_generation", "deepest generation"),
    ("cascades.largest_size", "largest cascade (liquidations)"),
    ("cascades.amplification", "liquidation amplification"),
    ("price.max_venue_drawdown", "venue drawdown (worst instrument)"),
    ("price.true_drawdown", "true drawdown (same underlying)"),
    ("price.amplification_vs_true", "price amplification vs true path"),
    ("margin.im_peak", "peak total IM"),
    ("margin.population_im.peak_to_trough_ratio", "total IM peak-to-trough ratio (from measure_from)"),
    ("margin.population_im.max_increase", "largest total IM increase over the horizon"),
    ("margin.reference_rate.peak_to_trough_ratio", "reference portfolio margin rate peak-to-trough"),
    ("margin.reference_rate.max_increase_relative", "reference portfolio margin rate: largest rise over the horizon"),
    ("margin.im_over_gross", "IM / gross notional (lower = less capital)"),
    ("liquidation_delay.breach_to_start.mean", "breach to first step (s, mean)"),
    ("slippage.mean_bps", "liquidation slippage (bps)"),
)


def headline(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of a summary, label -> value (for consoles and comparison tables)."""
    flat = flatten(summary)
    return {label: flat.get(key) for key, label in HEADLINE}
