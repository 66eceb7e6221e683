"""Assembling and running one episode: config in, results out.

``build`` wires the pieces in dependency order -- world, paths, ledger, venue, oracle, marks,
margin regime, clearing house, liquidation engine, loss absorption, population, recorder -- and
``run`` advances the clock to the end, then proves the invariants the whole run must keep:
the ledger conserves cash exactly, no account was liquidated while at or above MM, and no order
the pre-trade check refused ever rested on a book.
"""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from agents.base import Agent, AgentContext
from agents.population import build_population
from clearing.absorption import LossAbsorber
from clearing.house import ClearingHouse
from clearing.instruments import SECONDS_PER_YEAR, InstrumentKind, InstrumentTable
from clearing.insurance import InsuranceFund
from clearing.ledger import FIRST_TRADER, QUOTE, Ledger, SystemAccount
from clearing.liquidation import LiquidationEngine
from clearing.margin.base import MarginRegime
from clearing.margin.registry import build_regime
from clearing.volsurface import VolSurface
from clearing.waterfall import DefaultWaterfall
from sim.kernel import World
from sim.mark import MarkPricer
from sim.oracle import Oracle
from sim.paths import PricePaths, generate_paths
from sim.recorder import Recorder
from sim.schema.episode import EpisodeConfig
from sim.schema.paths import VolSurfaceConfig
from sim.venue import Venue


@dataclass
class Episode:
    """Every live component of one run (what agents, tests and metrics may inspect)."""

    config: EpisodeConfig
    world: World
    paths: PricePaths
    table: InstrumentTable
    ledger: Ledger
    venue: Venue
    oracle: Oracle
    marks: MarkPricer
    regime: MarginRegime
    house: ClearingHouse
    engine: LiquidationEngine
    absorber: LossAbsorber
    fund: InsuranceFund
    waterfall: DefaultWaterfall | None
    agents: list[Agent] = field(default_factory=list)
    recorder: Recorder | None = None
    backstop_account: int | None = None


@dataclass
class EpisodeResult:
    """What a finished run leaves: the config, the recorded tables, and run statistics."""

    config: EpisodeConfig
    tables: dict[str, dict[str, np.ndarray]]
    stats: dict[str, Any]
    episode: Episode | None = None  # kept only when asked (it holds the whole world)


def _surface(config: EpisodeConfig, table: InstrumentTable, paths: PricePaths) -> VolSurface:
    """One stacked surface in ``table.underlyings`` order; an underlying with no configured surface
    gets a flat one at its path's starting vol."""
    configs: dict[str, VolSurfaceConfig] = {}
    spot_refs = []
    start_vols = paths.vols[0]
    for name in table.underlyings:
        col = paths.names.index(name)
        configs[name] = config.vol_surfaces.get(name) or VolSurfaceConfig(atm_vol=max(float(start_vols[col]), 0.05))
        spot_refs.append(float(paths.prices[0, col]))
    return VolSurface.from_configs(configs, spot_refs=spot_refs)


def build(config: EpisodeConfig) -> Episode:
    world = World(config.seed)
    paths = generate_paths(config.paths, world.stream("paths"), duration=config.duration)
    assets = config.market.build_assets()
    instruments = config.market.build_instruments()
    table = InstrumentTable.from_instruments(instruments)
    ledger = Ledger(assets, instruments, capacity=256)
    venue = Venue(world, config.venue, [ins.tick_value for ins in instruments],
                  position_of=lambda a, i: ledger.position.item(a, i))
    oracle = Oracle(world, config.oracle, list(paths.names), source=paths.at, batch_source=paths.at)
    marks = MarkPricer(table, venue.books, oracle, _surface(config, table, paths))
    venue.reference[:] = marks.ticks.tolist()
    context: dict[str, Any] = {"history": _pre_episode_history(config, table, paths, world)}
    if config.margin.liquidity is not None and config.margin.liquidity.mode == "book":
        context["cost_fn"] = _live_book_cost(venue, table, config.margin.liquidity.beyond_depth_slippage)
    regime = build_regime(config.margin, table, **context)
    house = ClearingHouse(world, ledger, venue, oracle, marks, table, regime, config.clearing)
    scale = assets[QUOTE].minor_per_unit
    la = config.clearing.loss_absorption
    caps = None
    if la.insurance_cap_per_market is not None:
        caps = {i: int(la.insurance_cap_per_market * scale) for i in range(len(instruments))}
    fund = InsuranceFund(ledger, caps)
    if la.insurance_fund > 0:
        fund.seed(int(la.insurance_fund * scale))
    absorber = LossAbsorber(house, la, fund)
    ctx = AgentContext(world, venue, ledger, oracle, marks, house, table)
    symbols = {ins.symbol: ins.id for ins in table.instruments}
    population = build_population(ctx, config.population, symbols)
    agents, vault = population.agents, population.backstop_account
    bs = config.clearing.liquidation.backstop
    if vault is None and (bs.enabled or config.clearing.liquidation.policy == "backstop") and bs.capital > 0:
        vault = ledger.open_account()
        ledger.deposit(vault, QUOTE, int(bs.capital * scale))
    house._grow()  # the population opened accounts after the house was sized
    engine = LiquidationEngine(house, config.clearing.liquidation, absorber, vault, adl=la.adl)
    house.attach(engine)
    episode = Episode(config, world, paths, table, ledger, venue, oracle, marks, regime, house, engine, absorber,
                      fund, waterfall=None, agents=agents, backstop_account=vault)
    venue.resting.ensure(ledger.cash.shape[0])
    _feed_venue_prices(episode)
    if la.waterfall is not None:
        world.call_later(min(300.0, config.duration / 10), _size_waterfall, episode)
    return episode


def _pre_episode_history(config: EpisodeConfig, table: InstrumentTable, paths: PricePaths, world: World) -> np.ndarray:
    """Rows x underlyings of prices before the episode (GBM at the starting vols, ending at s0),
    so that history-based regimes start with a full lookback."""
    h = config.clearing.history
    cols = [paths.names.index(u) for u in table.underlyings]
    s0 = paths.prices[0, cols]
    vol = np.maximum(paths.vols[0, cols], 1e-4)
    dt = h.row_interval / SECONDS_PER_YEAR
    rng = world.stream("history/pre-episode")
    steps = rng.standard_normal((h.pre_episode_rows - 1, len(cols))) * vol * np.sqrt(dt) - 0.5 * vol**2 * dt
    back = np.vstack([np.zeros(len(cols)), np.cumsum(steps[::-1], axis=0)])[::-1]  # log distance to the end
    return s0 * np.exp(-(back - back[-1]))


def _live_book_cost(venue: Venue, table: InstrumentTable, beyond: float, levels: int = 50):
    """The liquidity add-on's cost of closing each position against the venue's books as they are."""
    from clearing.margin.liquidity import DepthLadder

    tick = table.tick_size
    units = table.contract_units

    def cost(cols: np.ndarray, lots: np.ndarray, market) -> np.ndarray:
        out = np.zeros(cols.size)
        marks = np.asarray(market.marks, dtype=np.float64)
        for i in np.unique(cols):  # a loop over instruments held, never over accounts
            sel = np.flatnonzero(cols == i)
            bids, asks = venue.books[int(i)].depth(levels)
            q = lots[sel]
            long_ = q > 0
            for side, mask, qty in ((bids, long_, q), (asks, ~long_, -q)):
                ladder = DepthLadder([(p * tick[i], n) for p, n in side])
                out[sel[mask]] = ladder.cost(qty[mask], marks[i], units[i], beyond)
        return out

    return cost


def _feed_venue_prices(episode: Episode) -> None:
    """Tell the oracle what the venue's linear contracts trade at (for manipulation-prone indices)."""
    oracle, table = episode.oracle, episode.table
    column = [oracle.underlyings.index(u) for u in table.underlyings]
    linear = {int(i) for i in np.flatnonzero(table.kind != InstrumentKind.OPTION)}
    tick = table.tick_size
    und = table.underlying_index

    def on_trade(fill, _maker_fee: int, _taker_fee: int) -> None:
        if fill.instrument in linear:
            oracle.observe_trade(column[und[fill.instrument]], fill.price * tick[fill.instrument])

    if episode.config.oracle.venue_weight > 0 or episode.config.oracle.aggregation == "median":
        episode.venue.trade_listeners.append(on_trade)


def _size_waterfall(episode: Episode) -> None:
    """Size the default fund by a Cover-1/Cover-2 stress test on the positions held now, and fund it."""
    from clearing.waterfall import size_default_fund

    cfg = episode.config.clearing.loss_absorption.waterfall
    assert cfg is not None
    house, ledger = episode.house, episode.ledger
    n = ledger.n_accounts
    rows = np.arange(FIRST_TRADER, n)
    if rows.size == 0:
        return
    equity, im, _mm = house.valuation(rows)
    chosen = np.argsort(-im, kind="stable")[: cfg.members]  # positions in ``rows``
    members = rows[chosen]
    pos = ledger.position[members].astype(np.float64)
    value = ledger.tick_value * house.marks.ticks
    losses = np.abs(pos @ (value * cfg.stress_move))
    margins = im[chosen]
    _total, contributions = size_default_fund(losses, margins, cover=cfg.cover)
    scale = ledger.assets[QUOTE].minor_per_unit
    waterfall = DefaultWaterfall(ledger, {int(m): int(c) for m, c in zip(members, contributions)},
                                 int(cfg.ccp_capital * scale), cfg.skin_in_game, cfg.assessment_cap,
                                 vm_gains=lambda _ledger: np.maximum(house.equity[: ledger.n_accounts], 0.0))
    waterfall.fund()
    episode.waterfall = waterfall
    episode.absorber.waterfall = waterfall


def run(config: EpisodeConfig, keep_episode: bool = False, profile_memory: bool = False) -> EpisodeResult:
    """Build and run one episode to its end; check the whole-run invariants.

    BLAS is held to one thread for the run: a multithreaded matrix product may sum in a different
    order, and a last-bit difference in a price path or an equity can flip a margin comparison --
    the same config and seed must give the same bytes in any process, with any thread count.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _run(config, keep_episode, profile_memory)


def _run(config: EpisodeConfig, keep_episode: bool, profile_memory: bool) -> EpisodeResult:
    if profile_memory:
        tracemalloc.start()
    started = time.perf_counter()
    episode = build(config)
    recorder = Recorder(episode, config.outputs.sample_interval)
    recorder.attach()
    episode.recorder = recorder
    for agent in episode.agents:
        agent.start()
    episode.oracle.start()
    episode.world.run(until=config.duration)
    recorder.sample()  # the state at the very end, not one sample interval before it
    wall = time.perf_counter() - started
    verify(episode)
    peak = None
    if profile_memory:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    stats = {
        "wall_seconds": wall,
        "events": _events_processed(episode),
        "simulated_seconds": config.duration,
        "orders": episode.venue.counts["orders"],
        "cancels": episode.venue.counts["cancels"],
        "fills": episode.venue.counts["fills"],
        "rejects": episode.venue.counts["rejects"],
        "oracle_publications": episode.oracle.publications,
        "revaluations": episode.house.revaluations,
        "accounts": episode.ledger.n_accounts - FIRST_TRADER,
        "peak_memory_bytes": peak,
    }
    tables = recorder.tables()
    tables["solvency"] = _solvency_at_true_prices(episode)
    return EpisodeResult(config, tables, stats, episode if keep_episode else None)


def _solvency_at_true_prices(episode: Episode) -> dict[str, np.ndarray]:
    """Every account's equity at the end with its collateral valued at the oracle's published
    prices (what the clearing house saw) and at the true prices: an oracle stuck at a floor (LUNA)
    hides insolvency that only the second column shows. ``kind`` 0 is the insurance fund, 1 the
    bad-debt row's recoveries in kind (collateral only), 2 the traders."""
    house, ledger = episode.house, episode.ledger
    n = ledger.n_accounts
    fund, bad = int(SystemAccount.INSURANCE_FUND), int(SystemAccount.BAD_DEBT)
    rows = np.r_[fund, bad, np.arange(FIRST_TRADER, n)]
    kind = np.r_[0, 1, np.full(n - FIRST_TRADER, 2)]
    cash = ledger.cash[rows].copy()
    cash[1, QUOTE] = 0  # the bad-debt row's quote balance is the bad debt itself, reported elsewhere
    positions = ledger.position[rows] @ (episode.marks.ticks * ledger.tick_value)
    published = house._collateral(cash) + positions
    true_row = episode.paths.at(episode.config.duration)
    prices = np.ones(len(ledger.assets))
    for k, asset in enumerate(ledger.assets):
        if asset.price_source is not None:
            prices[k] = float(true_row[episode.paths.names.index(asset.price_source)])
    true_collateral = ledger.value_cash(cash, prices)
    return {"account": rows.astype(np.int64), "kind": kind.astype(np.int64), "equity": published,
            "equity_true_collateral": true_collateral + positions}


def _events_processed(episode: Episode) -> int:
    # simpy numbers every event it schedules from one counter: those scheduled, less those still
    # queued past the end (wake-ups and messages that never came due)
    env = episode.world.env
    return int(next(env._eid)) - len(env._queue)


def verify(episode: Episode) -> None:
    """Whole-episode invariants; raise AssertionError naming the first violation."""
    episode.ledger.check()
    for ev in episode.engine.events:
        if not ev.equity_at_breach < ev.mm_at_breach:
            raise AssertionError(f"account {ev.account} was liquidated at t={ev.breach_time:.3f} with equity "
                                 f"{ev.equity_at_breach:.0f} >= MM {ev.mm_at_breach:.0f}")
    # every step that moved a liquidated account's positions was decided below MM, not only the breach
    for liq_id, at, equity, mm in episode.engine.health_checks:
        if not equity < mm:
            ev = episode.engine.events[liq_id]
            raise AssertionError(f"liquidation {liq_id} moved account {ev.account}'s positions at t={at:.3f} with "
                                 f"equity {equity:.0f} >= MM {mm:.0f}")
    if episode.recorder is not None:
        episode.recorder.check_refused_not_resting()
