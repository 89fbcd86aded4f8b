"""The durable store wired into the registry, with real nodes in this event loop and a
``MemoryStore`` they share (a database outside every node; docs/internals.md, "Durable
store"). The same across OS processes with a real redis-server: tests/cluster/test_store_procs.py.

A ``Counter`` registered through a factory checkpoints its count; its ``handled`` log
shows what its process handled first, so a name started from the store shows
``("end_handoff", state)`` at its head.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from distable import MembershipConfig, Node, Pid, StoreUnavailable
from distable.ring import preference
from distable.store import MemoryStore, Outcome, Remembered
from distable.testing import crash, eventually, registry_stats
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


class SlowRead(MemoryStore):
    """A ``MemoryStore`` whose ``load`` (a node's cold-start read) waits while ``read`` is
    clear: a store slow to read, or a node whose cluster view took long to settle."""

    def __init__(self) -> None:
        super().__init__()
        self.read = asyncio.Event()
        self.read.set()

    async def load(self) -> list[Remembered]:
        await self.read.wait()
        return await super().load()

    async def state_of(self, name: Any) -> Any:
        """``name``'s stored state, read at once (the test's look, not a node's read)."""
        [state] = [decode_value(r.state) for r in await super().load() if r.name == name and r.state is not None]
        return state


@pytest.mark.parametrize("read", ["before", "after"])
async def test_a_restart_whose_peers_hold_no_checkpoint_takes_the_stored_one(read: str) -> None:
    """Every node that held a name's checkpoint dies at once (a whole cluster killed) and
    the node left, its owner now, restarts it: its restore finds no checkpoint on any peer.
    The store remembers it: the restart takes the stored state (``end_handoff`` first) and
    a lineage above the stored one (its next checkpoint reaches the store), whether the
    node's cold start read the store before ("before") or only after the restart began
    ("after": the restart waits for that read). test_store_procs's cold start lost a state
    so: a client node that outlived the cluster asked each new owner to restart the dead
    hosts' names before the owner's cold start had read the store, and the names started
    fresh (then the cold start left them: claimed)."""
    store = SlowRead()
    a, b, d = node("a", store), node("b", store), node("d", store)
    alive = [a, b]
    try:
        for n in alive:
            await n.start()
        await b.connect(a.name)
        await eventually(lambda: a.placement().nodes == b.placement().nodes == sorted([a.name, b.name]))
        await a.wait_restored()
        await b.wait_restored()
        if read == "after":
            store.read.clear()
        await d.start()
        alive.append(d)
        await d.connect(a.name)
        servers = sorted(n.name for n in alive)
        await eventually(lambda: all(n.placement().nodes == servers for n in alive))
        # A name whose host and standby (replicas=1) are a and b, none of its records on d.
        name = next(("w", i) for i in range(100) if d.name not in preference(d.placement(), ("w", i), 2))
        await d.register(name, apps.Counter, key=name)
        for _ in range(3):
            await d.call(name, "incr")
        assert await d.call(name, ("checkpoint", True)) == 3
        assert await store.state_of(name) == 3
        if read == "before":
            await d.wait_restored()

        for n in (a, b):
            alive.remove(n)
            await crash(n)
        await eventually(lambda: registry_stats(d)["restarts"] >= 1, message="d did not restart the name")
        store.read.set()
        await eventually(lambda: _runs_on(d, name), message=lambda: f"{name!r} is not back on d: {d.whereis(name)}")
        handled = await d.call(name, "handled")
        assert handled[0] == ("end_handoff", 3), handled
        assert await d.call(name, "get") == (3, d.name)
        await d.call(name, "incr")
        assert await d.call(name, ("checkpoint", True)) == 4
        assert await store.state_of(name) == 4  # not refused as older than the stored lineage
    finally:
        store.read.set()
        for n in alive:
            await n.stop()


def _runs_on(n: Node, name: Any) -> bool:
    pid = n.whereis(name)
    return pid is not None and pid.node == n.name
