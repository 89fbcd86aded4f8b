"""Replicated checkpoints across real OS processes killed with SIGKILL.

Four server nodes run as child processes (``NodeProcess``); the test's own node joins as
``role="client"`` and registers the registry tests' ``Counter`` by name (children import
``tests.registry.apps``, which imports nothing else from the suite). A counter checkpoints
its count; its host is SIGKILLed; it restarts on the name's new owner and handles
``end_handoff`` with the last acknowledged count before anything else (its ``handled``
log shows what ran first). Nodes
find each other by multicast gossip on loopback, on a seeded random port and cookie (the
seed is printed; ``DISTABLE_TEST_SEED`` replays it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distable import Gossip, MembershipConfig, Node, Pid
from distable.ring import preference
from distable.testing import NodeProcess, eventually, free_gossip_port
from tests._seed import seeded_rng

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]  # children import tests.registry.apps
FACTORY = "tests.registry.apps:Counter"
SETTLE = 60.0  # bound on every wait for the cluster (generous: the machine is shared)
CALL_TIMEOUT = 20.0


@dataclass
class Cluster:
    client: Node
    servers: dict[str, NodeProcess]  # alive, by node name

    async def placed(self) -> None:
        """Until the client and every server place names on exactly the live servers."""
        expected = sorted(self.servers)

        async def agreed() -> bool:
            views = [self.client.placement().nodes] + [await s.placement() for s in self.servers.values()]
            return all(view == expected for view in views)

        await eventually(agreed, timeout=SETTLE, interval=0.1, message=lambda: f"placement is not {expected}")

    async def kill(self, *names: str) -> None:
        """SIGKILL these servers at once, then wait until the others place without them."""
        children = [self.servers.pop(name) for name in names]
        for child in children:
            child.kill()
        for child in children:
            await child.wait()
        await self.placed()

    async def moved(self, name: Any, away_from: str) -> Pid:
        """Until every live node resolves ``name`` to one pid off ``away_from``; that pid."""

        async def found() -> Pid | None:
            pid = self.client.whereis(name)
            if pid is None or pid.node == away_from or pid.node not in self.servers:
                return None
            for child in self.servers.values():
                if await child.whereis(name) != pid:
                    return None
            return pid

        pid: Pid = await eventually(found, timeout=SETTLE, interval=0.1, message=f"{name!r} did not restart")
        return pid

    async def records(self) -> int:
        """Checkpoint records and hosted checkpoints, summed over the live servers."""
        stats = await asyncio.gather(*(child.stats() for child in self.servers.values()))
        return sum(int(s["registry"]["checkpoint_records"]) + int(s["registry"]["checkpoint_hosted"]) for s in stats)

    async def call(self, name: Any, message: Any) -> Any:
        return await self.client.call(name, message, timeout=CALL_TIMEOUT)

    async def add(self, name: Any, n: int) -> int:
        """``n`` increments (not checkpointed); the count after them."""
        count = 0
        for _ in range(n):
            count = await self.call(name, "incr")
        return count

    async def get(self, name: Any) -> tuple[int, str, list[Any]]:
        """(count, node, what the process handled, in order)."""
        count, node = await self.call(name, "get")
        return count, node, await self.call(name, "handled")


@contextlib.asynccontextmanager
async def cluster(servers: int = 4) -> AsyncIterator[Cluster]:
    rng = seeded_rng()
    cookie = f"ckpt-{rng.getrandbits(64):016x}"
    port = free_gossip_port(range(48000, 49000), rng)
    print(f"gossip port {port}")
    gossip = Gossip(port=port, interval=0.25)
    started: list[NodeProcess] = []
    try:
        async with Node(
            "client", cookie=cookie, role="client", cluster=gossip, membership=MembershipConfig.local()
        ) as client:

            async def one(name: str) -> NodeProcess:
                child = await NodeProcess.start(
                    name,
                    cookie,
                    gossip="127.0.0.1",
                    gossip_port=port,
                    paths=[str(ROOT)],
                    spawn={"plain": FACTORY},
                    preset="local",
                )
                started.append(child)
                return child

            children = await asyncio.gather(*(one(f"s{i}") for i in range(servers)))
            c = Cluster(client, {child.name: child for child in children})
            await c.placed()
            yield c
    finally:
        for child in started:
            child.kill()
        await asyncio.gather(*(child.close() for child in started), return_exceptions=True)


async def test_a_worker_of_a_sigkilled_node_resumes_from_its_checkpoint_and_a_handoff_supersedes_it() -> None:
    async with cluster() as c:
        name = ("counter", 1)
        pid = await c.client.register(name, FACTORY, key=name)
        await c.add(name, 5)
        assert await c.call(name, ("checkpoint", True)) == 5
        assert await c.add(name, 3) == 8  # never checkpointed: lost with the node, by design

        await c.kill(pid.node)
        first = await c.moved(name, pid.node)
        count, node, handled = await c.get(name)
        assert (count, node) == (5, first.node), "the last acknowledged checkpoint, not the 3 after it"
        assert handled[0] == ("end_handoff", 5), handled
        assert handled.count(("end_handoff", 5)) == 1

        # A graceful stop hands it off with Resume(9), which supersedes the checkpoint of 5:
        # killing its next host restores 9.
        assert await c.add(name, 4) == 9
        leaver = c.servers.pop(first.node)
        leaver.terminate()
        assert await leaver.wait() == 0
        await c.placed()
        second = await c.moved(name, first.node)
        assert (await c.get(name))[:2] == (9, second.node)
        # Until the Resume state is on its standby and the older records are dropped: the
        # host's copy and one record.
        await eventually(lambda: _exactly(c, 2), timeout=SETTLE, message="the Resume state was not replicated")
        await c.kill(second.node)
        third = await c.moved(name, second.node)
        count, node, handled = await c.get(name)
        assert (count, node) == (9, third.node)
        assert handled[0] == ("end_handoff", 9), handled

        # Bad input gets the typed error; the node keeps running.
        assert await c.call(name, ("checkpoint_bad", "unencodable")) == "UnencodableValue"
        assert await c.call(name, ("checkpoint_bad", ("bytes", 2 << 20))) == "CheckpointTooLarge"
        plain = c.servers[third.node].pid("plain")
        await c.client.register_name("by-hand", plain)
        assert await c.call("by-hand", ("checkpoint_bad", "count")) == "DistableError"
        assert await c.call(name, "incr") == 10
        assert await c.call(name, ("checkpoint", True)) == 10

        # Unregistering deletes its checkpoints everywhere.
        assert await c.records() >= 1
        await c.client.unregister(name)
        await eventually(lambda: _exactly(c, 0), timeout=SETTLE, message="checkpoints left after unregister")


async def _exactly(c: Cluster, n: int) -> bool:
    return await c.records() == n


async def test_two_replicas_survive_the_host_and_its_first_standby_killed_at_once() -> None:
    async with cluster() as c:
        name = ("counter", 2)
        pid = await c.client.register(name, FACTORY, key=name, replicas=2)
        host, standby, last = preference(c.client.placement(), name, 3)
        assert pid.node == host
        await c.add(name, 7)
        assert await c.call(name, ("checkpoint", True)) == 7

        await c.kill(host, standby)
        new = await c.moved(name, host)
        assert new.node == last
        count, node, handled = await c.get(name)
        assert (count, node) == (7, last)
        assert handled[0] == ("end_handoff", 7), handled
