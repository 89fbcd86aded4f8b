"""Real nodes over an in-memory network, on an event loop whose clock jumps.

In the spirit of trio's fake network and autojump mock clock: nothing here opens a
socket or waits on the wall clock. Whole ``Node`` objects (runtime, membership,
registry, the real ``Transport``) run in one event loop; a seeded ``MemoryNetwork``
carries their bytes, cuts and heals routes and crashes nodes; ``VirtualTimeLoop``
jumps to the next timer whenever nothing is ready to run, so a minute of cluster
life takes milliseconds and a run is reproducible from its seed.

Rules:
    * ``MemoryTransport`` *is* the real ``Transport``: handshake (cookie, HMAC, names,
      incarnations), the one-link-per-pair rule, batching, framing, decoding,
      backpressure, keep-alive ticks and redial backoff are the production code. Only
      the two places that touch the OS differ: ``listen`` registers the node on the
      network instead of binding a socket, and a dial asks the network for a *pipe*
      instead of a TCP connection. So every message crosses the real wire encoding.
    * A pipe is two ``asyncio.Transport`` ends joined by two one-way channels. Each
      channel delivers what was written in order, each chunk after a latency drawn
      from the network's seeded rng, and never before an earlier chunk (TCP order).
    * ``partition(a, b)`` is a black hole, as a dropped route is for TCP: bytes, FIN
      and RST stay in their channel (TCP retransmits them) and are delivered in order
      when the route heals, unless an end gave up first (its keep-alive timed out, or
      membership hung up). A dial into a black hole completes if the route heals
      before its connect timeout. ``partition(a, b, reset=True)`` breaks every link
      between the groups at once (both ends see a reset) and refuses dials until healed.
    * ``crash(node)`` is a kill -9: the node's ends never report anything again,
      bytes it had already written are still delivered, then its peers see the
      connection close; dials to it are refused. Given a ``Node``, its timers and
      tasks are stopped too, so it does nothing more in the loop.
    * ``pause(node)`` is a SIGSTOP, ``resume(node)`` the SIGCONT: while paused, nothing
      of the node runs (no timer, no task step, no callback: ``VirtualTimeLoop`` sets
      them aside) and nothing reaches it; its links stay open (its kernel still holds
      them), so its peers' writes queue in their channels (their send buffers fill, and
      they see backpressure), dials to it complete (the kernel's backlog) and are
      accepted on resume, and it sends no discovery heartbeat. On resume everything
      fires at once, late, with its stale view: the link events, then the timers and
      steps that came due and what queued on its links (in either order, a seeded coin
      decides: a real loop interleaves them). A paused node can be crashed.
    * Every random choice (latencies, each transport's backoff jitter, the discovery
      jitter) comes from ``random.Random`` instances derived from the network's seed.

Theory of operation:
    ``VirtualTimeLoop`` is asyncio's selector loop with a selector that never blocks:
    it polls the loop's own wake-up pipe, and when nothing is ready it moves the
    clock forward by exactly the timeout the loop asked for, i.e. to the next
    scheduled callback. A loop that would sleep forever (nothing scheduled, nothing
    ready) is a deadlock in the test: it raises ``VirtualTimeDeadlock``.

    Each channel keeps a queue of ``[due, chunk]`` and at most one timer, armed for
    the head's due time, so same-time deliveries keep their order whatever the
    timer heap does with equal deadlines. A chunk whose route is cut when it comes
    due is held (``due`` None) and re-stamped with fresh latencies when healed.

    Pausing needs to know whose code a callback is. A node started inside
    ``network.host_context()`` (``asyncio.create_task(node.start(), context=...)``)
    carries a host token in a context variable, and asyncio copies the context into
    every task, timer and future callback made from there, so all the node's own work
    is tagged; the network runs what it does on a node's behalf (deliveries,
    ``connection_made``, ``connection_lost``, ``resume_writing``) in that node's
    context, and its own timers in an empty one. ``VirtualTimeLoop`` skips, and keeps
    aside in order, every ready handle whose token is frozen; ``thaw`` puts them back.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import random
import selectors
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..transport import Transport
from ..transport._transport import Peer, PeerConnection, is_refusal
from ._probe import abort

if TYPE_CHECKING:
    from ..membership._strategies import DiscoveryContext
    from ..node import Node

__all__ = [
    "MemoryDiscovery",
    "MemoryNetwork",
    "MemoryNetworkStatistics",
    "MemoryTransport",
    "VirtualTimeDeadlock",
    "VirtualTimeLoop",
]

#: The host (a node incarnation) whose code a callback runs: set by ``host_context``,
#: inherited by every task, timer and callback asyncio creates from there.
_HOST: contextvars.ContextVar[str | None] = contextvars.ContextVar("distable_memnet_host", default=None)

_FIN = "fin"  # graceful close: the reader sees EOF after everything written before it
_RST = "rst"  # reset: the reader sees the connection reset after everything written before it


# --- virtual time ---------------------------------------------------------------------------


class VirtualTimeDeadlock(RuntimeError):
    """The loop would wait forever: nothing is scheduled and nothing is ready."""


class _JumpingSelector(selectors.BaseSelector):
    """Polls the real selector (the loop's wake-up pipe) without blocking; when nothing
    is ready, advances the loop's virtual clock by the timeout (to the next timer)
    instead of sleeping."""

    def __init__(self, loop_clock: Callable[[float], None]) -> None:
        self._inner = selectors.DefaultSelector()
        self._advance = loop_clock

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready:
            return ready
        if timeout is None:
            raise VirtualTimeDeadlock("the event loop would wait forever: nothing is scheduled and nothing is ready")
        self._advance(timeout)
        return []

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()


class _Ready(deque[asyncio.Handle]):
    """The loop's ready queue: hands out handles in order, except that a handle of a
    frozen host is set aside (and a cancelled stand-in, which the loop skips, returned)."""

    def __init__(self, frozen: dict[str, list[asyncio.Handle]], skip: asyncio.Handle) -> None:
        super().__init__()
        self.frozen = frozen
        self.skip = skip

    def popleft(self) -> asyncio.Handle:
        handle = super().popleft()
        if self.frozen and not handle.cancelled():
            context: contextvars.Context | None = getattr(handle, "_context", None)
            host = context.get(_HOST) if context is not None else None
            if host is not None:
                aside = self.frozen.get(host)
                if aside is not None:
                    aside.append(handle)
                    return self.skip
        return handle


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` jumps to the next timer when nothing is ready.

    Like trio's ``MockClock(autojump_threshold=0)``: ``await asyncio.sleep(60)`` returns
    at once with ``loop.time()`` exactly 60 s later. Use it with code that does no real
    I/O and starts no threads (real sockets would work but see no time pass); nodes
    use ``MemoryNetwork``. Run a coroutine on it with
    ``asyncio.Runner(loop_factory=VirtualTimeLoop).run(main())``.

    Raises (from the loop's ``run_*`` methods):
        VirtualTimeDeadlock: the loop would have to sleep forever.
    """

    #: Its clock is not the real one: code that measures time for the loop's own timers
    #: reads ``time()`` then (the runtime's lag beat), or a run would not replay.
    virtual_clock = True

    def __init__(self, start: float = 0.0) -> None:
        self._virtual_now = float(start)
        super().__init__(_JumpingSelector(self._advance))
        self._frozen: dict[str, list[asyncio.Handle]] = {}
        skip = asyncio.Handle(lambda: None, (), self)
        skip.cancel()
        self._ready = _Ready(self._frozen, skip)

    def freeze(self, host: str) -> None:
        """Run nothing of ``host`` (a ``host_context`` token) until ``thaw``: its ready
        callbacks and due timers are set aside, in order."""
        self._frozen.setdefault(host, [])

    def thaw(self, host: str) -> None:
        """Run everything of ``host`` set aside since ``freeze``, at once and in order."""
        self._ready.extend(self._frozen.pop(host, []))

    def is_frozen(self, host: str) -> bool:
        return host in self._frozen

    def time(self) -> float:
        return self._virtual_now

    def _advance(self, seconds: float) -> None:
        """Move the clock by ``seconds``, then on to the deadline of every timer the loop is
        about to run: asyncio runs a timer up to ``clock_resolution`` early, and a frozen
        clock would then never reach it (code that waits until ``time() >= deadline`` with
        timers would spin forever at one instant, which a real clock never allows)."""
        now = self._virtual_now + max(seconds, 0.0)
        heap: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        for _ in range(100):  # a fixed point: each round may bring more timers into range
            limit = now + self._clock_resolution  # type: ignore[attr-defined]
            latest = now
            stack = [0] if heap else []
            while stack:  # the heap's entries below ``limit`` (a subtree at its root)
                i = stack.pop()
                when = heap[i].when()
                if when < limit:
                    latest = max(latest, when)
                    stack.extend(j for j in (2 * i + 1, 2 * i + 2) if j < len(heap))
            if latest == now:
                break
            now = latest
        self._virtual_now = now


# --- pipes ------------------------------------------------------------------------------------


class _Channel:
    """One direction of a pipe: chunks in write order, each with its due time (None: held)."""

    __slots__ = ("items", "last_due", "source", "target", "timer")

    def __init__(self, source: _End, target: _End) -> None:
        self.source = source
        self.target = target
        self.items: deque[list[Any]] = deque()  # [due or None, bytes | _FIN | _RST]
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None


class _End(asyncio.Transport):
    """One end of an in-memory connection, as its protocol (a ``PeerConnection``) sees it."""

    def __init__(
        self, network: MemoryNetwork, node: MemoryTransport, sockname: tuple[str, int], peername: tuple[str, int]
    ) -> None:
        super().__init__({"sockname": sockname, "peername": peername})
        self.network = network
        self.node = node  # the transport (one incarnation of a node) on this end's side
        self.owner = node.name  # the node name of this end's side
        self.protocol: asyncio.Protocol | None = None
        self.out: _Channel | None = None
        self.closing = False  # closed or aborted by its protocol, or reset: no more writes
        self.lost = False  # connection_lost was (or is about to be) called
        self.dead = False  # its node crashed: no callback ever again
        self.buffered = 0  # bytes written and not yet delivered (the kernel's send buffer)
        self.paused = False
        self.high_water = 1024 * 1024
        self.low_water = 256 * 1024

    # --- asyncio.Transport ------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing or self.dead or not data:
            return
        chunk = bytes(data)
        self.buffered += len(chunk)
        self.network._push(self, chunk)
        if not self.paused and self.buffered > self.high_water and self.protocol is not None:
            self.paused = True
            self.protocol.pause_writing()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        """Graceful: the peer reads everything written so far, then EOF."""
        if self.closing or self.dead:
            return
        self.closing = True
        self.network._push(self, _FIN)
        self._report_lost(None)

    def abort(self) -> None:
        """Immediate: the peer reads what was already sent, then a reset."""
        if self.dead:
            return
        if not self.closing:
            self.closing = True
            self.network._push(self, _RST)
        self._report_lost(None)

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self.low_water, self.high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high_water = 64 * 1024 if high is None else high
        self.low_water = self.high_water // 4 if low is None else low

    def is_reading(self) -> bool:
        return not self.closing

    def pause_reading(self) -> None:
        pass  # the distable transport never pauses reading

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    # --- the network's side -----------------------------------------------------------------

    def _report_lost(self, exc: Exception | None) -> None:
        """``connection_lost`` on the next loop turn (as asyncio does), once."""
        if self.lost or self.dead:
            return
        self.lost = True
        self.network.loop.call_soon(self.network._on_behalf, self, self._call_lost, exc, context=contextvars.Context())

    def _call_lost(self, exc: Exception | None) -> None:
        if not self.dead and self.protocol is not None:
            self.protocol.connection_lost(exc)

    def _sent(self, size: int) -> None:
        """``size`` bytes left the send buffer (delivered or discarded)."""
        self.buffered -= size
        if self.paused and self.buffered <= self.low_water:
            self.paused = False
            self.network._on_behalf(self, self._call_resume_writing)

    def _call_resume_writing(self) -> None:
        if not self.closing and not self.dead and self.protocol is not None and not self.paused:
            self.protocol.resume_writing()

    def _receive(self, item: Any) -> None:
        """The next item of the channel into this end arrived."""
        if self.dead or self.closing or self.protocol is None:
            return  # a closed socket drops what arrives; a dead node sees nothing
        if item is _FIN:
            if not self.protocol.eof_received():
                self.close()
        elif item is _RST:
            self.closing = True
            self._report_lost(ConnectionResetError(errno.ECONNRESET, "connection reset by peer"))
        else:
            self.protocol.data_received(item)


# --- the network ------------------------------------------------------------------------------


class MemoryTransport(Transport):
    """The real ``Transport`` with its sockets replaced by ``MemoryNetwork`` pipes.

    Build it through ``MemoryNetwork.transport_factory`` (``Node(transport_factory=...)``);
    every other method is ``Transport``'s own, with the same contract.
    """

    def __init__(self, *, network: MemoryNetwork, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # No busy polling: nothing here sleeps in the kernel, and on a virtual-time loop
        # polling would only hold the clock still.
        self._busy_poll = None
        self.network = network
        self.host = ""
        self.port = 0
        self.crashed = False
        # The context this node's code runs in (``host_context``'s, if it was started in
        # one): deliveries and link events run in a copy of it.
        self.context = contextvars.copy_context()
        self.host_token = self.context.get(_HOST)

    async def listen(self, host: str, port: int, *, serve: bool = True) -> int:
        """Join the network at ``host:port`` (port 0 picks a free one); return the port.

        The memory network accepts links at once, ``serve`` or not (its nodes bind and
        join in one step)."""
        self.host = host
        self.port = self.network._listen(self, host, port)
        self._schedule_tick()
        return self.port

    def rename(self, name: str) -> None:
        super().rename(name)
        self.network._renamed(self)

    async def close(self) -> None:
        """Stop accepting links, then close every link as ``Transport.close`` does."""
        self.network._unlisten(self)
        await super().close()

    async def _open(self, peer: Peer, conn: PeerConnection) -> None:
        # Transport._open with the network's dial in place of loop.create_connection.
        try:
            await asyncio.wait_for(self.network._connect(self, peer.host, peer.port, conn), self.config.connect_timeout)
        except (OSError, TimeoutError) as exc:
            peer.refused = is_refusal(exc)
            conn.closed = True
            conn.close_reason = f"cannot connect: {exc or type(exc).__name__}"
            conn._finish()

    def _accepted(self) -> PeerConnection:
        """The protocol of a link this node accepts (what ``create_server``'s factory makes)."""
        return PeerConnection(self, dialer=False)

    def _crash(self) -> None:
        """Stop every timer of the transport; nothing it does from now on reaches anyone."""
        self.crashed = True
        self._closing = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for peer in self.peers.values():
            if peer.dial_handle is not None:
                peer.dial_handle.cancel()
                peer.dial_handle = None


@dataclass(frozen=True, slots=True)
class MemoryNetworkStatistics:
    connections: int
    refused: int
    chunks_delivered: int
    bytes_delivered: int
    chunks_held: int


class MemoryNetwork:
    """A seeded in-memory network of ``MemoryTransport`` nodes, with faults on demand.

    Args:
        seed: every random choice of the network and of its transports derives from it.
        latency: one-way latency range in seconds, drawn per chunk (uniform); ``(0, 0)``
            delivers on the next loop turn.

    Every method runs on the event loop of the nodes (one loop per network).
    """

    def __init__(self, seed: int = 0, *, latency: tuple[float, float] = (0.0, 0.0)) -> None:
        if not 0.0 <= latency[0] <= latency[1]:
            raise ValueError(f"latency range {latency!r} must be (low, high) with 0 <= low <= high")
        self.seed = seed
        self.latency = latency
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: dict[tuple[str, int], MemoryTransport] = {}
        self._by_name: dict[str, MemoryTransport] = {}
        self._ends: dict[str, dict[_End, None]] = {}  # node name -> its ends (an ordered set)
        self._cut: dict[frozenset[str], str] = {}  # pair -> "drop" (black hole) | "refuse" (reset)
        self._heal: asyncio.Future[None] | None = None
        self._next_port = 7001
        self._next_ephemeral = 40000
        self._transports = 0
        self._hosts = 0
        self._paused: dict[MemoryTransport, list[tuple[_End, Callable[..., None], tuple[Any, ...]]]] = {}
        self._connections = self._refused = 0
        self._chunks = self._bytes = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def transport_factory(self, **kwargs: Any) -> MemoryTransport:
        """Build a node's transport on this network: pass it as ``Node(transport_factory=...)``.

        Takes ``Transport``'s keyword arguments; ``rng`` is replaced by one derived from
        the network's seed (backoff jitter must be reproducible too).
        """
        self._transports += 1
        kwargs["rng"] = random.Random(f"{self.seed}/transport/{self._transports}")
        return MemoryTransport(network=self, **kwargs)

    # --- faults --------------------------------------------------------------------------------

    def partition(self, group_a: Iterable[str], group_b: Iterable[str], *, reset: bool = False) -> None:
        """Cut every route between a node of ``group_a`` and one of ``group_b`` (node names).

        A black hole by default (see the module rules); ``reset=True`` breaks the links
        between them now and refuses dials until healed.
        """
        pairs = {frozenset((a, b)) for a in group_a for b in group_b if a != b}
        for pair in pairs:
            self._cut[pair] = "refuse" if reset else "drop"
        if reset:
            for name in sorted({n for pair in pairs for n in pair}):
                for end in list(self._ends.get(name, ())):
                    other = end.out.target if end.out is not None else None
                    if other is not None and frozenset((end.owner, other.owner)) in pairs:
                        self._reset(end)

    def heal(self, group_a: Iterable[str] | None = None, group_b: Iterable[str] | None = None) -> None:
        """Restore the routes between the two groups, or every route if no group is given."""
        if group_a is None or group_b is None:
            healed = set(self._cut)
            self._cut.clear()
        else:
            healed = {frozenset((a, b)) for a in group_a for b in group_b if a != b}
            for pair in healed:
                self._cut.pop(pair, None)
        for name in sorted({n for pair in healed for n in pair}):
            for end in list(self._ends.get(name, ())):
                channel = end.out
                if channel is not None and frozenset((end.owner, channel.target.owner)) in healed:
                    self._release(channel)
        fut, self._heal = self._heal, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def is_cut(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self._cut

    def host_context(self) -> contextvars.Context:
        """A context for a new node (one incarnation): start the node in it, as
        ``asyncio.create_task(node.start(), context=network.host_context())``, and
        everything the node does is its own, so that ``pause`` can stop it."""
        self._hosts += 1
        context = contextvars.copy_context()
        context.run(_HOST.set, f"host{self._hosts}")
        return context

    def context_of(self, node: str | Node) -> contextvars.Context:
        """A copy of the context ``node`` runs in: do things *as* that node (an
        application on it calling the API) in it, and they wait while it is paused."""
        return self._transport_of(node).context.copy()

    def pause(self, node: str | Node) -> None:
        """SIGSTOP ``node`` (see the module rules). It must have been started inside a
        ``host_context()`` and its loop must be a ``VirtualTimeLoop``."""
        transport = self._transport_of(node)
        if transport.host_token is None:
            raise ValueError(f"{transport.name} was not started in a host_context(): it cannot be paused")
        loop = self.loop
        if not isinstance(loop, VirtualTimeLoop):
            raise TypeError("pausing a node needs a VirtualTimeLoop")
        if transport.crashed or transport in self._paused:
            return
        self._paused[transport] = []
        loop.freeze(transport.host_token)

    def resume(self, node: str | Node) -> None:
        """SIGCONT ``node``: what came due meanwhile runs at once (see the module rules)."""
        transport = self._transport_of(node)
        pending = self._paused.pop(transport, None)
        if pending is None:
            return
        loop = self.loop
        assert isinstance(loop, VirtualTimeLoop)
        assert transport.host_token is not None
        io_first = self._rng.random() < 0.5
        for end, callback, args in pending:  # link events first: accepted links exist before data
            self._on_behalf(end, callback, *args)
        if io_first:
            self._rearm_inbound(transport, now=True)
            loop.thaw(transport.host_token)
        else:
            loop.thaw(transport.host_token)
            self._rearm_inbound(transport, now=False)

    def is_paused(self, node: str | Node) -> bool:
        transport = self._by_name.get(node if isinstance(node, str) else node.name)
        return transport is not None and transport in self._paused

    def _transport_of(self, node: str | Node) -> MemoryTransport:
        name = node if isinstance(node, str) else node.name
        transport = self._by_name.get(name)
        if transport is None:
            raise KeyError(f"{name} is not on this network")
        return transport

    def crash(self, node: str | Node) -> None:
        """Kill a node without a word (see the module rules). Given a ``Node``, also stop
        its timers and tasks; its processes are left as they were, dead to the world."""
        name = node if isinstance(node, str) else node.name
        transport = self._by_name.get(name)
        if transport is None or transport.crashed:
            return
        transport._crash()
        was_paused = self._paused.pop(transport, None) is not None
        if was_paused:  # what queued for it is read by nobody: its peers' buffers drain
            self._rearm_inbound(transport, now=False)
        if self._listeners.get((transport.host, transport.port)) is transport:
            del self._listeners[(transport.host, transport.port)]
        for end in list(self._ends.get(name, ())):
            if end.dead:
                continue  # an earlier incarnation's, crashed before
            if not end.closing:
                self._push(end, _FIN)  # the kernel closes a killed process's sockets
            end.closing = end.dead = True
            self._forget(end)
        if not isinstance(node, str):
            abort(node)  # its timers and tasks: it must do nothing more, visible or not
        if was_paused:
            # What it had set aside runs now: cancelled timers are skipped, cancelled tasks unwind.
            loop = self.loop
            if isinstance(loop, VirtualTimeLoop) and transport.host_token is not None:
                loop.thaw(transport.host_token)

    # --- queries -----------------------------------------------------------------------------

    def reachable(self, name: str) -> list[tuple[str, int]]:
        """``(node name, incarnation)`` of every listening node ``name`` has a route to."""
        return [
            (t.name, t.incarnation)
            for t in self._listeners.values()
            if t.name != name and frozenset((name, t.name)) not in self._cut and t not in self._paused
        ]

    def statistics(self) -> MemoryNetworkStatistics:
        held = sum(
            1 for ends in self._ends.values() for e in ends if e.out is not None for i in e.out.items if i[0] is None
        )
        return MemoryNetworkStatistics(self._connections, self._refused, self._chunks, self._bytes, held)

    # --- the transports' side -----------------------------------------------------------------

    def _listen(self, transport: MemoryTransport, host: str, port: int) -> int:
        if port == 0:
            while (host, self._next_port) in self._listeners:
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
        if (host, port) in self._listeners:
            raise OSError(errno.EADDRINUSE, f"address {host}:{port} already in use on the memory network")
        self._listeners[(host, port)] = transport
        self._by_name[transport.name] = transport
        self.loop  # noqa: B018 - binds the network to the nodes' loop
        return port

    def _renamed(self, transport: MemoryTransport) -> None:
        self._by_name[transport.name] = transport

    def _unlisten(self, transport: MemoryTransport) -> None:
        if self._listeners.get((transport.host, transport.port)) is transport:
            del self._listeners[(transport.host, transport.port)]

    async def _connect(self, dialer: MemoryTransport, host: str, port: int, conn: PeerConnection) -> None:
        """Dial ``host:port`` for ``dialer``'s protocol ``conn``: SYN, then SYN-ACK or refusal."""
        target = self._listeners.get((host, port))
        target_name = target.name if target is not None else f"?@{host}:{port}"
        await asyncio.sleep(2 * self._latency())  # a round trip
        for _ in range(1_000_000):  # bounded by the caller's connect timeout, one heal per turn
            if self._cut.get(frozenset((dialer.name, target_name))) != "drop":
                break
            if self._heal is None:
                self._heal = self.loop.create_future()
            await asyncio.shield(self._heal)
        target = self._listeners.get((host, port))
        if dialer.crashed:
            raise OSError(errno.ENETDOWN, "the dialing node crashed")
        if target is None or target.crashed or self.is_cut(dialer.name, target.name):
            self._refused += 1
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"connection to {host}:{port} refused")
        self._connections += 1
        self._next_ephemeral += 1
        ours = _End(self, dialer, (dialer.host, self._next_ephemeral), (host, port))
        theirs = _End(self, target, (host, port), (dialer.host, self._next_ephemeral))
        ours.out, theirs.out = _Channel(ours, theirs), _Channel(theirs, ours)
        self._ends.setdefault(dialer.name, {})[ours] = None
        self._ends.setdefault(target.name, {})[theirs] = None
        ours.protocol = conn
        # The target's side: at once, or (paused: the kernel completed the handshake) on resume.
        self._on_behalf(theirs, self._accept, target, theirs)
        conn.connection_made(ours)

    @staticmethod
    def _accept(target: MemoryTransport, end: _End) -> None:
        if end.dead or target.crashed:
            return
        accepted = target._accepted()
        end.protocol = accepted
        accepted.connection_made(end)

    def _on_behalf(self, end: _End, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` as ``end``'s node (in its context), or when it resumes if paused."""
        pending = self._paused.get(end.node)
        if pending is not None:
            pending.append((end, callback, args))
        else:
            end.node.context.copy().run(callback, *args)

    def _rearm_inbound(self, transport: MemoryTransport, *, now: bool) -> None:
        """Deliver what queued for ``transport`` while it was paused: at once (``now``) or
        from a timer."""
        for end in list(self._ends.get(transport.name, ())):
            if end.node is not transport or end.out is None:
                continue
            channel = end.out.target.out  # the channel into ``end``
            if channel is None or not channel.items or channel.items[0][0] is None:
                continue
            if channel.timer is not None:
                channel.timer.cancel()
                channel.timer = None
            if now:
                self._deliver(channel)
            else:
                channel.timer = self._call_at(max(self.loop.time(), channel.items[0][0]), self._deliver, channel)

    def _call_at(self, when: float, callback: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        """A network timer: nobody's code (an empty context), never set aside by a pause."""
        return self.loop.call_at(when, callback, *args, context=contextvars.Context())

    def _latency(self) -> float:
        low, high = self.latency
        return low if high <= low else self._rng.uniform(low, high)

    def _push(self, end: _End, item: Any) -> None:
        """Put ``item`` (bytes, FIN or RST) into ``end``'s outgoing channel."""
        channel = end.out
        if channel is None:
            return
        if frozenset((end.owner, channel.target.owner)) in self._cut:
            channel.items.append([None, item])
            return
        due = max(self.loop.time() + self._latency(), channel.last_due)
        channel.last_due = due
        channel.items.append([due, item])
        if channel.timer is None:
            channel.timer = self._call_at(due, self._deliver, channel)

    def _deliver(self, channel: _Channel) -> None:
        channel.timer = None
        source, target = channel.source, channel.target
        if frozenset((source.owner, target.owner)) in self._cut:
            for item in channel.items:
                item[0] = None  # lost on the way: TCP retransmits it once the route heals
            return
        if target.node in self._paused and not target.dead:
            return  # queued for a paused node (its receive window is shut): resume delivers it
        now = self.loop.time()
        items = channel.items
        while items and items[0][0] is not None and items[0][0] <= now + 1e-9:
            _, item = items.popleft()
            if isinstance(item, bytes):
                self._chunks += 1
                self._bytes += len(item)
                source._sent(len(item))
            if not (target.dead or target.closing or target.protocol is None):
                target.node.context.copy().run(target._receive, item)
        self._forget(source)
        self._forget(target)
        if items and items[0][0] is not None:
            channel.timer = self._call_at(items[0][0], self._deliver, channel)

    def _release(self, channel: _Channel) -> None:
        """The route healed: send what it held again, in order, with fresh latencies."""
        if channel.timer is not None:
            channel.timer.cancel()
            channel.timer = None
        now = self.loop.time()
        last = now
        for item in channel.items:
            if item[0] is None:
                item[0] = max(now + self._latency(), last)
            last = item[0]
        channel.last_due = max(channel.last_due, last)
        if channel.items:
            channel.timer = self._call_at(channel.items[0][0], self._deliver, channel)

    def _reset(self, end: _End) -> None:
        """A reset on a cut route: both ends see it now and whatever was in flight is lost."""
        channel = end.out
        assert channel is not None
        for one, chan in ((end, channel), (channel.target, channel.target.out)):
            if chan is not None:
                if chan.timer is not None:
                    chan.timer.cancel()
                    chan.timer = None
                dropped = sum(len(i[1]) for i in chan.items if isinstance(i[1], bytes))
                chan.items.clear()
                one._sent(dropped)
            if not one.dead and not one.lost:
                one.closing = True
                one._report_lost(ConnectionResetError(errno.ECONNRESET, "connection reset (route cut)"))
            self._forget(one)

    def _forget(self, end: _End) -> None:
        """Stop tracking an end that is closed and has nothing left to deliver."""
        if (end.lost or end.dead) and (end.out is None or not end.out.items):
            ends = self._ends.get(end.owner)
            if ends is not None:
                ends.pop(end, None)


@dataclass(frozen=True, slots=True)
class MemoryDiscovery:
    """Discovery on a ``MemoryNetwork``: heartbeats, as ``Gossip`` sends them.

    Every ``interval`` (jittered by ±``jitter`` of it) the node hears from every
    listening node it has a route to, with its incarnation, as a multicast heartbeat
    would tell it. Pass it as ``Node(cluster=MemoryDiscovery(network))``.
    """

    network: MemoryNetwork
    interval: float = 1.0
    jitter: float = 0.2

    async def run(self, ctx: DiscoveryContext) -> None:
        rng = random.Random(f"{self.network.seed}/discovery/{ctx.name}")
        while True:
            for name, incarnation in self.network.reachable(ctx.name):
                ctx.discovered(name, incarnation, urgent=not ctx.is_up(name))
            await asyncio.sleep(self.interval * (1 + self.jitter * (2 * rng.random() - 1)))
