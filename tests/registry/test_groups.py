"""Process groups: join, leave, members, publish and multi_call across nodes."""

from __future__ import annotations

from typing import Any

import pytest

from distable import CallTimeout, Crash, Node, Pid, ProcessExited
from distable.testing import eventually

from . import apps
from .conftest import Cluster


def members_everywhere(cluster: Cluster, group: Any, expected: list[Pid]) -> bool:
    return all(n.members(group) == sorted(expected) for n in cluster.nodes)


async def test_join_members_and_leave_work_across_nodes(cluster: Cluster, three: list[Node]) -> None:
    a, b, c = three
    pids = [await node.spawn(apps.Member, f"m-{node.short_name}") for node in three for _ in range(2)]
    # Each joins from some node: its own (a local join) or another (a remote request).
    for i, pid in enumerate(pids):
        await three[i % 3].join("workers", pid)
    await a.join("workers", pids[0])  # joining twice changes nothing
    await eventually(lambda: members_everywhere(cluster, "workers", pids), message=cluster.describe)

    await b.leave("workers", pids[0])  # a remote leave (pids[0] is on a)
    await a.leave("workers", pids[1])  # a local leave
    await c.leave("workers", pids[5])
    rest = [pids[2], pids[3], pids[4]]
    await eventually(lambda: members_everywhere(cluster, "workers", rest))
    assert a.members("nobody-joined") == []
    for pid in pids:
        assert cluster.process(pid).alive  # leaving a group does not stop the process


async def test_join_of_a_dead_pid_raises_process_exited(cluster: Cluster, three: list[Node]) -> None:
    a, b, _ = three
    dead = await a.spawn(apps.Member, "dead")
    await a.stop_process(dead)
    with pytest.raises(ProcessExited):
        await a.join("g", dead)
    with pytest.raises(ProcessExited):
        await b.join("g", dead)
    assert all(n.members("g") == [] for n in three)


async def test_publish_reaches_every_member_once(cluster: Cluster, three: list[Node]) -> None:
    pids = [await node.spawn(apps.Member, node.short_name) for node in three]
    for pid in pids:
        await three[0].join("news", pid)
    await eventually(lambda: members_everywhere(cluster, "news", pids))
    assert three[1].publish("news", ("headline", 1)) == 3
    assert three[2].publish("news", ("headline", 2)) == 3
    assert three[0].publish("empty-group", "nobody") == 0
    await eventually(lambda: all(len(cluster.process(p).infos) == 2 for p in pids))
    for pid in pids:
        infos = cluster.process(pid).infos
        assert sorted(infos) == [("headline", 1), ("headline", 2)]


async def test_multi_call_returns_one_reply_per_member_and_reports_failures(
    cluster: Cluster, three: list[Node]
) -> None:
    a, b, c = three
    good = [await a.spawn(apps.Member, "good-a"), await b.spawn(apps.Member, "good-b")]
    raising = await c.spawn(apps.Member, "raising", "raise")
    hanging = await b.spawn(apps.Member, "hanging", "hang")
    for pid in [*good, raising, hanging]:
        await a.join("team", pid)
    await eventually(lambda: members_everywhere(cluster, "team", [*good, raising, hanging]))

    replies = await c.multi_call("team", ("who",), timeout=1.0)
    assert sorted(r.pid for r in replies) == sorted([*good, raising, hanging])  # one each, none hidden
    by_pid = {r.pid: r for r in replies}
    assert [by_pid[p].value for p in good] == ["good-a", "good-b"]
    assert all(by_pid[p].ok and by_pid[p].error is None for p in good)
    failed = by_pid[raising]
    assert not failed.ok
    assert isinstance(failed.error, ProcessExited)
    assert isinstance(failed.error.reason, Crash)
    assert failed.error.reason.exception_type == "ValueError"
    slow = by_pid[hanging]
    assert not slow.ok
    assert isinstance(slow.error, CallTimeout)
    assert await c.multi_call("nobody-joined", ("who",)) == []


async def test_group_member_is_removed_when_its_process_exits(cluster: Cluster, three: list[Node]) -> None:
    a, b, _ = three
    stays = await a.spawn(apps.Member, "stays")
    leaves = await b.spawn(apps.Member, "leaves")
    crashes = await b.spawn(apps.Member, "crashes", "raise")
    for pid in (stays, leaves, crashes):
        await a.join("g", pid)
    await eventually(lambda: members_everywhere(cluster, "g", [stays, leaves, crashes]))

    await b.stop_process(leaves)
    with pytest.raises(ProcessExited):
        await a.call(crashes, ("who",))
    await eventually(lambda: members_everywhere(cluster, "g", [stays]), message=cluster.describe)


async def test_group_members_of_a_dead_node_are_removed(cluster: Cluster, three: list[Node]) -> None:
    a, b, victim = three
    survivor = await a.spawn(apps.Member, "survivor")
    doomed = [await victim.spawn(apps.Member, f"doomed-{i}") for i in range(3)]
    for pid in (survivor, *doomed):
        await b.join("g", pid)
    await eventually(lambda: members_everywhere(cluster, "g", [survivor, *doomed]))

    await cluster.crash(victim)
    await eventually(lambda: members_everywhere(cluster, "g", [survivor]), timeout=15, message=cluster.describe)
    replies = await b.multi_call("g", ("who",))
    assert [(r.pid, r.value) for r in replies] == [(survivor, "survivor")]


async def test_join_with_an_unhashable_or_unencodable_group_raises_type_error_locally_and_remotely(
    cluster: Cluster, three: list[Node]
) -> None:
    a, b, _ = three
    local = await a.spawn(apps.Member, "local")
    remote = await b.spawn(apps.Member, "remote")
    for group in (["a", "list"], object()):
        for pid in (local, remote):
            with pytest.raises(TypeError):
                await a.join(group, pid)
    # Nothing was half-done: a later join reaches every replica.
    await a.join("fine", local)
    await eventually(lambda: members_everywhere(cluster, "fine", [local]), message=cluster.describe)
