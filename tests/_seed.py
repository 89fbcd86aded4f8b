"""The seed of a test's randomness: printed (pytest shows it when the test fails) and
replayed with ``DISTABLE_TEST_SEED``."""

from __future__ import annotations

import os
import random


def printed_seed() -> int:
    """A fresh seed, or ``DISTABLE_TEST_SEED``'s, printed with how to rerun with it."""
    seed = int(os.environ.get("DISTABLE_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"seed {seed} (rerun with DISTABLE_TEST_SEED={seed})")
    return seed


def seeded_rng() -> random.Random:
    """A ``random.Random`` seeded by ``printed_seed()``."""
    return random.Random(printed_seed())
