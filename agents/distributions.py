"""Distributions a group's parameters may be drawn from, and the samplers agents draw with.

A :data:`Dist` is a plain number or ``{dist: uniform, low, high}``, ``{dist: normal, mean, std,
[low], [high]}`` (clipped), ``{dist: lognormal, mean, sigma, [low], [high]}`` or ``{dist: choice,
values, [weights]}``. ``PositiveDist`` / ``NonNegDist`` / ``LotsDist`` check a field's declared
bounds against the distribution's whole support, before anything runs. ``sample`` draws one value;
a ``Sampler`` draws many from one stream in blocks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from sim.core.strict_model import StrictModel

Finite = Annotated[float, Field(allow_inf_nan=False)]


class UniformDist(StrictModel):
    dist: Literal["uniform"]
    low: Finite
    high: Finite

    @model_validator(mode="after")
    def _ordered(self) -> "UniformDist":
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    def support(self) -> tuple[float, float]:
        return self.low, self.high


class _Clipped(StrictModel):
    low: Finite | None = None
    high: Finite | None = None

    @model_validator(mode="after")
    def _clip_ordered(self) -> "_Clipped":
        if self.low is not None and self.high is not None and self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class NormalDist(_Clipped):
    """Normal(mean, std), clipped to [low, high] when given."""

    dist: Literal["normal"]
    mean: Finite
    std: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]

    def support(self) -> tuple[float, float]:
        if self.std == 0.0:
            v = float(np.clip(self.mean, -math.inf if self.low is None else self.low,
                              math.inf if self.high is None else self.high))
            return v, v
        return (-math.inf if self.low is None else self.low, math.inf if self.high is None else self.high)


class LogNormalDist(_Clipped):
    """Log-normal with the given ``mean`` (of the distribution itself, not of its log) and ``sigma``
    (the std of the log): ln X ~ Normal(ln mean - sigma^2 / 2, sigma). Clipped to [low, high]."""

    dist: Literal["lognormal"]
    mean: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    sigma: Annotated[float, Field(ge=0.0, le=5.0, allow_inf_nan=False)]

    @property
    def mu(self) -> float:
        return math.log(self.mean) - 0.5 * self.sigma**2

    def support(self) -> tuple[float, float]:
        lo = 5e-324 if self.low is None else max(self.low, 5e-324)  # open at zero
        if self.sigma == 0.0:
            v = self.mean
            return max(v, lo), v if self.high is None else min(v, self.high)
        return lo, math.inf if self.high is None else self.high


class ChoiceDist(StrictModel):
    """One of ``values`` with probabilities proportional to ``weights`` (equal when omitted)."""

    dist: Literal["choice"]
    values: list[Finite] = Field(min_length=1)
    weights: list[Annotated[float, Field(ge=0.0, allow_inf_nan=False)]] | None = None

    @model_validator(mode="after")
    def _weights(self) -> "ChoiceDist":
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(f"weights has {len(self.weights)} entries, values has {len(self.values)}")
            if sum(self.weights) <= 0:
                raise ValueError("weights must not all be zero")
        return self

    def support(self) -> tuple[float, float]:
        if self.weights is None:
            vals = self.values
        else:
            vals = [v for v, w in zip(self.values, self.weights) if w > 0]
        return min(vals), max(vals)


DistModel = Annotated[Union[UniformDist, NormalDist, LogNormalDist, ChoiceDist], Field(discriminator="dist")]


def _dist_kind(v: Any) -> str:
    return "dist" if isinstance(v, (dict, UniformDist, NormalDist, LogNormalDist, ChoiceDist)) else "number"


Dist = Annotated[Union[Annotated[Finite, Tag("number")], Annotated[DistModel, Tag("dist")]], Discriminator(_dist_kind)]


def _support(d: Any) -> tuple[float, float]:
    if isinstance(d, (int, float)):
        return float(d), float(d)
    return d.support()


def _bounded(gt: float | None = None, ge: float | None = None, le: float | None = None,
             lt: float | None = None) -> AfterValidator:
    """Check that every value a Dist can draw lies within the bounds."""

    def check(d: Any) -> Any:
        lo, hi = _support(d)
        what = "the value" if isinstance(d, (int, float)) else f"a {d.dist} distribution with support [{lo}, {hi}]"
        if gt is not None and not lo > gt:
            raise ValueError(f"{what} must be > {gt}")
        if ge is not None and not lo >= ge:
            raise ValueError(f"{what} must be >= {ge}")
        if lt is not None and not hi < lt:
            raise ValueError(f"{what} must be < {lt}")
        if le is not None and not hi <= le:
            raise ValueError(f"{what} must be <= {le}")
        return d

    return AfterValidator(check)


PositiveDist = Annotated[Dist, _bounded(gt=0.0)]
NonNegDist = Annotated[Dist, _bounded(ge=0.0)]
LotsDist = Annotated[Dist, _bounded(gt=0.0)]  # a draw is rounded to whole lots, at least one
AnyDist = Dist


def _draw(d: Any, rng: np.random.Generator, n: int | None) -> Any:
    if isinstance(d, (int, float)):
        return float(d) if n is None else np.full(n, float(d))
    if d.dist == "uniform":
        return rng.uniform(d.low, d.high, n)
    if d.dist == "choice":
        p = None
        if d.weights is not None:
            w = np.asarray(d.weights, dtype=np.float64)
            p = w / w.sum()
        return rng.choice(np.asarray(d.values, dtype=np.float64), n, p=p)
    if d.dist == "normal":
        x = rng.normal(d.mean, d.std, n)
    else:
        x = rng.lognormal(d.mu, d.sigma, n)
    if d.low is not None or d.high is not None:
        x = np.clip(x, -np.inf if d.low is None else d.low, np.inf if d.high is None else d.high)
    return x


def sample(d: Any, rng: np.random.Generator) -> float:
    """One draw of ``d`` (a plain number is returned as is, without touching ``rng``)."""
    return float(_draw(d, rng, None))


def sample_many(d: Any, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` draws of ``d`` at once, as ``Sampler(d, rng, n)`` takes its first block (a plain number:
    ``n`` copies, no draw) -- a group's per-member draws in one call."""
    return np.asarray(Sampler(d, rng, max(1, n))._refill(), dtype=np.float64)[:n]


@lru_cache(maxsize=256)
def _choice_table(values: tuple[float, ...], weights: tuple[float, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    """(values, cumulative probabilities) of a choice, shared read-only by a group's samplers."""
    w = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
    cdf = (w / w.sum()).cumsum()  # as Generator.choice builds it
    cdf /= cdf[-1]
    table = np.asarray(values, dtype=np.float64), cdf
    for a in table:
        a.flags.writeable = False
    return table


class Sampler:
    """Per-event draws of a Dist from an agent's stream, taken in blocks (a list read per call).

    ``block`` is how many draws one refill takes: an agent that needs a handful of draws in its
    whole life (an ABIDES noise trader sends one order) should not draw 64. Choices are drawn by
    inverting their cumulative weights, computed once (what ``Generator.choice`` does per call)."""

    __slots__ = ("dist", "rng", "block", "_draws", "_const", "_choice")

    def __init__(self, dist: Any, rng: np.random.Generator, block: int = 64) -> None:
        self.dist = dist
        self.rng = rng
        self.block = max(1, block)
        self._const = float(dist) if isinstance(dist, (int, float)) else None
        self._draws: Iterator[float] = iter(())  # the current block's draws not yet taken
        # a "choice" distribution's values and cumulative weights, drawn by inverting the CDF
        self._choice: tuple[np.ndarray, np.ndarray] | None = None
        if self._const is None and dist.dist == "choice":
            self._choice = _choice_table(tuple(dist.values), None if dist.weights is None else tuple(dist.weights))

    def _refill(self) -> list[float]:
        if self._choice is not None:
            values, cdf = self._choice
            return values[np.searchsorted(cdf, self.rng.random(self.block), side="right")].tolist()
        return np.asarray(_draw(self.dist, self.rng, self.block), dtype=np.float64).tolist()

    def __call__(self) -> float:
        if self._const is not None:
            return self._const
        for v in self._draws:  # the block's next draw: one C-level iterator step (called per order)
            return v
        self._draws = iter(self._refill())  # a block holds at least one draw
        return next(self._draws)

    def lots(self) -> int:
        """A draw rounded to whole lots, at least one."""
        return max(1, int(round(self())))


# ------------------------------------------------------------------------------------------- groups
