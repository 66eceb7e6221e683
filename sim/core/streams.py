"""Named random streams spawned from one episode seed.

Each component and each agent draws from its own ``numpy.random.Generator``. A stream's seed is
derived from the episode seed and a stable digest of the stream's name (not Python's ``hash``,
which is salted per process), so the same name gives the same numbers in any process, and
adding a stream never perturbs another.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.random import PCG64, Generator, SeedSequence  # numpy loads its random module lazily


_POOL_WORDS = 4  # numpy's SeedSequence pool size, in 32-bit words


def _seed_words(seed: int) -> list[int]:
    """``seed`` as SeedSequence assembles it before a spawn key: little-endian 32-bit words, padded
    with zeros to the pool size."""
    words = []
    while True:
        words.append(seed & 0xFFFFFFFF)
        seed >>= 32
        if not seed:
            break
    return words + [0] * max(0, _POOL_WORDS - len(words))


def _name_digest(name: str) -> bytes:
    """A stable 16-byte digest of a stream's name (not Python's salted ``hash``)."""
    return hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()


class RandomStreams:
    """Factory of independent, reproducible generators keyed by name."""

    __slots__ = ("seed", "_cache", "_seed_bytes")

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.seed = int(seed)
        self._cache: dict[str, Generator] = {}
        self._seed_bytes = np.array(_seed_words(self.seed), dtype="<u4").tobytes()

    def stream(self, name: str) -> Generator:
        """The generator for ``name`` (created once, then shared by whoever asks by that name)."""
        gen = self._cache.get(name)
        if gen is None:
            gen = self._cache[name] = self.fresh(name)
        return gen

    def fresh(self, name: str) -> Generator:
        """A new generator for ``name`` positioned at its start (the cache is not touched).

        Seeded by ``SeedSequence(seed, spawn_key=name key)``, given as the entropy that call
        assembles (seed words, padded, then the key): the same generator, without numpy's slow
        coercion of a spawn-key tuple -- an episode opens one stream per agent and two per trading
        account. The entropy is read straight from the bytes (the seed's little-endian words, then
        the digest's, read as the spawn key's four little-endian words): building it from a list of Python ints cost a
        quarter of the call."""
        entropy = np.frombuffer(self._seed_bytes + _name_digest(name), dtype="<u4").astype(np.uint32)
        return Generator(PCG64(SeedSequence(entropy)))
