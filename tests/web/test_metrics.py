"""``/metrics``: what Prometheus reads equals what ``statistics()`` says, and the metrics
fed from events count every handoff and restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec
import pytest

from distable import EventStream, NodeStatistics, ProcessExited
from distable.registry import HandoffCompleted, RegistryStatistics
from distable.testing import eventually
from distable.web import start_web

from .conftest import WORKER, Nodes, first_owned, labels, scrape

# Enough that the joining node owns some of a's names whatever the (random) node names:
# with 24, a hosted about 12 and none moved in about 1 run of 100 ((2/3)**12).
NAMES = 96


def between(before: float, value: float, after: float) -> bool:
    return before <= value <= after


async def test_metrics_equal_the_statistics(nodes: Nodes, http: aiohttp.ClientSession) -> None:
    a, b = await nodes.start(2)
    web = await start_web(a, port=0)
    events = a.events()
    try:
        for i in range(NAMES):
            await a.register(("w", i), WORKER, ("w", i))
        # A third node joins: a hands the names it now owns off to it (with their state).
        c = await nodes.add("n2")
        await eventually(lambda: nodes.idle() and nodes.agreed(NAMES), message=nodes.describe)
        # And one of a's own names crashes and is restarted there ("transient").
        crashing = first_owned(a.name, [n.name for n in nodes.nodes], "crash")
        await a.register(crashing, WORKER, crashing, restart="transient")
        with pytest.raises(ProcessExited):
            await a.call(crashing, "crash")
        await eventually(lambda: a.statistics().registry.restarts == 1 and a.whereis(crashing) is not None)
        await eventually(lambda: nodes.idle() and nodes.agreed(NAMES + 1), message=nodes.describe)

        before = a.statistics()
        samples = await scrape(http, web.url)
        after = a.statistics()
    finally:
        await web.close()
    node = labels(node=a.name)

    def value(name: str, **extra: str) -> float:
        return samples[(name, labels(node=a.name, **extra))]

    # Sizes: equal (nothing moves any more).
    assert value("distable_processes") == after.runtime.processes == before.runtime.processes
    assert value("distable_registered_names") == after.registry.names == NAMES + 1
    assert value("distable_local_names") == after.registry.local_names
    assert value("distable_placement_nodes") == 3
    assert value("distable_members", status="alive") == sum(m.status == "alive" for m in after.membership.members)
    assert value("distable_members", status="dead") == 0
    assert samples[("distable_node_info", labels(node=a.name, role="server", incarnation=str(a.incarnation)))] == 1
    # Counters the registry keeps: equal.
    handed = after.registry.handoffs_started
    assert handed > 0, "a handed no name to the new node"
    assert value("distable_handoffs_started_total") == handed
    assert value("distable_handoffs_completed_total") == after.registry.handoffs_completed == handed
    assert value("distable_handoffs_aborted_total") == after.registry.handoffs_aborted == 0
    assert value("distable_restarts_total") == after.registry.restarts == 1
    assert value("distable_conflicts_total") == after.registry.conflicts == 0
    assert value("distable_gate_releases_total") == after.registry.gate_releases
    assert value("distable_gate_held_messages_total") == after.registry.gate_held_messages
    # What moves on its own (probes, syncs, traffic, time): between the two snapshots.
    moving: list[tuple[str, Callable[[NodeStatistics], float]]] = [
        ("distable_syncs_sent_total", lambda s: s.registry.syncs_sent),
        ("distable_probes_total", lambda s: s.membership.probes),
        ("distable_suspicions_total", lambda s: s.membership.suspicions),
        ("distable_probe_failures_total", lambda s: s.membership.probe_failures),
        ("distable_uptime_seconds", lambda s: s.uptime),
        ("distable_loop_lag_max_seconds", lambda s: s.runtime.max_loop_lag),
    ]
    for metric, read in moving:
        assert between(read(before), value(metric), read(after)), metric
    old_peers = {p.name: p for p in before.transport.peers}
    peers = {p.name: (old_peers[p.name], p) for p in after.transport.peers}
    assert set(peers) == {b.name, c.name}
    for peer, (old, new) in peers.items():
        for metric, attr in [
            ("distable_peer_messages_received_total", "messages_in"),
            ("distable_peer_messages_sent_total", "messages_out"),
            ("distable_peer_bytes_received_total", "bytes_in"),
            ("distable_peer_bytes_sent_total", "bytes_out"),
        ]:
            assert between(getattr(old, attr), value(metric, peer=peer), getattr(new, attr)), (metric, peer)
        assert value("distable_peer_bytes_sent_total", peer=peer) > 0
        assert value("distable_peer_connected", peer=peer) == 1

    # Fed by events: the histogram holds each completed handoff's duration.
    completed = [e for e in drain(events) if isinstance(e, HandoffCompleted)]
    assert len(completed) == handed
    assert value("distable_handoff_duration_seconds_count", answer="resume") == handed
    assert value("distable_handoff_duration_seconds_sum", answer="resume") == pytest.approx(
        sum(e.duration for e in completed)
    )
    assert value("distable_handoff_duration_seconds_bucket", answer="resume", le="+Inf") == handed
    assert value("distable_events_total", type="HandoffCompleted") == handed
    assert value("distable_events_total", type="ProcessRestarted") == 1
    assert value("distable_events_total", type="ConflictResolved") == 0
    assert value("distable_events_total", type="NodeUp") == 1  # c joined after the server started
    assert value("distable_events_dropped_total") == 0
    assert all(key[1] >= node for key in samples), "a series without the node label"


def drain(stream: EventStream) -> list[Any]:
    """Every event waiting in ``stream``."""
    out: list[Any] = []
    while True:
        try:
            out.append(stream.get_nowait())
        except asyncio.QueueEmpty:
            return out


async def test_every_node_has_its_own_registry(nodes: Nodes, http: aiohttp.ClientSession) -> None:
    """Two servers in one OS process: no clash, each reports only its own node."""
    a, b = await nodes.start(2)
    async with await start_web(a, port=0) as web_a, await start_web(b, port=0) as web_b:
        assert web_a.url != web_b.url
        for node, web in ((a, web_a), (b, web_b)):
            samples = await scrape(http, web.url)
            assert {dict(key[1])["node"] for key in samples if "node" in dict(key[1])} == {node.name}
            assert samples[("distable_processes", labels(node=node.name))] == node.statistics().runtime.processes


async def test_metrics_only_server(nodes: Nodes, http: aiohttp.ClientSession) -> None:
    (a,) = await nodes.start(1)
    async with await start_web(a, port=0, dashboard=False) as web:
        async with http.get(web.url + "/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
        for path in ("/", "/api/cluster", "/api/events"):
            async with http.get(web.url + path) as response:
                assert response.status == 404, path


def test_statistics_snapshot_of_an_older_node_converts() -> None:
    """The counters added for the metrics have defaults: an older node's snapshot converts."""
    registry = {
        "names": 1,
        "local_names": 1,
        "groups": 0,
        "group_members": 0,
        "peers": 0,
        "placement_nodes": ["a@127.0.0.1:1"],
        "conflicts": 0,
        "restarts": 0,
        "handoffs_started": 2,
        "syncs_sent": 0,
        "buckets_repaired": 0,
    }
    converted = msgspec.convert(registry, RegistryStatistics)
    assert (converted.handoffs_completed, converted.handoffs_aborted) == (0, 0)
