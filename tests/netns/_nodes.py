"""Node processes on the test networks: starting them (always stopped afterwards), and
looking at them from outside: their views of the cluster and the events they reported."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from distable.testing import NodeProcess, eventually

from ._topology import Host

COOKIE = "netns-cookie"


class Nodes:
    """Node processes started by one test; every one is stopped when the test ends."""

    def __init__(self) -> None:
        self.started: list[NodeProcess] = []

    async def start(
        self,
        name: str,
        *,
        netns: str,
        host: str,
        gossip: str | None = None,
        static: Sequence[str] = (),
        port: int = 0,
        unix_sockets: bool = True,
    ) -> NodeProcess:
        """Node ``name`` in namespace ``netns``, listening on ``host``, with the local preset
        (``unix_sockets=False``: every link of it over TCP)."""
        node = await NodeProcess.start(
            name,
            COOKIE,
            netns=netns,
            host=host,
            port=port,
            gossip=gossip,
            static=static,
            preset="local",
            unix_sockets=unix_sockets,
        )
        self.started.append(node)
        return node

    async def on_host(self, host: Host) -> NodeProcess:
        """Node ``h<i>`` in the host's namespace, on its address, gossiping on its link."""
        return await self.start(f"h{host.index}", netns=host.netns, host=host.addr, gossip=host.addr)

    async def close(self) -> None:
        """Stop every node (gracefully, killed if it does not exit in time), all at once."""
        results = await asyncio.gather(*(node.close() for node in self.started), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


async def views(nodes: Sequence[NodeProcess]) -> dict[str, list[str]]:
    """Each node's ``nodes()``, by node name."""
    answers = await asyncio.gather(*(node.nodes() for node in nodes))
    return {node.name: sorted(view) for node, view in zip(nodes, answers, strict=True)}


async def full_mesh(nodes: Sequence[NodeProcess]) -> bool:
    """Does every node see every other one, and only those?"""
    names = {node.name for node in nodes}
    seen = await views(nodes)
    return all(set(view) == names - {name} for name, view in seen.items())


def events(node: NodeProcess, kind: str, about: str | None = None, since: int = 0) -> list[dict[str, Any]]:
    """``node``'s ``kind`` events ("NodeUp", "NodeDown"), optionally only about node ``about``,
    only those from index ``since`` of its event log on."""
    return [e for e in node.events[since:] if e["event"] == kind and (about is None or e["node"] == about)]


def describe(nodes: Sequence[NodeProcess]) -> str:
    """Every node's event log, for failure messages."""
    lines = []
    for node in nodes:
        lines.append(f"{node.name}:")
        lines.extend(f"    {e['t']:.3f} {e['event']} {e['node']} {e['detail']}" for e in node.events)
    return "\n".join(lines)


async def probes(nodes: Sequence[NodeProcess]) -> list[int]:
    """How many probes each node has started (its membership statistics)."""
    stats = await asyncio.gather(*(node.stats() for node in nodes))
    return [int(s["membership"]["probes"]) for s in stats]


async def wait_for_probe_rounds(nodes: Sequence[NodeProcess], rounds: int, timeout: float) -> None:
    """Wait until every node has started ``rounds`` more probes than now.

    A probe starts every protocol period, so this is an observation window measured in
    the failure detector's own time (``rounds`` periods, on every node) rather than a
    fixed sleep: on a slow machine it simply lasts longer.
    """
    start = await probes(nodes)

    async def done() -> bool:
        return all(now - before >= rounds for now, before in zip(await probes(nodes), start, strict=True))

    await eventually(done, timeout=timeout, interval=0.1, message=f"{rounds} probe rounds on every node")
