"""Processes: the ``Process`` base class, callers, exit reasons and handoff answers.

Theory of operation: a process is an object with a mailbox (a deque, made by the first
message after the process was idle, dropped when its drain ends with the deque empty)
and no task of its own while idle. The first message that lands in an empty mailbox
starts a drain task, through the runtime's ``spawn_task`` (the node's
task set, which the node cancels and awaits when it stops; a set, not a TaskGroup, so a
failing drain takes no sibling with it); the task handles messages in order until the
mailbox is empty, lingers parked on a future for up to about a second
(``Runtime._park``: a process that just got a message is likely to get another soon,
and waking a parked task costs far less than starting one), and then ends. Idle
processes thus cost only their object, with no deque (an empty one is 760 B; see
bench/runtime.py for bytes per idle process), and a message to a busy process costs
one deque append.

Messages from another node to an idle process (no drain, or one parked) are handled at
once instead, when the batch that brought them has been dispatched, in the loop turn it
arrived in (``Runtime._run_now``): each handler runs as a drain step would, as the
current task in the drain's task (the parked one, or a spare task), and one that
suspends is taken over by that task, which goes on as the process's drain. So a reply
leaves in the turn its call came in, and a handler that does not suspend needs no task.

Invariants:
    * At most one drain task per process exists at any time (``_running``), so
      handlers of one process never run concurrently and see messages in the order
      they were enqueued. ``_run_now`` counts as the drain: it runs only while the
      process has no drain or its drain is parked, holds ``_running`` meanwhile, and
      hands anything unfinished to that one task.
    * A drain handles at most ``BATCH`` messages before yielding to the event loop, so
      one busy process cannot starve the others (Python's stand-in for the BEAM's
      reductions).
    * ``_mailbox`` is a deque while a drain runs or an entry is queued (a frozen
      process's too); only a drain ending with it empty drops it.
    * After a process has exited it accepts no message; every call still in its
      mailbox or deferred with ``NOREPLY`` fails with ``ProcessExited(reason)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Coroutine, Generator
from contextvars import Context
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, overload

from .._errors import ProcessExited, UndecodableMessage
from ..wire import SHUTDOWN, Crash, Pid, Ref
from ._context import CURRENT_PROCESS, CURRENT_RUNTIME, current_runtime

if TYPE_CHECKING:
    from ._runtime import Runtime

log = logging.getLogger("distable.runtime")

# Mailbox entry kinds: entries are (kind, a, b) tuples.
INFO: Final = 0
CAST: Final = 1
CALL: Final = 2
STOP: Final = 3
INIT: Final = 4
SYSTEM: Final = 5  # (SYSTEM, async callable, future or None): runtime work run in the process
FLUSH: Final = 6  # (FLUSH, node, handoff id): a handoff flush marker parked in a frozen mailbox
ADOPTED: Final = 7  # (ADOPTED, Adopted, None): a handler Runtime._run_now started that suspended

BATCH: Final = 64

#: Exit reason type: "normal", "shutdown", "noproc", "noconnection", "killed" or a Crash.
Reason = str | Crash


class _NoReply:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOREPLY"


#: Return this from ``handle_call`` to reply later with ``caller.reply(value)``.
NOREPLY: Final = _NoReply()

#: ``Process.start``'s default for ``name``: start unregistered.
_UNNAMED: Final = object()


@dataclass(frozen=True, slots=True)
class Down:
    """Info message: the monitored ``pid`` exited with ``reason``.

    ``reason`` is ``"normal"``, ``"shutdown"``, ``"killed"``, a ``Crash``, ``"noproc"``
    (it did not exist when the monitor was set) or ``"noconnection"`` (its node was
    lost; the process itself may still be running).
    """

    ref: Ref
    pid: Pid
    reason: Any


@dataclass(frozen=True, slots=True)
class Restart:
    """``begin_handoff`` answer: restart the process fresh on its new owner."""


@dataclass(frozen=True, slots=True)
class Resume:
    """``begin_handoff`` answer: start on the new owner and pass it ``state``."""

    state: Any


@dataclass(frozen=True, slots=True)
class Ignore:
    """``begin_handoff`` answer: stay on this node."""


HandoffAnswer = Restart | Resume | Ignore


class Caller:
    """Who is waiting for a ``handle_call`` reply.

    ``pid`` is the calling process, or None when the call came from plain code (a
    script, a test) rather than from inside a process.
    """

    __slots__ = ("_future", "_node", "_ref", "_runtime", "pid", "replied")

    def __init__(
        self,
        runtime: Runtime,
        pid: Pid | None,
        future: asyncio.Future[Any] | None,
        node: str | None = None,
        ref: int = 0,
    ) -> None:
        self._runtime = runtime
        self.pid = pid
        self._future = future
        self._node = node
        self._ref = ref
        self.replied = False

    @property
    def node(self) -> str | None:
        """The node the call came from: None for a call from this node."""
        return self._node

    def reply(self, value: Any) -> None:
        """Send the reply (once; later calls are ignored).

        Raises:
            UnencodableValue: the caller is remote and ``value`` cannot cross the wire.
        """
        if self.replied:
            return
        self.replied = True
        fut = self._future
        if fut is not None:
            if not fut.done():
                fut.set_result(value)
        else:
            self._runtime._reply_remote(self._node, self._ref, value)

    def fail(self, reason: Any) -> None:
        """Tell the caller that the callee exited with ``reason``."""
        self._fail(ProcessExited(reason), reason)

    def _fail(self, error: Exception, reason: Any = None) -> None:
        """End the call with ``error`` (``ProcessExited(reason)``, or an ``UndecodableMessage``)."""
        if self.replied:
            return
        self.replied = True
        fut = self._future
        if fut is not None:
            if not fut.done():
                fut.set_exception(error)
        elif isinstance(error, UndecodableMessage):
            self._runtime._fail_remote_undecodable(self._node, self._ref, error)
        else:
            self._runtime._fail_remote(self._node, self._ref, reason)

    def __repr__(self) -> str:
        return f"Caller({self.pid!r})"


class Process:
    """A lightweight actor: subclass it and override the handlers you need.

    Every handler runs on the node's event loop, inside the process's own drain task,
    one message at a time. A handler must not block the loop (use
    ``distable.run_blocking`` for blocking work); it may await, and while it awaits,
    other processes run but this one receives nothing else.

    Start one with ``await MyProcess.start(*args, **kwargs)``; ``init`` receives the
    arguments. Do not override ``__init__``.
    """

    __slots__ = (
        "__dict__",
        "_blocked",
        "_deferred",
        "_exit_waiters",
        "_frozen",
        "_gate",
        "_mailbox",
        "_parked",
        "_pid",
        "_running",
        "_runtime",
        "_stop_reason",
        "_task",
        "_watchers",
        "_watching",
        "alive",
    )

    _runtime: Runtime
    _pid: Pid
    _mailbox: deque[tuple[int, Any, Any]] | None  # None while idle (no drain, nothing queued)
    _running: bool
    _stop_reason: Any
    _watchers: dict[Ref, Pid] | None  # monitors set on this process: ref -> watcher
    _watching: dict[Ref, Pid] | None  # monitors this process set: ref -> target
    _deferred: set[Caller] | None  # callers answered NOREPLY and not replied yet
    _blocked: asyncio.Future[None] | None  # a congested link to wait for before the next message
    _exit_waiters: list[asyncio.Future[Any]] | None
    _parked: asyncio.Future[bool | None] | None  # the drain lingers on it while the mailbox is empty
    _task: asyncio.Task[Any] | None  # the drain's task while there is one
    _frozen: bool  # handing off: the mailbox keeps filling but is not drained
    _gate: Gate | None  # just handed in: holds direct messages per node until flushed
    alive: bool

    #: True for distable's own processes (the registry server): not listed as the user's.
    system: ClassVar[bool] = False

    # --- handlers -------------------------------------------------------------

    async def init(self, *args: Any, **kwargs: Any) -> None:
        """Called first, with the arguments given to ``start``. Raising makes ``start`` raise."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        """Answer a ``call``: return the reply, or ``NOREPLY`` and use ``caller.reply`` later.

        The default crashes the process, as an unexpected call is a bug.
        """
        raise NotImplementedError(f"{type(self).__qualname__} does not handle calls ({message!r})")

    async def handle_cast(self, message: Any) -> None:
        """Handle a ``cast``. The default crashes the process."""
        raise NotImplementedError(f"{type(self).__qualname__} does not handle casts ({message!r})")

    async def handle_info(self, message: Any) -> None:
        """Handle a plain ``send``, a ``Down`` or a timer message. The default ignores it."""
        log.debug("%r ignored info message %r", self, message)

    async def terminate(self, reason: Any) -> None:
        """Called once when the process stops, with its exit reason (see ``Down``)."""

    async def begin_handoff(self) -> HandoffAnswer:
        """The registry moves this process to another node: Restart(), Resume(state) or Ignore()."""
        return Restart()

    async def end_handoff(self, state: Any) -> None:
        """On the new node, before any other message: the state from ``Resume(state)``."""

    async def resolve_conflict(self, state: Any) -> None:
        """After a netsplit heals, this copy survives and gets the losing copy's state."""

    async def die(self) -> None:
        """The registry asks this process to stop. The default stops with reason "shutdown"."""
        self.stop(SHUTDOWN)

    # --- public helpers -------------------------------------------------------

    @classmethod
    async def start(cls, *args: Any, name: Any = _UNNAMED, **kwargs: Any) -> Pid:
        """Start a process of this class on the current node and return its pid.

        With ``name``, register it instead: the same as ``register(name, cls, *args,
        **kwargs)`` from the current node, so it starts on the name's owner (which may
        be another node) and is moved and restarted by the registry.

        Raises:
            RuntimeError: there is no current node.
            Exception: whatever ``init`` raised (with ``name``: the errors of ``register``).
        """
        runtime = current_runtime()
        if name is not _UNNAMED:
            # The runtime cannot import the node layer above it; its owner is the Node.
            return await runtime.owner.register(name, cls, *args, **kwargs)
        return await runtime.spawn(cls, args, kwargs)

    @overload
    def checkpoint(self, state: Any, wait: Literal[True] = True, timeout: float = 10.0) -> Awaitable[None]: ...
    @overload
    def checkpoint(self, state: Any, wait: Literal[False], timeout: float = 10.0) -> None: ...
    def checkpoint(self, state: Any, wait: bool = True, timeout: float = 10.0) -> Awaitable[None] | None:
        """Keep ``state`` as this process's latest checkpoint, on its name's standby nodes
        (``register(..., replicas=)``, 1 by default): if this node dies (or the process
        crashes) the restarted process gets it in ``end_handoff(state)`` before any other
        message.

        ``await self.checkpoint(state)`` returns once every standby holds it. With
        ``wait=False`` it returns at once (do not await it): the latest state is sent at
        most every ``RegistryConfig.checkpoint_write_behind`` (5 ms), so a crash may lose
        the updates of that interval and a round trip.

        Only for a process registered through a factory (``register(name, factory)``).

        Raises (before anything is sent):
            DistableError: this process holds no name registered through a factory.
            UnencodableValue: ``state`` cannot cross the wire (see ``register_type``).
            CheckpointTooLarge: its encoding is larger than
                ``RegistryConfig.checkpoint_max_bytes`` (1 MiB).
        The awaitable raises ``CallTimeout`` if the standbys did not confirm within
        ``timeout`` seconds (the write may still complete), and ``DistableError`` if the
        process stopped holding the name first (it moved, exited, was unregistered).
        """
        return self._runtime.owner.checkpoint(self._pid, state, wait, timeout)

    @property
    def pid(self) -> Pid:
        return self._pid

    @property
    def node(self) -> Any:
        """The ``Node`` this process runs on."""
        return self._runtime.owner

    def stop(self, reason: Any = "normal") -> None:
        """Stop after the current handler returns (or soon, if called from elsewhere)."""
        if self._running and CURRENT_PROCESS.get() is self:
            if self._stop_reason is None:
                self._stop_reason = reason
        elif self.alive:
            self._enqueue((STOP, reason, None))

    def send_after(self, delay: float, message: Any) -> asyncio.TimerHandle:
        """Deliver ``message`` to this process's ``handle_info`` after ``delay`` seconds.

        Returns a handle whose ``cancel()`` stops it. Dropped if the process has exited.
        """
        return self._runtime.loop.call_later(delay, self._enqueue_if_alive, (INFO, message, None))

    def __repr__(self) -> str:
        pid = getattr(self, "_pid", None)
        return f"<{type(self).__qualname__} {pid!r}>"

    # --- runtime internals ----------------------------------------------------

    def _setup(self, runtime: Runtime, pid: Pid) -> None:
        self._runtime = runtime
        self._pid = pid
        self._mailbox = None
        self._running = False
        self._stop_reason = None
        self._watchers = None
        self._watching = None
        self._deferred = None
        self._blocked = None
        self._exit_waiters = None
        self._parked = None
        self._task = None
        self._frozen = False
        self._gate = None
        self.alive = True

    def _enqueue_if_alive(self, entry: tuple[int, Any, Any]) -> None:
        if self.alive:
            self._enqueue(entry)

    def _enqueue(self, entry: tuple[int, Any, Any]) -> None:
        mb = self._mailbox
        if mb is None:
            mb = self._mailbox = deque()
        mb.append(entry)
        if not self._running and not self._frozen:
            self._running = True
            self._runtime._start_drain(self)
        elif self._parked is not None and not self._frozen:
            parked, self._parked = self._parked, None
            parked.set_result(None)

    async def _end(self) -> None:
        """The drain of a process whose handler, run at once by ``Runtime._run_now``, stopped
        or crashed it: it only terminates (in the process, as at a drain's end)."""
        CURRENT_PROCESS.set(self)
        CURRENT_RUNTIME.set(self._runtime)
        self._running = False
        self._task = None
        await self._runtime._terminate(self, self._stop_reason)

    async def _drain(self) -> None:
        # (A handler that holds the loop too long is reported by the block detector,
        # runtime/_watchdog.py, while it holds it.)
        CURRENT_PROCESS.set(self)
        runtime = self._runtime
        CURRENT_RUNTIME.set(runtime)
        mb = self._mailbox
        assert mb is not None
        caller: Caller | None = None
        count = 0
        init_failed = False
        try:
            if self._blocked is not None and mb and mb[0][0] != ADOPTED:  # left by a handler run at once
                blocked, self._blocked = self._blocked, None
                await blocked
            while mb:
                kind, a, b = mb.popleft()
                if kind == INFO:
                    await self.handle_info(a)
                elif kind == CAST:
                    await self.handle_cast(a)
                elif kind == CALL:
                    caller = b
                    result = await self.handle_call(a, b)
                    if result is not NOREPLY:
                        b.reply(result)
                    elif not b.replied:
                        if self._deferred is None:
                            self._deferred = set()
                        self._deferred.add(b)
                    caller = None
                elif kind == SYSTEM:
                    await a(self)
                elif kind == STOP:
                    if self._stop_reason is None:
                        self._stop_reason = a
                elif kind == INIT:
                    args, kwargs, fut = a
                    try:
                        await self.init(*args, **kwargs)
                    except BaseException as exc:
                        if not fut.done():
                            fut.set_exception(exc)
                        self._stop_reason = Crash.from_exception(exc)
                        caller = None
                        init_failed = True
                        break
                    if not fut.done():
                        fut.set_result(self._pid)
                elif kind == ADOPTED:  # a handler Runtime._run_now started, to go on with
                    kind, caller, work = a
                    result = await work
                    if kind == CALL:
                        if result is not NOREPLY:
                            caller.reply(result)
                        elif not caller.replied:
                            if self._deferred is None:
                                self._deferred = set()
                            self._deferred.add(caller)
                    caller = None
                if self._stop_reason is not None or self._frozen:
                    break
                if self._blocked is not None:
                    blocked, self._blocked = self._blocked, None
                    await blocked
                count += 1
                if count >= BATCH:
                    count = 0
                    await asyncio.sleep(0)
                if not mb and kind != INIT:  # linger (see the module docstring)
                    parked = runtime._park(self)
                    if parked is not None:
                        # Woken by _enqueue, by the sweep with the mailbox empty, or (True)
                        # by Runtime._run_now, after the handlers it ran at once: to go on
                        # with one that suspended (first in the mailbox), else to see to
                        # what they left (a stop, a freeze, a congested link).
                        try:
                            after_run_now = await parked
                        except asyncio.CancelledError as exc:
                            if not (mb and mb[0][0] == ADOPTED):
                                raise
                            mb[0][1][2].cancel(exc)  # woken, then cancelled: the handler's
                            after_run_now = True
                        if after_run_now:
                            if mb and mb[0][0] == ADOPTED:
                                continue
                            if self._stop_reason is not None or self._frozen:
                                break
                            if self._blocked is not None:
                                blocked, self._blocked = self._blocked, None
                                await blocked
                        elif self._frozen:
                            break
        except asyncio.CancelledError:
            if not self.alive:
                # Killed by Runtime.shutdown: already cleaned up and reported "killed".
                # Running terminate (which may hang) or the cleanup again is wrong now.
                raise
            self._stop_reason = self._stop_reason or "killed"
        except Exception as exc:  # a crash stays inside its process
            crash = Crash.from_exception(exc)
            self._stop_reason = crash
            log.error(
                "%s: process %r crashed in its handler",
                runtime.node_name,
                self,
                exc_info=exc,
            )
            if caller is not None:
                caller.fail(crash)
        finally:
            self._running = False
            self._parked = None
            self._task = None
            if not mb:  # idle now: keep no deque (the next message makes one)
                self._mailbox = None
        if init_failed:
            # As in Erlang: a process whose init failed never ran, so terminate is not called.
            self.alive = False
            runtime._cleanup(self, self._stop_reason)
        elif self._stop_reason is not None:
            await runtime._terminate(self, self._stop_reason)


class Unfinished:
    """A handler coroutine that ``Runtime._run_now`` started outside any task and that
    suspended, awaited by the drain that takes it over: it goes on from where it stopped,
    each step in the context the handler started in.
    """

    __slots__ = ("_context", "_coro", "_error", "_first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any, context: Context) -> None:
        self._coro = coro
        self._first = first  # what its first step yielded (the future it waits on)
        self._context = context
        self._error: BaseException | None = None

    def cancel(self, error: BaseException) -> None:
        """The task taking it over was cancelled before it went on with it (a timeout or a
        task group of the handler's, in the next turn): deliver it as that task would have,
        by cancelling the future the handler waits on (else throwing it in)."""
        first = self._first
        if not (isinstance(first, asyncio.Future) and first.cancel(*error.args)):
            self._error = error

    def close(self) -> None:
        """Drop it unfinished (``GeneratorExit`` where it waits: its ``finally`` blocks run)."""
        self._context.run(self._coro.close)

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, run = self._coro, self._context.run
        yielded, self._first = self._first, None
        error, self._error = self._error, None
        while True:
            if error is None:
                try:
                    value = yield yielded
                except GeneratorExit:
                    run(coro.close)
                    raise
                except BaseException as exc:  # cancellation goes into the handler
                    error = exc
                    continue
                try:
                    yielded = run(coro.send, value)
                except StopIteration as stop:
                    return stop.value
            else:
                thrown, error = error, None
                try:
                    yielded = run(coro.throw, thrown)
                except StopIteration as stop:
                    return stop.value


#: What a drain takes over from ``Runtime._run_now`` (an ``ADOPTED`` mailbox entry, first in
#: line): (kind, caller or None, the handler).
Adopted = tuple[int, Any, Unfinished]


class Gate:
    """Holds a freshly handed-in process's direct messages, per sending node.

    During a handoff, a node may send to the new pid (it learned the new location)
    while its earlier messages to the old pid are still on their way to be forwarded.
    The gate holds each node's direct messages until the old host confirms (``Flushed``)
    that everything that node sent along the old route has been forwarded, so each
    sender's messages arrive in the order sent. Forwarded messages bypass the gate.
    """

    __slots__ = ("_opened", "held", "proc", "waiting")

    def __init__(self, proc: Process, nodes: set[str]) -> None:
        self.proc = proc
        self.waiting = set(nodes)
        self.held: dict[str, list[tuple[int, Any, Any]]] = {}
        self._opened: list[asyncio.Future[None]] = []

    def opened(self) -> asyncio.Future[None]:
        """A future done when the gate has let every node through."""
        fut: asyncio.Future[None] = self.proc._runtime.loop.create_future()
        if self.waiting:
            self._opened.append(fut)
        else:
            fut.set_result(None)
        return fut

    def expect(self, node: str) -> None:
        """Hold ``node``'s direct messages too, until it is released: a node that linked or
        came up here while the gate was closed may have sent to the old pid before it
        learned the new one."""
        self.waiting.add(node)

    def admit(self, node: str, entry: tuple[int, Any, Any]) -> None:
        if node in self.waiting:
            self.held.setdefault(node, []).append(entry)
        else:
            self.proc._enqueue(entry)

    def release(self, node: str) -> None:
        """``node``'s old route is flushed: deliver what it sent directly, in order. To a
        process that is no longer its pid's (it was retired: handed off again, or a
        conflict's loser, whose state went to the winner; or it exited), what the gate
        held goes where its pid now leads, as anything sent to it later would: handled by
        the retired copy, a call was acknowledged and lost with it (the fault campaign's
        partitions, where a copy just handed in often loses a conflict at the heal)."""
        self.waiting.discard(node)
        proc = self.proc
        runtime = proc._runtime
        live = runtime.local(proc._pid) is proc
        for entry in self.held.pop(node, ()):
            if live:
                proc._enqueue(entry)
            else:
                runtime._redirect(proc._pid, entry)
        if not self.waiting:
            if self.proc._gate is self:
                self.proc._gate = None
            for fut in self._opened:
                if not fut.done():
                    fut.set_result(None)
            self._opened.clear()

    def release_all(self) -> int:
        """Open for every node (timeout, or the old host is gone); returns how many were waited on."""
        waiting = len(self.waiting)
        for node in sorted(self.waiting):
            self.release(node)
        return waiting
