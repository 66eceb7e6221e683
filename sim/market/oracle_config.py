"""Oracle feed configuration: update rule, latency, outages, bounds and manipulation surface."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sim.core.strict_model import StrictModel


class OutageConfig(StrictModel):
    """No publications for ``underlyings`` (all when empty) between ``start`` and ``end`` seconds."""

    start: float = Field(ge=0.0)
    end: float = Field(gt=0.0)
    underlyings: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> "OutageConfig":
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class OracleConfig(StrictModel):
    """How the index is published.

    The oracle samples its sources every ``sample_interval`` s and publishes when the candidate
    moved more than ``deviation`` (fraction) from the last published value or ``heartbeat`` s
    passed; a publication becomes visible ``latency`` s later. ``floor``/``ceiling`` bound what it
    will publish per underlying (the LUNA case). ``venue_weight`` mixes the venue's own last trade
    into the index (the Mango case); ``aggregation='median'`` instead takes the median of
    ``external_sources`` noisy copies of the path plus the venue price.

    The ``mark_*`` fields set how linear contracts are marked (``sim.market.mark``): ``index_basis``
    (index x (1 + an EMA of the book premium, clamped)), or ``median`` -- the median of that price,
    the mid of the impact bid and ask (``mark_impact_notional`` walked into each side) and the last
    trade on the book, optionally clipped to a band around the index -- as perp venues that read
    their own book do.
    """

    sample_interval: float = Field(1.0, gt=0.0)
    heartbeat: float = Field(60.0, gt=0.0)
    deviation: float = Field(0.005, ge=0.0, lt=1.0)
    latency: float = Field(0.0, ge=0.0)
    stale_after: float = Field(120.0, gt=0.0)
    outages: list[OutageConfig] = Field(default_factory=list)
    floor: dict[str, float] = Field(default_factory=dict)
    ceiling: dict[str, float] = Field(default_factory=dict)
    aggregation: Literal["weighted", "median"] = "weighted"
    venue_weight: float = Field(0.0, ge=0.0, le=1.0)
    external_sources: int = Field(3, ge=1, le=15)
    source_noise: float = Field(0.0005, ge=0.0, lt=0.5, description="relative std of each external source")
    mark_basis_window: float = Field(60.0, gt=0.0, description="seconds of book basis averaged into the mark")
    mark_basis_cap: float = Field(0.005, ge=0.0, lt=1.0, description="mark basis clamped to this fraction of index")
    mark_method: Literal["index_basis", "median"] = Field(
        "index_basis", description="index_basis: index x (1 + averaged basis); median: the median of that, the "
                                   "impact bid/ask mid and the last trade (the mark reads the venue's own book)")
    mark_impact_notional: float = Field(10_000.0, gt=0.0, description="median method: quote units walked on each "
                                                                      "side of the book for the impact bid and ask")
    mark_band: float | None = Field(None, gt=0.0, lt=1.0, description="median method: the mark is clipped to "
                                                                      "index x (1 +/- mark_band); None: no band")

    @model_validator(mode="after")
    def _bounds(self) -> "OracleConfig":
        if self.mark_band is not None and self.mark_method != "median":
            raise ValueError(f"mark_band ({self.mark_band}) applies only to mark_method 'median' (the index_basis "
                             f"mark is already bounded by mark_basis_cap)")
        for name, hi in self.ceiling.items():
            if hi <= 0:
                raise ValueError(f"ceiling[{name}] must be positive, got {hi}")
        for name, lo in self.floor.items():
            if lo <= 0:
                raise ValueError(f"floor[{name}] must be positive, got {lo}")
            ceiling = self.ceiling.get(name)
            if ceiling is not None and ceiling <= lo:
                raise ValueError(f"ceiling[{name}] ({ceiling}) must exceed floor ({lo})")
        return self
