"""Up-front bounds: amounts that cannot stay exact in the int64 ledger, or episodes that cannot run.

The ledger holds cash in int64 minor units (``10**decimals`` per quote unit) and refuses any
mutation that would leave int64 (``clearing.ledger.LedgerOverflowError``). That check is the
guarantee; this module refuses, before anything is built, configurations that would certainly
or very probably hit it, naming the field:

* money: every fixed amount (insurance fund, backstop vault, CCP capital) and every trader's
  capital (the top of its distribution's support, or 10x its mean when unbounded), in quote minor
  units, must leave ``MONEY_HEADROOM`` (1024x: leverage, price moves and funding) inside int64;
* prices: each underlying's starting price, in ticks of each contract on it, must leave
  ``PRICE_HEADROOM`` (1024x) inside 2^53 (the float prices are integers exactly below 2^53), and one
  lot's notional in minor units must leave room for 2^16 lots inside int64.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from agents.config import PopulationConfig
from clearing.config import ClearingConfig
from clearing.margin.config import MarginConfig
from sim.experiment.schema.outputs import OutputsConfig
from sim.market.market_config import MarketConfig
from sim.market.oracle_config import OracleConfig
from sim.market.paths_config import PathsConfig, RegimeSwitchPathConfig


class BoundedEpisode(Protocol):
    """The parts of an episode config the bounds read (``EpisodeConfig`` has them; the schema calls
    these checks from its own validator, so this module cannot import it)."""

    duration: float
    market: MarketConfig
    paths: PathsConfig
    oracle: OracleConfig
    margin: MarginConfig
    clearing: ClearingConfig
    population: PopulationConfig
    compare_regimes: list[MarginConfig]
    outputs: OutputsConfig

INT64_MAX = 2**63 - 1
MONEY_HEADROOM = 1024
PRICE_HEADROOM = 1024
LOT_ROOM = 2**16


def _dist_top(value: Any) -> float:
    """A number, or the top of a distribution's support (10x the mean when unbounded)."""
    if isinstance(value, (int, float)):
        return float(value)
    hi = value.support()[1]
    if math.isfinite(hi):
        return float(hi)
    mean = getattr(value, "mean", None)
    return 10.0 * abs(float(mean)) if mean is not None else math.inf


def _amounts(cfg: BoundedEpisode, backstop: bool = True) -> list[tuple[str, float]]:
    la, liq = cfg.clearing.loss_absorption, cfg.clearing.liquidation
    amounts: list[tuple[str, float]] = [("clearing.loss_absorption.insurance_fund", la.insurance_fund)]
    if backstop and (liq.backstop.enabled or liq.policy == "backstop"):
        amounts.append(("clearing.liquidation.backstop.capital", liq.backstop.capital))
    if la.waterfall is not None:
        amounts.append(("clearing.loss_absorption.waterfall.ccp_capital", la.waterfall.ccp_capital))
    for g, group in enumerate(cfg.population.groups):
        amounts.append((f"population.groups.{g}.capital (x count {group.count})",
                        group.count * _dist_top(group.capital)))
    return amounts


def backstop_room(cfg: BoundedEpisode) -> float:
    """Quote units a backstop vault may hold on top of everything else in ``cfg``."""
    limit = INT64_MAX / MONEY_HEADROOM / 10**cfg.market.quote.decimals
    return max(0.0, limit - sum(a for _n, a in _amounts(cfg, backstop=False)))


def check_amounts(cfg: BoundedEpisode) -> None:
    """Raise ValueError naming the field whose amount cannot stay exact in the ledger."""
    decimals = cfg.market.quote.decimals
    scale = 10**decimals
    amounts = _amounts(cfg)
    limit = INT64_MAX / MONEY_HEADROOM
    total = sum(a for _n, a in amounts) * scale
    if not total <= limit:  # also refuses inf and nan
        name, biggest = max(amounts, key=lambda na: na[1])
        raise ValueError(
            f"{name}: amounts up to {total / scale:.4g} quote units in {cfg.market.quote.name} minor units "
            f"(market.quote.decimals = {decimals}) leave less than {MONEY_HEADROOM}x headroom in the exact "
            f"int64 ledger (at most {limit / scale:.4g} quote units in all); lower the amount or the decimals")
    starts = _start_prices(cfg)
    for k, ins in enumerate(cfg.market.instruments):
        s0 = starts.get(ins.underlying)
        if s0 is None:
            continue
        ticks = s0 / ins.tick_size
        if ticks * PRICE_HEADROOM > 2**53:
            raise ValueError(f"market.instruments.{k}.tick_size ({ins.symbol}): a starting price of {s0:g} is "
                             f"{ticks:.4g} ticks; prices must stay below 2^53 / {PRICE_HEADROOM} ticks to be exact")
        lot_value = s0 * ins.lot_size * ins.multiplier * scale
        if lot_value * LOT_ROOM > INT64_MAX:
            raise ValueError(f"market.instruments.{k}.lot_size ({ins.symbol}): one lot is worth {lot_value:.4g} "
                             f"minor units at the starting price; that leaves room for fewer than 2^16 lots in the "
                             f"int64 ledger (lower lot_size, multiplier or market.quote.decimals)")


def _start_prices(cfg: BoundedEpisode) -> dict[str, float]:
    out: dict[str, float] = {}
    for model in cfg.paths.models:
        for u in getattr(model, "underlyings", []) or []:
            s0 = getattr(u, "s0", None)
            if s0 is None:
                s0 = getattr(u, "mean", None)
            if s0 is not None:
                out[u.name] = float(s0)
    return out


# ------------------------------------------------------------------------------ can it run at all
SECONDS_PER_YEAR = 365.0 * 24.0 * 3600.0
MAX_PATH_BYTES = 2 * 2**30  # price and vol grids held in memory
MAX_SAMPLE_ROWS = 20_000_000  # account-state rows: sample rounds x accounts (~80 bytes each, in memory)
MAX_EVENTS = 200_000_000  # scheduled wake-ups (oracle samples + agent actions); shipped configs use < 2e6
EVENTS_PER_SECOND = 100_000.0  # a generous single-core figure, only to put a time on the estimate
HISTORY_LOG_RANGE = 600.0  # |ln| distance a synthetic history may reach (exp overflows at ~709)


def _hours(events: float) -> str:
    return f"~{events / EVENTS_PER_SECOND / 3600.0:.3g} h at {EVENTS_PER_SECOND:,.0f} events/s"


def check_cost(cfg: BoundedEpisode) -> None:
    """Refuse, with an estimate of its cost, an episode that cannot finish: a non-finite duration,
    price grids that would not fit in memory, sample or event counts that would run for days."""
    duration = cfg.duration
    if not math.isfinite(duration):
        raise ValueError(f"duration: must be a finite number of seconds, got {duration}")
    n_und = len(cfg.paths.names())
    steps = duration / cfg.paths.dt + 1
    path_bytes = steps * n_und * 8 * 2
    if path_bytes > MAX_PATH_BYTES:
        raise ValueError(f"paths.dt: duration {duration:g} s / dt {cfg.paths.dt:g} s = {steps:.4g} grid steps x "
                         f"{n_und} underlyings needs ~{path_bytes / 2**30:.3g} GiB of price paths (limit "
                         f"{MAX_PATH_BYTES / 2**30:g} GiB); raise paths.dt or shorten the duration")
    samples = duration / cfg.outputs.sample_interval
    rows = samples * (cfg.population.total_agents + 1)
    if rows > MAX_SAMPLE_ROWS:
        raise ValueError(f"outputs.sample_interval: {cfg.outputs.sample_interval:g} s over {duration:g} s is "
                         f"{samples:.4g} sample rounds, ~{rows:.4g} account rows (~{rows * 80 / 2**30:.3g} GiB; limit "
                         f"{MAX_SAMPLE_ROWS:.3g} rows); raise the interval")
    events = duration / cfg.oracle.sample_interval
    worst = ("oracle.sample_interval", events)
    for g, group in enumerate(cfg.population.groups):
        per_second = 0.0
        rate = getattr(group, "rate", None)
        interval = getattr(group, "interval", None)
        if isinstance(rate, (int, float)):
            per_second = float(rate)
        elif isinstance(interval, (int, float)) and interval > 0:
            per_second = 1.0 / float(interval)
        group_events = group.count * per_second * duration
        events += group_events
        if group_events > worst[1]:
            worst = (f"population.groups.{g} ({group.type}) count x rate", group_events)
    if events > MAX_EVENTS:
        raise ValueError(f"{worst[0]}: the episode would schedule ~{events:.4g} events ({_hours(events)}; limit "
                         f"{MAX_EVENTS:.3g}); shorten the duration or lower the rates")


def _start_vols(cfg: BoundedEpisode) -> dict[str, float]:
    out: dict[str, float] = {}
    for m, model in enumerate(cfg.paths.models):
        boost = 1.0  # the path's starting vol is the configured vol times this
        if getattr(model, "kind", "") == "garch":
            boost = float(getattr(model, "initial_vol_ratio", 1.0))
        elif isinstance(model, RegimeSwitchPathConfig):  # kind "regime": the one model with vol states
            boost = float(model.vol_multipliers[model.initial_state])
        for u in getattr(model, "underlyings", []) or []:
            vol = getattr(u, "vol", None)
            if isinstance(vol, (int, float)):
                out[u.name] = max(float(vol) * boost, 1e-4)
    return out


def check_history(cfg: BoundedEpisode) -> None:
    """A history-based regime (VaR) gets a synthetic GBM history at each underlying's starting vol,
    ``pre_episode_rows`` rows of ``row_interval`` s ending at the start price. At extreme vols its
    log-price drifts beyond what a float can hold (prices of 0 or inf) and the regime cannot be
    built: refuse that here, naming the fields."""
    regimes = [cfg.margin.regime] + [r.regime for r in cfg.compare_regimes]
    if not any(r in ("var", "var_apc") for r in regimes):
        return
    h = cfg.clearing.history
    for margin in [cfg.margin, *cfg.compare_regimes]:
        if margin.regime not in ("var", "var_apc"):
            continue
        mpor_rows = round(margin.mpor_days * 86_400.0 / h.row_interval)
        if mpor_rows >= h.pre_episode_rows:
            # the regime's scenarios are returns over one MPOR: with fewer rows than that it has none
            raise ValueError(
                f"clearing.history: a {margin.mpor_days:g}-day margin period of risk is {mpor_rows:,} rows of "
                f"{h.row_interval:g} s, but the pre-episode history holds {h.pre_episode_rows:,}: raise "
                f"pre_episode_rows or row_interval, or shorten margin.mpor_days")
    years = (h.pre_episode_rows - 1) * h.row_interval / SECONDS_PER_YEAR
    starts = _start_prices(cfg)
    for name, vol in _start_vols(cfg).items():
        reach = 0.5 * vol * vol * years + 12.0 * vol * math.sqrt(years)
        room = HISTORY_LOG_RANGE - abs(math.log(starts.get(name, 1.0)))
        if reach > room:
            raise ValueError(
                f"clearing.history: a VaR regime needs a {h.pre_episode_rows}-row history every "
                f"{h.row_interval:g} s; at {name}'s starting vol {vol:g} that GBM history reaches e^{reach:.4g} "
                f"from the start price, beyond what a float holds (e^{room:.0f}); lower pre_episode_rows, "
                f"row_interval or the path vol")
