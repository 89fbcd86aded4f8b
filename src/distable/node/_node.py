"""The node: wires the layers together (runtime, transport, membership, registry) and
offers the public API.

A node is one OS process's presence in the cluster: one event loop, one runtime of
processes, one listening socket and a mesh of links. ``async with Node(...)`` starts
it (binds, then joins) and makes it the current node for the module-level functions;
leaving the block is a graceful leave: every registered process is handed off to its
new owner, then the processes stop (reason "shutdown"), the leave is announced and the
links close.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import inspect
import logging
import math
import os
import secrets
import ssl
import time
import typing
from collections.abc import Callable, Coroutine, Iterable
from contextvars import Context
from dataclasses import dataclass
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import msgspec

from .._errors import ProcessExited, StoreUnavailable
from ..membership import (
    MembershipConfig,
    MembershipService,
    MembershipStatistics,
    NodeDown,
    NodeUp,
    Static,
    Strategy,
    as_strategies,
)
from ..registry import RegistryConfig, RegistryService, RegistryStatistics, Reply
from ..ring import DistributionStrategy, Placement, Ring
from ..runtime import Process, Runtime, RuntimeStatistics, current_runtime
from ..runtime._context import CURRENT_RUNTIME, context_with, running_on
from ..runtime._runtime import RUN_NOW
from ..store._api import Store
from ..store._durable import DurableStore
from ..store._url import open_store, parse_store_url
from ..transport import Transport, TransportConfig, TransportStatistics, format_node_name
from ..wire import Pid, Ref
from ..wire._messages import (
    MEMBER_ALIVE,
    Ack,
    CallReply,
    CallRequest,
    Cast,
    DemonitorRequest,
    DownNotice,
    DropNotice,
    MemberSync,
    MonitorRequest,
    Ping,
    PingReq,
    Send,
    Tick,
    Undecoded,
)
from . import _gc
from ._events import EventBus, EventStream
from ._info import INFO_SERVER_ID, InfoServer

log = logging.getLogger("distable.node")
P = ParamSpec("P")
# For the methods and functions made from others (_registering, _on_current_node). C is a
# whole coroutine type: with Coroutine[Any, Any, R] instead, mypy loses the result types of
# an ``asyncio.gather(...)`` of them, unpacked ("Cannot determine type").
S = TypeVar("S")
C = TypeVar("C", bound=Coroutine[Any, Any, Any])


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """A snapshot of a node, for the CLI, the dashboard and metrics."""

    name: str
    incarnation: int
    role: str
    uptime: float
    runtime: RuntimeStatistics
    transport: TransportStatistics
    membership: MembershipStatistics
    registry: RegistryStatistics


@dataclass(frozen=True, slots=True)
class JoinState:
    """A node's view of the cluster while it joins (``Node.join_state``).

    Attributes:
        up: the other nodes that are up.
        pending: members other nodes report alive that are not up here yet.
        unsynced: nodes up whose claims this node has not caught up with yet.
        servers: server nodes up, greeted and synced, this one included if a server.
        static_complete: every node of the ``Static`` lists is up.
        foreign: gossip packets of other clusters heard (another cookie).
    """

    up: frozenset[str]
    pending: frozenset[str]
    unsynced: frozenset[str]
    servers: int
    static_complete: bool
    foreign: int = 0


def _cookie_bytes(cookie: str | bytes | None) -> bytes:
    if cookie is None:
        env = os.environ.get("DISTABLE_COOKIE")
        if env:
            return env.encode()
        log.warning("no cookie given (cookie= or DISTABLE_COOKIE): using a random one; this node can join nobody")
        return secrets.token_bytes(32)
    if isinstance(cookie, str):
        cookie = cookie.encode()
    if not cookie:
        raise ValueError("the cookie must not be empty")
    return cookie


class _NotStarted:
    """The replica ``whereis`` reads, before the node has started."""

    __slots__ = ()

    def get(self, name: Any) -> Pid | None:
        raise RuntimeError("the node is not started: use 'async with Node(...)'")


_NOT_STARTED = _NotStarted()


def _registering(
    implementation: Callable[Concatenate[S, bool, P], C], name: str, *, existing_ok: bool, doc: str
) -> Callable[Concatenate[S, P], C]:
    """The ``Node`` method ``name`` (docstring ``doc``): ``implementation`` with its
    argument after ``self`` given (``existing_ok``), and its parameters less that one."""

    async def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        return await implementation(self, existing_ok, *args, **kwargs)

    parameters = list(inspect.signature(implementation).parameters.values())
    parameters[:2] = [parameters[0].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    _show_as(method, f"Node.{name}", doc, implementation, parameters)
    return typing.cast("Callable[Concatenate[S, P], C]", method)  # it awaits and returns what C does


def _show_as(
    function: Callable[..., Any], qualname: str, doc: str, template: Callable[..., Any], parameters: list[Any]
) -> None:
    """Show ``function`` to users (``help()``, ``inspect``, tracebacks) named ``qualname``,
    documented by ``doc``, with ``template``'s signature but ``parameters`` (type checkers
    see the type its maker declares)."""
    function.__name__ = qualname.rpartition(".")[2]
    function.__qualname__ = qualname
    function.__doc__ = doc
    function.__signature__ = inspect.signature(template).replace(parameters=parameters)  # type: ignore[attr-defined]


class Node:
    """One distable node. Use it as ``async with Node(name="a", cookie="...") as node:``.

    Args:
        name: the short name; the full name is ``name@host:port``.
        host: the address to listen on (loopback by default).
        port: the TCP port (0 picks a free one; the full name shows it).
        cookie: the cluster secret; nodes without it can never talk to this one.
        tls: an ``ssl.SSLContext`` for both directions, or a ``(server, client)`` pair.
        role: ``"server"`` (hosts registered names) or ``"client"`` (uses the cluster,
            owns no names).
        cluster: how to find the other nodes: ``Gossip(...)``, ``Static([...])``,
            ``DNSPoll(...)``, a list of them, or None (only explicit ``connect``).
        membership: failure-detection tunables (``MembershipConfig.lan()`` by default;
            ``MembershipConfig.local()`` for nodes on one machine).
        allow: shell-glob patterns of node names this node may link with (all if empty).
        deny: shell-glob patterns of node names it must never link with (wins over allow).
        strategy: how names are placed: ``Ring()`` (default) or ``StaticQuorumRing(q)``;
            the same on every node of a cluster.
        registry: registry tunables (``RegistryConfig``).
        drain_timeout: how long a graceful stop may take to hand every process off.
        connect: node names to keep links with from the start.
        transport: link tunables (``TransportConfig``).
        block_warning: seconds a handler may hold the loop before a warning is logged.
        transport_factory: builds the node's links, called with ``Transport``'s keyword
            arguments (``Transport`` by default; tests pass an in-memory network's, see
            ``distable.testing.MemoryNetwork``).
        store: the durable store (``"redis://127.0.0.1:6379/0"`` or a ``Store``): names
            registered through a factory and their last checkpoints are written through to
            it, and a cluster started from nothing starts them again (docs/guide.md,
            "Durable store"). Its keys are under a namespace made from the cookie, so
            clusters sharing a database do not mix. None: no store.
        store_timeout: the most one store operation may take before ``StoreUnavailable``.
        store_grace: at most how long, after it starts, a node waits for the cluster to
            settle before it starts the names it owns from the store.
        gc_freeze: True: while the node runs, keep the process's long-lived objects out of the
            cyclic garbage collector's full passes (``gc.freeze`` after each, thawed once
            the frozen heap doubled) and raise the young generation's threshold tenfold
            (docs/internals.md, "The garbage collector"). None (the default): on when the
            environment has ``DISTABLE_GC_FREEZE=1``, else off. Not for a program that
            manages ``gc.freeze`` or the thresholds itself (a pre-fork server).
    """

    def __init__(
        self,
        name: str = "node",
        host: str = "127.0.0.1",
        port: int = 0,
        cookie: str | bytes | None = None,
        *,
        tls: ssl.SSLContext | tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
        role: Literal["server", "client"] = "server",
        cluster: Strategy | list[Strategy] | tuple[Strategy, ...] | None = None,
        membership: MembershipConfig | None = None,
        allow: list[str] | tuple[str, ...] = (),
        deny: list[str] | tuple[str, ...] = (),
        strategy: DistributionStrategy | None = None,
        registry: RegistryConfig | None = None,
        drain_timeout: float = 30.0,
        connect: list[str] | tuple[str, ...] = (),
        transport: TransportConfig | None = None,
        block_warning: float = 0.25,
        transport_factory: Callable[..., Transport] | None = None,
        store: Store | str | None = None,
        store_timeout: float = 2.0,
        store_grace: float = 5.0,
        gc_freeze: bool | None = None,
    ) -> None:
        if "@" in name or not name:
            raise ValueError(f"node name {name!r} must be non-empty and contain no '@'")
        if role not in ("server", "client"):
            raise ValueError(f"role must be 'server' or 'client', not {role!r}")
        if isinstance(store, str):
            parse_store_url(store)
        # Field ownership. Everything runs on the node's event loop. The ``async`` methods
        # (the lifecycle, the API calls that wait) run in the caller's task and await; every
        # other method is a plain call that never awaits, made by the caller (the API), by
        # the transport's link callbacks (``_dispatch``, the dispatcher; ``_on_up``,
        # ``_on_down``), by membership's outputs (``_on_member_event``), by the registry
        # (``_incarnation_of``, ``_suspected``) or by any layer (``_spawn``); the queries
        # write nothing. Each group below says who writes its fields, and each method's
        # docstring which kind it is.

        # Set here, never reassigned: the arguments, checked and defaulted, and the event
        # bus (its journal and streams change as events are published: by membership's
        # and the registry's outputs, never awaiting; streams by ``events``).
        self.short_name = name
        self.host = host
        self.role = role
        self._cookie = _cookie_bytes(cookie)
        self._tls = tls
        self._seeds = tuple(connect)
        self._strategies = as_strategies(cluster)
        self._membership_config = membership or MembershipConfig.lan()
        self._allow = tuple(allow)
        self._deny = tuple(deny)
        self._strategy = strategy or Ring()
        self._registry_config = registry or RegistryConfig()
        self._drain_timeout = drain_timeout
        self._config = transport or TransportConfig()
        self._block_warning = block_warning
        self._transport_factory = transport_factory or Transport
        self._bus = EventBus()
        self._store_source = store
        self._store_timeout = store_timeout
        self._store_grace = store_grace
        if gc_freeze is None:  # the environment's choice (``distable node`` and benchmarks pass it on)
            gc_freeze = os.environ.get("DISTABLE_GC_FREEZE", "0").lower() in ("1", "true", "yes", "on")
        self._gc_freeze = gc_freeze

        # Set here, then by bind() (the caller's task), before any link or process: the
        # bound port (0 picks one), the full name it makes ("" until then if ``port`` is 0)
        # and the restart stamp (0 until bound).
        self.port = port
        self.name = format_node_name(name, host, port) if port else ""
        self.incarnation = 0

        # Written by bind() (the caller's task), and never again once it has succeeded
        # (stop() leaves them as they are): the layers and what the node makes of them.
        # The properties (``runtime``...) raise while they are None.
        self._started = 0.0  # time.monotonic() at bind, for the uptime
        self._runtime: Runtime | None = None
        self._transport: Transport | None = None
        self._membership: MembershipService | None = None
        self._registry: RegistryService | None = None
        self._store: DurableStore | None = None
        self._pids: dict[Any, Pid] | _NotStarted = _NOT_STARTED  # the replica whereis reads
        self._context: Context  # this node current: each task _spawn makes runs in a copy
        self._handlers: dict[type, Callable[[str, Any], None]]  # wire message type -> handler (_dispatch)

        # Written by start() (the caller's task): once joined, start() does nothing more;
        # with a store, the task that starts the names it remembers (``wait_restored``).
        self._joined = False
        self._restoring: asyncio.Task[Any] | None = None
        # Written by bind() once bound and by stop(): this node holds the process's garbage
        # collector policy (``_gc.acquire``; released when it stops).
        self._gc_held = False
        # Written by start() and by _on_member_event (a membership output; never awaits):
        # the loop time of the last NodeUp or NodeDown, for wait_joined's quiet period.
        self._view_changed_at = 0.0
        # Written by __aenter__ and __aexit__ (the caller's task): this node current in
        # the ``async with`` block.
        self._current: running_on | None = None
        # Added to by _spawn (any caller; never awaits), removed from by each task's done
        # callback; stop() (the caller's task) cancels and awaits what is left
        # (``distable.testing.abort`` cancels them too).
        self._tasks: set[asyncio.Task[Any]] = set()
        # connect() (the caller's task) adds its future and removes it when done; _on_up
        # (a link callback; never awaits) pops a node's futures and resolves them.
        self._up_waiters: dict[str, list[asyncio.Future[None]]] = {}

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        """``start``, then make this node current in the block. The caller's task; awaits."""
        await self.start()
        self._current = running_on(self.runtime)
        self._current.__enter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """``stop`` (a graceful leave), then this node is current no more. The caller's task
        (the one that entered the block); awaits."""
        try:
            await self.stop()
        finally:
            if self._current is not None:
                self._current.__exit__()
                self._current = None

    async def start(self) -> None:
        """Bind (if ``bind`` has not), then join the cluster: accept links, start discovery
        and dial ``connect``'s nodes (``async with`` calls this for you). Does nothing if
        already started.

        The caller's task; awaits (``bind``, then the listening socket's start). ``_joined``
        is set before the first await of its own, so a second call meanwhile returns at
        once.
        """
        await self.bind()
        if self._joined:
            return
        self._joined = True
        transport, ms = self.transport, self.membership
        await transport.serve()
        self._view_changed_at = asyncio.get_running_loop().time()
        ms.start()
        for seed in self._seeds:
            transport.connect(seed)
        if self._store is not None and self.role == "server":
            self._restoring = self._spawn(self._cold_start())
        log.info("%s: node started (incarnation %d)", self.name, self.incarnation)

    async def bind(self) -> None:
        """Bind the node's port and start its runtime and registry, without joining the
        cluster: until ``start`` (or ``async with``), no link is accepted (dialers wait in
        the port's backlog) and this node dials nobody (unless told to with ``connect``),
        so no other node sees it or hands it a process. The port is this node's alone from
        here: another node that binds it fails. A program that must check things first
        (its other ports, its code) binds, checks, then starts. Does nothing if already
        bound.

        The caller's task; awaits (the bind, the registry server's and the info server's
        spawn). It writes the fields ``__init__`` says it writes, once, the layers in
        order: transport, runtime, membership, registry, each handed what it needs of the
        ones before.

        Raises:
            OSError: the port cannot be bound (in use, not a local address...).
        """
        if self._runtime is not None:
            return
        loop = asyncio.get_running_loop()
        self.incarnation = time.time_ns() // 1000
        self._started = time.monotonic()
        transport = self._transport_factory(
            name=self.name or format_node_name(self.short_name, self.host, 1),
            incarnation=self.incarnation,
            cookie=self._cookie,
            loop=loop,
            spawn_task=self._spawn,
            dispatch=self._dispatch,
            on_up=self._on_up,
            on_down=self._on_down,
            config=self._config,
            tls=self._tls,
            role=self.role,
        )
        try:
            port = await transport.listen(self.host, self.port, serve=False)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from exc
        self.port = port
        self.name = format_node_name(self.short_name, self.host, port)
        transport.rename(self.name)
        self._transport = transport
        self._runtime = Runtime(
            self.name,
            self.incarnation,
            self,
            loop,
            self._spawn,
            transport,
            block_warning=self._block_warning,
        )
        rt = self._runtime
        self._context = context_with(rt)
        self._membership = MembershipService(
            name=self.name,
            incarnation=self.incarnation,
            cookie=self._cookie,
            loop=loop,
            transport=transport,
            config=self._membership_config,
            strategies=self._strategies,
            publish=self._on_member_event,
            spawn=self._spawn,
            allow=self._allow,
            deny=self._deny,
        )
        ms = self._membership
        transport.admits = ms.core.allowed  # read at each handshake: a deny changed later counts
        if self._store_source is not None:
            namespace = "distable:" + hashlib.sha256(self._cookie).hexdigest()[:16]
            engine = open_store(self._store_source, namespace=namespace, timeout=self._store_timeout)
            self._store = DurableStore(engine, timeout=self._store_timeout)
        self._registry = RegistryService(
            node=self.name,
            role=self.role,
            runtime=rt,
            transport=transport,
            strategy=self._strategy,
            config=self._registry_config,
            incarnation_of=self._incarnation_of,
            suspected=self._suspected,
            spawn=self._spawn,
            publish=self._bus.publish,
            store=self._store,
            connect=self.connect,
        )
        self._pids = self._registry.pids
        self._handlers = {
            Send: rt.on_send,
            Cast: rt.on_cast,
            CallRequest: rt.on_call_request,
            CallReply: rt.on_call_reply,
            MonitorRequest: rt.on_monitor_request,
            DemonitorRequest: rt.on_demonitor_request,
            DownNotice: rt.on_down_notice,
            DropNotice: rt.on_drop_notice,
            Undecoded: rt.on_undecoded,
            Tick: lambda node, msg: None,
            Ping: ms.on_message,
            Ack: ms.on_message,
            PingReq: ms.on_message,
            MemberSync: ms.on_message,
            **self._registry.handlers(),
        }
        await self._registry.start()
        info = await rt.spawn(InfoServer, (self.statistics, self._bus.journal.since), {})
        assert info.id == INFO_SERVER_ID, info
        self._spawn(rt.watch_loop_lag())
        if self._gc_freeze:
            _gc.acquire()
            self._gc_held = True

    async def stop(self) -> None:
        """Leave the cluster gracefully: hand every registered process off (bounded by
        ``drain_timeout``), stop every process (reason "shutdown"), tell every member,
        close every link, end every task. Does nothing if never bound.

        The caller's task; awaits (the drain, the processes' exits, the links' close, the
        tasks' ends). The fields bind() and start() wrote stay as they are, so ``start`` on a
        stopped node does nothing."""
        if self._runtime is None or self._transport is None or self._membership is None:
            return
        if self._registry is not None:
            # Hand every registered process off (with its state) while the links are up.
            await self._registry.drain(self._drain_timeout)
            self._registry.stop()
            if self._restoring is not None:
                self._restoring.cancel()
            await self._registry.close_store()  # what its queue holds, for at most a second
        # Processes first, so their monitors see their real exit reasons ("shutdown");
        # then the leave announcement, which makes peers hang up on this node.
        await self._runtime.shutdown()
        self._membership.leave()
        await self._transport.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._gc_held:
            self._gc_held = False
            _gc.release()
        log.info("%s: node stopped", self.name)

    async def _cold_start(self) -> None:
        """With a store: once the cluster this node sees has settled (``wait_joined``, at
        most ``store_grace`` seconds, then until it has caught up with every node up, as
        long again), start the names it owns that the store remembers and nobody claims
        (``RegistryService.cold_start``). A store that cannot be read is retried with
        backoff, for at most five minutes. A task of its own (``start``); awaits."""
        loop = asyncio.get_running_loop()
        await self.wait_joined(self._store_grace)
        deadline = loop.time() + self._store_grace
        while loop.time() < deadline:
            state = self.join_state()
            if not state.unsynced and not state.pending:
                break
            await asyncio.sleep(0.05)  # polled, bounded by the grace
        delay, give_up = 0.5, loop.time() + 300.0
        while True:
            try:
                started = await self.registry.cold_start()
            except StoreUnavailable as exc:
                if loop.time() + delay > give_up:
                    log.error("%s: cannot read the store to start the names it remembers: %s", self.name, exc)
                    self.registry.cold_start_abandoned()
                    return
                log.warning("%s: cannot read the store yet (%s); retrying in %.1f s", self.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            except Exception:  # a record this node cannot read (a type it does not know...)
                log.exception("%s: cannot start the names the store remembers", self.name)
                self.registry.cold_start_abandoned()
                return
            if started:
                log.info("%s: started %d name(s) remembered by the store", self.name, started)
            return

    async def wait_restored(self) -> None:
        """With a store: wait until this node has started the names it owns that the store
        remembers (its cold start; see ``store``); at once without one. Register names
        after it, or a registration may begin a name afresh before its remembered state
        is restored. The caller's task; awaits."""
        if self._restoring is not None:
            await asyncio.shield(self._restoring)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in a task this node owns (``stop`` cancels and awaits it).

        Any caller on the loop (every layer spawns through it); never awaits. From bind()
        on: the transport, made before ``_context``, spawns nothing until it dials."""
        # A task set rather than asyncio.TaskGroup: a TaskGroup cancels all siblings when
        # one task fails, and a process's drain must fail alone. Ownership is the same:
        # the node cancels and awaits every task it spawned when it stops.
        # Each task starts in its own copy of a context where this node is current, so
        # code it runs (a factory, a handler) finds the node wherever the task was made.
        task = asyncio.get_running_loop().create_task(coro, context=self._context.copy())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def runtime(self) -> Runtime:
        """This node's runtime (its processes). Query; reads only.

        Raises:
            RuntimeError: the node is not bound yet.
        """
        if self._runtime is None:
            raise RuntimeError("the node is not started: use 'async with Node(...)'")
        return self._runtime

    @property
    def membership(self) -> MembershipService:
        """This node's failure detector and member list. Query; reads only.

        Raises:
            RuntimeError: the node is not bound yet.
        """
        if self._membership is None:
            raise RuntimeError("the node is not started: use 'async with Node(...)'")
        return self._membership

    @property
    def transport(self) -> Transport:
        """This node's links. Query; reads only.

        Raises:
            RuntimeError: the node is not bound yet.
        """
        if self._transport is None:
            raise RuntimeError("the node is not started: use 'async with Node(...)'")
        return self._transport

    # --- links ----------------------------------------------------------------------------

    async def connect(self, node: str, timeout: float = 5.0) -> None:
        """Keep a link to ``node`` (redialed with backoff when it drops); wait until it is up.

        The caller's task; awaits (``_on_up`` resolves the future it waits on).

        Raises:
            TimeoutError: the link did not come up within ``timeout`` seconds.
            ValueError: ``node`` is not of the form ``name@host:port``.
        """
        transport = self.transport
        transport.connect(node)
        if transport.is_connected(node) or node == self.name:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._up_waiters.setdefault(node, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.name}: no link to {node} within {timeout} s") from None
        finally:
            waiters = self._up_waiters.get(node)
            if waiters and fut in waiters:
                waiters.remove(fut)

    def disconnect(self, node: str) -> None:
        """Stop keeping a link to ``node``. Any caller; never awaits (``_on_down`` may run
        inside it, as the link closes)."""
        self.transport.disconnect(node)

    def nodes(self) -> list[str]:
        """The other server nodes up in this node's view, sorted: each one announced with
        ``NodeUp`` and no ``NodeDown`` since, so a node whose link just dropped is listed
        until it is declared failed. Client nodes are not members and are never listed.
        Query; reads only."""
        return self.membership.nodes()

    async def wait_joined(
        self, timeout: float = 3.0, poll: float = 0.01, *, expect: int | None = None, quiet: float = 1.0
    ) -> bool:
        """Wait until this node has found its cluster, the cluster it can see has settled,
        and it has caught up with it. Returns False if that did not happen within
        ``timeout`` seconds (e.g. the first node of a new cluster; see ``join_state``).

        Settled means all of:

        * caught up: every node that is up here has greeted this one and synced with it
          (this node's replica holds its claims), and every member another node reports
          alive is up here too (no link still to come);
        * found: ``expect`` server nodes (this one included, if it is a server) are up
          and synced; without ``expect``, at least one other server node is;
        * complete: with ``expect``, nothing more. Else either every node of a ``Static``
          list is up, or the nodes up here have not changed for ``quiet`` seconds: nodes
          started together meet within a moment of each other, and a node that stopped
          waiting at the first one it met would register names on a partial ring, making
          copies that later meet as conflicts.

        Call it before registering names at start-up (``distable node`` does, before the
        ``--app`` start hooks run): a node that registers before it has seen the cluster
        makes duplicates, and if it is the ring owner its fresh copies win over the
        running ones, whose state then only reaches ``resolve_conflict``.

        The caller's task; awaits (it polls ``join_state`` every ``poll`` seconds).

        Raises:
            ValueError: ``expect`` is below 1.
        """
        if expect is not None and expect < 1:
            raise ValueError(f"expect must be at least 1, not {expect!r}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            now = loop.time()
            if self._settled(self.join_state(), now, expect, quiet):
                return True
            if now >= deadline:
                return False
            await asyncio.sleep(poll)  # bounded by the timeout; joining is not a hot path

    def _settled(self, state: JoinState, now: float, expect: int | None, quiet: float) -> bool:
        """Whether ``state`` is settled as ``wait_joined`` says. Query (wait_joined); reads only."""
        if state.unsynced or state.pending:
            return False
        if expect is not None:
            return state.servers >= expect
        if state.servers <= (1 if self.role == "server" else 0):
            return False  # no other server yet
        # A member that appears (a rumor) is pending until it is up, and its NodeUp
        # restarts the quiet period: the last NodeUp or NodeDown is the last change.
        return state.static_complete or now - self._view_changed_at >= quiet

    def join_state(self) -> JoinState:
        """What ``wait_joined`` looks at, now: for its checks and for saying why it timed out.
        Query; reads only."""
        core = self.registry.core
        synced_with = core.synced_with
        up = frozenset(self.nodes())
        pending = frozenset(
            m.name for m in self.membership.statistics().members if m.status in ("alive", "suspect") and not m.up
        )
        static = {name for s in self._strategies if isinstance(s, Static) for name in s.nodes} - {self.name}
        return JoinState(
            up=up,
            pending=pending - up,
            unsynced=frozenset(peer for peer in up if not synced_with(peer)),
            servers=(self.role == "server")
            + sum(1 for peer in up if synced_with(peer) and core.peers[peer].role == "server"),
            static_complete=bool(static) and static <= up,
            foreign=self.membership.foreign_packets,
        )

    def events(self, maxsize: int = 10_000, kinds: type | Iterable[type] | None = None) -> EventStream:
        """Subscribe to this node's events (``NodeUp``, ``NodeDown``, ...): those of the
        classes ``kinds`` only, if given (a class or classes: a stream of ``(NodeUp,
        NodeDown)`` is not even called for the registry's events). Any caller; never
        awaits. Raises ``TypeError`` if ``kinds`` holds anything but classes."""
        return self._bus.subscribe(maxsize, kinds)

    def _dispatch(self, node: str, messages: list[Any]) -> None:
        """Hand each message of a batch from ``node`` to its layer's handler.

        The dispatcher: the transport's link callback (``data_received``) calls it once per
        batch; never awaits, nor do the handlers."""
        handlers = self._handlers
        runtime = self._runtime
        assert runtime is not None
        runtime.dispatching = RUN_NOW
        try:
            for msg in messages:
                handlers[type(msg)](node, msg)
        finally:
            runtime.dispatching = False
            if runtime.ready:
                runtime.run_ready()  # what the batch brought for idle processes, at once

    def _on_member_event(self, event: NodeUp | NodeDown) -> None:
        """A member came up or went down: tell the registry, then publish the event.

        Membership callback (its outputs, carried out by whichever of its plain calls made
        them: the dispatcher, a link callback, its timer, discovery, start or leave); never
        awaits."""
        if self._runtime is not None:
            self._view_changed_at = self._runtime.loop.time()
        registry = self._registry
        if registry is not None:
            if isinstance(event, NodeUp):
                registry.peer_up(event.node, event.incarnation, event.client)
            else:
                registry.peer_down(event.node)
        self._bus.publish(event)

    def _incarnation_of(self, node: str) -> int | None:
        """``node``'s incarnation if membership has announced it up, else None.

        Query (the registry's, of membership's core); reads only."""
        member = self.membership.core.member(node)
        return member.incarnation if member is not None and member.announced else None

    def _suspected(self, node: str) -> bool:
        """Whether membership suspects ``node`` (or holds it failed): it may be paused or cut off.

        Query (the registry's, of membership's core); reads only."""
        member = self.membership.core.member(node)
        return member is not None and member.status != MEMBER_ALIVE

    def _on_up(self, node: str, incarnation: int) -> None:
        """The link to ``node`` is up: tell membership, wake ``connect``'s waiters.

        Transport link callback (a handshake completed); never awaits."""
        if self._registry is not None:
            # First: a first link brings the node up through membership below, greeted then
            self._registry.link_renewed(node, incarnation)  # what the link it replaced lost
        self.membership.link_up(node, incarnation)
        for fut in self._up_waiters.pop(node, ()):
            if not fut.done():
                fut.set_result(None)

    def _on_down(self, node: str, incarnation: int, reason: str) -> None:
        """The link to ``node`` went down, or a dial failed: the runtime fails the calls to it
        and fires the monitors of its processes, and membership is told.

        Transport link callback, which may run inside a ``post`` past ``hard_limit`` or a
        ``disconnect`` (see ``Transport._on_closed``); never awaits."""
        self.runtime.node_lost(node)
        self.membership.link_down(node)

    # --- processes and messages ------------------------------------------------------------

    async def spawn(self, cls: type[Process], *args: Any, **kwargs: Any) -> Pid:
        """Start a process of ``cls`` on this node (same as ``await cls.start(...)`` here).
        The caller's task; awaits the process's ``init``."""
        return await self.runtime.spawn(cls, args, kwargs)

    def _resolve(self, dest: Any) -> Pid:
        """``dest`` if a pid, else the pid registered as ``dest`` in this node's replica
        (``NameNotFound`` if none). Query; reads only."""
        if isinstance(dest, Pid):
            return dest
        return self.registry.resolve(dest)

    @property
    def registry(self) -> RegistryService:
        """This node's registry. Query; reads only.

        Raises:
            RuntimeError: the node is not bound yet.
        """
        if self._registry is None:
            raise RuntimeError("the node is not started: use 'async with Node(...)'")
        return self._registry

    # --- the registry ------------------------------------------------------------------------

    async def _register(
        self,
        existing_ok: bool,
        /,
        name: Any,
        factory: Any,
        *args: Any,
        restart: str = "transient",
        handoff_timeout: float = 5.0,
        timeout: float = 10.0,
        replicas: int | None = None,
        **kwargs: Any,
    ) -> Pid:
        # register and whereis_or_register (``existing_ok``), made by ``_registering``: the
        # one place their parameters are written. The caller's task; awaits.
        return await self.registry.register(
            name,
            factory,
            args,
            kwargs,
            restart=restart,
            handoff_timeout=handoff_timeout,
            timeout=timeout,
            existing_ok=existing_ok,
            replicas=replicas,
        )

    register = _registering(
        _register,
        "register",
        existing_ok=False,
        doc="""Start ``factory(*args, **kwargs)`` on the owner of ``name`` and register it there.

        ``factory`` is a ``Process`` subclass or a function returning a pid (or an
        ``"pkg.module:attr"`` reference to one); it must be importable on every node.
        ``restart`` says what happens when the process exits: "transient" (the default:
        restarted after a crash, as an OTP supervisor's child), "temporary" (the name is
        dropped) or "permanent" (always restarted). ``replicas``: how many nodes keep the
        process's checkpoints (``Process.checkpoint``), so that a restart after that many
        nodes fail at once still finds the latest; None takes ``RegistryConfig.replicas``
        (1). The caller's task; awaits.

        Raises:
            AlreadyRegistered: the name is taken (``.pid`` holds it).
            NoNodeAvailable: no node may own the name (no server node, or no quorum).
            FactoryError: the factory cannot be imported on the owner, or raised.
            InvalidFactoryReturn: it returned something other than a local pid.
            TypeError: the name is unhashable, or the factory not importable by reference.
            ValueError: ``restart`` or ``replicas`` is not one of the values above.
        """,
    )
    whereis_or_register = _registering(
        _register,
        "whereis_or_register",
        existing_ok=True,
        doc="""The pid registered as ``name``, registering it first if nobody has (a race
        answers with the winner's pid); the arguments are ``register``'s. The caller's task; awaits.""",
    )

    def checkpoint(self, pid: Pid, state: Any, wait: bool, timeout: float) -> asyncio.Future[None] | None:
        """``Process.checkpoint`` (see there) of the local process ``pid``. A process's
        handler; never awaits."""
        return self.registry.checkpoint(pid, state, wait, timeout)

    async def register_name(self, name: Any, pid: Pid, timeout: float = 10.0) -> None:
        """Register an existing process under ``name``; it is never moved or restarted.
        The caller's task; awaits.

        Raises:
            AlreadyRegistered: the name is taken by another pid.
            ProcessExited: ``pid`` is not alive.
        """
        await self.registry.register_name(name, pid, timeout)

    def whereis(self, name: Any) -> Pid | None:
        """The pid registered as ``name``, from this node's replica: never blocks (a query;
        reads only)."""
        return self._pids.get(name)

    async def unregister(self, name: Any, timeout: float = 10.0) -> None:
        """Remove ``name`` (its process keeps running); nothing happens if it is unknown.
        The caller's task; awaits."""
        await self.registry.unregister(name, timeout)

    def registered(self) -> builtins.list[tuple[Any, Pid]]:
        """Every ``(name, pid)`` in this node's replica. Query; reads only."""
        return self.registry.core.registered()

    def placement(self) -> Placement:
        """Where this node places names now: ``.nodes`` lists the server nodes names are
        placed on, and ``.owner(name)`` says which of them hosts ``name`` (None if none
        may, e.g. without a quorum). It changes as server nodes come and go, and may differ
        between nodes for a moment while they learn of a change. Query; reads only."""
        return self.registry.core.placement

    async def join(self, group: Any, pid: Pid, timeout: float = 10.0) -> None:
        """Add ``pid`` to ``group`` (it leaves by itself when it exits or its node dies).
        The caller's task; awaits."""
        await self.registry.join(group, pid, timeout)

    async def leave(self, group: Any, pid: Pid, timeout: float = 10.0) -> None:
        """Remove ``pid`` from ``group``. The caller's task; awaits."""
        await self.registry.leave(group, pid, timeout)

    def members(self, group: Any) -> builtins.list[Pid]:
        """The members of ``group``, from this node's replica. Query; reads only."""
        return self.registry.core.members(group)

    def publish(self, group: Any, message: Any) -> int:
        """Send ``message`` to every member of ``group``; returns how many were sent to.
        Any caller; never awaits."""
        members = self.registry.core.members(group)
        send = self.runtime.send
        for pid in members:
            send(pid, message)
        return len(members)

    async def multi_call(self, group: Any, message: Any, timeout: float | None = 5.0) -> builtins.list[Reply]:
        """Call every member of ``group`` at once; one ``Reply`` each, failures included.

        ``timeout`` is in seconds; None waits without limit. The caller's task; awaits.

        Raises:
            ValueError: ``timeout`` is negative or NaN.
        """
        return await self.registry.multi_call(group, message, _call_timeout(timeout))

    def send(self, dest: Pid | Any, message: Any) -> None:
        """Send ``message`` to ``dest``'s ``handle_info``; fire and forget. Any caller; never awaits."""
        self.runtime.send(self._resolve(dest), message)

    def cast(self, dest: Pid | Any, message: Any) -> None:
        """Send ``message`` to ``dest``'s ``handle_cast``; fire and forget. Any caller; never awaits."""
        self.runtime.cast(self._resolve(dest), message)

    async def call(self, dest: Pid | Any, message: Any, timeout: float | None = 5.0) -> Any:
        """Call ``dest`` and return its reply (see ``Runtime.call`` for the errors);
        ``timeout`` None waits without limit. The caller's task; awaits."""
        return await self.runtime.call(self._resolve(dest), message, timeout)

    def monitor(self, pid: Pid) -> Ref:
        """The current process monitors ``pid``; see ``Down``. Inside a process (``RuntimeError``
        elsewhere); never awaits."""
        return self.runtime.monitor(pid)

    def demonitor(self, ref: Ref) -> None:
        """Remove a monitor set by the current process. Inside a process (elsewhere it does
        nothing); never awaits."""
        self.runtime.demonitor(ref)

    async def stop_process(self, pid: Pid, reason: Any = "normal") -> Any:
        """Stop a local process after its queued messages; return its exit reason.
        The caller's task; awaits."""
        return await self.runtime.stop(pid, reason)

    def statistics(self) -> NodeStatistics:
        """A snapshot of this node and its layers. Query; reads only."""
        return NodeStatistics(
            name=self.name,
            incarnation=self.incarnation,
            role=self.role,
            uptime=time.monotonic() - self._started,
            runtime=self.runtime.statistics(),
            transport=self.transport.statistics(),
            membership=self.membership.statistics(),
            registry=self.registry.statistics(),
        )

    async def statistics_of(self, node: str, timeout: float = 5.0) -> NodeStatistics:
        """``node``'s ``statistics()`` snapshot (this node's own without a round trip).

        The caller's task; awaits.

        Raises:
            CallTimeout: ``node`` did not answer within ``timeout`` seconds.
            ProcessExited: ``node`` is not connected, or went away.
        """
        if node == self.name:
            return self.statistics()
        raw = await self.runtime.call(self._info_pid(node), "statistics", timeout)
        return msgspec.convert(raw, NodeStatistics)

    async def events_of(self, node: str, since: int = 0, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The recent events of ``node`` numbered above ``since``, oldest first, as plain
        data (``{"seq", "time", "type", ...fields}``); each node keeps its last 1000.

        The caller's task; awaits.

        Raises:
            CallTimeout: ``node`` did not answer within ``timeout`` seconds.
            ProcessExited: ``node`` is not connected, or went away.
        """
        if node == self.name:
            return self._bus.journal.since(since)
        answer: list[dict[str, Any]] = await self.runtime.call(self._info_pid(node), ("events", since), timeout)
        return answer

    def _info_pid(self, node: str) -> Pid:
        """The pid of ``node``'s info server. Query; reads only.

        Raises:
            ProcessExited: ``node`` is not up in membership's view.
        """
        incarnation = self._incarnation_of(node)
        if incarnation is None:
            raise ProcessExited(f"node {node!r} is not connected to {self.name}")
        return Pid(node, incarnation, INFO_SERVER_ID)

    def __repr__(self) -> str:
        return f"<Node {self.name or self.short_name}>"


def _call_timeout(timeout: float | None) -> float:
    """``timeout`` for ``Runtime.call`` (None becomes infinity: no limit), checked here so
    that a call of an empty group refuses a bad one too.

    Raises:
        ValueError: ``timeout`` is negative or NaN.
    """
    if timeout is None:
        return math.inf
    if not timeout >= 0:
        raise ValueError(f"call timeout must be >= 0 seconds or None, not {timeout!r}")
    return timeout


def current_node() -> Node:
    """The current node (set by ``async with Node(...)``, and inside processes).

    Raises:
        RuntimeError: there is no current node.
    """
    node = current_runtime().owner
    assert isinstance(node, Node)
    return node


def send(dest: Pid | Any, message: Any) -> None:
    """Send ``message`` to ``dest``'s ``handle_info`` from the current node."""
    runtime = CURRENT_RUNTIME.get()
    if runtime is not None and type(dest) is Pid:
        runtime.send(dest, message)  # what Node.send does with a pid, two calls fewer: the hot path
        return
    if runtime is not None and type(runtime.owner) is Node:
        runtime.send(runtime.owner._resolve(dest), message)  # Node.send with a name, inline
        return
    current_node().send(dest, message)


def cast(dest: Pid | Any, message: Any) -> None:
    """Send ``message`` to ``dest``'s ``handle_cast`` from the current node."""
    runtime = CURRENT_RUNTIME.get()
    if runtime is not None and type(runtime.owner) is Node:
        runtime.cast(runtime.owner._resolve(dest), message)  # Node.cast, inline
        return
    current_node().cast(dest, message)


async def call(dest: Pid | Any, message: Any, timeout: float | None = 5.0) -> Any:
    """Call ``dest`` from the current node and return its reply.

    ``timeout`` is in seconds; None waits without limit.

    Raises:
        CallTimeout: no reply within ``timeout`` seconds.
        ProcessExited: the callee did not exist, exited, or its node was lost.
        UndecodableMessage: the callee's node could not decode the message, or this node
            could not decode the reply (a type registered with ``register_type`` on one
            side only).
        ValueError: ``timeout`` is negative or NaN.
    """
    runtime = CURRENT_RUNTIME.get()
    if runtime is not None and type(dest) is Pid:
        return await runtime.call(dest, message, timeout)  # what Node.call does with a pid, one await fewer
    if runtime is not None and type(runtime.owner) is Node:
        # A name: resolved in the replica as Node.call does, without Node.call's extra await.
        return await runtime.call(runtime.owner._resolve(dest), message, timeout)
    return await current_node().call(dest, message, timeout)


def monitor(pid: Pid) -> Ref:
    """The current process monitors ``pid``: ``Down(ref, pid, reason)`` arrives as info."""
    return current_node().monitor(pid)


def demonitor(ref: Ref) -> None:
    """Remove a monitor set by the current process."""
    current_node().demonitor(ref)


def nodes() -> list[str]:
    """The other server nodes up in the current node's view; see ``Node.nodes``."""
    return current_node().nodes()


def events(maxsize: int = 10_000, kinds: type | Iterable[type] | None = None) -> EventStream:
    """Subscribe to the current node's events (of the classes ``kinds`` only, if given)."""
    return current_node().events(maxsize, kinds)


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """Run ``main`` on uvloop when it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _on_current_node(method: Callable[Concatenate[Node, P], C], doc: str) -> Callable[P, C]:
    """The module-level form of the ``Node`` method ``method``, on the current node."""

    async def on_current_node(*args: P.args, **kwargs: P.kwargs) -> Any:
        return await method(current_node(), *args, **kwargs)

    parameters = list(inspect.signature(method).parameters.values())[1:]  # without ``self``
    _show_as(on_current_node, method.__name__, doc, method, parameters)
    return typing.cast("Callable[P, C]", on_current_node)  # it awaits and returns what C does


register = _on_current_node(
    Node.register, """Start ``factory(*args, **kwargs)`` on the owner of ``name``; see ``Node.register``."""
)
whereis_or_register = _on_current_node(
    Node.whereis_or_register,
    """The pid of ``name``, registering it first if needed; see ``Node.whereis_or_register``.""",
)


async def register_name(name: Any, pid: Pid, timeout: float = 10.0) -> None:
    """Register an existing process under ``name`` (never moved or restarted)."""
    await current_node().register_name(name, pid, timeout)


def whereis(name: Any) -> Pid | None:
    """The pid registered as ``name`` in the current node's replica: a local read."""
    rt = CURRENT_RUNTIME.get()
    if rt is not None and type(node := rt.owner) is Node:
        return node._pids.get(name)  # Node.whereis, inline
    return current_node().whereis(name)


async def unregister(name: Any, timeout: float = 10.0) -> None:
    """Remove ``name`` from the registry (its process keeps running)."""
    await current_node().unregister(name, timeout)


def registered() -> list[tuple[Any, Pid]]:
    """Every ``(name, pid)`` in the current node's replica."""
    return current_node().registered()


async def join(group: Any, pid: Pid, timeout: float = 10.0) -> None:
    """Add ``pid`` to ``group``."""
    await current_node().join(group, pid, timeout)


async def leave(group: Any, pid: Pid, timeout: float = 10.0) -> None:
    """Remove ``pid`` from ``group``."""
    await current_node().leave(group, pid, timeout)


def members(group: Any) -> list[Pid]:
    """The members of ``group`` in the current node's replica."""
    return current_node().members(group)


def publish(group: Any, message: Any) -> int:
    """Send ``message`` to every member of ``group``."""
    return current_node().publish(group, message)


async def multi_call(group: Any, message: Any, timeout: float | None = 5.0) -> list[Reply]:
    """Call every member of ``group``: one ``Reply`` (value or error) per member."""
    return await current_node().multi_call(group, message, timeout)
