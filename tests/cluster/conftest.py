"""Fixtures of the cluster tests: nodes in child OS processes, always cleaned up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from distable.testing import NodeProcess

HERE = Path(__file__).resolve().parent
COOKIE = "cluster-cookie"


@pytest.fixture
async def remote() -> AsyncIterator[NodeProcess]:
    """Node "b" in its own OS process, hosting one ``apps.Worker`` (``remote.pid("worker")``).

    Whatever the test does (or however it fails), the child is gone afterwards:
    ``close()`` terminates it, and kills it if it does not exit in time.
    """
    child = await NodeProcess.start("b", COOKIE, spawn={"worker": "apps:Worker"}, paths=[str(HERE)])
    try:
        yield child
    finally:
        await child.close()
