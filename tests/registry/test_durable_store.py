"""The durable store wired into the registry, with real nodes in this event loop and a
``MemoryStore`` they share (a database outside every node; docs/internals.md, "Durable
store"). The same across OS processes with a real redis-server: tests/cluster/test_store_procs.py.

A ``Counter`` registered through a factory checkpoints its count; its ``handled`` log
shows what its process handled first, so a name started from the store shows
``("end_handoff", state)`` at its head.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from distable import MembershipConfig, Node, Pid, StoreUnavailable
from distable.store import MemoryStore, Outcome
from distable.testing import eventually
from distable.wire import decode_value
from distable.wire._messages import Lineage, Spec

from . import apps
from .conftest import COOKIE

FACTORY = "tests.registry.apps:Counter"


def node(name: str, store: MemoryStore, **kwargs: Any) -> Node:
    return Node(
        name,
        cookie=COOKIE,
        membership=MembershipConfig.local(),
        store=store,
        store_timeout=0.5,
        store_grace=0.2,
        drain_timeout=5.0,
        **kwargs,
    )


async def stored(store: MemoryStore) -> dict[Any, Any]:
    """name -> its stored state (decoded; None before its first checkpoint)."""
    return {r.name: None if r.state is None else decode_value(r.state) for r in await store.load()}


async def test_names_and_checkpoints_are_remembered_and_a_node_started_from_nothing_restores_them() -> None:
    store = MemoryStore()
    async with node("a", store) as a:
        await a.wait_restored()
        pid = await a.register("w", apps.Counter, key="w")
        [record] = await store.load()
        assert (record.name, record.spec.factory, record.spec.kwargs, record.state) == (
            "w",
            FACTORY,
            {"key": "w"},
            None,
        )
        assert record.lineage.origin == pid
        for _ in range(3):
            await a.call("w", "incr")
        assert await a.call("w", ("checkpoint", True)) == 3
        assert (await stored(store))["w"] == 3  # saved before the await returned
        assert await a.call("w", ("burst", 4)) == 7  # write-behind: queued, then written
        await eventually(lambda: _state_is(store, "w", 7), message="the write-behind state never reached the store")

        await a.register("gone", apps.Counter, key="gone")
        await a.call("gone", ("checkpoint", True))
        await a.unregister("gone")
        await eventually(lambda: _names_are(store, {"w"}), message="an unregistered name stayed remembered")
        stats = a.statistics().registry
        assert stats.store == "memory://"
        assert stats.store_up
        assert stats.store_written >= 4

    # The node stopped (the last one: its names stop without a taker) and the store
    # remembers them. A cluster started from nothing starts them with their last state.
    assert set(await stored(store)) == {"w"}
    async with node("b", store) as b:
        await b.wait_restored()
        restored = b.whereis("w")
        assert restored is not None
        assert restored.node == b.name
        handled = await b.call("w", "handled")
        assert handled[0] == ("end_handoff", 7), handled
        assert await b.call("w", "get") == (7, b.name)
        assert b.statistics().registry.store_restored == 1
        # It checkpoints on, under a newer lineage than the one it was restored from.
        await b.call("w", "incr")
        assert await b.call("w", ("checkpoint", True)) == 8
        [record] = await store.load()
        assert record.state is not None
        assert decode_value(record.state) == 8
        assert record.lineage.origin == restored


async def test_with_the_store_away_registrations_and_checkpoints_fail_typed_and_the_rest_goes_on() -> None:
    store = MemoryStore()
    async with node("a", store) as a:
        await a.wait_restored()
        await a.register("w", apps.Counter, key="w")
        store.available = False
        with pytest.raises(StoreUnavailable):
            await a.register("x", apps.Counter, key="x")
        assert a.whereis("x") is None  # no claim left behind
        assert await a.call("w", "incr") == 1  # calls and lookups go on
        assert await a.call("w", ("checkpoint_within", 5.0)) == "StoreUnavailable"
        assert await a.call("w", ("burst", 2)) == 3
        stats = a.statistics().registry
        assert not stats.store_up
        assert stats.store_failed >= 2
        assert stats.store_queued == 1

        store.available = True  # back: the queue catches up
        await eventually(lambda: _state_is(store, "w", 3), timeout=15, message="the store did not catch up")
        await eventually(lambda: a.statistics().registry.store_queued == 0, timeout=15)
        await a.register("x", apps.Counter, key="x")
        assert set(await stored(store)) == {"w", "x"}


async def test_a_fresh_registration_begins_above_the_epoch_stored_so_an_old_write_never_beats_it() -> None:
    store = MemoryStore()
    async with node("a", store) as a:
        await a.wait_restored()
        # What an earlier life of "w" left (a lineage far up: many restarts), and a
        # checkpoint of it still queued somewhere.
        old = Lineage(time.time_ns() // 1_000_000 + 10**9, Pid("old@127.0.0.1:1", 1, 9))
        await store.save_name("w", Spec(FACTORY, [], {}, "transient", 5.0), 0, old, fresh=True)
        pid = await a.register("w", apps.Counter, key="w")
        [record] = await store.load()
        assert record.lineage.origin == pid
        assert record.lineage > old
        assert await a.call("w", ("checkpoint", True)) == 0
        assert await store.save_checkpoint("w", old, 99, b"\x01") is Outcome.STALE
        assert (await stored(store))["w"] == 0


async def _state_is(store: MemoryStore, name: Any, state: Any) -> bool:
    return bool((await stored(store)).get(name) == state)


async def _names_are(store: MemoryStore, names: set[Any]) -> bool:
    return set(await stored(store)) == names
