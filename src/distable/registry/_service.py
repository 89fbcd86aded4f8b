"""The registry shell: runs the tracker core's commands on the node's event loop.

It owns the tracker core (one owner per piece of state: no other task changes it) and
carries out its outputs (Deltas, events, commands), and it keeps:

* the public API the node calls (register, unregister, join, leave, multi_call...);
* the node's registry server (process of well-known local id 1, which other nodes call to
  register names here) and the requests it serves;
* restarts (here, or asked of a name's owner) and stopping processes the core lets go;
* conflict resolution (a losing copy's state goes to the winner, then it retires);
* the graceful leave (drain);
* checkpoints: the standby core (``_standby.py``) runs beside the tracker core, fed the
  same peers and placement, the checkpoint messages, and the local processes' lives
  (registered, handed off, exited, removed); restarts wait for its ``Restored``.
* the durable store, if the node has one (the ``_store_*`` methods): registrations and
  acknowledged checkpoints written through, the rest queued, and the cold start.

The handoff protocol, both sides, is in ``_handoff.py`` (``HandoffCoordinator``, which the
service owns and feeds: its commands, its wire messages, peers going down); the asyncio
helpers are in ``_aio.py``. Imports run one way: service -> handoff -> runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, assert_never

import msgspec

from .._backoff import Backoff
from .._errors import (
    AlreadyRegistered,
    CallTimeout,
    CheckpointTooLarge,
    DistableError,
    FactoryError,
    InvalidFactoryReturn,
    MessageTooLarge,
    NameNotFound,
    NoNodeAvailable,
    ProcessExited,
    StoreUnavailable,
    UnencodableValue,
)
from .._log import RateLimitedLog
from .._timer import Expiry, Timer
from ..ring import DistributionStrategy, hash_name
from ..runtime import NOREPLY, Caller, Process, Resume, Runtime
from ..store._api import Remembered
from ..store._durable import DurableStore
from ..transport import Transport
from ..wire import NOPROC, SHUTDOWN, Crash, Pid, decode_value, encode_value, to_wire
from ..wire._messages import (
    REGISTRY_ERROR,
    REGISTRY_EXISTS,
    REGISTRY_OK,
    CallRequest,
    Checkpoint,
    CheckpointAck,
    CheckpointDrop,
    CheckpointFetch,
    CheckpointHandover,
    CheckpointHave,
    CheckpointPut,
    Claim,
    ConflictState,
    ConflictStateTaken,
    Delta,
    Digest,
    FlushAsk,
    Forwarded,
    GroupJoinRequest,
    GroupLeaveRequest,
    Holder,
    Lineage,
    RegisterNameRequest,
    RegisterRequest,
    RegistryHello,
    RegistryLeaving,
    RegistryReply,
    RegistryRequest,
    Spec,
    SyncReply,
    SyncRequest,
    UnregisterRequest,
)
from ._aio import Lane, Starting, detached, log_failure, within
from ._conflicts import ConflictInbox, ConflictOutbox, Due
from ._core import (
    BUCKETS,
    RegistryConfig,
    RegistryStatistics,
    ResolveConflict,
    RestartElsewhere,
    RouteClosedNotice,
    StartHandoff,
    StartName,
    StopProcess,
    TrackerCore,
    wire_spec,
)
from ._events import ProcessRestarted
from ._factory import factory_ref, run_factory
from ._handoff import FreezeForHandoff, HandoffCoordinator, ask_to_die
from ._standby import CheckpointDone, CheckpointRefused, Restored, StandbyConfig, StandbyCore

log = logging.getLogger("distable.registry")

REGISTRY_SERVER_ID = 1
STORE_PENDING = 60.0  # seconds a node keeps the records its cold start did not start (cold_start)
CHECKPOINT_VERSION = 4  # the protocol version from which a peer takes checkpoint messages
# Restores the standby core works on at once; the others wait in order (``_start_restores``):
# a wave of a dead node's names is then a few bounded bursts, not one the size of the wave.
RESTORE_WINDOW = 1024
# What ``_deliver_conflict_state`` did with a state it did not send on.
_DELIVERED = "delivered"  # to the winner, here
_WINNER_GONE = "gone"  # dropped: the winner is gone; its loser stays (the claims decide)
_UNREGISTERED = "unregistered"  # dropped: the user removed the winner's name; its loser retires
RELAY_MEMORY = 300.0  # seconds a state passed on to a successor's node waits for its answer
_UNREGISTERED_MEMORY = 4096  # pids whose claim was unregistered here, kept for that answer
_RESTART_REASONS = {"nodedown": "of a node that went down", "exit": "whose process exited"}
RESTART_POLICIES = ("temporary", "transient", "permanent")
_ERRORS: dict[str, type[DistableError]] = {
    "FactoryError": FactoryError,
    "InvalidFactoryReturn": InvalidFactoryReturn,
    "NoNodeAvailable": NoNodeAvailable,
    "UnencodableValue": UnencodableValue,
}


@dataclass(slots=True)
class _Losing:
    """A conflict's losing copy here, frozen, whose state was sent to the winner's node
    (``sent_to``, in ``message``) and waits to be confirmed taken."""

    name: Any
    loser: Pid
    winner: Pid
    proc: Process | None
    sent_to: str = ""
    message: ConflictState | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """One member's answer to ``multi_call``: ``value`` if ``ok``, else ``error``."""

    pid: Pid
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class RegistryServer(Process):
    """The node's registry endpoint (local id 1): serves requests from other nodes."""

    system = True

    async def init(self, service: RegistryService) -> None:
        self.service = service

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        self.service.spawn(self.service.serve(message, caller))
        return NOREPLY


class RegistryService:
    """Owns the tracker core of one node. Every method runs on the event loop."""

    def __init__(
        self,
        *,
        node: str,
        role: str,
        runtime: Runtime,
        transport: Transport,
        strategy: DistributionStrategy,
        config: RegistryConfig,
        incarnation_of: Callable[[str], int | None],
        suspected: Callable[[str], bool] = lambda node: False,
        spawn: Callable[[Coroutine[Any, Any, Any]], Any],
        publish: Callable[[Any], None],
        max_concurrent_handoffs: int = 256,
        rng: random.Random | None = None,
        store: DurableStore | None = None,
        connect: Callable[[str, float], Awaitable[None]] | None = None,
    ) -> None:
        # Field ownership. Every method runs on the node's event loop; those that never
        # await are called from the dispatcher (a peer's message), the runtime (a local
        # exit), a timer, or the node; the ``async`` ones run in a serve task (a request
        # to the registry server), a lane task (a handoff or restart job) or the node's
        # task (API calls, drain). Each group below says who writes its fields.

        # Set here, never reassigned.
        self.node = node
        self.role = role
        self.runtime = runtime
        self.transport = transport
        self.loop = runtime.loop
        self.config = config
        self._incarnation_of = incarnation_of
        self._suspected = suspected
        # Wait until a link to a node is up (``Node.connect``): a request goes in the form its
        # version reads. None (in-memory setups): the list form when no link is up.
        self._connect = connect
        self.spawn = spawn
        self._publish = publish
        self._ratelog = RateLimitedLog(log, f"{node}: ")
        rng = rng or random.Random()
        # The tracker core: changed only by this service's plain methods (inputs), and read
        # by anyone (``pids`` is the very dict ``whereis`` reads).
        self.core = TrackerCore(node, role=role, strategy=strategy, config=config, rng=rng, now=self.loop.time())
        self.pids = self.core.pids
        # The standby core (checkpoints), beside the tracker: changed only by this service's
        # plain methods, and fed the tracker's placement less the peers that speak no
        # checkpoints (``_sync_placement``). Its timer is the tracker's (``_flush``).
        standby_config = StandbyConfig(
            max_bytes=config.checkpoint_max_bytes, write_behind=config.checkpoint_write_behind
        )
        self.standby = StandbyCore(
            node,
            incarnation=runtime.incarnation,
            config=standby_config,
            placement=self.core.placement,
            now=self.loop.time(),
        )
        self._standby_source = self.core.placement  # the tracker placement it was given last
        self._next_sweep = self.loop.time() + config.sync_interval
        # Local processes the standby core keeps a host record for, by pid: the name they
        # checkpoint under. A process registered fresh gets one only at its first
        # checkpoint (``_start_hosting``): a name that never checkpoints costs nothing here.
        # Written where the standby core hears of them (``_host_started``, exits, removals,
        # retirements); read by ``checkpoint``.
        self._hosting: dict[Pid, Any] = {}
        # Checkpoint waits (``checkpoint(wait=True)``) and restores, by the token the
        # standby core answers: resolved by ``_flush``, written by their callers.
        self._token = 0
        self._checkpoint_waits: dict[int, asyncio.Future[None]] = {}
        self._restores: dict[int, tuple[asyncio.Future[Restored], Any, Lineage, Lineage | None]] = {}
        # (name, local pid) whose refused checkpoints' stale line is being fetched for its
        # resolve_conflict (``_on_refused``, ``_adopt_stale``).
        self._adopting: set[tuple[Any, Pid]] = set()
        # The durable store (issue 12, item 4), if the node has one: see "the durable
        # store" below for what each field holds. Written by those methods only.
        self.store = store
        self._store_epochs: dict[Pid, int] = {}
        self._store_dirty: dict[Any, tuple[bytes | None, tuple[Lineage, int] | None]] = {}
        self._store_waits: dict[int, tuple[Any, Lineage, int, bytes]] = {}
        self._store_spared: set[Pid] = set()
        self._store_loaded = False
        self._store_restored = 0
        self._store_pending: dict[Any, Remembered] = {}
        self._store_pending_until = 0.0
        self._store_records: dict[Any, Remembered] = {}
        self._store_read = asyncio.Event()
        self._store_placement: Any = None
        # Restores not handed to the standby core yet (token, name, lineage, base, also): in
        # ``_restores`` already, so that a sweep keeps their records meanwhile.
        self._restore_queue: deque[tuple[int, Any, Lineage, Lineage | None, tuple[str, ...]]] = deque()
        self._restores_scheduled = False

        # Carrying out the core's outputs: written by _changed/_flush/_on_timer (never await)
        # and stop().
        self._flush_scheduled = False
        # Replies of the registry server held for the flush already scheduled (``_answer``):
        # several registrations finishing in one loop turn then share one Delta per peer,
        # which the flush posts before their replies. Written by _answer and _flush.
        self._replies: list[tuple[str | None, Callable[[], object]]] = []
        # Requests to the registry server received and not answered yet: counted when
        # they arrive (_on_request) or start (serve), uncounted when served (see _answer).
        self._serving = 0
        self._timer = Timer(self.loop, self._on_timer)
        self._stopped = False
        # A node's death or a join makes thousands of restarts or handoffs at once: _command
        # puts them on these lanes, whose tasks run a bounded number at a time, so no loop
        # turn starts them all (a turn that long would stall heartbeats and make peers
        # suspect this node).
        self._handoffs = Lane(spawn, max_concurrent_handoffs)
        self._restarts = Lane(spawn, max_concurrent_handoffs)
        # Handoff waves, for their log lines: _log_waves (at a flush) and _handoff_finished
        # (a lane task, as each handoff ends).
        self._wave_pending = 0  # handoffs of the current wave not finished yet
        self._wave_base = (0, 0, 0)  # completed, aborted and pinned handoffs when the wave began
        # Retries of failed moves: _retry_later/_retry_reset (called by the handoff
        # coordinator) and _retry_rebalance (the timer). Per retry round that still fails,
        # capped at the sync interval.
        self._retry_backoff = Backoff(0.1, config.sync_interval)
        self._retry_handle: asyncio.TimerHandle | None = None

        # Registrations starting a process here: name -> its outcome. Written by the serve
        # task of the registration (_register_here); read by the handoff coordinator.
        self._pending = Starting(self.loop)
        # Conflicts (see "conflicts" below). The lane's tasks (_give_state) freeze losers and
        # send their states, a bounded number at a time, and write ``_losing`` and the
        # outbox; the dispatcher (_on_conflict_state_taken), peer_down and the timer read
        # and retire them. The inbox is the winner's side (_on_conflict_state). Refs start
        # at random: a receiver takes a ref once per sending node name, and a node
        # restarted under the same name must not repeat its previous life's refs.
        self._conflicts = Lane(spawn, max_concurrent_handoffs)
        self._conflict_ref = rng.getrandbits(62)
        self._losing: dict[int, _Losing] = {}  # ref -> the frozen loser whose state it carries
        # States passed on to a successor's node (_on_conflict_state), answered to the
        # loser's node only once that node answers: our ref -> (the loser's node, its ref),
        # and back. Forgotten after RELAY_MEMORY: the loser's node has given up by then.
        self._relays: dict[int, tuple[str, int]] = {}
        self._relay_refs: dict[tuple[str, int], int] = {}
        self._relay_expiry = Expiry(self.loop, RELAY_MEMORY)
        # The last pids whose claim a user's unregister removed here (oldest first): a
        # loser's state that arrives once such a winner is gone is dropped, and the loser
        # retires, so the name the user removed does not come back with the loser.
        self._unregistered: dict[Pid, None] = {}
        self.conflict_outbox = ConflictOutbox()
        self.conflict_inbox = ConflictInbox()
        # The graceful leave: drain() (the node's task) writes ``drained``; _command counts
        # names no server was left to take; anything that makes progress sets ``_idle``,
        # which drain's waits clear.
        self.drained = False  # whether every name was handed off in time
        self._lost_at_leave = 0
        self._idle = asyncio.Event()

        # The handoff protocol, both sides (its own fields are documented there). Handoff
        # ids start at random too (see _conflict_ref).
        self.handoff = HandoffCoordinator(
            runtime,
            transport,
            self.core,
            config,
            pending=self._pending,
            first_hid=rng.getrandbits(40),
            incarnation_of=incarnation_of,
            suspected=suspected,
            spawn=spawn,
            publish=publish,
            changed=self._changed,
            progressed=self._idle.set,
            retry_later=self._retry_later,
            retry_reset=self._retry_reset,
            handover=self._handover,
            handover_ended=self._handover_ended,
            handed_in=self._handed_in,
            handin_settled=self._handin_settled,
            orphaned=self._handoff_orphaned,
            exited=self._on_exit,
        )
        runtime.exit_listeners.append(self._on_exit)

    async def start(self) -> None:
        """Node lifecycle (``Node.bind``); awaits the server's spawn."""
        pid = await self.runtime.spawn(RegistryServer, (self,), {})
        if pid.id != REGISTRY_SERVER_ID:
            raise RuntimeError("the registry server must be the node's first process")
        self._changed()

    def stop(self) -> None:
        """The node stops: no timer fires from now on (the node's task; never awaits)."""
        self._stopped = True
        self._timer.cancel()
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None

    # --- the core's outputs ---------------------------------------------------------------

    def _changed(self) -> None:
        """Carry out the core's outputs at the end of this loop turn (so that every change
        made in one turn goes out in one Delta).

        Any plain method of this service; never awaits."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """The loop (scheduled by ``_changed``) or ``_on_timer``; never awaits."""
        self._flush_scheduled = False
        out = self.core.take()
        self._sync_placement()
        post = self.transport.post
        for node, msg in out.send:
            try:
                post(node, msg)
            except MessageTooLarge:
                self._post_in_parts(node, msg)
            except Exception as exc:
                self._ratelog.warning(("post", node), "cannot send %s to %s: %s", type(msg).__name__, node, exc)
        for event in out.events:
            self._publish(event)
        if self._replies:
            self._send_replies()
        if out.commands:
            self._log_waves(out.commands)
        for command in out.commands:
            self._command(command)
        self._flush_standby()
        if self._store_dirty:
            self._store_catch_up()
        if self._store_pending and self.core.placement is not self._store_placement:
            self._store_recheck()
        if not self._stopped:
            self._timer.arm(
                min(
                    self.core.next_deadline(),
                    self.standby.next_deadline(),
                    self.conflict_outbox.next_deadline(),
                    self._next_sweep,
                )
            )

    def _log_waves(self, commands: list[Any]) -> None:
        """One INFO line per wave of handoffs or restarts (a join, a leave, a node's death
        moves thousands of names at once: a line per name would drown the log), and one
        when the handoff wave is over, with how it went.

        From ``_flush``; never awaits."""
        handoffs = Counter(c.target for c in commands if isinstance(c, StartHandoff))
        restarts = Counter(
            f"of {c.origin}, which went down" if c.origin else _RESTART_REASONS.get(c.reason, c.reason)
            for c in commands
            if isinstance(c, StartName)
        )
        elsewhere = Counter(c.owner for c in commands if isinstance(c, RestartElsewhere))
        if handoffs and not self._wave_pending:
            stats = self.core.statistics()
            self._wave_base = (stats.handoffs_completed, stats.handoffs_aborted, self.core.handoffs_pinned)
        self._wave_pending += handoffs.total()
        for what, counts, each in (
            ("handing %d name(s) off", handoffs, "{n} to {k}"),
            ("restarting %d name(s) here", restarts, "{n} {k}"),
            ("asking owners to restart %d name(s)", elsewhere, "{n} on {k}"),
        ):
            if counts:
                # Rate-limited per wave shape: a move retried every few seconds (a refusing
                # owner) is one line per 10 s, with the count of the others.
                parts = ", ".join(each.format(n=n, k=k) for k, n in sorted(counts.items()))
                self._ratelog.log(logging.INFO, ("wave", what, parts), what + ": %s", counts.total(), parts)

    def _handoff_finished(self) -> None:
        """A handoff lane task, as each handoff ends; never awaits."""
        self._wave_pending -= 1
        if self._wave_pending:
            return
        stats = self.core.statistics()
        done, failed = stats.handoffs_completed - self._wave_base[0], stats.handoffs_aborted - self._wave_base[1]
        stay = self.core.handoffs_pinned - self._wave_base[2]
        why = []
        if failed - stay and not self.core.leaving:
            why.append(f"{failed - stay} retried with backoff")
        if stay:
            # Ignore, or a state that cannot be sent: asked again when the cluster changes.
            why.append(f"{stay} stay on this node until the cluster changes")
        self._ratelog.log(
            logging.INFO,
            ("wave over", done, failed),
            "handoff wave over: %d completed, %d aborted%s",
            done,
            failed,
            f" ({', '.join(why)})" if why else "",
        )

    def _post_in_parts(self, node: str, msg: Any) -> None:
        """Send a Delta or SyncReply too large for one frame as several smaller ones (the
        claims of a node that just took over many names, a whole replica for a new node).

        From ``_flush``; never awaits."""
        parts = _halves(msg)
        if parts is None:
            self._ratelog.warning(("post", node), "cannot send %s to %s: too large", type(msg).__name__, node)
            return
        for part in parts:
            try:
                self.transport.post(node, part)
            except MessageTooLarge:
                self._post_in_parts(node, part)
            except Exception as exc:
                self._ratelog.warning(("post", node), "cannot send %s to %s: %s", type(part).__name__, node, exc)
                return

    def _on_timer(self) -> None:
        """The cores' timer (``Timer``); never awaits."""
        now = self.loop.time()
        self.core.handle_timer(now)
        self.standby.handle_timer(now)
        self._conflict_due(self.conflict_outbox.handle_timer(now))
        if now >= self._next_sweep:
            self._next_sweep = now + self.config.sync_interval
            self.standby.sweep(now, self._claims_index())
        self._flush()

    def _command(self, command: Any) -> None:
        """From ``_flush``; never awaits: jobs that await go on a lane."""
        if isinstance(command, StartHandoff):
            self._handoffs.put(lambda: self._hand_off(command))
        elif isinstance(command, StartName):
            # Its restore begins now, not when a lane task takes it: the restores of a wave
            # (the thousands of names of a dead node) go out as one fetch per peer instead
            # of one round trip per 256 names (the lane's width), behind peers that are busy.
            restoring = self._begin_restore(command.name, command.lineage, command.base)
            self._restarts.put(lambda: self._restart(command, restoring))
        elif isinstance(command, StopProcess):
            if command.reason == "lastnode":
                self._lost_at_leave += 1
            if self.store is not None:
                self._store_spared.add(command.pid)  # the registry stops it: its name does not end
            self._stop_local(command.pid)
        elif isinstance(command, ResolveConflict):
            self._conflicts.put(lambda: self._give_state(command))
        elif isinstance(command, RestartElsewhere):
            self._restarts.put(lambda: self._restart_elsewhere(command))
        elif isinstance(command, RouteClosedNotice):
            self.handoff.tell_route_closed(command)

    # --- membership and messages ----------------------------------------------------------

    def peer_up(self, node: str, incarnation: int = 0, client: bool = False) -> None:
        """Membership callback (the node's ``_on_member_event``); never awaits.

        A server peer whose link agreed on a protocol version without checkpoints is never
        one of the standby core's peers: it is asked nothing and holds nothing."""
        now = self.loop.time()
        self.handoff.peer_up_incoming(node)
        self.core.peer_up(node, now, incarnation)
        if not client and self._speaks_checkpoints(node):
            self.standby.peer_up(node, now, incarnation)
        self._conflict_due(self.conflict_outbox.peer_up(node, incarnation, now))
        self._flush()

    def link_renewed(self, node: str, incarnation: int) -> None:
        """A link to ``node`` came up (``TrackerCore.link_renewed``: it matters only when
        ``node`` is up here already), and every closed gate holds what ``node`` sends
        (``HandoffCoordinator.peer_up_incoming``). The node's transport callback, before the
        link delivers anything; never awaits."""
        now = self.loop.time()
        self.handoff.peer_up_incoming(node)
        self.handoff.link_up_outgoing(node)
        if self.core.link_renewed(node, now, incarnation):
            self._changed()
        self._conflict_due(self.conflict_outbox.link_renewed(node, incarnation, now))

    def peer_down(self, node: str) -> None:
        """Membership callback (the node's ``_on_member_event``); never awaits."""
        now = self.loop.time()
        self.handoff.peer_down_incoming(node)
        self.conflict_outbox.peer_down(node, now)
        self.handoff.peer_down_outgoing(node)
        self.core.peer_down(node, now)
        self.standby.peer_down(node, now)
        self._flush()

    def handlers(self) -> dict[type, Callable[[str, Any], None]]:
        """Wire message type -> handler, for the node's dispatcher.

        Node lifecycle (``Node.bind``); never awaits."""
        core = self.core

        def wrap(method: Callable[[str, Any, float], None]) -> Callable[[str, Any], None]:
            def handle(node: str, msg: Any) -> None:
                method(node, msg, self.loop.time())
                self._changed()

            return handle

        return {
            RegistryHello: wrap(core.on_hello),
            Delta: wrap(core.on_delta),
            Digest: wrap(core.on_digest),
            SyncRequest: wrap(core.on_sync_request),
            SyncReply: wrap(core.on_sync_reply),
            RegistryLeaving: wrap(core.on_leaving),
            FlushAsk: wrap(core.on_flush_ask),
            **self.handoff.handlers(),
            ConflictState: self._on_conflict_state,
            ConflictStateTaken: self._on_conflict_state_taken,
            Forwarded: self.runtime.on_forwarded,
            CallRequest: self._on_call_request,
            RegisterRequest: self._on_request,
            RegisterNameRequest: self._on_request,
            UnregisterRequest: self._on_request,
            GroupJoinRequest: self._on_request,
            GroupLeaveRequest: self._on_request,
            RegistryReply: self._on_reply,
            CheckpointPut: self._on_checkpoint_message,
            CheckpointAck: self._on_checkpoint_message,
            CheckpointDrop: self._on_checkpoint_message,
            CheckpointFetch: self._on_checkpoint_message,
            CheckpointHave: self._on_checkpoint_message,
        }

    def _on_call_request(self, node: str, msg: CallRequest) -> None:
        """A call from another node: one to this node's registry server is served at once (a
        task per request, as the server would start), without a trip through the server's
        mailbox and drain; any other call goes to the runtime as usual.

        Dispatcher callback; never awaits."""
        to = msg.to
        runtime = self.runtime
        if (
            to.id == REGISTRY_SERVER_ID
            and to.node == self.node
            and to.incarnation == runtime.incarnation
            and not self._stopped
            and not runtime.closing
        ):
            self.spawn(self.serve(msg.payload, Caller(runtime, msg.sender, None, node, msg.ref)))
        else:
            runtime.on_call_request(node, msg)

    def _on_exit(self, pid: Pid, reason: Any) -> None:
        """Runtime exit listener (a local process ended); never awaits.

        Its checkpoints stay for a restart after a crash (its latest state goes to its
        standbys first); they are deleted everywhere when the name ends with it. Not while
        the node stops: its names' owners restart them from the checkpoints.

        While a leaving node stops (its drain timed out with names still here), the
        exits the stop makes keep their claims: the peers drop them when they see the node
        leave, and each name's owner restarts it then, as for a crash (guarantee 5).
        Removed here, the claims went first, and the names were gone for good (the fault
        campaign: a handoff to a node just cut off never finished)."""
        if pid.node == self.node:
            if self.handoff.copy_exited(pid, reason):
                return  # a handed-in copy, not claimed yet: carried out when its move settles
            stopping = self._stopped or self.runtime.closing or self.handoff.abandoned
            if not (stopping and self.core.leaving):
                now = self.loop.time()
                ended = self.core.local_exit(pid, reason, now)
                if not stopping:
                    for name, kept in ended:
                        if kept:
                            self.standby.host_exited(name, pid, now)
                            if not isinstance(reason, Crash):  # a crash was logged with its traceback
                                # A process that stopped itself with a reason of its own: say so
                                # before its restart is (one line per reason and interval).
                                self._ratelog.info(
                                    ("stopped", repr(reason)[:80]),
                                    "%r (%r) stopped with reason %r",
                                    name,
                                    pid,
                                    reason,
                                )
                        else:
                            self._removed(name, pid)
            self._hosting.pop(pid, None)
            self._store_epochs.pop(pid, None)
            self._store_spared.discard(pid)
            self._changed()

    # --- the public API (called by Node) ----------------------------------------------------

    def resolve(self, name: Any) -> Pid:
        """Any caller; never awaits."""
        pid = self.pids.get(name)
        if pid is None:
            raise NameNotFound(name)
        return pid

    async def register(
        self,
        name: Any,
        factory: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        restart: str,
        handoff_timeout: float,
        timeout: float,
        existing_ok: bool,
        replicas: int | None = None,
    ) -> Pid:
        """Register ``name`` on its owner; ``existing_ok``: answer with the pid that holds
        it already (``whereis_or_register``) instead of raising ``AlreadyRegistered``.

        The caller's task (``Node.register``); awaits the owner's reply."""
        position = _check_name(name)
        if restart not in RESTART_POLICIES:
            raise ValueError(f"restart must be one of {RESTART_POLICIES}, not {restart!r}")
        if replicas is not None and (not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1):
            raise ValueError(f"replicas must be an int of at least 1 (or None: the node's default), not {replicas!r}")
        ref = factory_ref(factory)
        for value in (args, kwargs):
            if value:
                encode_value(value)  # refuse arguments that could not reach the owner, here
        existing = self.pids.get(name)
        if existing is not None:
            if existing_ok:
                return existing
            raise AlreadyRegistered(existing, name)
        owner = self.core.placement.owner_of_hash(position)
        if owner is None:
            raise NoNodeAvailable(f"no node may own {name!r} now (no server nodes, or no quorum)")
        spec = Spec(ref, list(args), dict(kwargs), restart, handoff_timeout, replicas or 0)
        reply = await self._register_at(owner, name, spec, timeout)
        if existing_ok and reply.status == REGISTRY_EXISTS and reply.pid is not None:
            return reply.pid
        pid = _outcome(reply, name)
        if pid is None:
            raise FactoryError(f"unexpected registry reply {reply!r}")
        return pid

    async def register_name(self, name: Any, pid: Pid, timeout: float) -> None:
        """The caller's task (``Node.register_name``); awaits the host's reply."""
        _check_name(name)
        if pid.node == self.node:
            _outcome(self._register_name_here(name, pid), name)
        else:
            _outcome(await self._request(pid.node, RegisterNameRequest(0, name, pid), timeout), name)

    async def unregister(self, name: Any, timeout: float) -> None:
        """The caller's task (``Node.unregister``); awaits the host's reply."""
        pid = self.pids.get(name)
        if pid is None:
            return
        if pid.node == self.node:
            await self._unregister_here(name, pid, timeout)
        else:
            await self._request(pid.node, UnregisterRequest(0, name, pid), timeout)

    async def _unregister_here(self, name: Any, pid: Pid, timeout: float) -> bool:
        """Remove this node's claim of ``name`` by ``pid``; whether a claim was removed.

        If ``pid`` is moving or has moved (a handoff of it is in flight, or done since the
        caller looked it up), the request follows it to its successor: otherwise the new
        owner's claim would register the name again after the caller was told it is gone.

        The caller's task or a serve task; awaits the handoff of ``pid`` in flight.
        """
        removed = self.core.local_unclaim(name, pid)
        if removed:
            self._removed(name, pid)
            self._unregistered[pid] = None
            if len(self._unregistered) > _UNREGISTERED_MEMORY:
                del self._unregistered[next(iter(self._unregistered))]
        self._changed()
        await self.handoff.settled(pid, timeout)  # let it commit or fail first
        if pid.incarnation != self.runtime.incarnation:
            return removed
        successor = self.runtime.forwarding.get(pid.id)
        if successor is None:
            return removed
        if successor.node == self.node:
            return await self._unregister_here(name, successor, timeout) or removed
        reply = await self._request(successor.node, UnregisterRequest(0, name, successor), timeout)
        return (reply.status == REGISTRY_OK and reply.pid is not None) or removed

    async def join(self, group: Any, pid: Pid, timeout: float) -> None:
        """The caller's task (``Node.join``); awaits the host's reply."""
        _check_name(group)  # here, so a remote join fails as a local one does (TypeError)
        if pid.node == self.node:
            _outcome(self._join_here(group, pid))
        else:
            _outcome(await self._request(pid.node, GroupJoinRequest(0, group, pid), timeout))

    async def leave(self, group: Any, pid: Pid, timeout: float) -> None:
        """The caller's task (``Node.leave``); awaits the host's reply."""
        if pid.node == self.node:
            self._leave_here(group, pid)
        else:
            await self._request(pid.node, GroupLeaveRequest(0, group, pid), timeout)

    async def multi_call(self, group: Any, message: Any, timeout: float) -> list[Reply]:
        """The caller's task (``Node.multi_call``); awaits every member's reply."""
        members = self.core.members(group)

        async def one(pid: Pid) -> Reply:
            try:
                return Reply(pid, await self.runtime.call(pid, message, timeout))
            except Exception as exc:
                return Reply(pid, error=exc)

        return list(await asyncio.gather(*(one(pid) for pid in members)))

    # --- requests to registry servers ---------------------------------------------------------

    def _register_at(
        self,
        owner: str,
        name: Any,
        spec: Spec,
        timeout: float,
        lineage: Lineage | None = None,
        base: Lineage | None = None,
    ) -> Coroutine[Any, Any, RegistryReply]:
        """Start ``name`` from ``spec`` on ``owner`` (this node, or another's registry server)
        and claim it there: the one place a registration is asked for. ``lineage``, ``base``:
        a restart's, whose checkpoints the owner restores first.

        The coroutine to await for the reply, not one of its own: a coroutine frame less on
        the path of every registration (each one is made, resumed and unwound once per
        request). For the caller's task or a restart lane task."""
        if owner != self.node:
            return self._request(owner, RegisterRequest(0, name, spec, lineage, base), timeout)
        if lineage is None:
            return self._register_here(name, spec, None)
        return self._restore_and_register_here(name, spec, lineage, base)

    async def _restore_and_register_here(
        self, name: Any, spec: Spec, lineage: Lineage, base: Lineage | None
    ) -> RegistryReply:
        """``_register_at`` this node, for a restart with checkpoints: restored first."""
        return await self._register_here(name, spec, await self._restore(name, lineage, base))

    async def _request(self, node: str, request: RegistryRequest, timeout: float) -> RegistryReply:
        """Send ``request`` (its user values as they are; its ``ref`` is set on the way) to
        ``node``'s registry server and wait for the reply.

        A node whose link agreed on protocol version 1 or 2 gets it as a list, in a call to
        its registry server, as before version 3; its list reply is read as a
        ``RegistryReply``. With no link up yet (no version agreed), the request waits for
        one (within ``timeout``).

        Raises:
            NoNodeAvailable: ``node`` is not up (or its new link closed at once).
            CallTimeout: no link to ``node`` came up within ``timeout``.
            CallTimeout, ProcessExited, UndecodableMessage: as a call to the server.

        The caller's task; awaits the reply (or the timeout).
        """
        server = self._server(node)
        version = self.transport.peer_version(node)
        if version == 0 and self._connect is not None:
            # No link now, so no version agreed: the list form would do for any version,
            # but it has no lineage, base or replicas, and a restart sent in it started
            # fresh on its owner beside the checkpoints it held (the checkpointed
            # campaign, seed 864894953: a leaving node's restart requests, sent while a
            # partition had closed its links). Wait for the link, within the timeout.
            started = self.loop.time()
            try:
                await self._connect(node, timeout)
            except TimeoutError:
                raise CallTimeout(f"no link to {node} within {timeout} s for a registry request") from None
            timeout = max(0.0, timeout - (self.loop.time() - started))
            version = self.transport.peer_version(node)
            if version == 0:
                raise NoNodeAvailable(f"the link to {node} closed again before a registry request")
        if version >= 3:
            reply = await self.runtime.request(server, _on_wire(request), timeout)
        else:
            reply = _reply_from_list(await self.runtime.call(server, _as_list(request), timeout), request)
        if isinstance(reply, RegistryReply):
            return reply
        return _error("FactoryError", f"unexpected registry reply {reply!r}")

    def _server(self, node: str) -> Pid:
        """Any caller; never awaits."""
        incarnation = self._incarnation_of(node)
        if incarnation is None:
            raise NoNodeAvailable(f"node {node} is not up")
        return Pid(node, incarnation, REGISTRY_SERVER_ID)

    # --- the registry server: requests from any node, this one's own served directly --------------

    def _on_request(self, node: str, request: RegistryRequest) -> None:
        """A request from another node (protocol version 3): served at once when its batch
        is dispatched, in a task of its own from where it first suspends (``run_soon``)."""
        if self._stopped or self.runtime.closing:
            self.transport.post(node, RegistryReply(request.ref, REGISTRY_ERROR, None, "ProcessExited", NOPROC))
            return
        self._serving += 1  # from now: the requests of one batch are all counted before any is served
        serve = self._serve_request(node, request)
        if not self.runtime.run_soon(serve):
            self.spawn(serve)

    async def _serve_request(self, node: str, request: RegistryRequest) -> None:
        """A serve task of its own; awaits."""
        try:
            reply = await self._serve(request, node)
        finally:
            self._serving -= 1
        reply.ref = request.ref
        self._answer(node, lambda: self.transport.post(node, reply))

    def _on_reply(self, node: str, reply: RegistryReply) -> None:
        """Dispatcher callback; never awaits."""
        self.runtime.answer(node, reply.ref, reply)

    async def serve(self, message: Any, caller: Caller) -> None:
        """A request as a list: from a node of protocol version 1 or 2 (see ``_request``), or
        a call to the registry server from this node.

        A serve task (``RegistryServer.handle_call``); awaits."""
        request = _request_from_list(message)
        if request is None:
            reply = _error("FactoryError", f"unknown registry request {message!r}")
        else:
            self._serving += 1
            try:
                reply = await self._serve(request, caller.node)
            finally:
                self._serving -= 1
        self._answer(caller.node, lambda: caller.reply(_reply_as_list(reply, request)))

    async def _serve(self, request: RegistryRequest, node: str | None) -> RegistryReply:
        """Carry ``request`` out here (it came from ``node``, None for this node); a failure
        is an error reply, named by its exception type.

        A serve task; awaits (a registration runs its factory)."""
        try:
            if isinstance(request, RegisterRequest):
                if request.spec.restart not in RESTART_POLICIES:
                    return _error(
                        "FactoryError", f"restart must be one of {RESTART_POLICIES}, not {request.spec.restart!r}"
                    )
                lineage = request.lineage  # None: a fresh start, nothing to restore
                restored = None if lineage is None else await self._restore(request.name, lineage, request.base, node)
                return await self._register_here(request.name, request.spec, restored)
            if isinstance(request, RegisterNameRequest):
                return self._register_name_here(request.name, request.pid)
            if isinstance(request, UnregisterRequest):
                removed = await self._unregister_here(request.name, request.pid, 10.0)
                return RegistryReply(0, REGISTRY_OK, request.pid if removed else None)
            if isinstance(request, GroupJoinRequest):
                return self._join_here(request.group, request.pid)
            return self._leave_here(request.group, request.pid)
        except DistableError as exc:
            return _error(type(exc).__name__, str(exc))
        except Exception as exc:
            log.exception("%s: registry request %r from %s failed", self.node, request, node or "this node")
            return _error("FactoryError", f"{type(exc).__name__}: {exc}")

    def _answer(self, node: str | None, send: Callable[[], object]) -> None:
        """Send a reply to ``node`` (None: this node) with ``send``, after the Delta of
        the change it reports, on the same FIFO link: the caller's node then knows the new
        entry when its register/unregister/join returns.

        A serve task; never awaits."""
        if not self._flush_scheduled:
            send()  # no change of this turn is waiting to go out
            if node is not None and not self._serving:
                self.transport.flush_now(node)
            return
        self._replies.append((node, send))
        if not self._serving:
            # No other request is being served here: flush now rather than at the end of
            # the turn (one round trip is all the caller waits for). Otherwise the last one
            # served, or the flush already scheduled, posts one Delta per peer for every
            # change of the turn, then the replies waiting (``_send_replies``): requests
            # served together (a batch of them arrived in one frame) share their Deltas
            # and their frames instead of one each.
            self._flush()

    def _send_replies(self) -> None:
        """Send the replies ``_answer`` held, after the Deltas ``_flush`` just posted, and
        write each caller's frame now (before the frames of the other replicas: each
        write wakes a peer, which costs tens of µs on a VM).

        From ``_flush``; never awaits."""
        replies, self._replies = self._replies, []
        to: dict[str, None] = {}
        for node, send in replies:
            try:
                send()
            except Exception:
                log.exception("%s: cannot send a registry reply to %s", self.node, node or "this node")
            if node is not None:
                to[node] = None
        for node in to:
            self.transport.flush_now(node)

    async def _register_here(
        self, name: Any, spec: Spec, restored: Restored | None = None, *, restart: bool = False
    ) -> RegistryReply:
        """Start ``name`` here from ``spec`` and claim it, unless it is registered already;
        with ``restored`` (a restart's restore), its checkpoint's state reaches the new
        process's ``end_handoff`` before any other message, as a handoff's ``Resume`` does.
        With a durable store, a registration (neither ``restored`` nor ``restart``) is
        saved in it before it is claimed (``_store_registered``).

        Concurrent attempts for one name are serialized: the later ones answer with the
        first one's pid.

        A serve task or a restart lane task; awaits the factory.
        """
        for _ in range(3):
            existing = self.pids.get(name)
            if existing is not None:
                return RegistryReply(0, REGISTRY_EXISTS, existing)
            pending = self._pending.waiter(name)
            if pending is None:
                break
            first = await asyncio.shield(pending)
            if first is not None:
                return RegistryReply(0, REGISTRY_EXISTS, first)
        self._pending.begin(name)
        pid: Pid | None = None
        try:
            pid = await run_factory(spec.factory, spec.args, spec.kwargs, self.runtime, self.config.factories)
            if restored is None and self.store is not None:
                try:
                    await self._store_registered(name, pid, spec, restart)
                except DistableError:
                    pid = None  # concurrent attempts must not answer with it
                    raise
            lineage: Lineage | None = None
            base: Lineage | None = None
            if restored is not None:
                # A restart that restored: its record starts now (its first act is to put the
                # restored state under its new lineage). A fresh one gets it at its first
                # checkpoint, if ever.
                if restored.checkpoint is not None:
                    self._deliver_checkpoint(name, pid, restored.checkpoint.state)
                lineage, base = self._host_started(name, pid, spec, restored=restored)
            self.core.local_claim(name, pid, spec, self.loop.time(), lineage=lineage, base=base)
            self._registered(name, pid, spec)
            self._changed()
        except DistableError as exc:
            return _error(type(exc).__name__, str(exc))
        finally:
            self._pending.end(name, pid)  # wakes concurrent attempts: a pid, or None if this one failed
        return RegistryReply(0, REGISTRY_OK, pid)

    def _register_name_here(self, name: Any, pid: Pid) -> RegistryReply:
        """A serve task; never awaits."""
        if self.runtime.local(pid) is None:
            return _error("ProcessExited", NOPROC)
        existing = self.pids.get(name)
        if existing is not None:
            return RegistryReply(0, REGISTRY_OK if existing == pid else REGISTRY_EXISTS, existing)
        self.core.local_claim(name, pid, None, self.loop.time())
        self._changed()
        return RegistryReply(0, REGISTRY_OK, pid)

    def _join_here(self, group: Any, pid: Pid) -> RegistryReply:
        """A serve task; never awaits."""
        if self.runtime.local(pid) is None:
            return _error("ProcessExited", NOPROC)
        self.core.local_join(group, pid)
        self._changed()
        return RegistryReply(0, REGISTRY_OK, pid)

    def _leave_here(self, group: Any, pid: Pid) -> RegistryReply:
        """A serve task; never awaits."""
        left = self.core.local_leave(group, pid)
        self._changed()
        return RegistryReply(0, REGISTRY_OK, pid if left else None)

    # --- restarts -------------------------------------------------------------------------------

    async def _restart(self, command: StartName, restoring: asyncio.Future[Restored] | None = None) -> None:
        """Restore the name's checkpoints (if its claim had any; ``restoring``: the restore
        begun already), then start it unless it is registered again meanwhile. A restart lane
        task; awaits the restore and the factory."""
        name, spec, reason = command.name, command.spec, command.reason
        restored = await self._restore(name, command.lineage, command.base, begun=restoring)
        reply = await self._register_here(name, spec, restored, restart=True)
        if reply.status == REGISTRY_OK and reply.pid is not None:
            self._publish(ProcessRestarted(name, reply.pid, reason))
        elif reply.status == REGISTRY_ERROR:
            delay = self.core.schedule_restart(name, spec, self.loop.time(), command.lineage, command.base)
            self._changed()
            what = "cannot restart %r: %s; trying again in %.2f s"
            self._ratelog.warning(("restart", spec.factory), what, name, reply.detail, delay)

    async def _restart_elsewhere(self, command: RestartElsewhere) -> None:
        """A restart lane task; awaits the owner's reply."""
        spec = command.spec
        try:
            reply = await self._register_at(
                command.owner, command.name, spec, spec.handoff_timeout, command.lineage, command.base
            )
            if reply.status == REGISTRY_ERROR:
                raise DistableError(f"{reply.error}: {reply.detail}")
        except Exception as exc:
            # Try again (with backoff) unless the name is back meanwhile: the restart may be
            # the only one (the owner never knew the claim of a node that died).
            delay = self.core.schedule_restart(command.name, spec, self.loop.time(), command.lineage, command.base)
            self._changed()
            if isinstance(exc, CallTimeout):
                # An owner restarting the thousands of names of a dead node answers late; it
                # may well have restarted this one (every survivor asks it): not "cannot".
                what = "restart of %r on %s not confirmed (%s; the owner may be busy): asking again in %.2f s"
            else:
                what = "cannot restart %r on %s: %s; trying again in %.2f s"
            self._ratelog.warning(("restart", spec.factory), what, command.name, command.owner, exc, delay)

    def _stop_local(self, pid: Pid) -> None:
        """From ``_command``; never awaits."""
        proc = self.runtime.local(pid)
        if proc is not None:
            ask_to_die(self.runtime, proc)

    # --- handoffs (the protocol itself is in _handoff.py) -----------------------------------------

    async def _hand_off(self, command: StartHandoff) -> None:
        """A handoff lane task; awaits the whole handoff."""
        try:
            await self.handoff.hand_off(command)
        finally:
            self._handoff_finished()
        self._changed()  # carry out what the outcome made the core decide (handoff_failed)
        self._check_idle()

    def _retry_later(self) -> None:
        """A move failed: retry soon rather than at the next sync tick (a peer refused while
        draining, a timeout): backed off per retry round that still fails, capped at the sync
        interval. Per round, not per failure: a wave of refusals (every node draining at once)
        is one failure, and doubling per failure pushed the retry past the drain's own deadline.

        Handoff coordinator callback; never awaits."""
        if self._retry_handle is None:
            delay = self._retry_backoff.next_delay(self.loop.time())
            self._retry_handle = self.loop.call_later(delay, self._retry_rebalance)

    def _retry_reset(self) -> None:
        """Handoff coordinator callback; never awaits."""
        self._retry_backoff.reset()

    def _retry_rebalance(self) -> None:
        """The retry timer; never awaits."""
        self._retry_handle = None
        self.core.rebalance()
        self._changed()

    # --- conflicts ----------------------------------------------------------------------------------

    async def _give_state(self, command: ResolveConflict) -> None:
        """Retire the local copy ``command.loser`` (docs/internals.md, "Resolution"): its
        state goes to the winner's ``resolve_conflict``, and from the moment it is taken the
        loser handles nothing more: it is frozen like a handing-off process, and everything
        that reaches it afterwards (its mailbox first, then stragglers through its retired
        pid) is forwarded to the winner in order, behind the state. Otherwise a call it
        answered after giving its state would be acknowledged and then lost with it.

        This task freezes the loser and sends its state; the loser retires when the
        winner's node confirms it took the state (``_on_conflict_state_taken``), stays
        frozen until then, and resumes only if the exchange is given up (the rules of
        ``_conflicts.py``). So a lane task never waits on the winner: a heal's thousands
        of conflicts go out at the pace the losers answer, and their answers come back
        as the winner's node gets through them.

        A conflict lane task; awaits the loser's state."""
        name, winner = command.name, command.winner
        proc = self.runtime.local(command.loser)
        has_state, state = False, None
        if proc is not None:
            freeze = FreezeForHandoff(self.runtime, name, always=True)
            try:
                answer = await within(detached(self.runtime.run_in(proc, freeze)), 5.0)
            except Exception:
                answer = None
                freeze.cancelled = True
                self.runtime.freeze(proc)  # busy or stuck: it stops after its current handler
            if isinstance(answer, Resume):
                has_state, state = True, answer.state
        if not has_state:
            has_state, state = self._last_checkpoint(name, command.loser)
        self._conflict_ref += 1
        ref = self._conflict_ref
        holders = self.standby.holders_of(name, command.loser)  # the winner takes them over
        try:
            sent = self._deliver_conflict_state(name, winner, has_state, state, ref, holders)
        except DistableError as exc:
            log.error("%s: cannot send the state of %r's losing copy: %s", self.node, name, exc)
            sent = None
        losing = _Losing(name, command.loser, winner, proc)
        if sent is None or isinstance(sent, str):
            if sent == _WINNER_GONE:
                self._loser_stays(losing)
            else:
                self._retire_loser(losing)  # delivered here, or the user removed the name
            return
        # Keep the loser frozen until the winner's node has the state: lost with a link
        # (the winner's node dropped it, thinking this node dead), it would take along
        # whatever the loser acknowledged.
        losing.sent_to, losing.message = sent
        self._losing[ref] = losing
        incarnation = self._incarnation_of(losing.sent_to) or 0
        self.conflict_outbox.sent(losing.sent_to, ref, self.loop.time(), incarnation)
        self._changed()  # the outbox's deadline, for the timer

    def _last_checkpoint(self, name: Any, loser: Pid) -> tuple[bool, Any]:
        """A conflict's loser gave no state (it answered ``begin_handoff`` otherwise, or not
        within 5 s: busy in a handler, or its node was paused): its last checkpoint, if it
        made one, goes to the winner's ``resolve_conflict`` instead, as a handoff's
        ``Restart()`` gets the new host the last checkpoint. Without it, the writes the
        loser acknowledged with a checkpoint were lost with it (the fault campaign, seed
        1525232722). ``(False, None)`` when there is none (or it cannot be decoded here).
        Never awaits."""
        checkpoint = self.standby.hosted(name, loser)  # its own record, even displaced by the winner's
        if checkpoint is None or checkpoint.writer != loser:
            return False, None
        return self._decoded(name, checkpoint.state, "the last checkpoint of %r's losing copy")

    def _decoded(self, name: Any, data: bytes, what: str) -> tuple[bool, Any]:
        """A checkpoint's state decoded, as ``(True, state)``; ``(False, None)``, logged
        with ``what`` (a phrase naming ``name`` by ``%r``), when it cannot be."""
        try:
            return True, decode_value(data)
        except Exception as exc:
            log.error("%s: cannot decode " + what + ": %s", self.node, name, exc)
            return False, None

    def _merge_gone(self, name: Any, pid: Pid, state: Any, holders: Sequence[Holder], what: str) -> bool:
        """``state``, of a copy of ``name`` that is gone, to the local ``pid``'s
        ``resolve_conflict``, which takes the gone copy's checkpoints over (with
        ``holders``). False, logged with ``what``, when the state cannot be given."""
        try:
            self._deliver_conflict_state(name, pid, True, state, 0, holders)
        except DistableError as exc:
            log.error("%s: cannot give %r the state of " + what + ": %s", self.node, name, exc)
            return False
        return True

    def _on_conflict_state_taken(self, node: str, msg: ConflictStateTaken) -> None:
        """Dispatcher callback; never awaits."""
        relayed = self._relays.pop(msg.ref, None)
        if relayed is not None:  # the answer to a state passed on: the loser's node gets it now
            self._relay_refs.pop(relayed, None)
            self._answer_state(relayed[0], relayed[1], msg.winner_gone)
            return
        taken, due = self.conflict_outbox.taken(node, msg.ref, self.loop.time())
        self._conflict_due(due)
        if taken and msg.winner_gone:
            self._loser_stays(self._losing.pop(msg.ref))
        elif taken:
            self._retire_loser(self._losing.pop(msg.ref))

    def _conflict_due(self, due: Due) -> None:
        """Carry out what the conflict outbox asks: send states again, as they were (the
        winner's node takes a ref once), and resume the losers it gave up. From the
        dispatcher or the timer; never awaits."""
        for node, ref in due.resend:
            try:
                self.transport.post(node, self._losing[ref].message)
            except Exception as exc:
                self._ratelog.warning(("post", node), "cannot send ConflictState to %s: %s", node, exc)
        for ref in due.given_up:
            self._conflict_given_up(ref)

    def _conflict_given_up(self, ref: int) -> None:
        """The winner's node did not confirm ``ref``'s state (it stayed down, came back as a
        new incarnation, or stayed silent): the loser resumes, and the conflict is settled
        again shortly. Never awaits."""
        losing = self._losing.pop(ref)
        self._ratelog.warning(
            ("conflict", losing.sent_to),
            "%s did not confirm it has the state of %r's losing copy %r; it stays, and the "
            "conflict is settled again shortly",
            losing.sent_to,
            losing.name,
            losing.loser,
        )
        self._resume_loser(losing)

    def _loser_stays(self, losing: _Losing) -> None:
        """The winner of ``losing``'s conflict was gone when its state arrived (it exited,
        crashed, or its node restarted): the state was dropped, and the loser is the one
        live copy the conflict knows of. Retired, it would leave the name with no copy at
        all. It resumes, and the tracker settles the conflict again a second later from
        the claims: the winner's claim was removed before the answer left its node (one
        FIFO link), so the loser wins unless another copy claims the name by then (a
        restart of the winner), and then the two meet as a conflict like any other.
        Never awaits."""
        log.info(
            "%s: %r, which won %r, was gone when the state of the losing copy %r reached it; "
            "%r stays, and the conflict is settled again shortly",
            self.node,
            losing.winner,
            losing.name,
            losing.loser,
            losing.loser,
        )
        self._resume_loser(losing)

    def _resume_loser(self, losing: _Losing) -> None:
        """``losing``'s frozen loser handles messages again, and its conflict is settled
        again a second later, from the claims (``_conflict_retry``). Never awaits."""
        proc = losing.proc
        if proc is not None and proc.alive:
            self.runtime.unfreeze(proc)
        self.loop.call_later(1.0, self._conflict_retry, losing.name, losing.loser)

    def _retire_loser(self, losing: _Losing) -> None:
        """The winner has the state of ``losing``'s copy: forward its mailbox, retire its pid
        to the winner, tell it to die, remove its claim. Never awaits."""
        name, loser, winner, proc = losing.name, losing.loser, losing.winner, losing.proc
        log.info("%s: %r lost %r to %r; stopping it", self.node, loser, name, winner)
        if proc is not None and proc.alive:
            self.runtime.forward_mailbox(proc, winner)  # markers parked in it are dropped: no handoff relays them
            self.runtime.retire(proc, winner, self.config.forward_ttl)
            gate = self.runtime.gate_of(proc)
            if gate is not None:
                # A copy just handed in, its gate still closed: what it holds goes to the winner
                # now, behind the mailbox, as the pid forwards from now on. Waiting for the
                # markers (a node that saw the winner's claim and not this one's sends none)
                # held it until the handoff timeout, while the same nodes' later messages to
                # this pid went to the winner at once, ahead of it. Only a message of theirs
                # still on its way along the old route can now come after them.
                gate.release_all()
            ask_to_die(self.runtime, proc)
            self.runtime.unfreeze(proc)
        self.core.conflict_done(name, loser)
        self.standby.host_retired(name, loser, self.loop.time())
        self._hosting.pop(loser, None)
        self._changed()

    def _conflict_retry(self, name: Any, loser: Pid) -> None:
        """The retry timer of a conflict; never awaits."""
        if not self._stopped:
            self.core.conflict_failed(name, loser)
            self._changed()

    def _on_conflict_state(self, node: str, msg: ConflictState) -> None:
        """The winner's side: deliver a loser's state, once per ref, and confirm it at once,
        in this handler (the loser's node relies on the answers coming in the order the
        states arrived). A state passed on to the node of the winner's successor (it was
        handed off) is confirmed only when that node confirms it, and a successor found
        gone there leaves the loser running: confirmed on the way, it let the loser retire
        while the state was dropped further on, and the name lost its last copy (the
        fault campaign, seed 3481290329). Dispatcher callback; never awaits."""
        if msg.ref and self.conflict_inbox.has(node, msg.ref):
            self.transport.post(node, ConflictStateTaken(msg.ref))  # taken before: its answer was lost
            return
        relay = self._relay_refs.get((node, msg.ref), 0) if msg.ref else 0
        if msg.ref and not relay:
            self._conflict_ref += 1
            relay = self._conflict_ref
        try:
            done = self._deliver_conflict_state(msg.name, msg.winner, msg.has_state, msg.state, relay, msg.holders)
        except DistableError as exc:
            log.error("%s: cannot pass on the state of %r's losing copy: %s", self.node, msg.name, exc)
            return  # not taken, not answered: the loser's node gives it up in the end (rule 4)
        if isinstance(done, tuple):  # passed on: answered when the successor's node answers
            if msg.ref and (node, msg.ref) not in self._relay_refs:
                self._relays[relay] = (node, msg.ref)
                self._relay_refs[(node, msg.ref)] = relay
                self._relay_expiry.drop_later(self._relays, relay)
                self._relay_expiry.drop_later(self._relay_refs, (node, msg.ref))
            return
        self._answer_state(node, msg.ref, done == _WINNER_GONE)

    def _answer_state(self, node: str, ref: int, winner_gone: bool) -> None:
        """Tell ``node`` the state it sent under ``ref`` was taken, or that its winner is gone
        (not taken: a repeat is looked at again). Never awaits."""
        if not ref:
            return
        if not winner_gone:
            self.conflict_inbox.take(node, ref, self.loop.time())
        self.transport.post(node, ConflictStateTaken(ref, winner_gone=winner_gone))

    def _deliver_conflict_state(
        self, name: Any, winner: Pid, has_state: bool, state: Any, ref: int, holders: Sequence[Holder] = ()
    ) -> tuple[str, ConflictState] | str:
        """Give ``winner`` the losing copy's state (its ``resolve_conflict``), wherever it
        runs: on another node, or, if it was handed off meanwhile, at its successor (a
        handed-off pid forwards for ``forward_ttl``; followed a few hops at most). Where it
        runs, it takes the name's checkpoints over, with the loser's ``holders``.

        Returns:
            The node it was sent to (which confirms it) and the message; or
            ``_DELIVERED`` (delivered here); or, if the winner is gone and the state was
            dropped, ``_UNREGISTERED`` when a user's unregister removed its claim here (its
            loser retires: the name was removed) and ``_WINNER_GONE`` otherwise (its loser
            stays).

        Raises:
            DistableError: the state cannot cross the wire.

        Dispatcher callback, or the ``_give_state`` lane task; never awaits.
        """
        for _ in range(8):
            if winner.node != self.node:
                message = ConflictState(to_wire(name), winner, has_state, to_wire(state), ref, list(holders))
                self.transport.post(winner.node, message)
                return winner.node, message
            proc = self.runtime.local(winner)
            if proc is not None:
                merge = functools.partial(self._merge_into, name, has_state, state, holders)
                detached(self.runtime.run_in(proc, merge))
                self._take_over(name, winner, holders)
                return _DELIVERED
            if winner in self._unregistered:
                break
            if winner.incarnation != self.runtime.incarnation:
                break  # a pid of this node's previous life: nothing forwards it
            successor = self.runtime.forwarding.get(winner.id)
            if successor is None:
                break
            winner = successor
        if winner in self._unregistered:
            log.info(
                "%s: the copy of %r that won a conflict was unregistered: its loser's state is dropped", self.node, name
            )
            return _UNREGISTERED
        log.info("%s: the copy of %r that won a conflict is gone: its loser's state is dropped", self.node, name)
        return _WINNER_GONE

    async def _merge_into(
        self, name: Any, has_state: bool, state: Any, holders: Sequence[Holder], proc: Process
    ) -> None:
        """In ``proc``, the winner, in mailbox order: ``resolve_conflict(state)``; or, if
        ``proc`` was retired while the state waited in its mailbox (it was frozen in a
        handoff whose ``begin_handoff`` had given its state already, or it lost a conflict
        itself), pass the state on to its successor: run in the retired copy, the merge
        would be lost with it, and the loser's node, told the state was taken, has retired
        its copy. A process operation (``run_in``)."""
        runtime = self.runtime
        successor = runtime.forwarding.get(proc.pid.id) if runtime.local(proc.pid) is not proc else None
        if successor is None:
            await proc.resolve_conflict(state)
            return
        log.info("%s: %r moved while the state of its losing copy waited; passed on to %r", self.node, name, successor)
        try:
            # ref 0: on the link the handoff's commit and forwarded messages took, behind them
            self._deliver_conflict_state(name, successor, has_state, state, 0, holders)
        except DistableError as exc:
            log.error("%s: cannot pass on the state of %r's losing copy: %s", self.node, name, exc)

    # --- checkpoints (the standby core; the protocol is in _standby.py) ----------------------------

    def _speaks_checkpoints(self, node: str) -> bool:
        """Whether ``node``'s link agreed on a protocol version with checkpoints (a node not
        linked yet counts as one: what is posted to it dials it, and a peer that turns
        out older is never made a standby). Query; reads only."""
        version = self.transport.peer_version(node)
        return version == 0 or version >= CHECKPOINT_VERSION

    def _sync_placement(self) -> None:
        """Give the standby core the tracker's placement when it changed, less the server
        nodes that speak no checkpoints (they are never standbys). From ``_flush``."""
        placement = self.core.placement
        if placement is self._standby_source:
            return
        self._standby_source = placement
        older = [n for n in placement.nodes if n != self.node and not self._speaks_checkpoints(n)]
        if older:
            placement = self.core.strategy.place([n for n in placement.nodes if n not in older])
        self.standby.placement_changed(placement, self.loop.time())

    def _flush_standby(self) -> None:
        """Carry out the standby core's outputs: its messages, the checkpoint waits and
        restores it completed, the refusals it reports (which may take a name over, and
        so make more outputs: a few rounds at most). From ``_flush``; never awaits."""
        post = self.transport.post
        for _ in range(4):
            out = self.standby.take()
            if not (out.send or out.done or out.restored or out.refused):
                return
            for node, msg in out.send:
                if not self._speaks_checkpoints(node):
                    continue
                try:
                    post(node, msg)
                except Exception as exc:
                    self._ratelog.warning(("post", node), "cannot send %s to %s: %s", type(msg).__name__, node, exc)
            for done in out.done:
                self._checkpoint_done(done)
            for restored in out.restored:
                entry = self._restores.pop(restored.token, None)
                if entry is not None and not entry[0].done():
                    entry[0].set_result(restored)
            if out.restored and self._restore_queue:
                self._start_restores_soon()
            for refused in out.refused:
                self._on_refused(refused)

    def _on_checkpoint_message(self, node: str, msg: Any) -> None:
        """Dispatcher callback for the checkpoint messages (tags 52 to 56); never awaits.

        A message the core cannot take (a peer's bug: a name that is no hashable value,
        say) is a log line naming the peer, not a crash of the dispatcher."""
        try:
            self.standby.on_message(node, msg, self.loop.time())
        except Exception as exc:
            self._ratelog.warning(
                ("checkpoint message", node), "dropped a malformed %s from %s: %r", type(msg).__name__, node, exc
            )
        self._changed()

    def _claimed(self, name: Any) -> set[Lineage]:
        """The checkpoint lineages ``name`` still needs here: those of its claims, of the
        restarts owed, and of the restores in flight (the standby core's ``sweep``)."""
        found = self.core.claimed_lineages(name)
        for _, restoring, lineage, base in self._restores.values():
            if restoring == name:
                found.add(lineage)
                if base is not None:
                    found.add(base)
        return found

    def _claims_index(self) -> Callable[[Any], set[Lineage]]:
        """``_claimed`` for a sweep: the restarts owed and the restores in flight indexed by
        name once (a node's death leaves thousands of each for a while; scanning them for
        every record old enough made the sweep quadratic). From ``_on_timer``."""
        restarts = self.core.restart_lineages()
        for _, name, lineage, base in self._restores.values():
            restarts.setdefault(name, []).extend((lineage, base))
        claimed = self.core.claimed_lineages
        return lambda name: claimed(name, restarts)

    def _host_started(
        self,
        name: Any,
        pid: Pid,
        spec: Spec,
        *,
        resumed: CheckpointHandover | None = None,
        resume_state: bytes | None = None,
        restored: Restored | None = None,
        handed_in: bool = False,
    ) -> tuple[Lineage, Lineage | None]:
        """The local ``pid`` (started from ``spec``) holds ``name`` from now: the standby
        core keeps its checkpoints (``handed_in``: a copy handed in without checkpoints,
        not claimed yet). Returns the lineage and base its claim carries."""
        replicas = spec.replicas or self.config.replicas
        if self.store is not None:
            restored = self._store_lineage_floor(name, pid, resumed, restored)
        lineage = self.standby.host_started(
            name,
            pid,
            spec,
            replicas,
            self.loop.time(),
            resumed=resumed,
            resume_state=resume_state,
            restored=restored,
            handed_in=handed_in,
        )
        self._hosting[pid] = name
        self._changed()
        return lineage

    def _deliver_checkpoint(self, name: Any, pid: Pid, state: bytes) -> None:
        """Put a checkpoint's ``state`` first in the new process ``pid``'s mailbox: its
        ``end_handoff(state)`` runs before any other message (the same path as a handoff's
        ``Resume``). A state this node cannot decode starts the process fresh (logged)."""
        proc = self.runtime.local(pid)
        if proc is None:
            return
        decoded, value = self._decoded(name, state, "the checkpoint of %r (it starts fresh)")
        if not decoded:
            return
        self.runtime.run_first(proc, lambda p: p.end_handoff(value)).add_done_callback(log_failure(proc, "end_handoff"))

    def _registered(self, name: Any, pid: Pid, spec: Spec) -> None:
        """``name`` was registered here through a factory, as ``pid`` (a registration or a
        restart): the one place where it happens (the durable store's registration is
        written before it, in ``_register_here``: it must precede the claim)."""

    def _removed(self, name: Any, pid: Pid) -> None:
        """The local ``pid``'s ``name`` ended (unregistered; exited and not restarted): its
        checkpoints are deleted everywhere, and its record in the durable store. The one
        place where a name ends."""
        if self.store is not None:
            self._store_removed(name, pid)
        self.standby.host_removed(name, pid, self.loop.time())
        self._hosting.pop(pid, None)

    def _checkpoint_done(self, done: CheckpointDone) -> None:
        """The standby core completed the checkpoint wait ``done.token``: acknowledged by
        every standby (the one place where an acknowledged checkpoint is known: the durable
        store saves it then, before the caller's future completes), or its process stopped
        here first."""
        fut = self._checkpoint_waits.pop(done.token, None)
        saving = self._store_waits.pop(done.token, None)
        if fut is None or fut.done():
            return
        if done.ok and saving is not None:
            self.spawn(self._store_checkpoint(fut, *saving))  # resolves fut once the store has it
        elif done.ok:
            fut.set_result(None)
        else:
            why = {"exited": "its process exited", "retired": "it moved to another node", "removed": "it was removed"}
            fut.set_exception(
                DistableError(f"the checkpoint of {done.name!r} was not confirmed: {why.get(done.reason, done.reason)}")
            )

    def checkpoint(self, pid: Pid, state: Any, wait: bool, timeout: float) -> asyncio.Future[None] | None:
        """``Process.checkpoint`` of the local ``pid``: encode ``state`` and hand it to the
        standby core. With ``wait``, returns a future done once every standby holds it.

        Raises:
            DistableError: ``pid`` holds no name registered through a factory here.
            UnencodableValue: ``state`` cannot cross the wire.
            CheckpointTooLarge: its encoding is larger than ``checkpoint_max_bytes``.

        A process's handler (through the node); never awaits."""
        data = encode_value(state)
        name = self._hosting.get(pid)
        if name is None:
            name = self._start_hosting(pid)
        now = self.loop.time()
        if not wait:
            self.standby.host_checkpoint(name, pid, data, now)
            if self.store is not None:
                self._store_behind(name, data)
            self._changed()
            return None
        if len(data) > self.config.checkpoint_max_bytes:
            raise CheckpointTooLarge(len(data), self.config.checkpoint_max_bytes)
        self._token += 1
        token = self._token
        fut: asyncio.Future[None] = self.loop.create_future()
        self._checkpoint_waits[token] = fut

        def expire() -> None:
            if self._checkpoint_waits.pop(token, None) is fut and not fut.done():
                fut.set_exception(CallTimeout(f"the checkpoint of {name!r} was not confirmed within {timeout} s"))

        handle = self.loop.call_later(timeout, expire)
        fut.add_done_callback(lambda _: handle.cancel())
        self.standby.host_checkpoint(name, pid, data, now, token)
        if self.store is not None:
            self._store_wait(token, name, pid)
        self._changed()
        return fut

    def _start_hosting(self, pid: Pid) -> Any:
        """The first checkpoint of the local ``pid``, registered fresh (or handed in without
        checkpoints): the standby core starts its host record, and its claim is made again
        with the lineage it begins. Returns its name.

        Raises:
            DistableError: ``pid`` holds no name registered through a factory here."""
        claim = self.core.local_claim_of(pid)
        if claim is not None and claim.spec is not None:
            lineage, base = self._host_started(claim.key, pid, claim.spec)
            self.core.relineage(claim.key, pid, lineage, base)
            return claim.key
        incoming = self.handoff.incoming_copy(pid)  # handed in, not claimed yet (step 6)
        if incoming is not None:
            incoming.lineage, incoming.base = self._host_started(incoming.name, pid, incoming.spec, handed_in=True)
            return incoming.name
        raise DistableError(
            f"checkpoint: {pid!r} holds no name registered through a factory on this node "
            "(only a process started by register(name, factory) has standbys; not one "
            "started by spawn or registered with register_name)"
        )

    def _begin_restore(
        self, name: Any, lineage: Lineage | None, base: Lineage | None, asker: str | None = None
    ) -> asyncio.Future[Restored] | None:
        """Ask the standby core for the restore of ``name`` (see ``_restore``); its future,
        or None for a fresh start. Any plain method; never awaits."""
        if lineage is None:
            return None
        self._token += 1
        token = self._token
        fut: asyncio.Future[Restored] = self.loop.create_future()
        self._restores[token] = (fut, name, lineage, base)
        also = () if asker is None or asker == self.node else (asker,)
        self._restore_queue.append((token, name, lineage, base, also))
        self._start_restores_soon()
        return fut

    def _start_restores_soon(self) -> None:
        """``_start_restores`` in a loop turn of its own: a wave's restores then never add to
        the turn that made the wave (a node's death: its thousands of claims dropped, the
        placement changed), which the failure detector's probes wait behind. Any plain
        method; never awaits."""
        if not self._restores_scheduled:
            self._restores_scheduled = True
            self.loop.call_soon(self._start_restores)

    def _start_restores(self) -> None:
        """Hand the queued restores to the standby core while it works on fewer than
        ``RESTORE_WINDOW``. A ``call_soon`` callback (``_start_restores_soon``); never awaits."""
        self._restores_scheduled = False
        queue = self._restore_queue
        if not queue or self._stopped:
            return
        now = self.loop.time()
        while queue and self.standby.restoring() < RESTORE_WINDOW:
            token, name, lineage, base, also = queue.popleft()
            self.standby.restart_starting(name, token, lineage, base, now, also)
        self._changed()

    async def _restore(
        self,
        name: Any,
        lineage: Lineage | None,
        base: Lineage | None,
        asker: str | None = None,
        begun: asyncio.Future[Restored] | None = None,
    ) -> Restored | None:
        """Find the latest checkpoint of a restart of ``name`` whose ended claim had
        ``lineage`` and ``base`` (None: a fresh start, nothing to find); ``asker``: the node
        that asked for the restart (it may hold the only copy); ``begun``: the restore's
        future if ``_begin_restore`` began it already. A lane or serve task; awaits the
        standby core's answer (at most its fetch timeout)."""
        fut = begun if begun is not None else self._begin_restore(name, lineage, base, asker)
        if fut is None:
            return None
        restored = await fut
        if self.store is not None and (restored.checkpoint is None or not restored.complete):
            restored = await self._store_newer(restored, lineage if base is None else base)
        if not restored.complete:
            self._ratelog.warning(
                ("restore", name),
                "restore of %r incomplete: not every node answered in time; %s",
                name,
                "it starts fresh" if restored.checkpoint is None else f"it restarts from seq {restored.checkpoint.seq}",
            )
        elif restored.continued and restored.checkpoint is not None:
            # A crash restart here: a state that crashes on load crashes again, bounded by
            # the restart backoff (logged, so that loop is seen).
            log.info(
                "%s: %r restarts from its latest checkpoint (seq %d) after a crash",
                self.node,
                name,
                restored.checkpoint.seq,
            )
        return restored

    def _on_refused(self, refused: CheckpointRefused) -> None:
        """A standby refused a local copy's checkpoint: it holds the newer lineage
        ``refused.held``. Take the name over when this copy is the current one (it is the
        winner here, and that lineage is no claim's lineage or base in a replica synced
        with the writer's node, or the writer's node is gone); else wait (the refusal is
        reported again at each retry). From ``_flush_standby``; never awaits."""
        name, pid = refused.name, refused.pid
        if (name, pid) in self._adopting:
            return  # its fetch is under way (its lineage counts as claimed meanwhile)
        writer = refused.writer.node
        synced = writer == self.node or writer not in self.core.peers or self.core.synced_with(writer)
        if self.pids.get(name) == pid and synced and refused.held not in self._claimed(name):
            log.info(
                "%s: %r's checkpoints were refused by %s, which holds a stale lineage; fetching its "
                "latest state for this copy's resolve_conflict, then taking them over",
                self.node,
                name,
                refused.node,
            )
            fut = self._begin_restore(name, refused.held, None, refused.node)
            if fut is None:  # never: a refusal names a lineage
                self._take_over(name, pid, [])
                return
            self._adopting.add((name, pid))
            fut.add_done_callback(functools.partial(self._adopt_stale, name, pid, refused.held))
            return
        # One line per refusing node per interval, not per name: a heal refuses the
        # checkpoints of every name that lost, thousands at once.
        self._ratelog.warning(
            ("refused", refused.node),
            "checkpoint of %r (%r) refused by %s: it holds a newer line written by %r; waiting for "
            "the registry to settle which copy is current",
            name,
            pid,
            refused.node,
            refused.writer,
        )

    def _adopt_stale(self, name: Any, pid: Pid, held: Lineage, fut: asyncio.Future[Restored]) -> None:
        """The local ``pid``'s checkpoints were refused for ``held``, a lineage no claim
        carries (``_on_refused``), and the fetch of its latest record is over: that state goes
        to ``pid``'s ``resolve_conflict`` (as a conflict loser's would), then ``pid`` takes
        the checkpoints over, dropping the fetched line's records once its own put is held.

        Such a line is that of a copy that ran while this one's node was paused or cut off
        (restarted or restored elsewhere, acknowledging writes with checkpoints) and died
        before the two copies could meet as a conflict: its records hold what it
        acknowledged, and a takeover alone replaced them with this copy's older state (the
        fault campaign, seeds 4229829433 and 1718318914). A done-callback of the fetch;
        never awaits."""
        self._adopting.discard((name, pid))
        if fut.cancelled() or fut.exception() is not None or self._stopped:
            return
        if self.pids.get(name) != pid or held in self._claimed(name):
            return  # not this copy's to take over now; a refusal at the next put says again
        restored = fut.result()
        checkpoint = restored.checkpoint
        if checkpoint is None:
            self._take_over(name, pid, restored.holders)
            return
        decoded, state = self._decoded(name, checkpoint.state, "the refused line's checkpoint of %r")
        if not decoded:
            self._take_over(name, pid, restored.holders)
            return
        log.info(
            "%s: %r: the state of its stale line (seq %d, written by %r) goes to %r's resolve_conflict",
            self.node,
            name,
            checkpoint.seq,
            checkpoint.writer,
            pid,
        )
        if not self._merge_gone(name, pid, state, restored.holders, "its stale line"):  # merges, takes over
            self._take_over(name, pid, restored.holders)

    def _take_over(self, name: Any, pid: Pid, holders: Sequence[Holder]) -> None:
        """Make the local ``pid``'s checkpoints of ``name`` the newest (it won a conflict, or
        a refusal came from a stale record): a lineage above every epoch heard of, its
        claim made again with it, and ``holders`` (a loser's) dropped once its put is held."""
        lineage = self.standby.host_takeover(name, pid, self.loop.time(), holders)
        lines = self.standby.lineage_of(name, pid)
        if lineage is not None and lines is not None:
            self.core.relineage(name, pid, *lines)
            if self.store is not None:
                self._store_behind(name, None)
        self._changed()

    # --- handoffs of checkpoints (the handoff coordinator's callbacks) -------------------------------

    def _handover(self, name: Any, pid: Pid) -> CheckpointHandover | None:
        """A handoff of ``name`` begins (step 1, frozen): where its checkpoints stand, for
        the new host (the coordinator leaves the state out when it sends a ``Resume``)."""
        handover = self.standby.handover(name, pid, self.loop.time())
        self._changed()
        return handover

    def _handover_ended(self, name: Any, pid: Pid, committed: bool) -> None:
        """The handoff of ``pid`` committed (it retires here) or aborted (it resumes)."""
        if committed:
            self.standby.host_retired(name, pid, self.loop.time())
            self._hosting.pop(pid, None)
        else:
            self.standby.handoff_aborted(name, pid, self.loop.time())
        self._changed()

    def _handin_settled(self, name: Any, pid: Pid, kept: bool) -> None:
        """The new owner's side: the handoff that started ``pid`` here committed (``kept``:
        it claims the name) or was withdrawn (its copy stops; this node holds the name's
        checkpoints as the standby it was before). The handoff coordinator's callback, at
        step 6 or C2; never awaits."""
        self.standby.handin_settled(name, pid, kept, self.loop.time())
        if not kept:
            self._hosting.pop(pid, None)
        self._changed()

    def _handoff_orphaned(
        self, name: Any, running: Pid, has_state: bool, state: Any, handover: CheckpointHandover | None
    ) -> None:
        """The new owner's side: a handoff of ``name`` whose old host is down here came when a
        claimed local copy, ``running``, holds the name (restarted here before the request
        was read): refused, its copy never starts. Its state (its ``Resume`` state if
        ``has_state``, else the handover's last checkpoint) goes to ``running``'s
        ``resolve_conflict``, as a conflict loser's would, and ``running`` takes over the old
        line's checkpoints: the old host had acknowledged writes with that state, and it is
        held nowhere else now. The handoff coordinator's callback; never awaits."""
        holders: list[Holder] = []
        if handover is not None:
            holders = list(handover.holders)
            if not has_state and handover.state is not None:
                has_state, state = self._decoded(name, handover.state, "the last checkpoint of %r's handed-in copy")
        if not has_state:
            return
        log.info(
            "%s: %r's handoff from a node that went down came when %r already held it here: its state goes "
            "to that copy's resolve_conflict",
            self.node,
            name,
            running,
        )
        self._merge_gone(name, running, state, holders, "its handed-in copy")

    def _handed_in(
        self, name: Any, pid: Pid, spec: Spec, handover: CheckpointHandover | None, has_state: bool, state: Any
    ) -> tuple[Lineage | None, Lineage | None]:
        """The new owner's side: ``pid`` started here from a handoff, with its ``Resume``
        ``state`` if ``has_state``; without one, the handover's last checkpoint reaches its
        ``end_handoff`` first. Returns the lineage and base to claim it with (step 6): none
        when it comes without checkpoints (its first checkpoint begins them)."""
        if handover is None:
            return None, None
        if not has_state and handover.state is not None:
            self._deliver_checkpoint(name, pid, handover.state)
        resume_state: bytes | None = None
        if has_state:
            try:
                resume_state = encode_value(state)
            except DistableError as exc:
                log.error("%s: cannot keep %r's handed-in state as a checkpoint: %s", self.node, name, exc)
        return self._host_started(name, pid, spec, resumed=handover, resume_state=resume_state)

    # --- the durable store (issue 12, item 4; docs/internals.md, "Durable store") ----------------
    #
    # ``_store_epochs``: local pid -> the epoch its lineage begins at when its first checkpoint
    # starts its host record (a registration's is above the stored one). ``_store_dirty``:
    # names whose latest checkpoint may not be queued for the store yet -> (the write-behind
    # state last given, None for "once"; the (lineage, seq) last queued). ``_store_waits``:
    # checkpoint token -> what the store saves once every standby acknowledged it.
    # ``_store_spared``: local pids the registry stops (``StopProcess``): their names stay
    # remembered. ``_store_records``: every record the cold start loaded, by name, for
    # ``STORE_PENDING`` (``_store_newer``); ``_store_read``: set once the cold start has read
    # the store (or gave up).

    async def _store_registered(self, name: Any, pid: Pid, spec: Spec, restart: bool) -> None:
        """``pid`` was just started for ``name`` (not restored). A registration is saved in
        the store before its claim is made, with a lineage whose epoch is above the one
        stored for the name (so that no write of an earlier registration beats it); a
        restart without checkpoints writes nothing (its first checkpoint will).

        Raises:
            StoreUnavailable: the store did not take it in time (``pid`` is stopped).
            ProcessExited: ``pid`` exited meanwhile.

        A serve task or a restart lane task; awaits the store (at most twice its timeout)."""
        store = self.store
        assert store is not None
        if restart:
            self._store_epochs[pid] = _epoch_now()
            return
        try:
            stored = await store.epoch(name)
            epoch = max(_epoch_now(), 0 if stored is None else stored + 1)
            await store.save_name(name, spec, spec.replicas, Lineage(epoch, pid), fresh=True)
        except DistableError:
            proc = self.runtime.local(pid)
            if proc is not None:
                ask_to_die(self.runtime, proc)
            raise
        if self.runtime.local(pid) is None:
            self._store_forget(name, Lineage(epoch, pid))
            raise ProcessExited(NOPROC)
        self._store_epochs[pid] = epoch

    def _store_lineage_floor(
        self, name: Any, pid: Pid, resumed: CheckpointHandover | None, restored: Restored | None
    ) -> Restored | None:
        """What ``host_started`` gets as ``restored``: a fresh host record (the first
        checkpoint of a registration, or of a copy handed in without checkpoints) begins its
        lineage at the pid's epoch (``_store_epochs``; else the time's), not 0; a restored or
        handed-in one continues as it would, and its state is queued for the store."""
        if resumed is None and restored is None:
            epoch = self._store_epochs.get(pid, _epoch_now())
            return Restored(name, 0, None, False, epoch - 1, ())
        self._store_behind(name, None)
        return restored

    def _store_behind(self, name: Any, given: bytes | None) -> None:
        """The local ``name``'s latest checkpoint is to reach the store without waiting
        (``given``: a write-behind state, which the standby core may put later). Any plain
        method; the queueing happens at the flush (``_store_catch_up``)."""
        entry = self._store_dirty.get(name)
        self._store_dirty[name] = (given, None if entry is None else entry[1])
        self._changed()

    def _store_catch_up(self) -> None:
        """Queue the latest checkpoint of every name marked by ``_store_behind`` whose
        (lineage, seq) moved since it was last queued (the standby core puts a write-behind
        state at most every ``write_behind``, so the store gets at most that many writes a
        name); forget a name once the state it was given is put. From ``_flush``."""
        store = self.store
        assert store is not None
        for name, (given, last) in list(self._store_dirty.items()):
            cp = self.standby.hosted(name)
            if cp is None:
                del self._store_dirty[name]
                continue
            version = (cp.lineage, cp.seq)
            if last is None or version > last:
                with contextlib.suppress(DistableError):  # closed: the node stops
                    store.checkpoint_behind(name, cp.lineage, cp.seq, cp.state)
                last = version
            if given is None or cp.state is given:
                del self._store_dirty[name]
            else:
                self._store_dirty[name] = (given, last)

    def _store_wait(self, token: int, name: Any, pid: Pid) -> None:
        """A waited checkpoint of ``name`` was just handed to the standby core as ``token``:
        keep what the store saves when it is acknowledged."""
        cp = self.standby.hosted(name, pid)
        if cp is not None:
            self._store_waits[token] = (name, cp.lineage, cp.seq, cp.state)
        entry = self._store_dirty.get(name)
        if entry is not None:  # a write-behind state it replaced is never put: unmark after one look
            self._store_dirty[name] = (None, entry[1])

    async def _store_checkpoint(
        self, fut: asyncio.Future[None], name: Any, lineage: Lineage, seq: int, state: bytes
    ) -> None:
        """Every standby holds the checkpoint: save it in the store, then complete the
        caller's ``checkpoint()`` (with ``StoreUnavailable`` if the store did not take it in
        time; the store queues it and catches up). A task of its own; awaits the store."""
        store = self.store
        assert store is not None
        try:
            await store.save_checkpoint(name, lineage, seq, state)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(None)

    def _store_removed(self, name: Any, pid: Pid) -> None:
        """The local ``pid``'s ``name`` ends: its record goes (queued), under the lineage
        it holds, so that an older copy's removal never removes a newer copy's record."""
        if pid in self._store_spared:
            return  # stopped by the registry (no node left to take it, no quorum): remembered
        lines = self.standby.lineage_of(name, pid) if self._hosting.get(pid) == name else None
        lineage = lines[0] if lines is not None else Lineage(self._store_epochs.get(pid, _epoch_now()), pid)
        self._store_dirty.pop(name, None)
        self._store_forget(name, lineage)

    def _store_forget(self, name: Any, lineage: Lineage) -> None:
        store = self.store
        assert store is not None
        try:
            store.remove_behind(name, lineage)
        except DistableError as exc:  # closed (the node stops)
            log.debug("%s: removal of %r not queued: %s", self.node, name, exc)

    async def cold_start(self) -> int:
        """Start every name the store remembers that this node owns and nobody claims, as a
        restart from its stored checkpoint (its state reaches ``end_handoff`` first), once
        per node life; the names other nodes own are theirs to start. The records not
        claimed yet stay *pending* for ``STORE_PENDING`` seconds: at each placement change
        meanwhile, those this node has come to own are started too (nodes that loaded
        with different views of a cluster still starting would otherwise each leave a
        name to another); a record leaves once its name is claimed anywhere. Returns how
        many started. Call it once the node has caught up with the cluster (``Node`` does).

        Raises:
            StoreUnavailable: the store could not be read (nothing was started).

        The node's task; awaits the load and the restarts it started."""
        store = self.store
        if store is None or self.role != "server" or self._store_loaded:
            return 0
        remembered = await store.load()
        self._store_loaded = True
        self._store_pending = {record.name: record for record in remembered}
        self._store_records = dict(self._store_pending)
        self._store_pending_until = self.loop.time() + STORE_PENDING
        self._store_read.set()  # the restarts waiting for it (``_store_newer``) go on
        jobs = self._store_recheck()
        if jobs:
            log.info("%s: starting %d name(s) remembered by the store %s", self.node, len(jobs), store.address)
            await asyncio.gather(*jobs)
        return self._store_restored

    def _store_recheck(self) -> list[asyncio.Future[None]]:
        """Start the pending records this node owns and nobody claims (restart lane jobs,
        whose futures are returned); forget those claimed anywhere, and all of them once
        their time is up. From ``cold_start`` and ``_flush`` (a placement change); never
        awaits."""
        self._store_placement = self.core.placement
        if self.loop.time() > self._store_pending_until:
            self._store_pending.clear()
            self._store_records.clear()
            return []
        jobs: list[asyncio.Future[None]] = []
        for name, record in list(self._store_pending.items()):
            if name in self.pids:
                del self._store_pending[name]  # claimed: the registry has it from now on
            elif self._store_unclaimed_here(name):
                del self._store_pending[name]
                done: asyncio.Future[None] = self.loop.create_future()
                jobs.append(done)
                self._restarts.put(functools.partial(self._store_restart, record, done))
        return jobs

    def cold_start_abandoned(self) -> None:
        """The node gave up reading the store (``Node._cold_start``): the restarts that
        wait for its records (``_store_newer``) go on without them. Never awaits."""
        self._store_read.set()

    async def _store_newer(self, restored: Restored, line: Lineage | None) -> Restored:
        """A restart's restore found no checkpoint, or not every node answered: on a server
        node, the record its cold start loads from the store (waited for if not read yet)
        may hold a newer state, as after a whole cluster stopped (its standbys' records
        went with it) while a node that survived it, a client say, asks the new owner to
        restart the name before that owner's cold start ran. Returns ``restored`` with the
        stored checkpoint if it is newer and of the ended claim's line (its lineage not
        below ``line``, the claim's base, else its lineage: not a registration of the name
        that this one replaced); the stored lineage's epoch counts in any case, so that
        the new lineage goes above the stored one and its writes are not refused as
        stale. A lane or serve task; awaits the cold start's read of the store."""
        if self.role != "server":
            return restored
        await self._store_read.wait()
        if self.loop.time() > self._store_pending_until:
            return restored  # the records are forgotten: the cluster runs since long
        name = restored.name
        record = self._store_records.get(name)
        if record is None:
            return restored
        epoch = max(restored.epoch, record.lineage.epoch)
        cp = restored.checkpoint
        ours = line is None or record.lineage >= line
        if ours and record.state is not None and (cp is None or (record.lineage, record.seq) > (cp.lineage, cp.seq)):
            cp = Checkpoint(to_wire(name), record.lineage, None, record.seq, record.lineage.origin, record.state)
            log.info("%s: %r restarts from the store's checkpoint (seq %d)", self.node, name, record.seq)
        return replace(restored, checkpoint=cp, epoch=epoch)

    def _store_unclaimed_here(self, name: Any) -> bool:
        """Whether ``name`` is this node's to start from the store: it owns it, and no claim,
        registration, restart or restore of it is known here. Query; reads only."""
        try:
            position = hash_name(name)
        except Exception:
            return False
        return (
            self.core.placement.owner_of_hash(position) == self.node
            and name not in self.pids
            and name not in self._pending
            and not self._claimed(name)
        )

    async def _store_restart(self, record: Remembered, done: asyncio.Future[None]) -> None:
        """One remembered name, started here as a restart from its stored checkpoint (the
        restart path: ``_register_here`` with a ``Restored`` built from the record). A
        restart lane task; awaits the factory."""
        name = record.name
        try:
            if not self._store_unclaimed_here(name):
                self._store_unstarted(record)
                return
            checkpoint = None
            if record.state is not None:
                writer = record.lineage.origin
                checkpoint = Checkpoint(to_wire(name), record.lineage, None, record.seq, writer, record.state)
            restored = Restored(name, 0, checkpoint, False, record.lineage.epoch, ())
            spec = msgspec.structs.replace(record.spec, replicas=record.replicas)
            reply = await self._register_here(name, spec, restored)
            if reply.status == REGISTRY_OK and reply.pid is not None:
                self._store_restored += 1
                self._publish(ProcessRestarted(name, reply.pid, "store"))
            elif reply.status == REGISTRY_ERROR:
                self._ratelog.warning(
                    ("restart", spec.factory), "cannot start %r from the store: %s", name, reply.detail
                )
                self._store_unstarted(record)
        finally:
            done.set_result(None)

    def _store_unstarted(self, record: Remembered) -> None:
        """A pending record this node did not start after all (it moved, or its start
        failed): pending again, unless its name is claimed. Never awaits."""
        if record.name not in self.pids and self.loop.time() <= self._store_pending_until:
            self._store_pending[record.name] = record

    async def close_store(self) -> None:
        """Write what the store's queue holds (at most a second), then close it. The node's
        stop, after the drain; awaits."""
        if self.store is not None:
            await self.store.close()

    def _store_statistics(self) -> dict[str, Any]:
        """The store's counters, for ``statistics``. Query; reads only."""
        if self.store is None:
            return {}
        s = self.store.statistics()
        return {
            "store": s.address,
            "store_up": s.up,
            "store_written": s.written,
            "store_refused": s.refused,
            "store_failed": s.failed,
            "store_queued": s.queued,
            "store_queued_bytes": s.queued_bytes,
            "store_dropped": s.dropped,
            "store_lag": s.lag,
            "store_restored": self._store_restored,
        }

    # --- graceful leave ----------------------------------------------------------------------------

    async def drain(self, timeout: float) -> bool:
        """Hand every local factory-registered name off; wait (at most ``timeout``).

        Returns whether the drain finished (also kept in ``drained``); when the timeout
        cut it short, a warning says how many names were still here.

        Node lifecycle (``Node.stop``); awaits the handoffs, at most ``timeout``.
        """
        self.core.start_leaving(self.loop.time())
        self._flush()
        deadline = self.loop.time() + timeout
        await self._wait_until(lambda: not self._busy(), deadline)
        self.drained = not self._busy()
        if self._lost_at_leave and self.store is not None:
            log.info(
                "%s: the last server node leaves with %d registered name(s): the store %s remembers "
                "them (with their last checkpoints) for the cluster's next start",
                self.node,
                self._lost_at_leave,
                self.store.address,
            )
        elif self._lost_at_leave:
            log.warning(
                "%s: the last server node leaves with %d registered name(s): no node is left "
                "to take them (the others are gone or leaving too), their processes and state are gone",
                self.node,
                self._lost_at_leave,
            )
        if not self.drained:
            left = self.core.local_names()
            log.warning(
                "%s: drain timed out after %.1f s with %d name(s) still here (%s): they stop now, and "
                "their owners restart them fresh, without their state",
                self.node,
                timeout,
                len(left),
                ", ".join(repr(c.key) for c in left[:5]) + (", ..." if len(left) > 5 else ""),
            )
            self._abandon(left)
        # Let the others' flush markers reach us so we can relay them (bounded). The new
        # owner's own marker too: its processes may have sent to the old pid, and what they
        # sent is ahead of that marker on its link to us (forwarded when it arrives).
        expected = set(self.transport.connected())
        await self._wait_until(
            lambda: self.handoff.relayed_to_all(expected),
            min(deadline, self.loop.time() + 1.0),
        )
        return self.drained

    def _abandon(self, claims: Sequence[Claim]) -> None:
        """The drain timed out: the processes of ``claims`` stop now, before what they have
        queued, whose callers get ``ProcessExited("shutdown")``. Served meanwhile, each
        call would be acknowledged and then lost with the state (the fault campaign: calls
        queued behind a handoff to a node cut off, acknowledged when it was given up,
        after the drain's end). One in a handoff still stops when the handoff is given up
        (``HandoffCoordinator.abandoned``); committed, it moved. Their exits keep their
        claims (``_on_exit`` reads the same flag): the owners restart the names when this
        node has left.

        From ``drain``; never awaits."""
        self.handoff.abandoned = True
        for claim in claims:
            proc = self.runtime.local(claim.pid)
            if proc is not None and not proc._frozen:
                self.runtime.stop_first(proc, SHUTDOWN)

    async def _wait_until(self, condition: Callable[[], bool], deadline: float) -> None:
        """Wait for ``condition``, re-checked whenever handoff progress wakes ``_idle``.

        The drain (the node's task); awaits."""
        while not condition() and self.loop.time() < deadline:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), max(0.0, min(0.1, deadline - self.loop.time())))

    def _busy(self) -> bool:
        # Cheapest test first: while any name is moving (most of a drain) this is O(1); the
        # scans run only at the end, so a drain of n names costs O(n), not O(n^2).
        """Query; reads only."""
        if self.core.moving or self.handoff.busy():
            return True
        if self._pending:  # a registration still starting its process: its claim moves on next
            return True
        if self.core.restarts_owed() or self._restarts.busy:
            # A restart this node owes (a crash's, or of a name a dead node hosted that
            # perhaps only this node knew): it goes to the name's owner before we stop.
            return True
        # A process that answered Ignore stays: waiting for it would only use up the drain
        # timeout; when this node is gone, the name's new owner restarts it.
        pinned = self.core.pinned
        if any(c.spec is not None and c.key not in pinned for c in self.core.local_names()):
            return True
        return self._holding_for_others()

    def _holding_for_others(self) -> bool:
        """Whether this node still holds a checkpoint record that its host (up, with another
        server placed to take it) will re-replicate and then drop: a leaving node waits
        for that, or a failure right after it left could lose the name's last copy.

        Query; reads only."""
        placed = set(self.core.placement.nodes)
        for name, record in self.standby.records.items():
            host = record.writer.node
            if host in self.core.peers and placed - {host} and record.lineage in self.core.claimed_lineages(name):
                return True
        return False

    def _check_idle(self) -> None:
        # Only a drain waits on ``_idle``: outside one, a finished handoff wakes nobody.
        """Any plain method; never awaits."""
        if self.core.leaving and not self._busy():
            self._idle.set()

    def statistics(self) -> RegistryStatistics:
        """Query; reads only."""
        handoff = self.handoff
        standby = self.standby.statistics()
        return replace(
            self.core.statistics(),
            gate_releases=handoff.gate_releases,
            gate_held_messages=handoff.gate_held,
            checkpoint_records=standby.records,
            checkpoint_record_bytes=standby.record_bytes,
            checkpoint_hosted=standby.hosted,
            checkpoint_hosted_bytes=standby.hosted_bytes,
            checkpoint_refusals=standby.refusals,
            checkpoint_restores=standby.restores,
            checkpoint_restores_incomplete=standby.restores_incomplete,
            **self._store_statistics(),
        )


# --- small helpers ------------------------------------------------------------------------------------


def _halves(msg: Any) -> list[Any] | None:
    """``msg`` as two messages that mean the same, in order, or None if it cannot be split.

    A Delta's claims are applied before its removals, so the removals ride with the second
    half; a SyncReply replaces whole buckets, so it splits by buckets.
    """
    if isinstance(msg, Delta):
        claims, removals = msg.claims, msg.removals
        if len(claims) > 1:
            k = len(claims) // 2
            return [Delta(claims[:k], []), Delta(claims[k:], removals)]
        if claims and removals:
            return [Delta(claims, []), Delta([], removals)]
        if len(removals) > 1:
            k = len(removals) // 2
            return [Delta([], removals[:k]), Delta([], removals[k:])]
        return None
    if isinstance(msg, SyncReply) and len(msg.buckets) > 1:
        buckets = sorted(msg.buckets)
        first = set(buckets[: len(buckets) // 2])
        return [
            SyncReply(sorted(first), [c for c in msg.claims if c.position % BUCKETS in first]),
            SyncReply(buckets[len(buckets) // 2 :], [c for c in msg.claims if c.position % BUCKETS not in first]),
        ]
    return None


def _epoch_now() -> int:
    """A lineage epoch from the wall clock (milliseconds): with a durable store, a lineage
    begun from nothing starts at the time, not at 0, so that it is above the lineages of
    earlier lives of its name (which began earlier and rose by one per restart)."""
    return time.time_ns() // 1_000_000


def _check_name(name: Any) -> int:
    """The name's ring position, computed from its encoding: the check that it can cross the wire."""
    try:
        hash(name)  # only to refuse unhashable names early; placement uses hash_name (xxh3)
    except TypeError:
        raise TypeError(f"a registered name must be hashable (str, int, tuple...), not {type(name).__name__}") from None
    return hash_name(name)


def _error(error: str, detail: str) -> RegistryReply:
    """An error reply: ``error`` names the exception the caller raises (see ``_outcome``)."""
    return RegistryReply(0, REGISTRY_ERROR, None, error, detail)


def _outcome(reply: RegistryReply, name: Any = None) -> Pid | None:
    """The pid a successful reply names, or the error it reports, raised (``name``: the
    name the request was about, for the error's text).

    Raises:
        AlreadyRegistered: the name is registered already (``REGISTRY_EXISTS``).
        ProcessExited: the process was not alive.
        DistableError: the owner's error, as the type it names (``FactoryError`` for any
            it does not list in ``_ERRORS``, and for a reply it does not understand).
    """
    status = reply.status
    if status == REGISTRY_OK:
        return reply.pid
    if status == REGISTRY_EXISTS and reply.pid is not None:
        raise AlreadyRegistered(reply.pid, name)
    if status == REGISTRY_ERROR:
        if reply.error == "ProcessExited":
            raise ProcessExited(reply.detail)
        if reply.error == "StoreUnavailable":
            address, _, detail = reply.detail.partition(" unavailable: ")
            raise StoreUnavailable(address.removeprefix("store "), detail)
        raise _ERRORS.get(reply.error, FactoryError)(reply.detail)
    raise FactoryError(f"unexpected registry reply {reply!r}")


def _on_wire(request: RegistryRequest) -> RegistryRequest:
    """``request`` with its user values prepared for the wire (``to_wire``)."""
    match request:
        case RegisterRequest(ref, name, spec, lineage, base):
            return RegisterRequest(ref, to_wire(name), wire_spec(spec), lineage, base)
        case RegisterNameRequest(ref, name, pid):
            return RegisterNameRequest(ref, to_wire(name), pid)
        case UnregisterRequest(ref, name, pid):
            return UnregisterRequest(ref, to_wire(name), pid)
        case GroupJoinRequest(ref, group, pid):
            return GroupJoinRequest(ref, to_wire(group), pid)
        case GroupLeaveRequest(ref, group, pid):
            return GroupLeaveRequest(ref, to_wire(group), pid)
    assert_never(request)


# Requests and replies of protocol versions 1 and 2: lists matched by position, carried in a
# call to the registry server (local id 1). A node still serves them (see ``serve``), and
# sends them to a node that agreed on one of those versions (see ``_request``).


def _as_list(request: RegistryRequest) -> list[Any]:
    """``request`` as a node of protocol version 1 or 2 reads it."""
    match request:
        case RegisterRequest(_, name, spec):
            return ["register", name, spec.factory, spec.args, spec.kwargs, spec.restart, spec.handoff_timeout]
        case RegisterNameRequest(_, name, pid):
            return ["register_name", name, pid]
        case UnregisterRequest(_, name, pid):
            return ["unregister", name, pid]
        case GroupJoinRequest(_, group, pid):
            return ["join", group, pid]
        case GroupLeaveRequest(_, group, pid):
            return ["leave", group, pid]
    assert_never(request)


def _request_from_list(message: Any) -> RegistryRequest | None:
    """The request a node of protocol version 1 or 2 sent (None if ``message`` is none)."""
    match message:
        case ["register", name, str() as factory, list() as args, dict() as kwargs, str() as restart, timeout] if (
            isinstance(timeout, int | float)
        ):
            return RegisterRequest(0, name, Spec(factory, args, kwargs, restart, float(timeout)))
        case ["register_name", name, Pid() as pid]:
            return RegisterNameRequest(0, name, pid)
        case ["unregister", name, Pid() as pid]:
            return UnregisterRequest(0, name, pid)
        case ["join", group, Pid() as pid]:
            return GroupJoinRequest(0, group, pid)
        case ["leave", group, Pid() as pid]:
            return GroupLeaveRequest(0, group, pid)
    return None


def _reply_from_list(reply: Any, request: RegistryRequest) -> RegistryReply:
    """The reply of a node of protocol version 1 or 2 to ``request``."""
    match reply:
        case ["ok", Pid() as pid]:
            return RegistryReply(0, REGISTRY_OK, pid)
        case ["ok", True] if not isinstance(request, RegisterRequest):  # an unregister or a leave removed a claim
            return RegistryReply(0, REGISTRY_OK, request.pid)
        case ["ok", _]:
            return RegistryReply(0, REGISTRY_OK)
        case ["exists", Pid() as pid]:
            return RegistryReply(0, REGISTRY_EXISTS, pid)
        case ["error", str() as error, detail]:
            return _error(error, str(detail))
    return _error("FactoryError", f"unexpected registry reply {reply!r}")


def _reply_as_list(reply: RegistryReply, request: RegistryRequest | None) -> list[Any]:
    """``reply`` to ``request`` as a node of protocol version 1 or 2 reads it."""
    if reply.status == REGISTRY_OK:
        if isinstance(request, UnregisterRequest | GroupLeaveRequest):
            return ["ok", reply.pid is not None]
        return ["ok", None if isinstance(request, GroupJoinRequest) else reply.pid]
    if reply.status == REGISTRY_EXISTS:
        return ["exists", reply.pid]
    return ["error", reply.error, reply.detail]
