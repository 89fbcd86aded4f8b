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
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .._errors import CallTimeout, ProcessExited, UndecodableMessage, UnencodableValue
from .._log import RateLimitedLog
from .._timer import Expiry
from ..wire import NOCONNECTION, NOPROC, SHUTDOWN, Crash, Pid, Ref, to_wire
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
from ._context import CURRENT_PROCESS, context_with
from ._process import (
    ADOPTED,
    BATCH,
    CALL,
    CAST,
    FLUSH,
    INFO,
    INIT,
    NOREPLY,
    STOP,
    SYSTEM,
    Adopted,
    Caller,
    Down,
    Gate,
    Process,
    Unfinished,
)
from ._watchdog import Watchdog

log = logging.getLogger("distable.runtime")
_NO_INIT = Process.init  # the init a class has when it defines none: nothing to run
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

#: How many local calls handled at once (``Runtime._call_now``) may run inside one another
#: (a calls b, whose handler calls c...): each is a few frames on the caller's stack.
NOW_DEPTH = 8


#: asyncio's own bookkeeping of the current task (no public API before 3.12's eager tasks),
#: so that a handler ``Runtime._run_now`` runs from a link's dispatcher sees the task
#: that will run the rest of it as ``current_task()``.
def _missing(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    raise RuntimeError("this Python's asyncio has no _enter_task/_leave_task")


_enter_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] = getattr(
    asyncio.tasks, "_enter_task", _missing
)
_leave_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] = getattr(
    asyncio.tasks, "_leave_task", _missing
)
#: Whether this Python's asyncio has them (3.11 to 3.13 do). Without them nothing is run at
#: once: the dispatcher never sets ``Runtime.dispatching``, and every message goes through
#: a drain, as before.
RUN_NOW = _missing not in (_enter_task, _leave_task)
_current_task = asyncio.current_task

_DONE: Any = object()  # what a handler run at once yielded: nothing, it returned


def _to_front(proc: Process) -> None:
    """Move the entry just enqueued for ``proc`` (appended, its drain started if it was
    idle) to the front of its mailbox."""
    mb = proc._mailbox
    assert mb is not None
    mb.appendleft(mb.pop())


#: Work a spare task goes on with: (None, work started at once), or (a process, the handler
#: its drain goes on with first: an ``ADOPTED`` entry at the head of its mailbox).
Job = tuple[Process | None, Unfinished]

#: A spare task (``Runtime._new_spare``) and the future that gives it its ``Job``.
Spare = tuple[asyncio.Task[Any], asyncio.Future[Job]]


async def _go_on(work: Unfinished) -> Any:
    """A task's coroutine for work started at once that cannot go on in its spare."""
    return await work


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
        self._quick_spawns = 0  # spawns that ran no init since one yielded (see spawn)
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
        # handlers run at once from a link's dispatcher (see _run_now): the context they
        # start from (the node's, as its tasks'), the spare task for processes with no
        # drain, and the processes to run at the end of the batch being dispatched
        self._context = context_with(self)
        self._spares: list[Spare] = []
        self._stepping: asyncio.Task[Any] | None = None  # the task made current for such work
        #: True while the node's dispatcher dispatches a batch from a peer (it sets it):
        #: what the batch brings for idle processes, and ``run_soon``'s work, wait in
        #: ``ready`` until the dispatcher calls ``run_ready`` after the batch
        self.dispatching = False
        self.ready: list[tuple[Process, asyncio.Future[bool | None] | None] | Coroutine[Any, Any, Any]] = []
        self._ratelog = RateLimitedLog(log, f"{node_name}: ")
        self._local_messages = 0
        self._remote_messages = 0
        self._dropped = 0
        self._calls = 0
        #: Local calls to idle processes left to handle at once before one goes through
        #: the mailbox (``_call_now``); 0 where asyncio has no _enter_task (``RUN_NOW``)
        self._now_budget = BATCH if RUN_NOW else 0
        self._now_depth = 0  # calls handled at once inside one another, now
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
        """Create a process of ``cls``, run its ``init`` inside it, return its pid.

        A class that keeps ``Process.init`` (which does nothing with its arguments)
        needs no drain to run it: the process starts idle, as after its ``init``, and its
        first message starts its drain; such a spawn returns at once, without waiting for a
        loop turn, except every ``BATCH`` of them, which yields to the loop (a loop of spawns
        does not hold it). Called from work run at once from a link's dispatcher
        (``run_soon``: a registry request) rather than from a process, ``init`` starts at
        once too (``_start_now``).
        """
        if self.closing:
            raise RuntimeError(f"node {self.node_name} is shutting down")
        proc = cls()
        self._next_id += 1
        pid = Pid(self.node_name, self.incarnation, self._next_id)
        proc._setup(self, pid)
        self._procs[pid.id] = proc
        if cls.init is _NO_INIT:
            self._quick_spawns += 1
            if self._quick_spawns >= BATCH:
                self._quick_spawns = 0
                await asyncio.sleep(0)
            return pid
        fut: asyncio.Future[Pid] = self.loop.create_future()
        if self._stepping is not None and CURRENT_PROCESS.get() is None:
            proc._mailbox = deque(((INIT, (args, kwargs, fut), None),))
            proc._running = True
            self._start_now(proc._drain(), proc)
        else:
            proc._enqueue((INIT, (args, kwargs, fut), None))
        return await fut

    def _start_drain(self, proc: Process) -> None:
        proc._task = self._spawn_task(proc._drain())

    # --- work run at once from a link's dispatcher --------------------------------------

    def run_ready(self) -> None:
        """After a batch from a peer (``dispatching``): run, in the order they came, its
        messages for processes that were idle (``_run_now``) and ``run_soon``'s work
        (``_start_now``), at once, in the loop turn the batch arrived in."""
        ready, self.ready = self.ready, []
        for item in ready:
            if isinstance(item, tuple):
                self._run_now(*item)
            else:
                self._start_now(item)

    def run_soon(self, coro: Coroutine[Any, Any, Any]) -> bool:
        """From a link's dispatcher: start ``coro`` once the batch is dispatched, at once,
        as a task of its own would start on the next turn (``_start_now``). False if no
        batch is being dispatched: the caller then spawns a task for it as usual."""
        if not self.dispatching or self.closing:
            return False
        self.ready.append(coro)
        return True

    def _start_now(self, coro: Coroutine[Any, Any, Any], proc: Process | None = None) -> None:
        """Run ``coro`` until it first suspends, at once, as the first step of a task of
        its own (a spare, current meanwhile, in a copy of the node's context); if it
        suspends, that task goes on with it (and is ``proc``'s drain, for a drain). So work
        that does not suspend costs no task, and work that does runs as in a task."""
        spare = self._spares.pop() if self._spares else self._new_spare()
        host = spare[0]
        outer = self._stepping
        if not self._swap_in(host, outer):  # a task is running (not a dispatcher): as usual, then
            self._spares.append(spare)
            task = self._spawn_task(coro)
            if proc is not None:
                proc._task = task
            return
        context = self._context.copy()
        try:
            yielded = context.run(coro.send, None)
        except StopIteration:
            yielded = _DONE
        except Exception as exc:  # as a task's unretrieved exception would be
            yielded = _DONE
            self.loop.call_exception_handler(
                {"message": f"{self.node_name}: exception in work started at once", "exception": exc}
            )
        finally:
            self._swap_out(host, outer)
        cancelled = host.cancelling()  # it cancelled its own task: the spare dies of it
        if yielded is _DONE:
            if not cancelled:
                self._spares.append(spare)
            return
        work = Unfinished(coro, yielded, context)
        if cancelled:  # it gets the cancellation where it waits, in a task of its own
            work.cancel(asyncio.CancelledError())
            task = self._spawn_task(_go_on(work))
        else:
            spare[1].set_result((None, work))
            task = host
        if proc is not None:
            proc._task = task

    def _run_now(self, proc: Process, parked: asyncio.Future[bool | None] | None) -> None:
        """Handle the messages (infos, casts, calls from other nodes) waiting in the mailbox
        of ``proc``, idle when the batch that brought them began (no drain, or ``parked``),
        at once, rather than in a drain started (or woken) on the next loop turn: a reply
        then goes out in the turn its request came in, and a handler that does not suspend
        needs no task. After the whole batch, so a handler sees what the rest of it did (a
        registry ``Delta`` sent after the call), as it did from the next turn.

        Each handler runs as in a drain: ``proc`` current, in a copy of the node's context,
        crashes caught, the step timed; as the current task, in the drain's task
        (``proc``'s parked one, or a spare: ``_start_now``). A handler that suspends is
        taken over by that task, which goes on as ``proc``'s drain, so ``current_task()``
        (``asyncio.timeout``, a ``TaskGroup``) is the task that runs the rest of it. The
        drain also takes over what this does not handle: a mailbox entry of another kind,
        what comes after a congested link or ``BATCH`` messages, a stop.
        """
        mb = proc._mailbox
        if not proc.alive or mb is None:  # killed meanwhile (and cleaned up): end its parked drain
            if parked is not None:
                parked.set_result(None)
            return
        spare = None
        if parked is None:
            spare = self._spares.pop() if self._spares else self._new_spare()
            host = spare[0]
        else:
            host = proc._task  # type: ignore[assignment]  # a parked drain has its task
        loop, outer = self.loop, self._stepping
        if outer is not None:
            _leave_task(loop, outer)
        try:
            _enter_task(loop, host)
        except RuntimeError:  # a task is running (not a dispatcher): leave it to a drain
            if outer is not None:
                _enter_task(loop, outer)
            if spare is not None:
                self._spares.append(spare)
            if parked is not None:
                parked.set_result(None)
            else:
                self._start_drain(proc)
            return
        self._stepping = host
        adopted: Adopted | None = None
        copy = self._context.copy
        count = 0
        try:
            # The head of the mailbox is what the batch brought (infos, casts, calls), unless
            # the rest of the batch put something else first, took it (a handoff), froze or
            # stopped the process.
            while mb and mb[0][0] <= CALL and not proc._frozen and proc._stop_reason is None:
                kind, a, caller = mb.popleft()
                if kind == CALL:
                    coro = proc.handle_call(a, caller)
                else:
                    coro = proc.handle_cast(a) if kind == CAST else proc.handle_info(a)
                context = copy()
                context.run(CURRENT_PROCESS.set, proc)
                try:
                    try:
                        yielded = context.run(coro.send, None)
                    except StopIteration as stop:
                        if kind == CALL:
                            if stop.value is not NOREPLY:
                                caller.reply(stop.value)
                            elif not caller.replied:
                                if proc._deferred is None:
                                    proc._deferred = set()
                                proc._deferred.add(caller)
                        yielded = _DONE
                except asyncio.CancelledError:
                    yielded = _DONE
                    proc._stop_reason = proc._stop_reason or "killed"
                except Exception as exc:  # a crash stays inside its process (as in the drain)
                    yielded = _DONE
                    self._crashed_now(proc, caller if kind == CALL else None, exc)
                if yielded is not _DONE:  # it suspended: the host task goes on with it
                    adopted = (kind, caller if kind == CALL else None, Unfinished(coro, yielded, context))
                    break
                count += 1
                if proc._blocked is not None or count >= BATCH:
                    break
        finally:
            self._stepping = outer
            _leave_task(loop, host)
            if outer is not None:
                _enter_task(loop, outer)
        if host.cancelling() if spare is not None else parked.cancelled():  # type: ignore[union-attr]
            self._cancelled_now(proc, spare, adopted)
            return
        if adopted is not None:  # its drain goes on with it first, in the host task
            mb.appendleft((ADOPTED, adopted, None))
            if spare is not None:
                proc._task = host
                spare[1].set_result((proc, adopted[2]))
            else:
                parked.set_result(True)  # type: ignore[union-attr]
            return
        if spare is not None:
            self._spares.append(spare)
        if not mb and proc._stop_reason is None and not proc._frozen:  # still idle
            if parked is None:
                proc._running = False
                proc._mailbox = None  # as a drain that ends idle: no deque kept
            else:  # parked again, as recently busy
                proc._parked = parked
                self._parked_new[proc._pid.id] = proc
        elif parked is not None:
            parked.set_result(True)  # its drain sees to what was left: a stop, a freeze, messages
        elif proc._stop_reason is not None:
            proc._task = self._spawn_task(proc._end())
        elif proc._frozen:
            proc._running = False  # unfreeze starts a drain
        else:
            self._start_drain(proc)  # what was not handled here

    def _call_now(self, proc: Process, entry: tuple[int, Any, Any]) -> None:
        """A local call's ``entry`` for idle ``proc``, handled at once (``_run_now``) from
        the calling task, which stands aside meanwhile (the callee's host task is current
        while its handler runs). From ``call``, at most ``BATCH`` in a row: then a call
        goes through the mailbox and the caller yields to the loop, so that a process
        calling in a loop does not hold it."""
        mb = proc._mailbox
        if mb is None:
            mb = proc._mailbox = deque()
        mb.append(entry)
        parked, proc._parked = proc._parked, None
        proc._running = True
        loop = self.loop
        # Not from a task (cannot be, from a coroutine): _run_now leaves it to a drain. The
        # caller run at once itself (``_stepping``): _run_now swaps it out.
        task = _current_task(loop) if self._stepping is None else None
        self._now_depth += 1
        try:
            if task is None:
                self._run_now(proc, parked)
                return
            _leave_task(loop, task)
            try:
                self._run_now(proc, parked)
            finally:
                _enter_task(loop, task)
        finally:
            self._now_depth -= 1

    def _cancelled_now(self, proc: Process, spare: Spare | None, adopted: Adopted | None) -> None:
        """A handler ``_run_now`` ran cancelled the task it ran in (its ``current_task()``):
        as for a drain whose task is cancelled, the process is killed, and a handler that
        suspended gets the cancellation where it waits (but a parked drain, woken by its
        cancelled future, ends the process at once: its handler is closed unfinished)."""
        if spare is not None:  # the spare dies of it: a new task goes on
            if adopted is not None:
                adopted[2].cancel(asyncio.CancelledError())
                mb = proc._mailbox
                assert mb is not None
                mb.appendleft((ADOPTED, adopted, None))
                proc._task = self._spawn_task(proc._drain())
            else:
                proc._stop_reason = proc._stop_reason or "killed"
                proc._task = self._spawn_task(proc._end())
        elif adopted is not None:
            _, caller, work = adopted
            work.close()
            if caller is not None:
                caller.fail("killed")

    def _crashed_now(self, proc: Process, caller: Caller | None, exc: Exception) -> None:
        """A handler ``_run_now`` ran raised ``exc``: the process crashes, as in its drain."""
        crash = Crash.from_exception(exc)
        proc._stop_reason = crash
        log.error("%s: process %r crashed in its handler", self.node_name, proc, exc_info=exc)
        if caller is not None:
            caller.fail(crash)

    def _swap_in(self, host: asyncio.Task[Any], outer: asyncio.Task[Any] | None) -> bool:
        """Make ``host`` the current task, in place of ``outer`` (``_stepping``: the task
        work run at once runs in, if it started more such work; else None). False, doing
        nothing, when some other task is running: the caller is not a link's dispatcher."""
        loop = self.loop
        if outer is not None:
            _leave_task(loop, outer)
        try:
            _enter_task(loop, host)
        except RuntimeError:
            if outer is not None:
                _enter_task(loop, outer)
            return False
        self._stepping = host
        return True

    def _swap_out(self, host: asyncio.Task[Any], outer: asyncio.Task[Any] | None) -> None:
        """Undo ``_swap_in(host, outer)``."""
        self._stepping = outer
        _leave_task(self.loop, host)
        if outer is not None:
            _enter_task(self.loop, outer)

    def _new_spare(self) -> Spare:
        """A spare task: what ``_start_now`` and ``_run_now`` run work in when it needs a
        task of its own. It waits until work it ran suspends, and then goes on with it;
        until then it is reused (``_spares``), so work that does not suspend costs none."""
        job: asyncio.Future[Job] = self.loop.create_future()
        return self._spawn_task(self._host(job)), job

    @staticmethod
    async def _host(job: asyncio.Future[Job]) -> None:
        try:
            proc, work = await job
        except asyncio.CancelledError as exc:
            if job.cancelled():  # a spare no work was given to
                raise
            proc, work = job.result()  # given work, then cancelled: the work's
            work.cancel(exc)
        await (work if proc is None else proc._drain())

    def _park(self, proc: Process) -> asyncio.Future[bool | None] | None:
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

    def stop_first(self, proc: Process, reason: Any) -> None:
        """Stop ``proc`` before anything it has queued (after its current handler): the
        calls waiting in its mailbox fail with ``ProcessExited(reason)`` instead of being
        handled. A frozen process stops once unfrozen."""
        if proc.alive:
            proc._enqueue((STOP, reason, None))
            _to_front(proc)

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
            elif kind == ADOPTED:  # a handler started at once, never gone on with
                a[2].close()
                if a[1] is not None:
                    a[1].fail(reason)
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
        entry = (CALL, message, Caller(self, sender, fut))
        proc = self._procs.get(dest.id)
        if (
            self._now_budget
            and self._now_depth < NOW_DEPTH
            and proc is not None
            and (proc._parked is not None or not proc._running)
            and not proc._mailbox
            and proc._gate is None
            and not proc._frozen
            and proc._blocked is None
            and proc.alive
            and dest.incarnation == self.incarnation
            and not self.dispatching
            and not self.closing
        ):
            # The callee is idle: its handler runs at once, in this turn, as a message from
            # a link does (``_call_now``); one that returns without suspending has replied.
            self._now_budget -= 1
            self._call_now(proc, entry)
            if fut.done():
                return fut.result()
        else:
            self._now_budget = BATCH  # this call yields to the loop (or the callee is busy)
            self._deliver(self.node_name, dest, entry)
        if timeout is None:
            return await fut
        waiting = self._arm_deadline(fut, dest, timeout)
        try:
            return await fut
        finally:
            del waiting[fut]

    async def request(self, dest: Pid, message: Request, timeout: float | None) -> Any:
        """Send ``message`` to ``dest``'s node under a fresh ``ref`` (set here); await the
        result for its answer, as for a remote call: ``answer(node, ref, value)``, or a
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
            self._deliver_now(node, msg.to, (INFO, msg.payload, None))
        else:
            self._misrouted(node, msg.to)

    def on_cast(self, node: str, msg: Cast) -> None:
        if msg.to.node == self.node_name:
            self._deliver_now(node, msg.to, (CAST, msg.payload, None))
        else:
            self._misrouted(node, msg.to)

    def _deliver_now(self, from_node: str, dest: Pid, entry: tuple[int, Any, Any]) -> None:
        """``_deliver`` from the dispatcher of ``from_node``'s link: while ``dispatching``,
        a message for an idle process waits to be handled at once after the batch
        (``run_ready``, ``_run_now``)."""
        proc = self._procs.get(dest.id)
        if proc is None or not proc.alive or dest.incarnation != self.incarnation:
            self._redirect(dest, entry)
            return
        if proc._gate is not None:
            proc._gate.admit(from_node, entry)
        elif (
            self.dispatching
            and (proc._parked is not None or not proc._running)
            and not proc._mailbox
            and not proc._frozen
            and proc._blocked is None
            and not self.closing
        ):
            mb = proc._mailbox
            if mb is None:
                mb = proc._mailbox = deque()
            mb.append(entry)
            self.ready.append((proc, proc._parked))
            proc._parked = None  # so that more messages for it just queue behind this one
            proc._running = True
        else:
            proc._enqueue(entry)

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
        fut = self.run_in(proc, op)
        _to_front(proc)
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
            if kind in (SYSTEM, ADOPTED):
                keep.append(entry)
            elif kind == FLUSH:
                if marker is not None:
                    marker(entry[1], entry[2])
            else:
                forward(successor, entry)
        mb.extend(keep)

    def park_marker(self, proc: Process, node: str, hid: int) -> None:
        """Queue handoff ``hid``'s flush marker from ``node`` behind what frozen ``proc``
        holds (``forward_mailbox`` meets it in its place). A frozen process whose drain
        ended with nothing queued has no deque: the marker makes one (it starts no drain,
        as ``_enqueue`` would not either while frozen)."""
        mb = proc._mailbox
        if mb is None:
            mb = proc._mailbox = deque()
        mb.append((FLUSH, node, hid))

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
        self._deliver_now(node, msg.to, (CALL, msg.payload, Caller(self, msg.sender, None, node, msg.ref)))

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

    def watch_loop_lag(self, interval: float = 0.25) -> Coroutine[Any, Any, None]:
        """Start the block detector (``_watchdog``: a thread that reports the loop held
        past ``block_warning`` while it is held, naming the handler that holds it), now,
        and return the coroutine that beats for it and measures event-loop lag, forever
        (until cancelled; then the detector stops too).

        Beats ``interval`` apart, or a quarter of ``block_warning`` if less."""
        watchdog = Watchdog(self, min(interval, self.block_warning / 4))
        watchdog.start()  # before the first beat: a hold from now on is seen
        return self._beat(watchdog)

    async def _beat(self, watchdog: Watchdog) -> None:
        # time.monotonic, not loop.time(): uvloop's clock counts whole milliseconds, which
        # made every lag a multiple of 1 ms. A loop whose clock is not the real one (the
        # simulator's ``VirtualTimeLoop``: ``virtual_clock``) beats on its own: sleeps
        # measured on the real clock put its timers at instants that differed from run to
        # run, and a seeded simulation did not replay.
        virtual = getattr(self.loop, "virtual_clock", False)
        clock = self.loop.time if virtual else time.monotonic
        tick = watchdog.tick
        start = watchdog.due - tick
        cpu = time.process_time()
        try:
            while True:
                await asyncio.sleep(max(0.0, start + tick - clock()))
                lag = max(0.0, clock() - start - tick)
                self.last_loop_lag = lag
                self.max_loop_lag = max(self.max_loop_lag, lag)
                spent = time.process_time()
                used, cpu = spent - cpu, spent
                # (A stop of the whole process is said by ``stopped``, not as a hold; a virtual
                # clock's lags are not the real ones it judges.)
                if lag > self.block_warning and (virtual or not watchdog.stopped(start, lag + tick, used)):
                    if watchdog.reported == start + tick:  # reported while held: now its length
                        self._ratelog.info("held", "event loop free again after %.3f s", lag)
                    else:  # over before the detector looked (it looks every tick)
                        self._ratelog.warning("lag", "event loop stalled for %.3f s", lag)
                start = clock()
                watchdog.beat(start + tick)
        finally:
            watchdog.stop()

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
