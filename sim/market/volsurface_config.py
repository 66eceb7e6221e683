"""The configuration of a parametric implied-vol surface (``sim.market.volsurface``)."""

from __future__ import annotations

from typing import Literal

from pydantic import ValidationInfo, field_validator

from sim.core.strict_model import StrictModel
from sim.market.paths_config import FiniteFloat, NonNegFloat, PositiveFloat


class VolSurfaceConfig(StrictModel):
    """Parametric implied-vol surface of one underlying (see ``sim.market.volsurface``).

    vol(K, T, S) = clip(atm(S) * g(T) + skew * x + curvature * x^2, vol_floor, vol_cap),
    x = ln(K / S); spot-vol link atm(S) = atm_vol * (S / spot_ref)^(-spot_vol_beta) (``power``) or
    atm_vol - spot_vol_beta * ln(S / spot_ref) (``additive``), with ln(S/spot_ref) floored at 0
    from above when ``downside_only``; term factor g(T) = (T_e / term_ref_years)^term_slope
    (``power``) or 1 + term_slope * (T_e - term_ref_years) (``linear``), T_e = max(T, min_years).
    """

    atm_vol: PositiveFloat
    skew: FiniteFloat = 0.0
    curvature: NonNegFloat = 0.0
    term_structure: Literal["power", "linear"] = "power"
    term_slope: FiniteFloat = 0.0
    term_ref_years: PositiveFloat = 30.0 / 365.0
    min_years: PositiveFloat = 1.0 / 365.0
    spot_ref: PositiveFloat | None = None  # None: the underlying's starting price
    spot_vol_mode: Literal["power", "additive"] = "power"
    spot_vol_beta: NonNegFloat = 0.0
    downside_only: bool = False
    vol_floor: PositiveFloat = 0.01
    vol_cap: PositiveFloat = 5.0

    @field_validator("vol_cap")
    @classmethod
    def _cap_above_floor(cls, v: float, info: ValidationInfo) -> float:
        fl = info.data.get("vol_floor")
        if fl is not None and v <= fl:
            raise ValueError(f"vol_cap {v!r} must exceed vol_floor {fl!r}")
        return v
