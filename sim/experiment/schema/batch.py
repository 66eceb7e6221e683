"""Fields every batch of episodes shares (a sweep, a reverse stress test): the batch's name, which
names its output folder, and its seeds."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

__all__ = ["BatchName", "Seeds", "seed_list"]


def _distinct_seeds(v: int | list[int]) -> int | list[int]:
    if isinstance(v, int):
        if v < 1:
            raise ValueError("a seed count must be at least 1")
        return v
    if not v:
        raise ValueError("at least one seed is required")
    if any(s < 0 for s in v):
        raise ValueError("seeds must be >= 0")
    if len(set(v)) != len(v):
        raise ValueError(f"seeds lists a seed twice ({v})")
    return v


# A name that is safe as a folder or file name on every platform.
BatchName = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")]

# A count N (seeds 0..N-1) or a non-empty list of distinct seeds >= 0.
Seeds = Annotated[int | list[int], AfterValidator(_distinct_seeds),
                  Field(description="a count N (seeds 0..N-1) or a list of seeds")]


def seed_list(seeds: int | list[int]) -> list[int]:
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)
