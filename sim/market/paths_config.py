"""Config models for exogenous price paths, scripted shocks and implied-volatility surfaces.

Units: times and durations are simulated seconds; drifts, vols, jump and switching intensities and
mean-reversion speeds are annualised (per year of ``sim.core.instruments.SECONDS_PER_YEAR``);
jump sizes are in log terms. Path models are a union discriminated by ``kind`` (``gbm``,
``merton``, ``garch``, ``regime``, ``ou_megashock``, ``replay``) and so are shocks (``crash``,
``gap``, ``vol_spike``, ``correlation_breakdown``, ``depeg``). Every validation error names the
field path (pydantic's ``loc``) and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
from numpy.typing import ArrayLike
from pydantic import Field, ValidationInfo, field_validator, model_validator

from sim.core.strict_model import StrictModel
from sim.market.price_csv import read_price_csv, read_price_csv_header

__all__ = [
    "check_correlation",
    "UnderlyingSpec",
    "JumpSpec",
    "OUUnderlyingSpec",
    "GBMPathConfig",
    "MertonPathConfig",
    "GarchPathConfig",
    "RegimeSwitchPathConfig",
    "OUMegashockPathConfig",
    "ReplayPathConfig",
    "PathModelConfig",
    "CrashShock",
    "GapShock",
    "VolSpikeShock",
    "CorrelationBreakdownShock",
    "DepegShock",
    "ShockConfig",
    "PathsConfig",
]

PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


# ---------------------------------------------------------------------------------------------
# Correlation matrices
# ---------------------------------------------------------------------------------------------


def check_correlation(matrix: ArrayLike, n: int | None = None, tol: float = 1e-9) -> np.ndarray:
    """Return ``matrix`` as a float array if it is a valid correlation matrix, else raise ValueError.

    Valid: square (n x n if ``n`` is given), finite, symmetric, unit diagonal, entries in [-1, 1]
    and positive semidefinite (smallest eigenvalue >= -tol). The message says which rule failed
    and where.
    """
    try:
        c = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"correlation matrix is not a rectangular table of numbers ({exc})") from None
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"correlation matrix must be square, got shape {c.shape}")
    if n is not None and c.shape[0] != n:
        raise ValueError(f"correlation matrix is {c.shape[0]}x{c.shape[0]} but there are {n} underlyings")
    if not np.all(np.isfinite(c)):
        raise ValueError("correlation matrix has non-finite entries")
    bad = np.argwhere(np.abs(np.diag(c) - 1.0) > tol)
    if bad.size:
        i = int(bad[0, 0])
        raise ValueError(f"correlation matrix diagonal entry [{i}][{i}] = {float(c[i, i])!r} must be 1")
    asym = np.argwhere(np.abs(c - c.T) > tol)
    if asym.size:
        i, j = (int(v) for v in asym[0])
        raise ValueError(f"correlation matrix is not symmetric: [{i}][{j}] = {float(c[i, j])!r} but [{j}][{i}] = {float(c[j, i])!r}")
    out = np.argwhere(np.abs(c) > 1.0 + tol)
    if out.size:
        i, j = (int(v) for v in out[0])
        raise ValueError(f"correlation matrix entry [{i}][{j}] = {float(c[i, j])!r} is outside [-1, 1]")
    min_eig = float(np.linalg.eigvalsh(0.5 * (c + c.T)).min())
    if min_eig < -tol:
        raise ValueError(
            f"correlation matrix is not positive semidefinite (smallest eigenvalue {min_eig:.6g}); "
            "no joint distribution has these pairwise correlations"
        )
    return 0.5 * (c + c.T)


def _correlation_over_underlyings(v: list[list[float]] | None, info: ValidationInfo) -> list[list[float]] | None:
    """A model's ``correlation`` field checked against its ``underlyings`` (validated before it)."""
    if v is None:
        return v
    und = info.data.get("underlyings")
    check_correlation(v, None if und is None else len(und))
    return v


# ---------------------------------------------------------------------------------------------
# Path models
# ---------------------------------------------------------------------------------------------


class UnderlyingSpec(StrictModel):
    """One underlying of a diffusion model: dS/S = drift dt + vol dW (annualised)."""

    name: Annotated[str, Field(min_length=1)]
    s0: PositiveFloat
    drift: FiniteFloat = 0.0
    vol: NonNegFloat


def _unique_names(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{what} name {n!r} appears more than once")
        seen.add(n)


class _Correlated(StrictModel):
    """Shared by models with several underlyings driven by correlated Brownian motions."""

    underlyings: Annotated[list[UnderlyingSpec], Field(min_length=1)]
    correlation: list[list[float]] | None = None  # None: independent

    @field_validator("underlyings")
    @classmethod
    def _names_unique(cls, v: list[UnderlyingSpec]) -> list[UnderlyingSpec]:
        _unique_names([u.name for u in v], "underlying")
        return v

    @field_validator("correlation")
    @classmethod
    def _valid_correlation(cls, v: list[list[float]] | None, info: ValidationInfo) -> list[list[float]] | None:
        return _correlation_over_underlyings(v, info)

    def names(self) -> list[str]:
        return [u.name for u in self.underlyings]

    def correlation_matrix(self) -> np.ndarray:
        n = len(self.underlyings)
        return np.eye(n) if self.correlation is None else check_correlation(self.correlation, n)


class GBMPathConfig(_Correlated):
    """Correlated geometric Brownian motions (exact log-normal steps)."""

    kind: Literal["gbm"] = "gbm"


class JumpSpec(StrictModel):
    """Poisson jumps in log price: ``intensity`` per year, each jump ~ Normal(mean, std) in log."""

    intensity: NonNegFloat
    mean: FiniteFloat = 0.0
    std: NonNegFloat = 0.0


class MertonPathConfig(_Correlated):
    """Merton jump-diffusion: correlated GBM plus independent compound-Poisson log jumps.

    ``compensated=True`` subtracts intensity * (E[e^J] - 1) from the log drift, so the expected
    price grows at ``drift`` exactly as without jumps; ``False`` leaves the jumps' mean in the
    path (a negative jump mean then adds a downward drift).
    """

    kind: Literal["merton"] = "merton"
    jumps: dict[str, JumpSpec] = Field(default_factory=dict)
    compensated: bool = True

    @field_validator("jumps")
    @classmethod
    def _known_names(cls, v: dict[str, JumpSpec], info: ValidationInfo) -> dict[str, JumpSpec]:
        und = info.data.get("underlyings")
        if und is not None:
            names = {u.name for u in und}
            for k in v:
                if k not in names:
                    raise ValueError(f"jumps for unknown underlying {k!r} (known: {sorted(names)})")
        return v


class GarchPathConfig(_Correlated):
    """GARCH(1,1) volatility clustering on each underlying's log returns, one update per step.

    h_{k+1} = omega_step + alpha * eps_k^2 + beta * h_k, eps_k = sqrt(h_k) z_k with correlated z.
    ``alpha`` and ``beta`` are per grid step (so the clustering half-life is measured in steps:
    ln 0.5 / ln(alpha + beta)). ``omega`` is an annualised variance rate (omega_step = omega*dt);
    when None it is set per underlying so the unconditional variance is that underlying's
    ``vol``^2 (variance targeting): omega = (1 - alpha - beta) * vol^2. ``initial_vol_ratio``
    starts h at that multiple of the unconditional vol.
    """

    kind: Literal["garch"] = "garch"
    alpha: Annotated[float, Field(ge=0.0, lt=1.0)]
    beta: Annotated[float, Field(ge=0.0, lt=1.0)]
    omega: PositiveFloat | None = None
    initial_vol_ratio: PositiveFloat = 1.0

    @field_validator("beta")
    @classmethod
    def _stationary(cls, v: float, info: ValidationInfo) -> float:
        a = info.data.get("alpha")
        if a is not None and a + v >= 1.0:
            raise ValueError(f"alpha + beta = {a + v!r} must be < 1 for a stationary GARCH(1,1)")
        return v


class RegimeSwitchPathConfig(_Correlated):
    """Correlated GBM whose vols are scaled by a market-wide 2-state Markov regime (calm, stressed).

    ``switch_rates`` = (calm->stressed, stressed->calm) intensities per year; the regime changes at
    most once per step with probability 1 - exp(-rate * dt).
    """

    kind: Literal["regime"] = "regime"
    vol_multipliers: tuple[PositiveFloat, PositiveFloat] = (1.0, 3.0)
    switch_rates: tuple[NonNegFloat, NonNegFloat] = (4.0, 52.0)
    initial_state: Literal[0, 1] = 0


class OUUnderlyingSpec(StrictModel):
    """Mean-reverting log price with rare megashocks (ABIDES RMSC04-style oracle).

    d ln S = kappa (ln mean - ln S) dt + vol dW + J dN, N Poisson(megashock_intensity per year),
    |J| ~ Normal(megashock_mean, megashock_std) in log terms with sign per ``megashock_sign``.
    """

    name: Annotated[str, Field(min_length=1)]
    mean: PositiveFloat
    s0: PositiveFloat | None = None  # None: start at the mean
    kappa: NonNegFloat
    vol: NonNegFloat
    megashock_intensity: NonNegFloat = 0.0
    megashock_mean: NonNegFloat = 0.0
    megashock_std: NonNegFloat = 0.0
    megashock_sign: Literal["random", "down", "up"] = "random"


class OUMegashockPathConfig(_Correlated):
    """Mean-reverting log prices with megashocks; ``correlation`` couples the diffusion parts."""

    kind: Literal["ou_megashock"] = "ou_megashock"
    # another spec than the base's: what the base does with underlyings reads only their names
    underlyings: Annotated[list[OUUnderlyingSpec], Field(min_length=1)]  # type: ignore[assignment]


class ReplayPathConfig(StrictModel):
    """Replay a CSV ``timestamp,<underlying columns>`` onto the grid (the row in force at each time).

    Timestamps: numbers in ``time_unit`` or ISO-8601 date-times; strictly increasing. Prices:
    finite and positive. With ``rebase`` the first timestamp becomes t = 0. The file is read and
    checked when the config is validated; errors name the file and the line.
    """

    kind: Literal["replay"] = "replay"
    # before ``path``: its validator reads this
    allow_outside_config_folder: bool = Field(
        False, description="read a file outside the config file's folder tree (absolute or ../ paths)")
    time_unit: Literal["s", "ms", "us", "ns"] = "s"
    path: Path
    columns: list[str] | None = None  # None: every column but the timestamp
    rebase: bool = True
    vol_halflife: PositiveFloat = 86400.0  # seconds, EWMA of squared log returns for ``vols``

    @field_validator("path")
    @classmethod
    def _file_ok(cls, v: Path, info: ValidationInfo) -> Path:
        """Resolve against the config file's folder (validation context ``root``; the working
        directory for a config built in Python), confine to that folder tree unless
        ``allow_outside_config_folder``, read and check the file. Errors never quote the file."""

        ctx = info.context or {}
        root = Path(ctx.get("root") or Path.cwd()).resolve()
        given = Path(v)
        full = (given if given.is_absolute() else root / given).resolve()
        # ``trusted``: re-validating a config that was already confined (its path is absolute now)
        allowed = ctx.get("trusted") or info.data.get("allow_outside_config_folder") or full.is_relative_to(root)
        if not allowed:
            raise ValueError(f"{given} resolves to {full}, outside the config's folder {root}; move the file under "
                             f"that folder or set allow_outside_config_folder: true")
        read_price_csv(full, info.data.get("time_unit", "s"))
        return full  # the resolved file, so the run reads what was checked

    @model_validator(mode="after")
    def _columns_exist(self) -> "ReplayPathConfig":
        if self.columns is not None:

            header = read_price_csv_header(self.path)
            for c in self.columns:
                if c not in header:
                    raise ValueError(f"columns: {c!r} is not a column of {self.path} (has {header})")
            _unique_names(self.columns, "column")
        return self

    def names(self) -> list[str]:
        if self.columns is not None:
            return list(self.columns)

        return read_price_csv_header(self.path)


PathModelConfig = Annotated[
    Union[
        GBMPathConfig,
        MertonPathConfig,
        GarchPathConfig,
        RegimeSwitchPathConfig,
        OUMegashockPathConfig,
        ReplayPathConfig,
    ],
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------------------------------------
# Scripted shocks
# ---------------------------------------------------------------------------------------------


class _Shock(StrictModel):
    start: Seconds
    underlyings: list[str] | None = None  # None: every underlying

    def targets(self) -> list[str] | None:
        return self.underlyings


class CrashShock(_Shock):
    """Fall by ``drop`` (0.3 = -30%) over ``duration``, then win back ``recovery`` of the fall.

    Applied as a log-linear multiplicative overlay on the base path: at start+duration the price
    is (1 - drop) x the base path; after a further ``recovery_duration`` it is
    (1 - drop * (1 - recovery)) x the base path, and stays so.
    """

    kind: Literal["crash"] = "crash"
    drop: Annotated[float, Field(gt=0.0, lt=1.0)]
    duration: Seconds
    recovery: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    recovery_duration: Seconds = 0.0


class GapShock(_Shock):
    """An instantaneous, permanent jump of ``size`` (-0.1 = -10%) at ``start``."""

    kind: Literal["gap"] = "gap"
    size: Annotated[float, Field(gt=-1.0, allow_inf_nan=False)]


class VolSpikeShock(_Shock):
    """Multiply the dispersion of the log increments inside [start, start+duration) by ``factor``."""

    kind: Literal["vol_spike"] = "vol_spike"
    duration: PositiveFloat
    factor: PositiveFloat


class CorrelationBreakdownShock(_Shock):
    """Inside [start, start+duration) re-mix the increments of ``underlyings`` to a new correlation.

    ``mode``: ``decouple`` (identity), ``lockstep`` (all ones: perfectly correlated) or ``matrix``
    (``correlation``, over ``underlyings`` in order).
    """

    kind: Literal["correlation_breakdown"] = "correlation_breakdown"
    underlyings: Annotated[list[str], Field(min_length=2)]
    duration: PositiveFloat
    mode: Literal["decouple", "lockstep", "matrix"] = "decouple"
    correlation: list[list[float]] | None = None

    @field_validator("underlyings")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        _unique_names(v, "underlying")
        return v

    @field_validator("correlation")
    @classmethod
    def _valid_correlation(cls, v: list[list[float]] | None, info: ValidationInfo) -> list[list[float]] | None:
        return _correlation_over_underlyings(v, info)

    @model_validator(mode="after")
    def _matrix_iff_mode(self) -> "CorrelationBreakdownShock":
        if self.mode == "matrix" and self.correlation is None:
            raise ValueError("mode 'matrix' needs a correlation matrix")
        if self.mode != "matrix" and self.correlation is not None:
            raise ValueError(f"a correlation matrix is only used with mode 'matrix', not {self.mode!r}")
        return self

    def target_correlation(self) -> np.ndarray:
        n = len(self.underlyings)
        if self.mode == "decouple":
            return np.eye(n)
        if self.mode == "lockstep":
            return np.ones((n, n))
        assert self.correlation is not None  # mode "matrix" requires one (_matrix_iff_mode)
        return check_correlation(self.correlation, n)


class DepegShock(StrictModel):
    """A pegged asset leaves its peg: ``peg`` -> ``trough`` over ``duration`` (linear in price),
    then -> ``recovery_level`` over ``recovery_duration`` and stays there.

    ``pin=True`` replaces the asset's base path by this profile (a stable asset pinned at the peg);
    ``pin=False`` multiplies the base path by profile / peg.
    """

    kind: Literal["depeg"] = "depeg"
    underlying: Annotated[str, Field(min_length=1)]
    start: Seconds
    peg: PositiveFloat = 1.0
    trough: PositiveFloat
    duration: Seconds
    recovery_level: PositiveFloat | None = None  # None: stays at the trough
    recovery_duration: Seconds = 0.0
    pin: bool = True

    @model_validator(mode="after")
    def _levels(self) -> "DepegShock":
        if self.trough >= self.peg:
            raise ValueError(f"trough {self.trough!r} must be below the peg {self.peg!r}")
        return self

    def targets(self) -> list[str]:
        return [self.underlying]


ShockConfig = Annotated[
    Union[CrashShock, GapShock, VolSpikeShock, CorrelationBreakdownShock, DepegShock],
    Field(discriminator="kind"),
]


class PathsConfig(StrictModel):
    """All exogenous price paths of an episode: one or more models (underlying names unique
    across them; models are independent of each other) plus scripted shocks.

    Shocks that re-shape increments (``vol_spike``, ``correlation_breakdown``) are applied first,
    in the order listed, then level overlays (``crash``, ``gap``, ``depeg``) in the order listed.
    """

    models: Annotated[list[PathModelConfig], Field(min_length=1)]
    shocks: list[ShockConfig] = Field(default_factory=list)
    dt: PositiveFloat = 1.0  # grid step, seconds

    @model_validator(mode="after")
    def _names(self) -> "PathsConfig":
        names: list[str] = []
        for m in self.models:
            names.extend(m.names())
        _unique_names(names, "underlying")
        known = set(names)
        for i, s in enumerate(self.shocks):
            for n in s.targets() or ():
                if n not in known:
                    raise ValueError(f"shocks.{i} ({s.kind}): unknown underlying {n!r} (known: {names})")
        return self

    def names(self) -> list[str]:
        out: list[str] = []
        for m in self.models:
            out.extend(m.names())
        return out
