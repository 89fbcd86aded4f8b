"""Registry events published through ``events()``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

import distable
from distable import (
    ConflictResolved,
    HandoffCompleted,
    HandoffStarted,
    NameRegistered,
    NameUnregistered,
    Node,
    ProcessExited,
    ProcessRestarted,
)
from distable.testing import eventually, on_node

from . import apps
from .conftest import Cluster, first_owned
from .test_netsplit import single_copies, split


def of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def test_events_report_registration_unregistration_handoff_and_restart(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    stream = on_node(a, distable.events)  # the module-level function: the current node's events
    newcomer = await cluster.add("late", join=False)
    moves = first_owned(newcomer.name, [a.name, b.name, newcomer.name], "moves")
    crashes = first_owned(a.name, [a.name, b.name], "crashes")

    pid = await b.register("plain", apps.Counter)
    await eventually(lambda: any(e == NameRegistered("plain", pid) for e in cluster.events(a)))
    await b.unregister("plain")
    await eventually(lambda: NameUnregistered("plain", pid) in cluster.events(a))

    crashing = await b.register(crashes, apps.Counter, restart="transient")
    with pytest.raises(ProcessExited):
        await b.call(crashes, "crash")
    await eventually(lambda: of(cluster.events(a), ProcessRestarted), message=lambda: str(cluster.events(a)))
    [restarted] = of(cluster.events(a), ProcessRestarted)
    assert restarted.name == crashes
    assert restarted.reason == "exit"
    assert restarted.pid != crashing
    assert restarted.pid.node == a.name

    old = await a.register(moves, apps.Counter, key=moves)
    await cluster.join(newcomer)
    await cluster.wait_joined()
    host = cluster.node(old.node)
    await eventually(lambda: of(cluster.events(host), HandoffCompleted), message=lambda: str(cluster.events(host)))
    [started] = [e for e in of(cluster.events(host), HandoffStarted) if e.name == moves]
    assert (started.pid, started.target) == (old, newcomer.name)
    [completed] = [e for e in of(cluster.events(host), HandoffCompleted) if e.name == moves]
    assert completed.old_pid == old
    assert completed.new_pid.node == newcomer.name
    assert completed.answer == "resume"
    assert completed.duration >= 0
    await eventually(lambda: NameRegistered(moves, completed.new_pid) in cluster.events(b))

    # The subscription got what the node published, in order.
    got = []
    with contextlib.suppress(asyncio.QueueEmpty):
        for _ in range(100_000):  # bounded
            got.append(stream.get_nowait())
    expected = [NameRegistered("plain", pid), NameUnregistered("plain", pid), restarted]
    assert [e for e in got if e in expected] == expected
    stream.close()


async def test_conflict_resolved_event_names_the_winner_and_the_loser(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    name = first_owned(a.name, [a.name, b.name], "twice")
    cut = await split(cluster, [a], [b])
    on_a = await a.register(name, apps.Counter, key=name)
    on_b = await b.register(name, apps.Counter, key=name)
    await cut.heal()
    await cluster.wait_joined()
    await eventually(lambda: single_copies(cluster, [name]), timeout=20, message=cluster.describe)
    assert a.whereis(name) == on_a  # the copy on the owner survives
    resolved = [e for node in (a, b) for e in of(cluster.events(node), ConflictResolved)]
    assert resolved == [ConflictResolved(name, on_a, on_b)]
    assert resolved[0] in cluster.events(b)  # published by the loser's host


async def test_events_stream_is_per_subscriber(cluster: Cluster, three: list[Node]) -> None:
    a = three[0]
    first, second = a.events(), a.events()
    pid = await a.register("seen-twice", apps.Counter)
    await eventually(lambda: any(e == NameRegistered("seen-twice", pid) for e in cluster.events(a)))
    assert first.get_nowait() == second.get_nowait() == NameRegistered("seen-twice", pid)
    first.close()
    second.close()


async def test_a_stream_of_some_kinds_gets_only_those_in_order(cluster: Cluster, three: list[Node]) -> None:
    a = three[0]
    everything = a.events()
    removals = a.events(kinds=[NameUnregistered])
    pid = await a.register("kept-apart", apps.Counter)
    await a.unregister("kept-apart")
    await eventually(lambda: any(e == NameUnregistered("kept-apart", pid) for e in cluster.events(a)))
    seen = []
    with contextlib.suppress(asyncio.QueueEmpty):
        while True:
            seen.append(everything.get_nowait())
    assert NameRegistered("kept-apart", pid) in seen
    assert NameUnregistered("kept-apart", pid) in seen
    assert removals.get_nowait() == NameUnregistered("kept-apart", pid)
    with pytest.raises(asyncio.QueueEmpty):
        removals.get_nowait()  # the registration (and anything else) never reached it
    removals.close()
    everything.close()
    bus = a._bus
    assert everything not in bus.streams
    assert removals not in bus.streams
    assert not bus._by_kind  # closing the last stream of a kind drops the kind


@pytest.mark.parametrize("kinds", ["NodeUp", ["NodeUp"], [NameRegistered, "NodeDown"], 3])
async def test_kinds_that_are_not_classes_are_refused_at_once(three: list[Node], kinds: Any) -> None:
    before = set(three[0]._bus.streams)
    with pytest.raises(TypeError, match="kinds must be"):
        three[0].events(kinds=kinds)
    assert three[0]._bus.streams == before  # nothing half-subscribed


async def test_one_class_for_kinds_is_taken_as_it_is(three: list[Node]) -> None:
    a = three[0]
    stream = a.events(kinds=NameUnregistered)
    assert stream.kinds == frozenset({NameUnregistered})
    stream.close()
