"""Margin backtesting along a price path, vectorised over portfolios and margin runs.

A *margin run* is a day t of the path on which every portfolio's requirement is computed from the
market of day t (and, for the VaR regimes, the price history up to and including t). Its
*realised loss* is what the same positions lose over the margin period of risk that follows:
L = -(value at t + h - value at t), h = ``horizon_days``. An *exceedance* is L > requirement.

Portfolios are held constant: the same lots of the same contracts on every run. An option keeps
its strike and its days to expiry on every run (it is rolled into the same-strike, same-tenor
contract) and is valued with Black-76 at its underlying's path volatility; at t + h it is h days
older. Linear contracts are marked at their underlying's price.

Cost: the realised losses of all runs and portfolios are one (runs x instruments) @ (instruments x
portfolios) product; the requirements are one ``requirements_along`` call over every portfolio and
every run (a VaR regime, whose memory must see the runs in time order, is called run by run; VaR
regimes with a scenario set in common go through the runs together and measure it once:
:func:`requirement_series_shared`);
the statistics are array reductions over the runs x portfolios matrices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.core.instruments import InstrumentTable
from clearing.margin.base import MarginRegime, MarketPath, Positions, put_transposed
from clearing.margin.var import SharedMeasures, VaRRegime
from sim.market.market_config import DEFAULT_QUOTE
from sim.market.pricing import black76_price
from sim.experiment.backtest import stats

DAY_SECONDS = 86_400.0
YEAR_DAYS = 365.0
# a portfolio file's prices carry no currency of their own: they are in the market's default quote
# (DEFAULT_QUOTE), as ``clearsim margin`` labels them; an episode's accounts are in its market's quote


@dataclass(slots=True)
class Book:
    """The portfolios under test: an instrument table and accounts x instruments lots."""

    table: InstrumentTable
    positions: Positions
    names: list[str]
    context: dict[str, Any] = field(default_factory=dict)  # regime context (SPAN arrays, depth, ...)
    quote: str = DEFAULT_QUOTE  # the currency of prices, requirements and losses


def run_days(n_rows: int, warmup: int, horizon: int, step: int) -> np.ndarray:
    """Row indices of the margin runs: warmup, warmup + step, ... while t + horizon is on the path."""
    return np.arange(warmup, n_rows - horizon, step, dtype=np.int64)


def marks_along(table: InstrumentTable, prices: np.ndarray, vols: np.ndarray, age_days: float = 0.0) -> np.ndarray:
    """(rows, instruments) marks: linear contracts at the underlying's price, options by Black-76 at
    their days to expiry less ``age_days`` and the underlying's vol of that row."""
    u = table.underlying_index
    marks = prices[:, u].copy()
    opt = np.flatnonzero(table.is_option)
    if opt.size:
        years = np.maximum(table.years_to_expiry(0.0)[opt] - age_days / YEAR_DAYS, 0.0)
        marks[:, opt] = black76_price(prices[:, u[opt]], table.strike[opt], years, vols[:, u[opt]],
                                      table.is_call[opt])
    return marks


def realised_losses(book: Book, prices: np.ndarray, vols: np.ndarray, runs: np.ndarray, horizon: int) -> np.ndarray:
    """(runs, portfolios) loss over the ``horizon`` rows after each run (a gain is a negative loss)."""
    t = book.table
    now = marks_along(t, prices[runs], vols[runs])
    later = marks_along(t, prices[runs + horizon], vols[runs + horizon], age_days=float(horizon))
    per_lot = (later - now) * t.contract_units  # (R, I) P&L of one long lot
    loss = per_lot @ book.positions.dense.T
    # in place: a second (runs x portfolios) array costs more in fresh pages than the product itself
    return np.negative(loss, out=loss)


def _needs_history(regime: MarginRegime) -> VaRRegime | None:
    inner = getattr(regime, "base", regime)
    return inner if isinstance(inner, VaRRegime) else None


def requirement_series(regime: MarginRegime, book: Book, prices: np.ndarray, vols: np.ndarray, runs: np.ndarray,
                       requirement: str = "im", scale: float = 1.0) -> np.ndarray:
    """(runs, portfolios) requirement on each run, every portfolio at once.

    A VaR regime is called run by run in time order (its history is the path up to and including
    the run's row); any other regime gets the whole path of market states in one
    ``requirements_along`` call, which does the positions-only work once per book and the
    per-market work for many runs together -- the same figures as a call per run, to the bit."""
    return requirement_series_shared([regime], book, prices, vols, runs, requirement, [scale])[0]


def requirement_series_shared(regimes: list[MarginRegime], book: Book, prices: np.ndarray, vols: np.ndarray,
                              runs: np.ndarray, requirement: str = "im", scales: list[float] | None = None,
                              share: SharedMeasures | None = None) -> list[np.ndarray]:
    """:func:`requirement_series` of several regimes on the same book: the VaR regimes go through
    the runs together, each run's regimes one after the other, so that with a ``share`` store a
    scenario set two of them measure on a run (the same set, market and positions:
    ``VaRRegime.set_key``) is measured once and handed to the others. Each regime's series is the
    same bits as alone: it gets the figure it would have computed."""
    scales = [1.0] * len(regimes) if scales is None else scales
    marks = marks_along(book.table, prices[runs], vols[runs])
    path = MarketPath(now=0.0, underlying_prices=prices[runs], atm_vols=vols[runs], marks=marks,
                      vols=vols[runs][:, book.table.underlying_index])
    outs: list[np.ndarray] = []  # each regime's series, in the order of regimes
    walked = []  # (its series, regime, its VaR) of the regimes that need the history
    for regime in regimes:
        var = _needs_history(regime)
        if var is None:
            outs.append(regime.requirements_along(book.positions, path, requirement))
        else:
            series = np.empty((runs.size, book.positions.n_accounts))
            outs.append(series)
            walked.append((series, regime, var))
            var.share_measures(share)
    try:
        for k, row in enumerate(runs):  # one vectorised call per margin run and regime (over all portfolios)
            if share is not None:
                share.clear()  # a new run: new history, new market
            for series, regime, var in walked:
                var.set_history(prices[: row + 1])
                req = regime.requirements(book.positions, path.at(k))
                series[k] = req.im if requirement == "im" else req.mm
    finally:
        for _, _, var in walked:
            var.share_measures(None)
        if share is not None:
            share.clear()
    for out, scale in zip(outs, scales):
        if scale != 1.0:
            out *= scale
    return outs


# portfolios per block of :func:`evaluate`'s matrix reductions: a block's (runs x portfolios)
# slices (and their temporaries) stay in cache instead of streaming ten 100 MB matrices through
# memory once per figure (6x less CPU on 2,519 runs x 5,000 portfolios)
EVAL_BLOCK_BYTES = 1 << 17
EVAL_BAND = 128  # portfolios per transposed copy


def _column_figures(margin: np.ndarray, loss: np.ndarray, windows: Sequence[int]) -> dict[str, np.ndarray]:
    """The per-portfolio reductions of (runs, w) slices. Every figure is a function of its own
    column (counts, maxima, a contiguous sum per column), so a block's figures are the same bits
    as the whole matrix's."""
    hits = loss > margin
    shortfall = np.where(hits, loss - margin, 0.0)
    n00, n01, n10, n11 = stats.transition_counts(hits)
    out = {
        "exceedances": hits.sum(axis=0),
        # something at stake on some run, a requirement or a profit or loss (see :func:`evaluate`)
        "tested": (margin != 0).any(axis=0) | (loss != 0).any(axis=0),
        "n00": n00, "n01": n01, "n10": n10, "n11": n11,
        "largest_shortfall": shortfall.max(axis=0) if margin.shape[0] else np.zeros(margin.shape[1]),
        # per-portfolio sums over a contiguous row each: the same bits whatever block the portfolio is in
        "shortfall_total": np.ascontiguousarray(shortfall.T).sum(axis=1),
        "mean_requirement": (np.ascontiguousarray(margin.T).mean(axis=1) if margin.shape[0]
                             else np.full(margin.shape[1], np.nan)),
        "peak_to_trough": stats.peak_to_trough(margin),
    }
    for w in windows:
        out[f"inc_{w}"], out[f"rel_{w}"] = stats.largest_increase(margin, int(w))
    return out


def evaluate(margin: np.ndarray, loss: np.ndarray, coverage: float, significance: float,
             windows: tuple[int, ...] | list[int] = (5, 20)) -> dict[str, np.ndarray]:
    """Per-portfolio backtest figures from (runs, portfolios) requirement and loss matrices.

    The matrices are reduced a block of portfolios at a time (transposed copies, so each
    portfolio's runs are contiguous and the block's temporaries stay in cache); the tests then
    run on the per-portfolio vectors."""
    from scipy.stats import chi2

    n_runs, n_port = margin.shape
    width = max(8, EVAL_BLOCK_BYTES // (8 * max(n_runs, 1)))
    band = max(width, EVAL_BAND)
    parts = []
    for a0 in range(0, n_port, band):
        # (band, runs) C-order copies: a wide band per pass over the rows (a narrow one costs a page
        # walk per row per few bytes), then reduced a cache-sized block of portfolios at a time;
        # the blocks' transposes are (runs, w) views whose columns are contiguous
        w0 = min(band, n_port - a0)
        mb, lb = np.empty((w0, n_runs)), np.empty((w0, n_runs))
        put_transposed(mb, margin[:, a0:a0 + w0])  # tile by tile: a plain transposed copy strides a row per element
        put_transposed(lb, loss[:, a0:a0 + w0])
        for a in range(0, mb.shape[0], width):
            parts.append(_column_figures(mb[a:a + width].T, lb[a:a + width].T, windows))
    if parts:
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:
        cols = _column_figures(margin, loss, windows)
    n = np.full(n_port, n_runs, dtype=np.int64)
    x = cols["exceedances"]
    # A portfolio with no requirement and no profit or loss on any run (a flat book) is not a test
    # of the model: "loss > requirement" is 0 > 0 on every run whatever the model, so counting it
    # would add runs that cannot break to the headline's denominator and a book to the green zone.
    # Its rate, coverage, statistics, p-values and zone are undefined (nan, NO_ZONE) and it rejects
    # nothing; :func:`aggregate` pools over the tested portfolios only.
    tested = cols["tested"]
    pof_lr, pof_p = stats.kupiec_pof(x, n, coverage)
    ind_lr, ind_p = stats.christoffersen_from_counts(cols["n00"], cols["n01"], cols["n10"], cols["n11"])
    cc_lr = pof_lr + ind_lr
    cc_p = chi2.sf(cc_lr, 2)
    rate = np.where(n > 0, x / np.maximum(n, 1), np.nan)
    probability = stats.cumulative_probability(x, n, coverage)
    pof_lr, pof_p, ind_lr, ind_p, cc_lr, cc_p, rate, probability = (
        np.where(tested, v, np.nan) for v in (pof_lr, pof_p, ind_lr, ind_p, cc_lr, cc_p, rate, probability))

    out: dict[str, np.ndarray] = {
        "runs": n,
        "tested": tested,
        "exceedances": x,
        "exceedance_rate": rate,
        "coverage": 1.0 - rate,
        "kupiec_lr": pof_lr,
        "kupiec_p": pof_p,
        "kupiec_reject": tested & (pof_p < significance),
        "christoffersen_lr": ind_lr,
        "christoffersen_p": ind_p,
        "christoffersen_reject": tested & (ind_p < significance),
        "conditional_coverage_lr": cc_lr,
        "conditional_coverage_p": cc_p,
        "conditional_coverage_reject": tested & (cc_p < significance),
        "traffic_light_probability": probability,
        "zone": np.where(tested, stats.traffic_light(x, n, coverage), stats.NO_ZONE),
        "largest_shortfall": cols["largest_shortfall"],
        "shortfall_total": cols["shortfall_total"],
        "mean_requirement": cols["mean_requirement"],
        "peak_to_trough": cols["peak_to_trough"],
    }
    for w in windows:
        out[f"largest_{w}_run_increase"] = cols[f"inc_{w}"]
        out[f"largest_{w}_run_increase_relative"] = cols[f"rel_{w}"]
    return out


@dataclass(slots=True)
class RegimeBacktest:
    """One regime's backtest: per-portfolio figures and the per-run totals the report plots."""

    label: str
    per_portfolio: dict[str, np.ndarray]
    margin_total: np.ndarray  # (runs,)
    loss_total: np.ndarray  # (runs,) realised loss of all portfolios together
    exceeding: np.ndarray  # (runs,) portfolios with an exceedance on the run
    shown_margin: np.ndarray  # (runs, shown) requirement of the portfolios the report plots
    shown_loss: np.ndarray


def backtest_regimes(labels: list[str], regimes: list[MarginRegime], book: Book, prices: np.ndarray,
                     vols: np.ndarray, runs: np.ndarray, loss: np.ndarray, *, requirement: str = "im",
                     scales: list[float] | None = None, coverage: float = 0.99, significance: float = 0.05,
                     windows: tuple[int, ...] | list[int] = (5, 20), shown: np.ndarray | None = None,
                     share: SharedMeasures | None = None) -> list[RegimeBacktest]:
    """Backtest figures of several regimes on one book (one regime: a list of one), their
    requirements computed together (:func:`requirement_series_shared`: with ``share``, the VaR
    regimes' common scenario sets measured once): each result the same bits as the regime's alone."""
    margins = requirement_series_shared(regimes, book, prices, vols, runs, requirement, scales, share)
    shown = np.zeros(0, dtype=np.int64) if shown is None else shown
    loss_total, shown_loss = loss.sum(axis=1), loss[:, shown]  # the same for every regime of the block
    out = []
    for label in labels:
        margin = margins.pop(0)  # evaluated and dropped one at a time: each is a (runs x portfolios) matrix
        figures = evaluate(margin, loss, coverage, significance, windows)
        out.append(RegimeBacktest(label=label, per_portfolio=figures, margin_total=margin.sum(axis=1),
                                  loss_total=loss_total, exceeding=(loss > margin).sum(axis=1),
                                  shown_margin=margin[:, shown], shown_loss=shown_loss))
        del margin
    return out


def merge(label: str, parts: list[RegimeBacktest]) -> RegimeBacktest:
    """One regime's result from its blocks of portfolios, in block order."""
    return RegimeBacktest(
        label=label,
        per_portfolio={k: np.concatenate([p.per_portfolio[k] for p in parts]) for k in parts[0].per_portfolio},
        margin_total=np.sum([p.margin_total for p in parts], axis=0),
        loss_total=np.sum([p.loss_total for p in parts], axis=0),
        exceeding=np.sum([p.exceeding for p in parts], axis=0),
        shown_margin=np.hstack([p.shown_margin for p in parts]),
        shown_loss=np.hstack([p.shown_loss for p in parts]))


def aggregate(result: RegimeBacktest, significance: float) -> dict[str, Any]:
    """The regime's headline (what summary.json and the report's table show). The pooled rate and
    coverage, the rejections and the zones are over the tested portfolios only (:func:`evaluate`):
    ``exceedance_rate`` = ``exceedances`` / ``observations``, ``observations`` = ``tested`` x
    ``runs``; ``untested`` says how many portfolios are left out."""
    f = result.per_portfolio
    n_port = int(f["runs"].size)
    tested = f["tested"].astype(bool)
    n_tested = int(tested.sum())
    zones = np.bincount(f["zone"][tested].astype(np.int64), minlength=len(stats.ZONES))
    observations = int(f["runs"][tested].sum())
    total_x = int(f["exceedances"][tested].sum())

    def med(key: str) -> float | None:
        v = f[key][np.isfinite(f[key])]
        return float(np.median(v)) if v.size else None

    return {
        "portfolios": n_port,
        "tested": n_tested,
        "untested": n_port - n_tested,
        "runs": int(f["runs"][0]) if n_port else 0,
        "observations": observations,
        "exceedances": total_x,
        "exceedance_rate": total_x / observations if observations else None,
        "coverage": 1.0 - total_x / observations if observations else None,
        "kupiec_rejected": int(f["kupiec_reject"].sum()),
        "christoffersen_rejected": int(f["christoffersen_reject"].sum()),
        "conditional_coverage_rejected": int(f["conditional_coverage_reject"].sum()),
        "zones": {name: int(zones[k]) for k, name in enumerate(stats.ZONES)},
        "largest_shortfall": float(f["largest_shortfall"].max()) if n_port else 0.0,
        "median_peak_to_trough": med("peak_to_trough"),
        "significance": significance,
    }


def per_portfolio_rows(label: str, names: list[str], figures: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns of the portfolios table for one regime (zone as its name, None for an untested portfolio)."""
    n = len(names)
    cols: dict[str, np.ndarray] = {"regime": np.array([label] * n, dtype=object),
                                   "portfolio": np.array(names, dtype=object)}
    for key, value in figures.items():
        cols[key] = np.array([stats.zone_name(z) for z in value], dtype=object) if key == "zone" else value
    return cols
