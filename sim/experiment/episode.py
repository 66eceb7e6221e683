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
from sim.core.phases import Phase
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from agents.base import AgentContext
from agents.population import build_population
from clearing.absorption import LossAbsorber
from clearing.haircuts import DynamicHaircuts
from clearing.house import ClearingHouse
from clearing.isolated import IsolatedMargin
from sim.core.instruments import SECONDS_PER_YEAR, InstrumentKind, InstrumentTable, MarketState
from clearing.insurance import InsuranceFund
from clearing.ledger import FIRST_TRADER, QUOTE, Ledger, SystemAccount
from clearing.liquidation import LiquidationEngine
from clearing.margin.registry import build_regime
from sim.market.volsurface import VolSurface
from clearing.waterfall import DefaultWaterfall
from sim.experiment.accounts import account_directory, snapshot_initial
from sim.core.kernel import World
from sim.market.mark import MarkPricer
from sim.market.oracle import Oracle
from sim.core.orders import Fill, FillFlag
from sim.market.paths import PricePaths, generate_paths
from sim.experiment.assembled import Episode, EpisodeResult
from sim.experiment.recorder import Recorder
from sim.experiment.schema.episode import EpisodeConfig
from sim.market.volsurface_config import VolSurfaceConfig
from sim.market.venue import Venue

if TYPE_CHECKING:
    from clearing.margin.liquidity import CostFn


# The external absorber's cash (minor units): 2^60, whatever the quote's decimals -- far more than any
# episode's positions can lose, and still 8x inside int64 so that ledger sums cannot overflow.
EXTERNAL_CAPITAL = 2**60


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
    marks = MarkPricer(table, venue.books, oracle, _surface(config, table, paths), last_trade=venue.last_price)
    venue.reference[:] = marks.ticks.tolist()
    context: dict[str, Any] = {"history": _pre_episode_history(config, table, paths, world),
                               "row_interval": config.clearing.history.row_interval}
    if config.margin.liquidity is not None and config.margin.liquidity.mode == "book":
        context["cost_fn"] = _live_book_cost(venue, table, config.margin.liquidity.beyond_depth_slippage)
    regime = build_regime(config.margin, table, **context)
    house = ClearingHouse(world, ledger, venue, oracle, marks, table, regime, config.clearing)
    haircuts = _dynamic_haircuts(config, ledger, oracle, paths)
    scale = assets[QUOTE].minor_per_unit
    la = config.clearing.loss_absorption
    caps = None
    if la.insurance_cap_per_market is not None:
        caps = {i: int(la.insurance_cap_per_market * scale) for i in range(len(instruments))}
    fund = InsuranceFund(ledger, caps)
    if la.insurance_fund > 0:
        fund.seed(int(la.insurance_fund * scale))
    absorber = LossAbsorber(house, la, fund)
    # isolated margin: every position in its own sub-account, funded from its owner (clearing.isolated)
    isolated = IsolatedMargin(world, ledger, house, venue) if getattr(regime, "isolated", False) else None
    ctx = AgentContext(world, venue, ledger, oracle, marks, house, table, isolated)
    symbols = {ins.symbol: ins.id for ins in table.instruments}
    population = build_population(ctx, ledger, config.population, symbols)
    agents, vault = population.agents, population.backstop_account
    meta = list(population.meta)
    bs = config.clearing.liquidation.backstop
    if vault is None and (bs.enabled or config.clearing.liquidation.policy == "backstop") and bs.capital > 0:
        vault = ledger.open_account()
        ledger.deposit(vault, QUOTE, int(bs.capital * scale))
        meta.append((vault, "backstop_vault", "backstop_vault", float(bs.capital)))
    external = None
    if config.clearing.liquidation.absorb_outside:
        # the no-feedback twin's absorber, opened last so that every other account keeps the id it
        # has in the run it is the twin of; deep enough never to breach (see EXTERNAL_CAPITAL)
        external = ledger.open_account()
        ledger.deposit(external, QUOTE, EXTERNAL_CAPITAL)
    house.grow()  # the population opened accounts after the house was sized
    engine = LiquidationEngine(house, config.clearing.liquidation, absorber, vault, adl=la.adl,
                               external_account=external)
    house.attach(engine)
    if isolated is not None:
        isolated.install()
    episode = Episode(config, world, paths, table, ledger, venue, oracle, marks, regime, house, engine, absorber,
                      fund, waterfall=None, agents=agents, backstop_account=vault, external_account=external,
                      haircuts=haircuts, isolated=isolated, accounts_meta=meta)
    venue.resting.ensure(ledger.cash.shape[0])
    snapshot_initial(episode)
    _feed_venue_prices(episode)
    if la.waterfall is not None:
        world.call_later(la.waterfall.sizing_time, _size_waterfall, episode)
    return episode


def _dynamic_haircuts(config: EpisodeConfig, ledger: Ledger, oracle: Oracle, paths: PricePaths
                      ) -> DynamicHaircuts | None:
    """Haircuts that follow the collateral's vol and depeg, re-set at each publication before the
    clearing house re-values (its listener is first in line)."""
    assets = {}
    names = list(oracle.underlyings)
    for k, a in enumerate([config.market.quote, *config.market.collateral]):
        if a.dynamic_haircut is not None:
            assert a.price_source is not None  # the asset's validator requires one with a dynamic_haircut
            col = names.index(a.price_source)
            start_vol = a.dynamic_haircut.initial_vol
            if start_vol is None:
                start_vol = float(paths.vols[0, paths.names.index(a.price_source)])
            assets[k] = (a.dynamic_haircut, a.haircut, col, start_vol)
    if not assets:
        return None
    haircuts = DynamicHaircuts(ledger, assets, oracle.index, 0.0)
    oracle.listeners.add(lambda which: haircuts.update(oracle.world.now), Phase.SETTLE)
    return haircuts


def _pre_episode_history(config: EpisodeConfig, table: InstrumentTable, paths: PricePaths, world: World) -> np.ndarray:
    """Rows x underlyings of prices before the episode (GBM at the starting vols, ending at s0),
    so that history-based regimes start with a full lookback."""
    h = config.clearing.history
    cols = [paths.names.index(u) for u in table.underlyings]
    s0 = paths.prices[0, cols]
    vol = np.maximum(paths.vols[0, cols], 1e-4)
    dt = h.row_interval / SECONDS_PER_YEAR
    rng = world.stream("history/pre-episode")
    n = h.pre_episode_rows - 1
    shocks = rng.standard_normal((n, len(cols)))
    step_vol = np.broadcast_to(vol, (n, len(cols))).copy()
    drift = np.zeros((n, 1))
    if h.stressed is not None:  # steps ending inside the stressed window (days before the start)
        days_before = (n - 1 - np.arange(n)) * h.row_interval / 86_400.0
        st = h.stressed
        inside = (days_before < st.start_days_before) & (days_before >= st.start_days_before - st.days)
        if inside.any():
            step_vol[inside] *= st.vol_multiple
            drift[inside] = np.log1p(-st.drawdown) / inside.sum()
    steps = shocks * step_vol * np.sqrt(dt) - 0.5 * step_vol**2 * dt + drift
    back = np.vstack([np.zeros(len(cols)), np.cumsum(steps[::-1], axis=0)])[::-1]  # log distance to the end
    return s0 * np.exp(-(back - back[-1]))


def _live_book_cost(venue: Venue, table: InstrumentTable, beyond: float, levels: int = 50) -> CostFn:
    """The liquidity add-on's cost of closing each position against the venue's books as they are."""
    from clearing.margin.liquidity import DepthLadder

    tick = table.tick_size
    units = table.contract_units

    def cost(cols: np.ndarray, lots: np.ndarray, market: MarketState) -> np.ndarray:
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

    def on_trade(fill: Fill, _maker_fee: int, _taker_fee: int) -> None:
        # the no-feedback twin's fills at mark happen outside the market: they feed no index
        if fill.instrument in linear and not fill.flags & FillFlag.EXTERNAL:
            oracle.observe_trade(column[und[fill.instrument]], fill.price * tick[fill.instrument])

    if episode.config.oracle.venue_weight > 0 or episode.config.oracle.aggregation == "median":
        episode.venue.trade_listeners.add(on_trade, Phase.OBSERVE)


def _size_waterfall(episode: Episode) -> None:
    """Size the default fund by a Cover-1/Cover-2 stress test from the regime's own scenarios, per
    clearing member (clearing/stress.py), on the positions held now, and fund it."""
    from clearing.stress import account_stress_losses, assign_members, member_uncovered, stress_pnl
    from clearing.waterfall import size_default_fund

    cfg = episode.config.clearing.loss_absorption.waterfall
    assert cfg is not None
    house, ledger, world = episode.house, episode.ledger, episode.world
    rows = np.arange(FIRST_TRADER, ledger.n_accounts)
    if rows.size == 0:
        return
    _equity, im, _mm = house.valuation(rows)
    market = house.marks.market_state(world.now)
    pnl = stress_pnl(episode.regime, market, cfg.stress_multiple, cfg.vol_stress)
    scale = ledger.assets[QUOTE].minor_per_unit
    stress = account_stress_losses(ledger.position[rows], pnl, len(episode.table.underlyings)) * scale
    member = assign_members(rows.size, cfg.members, world.stream("ccp/members"))
    uncovered = member_uncovered(stress, im, member, cfg.members)
    total, contributions = size_default_fund(uncovered, np.zeros(cfg.members), cover=cfg.cover)
    waterfall = DefaultWaterfall(ledger, {m: int(c) for m, c in enumerate(contributions)},
                                 int(cfg.ccp_capital * scale), cfg.skin_in_game, cfg.assessment_cap,
                                 vm_gains=lambda _ledger: np.maximum(house.equity[: ledger.n_accounts], 0.0),
                                 member_of={int(a): int(m) for a, m in zip(rows, member)})
    waterfall.fund()
    waterfall.sizing = {"time": float(world.now), "fund": int(total), "member_uncovered": uncovered.tolist(),
                        "accounts": int(rows.size)}
    episode.waterfall = waterfall
    episode.absorber.waterfall = waterfall


def run(config: EpisodeConfig, keep_episode: bool = False, profile_memory: bool = False,
        observe: Callable[[Episode], None] | None = None) -> EpisodeResult:
    """Build and run one episode to its end; check the whole-run invariants.

    BLAS is held to one thread for the run: a multithreaded matrix product may sum in a different
    order, and a last-bit difference in a price path or an equity can flip a margin comparison --
    the same config and seed must give the same bytes in any process, with any thread count.

    ``observe`` is called with the built episode before it runs (progress displays read its clock
    from another thread; it must not schedule anything).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _run(config, keep_episode, profile_memory, observe)


def _run(config: EpisodeConfig, keep_episode: bool, profile_memory: bool,
         observe: Callable[[Episode], None] | None = None) -> EpisodeResult:
    if profile_memory:
        tracemalloc.start()
    started = time.perf_counter()
    episode = build(config)
    recorder = Recorder(episode, config.outputs.sample_interval)
    recorder.attach()
    episode.recorder = recorder
    if observe is not None:
        observe(episode)
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
        "amends": episode.venue.counts["amends"],
        "fills": episode.venue.counts["fills"],
        "rejects": episode.venue.counts["rejects"],
        "oracle_publications": episode.oracle.publications,
        "revaluations": episode.house.revaluations,
        "accounts": episode.ledger.n_accounts - FIRST_TRADER,
        "peak_memory_bytes": peak,
    }
    tables = recorder.tables()
    tables["solvency"] = _solvency_at_true_prices(episode)
    tables["directory"] = account_directory(episode)
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
    published = ledger.value_cash(cash, house.asset_prices()) + positions
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
