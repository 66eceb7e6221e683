"""Named random streams spawned from one episode seed.

Each component and each agent draws from its own ``numpy.random.Generator``. A stream's seed is
derived from the episode seed and a stable digest of the stream's name (not Python's ``hash``,
which is salted per process), so the same name gives the same numbers in any process, and
adding a stream never perturbs another.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _name_key(name: str) -> tuple[int, ...]:
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


class RandomStreams:
    """Factory of independent, reproducible generators keyed by name."""

    __slots__ = ("seed", "_cache")

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.seed = int(seed)
        self._cache: dict[str, np.random.Generator] = {}

    def stream(self, name: str) -> np.random.Generator:
        """The generator for ``name`` (created once, then shared by whoever asks by that name)."""
        gen = self._cache.get(name)
        if gen is None:
            seq = np.random.SeedSequence(self.seed, spawn_key=_name_key(name))
            gen = np.random.Generator(np.random.PCG64(seq))
            self._cache[name] = gen
        return gen

    def fresh(self, name: str) -> np.random.Generator:
        """A new generator for ``name`` positioned at its start (the cache is not touched)."""
        seq = np.random.SeedSequence(self.seed, spawn_key=_name_key(name))
        return np.random.Generator(np.random.PCG64(seq))
