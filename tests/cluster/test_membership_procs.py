"""Membership across real OS processes on loopback: gossip, static lists, broadcast.

Every node is a child process (``NodeProcess``) that reports its membership events and
answers ``nodes``. Each test uses its own random cookie and gossip port (from a seeded
``random.Random``; the seed is printed, and ``DISTABLE_TEST_SEED`` replays it), so runs
of the suite side by side never see each other's nodes. Every child is closed at the
end of its test, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from distable.testing import NodeProcess, eventually, free_gossip_port
from tests._seed import seeded_rng

pytestmark = pytest.mark.cluster

SIZE = 5


def pick_gossip_port(rng: random.Random) -> int:
    """A free gossip port for this test (a range of its own), printed."""
    port = free_gossip_port(range(46000, 47000), rng)
    print(f"gossip port {port}")
    return port


def free_tcp_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 a moment ago."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def port_of(name: str) -> int:
    return int(name.rpartition(":")[2])


@dataclass
class Cluster:
    """Starts children with one cookie and one gossip port, and remembers every one it started."""

    rng: random.Random
    gossip_port: int
    cookie: str
    children: list[NodeProcess] = field(default_factory=list)

    async def start(self, names: Sequence[str], **options: Any) -> list[NodeProcess]:
        """Start a child per name, all at once; each is remembered (for cleanup) as soon as it is up."""

        async def one(name: str) -> NodeProcess:
            child = await NodeProcess.start(name, self.cookie, **{"preset": "local", **options})
            self.children.append(child)
            return child

        results = await asyncio.gather(*(one(name) for name in names), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if isinstance(r, NodeProcess)]

    async def start_gossip(self, names: Sequence[str], **options: Any) -> list[NodeProcess]:
        return await self.start(names, gossip="127.0.0.1", gossip_port=self.gossip_port, **options)


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    rng = seeded_rng()
    c = Cluster(rng, pick_gossip_port(rng), f"procs-{rng.getrandbits(64):016x}")
    try:
        yield c
    finally:
        await asyncio.gather(*(child.close() for child in c.children), return_exceptions=True)


async def views(children: Sequence[NodeProcess]) -> dict[str, list[str]]:
    """Each child's ``nodes()``, by its name."""
    answers = await asyncio.gather(*(child.nodes() for child in children))
    return {child.name: sorted(view) for child, view in zip(children, answers, strict=True)}


async def full_mesh(children: Sequence[NodeProcess], timeout: float = 20.0) -> None:
    """Wait until every child lists every other one, and no one else."""
    names = sorted(child.name for child in children)
    last: dict[str, list[str]] = {}

    async def meshed() -> bool:
        nonlocal last
        last = await views(children)
        return all(view == [n for n in names if n != name] for name, view in last.items())

    await eventually(meshed, timeout=timeout, interval=0.05, message=lambda: f"no full mesh; views: {last}")


def events_about(child: NodeProcess, node: str, kind: str, since: float = 0.0) -> list[dict[str, Any]]:
    """The ``kind`` events ("NodeUp" / "NodeDown") that ``child`` reported about ``node``
    at or after wall-clock time ``since`` (children share this host's clock)."""
    return [e for e in child.events if e["event"] == kind and e["node"] == node and e["t"] >= since]


async def all_report(children: Sequence[NodeProcess], node: str, kind: str, since: float) -> None:
    """Wait until every one of ``children`` reported a ``kind`` event about ``node`` since ``since``."""
    await eventually(
        lambda: all(events_about(child, node, kind, since) for child in children),
        timeout=20.0,
        interval=0.05,
        message=lambda: f"no {kind} about {node} since {since}: " + str({c.name: c.events for c in children}),
    )


# --- gossip ---------------------------------------------------------------------------------


async def test_five_gossip_nodes_started_at_once_form_a_full_mesh() -> None:
    async with cluster() as c:
        children = await c.start_gossip([f"n{i}" for i in range(SIZE)])

        await full_mesh(children)


async def test_survivors_report_a_sigkilled_node_down_with_reason_failed() -> None:
    async with cluster() as c:
        children = await c.start_gossip([f"n{i}" for i in range(SIZE)])
        await full_mesh(children)
        victim, survivors = children[-1], children[:-1]
        killed_at = time.time()

        victim.kill()
        await victim.wait()

        await all_report(survivors, victim.name, "NodeDown", since=killed_at)
        for child in survivors:
            downs = [e["detail"] for e in events_about(child, victim.name, "NodeDown", since=killed_at)]
            assert downs == ["failed"], child.events
        await full_mesh(survivors)


async def test_a_sigkilled_node_on_a_live_host_is_failed_by_refusal_with_the_lan_preset() -> None:
    # The LAN preset's suspicion takes 4 s; a SIGKILLed process's address refuses the
    # survivors' redials at once, and that fails it: no suspicion to wait for.
    async with cluster() as c:
        children = await c.start_gossip([f"k{i}" for i in range(3)], preset="lan")
        await full_mesh(children)
        victim, survivors = children[-1], children[:-1]
        killed_at = time.time()

        victim.kill()
        await victim.wait()

        await all_report(survivors, victim.name, "NodeDown", since=killed_at)
        stats = await asyncio.gather(*(child.stats() for child in survivors))
        for child, s in zip(survivors, stats, strict=True):
            assert [e["detail"] for e in events_about(child, victim.name, "NodeDown", since=killed_at)] == ["failed"]
            [member] = [m for m in s["membership"]["members"] if m["name"] == victim.name]
            assert member["status"] == "dead", member
        # At least one survivor saw the refusals itself; the others may have taken its verdict.
        assert sum(s["membership"]["refused"] for s in stats) >= 1, stats


async def test_a_sigstopped_node_is_not_failed_by_refusal_but_by_suspicion() -> None:
    # A paused process's listening socket still completes connections (the kernel's
    # backlog): nothing is refused, so the failure detector decides, as for a silent host.
    async with cluster() as c:
        children = await c.start_gossip([f"p{i}" for i in range(3)])
        await full_mesh(children)
        paused, survivors = children[-1], children[:-1]
        stopped_at = time.time()
        paused.proc.send_signal(signal.SIGSTOP)
        try:
            await all_report(survivors, paused.name, "NodeDown", since=stopped_at)
            stats = await asyncio.gather(*(child.stats() for child in survivors))
            for child, s in zip(survivors, stats, strict=True):
                assert [e["detail"] for e in events_about(child, paused.name, "NodeDown", since=stopped_at)] == [
                    "failed"
                ]
                assert s["membership"]["refused"] == 0, s["membership"]
            assert sum(s["membership"]["suspicions"] for s in stats) >= 1
        finally:
            paused.proc.send_signal(signal.SIGCONT)


async def test_a_node_restarted_after_sigkill_is_reported_up_with_a_newer_incarnation() -> None:
    async with cluster() as c:
        children = await c.start_gossip([f"n{i}" for i in range(SIZE)])
        await full_mesh(children)
        victim, survivors = children[-1], children[:-1]
        killed_at = time.time()
        victim.kill()
        await victim.wait()
        await all_report(survivors, victim.name, "NodeDown", since=killed_at)
        restarted_at = time.time()

        [reborn] = await c.start_gossip(["n4"], port=port_of(victim.name))

        assert reborn.name == victim.name
        assert reborn.incarnation > victim.incarnation
        await all_report(survivors, victim.name, "NodeUp", since=restarted_at)
        for child in survivors:
            ups = [e["detail"] for e in events_about(child, victim.name, "NodeUp", since=restarted_at)]
            assert ups == [reborn.incarnation], child.events
        await full_mesh([*survivors, reborn])


async def test_survivors_report_a_sigtermed_node_down_with_reason_left() -> None:
    async with cluster() as c:
        children = await c.start_gossip([f"n{i}" for i in range(SIZE)])
        await full_mesh(children)
        leaver, survivors = children[0], children[1:]
        signalled_at = time.time()

        leaver.terminate()
        assert await leaver.wait() == 0

        await all_report(survivors, leaver.name, "NodeDown", since=signalled_at)
        for child in survivors:
            downs = [e["detail"] for e in events_about(child, leaver.name, "NodeDown", since=signalled_at)]
            assert downs == ["left"], child.events
        await full_mesh(survivors)


async def test_broadcast_only_gossip_forms_a_full_mesh_on_loopback() -> None:
    async with cluster() as c:
        children = await c.start_gossip([f"b{i}" for i in range(3)], broadcast=True)

        await full_mesh(children)


# --- a static list --------------------------------------------------------------------------


async def test_three_static_nodes_form_a_full_mesh() -> None:
    async with cluster() as c:
        ports = free_tcp_ports(3)
        names = [f"s{i}@127.0.0.1:{port}" for i, port in enumerate(ports)]

        children = await asyncio.gather(*(c.start([f"s{i}"], port=port, static=names) for i, port in enumerate(ports)))

        assert sorted(child.name for [child] in children) == sorted(names)
        await full_mesh([child for [child] in children])


# --- tools are not members -------------------------------------------------------------------


async def test_cli_queries_are_no_membership_news_and_leave_nothing_behind() -> None:
    # `distable status` joins as a role="client" node: the servers link with it and answer,
    # but it is no NodeUp/NodeDown, no member (not even "left" afterwards), no peer.
    async with cluster() as c:
        children = await c.start_gossip(["t0", "t1"])
        await full_mesh(children)
        since = time.time()
        for _ in range(3):
            answer = await cli("status", "--json", "--cookie", c.cookie, "--connect", children[0].name)
            assert answer.returncode == 0, answer.stderr
            rows = json.loads(answer.stdout)
            assert [row["name"] for row in rows] == sorted(child.name for child in children)
            assert [row["peers"] for row in rows] == [1, 1], rows  # each other, not the query
        stats = await asyncio.gather(*(child.stats() for child in children))
        for child, s in zip(children, stats, strict=True):
            assert [e for e in child.events if e["t"] >= since] == [], child.events
            members = [m["name"] for m in s["membership"]["members"]]
            assert members == [other.name for other in children if other is not child], members
        await full_mesh(children)


async def test_status_lists_a_failed_node_and_labels_the_handoff_counters() -> None:
    async with cluster() as c:
        children = await c.start_gossip(["f0", "f1", "f2"])
        await full_mesh(children)
        victim, survivors = children[-1], children[:-1]
        killed_at = time.time()
        victim.kill()
        await victim.wait()
        await all_report(survivors, victim.name, "NodeDown", since=killed_at)

        answer = await cli("status", "--json", "--cookie", c.cookie, "--connect", survivors[0].name)

        assert answer.returncode == 0, answer.stderr
        rows = {row["name"]: row for row in json.loads(answer.stdout)}
        assert sorted(rows) == sorted(child.name for child in children), rows
        assert rows[victim.name]["state"] == "failed", rows
        for child in survivors:
            assert rows[child.name]["state"] == "up"
            assert set(rows[child.name]["handoffs"]) == {"started", "completed", "aborted"}
        table = await cli("status", "--cookie", c.cookie, "--connect", survivors[0].name)
        assert victim.name in table.stdout
        assert "failed" in table.stdout
        assert "1 node(s) not answering" in table.stdout, table.stdout


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``distable ARGS`` run to the end (bounded), in its own OS process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "distable.cli", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60.0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode or 0, out.decode(), err.decode())
