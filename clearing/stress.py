"""CCP default-fund stress test: each member's loss under extreme but plausible moves, from the
margin regime's own scenarios (EMIR Art. 29 / RTS 153/2013 Art. 30-31; CPMI-IOSCO PFMI 4.4 Cover-2).

Extreme but plausible, per underlying: ``multiple`` x the move the regime itself margins for
that asset (SPAN's convention: its extreme scenarios are 2 x the price scan range), as its own
parameters say --

* SPAN: the product's price scan range (vol x MPOR by default);
* portfolio: the price range of its risk matrix;
* VaR: its confidence quantile of |MPOR return| over the base scenario set;
* TIMS: the larger of its up / down ranges;
* standard: its first tier's IM rate (the move IM covers);
* a liquidity add-on: its base regime's move.

Scenarios move one underlying at a time, down and up, each at unchanged vol and with vol up by
``vol_stress`` (options revalued with Black-76 by the regime's revaluer, so a short strangle loses
on both sides and a short put more than its delta says). An account's stress loss is the sum over
underlyings of its worst scenario on each -- assets stressed separately and their worst cases added,
no offset across assets (a hedge across assets is not credited in a default). Its uncovered loss is
max(stress loss - IM, 0): only its own margin covers it (client margin is segregated). A clearing
member's uncovered loss is the sum over the accounts it clears.
"""

from __future__ import annotations

import numpy as np

from sim.core.instruments import InstrumentTable, MarketState
from clearing.margin.base import MarginRegime
from clearing.margin.scenarios import Revaluer

__all__ = ["margin_moves", "stress_pnl", "account_stress_losses", "member_uncovered", "assign_members"]


def margin_moves(regime: MarginRegime, market: MarketState) -> np.ndarray:
    """The relative price move per underlying (``table.underlyings`` order) the regime margins."""
    from clearing.margin.liquidity import WithLiquidityAddOn
    from clearing.margin.portfolio import PortfolioRegime
    from clearing.margin.span import SpanRegime
    from clearing.margin.standard import StandardRegime
    from clearing.margin.tims import TimsRegime
    from clearing.margin.var import VaRRegime

    table = regime.table
    n_under = len(table.underlyings)
    if isinstance(regime, WithLiquidityAddOn):
        return margin_moves(regime.base, market)
    if isinstance(regime, SpanRegime):
        scan = np.asarray(regime.scan_ranges(market), dtype=np.float64)
        if regime.config.price_scan_mode == "absolute":
            scan = scan / np.asarray(market.underlying_prices, dtype=np.float64)
        return scan.copy()
    if isinstance(regime, PortfolioRegime):
        return np.full(n_under, regime.config.price_range)
    if isinstance(regime, VaRRegime):
        base = regime.scenario_sets()["base"]
        if base.shape[0] == 0:
            raise ValueError("the VaR regime has no scenarios yet: its history is shorter than one MPOR")
        return np.quantile(np.abs(base), regime.config.confidence, axis=0)
    if isinstance(regime, TimsRegime):
        c = regime.config
        return np.array([max(r.up, r.down) for r in (c.range_by_underlying.get(u, c) for u in table.underlyings)])
    if isinstance(regime, StandardRegime):
        return np.full(n_under, regime.config.tiers[0].im_rate)
    raise TypeError(f"no stress move for regime {type(regime).__name__}")


def stress_pnl(regime: MarginRegime, market: MarketState, multiple: float, vol_stress: float) -> np.ndarray:
    """Instruments x (underlyings x 4) P&L per long lot: for each underlying u, the columns
    (down, vol same), (down, vol up), (up, vol same), (up, vol up), where u moves by
    -/+ ``multiple`` x its margin move (a fall never below -99%) and every other underlying stays."""
    table: InstrumentTable = regime.table
    rev = getattr(regime, "rev", None) or Revaluer(table)
    moves = multiple * margin_moves(regime, market)
    n, n_under = len(table), len(table.underlyings)
    vols = np.asarray(market.vols, dtype=np.float64)
    under = table.underlying_index
    rel = np.zeros((n, n_under * 4))
    vol = np.repeat(vols[:, None], n_under * 4, axis=1)
    for u in range(n_under):  # a loop over underlyings (a handful), building columns
        on = under == u
        down, up = max(-moves[u], -0.99), moves[u]
        for k, (m, v_up) in enumerate(((down, False), (down, True), (up, False), (up, True))):
            col = 4 * u + k
            rel[on, col] = m
            if v_up:
                vol[on, col] = vols[on] * (1.0 + vol_stress)
    return rev.relative(market, rel, vol_level=vol)


def account_stress_losses(lots: np.ndarray, pnl: np.ndarray, n_under: int) -> np.ndarray:
    """Per account (rows of ``lots``, accounts x instruments): the sum over underlyings of the
    worst loss over that underlying's scenarios (>= 0)."""
    p = np.asarray(lots, dtype=np.float64) @ pnl  # (A, 4U)
    worst = np.maximum(-p.reshape(p.shape[0], n_under, 4).min(axis=2), 0.0)
    return worst.sum(axis=1)


def member_uncovered(stress: np.ndarray, im: np.ndarray, member_of: np.ndarray, n_members: int) -> np.ndarray:
    """Per member: the sum over its accounts of max(stress loss - IM, 0) (accounts with member -1 are
    no member's)."""
    uncovered = np.maximum(np.asarray(stress) - np.asarray(im), 0.0)
    mine = member_of >= 0
    return np.bincount(member_of[mine], weights=uncovered[mine], minlength=n_members)


def assign_members(n_accounts: int, n_members: int, rng: np.random.Generator) -> np.ndarray:
    """Which clearing member clears each account: uniform, from the run's own stream (reproducible)."""
    return rng.integers(0, n_members, size=n_accounts)
