"""Message latency between agents and the venue, in simulated seconds.

A latency model is either constant or drawn per message from a distribution. Draws come from the
model's own random stream and are taken in blocks so the per-message cost is an array read. A link
(one ``Latency``) serves one account's messages, or a whole group's (``Venue.share_links``): each
message's delay is an independent draw either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from sim.core.strict_model import StrictModel

_BLOCK = 4096
# A link's first block is small and each refill doubles it up to _BLOCK: an episode opens two links
# per trading account outside the groups that share one pair (``Venue.share_links``), and most such
# accounts send a few orders, so full blocks of 4,096 (a Python list: 131 kB a link) were most of an
# episode's memory at scale. Every kind draws its values one after
# another from the stream, so blocks of 16, 32, ... give the same numbers as blocks of 4,096.
_FIRST_BLOCK = 16


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

    __slots__ = ("config", "_rng", "_draws", "_constant", "_size")

    def __init__(self, config: LatencyConfig, rng: np.random.Generator | None = None) -> None:
        self.config = config
        self._rng = rng
        self._constant = config.mean if config.kind == "constant" else None
        if self._constant is None and rng is None:
            raise ValueError(f"a {config.kind} latency needs a random stream")
        self._draws: Iterator[float] = iter(())  # the current block's delays not yet taken
        self._size = _FIRST_BLOCK // 2  # the first refill doubles it

    def _refill(self) -> None:
        c, rng = self.config, self._rng
        assert rng is not None
        spread = c.mean - c.min
        n = self._size = min(2 * self._size, _BLOCK)
        if c.kind == "exponential":
            draws = rng.exponential(spread, n) if spread > 0 else np.zeros(n)
        elif c.kind == "lognormal":
            # choose mu so the lognormal part has mean ``spread``
            mu = np.log(max(spread, 1e-300)) - 0.5 * c.sigma**2
            draws = rng.lognormal(mu, c.sigma, n) if spread > 0 else np.zeros(n)
        else:
            draws = rng.uniform(0.0, 2.0 * spread, n)
        self._draws = iter((draws + c.min).tolist())

    def next(self) -> float:
        if self._constant is not None:
            return self._constant
        for value in self._draws:  # the block's next delay: one C-level iterator step per message
            return value
        self._refill()
        return next(self._draws)
