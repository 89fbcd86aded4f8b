"""Nodes that come and go are forgotten: a long-running node's tables return to its steady set.

Short-lived nodes (the CLI's ``role="client"`` queries) join, ask and leave; others die.
Each one leaves a transport peer, a member and a registry peer on every node it met. A
departed member is forgotten ``forget_left_after`` after its leave, a dead one
``reclaim_after`` after it was declared dead, and the transport drops a peer it no
longer needs ``forget_peer_after`` later: here all of these are made short.
"""

from __future__ import annotations

import dataclasses

from distable import MembershipConfig, Node, TransportConfig
from distable.testing import claim_hosts, crash, eventually, registry_peers

from ._support import COOKIE, free_port, spawn_echo

MEMBERSHIP = dataclasses.replace(MembershipConfig.local(), forget_left_after=0.3, reclaim_after=0.5)
#: A tick every 0.1 s: the transport looks for peers to forget on each tick.
LINKS = TransportConfig(forget_peer_after=0.2, tick_interval=0.1)


def tables(node: Node) -> dict[str, set[str]]:
    """The other nodes ``node`` keeps something about, per layer."""
    stats = node.statistics()
    return {
        "transport peers": {p.name for p in stats.transport.peers},
        "members": {m.name for m in stats.membership.members},
        "registry peers": registry_peers(node),
        "registry claim tables": claim_hosts(node) - {node.name},
    }


def keeps(node: Node, names: set[str]) -> dict[str, set[str]]:
    """``tables(node)`` as it is when it keeps exactly ``names`` (claims only where held)."""
    return {
        "transport peers": names,
        "members": names,
        "registry peers": names,
        "registry claim tables": names & claim_hosts(node),
    }


def server(name: str, *connect: str) -> Node:
    return Node(name, cookie=COOKIE, membership=MEMBERSHIP, transport=LINKS, connect=connect)


def client(name: str, *connect: str, port: int = 0) -> Node:
    return Node(
        name,
        port=port,
        role="client",
        cookie=COOKIE,
        membership=MEMBERSHIP,
        transport=LINKS,
        drain_timeout=1.0,
        connect=connect,
    )


async def test_client_nodes_that_join_and_leave_one_after_another_are_forgotten_everywhere() -> None:
    async with server("s1") as s1, server("s2", s1.name) as s2:
        servers = (s1, s2)
        await eventually(lambda: s1.nodes() == [s2.name] and s2.nodes() == [s1.name])
        steady = {s1: keeps(s1, {s2.name}), s2: keeps(s2, {s1.name})}
        await eventually(lambda: all(tables(s) == steady[s] for s in servers), message=lambda: str(tables(s1)))
        # The last two clients share a name (and port): the second is a restart of the
        # first, joining while the servers still remember the first one as gone.
        port = free_port()
        specs = [("cli-0", 0), ("cli-1", 0), ("cli-2", 0), ("cli-3", port), ("cli-3", port)]
        seen = []
        for short, at in specs:
            async with client(short, s1.name, port=at) as cli:
                # It meets both servers (s2 through membership) before it leaves; a client
                # is not a member, so no server lists it in nodes().
                await eventually(
                    lambda: all(cli.name not in s.nodes() and cli.name in registry_peers(s) for s in servers),
                    message=lambda: f"{cli.name}: {tables(s1)} {tables(s2)}",
                )
                seen.append((cli.name, cli.incarnation))
                assert all(cli.name in tables(s)["transport peers"] for s in servers)
        (restarted, first), (again, second) = seen[3:]
        assert again == restarted
        assert second > first  # a newer incarnation

        await eventually(
            lambda: all(tables(s) == steady[s] for s in servers),
            message=lambda: f"s1 keeps {tables(s1)}; s2 keeps {tables(s2)}",
        )
        assert s1.nodes() == [s2.name]
        assert s2.nodes() == [s1.name]


async def test_a_killed_node_is_forgotten_everywhere_once_declared_dead() -> None:
    async with server("s1") as s1, server("s2", s1.name) as s2:
        servers = (s1, s2)
        victim = server("victim", s1.name)
        await victim.start()
        try:
            await eventually(lambda: all(victim.name in s.nodes() for s in servers))
            await victim.register_name("on-victim", await spawn_echo(victim))
            await eventually(lambda: all(s.whereis("on-victim") is not None for s in servers))
            for s in servers:
                assert all(victim.name in names for names in tables(s).values()), tables(s)
        finally:
            await crash(victim)
        steady = {s1: keeps(s1, {s2.name}), s2: keeps(s2, {s1.name})}
        await eventually(
            lambda: all(tables(s) == steady[s] for s in servers),
            message=lambda: f"s1 keeps {tables(s1)}; s2 keeps {tables(s2)}",
        )
        assert s1.nodes() == [s2.name]
        assert s2.nodes() == [s1.name]
        assert all(s.whereis("on-victim") is None for s in servers)  # register_name: never restarted
