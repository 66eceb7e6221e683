"""Parametric implied-volatility surfaces with a spot-vol link, vectorised over instruments.

For an underlying at spot S, an option of strike K and ``years`` T to expiry is priced with

    x      = ln(K / S)                                  (log-moneyness, sticky to the spot)
    r      = ln(S / spot_ref), or min(r, 0) if downside_only
    atm(S) = atm_vol * exp(-spot_vol_beta * r)          (power:    atm_vol * (S/spot_ref)^-beta)
           = atm_vol - spot_vol_beta * r                (additive: + beta vol per unit log fall)
    T_e    = max(T, min_years)
    g(T)   = (T_e / term_ref_years) ** term_slope       (power term structure)
           = 1 + term_slope * (T_e - term_ref_years)    (linear term structure)
    vol    = clip(atm(S) * g(T) + skew * x + curvature * x^2, vol_floor, vol_cap)

A negative ``skew`` gives the usual equity / crypto put skew (low strikes carry higher vol); a
positive ``spot_vol_beta`` makes ATM vol rise when the underlying falls below ``spot_ref``.

A :class:`VolSurface` holds its parameters as arrays, one entry per underlying (or per instrument
after :meth:`VolSurface.take`), so a whole instrument table x scenario grid is one call::

    surf = VolSurface.from_configs({"BTC": cfg_btc, "ETH": cfg_eth}, spot_refs)
    per_ins = surf.take(table.underlying_index)           # parameters per instrument
    vols = per_ins.vol(table.strike[:, None], years[:, None], scenario_spots)   # (I, S)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from sim.core.instruments import InstrumentTable

if TYPE_CHECKING:
    from sim.market.volsurface_config import VolSurfaceConfig

__all__ = ["VolSurface"]


def _arr(v: ArrayLike) -> np.ndarray:
    return np.atleast_1d(np.asarray(v, dtype=np.float64))


@dataclass(frozen=True, slots=True)
class VolSurface:
    """Surface parameters, each an array broadcastable against the query arrays.

    Built from ``sim.market.paths_config.VolSurfaceConfig`` (one per underlying) with
    :meth:`from_config` / :meth:`from_configs`; fields mirror the config's.
    """

    names: tuple[str, ...]
    atm_vol: np.ndarray
    skew: np.ndarray
    curvature: np.ndarray
    term_linear: np.ndarray  # bool: linear term factor instead of power
    term_slope: np.ndarray
    term_ref_years: np.ndarray
    min_years: np.ndarray
    spot_ref: np.ndarray
    spot_vol_additive: np.ndarray  # bool: additive spot-vol link instead of power
    spot_vol_beta: np.ndarray
    downside_only: np.ndarray  # bool
    vol_floor: np.ndarray
    vol_cap: np.ndarray

    # ----------------------------------------------------------------------------- construction

    @classmethod
    def from_config(cls, cfg: VolSurfaceConfig, spot_ref: float | None = None, name: str = "") -> "VolSurface":
        """One underlying's surface. ``spot_ref`` is used when the config leaves it None."""
        ref = cfg.spot_ref if cfg.spot_ref is not None else spot_ref
        if ref is None or not ref > 0:
            raise ValueError(f"vol surface {name!r}: spot_ref is not configured and no positive reference spot was given")
        return cls(
            names=(name,),
            atm_vol=_arr(cfg.atm_vol),
            skew=_arr(cfg.skew),
            curvature=_arr(cfg.curvature),
            term_linear=np.atleast_1d(np.asarray(cfg.term_structure == "linear")),
            term_slope=_arr(cfg.term_slope),
            term_ref_years=_arr(cfg.term_ref_years),
            min_years=_arr(cfg.min_years),
            spot_ref=_arr(ref),
            spot_vol_additive=np.atleast_1d(np.asarray(cfg.spot_vol_mode == "additive")),
            spot_vol_beta=_arr(cfg.spot_vol_beta),
            downside_only=np.atleast_1d(np.asarray(bool(cfg.downside_only))),
            vol_floor=_arr(cfg.vol_floor),
            vol_cap=_arr(cfg.vol_cap),
        )

    @classmethod
    def from_configs(
        cls, configs: Mapping[str, VolSurfaceConfig], spot_refs: Mapping[str, float] | Sequence[float] | None = None
    ) -> "VolSurface":
        """Stack per-underlying configs (in mapping order) into one surface with (U,) parameters.

        ``spot_refs``: reference spots (by name, or in the same order) for configs whose
        ``spot_ref`` is None -- typically the starting prices of the paths.
        """
        names = list(configs)
        parts = []
        for i, name in enumerate(names):
            if spot_refs is None:
                ref = None
            elif isinstance(spot_refs, Mapping):
                ref = spot_refs.get(name)
            else:
                ref = spot_refs[i]
            parts.append(cls.from_config(configs[name], ref, name))
        return cls.stack(parts)

    @classmethod
    def stack(cls, parts: Sequence["VolSurface"]) -> "VolSurface":
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "names":
                kw["names"] = tuple(n for p in parts for n in p.names)
            else:
                kw[f.name] = np.concatenate([getattr(p, f.name) for p in parts])
        return cls(**kw)

    def take(self, index: ArrayLike) -> "VolSurface":
        """Parameters re-indexed, e.g. by ``InstrumentTable.underlying_index`` (one per instrument).

        ``index`` may be an array of any shape; the parameters take that shape.
        """
        index = np.asarray(index, dtype=np.int64)
        kw = {f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "names"}
        flat = index.ravel()
        kw["names"] = tuple(self.names[i] for i in flat)
        return type(self)(**kw)

    def with_spot_ref(self, spot_ref: ArrayLike) -> "VolSurface":
        """The same surface re-anchored at new reference spot(s) (e.g. at the episode start)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw["spot_ref"] = np.broadcast_to(_arr(spot_ref), self.spot_ref.shape).copy()
        return type(self)(**kw)

    def __len__(self) -> int:
        return int(self.atm_vol.size)

    # ----------------------------------------------------------------------------- evaluation

    def _p(self, name: str, ndim: int) -> np.ndarray:
        """A parameter array with trailing axes added so it broadcasts against query arrays of
        ``ndim`` dimensions whose leading axes index the surface's entries."""
        a = getattr(self, name)
        extra = ndim - a.ndim
        return a.reshape(a.shape + (1,) * extra) if extra > 0 else a

    def _atm(self, spot: np.ndarray, nd: int) -> np.ndarray:
        r = np.log(spot / self._p("spot_ref", nd))
        r = np.where(self._p("downside_only", nd), np.minimum(r, 0.0), r)
        beta = self._p("spot_vol_beta", nd)
        atm0 = self._p("atm_vol", nd)
        return np.where(self._p("spot_vol_additive", nd), atm0 - beta * r, atm0 * np.exp(-beta * r))

    def _term(self, years: np.ndarray, nd: int) -> np.ndarray:
        ref = self._p("term_ref_years", nd)
        te = np.maximum(np.where(np.isfinite(years), years, ref), self._p("min_years", nd))
        slope = self._p("term_slope", nd)
        return np.where(self._p("term_linear", nd), 1.0 + slope * (te - ref), (te / ref) ** slope)

    def atm(self, spot: ArrayLike) -> np.ndarray:
        """ATM vol at the reference tenor for spot(s), with the spot-vol link applied (unclipped).

        ``spot`` broadcasts against the parameters: shape (U,), or (U, S) for S scenarios.
        """
        spot = np.asarray(spot, dtype=np.float64)
        return self._atm(spot, max(spot.ndim, self.atm_vol.ndim))

    def vol(self, strike: ArrayLike, years: ArrayLike, spot: ArrayLike) -> np.ndarray:
        """Implied vol for strike(s), years to expiry and spot(s), all broadcast together and
        against the parameters (leading axes = surface entries). Infinite ``years`` (perpetuals)
        use the reference tenor."""
        strike = np.asarray(strike, dtype=np.float64)
        years = np.asarray(years, dtype=np.float64)
        spot = np.asarray(spot, dtype=np.float64)
        nd = max(strike.ndim, years.ndim, spot.ndim, self.atm_vol.ndim)
        x = np.log(strike / spot)
        v = self._atm(spot, nd) * self._term(years, nd) + self._p("skew", nd) * x + self._p("curvature", nd) * x * x
        return np.clip(v, self._p("vol_floor", nd), self._p("vol_cap", nd))

    def atm_vols(self, spot: ArrayLike) -> np.ndarray:
        """Clipped ATM vol per entry at the reference tenor (what ``MarketState.atm_vols`` holds)."""
        spot = np.asarray(spot, dtype=np.float64)
        return self.vol(spot, np.inf, spot)

    def instrument_vols(self, table: InstrumentTable, now: float, spots: ArrayLike) -> np.ndarray:
        """Vol per instrument of ``table`` (this surface indexed by ``table.underlyings``).

        ``spots``: prices per underlying, (U,) or (U, S) scenarios; returns (I,) or (I, S).
        Options read the surface at their strike and expiry; other instruments get the ATM vol at
        the reference tenor.
        """
        where = {n: i for i, n in enumerate(self.names)}
        missing = [u for u in table.underlyings if u not in where]
        if missing:
            raise KeyError(f"no vol surface for underlyings {missing}")
        sel = np.array([where[u] for u in table.underlyings], dtype=np.int64)
        spots = np.asarray(spots, dtype=np.float64)
        per_ins = self.take(sel[table.underlying_index])
        s = spots[table.underlying_index]
        years = table.years_to_expiry(now)
        strike = np.where(table.is_option, table.strike, np.nan)
        if s.ndim == 2:
            years = years[:, None]
            strike = strike[:, None]
            opt = table.is_option[:, None]
        else:
            opt = table.is_option
        k = np.where(opt, strike, s)
        y = np.where(opt & np.isfinite(years), years, per_ins._p("term_ref_years", s.ndim))
        return per_ins.vol(k, y, s)
