"""Deterministic, realistic demo data: Russian-speaking users and rental listings in real cities,
with prices that make sense per category, and their rental histories. `sharehub seed` and the
first `make run` use it; benchmarks and ML use it with larger numbers."""

from __future__ import annotations

import random
import uuid


def seeded_uuid(rng: random.Random) -> uuid.UUID:
    """A version-4 UUID drawn from `rng`, so the same seed gives the same ids."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)
