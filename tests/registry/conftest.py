"""Fixtures of the registry tests: 1-4 real nodes in this event loop, on 127.0.0.1.

Nodes listen on port 0, use ``MembershipConfig.local()`` and find each other through
``connect()`` (membership then links every pair). A test gets a ``Cluster`` and starts
the nodes it needs; whatever happens, every node still running is stopped afterwards.

``Cluster`` also simulates the two faults the registry must survive, in-process:

* ``crash(node)``: the node stops dead. Its links are aborted (no graceful drain, no
  leave announcement, nothing flushed), its timers and tasks are cancelled and its
  registry no longer reacts to anything; peers learn it from failure detection.
* ``partition(side_a, side_b)``: no byte crosses the cut. Each node denies the other
  side's names in membership (so gossip cannot re-introduce them), drops whatever it
  would post across the cut and whatever arrives from across it, and its links across
  are closed. ``heal()`` undoes that and redials every cross link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import pytest

from distable import MembershipConfig, Node, Pid, RegistryConfig
from distable.ring import DistributionStrategy, Ring
from distable.testing import crash, eventually, handoffs_in_flight

from . import apps

COOKIE = "registry-cookie"


@pytest.fixture(autouse=True)
def books() -> Iterator[None]:
    """Clear the apps' module-level books before (and after) each test."""
    apps.reset_books()
    yield
    apps.reset_books()


class Partition:
    """A cut between two sets of nodes (see the module docstring); ``heal()`` ends it."""

    def __init__(self, side_a: list[Node], side_b: list[Node]) -> None:
        self.sides = (side_a, side_b)
        self._saved: list[tuple[Node, tuple[str, ...]]] = []
        self._dispatch: dict[str, Callable[[str, list[Any]], None]] = {}
        for mine, theirs in ((side_a, side_b), (side_b, side_a)):
            names = {n.name for n in theirs}
            for node in mine:
                self._cut(node, names)

    def _cut(self, node: Node, others: set[str]) -> None:
        core = node.membership.core
        self._saved.append((node, core.deny))
        core.deny = (*core.deny, *sorted(others))
        transport = node.transport
        post = transport.post
        dispatch = transport.dispatch

        def post_within(dest: str, message: Any) -> asyncio.Future[None] | None:
            if dest in others:
                return None  # lost in the cut
            return post(dest, message)

        def dispatch_within(sender: str, messages: list[Any]) -> None:
            if sender not in others:
                dispatch(sender, messages)

        transport.post = post_within  # type: ignore[method-assign,assignment]
        transport.dispatch = dispatch_within
        self._dispatch[node.name] = dispatch
        for other in others:
            transport.disconnect(other)

    async def heal(self, timeout: float = 15.0) -> None:
        """Lift the cut, redial every cross link, wait until membership sees everyone."""
        for node, deny in self._saved:
            node.membership.core.deny = deny
            with contextlib.suppress(AttributeError):
                del node.transport.post  # back to the class's method
            node.transport.dispatch = self._dispatch[node.name]
        side_a, side_b = self.sides
        for a in side_a:
            for b in side_b:
                a.transport.connect(b.name, urgent=True)
                b.transport.connect(a.name, urgent=True)
        everyone = [*side_a, *side_b]

        def healed() -> bool:  # a node on neither side may be seen too
            return all({m.name for m in everyone} - {n.name} <= set(n.nodes()) for n in everyone)

        await eventually(
            healed,
            timeout=timeout,
            message=lambda: "membership after heal: " + "; ".join(f"{n.name}: {n.nodes()}" for n in everyone),
        )


class Cluster:
    """The nodes of one test, in this event loop."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []  # running and joined (not crashed, not stopped)
        self._unjoined: list[Node] = []  # started with join=False, not joined yet
        self._events: dict[str, Any] = {}
        self._seen: dict[str, list[Any]] = {}
        self._gone: list[Node] = []

    @property
    def servers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "server"]

    async def start(
        self,
        count: int,
        *,
        prefix: str = "n",
        strategy: DistributionStrategy | None = None,
        registry: RegistryConfig | None = None,
        membership: MembershipConfig | None = None,
    ) -> list[Node]:
        """Start ``count`` server nodes, link them to the cluster and wait until settled."""
        base = len(self.nodes) + len(self._gone) + len(self._unjoined)
        started = [
            await self.add(
                f"{prefix}{base + i}", strategy=strategy, registry=registry, membership=membership, join=False
            )
            for i in range(count)
        ]
        for node in started:
            await self.join(node)
        await self.wait_joined()
        return started

    async def add(
        self,
        short: str,
        *,
        role: str = "server",
        strategy: DistributionStrategy | None = None,
        registry: RegistryConfig | None = None,
        membership: MembershipConfig | None = None,
        join: bool = True,
    ) -> Node:
        """Start one node (``join``: link it to the cluster and wait until it is placed;
        ``membership``: ``MembershipConfig.local()`` unless given)."""
        node = Node(
            short,
            cookie=COOKIE,
            role="client" if role == "client" else "server",
            membership=membership or MembershipConfig.local(),
            strategy=strategy or Ring(),
            registry=registry,
            drain_timeout=10.0,
        )
        await node.start()
        self._events[node.name] = node.events(maxsize=1_000_000)
        self._seen[node.name] = []
        self._unjoined.append(node)
        if join:
            await self.join(node)
            await self.wait_joined()
        return node

    async def join(self, node: Node) -> None:
        """Link ``node`` to the first running node (membership does the rest); from now on
        it counts as one of ``nodes``."""
        if node in self._unjoined:
            self._unjoined.remove(node)
        if self.nodes:
            await node.connect(self.nodes[0].name, timeout=10.0)
        self.nodes.append(node)

    async def wait_joined(self, nodes: Iterable[Node] | None = None, timeout: float = 15.0) -> None:
        """Until every node sees every server node and its placement lists them all."""
        group = list(nodes) if nodes is not None else list(self.nodes)
        servers = sorted(n.name for n in group if n.role == "server")

        def joined() -> bool:
            # Clients are not members (they appear in no node's nodes()); every node sees the servers.
            return all(set(n.nodes()) >= set(servers) - {n.name} and n.placement().nodes == servers for n in group)

        await eventually(joined, timeout=timeout, message=lambda: self.describe(group))

    def describe(self, nodes: Iterable[Node] | None = None) -> str:
        return "; ".join(
            f"{n.name}: sees {n.nodes()}, placement {n.placement().nodes}, {len(n.registered())} names"
            for n in (nodes if nodes is not None else self.nodes)
        )

    # --- looking at the registry ---------------------------------------------------------

    def events(self, node: Node) -> list[Any]:
        """Every event ``node`` published since it started."""
        stream = self._events[node.name]
        seen = self._seen[node.name]
        while True:
            try:
                seen.append(stream.get_nowait())
            except asyncio.QueueEmpty:
                return seen

    def agreed(self, nodes: Iterable[Node] | None = None) -> dict[Any, Pid] | None:
        """The registry every given replica holds, if they all hold the same one."""
        tables = [dict(n.registered()) for n in (nodes if nodes is not None else self.nodes)]
        first = tables[0]
        return first if all(t == first for t in tables[1:]) else None

    def on_owners(self, names: Iterable[Any], nodes: Iterable[Node] | None = None) -> bool:
        """Every replica maps each of ``names`` to a pid on its current owner."""
        for node in nodes if nodes is not None else self.nodes:
            placement = node.placement()
            for name in names:
                pid = node.whereis(name)
                if pid is None or pid.node != placement.owner(name):
                    return False
        return True

    def idle(self, nodes: Iterable[Node] | None = None) -> bool:
        """No handoff is in flight on any of the nodes."""
        return all(handoffs_in_flight(n).idle for n in (nodes if nodes is not None else self.nodes))

    def live_copies(self, key: Any) -> list[Pid]:
        """Pids of every live process (on any running node) whose ``key`` is ``key``."""
        return sorted(
            p.pid for n in self.nodes for p in n.runtime.processes() if getattr(p, "key", None) == key and p.alive
        )

    def process(self, pid: Pid) -> Any:
        """The live process object behind ``pid`` (every node shares this OS process)."""
        for node in self.nodes:
            proc = node.runtime.local(pid)
            if proc is not None:
                return proc
        raise LookupError(f"{pid!r} is not a live process of a running node")

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    # --- faults --------------------------------------------------------------------------------

    async def crash(self, node: Node) -> None:
        """Stop ``node`` dead, as if its OS process were killed (see the module docstring)."""
        self.nodes.remove(node)
        self._gone.append(node)
        await crash(node)

    async def stop(self, node: Node) -> None:
        """Stop ``node`` gracefully (hands its processes off, then leaves)."""
        self.nodes.remove(node)
        self._gone.append(node)
        await node.stop()

    def partition(self, side_a: list[Node], side_b: list[Node]) -> Partition:
        return Partition(side_a, side_b)

    async def close(self) -> None:
        # Clients first, then servers one by one: each graceful stop hands off to the rest.
        for node in [*self._unjoined, *sorted(self.nodes, key=lambda n: n.role == "server")]:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(node.stop(), 20.0)
        self.nodes.clear()
        self._unjoined.clear()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    """An empty ``Cluster``: the test starts the nodes it needs; all are stopped afterwards."""
    c = Cluster()
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def three(cluster: Cluster) -> list[Node]:
    """Three linked server nodes with the ``Ring`` strategy."""
    return await cluster.start(3)


def first_owned(owner: str, placement_nodes: Iterable[str], prefix: str = "name") -> str:
    """The first name ``prefix-<i>`` that ``owner`` owns in ``placement_nodes``' ring."""
    ring = Ring().place(placement_nodes)
    for i in range(10_000):
        name = f"{prefix}-{i}"
        if ring.owner(name) == owner:
            return name
    raise AssertionError(f"no name owned by {owner}")


def host_of(node: Node, name: Any) -> str:
    """The node that ``node``'s replica says hosts ``name`` (which must be registered)."""
    pid = node.whereis(name)
    assert pid is not None, f"{name!r} is not registered in {node.name}'s replica"
    return pid.node


def log_records(caplog: pytest.LogCaptureFixture, *parts: str, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level and all(p in r.getMessage() for p in parts)]
