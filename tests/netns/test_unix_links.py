"""Which links run over Unix domain sockets when nodes are on real, separate hosts.

Two hosts (network namespaces on one switch, see ``_topology.Lan``) share this machine's
filesystem, so each can see the other's socket files: only the host rule (a peer whose
host is loopback or this node's own) and the network namespace in each socket's path
keep a link between hosts on TCP. Two nodes on one host link over their sockets.
"""

from __future__ import annotations

from typing import Any

import pytest

from distable.testing import NodeProcess, eventually

from ._nodes import Nodes, describe, full_mesh
from ._topology import Lan

pytestmark = pytest.mark.netns


async def links(node: NodeProcess) -> dict[str, str]:
    """What each link of ``node`` runs over, by peer name ("unix" or "tcp")."""
    stats: dict[str, Any] = await node.stats()
    return {p["name"]: p["link"] for p in stats["transport"]["peers"] if p["connected"]}


async def test_nodes_on_one_host_link_over_unix_sockets_and_with_another_host_over_tcp(lan: Lan, nodes: Nodes) -> None:
    one, two = lan.build(2)
    first = await nodes.on_host(one)
    second = await nodes.on_host(two)
    neighbour = await nodes.start("x", netns=one.netns, host=one.addr, static=[first.name, second.name])
    started = [first, second, neighbour]
    await eventually(lambda: full_mesh(started), timeout=30.0, message=lambda: describe(started))

    assert await links(first) == {second.name: "tcp", neighbour.name: "unix"}
    assert await links(neighbour) == {first.name: "unix", second.name: "tcp"}
    assert await links(second) == {first.name: "tcp", neighbour.name: "tcp"}
