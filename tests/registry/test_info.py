"""Any node reads another node's statistics and recent events (``statistics_of``, ``events_of``)."""

from __future__ import annotations

from typing import Any

import pytest

from distable import CallTimeout, NameRegistered, Node, NodeStatistics, NodeUp, Pid, ProcessExited
from distable.node._events import EventJournal
from distable.testing import eventually

from . import apps
from .conftest import Cluster


async def test_statistics_of_a_peer_is_its_own_snapshot(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    for i in range(20):
        await a.register(("info", i), apps.Counter, ("info", i))
    local_b = b.statistics()
    remote_b = await a.statistics_of(b.name)
    assert isinstance(remote_b, NodeStatistics)
    assert remote_b.name == b.name
    assert remote_b.incarnation == b.incarnation
    assert remote_b.registry.local_names == local_b.registry.local_names
    assert remote_b.registry.names == 20
    assert {p.name for p in remote_b.transport.peers} == {p.name for p in local_b.transport.peers}
    assert (await a.statistics_of(a.name)).name == a.name  # its own, without a round trip


async def test_events_of_a_peer_come_in_order_once(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    pid = await b.register("journaled", apps.Counter, "journaled")
    events = await eventually(lambda: _registered(a, b.name, "journaled"), timeout=10)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    registered = [e for e in events if e["type"] == "NameRegistered"]
    assert registered[-1]["pid"] == str(pid)
    assert registered[-1]["name"] == "journaled"
    # asking from the last one seen returns only what is newer: nothing yet
    assert await a.events_of(b.name, since=seqs[-1]) == []
    assert [e["seq"] for e in await b.events_of(b.name, since=0)] == seqs  # locally the same


async def _registered(reader: Node, node: str, name: str) -> list[dict[str, Any]] | None:
    """``node``'s events as ``reader`` sees them, once they include ``name``'s registration."""
    events = await reader.events_of(node)
    return events if any(e["type"] == "NameRegistered" and e["name"] == name for e in events) else None


async def test_info_of_an_unknown_node_is_a_typed_error(cluster: Cluster) -> None:
    (a,) = await cluster.start(1)
    with pytest.raises(ProcessExited, match="not connected"):
        await a.statistics_of("nobody@127.0.0.1:1")
    with pytest.raises((ProcessExited, CallTimeout)):
        await a.events_of("nobody@127.0.0.1:1")


def test_a_wave_of_registrations_does_not_push_other_events_out_of_the_journal() -> None:
    journal = EventJournal(capacity=100, noisy_capacity=20)
    journal.record(NodeUp("b@127.0.0.1:1", 1))
    pid = Pid("a@127.0.0.1:2", 1, 5)
    for i in range(2000):
        journal.record(NameRegistered(("w", i), pid))
    events = journal.since(0)
    assert [e["type"] for e in events] == ["NodeUp"] + ["NameRegistered"] * 20
    assert [e["seq"] for e in events] == [1, *range(1982, 2002)]
    assert journal.since(2001) == []
