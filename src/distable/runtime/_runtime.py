"""The per-node runtime: the process table, local delivery, calls, monitors.

Rules:
    * Everything here runs on the node's event loop; nothing blocks and nothing awaits
      a peer while holding state (remote effects are queued through ``RemoteRouter``).
    * Local delivery never copies a message (as in Akka); remote delivery encodes it
      at send time, so later mutation by the sender is not seen by the receiver.
    * A message to a process that no longer exists is dropped and counted; a call to
      one fails with ``ProcessExited("noproc")``.
    * When a node is lost (``node_lost``), every call waiting on it fails with
      ``ProcessExited("noconnection")``, every monitor on its pids fires with
      ``"noconnection"``, and monitors its processes held here are forgotten.

The layer below the node: it knows pids, wire envelopes and a ``RemoteRouter`` that
the node implements on top of the transport, and nothing about sockets.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .._errors import CallTimeout, ProcessExited, UndecodableMessage, UnencodableValue
from .._log import RateLimitedLog
from .._timer import Expiry
from ..wire import NOCONNECTION, NOPROC, SHUTDOWN, Pid, Ref, to_wire
from ..wire._messages import (
    REPLY_EXIT,
    REPLY_OK,
    REPLY_UNDECODABLE,
    CallReply,
    CallRequest,
    Cast,
    DemonitorRequest,
    DownNotice,
    DropNotice,
    Forwarded,
    HandoffRefused,
    HandoffRequest,
    MonitorRequest,
    RegistryRequest,
    Send,
    Undecoded,
)
from ._context import CURRENT_PROCESS
from ._process import CALL, CAST, FLUSH, INFO, INIT, STOP, SYSTEM, Caller, Down, Gate, Process

log = logging.getLogger("distable.runtime")
T = TypeVar("T")


class RuntimeOwner(Protocol):
    """What the runtime uses of the node that owns it (it cannot import the node layer above it).

    ``Process.start(name=...)`` registers through it, ``Process.checkpoint`` checkpoints
    through it; ``Process.node`` returns it.
    """

    async def register(self, name: Any, factory: Any, *args: Any, **kwargs: Any) -> Pid:
        """Start ``factory(*args, **kwargs)`` on the owner of ``name``, register it, return its pid."""
        ...

    def checkpoint(self, pid: Pid, state: Any, wait: bool, timeout: float) -> asyncio.Future[None] | None:
        """Keep ``state`` as the latest checkpoint of the local ``pid``'s name (see
        ``Process.checkpoint``); with ``wait``, a future done once its standbys hold it."""
        ...


class RemoteRouter(Protocol):
    """Carries runtime messages to other nodes; the node implements it on the transport.

    Called on the event loop; must not block.
    """

    def post(self, node: str, message: Any) -> asyncio.Future[None] | None:
        """Queue ``message`` for ``node`` (dialing it if needed).

        Returns None, or a future that completes when the link to ``node`` is no longer
        congested (the sender should wait for it before sending more). If the node
        cannot be reached, the router later calls ``Runtime.node_lost(node)``.

        Raises:
            MessageTooLarge: the encoded message exceeds the link's frame limit.
        """
        ...

    def peer_version(self, node: str) -> int:
        """The protocol version agreed with ``node`` (0 when there is no link to it)."""
        ...


class Request(Protocol):
    """A message that asks another node for an answer (see ``Runtime.request``)."""

    ref: int


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    """A snapshot of one node's runtime counters."""

    processes: int
    local_messages: int
    remote_messages: int
    dropped_messages: int
    calls: int
    crashes: int
    max_loop_lag: float
    last_loop_lag: float
    #: messages from other nodes this node could not decode (a user type it does not
    #: know): calls answered with ``UndecodableMessage``, casts and sends dropped
    undecodable_received: int = 0
    #: messages of this node that another node reported it could not decode
    undecodable_sent: int = 0


#: Call deadlines are rounded up to the next 1/TIMEOUT_SLOTS s, with one loop timer per
#: slot rather than one per call (under uvloop a timer costs more than the rest of a local
#: call). A call times out at most 1/TIMEOUT_SLOTS s late, never early.
TIMEOUT_SLOTS = 100

#: A drain whose mailbox runs empty lingers, parked, for LINGER to 2 * LINGER s before
#: its task ends, so a process that gets a message every few ms does not pay for a new
#: task each time. At most PARK_LIMIT drains linger at once (about 1.5 KB each).
LINGER = 0.5
PARK_LIMIT = 4096


def _expire(fut: asyncio.Future[Any], dest: Pid, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(CallTimeout(f"no reply from {dest!r} within {timeout} s"))


def _checked(timeout: float | None) -> float | None:
    """A call's ``timeout``, infinity as None.

    Raises:
        ValueError: it is negative or NaN.
    """
    if timeout is not None and not 0 <= timeout < math.inf:
        if timeout != math.inf:
            raise ValueError(f"call timeout must be >= 0 seconds or None, not {timeout!r}")
        return None
    return timeout


def _relay(caller: Caller, fut: asyncio.Future[Any]) -> None:
    """Answer ``caller`` with the outcome of a call forwarded on its behalf."""
    if fut.cancelled():
        caller.fail(NOCONNECTION)
        return
    exc = fut.exception()
    if exc is None:
        caller.reply(fut.result())
    elif isinstance(exc, UndecodableMessage):
        caller._fail(exc)
    else:
        caller.fail(exc.reason if isinstance(exc, ProcessExited) else repr(exc))


_TAGS: dict[type, int] = {cls: cls.__struct_config__.tag for cls in (Send, Cast, Forwarded)}  # type: ignore[misc]
_KINDS = {_TAGS[Send]: "send", _TAGS[Cast]: "cast", _TAGS[Forwarded]: "forwarded message"}


def _undecodable_error(node: str, payload: Any) -> UndecodableMessage:
    """The ``UndecodableMessage`` a ``REPLY_UNDECODABLE`` payload describes."""
    if isinstance(payload, list) and len(payload) == 3:
        where, type_name, detail = payload
        if isinstance(where, str) and isinstance(detail, str) and (type_name is None or isinstance(type_name, str)):
            return UndecodableMessage(where, type_name, detail)
    return UndecodableMessage(node, None, repr(payload))


def _wire_reason(reason: Any) -> Any:
    try:
        return to_wire(reason)
    except UnencodableValue:
        return repr(reason)


class Runtime:
    """Hosts the processes of one node. Owned by the node; used on its event loop only."""

    def __init__(
        self,
        node_name: str,
        incarnation: int,
        owner: RuntimeOwner,
        loop: asyncio.AbstractEventLoop,
        spawn_task: Callable[[Coroutine[Any, Any, Any]], Any],
        remote: RemoteRouter,
        *,
        block_warning: float = 0.25,
    ) -> None:
        self.node_name = node_name
        self.incarnation = incarnation
        self.owner = owner
        self.loop = loop
        self._spawn_task = spawn_task
        self.remote = remote
        self.block_warning = block_warning
        self._procs: dict[int, Process] = {}
        self._next_id = 0
        self._call_seq = 0
        self._ref_seq = 0
        self.closing = False
        # remote calls waiting for a reply, by the callee's node
        self._calls_by_node: dict[str, dict[int, asyncio.Future[Any]]] = {}
        # monitors set by local processes on remote pids: node -> ref -> watcher
        self._monitoring: dict[str, dict[Ref, Process]] = {}
        # monitors set by remote processes on local pids: node -> ref -> target
        self._monitored: dict[str, dict[Ref, Process]] = {}
        self.exit_listeners: list[Callable[[Pid, Any], None]] = []
        # local ids of handed-off processes -> their successors (for stragglers), each
        # dropped after its ttl (one Expiry per ttl: a handoff wave retires thousands)
        self.forwarding: dict[int, Pid] = {}
        self._forward_expiry: dict[float, Expiry] = {}
        # calls waiting for a reply, by deadline slot (see TIMEOUT_SLOTS)
        self._deadlines: dict[int, dict[asyncio.Future[Any], tuple[Pid, float]]] = {}
        # processes whose drain parked since the last sweep, and before it (see LINGER)
        self._parked_new: dict[int, Process] = {}
        self._parked_old: dict[int, Process] = {}
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._ratelog = RateLimitedLog(log, f"{node_name}: ")
        self._local_messages = 0
        self._remote_messages = 0
        self._dropped = 0
        self._calls = 0
        self._crashes = 0
        self._undecodable_received = 0
        self._undecodable_sent = 0
        self.max_loop_lag = 0.0
        self.last_loop_lag = 0.0

    # --- lookups --------------------------------------------------------------

    def local(self, pid: Pid) -> Process | None:
        """The live local process ``pid`` names, or None."""
        if pid.node != self.node_name or pid.incarnation != self.incarnation:
            return None
        proc = self._procs.get(pid.id)
        return proc if proc is not None and proc.alive else None

    def processes(self, include_system: bool = False) -> list[Process]:
        """The live local processes (the node's own system processes only if asked)."""
        if include_system:
            return list(self._procs.values())
        return [p for p in self._procs.values() if not p.system]

    def make_ref(self) -> Ref:
        self._ref_seq += 1
        return Ref(self.node_name, self.incarnation, self._ref_seq)

    # --- starting and stopping --------------------------------------------------

    async def spawn(self, cls: type[Process], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Pid:
        """Create a process of ``cls``, run its ``init`` inside it, return its pid."""
        if self.closing:
            raise RuntimeError(f"node {self.node_name} is shutting down")
        proc = cls()
        self._next_id += 1
        pid = Pid(self.node_name, self.incarnation, self._next_id)
        proc._setup(self, pid)
        self._procs[pid.id] = proc
        fut: asyncio.Future[Pid] = self.loop.create_future()
        proc._enqueue((INIT, (args, kwargs, fut), None))
        return await fut

    def _start_drain(self, proc: Process) -> None:
        self._spawn_task(proc._drain())

    def _park(self, proc: Process) -> asyncio.Future[None] | None:
        """A future for ``proc``'s drain to linger on (``_enqueue`` resolves it), or None:
        end the drain now (the node is closing, or PARK_LIMIT drains linger already)."""
        new = self._parked_new
        if self.closing or len(new) >= PARK_LIMIT:
            return None
        parked = proc._parked = self.loop.create_future()
        new[proc._pid.id] = proc
        if self._sweep_handle is None:
            self._sweep_handle = self.loop.call_later(LINGER, self._sweep)
        return parked

    def _sweep(self) -> None:
        """End the drains that parked before the last sweep and have not been woken since."""
        new, old = self._parked_new, self._parked_old
        for pid_id, proc in old.items():
            parked = proc._parked
            if parked is not None and pid_id not in new:
                proc._parked = None
                if not parked.done():
                    parked.set_result(None)
        self._parked_old, self._parked_new = new, {}
        self._sweep_handle = self.loop.call_later(LINGER, self._sweep) if new else None

    def stop(self, pid: Pid, reason: Any = "normal") -> asyncio.Future[Any]:
        """Ask a local process to stop after the messages already in its mailbox.

        Returns a future with its exit reason ("noproc" at once if it did not exist).
        """
        fut: asyncio.Future[Any] = self.loop.create_future()
        proc = self.local(pid)
        if proc is None:
            fut.set_result(NOPROC)
            return fut
        if proc._exit_waiters is None:
            proc._exit_waiters = []
        proc._exit_waiters.append(fut)
        proc._enqueue((STOP, reason, None))
        return fut

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every process with reason "shutdown"; force the rest after ``timeout``."""
        self.closing = True
        waiters = [self.stop(p.pid, SHUTDOWN) for p in list(self._procs.values())]
        if waiters:
            await asyncio.wait(waiters, timeout=timeout)
        for proc in list(self._procs.values()):
            log.warning("%s: process %r did not stop within %.1f s; killed", self.node_name, proc, timeout)
            proc.alive = False
            self._cleanup(proc, "killed")

    async def _terminate(self, proc: Process, reason: Any) -> None:
        proc.alive = False
        if not isinstance(reason, str):
            self._crashes += 1
        try:
            await proc.terminate(reason)
        except Exception as exc:
            log.error("%s: terminate() of %r raised", self.node_name, proc, exc_info=exc)
        self._cleanup(proc, reason)

    def _cleanup(self, proc: Process, reason: Any) -> None:
        pid = proc.pid
        if self._procs.get(pid.id) is proc:
            del self._procs[pid.id]
        mb = proc._mailbox
        while mb:
            kind, a, b = mb.popleft()
            if kind == CALL:
                b.fail(reason)
            elif kind == INIT and not a[2].done():
                a[2].set_exception(ProcessExited(reason))
            elif kind == SYSTEM and b is not None and not b.done():
                b.set_exception(ProcessExited(reason))
        if proc._deferred:
            for caller in proc._deferred:
                caller.fail(reason)
            proc._deferred = None
        if proc._watchers:
            for ref, watcher in proc._watchers.items():
                self._notify_down(ref, watcher, pid, reason)
            proc._watchers = None
        if proc._watching:
            for ref, target in proc._watching.items():
                self._drop_monitor(ref, target)
            proc._watching = None
        if proc._exit_waiters:
            for fut in proc._exit_waiters:
                if not fut.done():
                    fut.set_result(reason)
            proc._exit_waiters = None
        for listener in self.exit_listeners:
            listener(pid, reason)

    # --- messages ---------------------------------------------------------------

    def send(self, dest: Pid, message: Any) -> None:
        """Deliver ``message`` to ``dest``'s ``handle_info``; fire and forget."""
        if dest.node == self.node_name:
            self._local_messages += 1
            self._deliver(self.node_name, dest, (INFO, message, None))
        else:
            self._post(dest.node, Send(dest, to_wire(message)))

    def cast(self, dest: Pid, message: Any) -> None:
        """Deliver ``message`` to ``dest``'s ``handle_cast``; fire and forget."""
        if dest.node == self.node_name:
            self._local_messages += 1
            self._deliver(self.node_name, dest, (CAST, message, None))
        else:
            self._post(dest.node, Cast(dest, to_wire(message)))

    def _post(self, node: str, message: Any) -> None:
        self._remote_messages += 1
        congested = self.remote.post(node, message)
        if congested is not None:
            me = CURRENT_PROCESS.get()
            if me is not None:
                me._blocked = congested

    async def call(self, dest: Pid, message: Any, timeout: float | None = 5.0) -> Any:
        """Send ``message`` to ``dest``'s ``handle_call`` and wait for the reply.

        ``timeout`` is in seconds; None (or infinity) waits without limit.

        Raises:
            CallTimeout: no reply within ``timeout`` seconds.
            ProcessExited: the callee did not exist, exited before replying, or its node
                was lost (reason "noproc", its exit reason, or "noconnection").
            UndecodableMessage: the callee's node could not decode the message, or this
                node could not decode the reply (a type registered on one side only).
            RuntimeError: a process called itself (that would deadlock).
            ValueError: ``timeout`` is negative or NaN.
        """
        if timeout is not None and not 0 <= timeout < math.inf:  # the check inline: a hot path
            timeout = _checked(timeout)
        me = CURRENT_PROCESS.get()
        sender = me._pid if me is not None else None
        if dest.node != self.node_name:
            # ``request``'s body, inline: one coroutine less per remote call (0.3 µs of CPU
            # per call on the caller's node, 6-8 % of calls/s with 64 callers).
            request = CallRequest(0, dest, sender, to_wire(message))
            fut, calls = self._post_request(dest, request)
            slot = self._arm_deadline(fut, dest, timeout) if timeout is not None else None
            try:
                return await fut
            finally:
                if slot is not None:
                    del slot[fut]
                calls.pop(request.ref, None)
        if sender == dest:
            raise RuntimeError(f"{dest!r} called itself; that would deadlock")
        self._calls += 1
        fut = self.loop.create_future()
        self._deliver(self.node_name, dest, (CALL, message, Caller(self, sender, fut)))
        if timeout is None:
            return await fut
        waiting = self._arm_deadline(fut, dest, timeout)
        try:
            return await fut
        finally:
            del waiting[fut]

    async def request(self, dest: Pid, message: Request, timeout: float | None) -> Any:
        """Send ``message`` to ``dest``'s node under a fresh ``ref`` (set here) and wait,
        as a remote call does, for its answer: ``answer(node, ref, value)``, or a
        ``CallReply(ref)``. A call is such a request (a ``CallRequest``); so are the
        registry server's requests.

        ``timeout`` is in seconds (None: no limit); ``dest`` only names the callee in a
        ``CallTimeout``.

        Raises:
            CallTimeout, ProcessExited, UndecodableMessage, ValueError: as ``call``.
            MessageTooLarge: the encoded message exceeds the link's frame limit.
        """
        if timeout is not None and not 0 <= timeout < math.inf:
            timeout = _checked(timeout)
        fut, calls = self._post_request(dest, message)
        slot = self._arm_deadline(fut, dest, timeout) if timeout is not None else None
        try:
            return await fut
        finally:
            if slot is not None:
                del slot[fut]
            calls.pop(message.ref, None)

    def _post_request(self, dest: Pid, message: Request) -> tuple[asyncio.Future[Any], dict[int, asyncio.Future[Any]]]:
        """Give ``message`` a fresh ``ref``, list its future among ``dest.node``'s calls
        and post it; the future and that list (the waiter removes it when done)."""
        self._calls += 1
        self._call_seq += 1
        ref = message.ref = self._call_seq
        fut: asyncio.Future[Any] = self.loop.create_future()
        calls = self._calls_by_node.get(dest.node)
        if calls is None:
            calls = self._calls_by_node[dest.node] = {}
        calls[ref] = fut
        try:
            self._remote_messages += 1
            self.remote.post(dest.node, message)
        except BaseException:
            calls.pop(ref, None)
            raise
        return fut, calls

    def answer(self, node: str, ref: int, value: Any) -> None:
        """``value`` answers the request ``ref`` this node sent ``node`` (see ``request``);
        ignored when that request is over (answered, timed out, or its node lost)."""
        fut = self._take_call(node, ref)
        if fut is not None:
            fut.set_result(value)

    def _take_call(self, node: str, ref: int) -> asyncio.Future[Any] | None:
        """The future of the request ``ref`` to ``node`` if it still waits, no longer listed."""
        calls = self._calls_by_node.get(node)
        fut = calls.pop(ref, None) if calls is not None else None
        return fut if fut is not None and not fut.done() else None

    def _arm_deadline(
        self, fut: asyncio.Future[Any], dest: Pid, timeout: float
    ) -> dict[asyncio.Future[Any], tuple[Pid, float]]:
        """Fail ``fut`` with ``CallTimeout`` unless done within ``timeout`` s; returns the
        calls of its deadline slot, from which the caller removes it when done."""
        slot = math.ceil((self.loop.time() + timeout) * TIMEOUT_SLOTS)
        waiting = self._deadlines.get(slot)
        if waiting is None:
            waiting = self._deadlines[slot] = {}
            self.loop.call_at(slot / TIMEOUT_SLOTS, self._expire_slot, slot)
        waiting[fut] = (dest, timeout)
        return waiting

    def _expire_slot(self, slot: int) -> None:
        waiting = self._deadlines.pop(slot, None)
        if waiting:
            for fut, (dest, timeout) in list(waiting.items()):
                _expire(fut, dest, timeout)

    def _reply_remote(self, node: str | None, ref: int, value: Any) -> None:
        assert node is not None
        self.remote.post(node, CallReply(ref, REPLY_OK, to_wire(value)))

    def _fail_remote(self, node: str | None, ref: int, reason: Any) -> None:
        assert node is not None
        self.remote.post(node, CallReply(ref, REPLY_EXIT, _wire_reason(reason)))

    def _fail_remote_undecodable(self, node: str | None, ref: int, error: UndecodableMessage) -> None:
        """Answer a remote caller with ``error`` (as an exit reason to a version-1 peer)."""
        assert node is not None
        if self.remote.peer_version(node) >= 2:
            self.remote.post(node, CallReply(ref, REPLY_UNDECODABLE, [error.node, error.type_name, error.detail]))
        else:
            self.remote.post(node, CallReply(ref, REPLY_EXIT, str(error)))

    # --- monitors ---------------------------------------------------------------

    def monitor(self, target: Pid) -> Ref:
        """The current process monitors ``target``; a ``Down`` arrives as info when it exits."""
        me = CURRENT_PROCESS.get()
        if me is None:
            raise RuntimeError("monitor() must be called from inside a process")
        ref = self.make_ref()
        if me._watching is None:
            me._watching = {}
        if target.node == self.node_name:
            proc = self.local(target)
            if proc is None:
                me._enqueue((INFO, Down(ref, target, NOPROC), None))
                return ref
            if proc._watchers is None:
                proc._watchers = {}
            proc._watchers[ref] = me.pid
            me._watching[ref] = target
            return ref
        me._watching[ref] = target
        self._monitoring.setdefault(target.node, {})[ref] = me
        self._post(target.node, MonitorRequest(ref, me.pid, target))
        return ref

    def demonitor(self, ref: Ref) -> None:
        """Remove a monitor the current process set; no ``Down`` arrives for it after this."""
        me = CURRENT_PROCESS.get()
        if me is None or not me._watching:
            return
        target = me._watching.pop(ref, None)
        if target is not None:
            self._drop_monitor(ref, target)

    def _drop_monitor(self, ref: Ref, target: Pid) -> None:
        if target.node == self.node_name:
            proc = self._procs.get(target.id)
            if proc is not None and proc._watchers:
                proc._watchers.pop(ref, None)
            return
        outgoing = self._monitoring.get(target.node)
        if outgoing is not None and outgoing.pop(ref, None) is not None:
            self.remote.post(target.node, DemonitorRequest(ref, target))

    def _notify_down(self, ref: Ref, watcher: Pid, target: Pid, reason: Any) -> None:
        if watcher.node == self.node_name:
            proc = self.local(watcher)
            if proc is not None:
                if proc._watching:
                    proc._watching.pop(ref, None)
                proc._enqueue((INFO, Down(ref, target, reason), None))
            return
        incoming = self._monitored.get(watcher.node)
        if incoming is not None:
            incoming.pop(ref, None)
        self.remote.post(watcher.node, DownNotice(ref, watcher, target, _wire_reason(reason)))

    # --- inbound from other nodes (called by the node's dispatcher) ---------------

    def on_send(self, node: str, msg: Send) -> None:
        if msg.to.node == self.node_name:
            self._deliver(node, msg.to, (INFO, msg.payload, None))
        else:
            self._misrouted(node, msg.to)

    def on_cast(self, node: str, msg: Cast) -> None:
        if msg.to.node == self.node_name:
            self._deliver(node, msg.to, (CAST, msg.payload, None))
        else:
            self._misrouted(node, msg.to)

    def _deliver(self, from_node: str, dest: Pid, entry: tuple[int, Any, Any]) -> None:
        """Put ``entry`` in the mailbox of local ``dest`` (through its gate, if it has one)."""
        proc = self._procs.get(dest.id)
        if proc is None or not proc.alive or dest.incarnation != self.incarnation:
            self._redirect(dest, entry)
            return
        gate = proc._gate
        if gate is None:
            proc._enqueue(entry)
        else:
            gate.admit(from_node, entry)

    def _redirect(self, dest: Pid, entry: tuple[int, Any, Any]) -> None:
        """``dest`` is gone: forward to its successor if it was handed off, else drop."""
        successor = self.forwarding.get(dest.id) if dest.incarnation == self.incarnation else None
        if successor is not None:
            self.forward(successor, entry)
        elif entry[0] == CALL:
            entry[2].fail(NOPROC)
        else:
            self._dropped += 1

    def forward(self, successor: Pid, entry: tuple[int, Any, Any]) -> None:
        """Send a mailbox entry on to ``successor`` (a handed-off process's new pid).

        A forwarded call's reply comes back to this node and is relayed to the caller.
        """
        kind, payload, caller = entry
        if successor.node == self.node_name:
            self._deliver(self.node_name, successor, entry)
            return
        ref = 0
        if kind == CALL:
            self._call_seq += 1
            ref = self._call_seq
            fut: asyncio.Future[Any] = self.loop.create_future()
            self._calls_by_node.setdefault(successor.node, {})[ref] = fut
            fut.add_done_callback(functools.partial(_relay, caller))
        elif kind not in (INFO, CAST):
            return
        self.remote.post(successor.node, Forwarded(successor, kind, to_wire(payload), ref))

    def on_forwarded(self, node: str, msg: Forwarded) -> None:
        """A message forwarded by the old host of a handed-off process: it bypasses the
        gate, as everything the gate holds was sent after it."""
        caller = Caller(self, None, None, node, msg.ref) if msg.kind == CALL else None
        entry = (msg.kind, msg.payload, caller)
        proc = self.local(msg.to)
        if proc is None:
            self._redirect(msg.to, entry)
        else:
            proc._enqueue(entry)

    # --- handoff support (driven by the registry) -----------------------------------

    def run_in(self, proc: Process, op: Callable[[Process], Coroutine[Any, Any, T]]) -> asyncio.Future[T]:
        """Run ``op(proc)`` inside the process, in mailbox order; its result in a future.

        An exception from ``op`` goes to the future, not to the process. If the process
        exits first, the future fails with ``ProcessExited``.
        """
        fut: asyncio.Future[T] = self.loop.create_future()

        async def system(p: Process) -> None:
            try:
                result = await op(p)
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
                return
            if not fut.done():
                fut.set_result(result)

        proc._enqueue((SYSTEM, system, fut))
        return fut

    def run_first(self, proc: Process, op: Callable[[Process], Coroutine[Any, Any, T]]) -> asyncio.Future[T]:
        """``run_in``, but ahead of everything already in the mailbox."""
        fut = self.run_in(proc, op)  # appended (and the drain started if idle)...
        mb = proc._mailbox
        assert mb is not None
        mb.appendleft(mb.pop())  # ...then moved to the front
        return fut

    def freeze(self, proc: Process) -> None:
        """Stop ``proc`` after its current message: its mailbox keeps filling, nothing
        more is handled until ``unfreeze`` (or its mailbox is forwarded: a handoff)."""
        proc._frozen = True

    def unfreeze(self, proc: Process) -> None:
        """Resume a frozen process: it handles what queued up meanwhile."""
        proc._frozen = False
        if proc._mailbox and not proc._running and proc.alive:
            proc._running = True
            self._start_drain(proc)

    def forward_mailbox(self, proc: Process, successor: Pid, marker: Callable[[str, int], None] | None = None) -> None:
        """Forward frozen ``proc``'s queued messages to ``successor``, in order; its system
        operations stay queued. Each flush marker parked in the mailbox (``park_marker``)
        goes to ``marker(node, hid)`` in its place in the stream (dropped without one)."""
        mb = proc._mailbox
        if not mb:
            return
        keep: list[tuple[int, Any, Any]] = []
        forward = self.forward
        while mb:
            entry = mb.popleft()
            kind = entry[0]
            if kind == SYSTEM:
                keep.append(entry)
            elif kind == FLUSH:
                if marker is not None:
                    marker(entry[1], entry[2])
            else:
                forward(successor, entry)
        mb.extend(keep)

    def park_marker(self, proc: Process, node: str, hid: int) -> bool:
        """Queue handoff ``hid``'s flush marker from ``node`` behind what frozen ``proc``
        holds (``forward_mailbox`` meets it in its place); False if it has no mailbox."""
        mb = proc._mailbox
        if mb is None:
            return False
        mb.append((FLUSH, node, hid))
        return True

    def gate(self, proc: Process, nodes: set[str]) -> Gate:
        """Hold ``proc``'s direct messages from each of ``nodes`` until the gate releases
        that node (``Gate.release``); messages forwarded to it pass (see ``Gate``)."""
        gate = proc._gate = Gate(proc, nodes)
        return gate

    def gate_of(self, proc: Process) -> Gate | None:
        """``proc``'s gate while it still holds some node's messages, else None."""
        return proc._gate

    def ungate(self, proc: Process) -> None:
        """Drop ``proc``'s gate with what it holds (the process is being stopped)."""
        proc._gate = None

    def retire(self, proc: Process, successor: Pid, ttl: float) -> None:
        """``proc`` was handed off: its pid forwards to ``successor`` for ``ttl`` seconds."""
        pid = proc.pid
        if self._procs.get(pid.id) is proc:
            del self._procs[pid.id]
        self.forwarding[pid.id] = successor
        expiry = self._forward_expiry.get(ttl)
        if expiry is None:
            expiry = self._forward_expiry[ttl] = Expiry(self.loop, ttl)
        expiry.drop_later(self.forwarding, pid.id)

    def _misrouted(self, node: str, pid: Pid) -> None:
        self._dropped += 1
        self._ratelog.warning(
            ("misrouted", node), "peer %s sent a message for %r, which is not on this node; dropped", node, pid
        )

    def on_call_request(self, node: str, msg: CallRequest) -> None:
        if msg.to.node != self.node_name:
            self.remote.post(node, CallReply(msg.ref, REPLY_EXIT, NOPROC))
            return
        self._deliver(node, msg.to, (CALL, msg.payload, Caller(self, msg.sender, None, node, msg.ref)))

    def on_call_reply(self, node: str, msg: CallReply) -> None:
        calls = self._calls_by_node.get(node)  # _take_call, inline: a hot path
        fut = calls.pop(msg.ref, None) if calls is not None else None
        if fut is None or fut.done():
            return  # the call timed out already
        status = msg.status
        if status == REPLY_OK:
            fut.set_result(msg.payload)
        elif status == REPLY_UNDECODABLE:
            self._undecodable_sent += 1
            fut.set_exception(_undecodable_error(node, msg.payload))
        else:
            fut.set_exception(ProcessExited(msg.payload))

    def on_monitor_request(self, node: str, msg: MonitorRequest) -> None:
        proc = self.local(msg.target)
        if proc is None:
            self.remote.post(node, DownNotice(msg.ref, msg.watcher, msg.target, NOPROC))
            return
        if proc._watchers is None:
            proc._watchers = {}
        proc._watchers[msg.ref] = msg.watcher
        self._monitored.setdefault(node, {})[msg.ref] = proc

    def on_demonitor_request(self, node: str, msg: DemonitorRequest) -> None:
        incoming = self._monitored.get(node)
        proc = incoming.pop(msg.ref, None) if incoming is not None else None
        if proc is not None and proc._watchers:
            proc._watchers.pop(msg.ref, None)

    def on_down_notice(self, node: str, msg: DownNotice) -> None:
        outgoing = self._monitoring.get(node)
        if outgoing is None or outgoing.pop(msg.ref, None) is None:
            return  # demonitored meanwhile
        self._notify_down(msg.ref, msg.watcher, msg.target, msg.reason)

    # --- messages from other nodes this node could not decode ----------------------------

    def on_undecoded(self, node: str, undecoded: Undecoded) -> None:
        """``node`` sent a message whose user payload this node cannot decode (a user
        type it does not know): answer a call with ``UndecodableMessage`` at once, fail a
        call waiting for this reply, drop anything else; count it, log it (rate-limited)
        and tell the sender of a dropped send or cast (``DropNotice``); refuse a handoff
        whose name, arguments or state it cannot decode (``HandoffRefused``)."""
        self._undecodable_received += 1
        msg = undecoded.message
        type_name, detail = undecoded.type_name, undecoded.detail
        kind = type(msg).__name__
        to: Pid | None = getattr(msg, "to", None)
        outcome = "dropped"
        if isinstance(msg, CallRequest | RegistryRequest) or (isinstance(msg, Forwarded) and msg.kind == CALL):
            # A registry request is answered as a call is: its caller waits in the same table.
            self._fail_remote_undecodable(node, msg.ref, UndecodableMessage(self.node_name, type_name, detail))
            outcome = "the caller gets UndecodableMessage"
        elif isinstance(msg, CallReply):
            fut = self._take_call(node, msg.ref)
            if fut is not None:
                fut.set_exception(UndecodableMessage(self.node_name, type_name, detail, "reply"))
            outcome = "the caller here gets UndecodableMessage"
        elif isinstance(msg, DownNotice):
            # The monitor must still fire: with the reason as text.
            self.on_down_notice(
                node, DownNotice(msg.ref, msg.watcher, msg.target, f"undecodable exit reason: {detail}")
            )
            outcome = "the monitor fires with the reason as text"
        elif isinstance(msg, HandoffRequest):
            # A handoff is a request too: refused at once, the old host keeps the process.
            self.remote.post(node, HandoffRefused(msg.hid, f"{self.node_name} cannot decode the handoff: {detail}"))
            outcome = "the handoff is refused"
        elif isinstance(msg, Send | Cast | Forwarded):
            if self.remote.peer_version(node) >= 2:
                self.remote.post(node, DropNotice(_TAGS[type(msg)], to, type_name, detail))
            outcome = "dropped; the sender is told"
        self._ratelog.warning(
            ("undecodable", node, type_name),
            "could not decode a %s from %s%s: %s; %s (every node must register the type with "
            "distable.register_type, with the same fields)",
            kind,
            node,
            f" to {to!r}" if to is not None else "",
            detail,
            outcome,
        )

    def on_drop_notice(self, node: str, msg: DropNotice) -> None:
        """``node`` could not decode a message this node sent it, and dropped it."""
        self._undecodable_sent += 1
        self._ratelog.warning(
            ("dropped by peer", node, msg.type_name),
            "%s could not decode a %s this node sent%s and dropped it: %s (every node must register "
            "the type with distable.register_type, with the same fields)",
            node,
            _KINDS.get(msg.tag, f"message (tag {msg.tag})"),
            f" to {msg.to!r}" if msg.to is not None else "",
            msg.detail,
        )

    def node_lost(self, node: str) -> None:
        """The link to ``node`` is gone: fail its calls, fire its monitors, forget its watchers."""
        calls = self._calls_by_node.pop(node, None)
        if calls:
            for fut in calls.values():
                if not fut.done():
                    fut.set_exception(ProcessExited(NOCONNECTION))
        outgoing = self._monitoring.pop(node, None)
        if outgoing:
            for ref, watcher in outgoing.items():
                if watcher.alive and watcher._watching:
                    target = watcher._watching.pop(ref, None)
                    if target is not None:
                        watcher._enqueue((INFO, Down(ref, target, NOCONNECTION), None))
        incoming = self._monitored.pop(node, None)
        if incoming:
            for ref, proc in incoming.items():
                if proc._watchers:
                    proc._watchers.pop(ref, None)

    # --- health -----------------------------------------------------------------

    def _report_block(self, proc: Process, elapsed: float) -> None:
        self._ratelog.warning(
            ("block", type(proc)),
            "process %r blocked the event loop for %.3f s; handlers must not block "
            "(use distable.run_blocking for blocking work)",
            proc,
            elapsed,
        )

    async def watch_loop_lag(self, interval: float = 0.25) -> None:
        """Measure event-loop lag forever (until cancelled); log stalls past ``block_warning``."""
        # time.monotonic, not loop.time(): uvloop's clock counts whole milliseconds, which
        # made every lag a multiple of 1 ms.
        clock = time.monotonic
        while True:
            start = clock()
            await asyncio.sleep(interval)
            lag = max(0.0, clock() - start - interval)
            self.last_loop_lag = lag
            self.max_loop_lag = max(self.max_loop_lag, lag)
            if lag > self.block_warning:
                self._ratelog.warning("lag", "event loop stalled for %.3f s", lag)

    def statistics(self) -> RuntimeStatistics:
        return RuntimeStatistics(
            processes=len(self._procs) - sum(1 for p in self._procs.values() if p.system),
            local_messages=self._local_messages,
            remote_messages=self._remote_messages,
            dropped_messages=self._dropped,
            calls=self._calls,
            crashes=self._crashes,
            max_loop_lag=self.max_loop_lag,
            last_loop_lag=self.last_loop_lag,
            undecodable_received=self._undecodable_received,
            undecodable_sent=self._undecodable_sent,
        )


async def run_blocking(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking ``func(*args, **kwargs)`` in the default executor and await its result.

    Use it from a handler for file I/O, CPU-heavy work or blocking libraries, so the
    event loop (and every other process and the node's heartbeats) keeps running.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))
