"""Probes of a node's inner state, and faults that no public method makes, for tests and
benchmarks.

This module is the one place outside the layers that reads their private fields (the
registry's handoffs and counters, a process's mailbox and gate, the transport's listener,
the node's tasks): tests, benchmarks and ``distable.testing`` itself call the functions
here, so that a change inside a layer is followed here once, not in every test.

Everything runs on the node's event loop. The probes change nothing; of the rest,
``abort`` and ``crash`` stop a node dead, ``close_listener`` frees its port, and
``seed_membership`` makes its failure detector's choices reproducible.

``registry_stats`` is cheap (constant time: sizes of tables and queues) and meant to be
polled; ``registry_check`` walks every name once (linear time) and confirms what the
counters suggest: every name on its placement owner, every local claim's process
alive, and a digest of the whole replica that equal replicas share.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import xxhash

from ..wire import Pid

T = TypeVar("T")

if TYPE_CHECKING:
    from ..node import Node
    from ..node._events import EventBus
    from ..runtime import Process
    from ..runtime._process import Gate


# --- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandoffsInFlight:
    """The handoffs a node takes part in now (``handoffs_in_flight``).

    Attributes:
        moving: the local names this node is handing off.
        outgoing: handoffs this node sent whose new owner has not committed yet.
        incoming: handoffs this node is taking, as ``(name, pid)``: the pid of the new
            process once it has started here, None before.
    """

    moving: frozenset[Any]
    outgoing: int
    incoming: tuple[tuple[Any, Pid | None], ...]

    @property
    def idle(self) -> bool:
        """No handoff in flight, in either direction."""
        return not self.moving and not self.outgoing and not self.incoming


def handoffs_in_flight(node: Node) -> HandoffsInFlight:
    """The handoffs ``node`` takes part in now, as sender or as receiver."""
    service = node.registry
    handoff = service.handoff
    return HandoffsInFlight(
        moving=frozenset(service.core.moving),
        outgoing=sum(1 for o in handoff.outgoing.values() if not o.committed),
        incoming=tuple((i.name, i.pid) for i in handoff.incoming.values()),
    )


def restarts_due(node: Node) -> list[Any]:
    """The names ``node`` is to restart (waiting out a backoff, or due now), the soonest due first.

    A name that is back already (a check of it, queued before) is not one.
    """
    return node.registry.core.restarts_due()


def local_names(node: Node) -> list[Any]:
    """The names ``node`` hosts: the registered names its own claims hold."""
    return [c.key for c in node.registry.core.local_names()]


def claimants(node: Node, name: Any) -> list[Pid]:
    """Every claim of ``name`` in ``node``'s replica, one per host that claims it (more
    than one is a conflict not settled yet)."""
    return [c.pid for c in node.registry.core.claimants(name)]


def registry_peers(node: Node) -> set[str]:
    """The other nodes ``node``'s registry keeps a record of (kept until it forgets them)."""
    return set(node.registry.core.peers)


def claim_hosts(node: Node) -> set[str]:
    """The nodes whose claims ``node``'s replica keeps a table for, itself included."""
    return set(node.registry.core.claims)


def replica_digest(node: Node) -> str:
    """A digest of every host's claims in this node's replica (equal replicas, equal digests)."""
    core = node.registry.core
    h = xxhash.xxh3_64()
    for host in sorted(core.claims):
        if not core.claims[host]:
            continue
        h.update(host.encode())
        for bucket in core.digest(host):
            h.update(bucket.to_bytes(8, "little"))
    return h.hexdigest()


class RegistryStats(TypedDict):
    """What ``registry_stats`` returns (a dict, so that it crosses JSON as it is)."""

    names: int  # names in the replica
    local: int  # claims this node holds (names and group memberships)
    placement: list[str]  # the nodes names are placed on
    moving: int  # local names being handed off
    outgoing: int  # handoffs sent, not committed yet
    incoming: int  # handoffs being taken
    pending: int  # registrations here still starting their process
    restarts_due: int  # restarts still to come (``restarts_due``)
    restarts: int  # restarts made (a counter)
    handoffs: int  # handoffs started (a counter)
    peers: int  # nodes the registry keeps a record of


def registry_stats(node: Node) -> RegistryStats:
    """Sizes only: names in the replica, local claims, and work still in flight."""
    service = node.registry
    core = service.core
    handoff = service.handoff
    # Counts, not ``handoffs_in_flight``'s sets: benchmarks poll this every few ms while
    # thousands of handoffs are in flight, and copying them took a twentieth of a
    # joiner's CPU at 50,000 names.
    return {
        "names": len(core.pids),
        "local": len(core.claims[core.node]),
        "placement": list(core.placement.nodes),
        "moving": len(core.moving),
        "outgoing": sum(1 for o in handoff.outgoing.values() if not o.committed),
        "incoming": len(handoff.incoming),
        "pending": len(service._pending),
        "restarts_due": len(restarts_due(node)),
        "restarts": core.restarts_made,
        "handoffs": core.handoffs_started,
        "peers": len(core.peers),
    }


class RegistryCheck(TypedDict):
    """What ``registry_check`` returns."""

    names: int  # names in the replica
    on_owner: int  # of those, registered to a process on their placement owner
    local: int  # names this node hosts
    local_alive: int  # of those, whose process is alive
    digest: str  # ``replica_digest``


def registry_check(node: Node) -> RegistryCheck:
    """Walk every name: how many are on their owner, how many local ones are alive, the digest."""
    core = node.registry.core
    runtime = node.runtime
    owner_of_hash = core.placement.owner_of_hash
    on_owner = sum(1 for c in core.winners.values() if owner_of_hash(c.position) == c.pid.node)
    local = core.local_names()
    alive = sum(1 for c in local if runtime.local(c.pid) is not None)
    return {
        "names": len(core.pids),
        "on_owner": on_owner,
        "local": len(local),
        "local_alive": alive,
        "digest": replica_digest(node),
    }


# --- processes ---------------------------------------------------------------------------------


def is_frozen(process: Process) -> bool:
    """Whether ``process`` is frozen (being handed off, or a conflict's loser): its
    messages queue up and none is handled."""
    return process._frozen


def gate_of(process: Process) -> Gate | None:
    """The gate of a process just handed in (``waiting``: the nodes whose flush it waits
    for; ``held``: their messages it holds), or None once it is open."""
    return process._gate


def queued(process: Process) -> int:
    """How many messages wait in ``process``'s mailbox."""
    return len(process._mailbox or ())


def is_running(process: Process) -> bool:
    """Whether ``process`` is handling its mailbox now (or about to)."""
    return process._running


def watchers(process: Process) -> int:
    """How many monitors are set on ``process`` (by processes of any node)."""
    return len(process._watchers or ())


# --- the node's links, events and failure detector ----------------------------------------------


def pending_handshakes(node: Node) -> int:
    """How many connections to ``node`` have not finished their handshake yet."""
    return len(node.transport._pending_handshakes)


async def close_listener(node: Node) -> None:
    """Close ``node``'s listening sockets (TCP's and its Unix domain socket's), as if
    another process held the port next: its port is free again, its links stay up, and
    nobody can dial it any more."""
    servers = node.transport._servers()
    assert servers, f"{node} has no listening socket"
    for server in servers:
        server.close()
    for server in servers:
        await server.wait_closed()


def event_streams(node: Node) -> int:
    """How many event streams are open on ``node`` (``Node.events`` and the web layer's)."""
    return len(event_bus(node).streams)


def event_bus(node: Node) -> EventBus:
    """``node``'s event bus, for a stream of a kind ``Node.events`` does not make."""
    return node._bus


def on_node(node: Node, fn: Callable[..., T], /, *args: Any) -> T:
    """Call ``fn(*args)`` with ``node`` as the current node (as code run by one of its
    processes or tasks sees it: the module-level ``distable.whereis``, ``events``...)."""
    return node._context.run(fn, *args)


@contextlib.contextmanager
def intercept(
    node: Node, kind: type, handler: Callable[[str, Any, Callable[[str, Any], None]], None]
) -> Iterator[None]:
    """While in the block, every ``kind`` message ``node`` receives goes to
    ``handler(sender, message, deliver)`` instead, which may drop it, keep it or pass it on
    with ``deliver(sender, message)``."""
    handlers = node._handlers
    deliver = handlers[kind]
    handlers[kind] = lambda sender, msg: handler(sender, msg, deliver)
    try:
        yield
    finally:
        handlers[kind] = deliver


def seed_membership(node: Node, seed: str) -> None:
    """Seed ``node``'s failure detector (which peer it probes, whom it syncs with) so that
    a run can be replayed; call it before the detector's first timer, once ``start`` returns."""
    node.membership.core._rng.seed(seed)


# --- stopping a node dead -------------------------------------------------------------------------


def abort(node: Node) -> list[asyncio.Task[Any]]:
    """Stop what ``node`` does by itself, at once: its failure detector's and registry's
    timers, and every task it runs (its processes' included), cancelled. Its links are left
    as they are (a ``MemoryNetwork``'s ``crash`` has cut them first); nothing is awaited.

    Returns:
        The tasks it cancelled, for the caller to await if it wants them finished.
    """
    for stop in (node.membership.stop, node.registry.stop):
        stop()
    node.runtime.closing = True
    tasks = list(node._tasks)
    for task in tasks:
        task.cancel()
    return tasks


async def crash(node: Node) -> None:
    """Stop ``node`` dead: no graceful drain, no leave announcement, nothing flushed.

    Its links are aborted (whatever was queued is lost), its listening sockets closed (the
    file of its Unix domain socket is left behind, as by a killed process), its timers and
    tasks cancelled, and its registry reacts to nothing any more; the other
    nodes learn of it from failure detection, as they would of a killed OS process. For
    tests with several nodes in one event loop; the node object is unusable afterwards.
    """
    node.registry._flush_scheduled = True  # nothing it queued goes out any more
    node.runtime.exit_listeners.clear()  # a dead node's registry reacts to nothing
    transport = node.transport
    transport._closing = True
    if transport._tick_handle is not None:
        transport._tick_handle.cancel()
    servers = transport._servers()
    for server in servers:
        server.close()
    for peer in transport.peers.values():
        peer.wanted = False
        if peer.dial_handle is not None:
            peer.dial_handle.cancel()
        for conn in (peer.conn, peer.dialing):
            if conn is not None and conn.transport is not None:
                conn.transport.abort()  # no flush: whatever was queued is lost
    for conn in list(transport._pending_handshakes):
        if conn.transport is not None:
            conn.transport.abort()
    for _ in range(5):  # cancelled tasks may spawn a last one or two
        tasks = abort(node)
        if not tasks:
            break
        await asyncio.gather(*tasks, return_exceptions=True)
    for server in servers:
        await server.wait_closed()


# --- the process ----------------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set size after a full collection (and, on glibc, a trim)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
