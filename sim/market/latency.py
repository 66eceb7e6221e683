"""Message latency between agents and the venue, in simulated seconds.

A latency model is either constant or drawn per message from a distribution. Draws come from the
model's own random stream and are taken in blocks so the per-message cost is an array read.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from sim.core.strict_model import StrictModel

_BLOCK = 4096


class LatencyConfig(StrictModel):
    """``constant``: every message takes ``mean`` s. Otherwise drawn per message with that mean.

    ``exponential`` and ``lognormal`` (with ``sigma`` the log-std) are right-skewed as real network
    delays are; ``uniform`` spreads over [min, 2*mean-min]. ``min`` is a floor added to every draw.
    """

    kind: Literal["constant", "exponential", "lognormal", "uniform"] = "constant"
    mean: float = Field(0.001, ge=0.0, description="mean latency in seconds")
    sigma: float = Field(0.5, gt=0.0, description="log-std for lognormal")
    min: float = Field(0.0, ge=0.0, description="floor in seconds")

    @model_validator(mode="after")
    def _min_below_mean(self) -> "LatencyConfig":
        if self.kind != "constant" and self.min > self.mean:
            raise ValueError(f"min ({self.min}) must not exceed mean ({self.mean})")
        return self


class Latency:
    """Draws message delays; ``next()`` is the hot-path call."""

    __slots__ = ("config", "_rng", "_block", "_pos", "_constant")

    def __init__(self, config: LatencyConfig, rng: np.random.Generator | None = None) -> None:
        self.config = config
        self._rng = rng
        self._constant = config.mean if config.kind == "constant" else None
        if self._constant is None and rng is None:
            raise ValueError(f"a {config.kind} latency needs a random stream")
        self._block = np.empty(0)
        self._pos = 0

    def _refill(self) -> None:
        c, rng = self.config, self._rng
        assert rng is not None
        spread = c.mean - c.min
        if c.kind == "exponential":
            draws = rng.exponential(spread, _BLOCK) if spread > 0 else np.zeros(_BLOCK)
        elif c.kind == "lognormal":
            # choose mu so the lognormal part has mean ``spread``
            mu = np.log(max(spread, 1e-300)) - 0.5 * c.sigma**2
            draws = rng.lognormal(mu, c.sigma, _BLOCK) if spread > 0 else np.zeros(_BLOCK)
        else:
            draws = rng.uniform(0.0, 2.0 * spread, _BLOCK)
        self._block = (draws + c.min).tolist()
        self._pos = 0

    def next(self) -> float:
        if self._constant is not None:
            return self._constant
        if self._pos >= len(self._block):
            self._refill()
        value = self._block[self._pos]
        self._pos += 1
        return value
