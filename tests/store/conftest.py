"""Fixtures of the store tests: a real ``redis-server`` (tests/_redis.py), and an engine
of each kind for the contract tests, which every engine must pass alike."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from distable.store import MemoryStore, RedisStore, Store

from .._redis import RedisServer, redis_server


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A ``redis-server`` with nothing saved."""
    with redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A ``redis-server`` that fsyncs every write (it survives SIGKILL and restarts)."""
    with redis_server(tmp_path / "redis", persistent=True) as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each engine in turn, empty."""
    if request.param == "memory":
        yield MemoryStore()
        return
    with redis_server(tmp_path / "redis") as server:
        store = RedisStore(server.url, namespace="test")
        try:
            yield store
        finally:
            await store.close()
