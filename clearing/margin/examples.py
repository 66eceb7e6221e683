"""Small builders for instrument tables and market states (tests, benchmarks, the margin CLI).

Not used in the simulation hot path. Ticks/lots here are nominal: the margin regimes only read
``contract_units``, strikes, expiries and marks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sim.core.instruments import SECONDS_PER_YEAR, Instrument, InstrumentKind, InstrumentTable, MarketState
from clearing.margin.scenarios import forward_source, forwards
from sim.market.pricing import black76_price

DAY = 24.0 * 3600.0


def make_instrument(i: int, symbol: str, kind: InstrumentKind | str, underlying: str, contract_units: float = 1.0,
                    expiry_days: float | None = None, strike: float | None = None,
                    is_call: bool | None = None, tick_size: float = 0.01, now: float = 0.0) -> Instrument:
    """An instrument with ``lot_size = contract_units`` and multiplier 1 (expiry in days from ``now``)."""
    if isinstance(kind, str):
        kind = InstrumentKind[kind.upper()]
    expiry = None if expiry_days is None else now + expiry_days * DAY
    if kind == InstrumentKind.OPTION and (strike is None or is_call is None or expiry is None):
        raise ValueError(f"option {symbol!r} needs strike, is_call and expiry")
    if kind == InstrumentKind.FUTURE and expiry is None:
        raise ValueError(f"future {symbol!r} needs an expiry")
    tick_value = max(1, int(round(tick_size * contract_units * 100)))
    return Instrument(id=i, symbol=symbol, kind=kind, underlying=underlying, settlement_asset="USD",
                      tick_size=tick_size, lot_size=contract_units, multiplier=1.0, tick_value=tick_value,
                      expiry=expiry, strike=strike, is_call=is_call)


def make_market(table: InstrumentTable, prices: dict[str, float] | Sequence[float],
                vols: dict[str, float] | Sequence[float], now: float = 0.0,
                linear_marks: dict[str, float] | None = None, option_vols: dict[str, float] | None = None,
                option_marks: dict[str, float] | None = None) -> MarketState:
    """A market state: linear marks = underlying price unless given; options priced with
    Black-76 at their forward (see ``scenarios.forward_source``) and vol unless a mark is given."""
    unders = table.underlyings
    p = np.array([prices[u] for u in unders] if isinstance(prices, dict) else prices, dtype=np.float64)
    v = np.array([vols[u] for u in unders] if isinstance(vols, dict) else vols, dtype=np.float64)
    linear_marks = linear_marks or {}
    option_vols = option_vols or {}
    option_marks = option_marks or {}
    marks = p[table.underlying_index].copy()
    ivs = v[table.underlying_index].copy()
    for ins in table.instruments:
        if ins.symbol in linear_marks:
            marks[ins.id] = linear_marks[ins.symbol]
        if ins.symbol in option_vols:
            ivs[ins.id] = option_vols[ins.symbol]
    market = MarketState(now=now, underlying_prices=p, atm_vols=v, marks=marks, vols=ivs)
    opt = np.flatnonzero(table.is_option)
    if opt.size:
        fwd = forwards(table, market, forward_source(table))
        years = table.years_to_expiry(now)
        marks[opt] = black76_price(fwd[opt], table.strike[opt], years[opt], ivs[opt], table.is_call[opt])
    for ins in table.instruments:
        if ins.symbol in option_marks:
            marks[ins.id] = option_marks[ins.symbol]
    market.marks = marks
    return market


def benchmark_book(n_accounts: int = 100_000, n_instruments: int = 50, per_account: float = 3.0,
                   underlyings: Sequence[str] = ("BTC", "ETH", "SOL"), seed: int = 7
                   ) -> tuple[InstrumentTable, MarketState, np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic book: per underlying a perpetual, two futures and calls/puts over strikes and
    expiries; accounts hold ~``per_account`` random instruments (Poisson, at least one) with
    random signed lots. Returns (table, market, account, instrument, lots) COO arrays."""
    rng = np.random.default_rng(seed)
    spot = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0}
    vol = {"BTC": 0.6, "ETH": 0.75, "SOL": 0.9}
    per_u = n_instruments // len(underlyings)
    instruments: list[Instrument] = []
    for ui, u in enumerate(underlyings):
        s = spot.get(u, 100.0)
        count = per_u if ui < len(underlyings) - 1 else n_instruments - per_u * (len(underlyings) - 1)
        specs: list[tuple] = [("PERPETUAL", None, None, None), ("FUTURE", 30, None, None), ("FUTURE", 90, None, None)]
        k = 0
        while len(specs) < count:
            expiry = (7, 30, 90)[k % 3]
            moneyness = (0.8, 0.9, 1.0, 1.1, 1.2)[(k // 3) % 5]
            specs.append(("OPTION", expiry, round(s * moneyness, 2), bool((k // 15) % 2 == 0)))
            k += 1
        for kind, exp, strike, call in specs[:count]:
            sym = f"{u}-{kind[:4]}-{exp}-{strike}-{'C' if call else 'P'}-{len(instruments)}"
            instruments.append(make_instrument(len(instruments), sym, kind, u, 1.0, exp, strike, call))
    table = InstrumentTable.from_instruments(instruments)
    market = make_market(table, {u: spot.get(u, 100.0) for u in underlyings}, {u: vol.get(u, 0.7) for u in underlyings})
    held = np.maximum(rng.poisson(per_account, n_accounts), 1)
    held = np.minimum(held, n_instruments)
    account = np.repeat(np.arange(n_accounts), held)
    instrument = rng.integers(0, n_instruments, account.size)
    lots = rng.choice([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0], account.size)
    return table, market, account, instrument, lots


__all__ = ["DAY", "SECONDS_PER_YEAR", "benchmark_book", "make_instrument", "make_market"]
