"""Naming a store: the URLs ``--store`` and ``Node(store=...)`` will take."""

from __future__ import annotations

import pytest

from distable.store import MemoryStore, RedisStore, open_store, parse_store_url
from distable.store._redis import redacted


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1",
        "redis://:secret@[::1]:6380/2",
        "rediss://user:pw@10.0.0.5:6379/1",
        "unix:///run/redis/redis.sock?db=3",
    ],
)
def test_store_urls_are_accepted(url: str) -> None:
    assert parse_store_url(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("127.0.0.1:6379", "unknown kind of store"),
        ("postgres://h/db", "unknown kind of store"),
        ("redis://", "no host"),
        ("redis://h:port/0", "port is not a number"),
        ("redis://h/zero", "database 'zero' is not a number"),
        ("unix://", "no socket path"),
    ],
)
def test_bad_store_urls_say_what_is_wrong_in_one_line(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        parse_store_url(url)
    assert "\n" not in str(caught.value)


async def test_open_store_takes_a_url_or_a_store() -> None:
    memory = MemoryStore()
    assert open_store(memory) is memory
    redis = open_store("redis://:secret@127.0.0.1:1/0", namespace="c1")
    assert isinstance(redis, RedisStore)
    assert redis.namespace == "c1"
    assert redis.address == "redis://:***@127.0.0.1:1/0"  # no password in logs and errors
    await redis.close()
    with pytest.raises(ValueError, match="unknown kind"):
        open_store("memcached://127.0.0.1")


def test_redacted_keeps_urls_without_password() -> None:
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redacted("redis://u:p@[::1]:1/0") == "redis://u:***@[::1]:1/0"
