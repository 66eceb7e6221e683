"""``clearsim backtest``: load a backtest file, run every regime over the path, write the results.

Everything is validated before the path is generated: the file (field paths and reasons), the
portfolio file, every regime, and that each instrument's underlying has a price path. The results
folder is written atomically: ``summary.json`` (per regime: exceedances, coverage, tests and zones
over the tested portfolios, the untested beside them, largest shortfall, procyclicality),
``portfolios.parquet`` (a row per regime x portfolio), ``runs.parquet`` (a row per regime x margin
run: totals, and the plotted portfolios' requirement and realised loss), ``config.yaml`` and
``report.html``.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import ValidationError

from clearing.margin.base import Positions
from sim.experiment.backtest.engine import Book, RegimeBacktest, aggregate, backtest_regimes, merge, per_portfolio_rows, \
    realised_losses, run_days
from sim.experiment.backtest.stats import zone_name
from sim.experiment.costs import backtest_task_cost
from sim.experiment.errors import ConfigError
from sim.experiment.config import format_validation_error, margin_adapter
from sim.experiment.io import read_yaml
from sim.experiment.regime_labels import regime_label
from sim.experiment.backtest.config import DAY_SECONDS, BacktestConfig

if TYPE_CHECKING:
    from sim.core.instruments import InstrumentTable


VAR_REGIMES = ("var", "var_apc")


@dataclass(slots=True)
class BacktestOutput:
    config: BacktestConfig
    summary: dict[str, Any]
    results: dict[str, RegimeBacktest]
    names: list[str]
    days: np.ndarray  # (runs,) row of each margin run
    directory: Path | None


@dataclass(slots=True)
class _Plan:
    config: BacktestConfig
    root: Path
    book: Book
    regimes: dict[str, tuple[Any, float]]  # label -> (validated regime config, scale)


# ------------------------------------------------------------------------------------ loading
def load_backtest(source: BacktestConfig | dict | str | Path) -> tuple[BacktestConfig, Path]:
    """The validated config and the folder its relative paths start from (raises ``ConfigError``)."""
    if isinstance(source, BacktestConfig):
        return source, Path.cwd()
    if isinstance(source, dict):
        data, root, where = dict(source), Path.cwd(), "<backtest>"
    else:
        data, root, where = read_yaml(Path(source)), Path(source).parent, str(source)
    try:
        return BacktestConfig.model_validate(data), root
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where, BacktestConfig)) from None


def _relative(root: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else root / p


def _regime_entries(cfg: BacktestConfig, root: Path) -> dict[str, tuple[Any, float]]:
    from clearing.margin.config import VaRConfig, parse_margin_config

    # (label, spec, where): a regime_set's entries have no label of their own (None: named by regime below)
    specs: list[tuple[str | None, Any, str]] = [(label, spec, f"regimes.{label}")
                                                for label, spec in cfg.regimes.items()]
    if cfg.regime_set is not None:
        data = read_yaml(_relative(root, cfg.regime_set))
        listed = data.get("compare_regimes")
        if not isinstance(listed, list) or not listed:
            raise ConfigError(f"regime_set: {cfg.regime_set} has no compare_regimes list")
        for k, spec in enumerate(listed):
            specs.append((None, spec, f"regime_set ({cfg.regime_set}) compare_regimes.{k}"))
    out: dict[str, tuple[Any, float]] = {}
    for label, spec, where in specs:
        spec = {"regime": spec} if isinstance(spec, str) else copy.deepcopy(spec)
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: a regime is a registry name or a mapping with a `regime` key")
        scale = spec.pop("scale", 1.0)
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 < scale < 1e6:
            raise ConfigError(f"{where}.scale: must be a positive number, got {scale!r}")
        try:
            margin = parse_margin_config(spec)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, where, margin_adapter())) from None
        # isinstance rather than ``regime in VAR_REGIMES``: the same test (VaRConfig's regime is exactly
        # var or var_apc), written so the type checker knows the config has mpor_days
        if isinstance(margin, VaRConfig) and cfg.warmup_days <= margin.mpor_days:
            raise ConfigError(f"{where}: a VaR regime needs warmup_days ({cfg.warmup_days}) above its mpor_days "
                              f"({margin.mpor_days:g}) so the first run has scenarios")
        # a regime_set entry may carry its own label; a repeat is named as `clearsim compare` names it
        out[regime_label(margin, out, where, label=label, scale=float(scale))] = (margin, float(scale))
    return out


def _book(cfg: BacktestConfig, root: Path) -> Book:
    if cfg.portfolios.episode is not None:
        return _episode_book(cfg, root)
    from sim.experiment.portfolio import build_book, load_portfolio

    assert cfg.portfolios.file is not None  # PortfolioSource holds exactly one of file and episode
    path = _relative(root, cfg.portfolios.file)
    try:
        pf = load_portfolio(path)
    except ConfigError as exc:  # the file's own error (missing, unreadable, invalid), under the field naming it
        raise ConfigError(f"portfolios.file: {exc}") from None
    table, _market, positions, names, context = build_book(pf)
    context.pop("history", None)  # the backtest's history is its own path
    _check_underlyings(cfg, [(ins.symbol, ins.underlying) for ins in table.instruments], "portfolios.file")
    lots = positions.dense
    if cfg.portfolios.random is not None:
        rnd = cfg.portfolios.random
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed if rnd.seed is None else rnd.seed, 17]))
        held = np.maximum(rng.poisson(rnd.per_account, rnd.count), 1)
        account = np.repeat(np.arange(rnd.count), held)
        instrument = rng.integers(0, len(table), account.size)
        size = rng.integers(1, rnd.max_lots + 1, account.size) * rng.choice([-1.0, 1.0], account.size)
        random_lots = Positions.from_coo(rnd.count, len(table), account, instrument, size).dense
        width = len(str(rnd.count - 1))
        random_names = [f"random_{k:0{width}d}" for k in range(rnd.count)]
        if cfg.portfolios.include_file_accounts:
            lots, names = np.vstack([lots, random_lots]), list(names) + random_names
        else:
            lots, names = random_lots, random_names
    # quote: the default (DEFAULT_QUOTE), a portfolio file naming no currency
    return Book(table=table, positions=Positions(np.ascontiguousarray(lots)), names=list(names), context=context)


def _check_underlyings(cfg: BacktestConfig, symbols: list[tuple[str, str]], where: str) -> None:
    known = set(cfg.paths.names())
    for symbol, underlying in symbols:
        if underlying not in known:
            raise ConfigError(f"{where}: instrument {symbol} has underlying {underlying!r}, which has no price path "
                              f"(paths define {sorted(known)})")


def _episode_book(cfg: BacktestConfig, root: Path) -> Book:
    """The trader accounts holding a position at ``at`` seconds into the episode. Dated contracts keep
    the time to expiry they have then (an option expiring before ``at`` is valued at intrinsic)."""
    import dataclasses

    from sim.core.instruments import InstrumentTable
    from clearing.ledger import FIRST_TRADER
    from sim.experiment.config import load_episode
    from sim.experiment.episode import run as run_episode

    # _book sends only an episode source here, and PortfolioSource requires `at` with `episode`
    assert cfg.portfolios.episode is not None and cfg.portfolios.at is not None
    path = _relative(root, cfg.portfolios.episode)
    at = float(cfg.portfolios.at)
    try:
        full = load_episode(path)  # validated as the file stands (its shocks and groups inside its duration)
    except ConfigError as exc:
        raise ConfigError(f"portfolios.episode: {exc}") from None
    # then run only to ``at``: shocks and groups starting later never act, and they would be refused
    # in an episode of duration ``at`` (nothing starts after the end), so the copy is not re-validated
    ep_cfg = full.model_copy(update={"duration": at, "outputs": full.outputs.model_copy(
        update={"report": False, "parquet": False, "counterfactual": False})})
    _check_underlyings(cfg, [(i.symbol, i.underlying) for i in ep_cfg.market.instruments], "portfolios.episode")
    ep = run_episode(ep_cfg, keep_episode=True).episode
    assert ep is not None  # keep_episode=True keeps it
    n = ep.ledger.n_accounts
    lots = ep.ledger.position[FIRST_TRADER:n].astype(np.float64)
    held = np.flatnonzero(np.abs(lots).sum(axis=1) > 0)
    if held.size == 0:
        raise ConfigError(f"portfolios.at: no trader account of {path} holds a position at {at:g} s")
    shifted = [dataclasses.replace(i, expiry=None if i.expiry is None else i.expiry - at) for i in ep.table.instruments]
    table = InstrumentTable.from_instruments(shifted)
    names = [f"account_{FIRST_TRADER + int(a)}" for a in held]
    return Book(table=table, positions=Positions(np.ascontiguousarray(lots[held])), names=names,
                quote=full.market.quote.name)


def prepare(source: BacktestConfig | dict | str | Path) -> _Plan:
    """Validate everything a backtest needs (raises ``ConfigError`` naming the field and reason)."""
    cfg, root = load_backtest(source)
    regimes = _regime_entries(cfg, root)
    book = _book(cfg, root)
    return _Plan(cfg, root, book, regimes)


# ------------------------------------------------------------------------------------ running
def path_of(cfg: BacktestConfig, table: InstrumentTable) -> tuple[np.ndarray, np.ndarray]:
    """(rows, underlyings) daily prices and vols in the table's underlying order."""
    from sim.market.paths import generate_paths
    from sim.core.streams import RandomStreams

    paths = generate_paths(cfg.paths, RandomStreams(cfg.seed).fresh("backtest/paths"),
                           duration=cfg.days * DAY_SECONDS, dt=DAY_SECONDS)
    cols = [paths.names.index(u) for u in table.underlyings]
    return paths.prices[:, cols], paths.vols[:, cols]


def backtest(source: BacktestConfig | dict | str | Path, output: str | Path | None = None, write: bool = True,
             workers: int = 1, force: bool = False) -> BacktestOutput:
    """Run a backtest; write its results folder unless ``write`` is False. An existing folder is
    replaced only if clearsim wrote it and ``force`` is given (an earlier backtest's too) -- checked
    before anything runs (``sim.experiment.outdir``).

    The portfolios are cut into the fewest blocks of at most ``CHUNK``, of equal size (fixed by
    the number of portfolios, so the figures do not depend on ``workers``); each (unit of regimes,
    block) is one task, run in this process or on a spawned process pool of ``workers``. A unit is
    one regime, or VaR regimes with a scenario set in common, which a task runs together so that
    the set is measured once (:func:`task_units`; each regime's figures are the bits of it alone).
    Regimes are per-account functions, so a block's requirements are the same as in one call over
    every portfolio."""
    if workers < 1:
        raise ConfigError(f"workers: must be at least 1, got {workers}")
    from sim.experiment.outdir import check_folder

    plan = prepare(source)
    cfg, book = plan.config, plan.book
    directory = Path(output or cfg.output or Path("results") / "backtest" / cfg.name) if write else None
    if directory is not None:
        check_folder(directory, force)  # a refusal costs nothing: before the path and the regimes run
    prices, vols = path_of(cfg, book.table)
    runs = run_days(prices.shape[0], cfg.warmup_days, cfg.horizon_days, cfg.run_step_days)
    shown = np.arange(min(cfg.report_portfolios, len(book.names)))
    n = book.positions.n_accounts
    edges = np.linspace(0, n, -(-n // CHUNK) + 1).round().astype(int)
    blocks = list(zip(edges[:-1].tolist(), edges[1:].tolist()))
    token = uuid.uuid4().hex  # this backtest's: a worker reuses a block's realised losses only within it
    units = task_units(plan.regimes)
    tasks = [_Task(tuple(plan.regimes[label] for label in unit), cfg, book.table, book.context,
                   book.positions.dense[a:b], prices, vols, runs, shown[(shown >= a) & (shown < b)] - a, (token, a))
             for a, b in blocks for unit in units]  # block-major: see _block_losses
    if workers == 1 or len(tasks) == 1:
        parts = [_run_task(t) for t in tasks]
        _LOSSES.clear()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from sim.experiment.executors import main_not_reimported, single_threaded_children

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            # dearest first (the VaR regimes' blocks take most of the time): the last tasks are short,
            # so neither worker idles at the end; ties keep the block-major order
            order = sorted(range(len(tasks)), key=lambda k: -backtest_task_cost(
                [m.regime for m, _ in tasks[k].margins], len(tasks[k].lots), len(runs)))
            with single_threaded_children(), main_not_reimported():  # workers start during the submits
                futures = {k: pool.submit(_run_task, tasks[k]) for k in order}
            parts = [futures[k].result() for k in range(len(tasks))]
    by_label: dict[str, list[RegimeBacktest]] = {label: [] for label in plan.regimes}
    for k, part in enumerate(parts):  # tasks are block-major, so each label's parts come in block order
        for label, res in zip(units[k % len(units)], part):
            by_label[label].append(res)
    results = {label: merge(label, by_label[label]) for label in plan.regimes}
    summary = summarise(cfg, plan.regimes, results, book, runs)
    if directory is not None:
        write_backtest(directory, cfg, summary, results, book.names, runs, shown, force=force)
    return BacktestOutput(cfg, summary, results, book.names, runs, directory)


# portfolios per task at most: each task repeats the per-run work that does not depend on the
# portfolios (pricing the scenarios, the VaR history), so blocks are as large as memory allows --
# a block's (runs x portfolios) matrices are ~150 MB at 8,192 portfolios and 10 years of runs
CHUNK = 8192


def task_units(regimes: dict[str, tuple[Any, float]]) -> list[list[str]]:
    """The regimes' labels grouped into what one task runs over a block of portfolios: each regime
    alone, but VaR regimes with a scenario set in common (``var.fixed_sets``: e.g. ``var`` and
    ``var_apc`` at the registry defaults, whose lookback sets are the same), transitively, in one
    task that walks the runs with them together and measures a set they share once
    (``engine.backtest_regimes``). Within a unit the regimes with more scenario sets go first: a
    regime whose sets another has measured then prices and searches nothing (``var`` after
    ``var_apc``). Units in the order of their first label in the file."""
    from clearing.margin.var import fixed_sets

    units: list[list[str]] = []
    sets: list[set] = []
    for label, (margin, _) in regimes.items():
        if margin.regime not in VAR_REGIMES:
            units.append([label])
            sets.append(set())
            continue
        mine = set(fixed_sets(margin))
        joined = [k for k, known in enumerate(sets) if known & mine]
        for k in reversed(joined[1:]):  # this regime links units: merged into the first
            units[joined[0]] += units.pop(k)
            mine |= sets.pop(k)
        if joined:
            units[joined[0]].append(label)
            sets[joined[0]] |= mine
        else:
            units.append([label])
            sets.append(mine)
    order = {label: k for k, label in enumerate(regimes)}

    def n_sets(label: str) -> int:  # the scenario sets the regime measures
        margin = regimes[label][0]
        return 1 + bool(getattr(margin, "stressed_weight", None)) + bool(getattr(margin, "floor_lookback_days", None))

    units.sort(key=lambda unit: min(order[label] for label in unit))
    for unit in units:
        unit.sort(key=lambda label: (-n_sets(label), order[label]))
    return units


@dataclass(slots=True)
class _Task:
    margins: tuple[tuple[Any, float], ...]  # (validated regime config, scale) of each regime of the unit
    config: BacktestConfig
    table: Any
    context: dict[str, Any]
    lots: np.ndarray
    prices: np.ndarray
    vols: np.ndarray
    runs: np.ndarray
    shown: np.ndarray
    block: tuple[str, int] = ("", -1)  # (backtest token, first portfolio): what the losses are kept under


# the realised losses of the last block a process computed: the same for every regime of that block
# (a runs x portfolios product, ~0.1-0.3 CPU-s with its fresh pages), kept only for the backtest
# that computed them (its token); tasks go block by block, so a process meets a block's regimes in a row
_LOSSES: dict[tuple[str, int], np.ndarray] = {}


def _block_losses(t: _Task, book: Book) -> np.ndarray:
    hit = _LOSSES.get(t.block)
    if hit is None:
        hit = realised_losses(book, t.prices, t.vols, t.runs, t.config.horizon_days)
        _LOSSES.clear()  # one block at a time: a block's matrix is ~100 MB
        if t.block[1] >= 0:
            _LOSSES[t.block] = hit
    return hit


def _run_task(t: _Task) -> list[RegimeBacktest]:
    """A unit of regimes over one block of portfolios (in a worker or in this process)."""
    from threadpoolctl import threadpool_limits

    from clearing.margin.registry import build_regime
    from clearing.margin.var import SharedMeasures

    cfg = t.config
    with threadpool_limits(limits=1, user_api="blas"):  # same bytes with any thread count (as episodes)
        book = Book(t.table, Positions(np.ascontiguousarray(t.lots)), [], t.context)
        loss = _block_losses(t, book)
        regimes = []
        for margin, _ in t.margins:
            ctx = dict(t.context)
            if margin.regime in VAR_REGIMES:
                ctx["history"] = t.prices[: t.runs[0] + 1]
                ctx["row_interval"] = DAY_SECONDS  # the path is daily: mpor_days / lookback_days are rows
            regimes.append(build_regime(margin, t.table, **ctx))
        share = SharedMeasures() if len(regimes) > 1 else None
        return backtest_regimes([""] * len(regimes), regimes, book, t.prices, t.vols, t.runs, loss,
                                requirement=cfg.requirement, scales=[scale for _, scale in t.margins],
                                coverage=cfg.coverage, significance=cfg.significance,
                                windows=cfg.procyclicality_windows, shown=t.shown, share=share)


def summarise(cfg: BacktestConfig, regimes: dict[str, tuple[Any, float]], results: dict[str, RegimeBacktest],
              book: Book, runs: np.ndarray) -> dict[str, Any]:
    from sim.experiment.metrics import rnd

    out: dict[str, Any] = {
        "name": cfg.name,
        "seed": cfg.seed,
        "portfolios": len(book.names),
        "instruments": len(book.table),
        "runs": int(runs.size),
        "first_run_day": int(runs[0]),
        "horizon_days": cfg.horizon_days,
        "requirement": cfg.requirement,
        "coverage": cfg.coverage,
        "quote_currency": book.quote,  # of every money figure (shortfalls)
        "regimes": {},
    }
    for label, res in results.items():
        margin_cfg, scale = regimes[label]
        head = aggregate(res, cfg.significance)
        head.update({"regime": margin_cfg.regime, "scale": scale})
        if len(book.names) <= 50:  # small books: every portfolio in the summary too
            f = res.per_portfolio
            head["by_portfolio"] = {
                name: {"tested": bool(f["tested"][k]), "exceedances": int(f["exceedances"][k]),
                       "kupiec_p": _num(f["kupiec_p"][k]), "christoffersen_p": _num(f["christoffersen_p"][k]),
                       "zone": zone_name(f["zone"][k]),  # None: untested, in no zone
                       "largest_shortfall": float(f["largest_shortfall"][k]),
                       "peak_to_trough": _num(f["peak_to_trough"][k])}
                for k, name in enumerate(book.names)}
        out["regimes"][label] = head
    return rnd(out)


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


# ------------------------------------------------------------------------------------ writing
def _table(columns: dict[str, np.ndarray]) -> pa.Table:
    arrays = {}
    for key, col in columns.items():
        col = np.asarray(col)
        arrays[key] = pa.array(col.tolist(), type=pa.string()) if col.dtype == object else pa.array(col)
    return pa.table(arrays)


def write_backtest(directory: str | Path, cfg: BacktestConfig, summary: dict[str, Any],
                   results: dict[str, RegimeBacktest], names: list[str], runs: np.ndarray, shown: np.ndarray,
                   force: bool = False) -> Path:
    from sim.experiment.results import _atomic_folder
    from sim.experiment.io import write_text as _write_text, dump_json

    port = [per_portfolio_rows(label, names, res.per_portfolio) for label, res in results.items()]
    port_cols = {k: np.concatenate([p[k] for p in port]) for k in port[0]}
    run_cols: dict[str, list] = {"regime": [], "day": [], "margin_total": [], "loss_total": [], "exceeding": []}
    for label, res in results.items():
        run_cols["regime"].append(np.array([label] * runs.size, dtype=object))
        run_cols["day"].append(runs)
        run_cols["margin_total"].append(res.margin_total)
        run_cols["loss_total"].append(res.loss_total)
        run_cols["exceeding"].append(res.exceeding)
        for j, k in enumerate(shown):
            run_cols.setdefault(f"margin.{names[k]}", []).append(res.shown_margin[:, j])
            run_cols.setdefault(f"loss.{names[k]}", []).append(res.shown_loss[:, j])
    runs_table = _table({k: np.concatenate(v) for k, v in run_cols.items()})
    # an earlier clearsim folder (this command's included) only with force; a user's folder never
    # (sim.experiment.outdir)
    with _atomic_folder(directory, "backtest", force) as tmp:
        _write_text(tmp / "summary.json", dump_json(summary))
        _write_text(tmp / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        pq.write_table(_table(port_cols), tmp / "portfolios.parquet")
        pq.write_table(runs_table, tmp / "runs.parquet")
        if cfg.report:
            from sim.experiment.backtest.report import backtest_report

            _write_text(tmp / "report.html", backtest_report(cfg, summary, results, names, runs, shown))
    return Path(directory).absolute()
