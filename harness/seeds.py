"""Seeds derived from a run's seed: the same numbers in every process and Python version."""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed from (seed, parts)."""
    blob = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


def rng(seed: int, *parts: object) -> random.Random:
    """A random.Random seeded with derive_seed(seed, *parts)."""
    return random.Random(derive_seed(seed, *parts))
