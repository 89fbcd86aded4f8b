"""Fixtures of the netns tests: a private network per test, nodes on it, seeded randomness.

Every test here needs root, iproute2 and nftables; without them it is skipped with the
reason (``python3 tasks.py test`` installs the tools when run as root, as on CI). Each
test gets namespaces of its own, named ``dt-<pid>-<hex>-...``, and they are deleted when
it ends, whatever happened; at the start of a session, namespaces left behind by a run
whose process is gone are deleted too.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator

import pytest

from tests._seed import seeded_rng

from ._nodes import Nodes
from ._topology import Lan, delete_stale, missing_requirements, new_prefix


@pytest.fixture(scope="session")
def netns_ready() -> None:
    """Skip (saying why) unless namespaces can be made here; sweep up stale ones once."""
    reason = missing_requirements()
    if reason is not None:
        print(f"skipping: {reason}")
        pytest.skip(reason)
    stale = delete_stale()
    if stale:
        print(f"deleted namespaces left behind by an earlier run: {', '.join(stale)}")


@pytest.fixture
def rng() -> random.Random:
    """A ``random.Random`` whose seed is printed (pytest shows it when the test fails);
    ``DISTABLE_TEST_SEED`` replays it."""
    return seeded_rng()


@pytest.fixture
def lan(netns_ready: None, rng: random.Random) -> Iterator[Lan]:
    """An unbuilt ``Lan`` on a random private subnet 10.251.X.0/24: ``lan.build(n)`` adds a
    switch and n hosts; ``lan.add(suffix)`` a bare namespace (loopback only). All deleted afterwards."""
    network = Lan(new_prefix(), rng.randrange(1, 255))
    print(f"namespaces {network.prefix}-*, subnet 10.251.{network.subnet}.0/24")
    try:
        yield network
    finally:
        network.close()


@pytest.fixture
async def nodes(lan: Lan) -> AsyncIterator[Nodes]:
    """Starts nodes; stops them all when the test ends, before their namespaces are deleted."""
    started = Nodes()
    try:
        yield started
    finally:
        await started.close()
