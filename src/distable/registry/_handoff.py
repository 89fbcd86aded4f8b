"""The handoff protocol, both sides: the old host X that moves a process, the new owner Y
that takes it. The steps are numbered as in docs/internals.md, "Handoff"::

    1   X      begin_handoff() inside the process; unless it answers Ignore, it freezes
    2   X -> Y HandoffRequest(hid, name, spec, old pid, state); again on a new link to Y
               while unanswered (Y takes a repeated one once)
    3   Y      starts the copy: end_handoff(state) first in its mailbox, gated
    4   Y -> X HandoffAccepted(hid, new pid)          (4R: HandoffRefused); again every
               ACCEPT_AGAIN s until 5 or C1 comes (X: HandoffCommit again, or
               HandoffCancel for a handoff it gave up)
    5   X      forwards the frozen mailbox, retires the old pid, HandoffCommit, die()
    6   Y      claims the name (moved_from = old pid)
    7   S -> X FlushMarker(hid), from every node that sees the claim (Y too) while X is up there
    8   X -> Y Flushed(hid, S), behind everything S sent along the old route
    9   Y      releases S's held messages; the gate is gone once every node is
    9L  Y      a node that comes up here after 9 while the old pid forwards (forward_ttl
               after 6), neither waited for nor flushed, or let through without its
               marker: its direct messages are held again until its own 8
    9L  Y -> S FlushAsk(hid, old pid, name) (version 5): S sends its 7 again once it holds 6
    7D  S -> Y RouteClosed(hid, X) (version 7), in place of 7 and 8, when S sees the claim
               with X down there, no link to X and nothing queued for it: Y releases S (9)
    C1  X -> Y HandoffCancel(hid): X does not know the outcome (timed out, or lost Y)
    C2  Y -> X HandoffCancelled(hid, committed, new pid): Y stopped its copy, or kept it
    A   X      aborts: the process resumes here, the move is retried later

Each side of a handoff is a record with a state named after the last step it did, and
every step is one method that asserts the states it leaves from. The old host's record
(``Outgoing``, ``Sending``) lives from step 1 until ``forward_ttl`` after step 5::

    FROZEN     --2-->  REQUESTED
    REQUESTED  --4-->  ACCEPTED
    REQUESTED, ACCEPTED  --C1-->  CANCELLING    (timed out; or accepted by a Y it lost since)
    ACCEPTED, CANCELLING --5-->   COMMITTED     (CANCELLING: C2 said committed)
    FROZEN, REQUESTED, CANCELLING --A--> ABORTED (the state cannot be sent; refused, Y down;
                                                  C2 said not committed, or never came)

The new owner's record (``Incoming``, ``Receiving``) lives from step 3 until
``forward_ttl`` after step 9, or until a withdrawal; a commit or a cancel that comes while
the copy is still starting is due::

    STARTING                         --4-->  ACCEPTED
    STARTING, *_DUE                  --4R--> REFUSED     (factory failed, a copy runs here)
    STARTING                         --5 or X down--> COMMIT_DUE  (also at once: X was down
                                                                  here when the request came)
    STARTING, COMMIT_DUE, CANCEL_DUE --C1--> CANCEL_DUE  (not COMMIT_DUE while X is down here)
    ACCEPTED, COMMIT_DUE             --6-->  CLAIMED     (on HandoffCommit, or X down)
    ACCEPTED, CANCEL_DUE             --C2--> CANCELLED   (the copy dies)
    CLAIMED, REGATED                 --9-->  OPEN
    OPEN                             --9L--> REGATED     (a node comes up here late, or back)

Rule 1: the old host moves a process only while it is frozen, and resumes it only once
        it knows the new owner keeps no copy: refused, down, or answered "not committed"
        (or silent) to HandoffCancel. Its outcome goes to the core: handoff_done or
        handoff_failed, once per handoff.
Rule 2: the old host forwards the frozen mailbox (5) before it sends HandoffCommit, on
        the same link: what queued for the old pid reaches the new copy before its claim
        exists. A flush marker that comes before the commit is parked in the mailbox and
        relayed in its place, behind the messages its node sent before it.
Rule 3: the new owner claims the name (6) only after HandoffCommit or after seeing the
        old host go down, never after it answered a cancel "not committed"; once it has
        claimed, a cancel is answered "committed" (remembered for ``forward_ttl``), and
        the old host commits too. Seeing the old host down commits a request read after
        the verdict too, and a cancel from it read while it is down undoes nothing.
Rule 4: the gate holds a node's direct messages only while that node's marker can still
        come: it opens for a node on its Flushed (9), once it is down or suspected (or
        unlinked and not up), for every node once the old host is gone, and for all at
        ``handoff_timeout``. It holds them from every node that can be sending: linked when
        it is made, or linking or coming up while it is closed, or, after it opened and
        while the old pid still forwards (``forward_ttl`` after 6), one that comes up then
        and was neither waited for nor flushed, or was let through without its marker (9L:
        cut off from here through the move, it may have sent along the old route). A node
        held again after the claim is asked for its marker (FlushAsk): it sends one by
        itself only once, and that one may have been lost with a link.
Rule 5: the handlers (``_on_*``) run on the event loop and never await; only the two
        tasks, ``hand_off`` (X) and ``_start`` (Y), await, and after each await they act
        on what the handlers recorded meanwhile (an Outgoing's futures, an Incoming's state).

What it needs of the registry service that owns it is passed to ``HandoffCoordinator``
(see its docstring): imports run service -> handoff -> runtime, and the runtime's handoff
operations (freeze, run_first, gate, park_marker, forward_mailbox) are all it does to
processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import msgspec

from .._errors import DistableError, FactoryError, ProcessExited
from .._log import RateLimitedLog
from .._timer import Expiry
from ..runtime import HandoffAnswer, Ignore, Process, Restart, Resume, Runtime
from ..runtime._process import Gate
from ..transport import Transport
from ..wire import SHUTDOWN, Pid, to_wire
from ..wire._messages import (
    CheckpointHandover,
    FlushAsk,
    Flushed,
    FlushMarker,
    HandoffAccepted,
    HandoffCancel,
    HandoffCancelled,
    HandoffCommit,
    HandoffRefused,
    HandoffRequest,
    Lineage,
    RouteClosed,
    Spec,
)
from ._aio import Starting, detached, log_failure, within
from ._core import RegistryConfig, RouteClosedNotice, StartHandoff, TrackerCore, wire_spec
from ._events import HandoffAborted, HandoffCompleted, HandoffStarted, HandoffStateLost
from ._factory import run_factory

log = logging.getLogger("distable.registry")

GATE_CHECK = 0.25  # how often a handed-in process's gate looks for senders that went silent
#: How often a new owner says again that it accepted a handoff still waiting for its
#: commit (or withdrawal), until the old host answers or goes down: an accept lost with
#: a link, from a node the old host thought dead (it was paused), left the copy gated for
#: ever. Well within ``forward_ttl``, for which the old host remembers a commit.
ACCEPT_AGAIN = 1.0
#: A gate open closes again for a node that comes late (9L) only until this long before the
#: old host forgets the handoff: the marker it would wait for is relayed until then.
REGATE_MARGIN = 1.0
#: The protocol version from which a peer answers ``FlushAsk`` (sends its marker again).
FLUSH_ASK_VERSION = 5
#: The protocol version from which a new host takes ``RouteClosed`` in place of a marker.
ROUTE_CLOSED_VERSION = 7


class FreezeForHandoff:
    """Runs ``begin_handoff`` inside the process and freezes it unless it says Ignore
    (``always``: whatever it says, for a copy that must stop: a conflict's loser).

    If the handoff gave up waiting before this ran, it answers Ignore without freezing.
    """

    __slots__ = ("always", "cancelled", "name", "runtime")

    def __init__(self, runtime: Runtime, name: Any, always: bool = False) -> None:
        self.cancelled = False
        self.always = always
        self.name = name
        self.runtime = runtime

    async def __call__(self, proc: Process) -> Any:
        if self.cancelled:
            return Ignore()
        try:
            answer = await proc.begin_handoff()
        except Exception as exc:
            log.error(
                "%r (%r): begin_handoff raised %r; it starts afresh on its new owner (from its last "
                "checkpoint, if any)",
                self.name,
                proc,
                exc,
                exc_info=exc,
            )
            answer = Restart()
        if not isinstance(answer, Restart | Resume | Ignore):
            log.error(
                "%r (%r): begin_handoff returned %r, not Restart/Resume/Ignore; it starts afresh on its new "
                "owner (from its last checkpoint, if any)",
                self.name,
                proc,
                answer,
            )
            answer = Restart()
        if (self.always or not isinstance(answer, Ignore)) and not self.cancelled:
            self.runtime.freeze(proc)
        return answer


def ask_to_die(runtime: Runtime, proc: Process) -> None:
    """Run ``proc.die()`` inside the process, in mailbox order; nobody waits for it."""
    detached(runtime.run_in(proc, _die))


async def _die(proc: Process) -> None:
    await proc.die()


class Sending(Enum):
    """The old host's side of one handoff: the last step of docs/internals.md it did."""

    FROZEN = "1"  # begin_handoff answered; the process is frozen (its mailbox fills)
    REQUESTED = "2"  # HandoffRequest sent
    ACCEPTED = "4"  # HandoffAccepted came: the new owner runs a copy, gated
    CANCELLING = "C1"  # the outcome is unknown: HandoffCancel sent, waiting for HandoffCancelled (C2)
    COMMITTED = "5"  # mailbox forwarded, old pid retired, HandoffCommit sent; relays markers (8)
    ABORTED = "A"  # the process resumes here; the move is retried later (or, Ignore, not)


class Receiving(Enum):
    """The new owner's side of one handoff: the last step of docs/internals.md it did."""

    STARTING = "3"  # HandoffRequest came: the factory runs
    COMMIT_DUE = "3, 6 due"  # ... and the move was committed meanwhile (HandoffCommit, or the old host down)
    CANCEL_DUE = "3, C2 due"  # ... and withdrawn meanwhile (HandoffCancel): stop the copy once it runs
    ACCEPTED = "4"  # the copy runs, end_handoff first in its mailbox, gated; HandoffAccepted sent
    CLAIMED = "6"  # committed: claimed with moved_from; the gate holds what it holds until flushed (9)
    OPEN = "9"  # every node flushed or let through: done; kept for forward_ttl while a node may come late
    REGATED = "9L"  # a node that was never waited for came up here after 9: its messages held again until flushed
    CANCELLED = "C2"  # withdrawn: the copy is stopped, forgotten
    REFUSED = "4R"  # HandoffRefused sent (its factory failed, a copy runs here, it exited at once), forgotten


@dataclass(slots=True)
class Outgoing:
    """One handoff from this node, from step 1 until ``forward_ttl`` after it commits."""

    hid: int
    name: Any
    proc: Process
    target: str
    accepted: asyncio.Future[Pid]  # the new pid (4), or the refusal (4R) or loss of the target
    state: Sending = Sending.FROZEN
    has_state: bool = False  # the process's state goes along (Resume), else its last checkpoint or nothing
    relayed: set[str] = field(default_factory=set)  # nodes whose flush marker was relayed (8) or parked
    # The request (2) while no answer came (REQUESTED): sent again on a new link to the
    # target, since one posted while the link was down is dropped with the failed dial.
    request: HandoffRequest | None = None
    # Set once HandoffCancel is sent: the new owner's answer (its pid if it had committed).
    cancel_answer: asyncio.Future[Pid | None] | None = None
    # Done when the handoff committed (5) or aborted (A); never fails.
    finished: asyncio.Future[None] | None = None

    @property
    def committed(self) -> bool:
        return self.state is Sending.COMMITTED

    def move(self, to: Sending, *leaves: Sending) -> None:
        """Go to ``to``, from one of ``leaves`` (anything else is a bug in this module)."""
        assert self.state in leaves, f"handoff {self.hid} of {self.name!r}: {self.state} -> {to}"
        self.state = to
        if to is not Sending.REQUESTED:
            self.request = None  # answered, or given up: not sent again
        if to in (Sending.COMMITTED, Sending.ABORTED) and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)


@dataclass(slots=True)
class Incoming:
    """One handoff to this node, from step 3 until its gate is open (or it is withdrawn)."""

    source: str
    hid: int
    name: Any
    spec: Spec
    old_pid: Pid
    ancestors: tuple[Pid, ...]
    checkpoint: CheckpointHandover | None = None  # where its checkpoints stand (version 4)
    ancestor_handoffs: tuple[int, ...] = ()  # beside ``ancestors`` (version 6)
    state: Receiving = Receiving.STARTING
    lineage: Lineage | None = None  # the claim's (6): its checkpoints', once the copy runs
    base: Lineage | None = None
    pid: Pid | None = None  # the copy started here, once it runs (set with ``proc``)
    proc: Process | None = None
    timer: asyncio.TimerHandle | None = None  # the next gate check, once claimed
    accepted_at: float = 0.0  # when step 4 was last sent (``ACCEPT_AGAIN``)
    claimed_at: float = 0.0  # when step 6 was (the old pid forwards until about forward_ttl after)
    exited: tuple[Any] | None = None  # (reason,) once the copy exited before its claim
    flushed: set[str] = field(default_factory=set)  # the nodes whose marker came (step 8)
    waited: set[str] = field(default_factory=set)  # the nodes the gate held messages of, ever (once open: and flushed)
    # The nodes a gate let through without their marker (down, suspected, timed out): if one
    # comes back while the old pid forwards, the gate closes again for it and asks it for
    # its marker (9L). None while there are none (a join wave keeps thousands of these).
    released: set[str] | None = None

    def move(self, to: Receiving, *leaves: Receiving) -> None:
        """Go to ``to``, from one of ``leaves`` (anything else is a bug in this module)."""
        assert self.state in leaves, f"handoff {self.hid} of {self.name!r} from {self.source}: {self.state} -> {to}"
        self.state = to


class HandoffCoordinator:
    """The handoffs of one node, as old host (``outgoing``) and as new owner (``incoming``).

    Every method runs on the event loop. Its interface to the registry service that owns
    it is what ``__init__`` takes:

    * ``runtime``, ``transport``, ``core``, ``config``: the node's, shared with the service;
    * ``pending``: the service's registrations still starting their process, by name (a
      handoff in waits for one of its name, and is one itself while its factory runs);
    * ``first_hid``: where this node's handoff ids start (random: see the service);
    * ``incarnation_of(node)``, ``suspected(node)``: membership's view of a peer;
    * ``spawn(coro)``: run a task the node owns (``Node._spawn``); ``publish(event)``: a registry event;
    * ``changed()``: the core has outputs: carry them out at the end of this loop turn;
    * ``progressed()``: a marker was relayed: wake a drain waiting for its handoffs' markers;
    * ``retry_later()``: a move failed: rebalance again after a back-off;
      ``retry_reset()``: a move succeeded: the back-off starts over;
    * checkpoints: ``handover(name, pid)`` at step 1 (where they stand, for the request),
      ``handover_ended(name, pid, committed)`` at step 5 or A; on the new owner,
      ``handed_in(name, pid, spec, handover, has_state, state)`` once the copy runs (the
      lineage and base its claim carries), and ``handin_settled(name, pid, kept)`` when
      the copy claims the name (6: kept) or is withdrawn (C2).

    None of the callables awaits.
    """

    def __init__(
        self,
        runtime: Runtime,
        transport: Transport,
        core: TrackerCore,
        config: RegistryConfig,
        *,
        pending: Starting,
        first_hid: int,
        incarnation_of: Callable[[str], int | None],
        suspected: Callable[[str], bool],
        spawn: Callable[[Coroutine[Any, Any, Any]], Any],
        publish: Callable[[Any], None],
        changed: Callable[[], None],
        progressed: Callable[[], None],
        retry_later: Callable[[], None],
        retry_reset: Callable[[], None],
        handover: Callable[[Any, Pid], CheckpointHandover | None],
        handover_ended: Callable[[Any, Pid, bool], None],
        handed_in: Callable[
            [Any, Pid, Spec, CheckpointHandover | None, bool, Any], tuple[Lineage | None, Lineage | None]
        ],
        handin_settled: Callable[[Any, Pid, bool], None],
        orphaned: Callable[[Any, Pid, bool, Any, CheckpointHandover | None], None],
        exited: Callable[[Pid, Any], None],
    ) -> None:
        self.runtime = runtime
        self.transport = transport
        self.core = core
        self.config = config
        self.node = runtime.node_name
        self.loop = runtime.loop
        self._pending = pending
        self._hid = first_hid
        self._incarnation_of = incarnation_of
        self._suspected = suspected
        self._spawn = spawn
        self._publish = publish
        self._changed = changed
        self._progressed = progressed
        self._retry_later = retry_later
        self._retry_reset = retry_reset
        self._handover = handover
        self._handover_ended = handover_ended
        self._handed_in = handed_in
        self._handin_settled = handin_settled
        self._orphaned = orphaned
        self._exited = exited
        self._ratelog = RateLimitedLog(log, f"{self.node}: ")
        self.outgoing: dict[int, Outgoing] = {}
        self.incoming: dict[tuple[str, int], Incoming] = {}
        # Handoffs to this node whose gate opened, kept ``forward_ttl`` (see _open, rule 4).
        self.opened: dict[tuple[str, int], Incoming] = {}
        #: A leaving node's drain timed out: a process whose handoff fails stops rather than
        #: resumes (``RegistryService._abandon``)
        self.abandoned = False
        self._committed_in: dict[tuple[str, int], Pid] = {}  # (old host, hid) -> new pid
        # Forgets committed handoffs ``forward_ttl`` after: ``outgoing`` (its relays) and
        # ``_committed_in`` (its answer to a late cancel); one timer for a whole wave.
        self._expiry = Expiry(self.loop, config.forward_ttl)
        self._accept_sweep: asyncio.TimerHandle | None = None  # see _accept_again
        self.gate_releases = 0  # gates opened for a sender without its flush (see _gate_check)
        self.gate_held = 0  # messages those gates had held

    def handlers(self) -> dict[type, Callable[[str, Any], None]]:
        """Wire message type -> handler, for the node's dispatcher."""
        return {
            HandoffRequest: self._on_handoff_request,
            HandoffAccepted: self._on_handoff_accepted,
            HandoffRefused: self._on_handoff_refused,
            HandoffCommit: self._on_handoff_commit,
            HandoffCancel: self._on_handoff_cancel,
            HandoffCancelled: self._on_handoff_cancelled,
            FlushMarker: self._on_flush_marker,
            Flushed: self._on_flushed,
            RouteClosed: self._on_route_closed,
        }

    # --- what the service asks --------------------------------------------------------------------

    def busy(self) -> bool:
        """Whether a handoff is in flight, either way (not committed, not withdrawn)."""
        if any(o.state is not Sending.COMMITTED for o in self.outgoing.values()):
            return True
        # A handoff to this node accepted before it began to drain: once committed, its
        # claim is moved on like the others; stopping now would kill the only copy.
        return any(i.state in _IN_FLIGHT for i in self.incoming.values())

    def incoming_copy(self, pid: Pid) -> Incoming | None:
        """The handoff to this node whose copy is ``pid``, while it runs unclaimed (before 6)."""
        for inc in self.incoming.values():
            if inc.pid == pid and inc.state in (Receiving.ACCEPTED, Receiving.COMMIT_DUE):
                return inc
        return None

    def copy_exited(self, pid: Pid, reason: Any) -> bool:
        """A local process exited: whether it is the copy of a handoff to this node not
        claimed yet (it crashed in ``end_handoff``, say), its exit then kept for when the
        move settles. Claimed (6), the copy's exit is carried out as if it happened then
        (``exited``): the name restarts as after any crash. Carried out now, it found no
        claim to end, and the claim that followed left the name on a dead pid for good."""
        if not self.incoming:
            return False
        inc = self.incoming_copy(pid)
        if inc is None:
            return False
        inc.exited = (reason,)
        return True

    def relayed_to_all(self, nodes: set[str]) -> bool:
        """Whether every committed handoff from here has relayed a marker of each of ``nodes``."""
        return all(o.state is not Sending.COMMITTED or nodes <= o.relayed for o in self.outgoing.values())

    async def settled(self, pid: Pid, timeout: float) -> None:
        """Wait (at most ``timeout`` each) for the handoffs of ``pid`` in flight to commit or fail."""
        moving = [o for o in self.outgoing.values() if o.proc.pid == pid and o.state is not Sending.COMMITTED]
        for out in moving:  # let it commit (5) or abort (A) first, through a cancel (C1, C2) too
            if out.finished is not None:
                with contextlib.suppress(TimeoutError):
                    await within(out.finished, timeout)

    def peer_up_incoming(self, node: str) -> None:
        """A link to ``node`` came up, or ``node`` came up here: every gate still closed
        holds its direct messages too.

        A gate waits for the nodes linked when it is made (``_start``). One that links or
        comes up later may have sent to the old pid before it learned the new one (from the
        old host's removal, or from this node's claim, sent to it once it is up here): a
        joining node that read a handoff before its link or ``NodeUp`` for some peer let
        that peer's later messages overtake its forwarded ones. It sends its marker on
        seeing the claim (rule 4); the gate check lets it through without one if it goes
        down, silent, or unlinked while not up. One whose marker came already (it was up
        here before, and down for a while) sends none again: not waited for. Called before
        the link delivers anything and before the registry greets the node, so that
        nothing it sends to the new pid can come first.

        A gate open already closes again for such a node (9L) while the old pid still
        forwards (``forward_ttl`` after the claim, less ``REGATE_MARGIN``), if it was
        neither waited for nor flushed (it was cut off from here, not from the old host,
        through the whole move); once per node."""
        for inc in self.incoming.values():
            if inc.source != node and inc.proc is not None and node not in inc.flushed:
                gate = self.runtime.gate_of(inc.proc)
                if gate is not None:
                    gate.expect(node)
                    inc.waited.add(node)
                    if inc.state in _GATED:
                        # Claimed already: it may have seen the claim and sent its marker
                        # while cut off, lost with the link; it sends none again unasked.
                        self._ask_flush(inc, node)
        if self.opened:
            # Until the old host forgets the handoff (forward_ttl after it committed, a hop
            # before the claim here): its old pid forwards nothing later, nor relays markers.
            since = self.loop.time() - self.config.forward_ttl + REGATE_MARGIN
            # Not one that is moving on (frozen for a handoff from here, 1-5): its mailbox is
            # forwarded at the commit, but what a new gate held would follow later, behind
            # what the sender sent to the pid since.
            moving = {id(out.proc) for out in self.outgoing.values()}
            for inc in self.opened.values():
                if node == inc.source or inc.claimed_at <= since or id(inc.proc) in moving or self._source_gone(inc):
                    continue
                if node not in inc.waited:  # waited: flushed too, once open
                    self._regate(inc, node)
                elif inc.released and node in inc.released and self._asks_flush(node):
                    # Let through without its marker (suspected: cut off from here, not from
                    # the old host): as late as one never waited for, but it may have seen
                    # the claim, so it is asked for its marker. Not a node too old to ask:
                    # its marker might never come, and the gate would hold it until the
                    # handoff timeout.
                    inc.released.discard(node)
                    self._regate(inc, node)

    def peer_down_incoming(self, node: str) -> None:
        """``node`` is down: what it was handing to this node commits (6: the copy stays
        here), and no gate waits for its marker any more."""
        regated = [i for i in self.opened.values() if i.state is Receiving.REGATED]
        for inc in [*self.incoming.values(), *regated]:
            if inc.source == node and inc.state is Receiving.ACCEPTED:
                # The old host died mid-handoff: keep the process it handed us.
                self._claim(inc)
            gate = self.runtime.gate_of(inc.proc) if inc.proc is not None else None
            if gate is not None:
                if inc.source == node:
                    gate.release_all()
                else:
                    self._let_through(inc, gate, node)
            if inc.source == node and inc.proc is None:
                self._commit_due(inc)
            if inc.state in _GATED and inc.proc is not None and self.runtime.gate_of(inc.proc) is None:
                self._open(inc)

    def link_up_outgoing(self, node: str) -> None:
        """A link to ``node`` came up: a request (2) to it that no answer came for goes
        again. Posted while the link was down (a cut, a peer declared failed by the other
        side only), it was dropped with the dial that failed, and the process stayed frozen
        until its handoff timeout; sent before the old link died, it may have arrived, and
        the new owner takes a repeated request once (``_on_handoff_request``)."""
        for out in self.outgoing.values():
            if out.target == node and out.request is not None:
                self.transport.post(node, out.request)

    def peer_down_outgoing(self, node: str) -> None:
        """``node`` is down: a handoff to it that it has not accepted fails (A), and a
        cancel waiting for its answer (C2) has it: not committed, as far as we can tell."""
        for out in list(self.outgoing.values()):
            if out.target == node and not out.accepted.done():
                out.accepted.set_exception(ProcessExited("noconnection"))
            if out.target == node and out.cancel_answer is not None and not out.cancel_answer.done():
                out.cancel_answer.set_result(None)

    # --- the old host: one task per handoff runs the steps in order --------------------------------

    async def hand_off(self, command: StartHandoff) -> None:
        """Move the local process ``command.pid`` to ``command.target``: the whole of the old
        host's side. Its outcome goes to the core (handoff_done or handoff_failed)."""
        name, target, spec = command.name, command.target, command.spec
        proc = self.runtime.local(command.pid)
        if proc is None:
            self.core.handoff_failed(name, False)
            return
        gate = self.runtime.gate_of(proc)
        if gate is not None:
            # It arrived by a handoff moments ago and still holds some node's messages: move
            # it on only once they are in its mailbox, or they would be stranded.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.opened(), spec.handoff_timeout)
        started = time.perf_counter()  # loop.time() under uvloop counts whole milliseconds
        self._publish(HandoffStarted(name, command.pid, target))
        answer = await self._freeze(command, proc)
        if answer is None:
            return
        mine = self.core.claims[self.node].get(name)
        if mine is None or mine.pid != command.pid:
            # Its claim went while begin_handoff waited in its mailbox: it lost a conflict
            # (retired and told to die: its mailbox went to the winner, this was left in it)
            # or was unregistered. Moved now, its copy would claim the name again on the new
            # owner. Nothing moves; it goes on here (to die, if told to).
            self.core.handoff_failed(name, False)
            self._handover_ended(name, command.pid, False)
            if proc.alive:
                self.runtime.unfreeze(proc)
            self._publish(HandoffAborted(name, command.pid, "no longer registered here"))
            return
        self._hid += 1
        out = Outgoing(self._hid, name, proc, target, self.loop.create_future(), finished=self.loop.create_future())
        self.outgoing[out.hid] = out
        if not self._request(out, command, answer):
            return
        unknown: str | None = None  # why the outcome is unknown, if it is
        try:
            new_pid = await within(out.accepted, spec.handoff_timeout)  # step 4 (_on_handoff_accepted)
            if not self._linked(new_pid):
                # Accepted, but the link to that incarnation is gone since (a commit posted
                # now would reach its next incarnation, or nobody).
                unknown = f"{target} was lost after it accepted"
        except TimeoutError as exc:
            unknown = f"{target} did not take it: {exc}"
        except DistableError as exc:
            # Refused, or the new owner is down (its claims are dropped with it): it never
            # ran there, or no longer does. Resume the process here.
            self._abort(out, f"{target} did not take it: {exc}")
            return
        if unknown is not None:
            # The new owner may have started the process and, seeing this node fail meanwhile
            # (a pause), kept and claimed it; or it died with its copy. Ask before resuming
            # the copy here.
            committed = await self._cancel(out, spec.handoff_timeout)
            if committed is None:
                self._abort(out, unknown)
                return
            new_pid = committed
        self._commit(out, command.pid, new_pid)
        how = "resume" if out.has_state else "restart"
        self._publish(HandoffCompleted(name, command.pid, new_pid, how, time.perf_counter() - started))

    async def _freeze(self, command: StartHandoff, proc: Process) -> HandoffAnswer | None:
        """Step 1: ``begin_handoff`` inside the process, which then freezes. Returns its
        answer, or None if the handoff ends here (the process stays)."""
        name, spec = command.name, command.spec
        freeze = FreezeForHandoff(self.runtime, name)
        try:
            answer: HandoffAnswer = await within(detached(self.runtime.run_in(proc, freeze)), spec.handoff_timeout)
        except (TimeoutError, ProcessExited) as exc:
            freeze.cancelled = True
            if not self.core.leaving or not proc.alive:
                self._resume(name, proc, f"begin_handoff did not answer: {exc!r}")
                return None
            # A leaving node cannot wait for it: it stops handling messages once its current
            # handler returns, and its name starts afresh on the new owner (guarantee 5: a
            # graceful leave loses no name, even when it cannot keep the state).
            self.runtime.freeze(proc)
            self._lost_state(name, command.pid, f"begin_handoff did not answer within {spec.handoff_timeout} s")
            answer = Restart()
        if isinstance(answer, Ignore):
            if not self.core.leaving:
                self.core.handoff_failed(name, True)
                self._publish(HandoffAborted(name, command.pid, "ignore"))
                return None
            # A node that leaves cannot keep it (guarantee 5: a graceful leave hands every
            # process off): it starts afresh on its new owner, as for Restart().
            answer = Restart()
        return answer

    def _request(self, out: Outgoing, command: StartHandoff, answer: HandoffAnswer) -> bool:
        """Step 2, FROZEN -> REQUESTED: send HandoffRequest. False if the handoff ends here
        instead (FROZEN -> ABORTED: the state cannot cross the wire, and the node is not
        leaving, so the process stays, pinned)."""
        name, spec = out.name, command.spec
        spec_out = wire_spec(spec)
        out.has_state = isinstance(answer, Resume)
        ancestors, ancestor_handoffs = self.core.ancestry(name, command.pid)
        # Where its checkpoints stand: the new host continues them (its last state goes
        # along only when no Resume state does).
        handover = self._handover(name, command.pid)
        # Its last checkpoint's state goes along unless a Resume state does (it supersedes
        # it): after Restart() (a leaving node's too, when begin_handoff did not answer) the
        # new host starts the copy from it. Without it, the copy started afresh while its
        # claim continued the lineage, and the new host, a standby of it, had dropped its
        # own record for that copy: the acknowledged checkpoints were gone (the fault
        # campaign, seed 1525232718: a leaving node's copy waited on a standby cut off).
        lean = handover
        if handover is not None and out.has_state:
            lean = msgspec.structs.replace(handover, state=None)
        try:
            state = to_wire(answer.state) if isinstance(answer, Resume) else None
            request = HandoffRequest(
                out.hid, to_wire(name), spec_out, command.pid, out.has_state, state, ancestors, lean, ancestor_handoffs
            )
            self.transport.post(out.target, request)
        except DistableError as exc:
            if not self.core.leaving:
                out.move(Sending.ABORTED, Sending.FROZEN)
                del self.outgoing[out.hid]
                self.core.handoff_failed(name, True)  # retrying cannot help: it stays here
                self._handover_ended(name, command.pid, False)
                self.runtime.unfreeze(out.proc)
                log.error(
                    "%s: cannot hand %r off to %s: its state cannot cross the wire: %s; it stays on this node "
                    "until the cluster changes",
                    self.node,
                    name,
                    out.target,
                    exc,
                )
                self._publish(HandoffAborted(name, command.pid, f"state cannot be sent: {exc}"))
                return False
            self._lost_state(name, command.pid, f"its state cannot cross the wire: {exc}")
            out.has_state = False
            request = HandoffRequest(
                out.hid, to_wire(name), spec_out, command.pid, False, None, ancestors, handover, ancestor_handoffs
            )
            self.transport.post(out.target, request)
        out.move(Sending.REQUESTED, Sending.FROZEN)
        out.request = request
        return True

    def _on_handoff_accepted(self, node: str, msg: HandoffAccepted) -> None:
        """Step 4, REQUESTED -> ACCEPTED: the new owner runs the copy (gated)."""
        out = self.outgoing.get(msg.hid)
        if out is None or out.target != node or out.accepted.done():
            if out is None:
                self.transport.post(node, HandoffCancel(msg.hid))  # we gave up already
            elif out.target == node and out.state is Sending.COMMITTED:
                self.transport.post(node, HandoffCommit(msg.hid))  # said again: the commit was lost
            return  # (a cancel sent already: its answer decides, see _cancel)
        out.move(Sending.ACCEPTED, Sending.REQUESTED)
        out.accepted.set_result(msg.new_pid)

    def _on_handoff_refused(self, node: str, msg: HandoffRefused) -> None:
        """Step 4 answered no: ``hand_off`` aborts (A)."""
        out = self.outgoing.get(msg.hid)
        if out is not None and out.target == node and not out.accepted.done():
            out.accepted.set_exception(FactoryError(msg.reason))

    async def _cancel(self, out: Outgoing, timeout: float) -> Pid | None:
        """Step C1, REQUESTED or ACCEPTED -> CANCELLING: withdraw the handoff ``out`` whose
        outcome is unknown, and wait for the answer (C2): the new owner's pid if it had
        committed (then the move stands: step 5), else None (it stopped its copy, or cannot
        answer: it is down, or silent for ``timeout``, and a copy it kept anyway is retired
        as superseded once its claim arrives, see TrackerCore._pick_winner)."""
        out.move(Sending.CANCELLING, Sending.REQUESTED, Sending.ACCEPTED)
        out.accepted.cancel()  # a late HandoffAccepted changes nothing now: the answer decides
        out.cancel_answer = self.loop.create_future()
        try:
            self.transport.post(out.target, HandoffCancel(out.hid))
            return await within(out.cancel_answer, timeout)
        except Exception:  # no link, no answer in time, or the target went down
            return None

    def _on_handoff_cancelled(self, node: str, msg: HandoffCancelled) -> None:
        """Step C2 (the answer to our C1): committed, with the new pid, or not."""
        out = self.outgoing.get(msg.hid)
        if out is None or out.target != node or out.cancel_answer is None or out.cancel_answer.done():
            return
        out.cancel_answer.set_result(msg.new_pid if msg.committed else None)

    def _commit(self, out: Outgoing, old_pid: Pid, new_pid: Pid) -> None:
        """Step 5, ACCEPTED or CANCELLING (answered committed) -> COMMITTED: forward what
        queued up, retire the old pid, let the new owner claim; the old process dies."""
        out.move(Sending.COMMITTED, Sending.ACCEPTED, Sending.CANCELLING)
        proc, target, hid = out.proc, out.target, out.hid
        post = self.transport.post

        def relay(node: str, _marker_hid: int) -> None:  # a marker parked in the mailbox (8)
            post(target, Flushed(hid, node))

        self.runtime.forward_mailbox(proc, new_pid, relay)
        self.runtime.retire(proc, new_pid, self.config.forward_ttl)
        post(target, HandoffCommit(hid))
        self.core.handoff_done(out.name, old_pid, new_pid)
        self._handover_ended(out.name, old_pid, True)
        self._retry_reset()
        self._changed()
        ask_to_die(self.runtime, proc)
        self.runtime.unfreeze(proc)
        self._expiry.drop_later(self.outgoing, hid)

    def _abort(self, out: Outgoing, reason: str) -> None:
        """A, REQUESTED or CANCELLING -> ABORTED: refused, the new owner is down, or a cancel
        answered not committed (or not at all): the process resumes here."""
        out.move(Sending.ABORTED, Sending.REQUESTED, Sending.CANCELLING)
        del self.outgoing[out.hid]
        self._resume(out.name, out.proc, reason)

    def _resume(self, name: Any, proc: Process, reason: str) -> None:
        """The handoff of ``proc`` failed (step 1 or a later one): it resumes here, and
        the move is retried after a back-off."""
        self.core.handoff_failed(name, False)
        self._handover_ended(name, proc.pid, False)
        self._retry_later()
        if proc.alive:
            if self.abandoned:  # a leaving node's drain is over: it stops, not resumes
                self.runtime.stop_first(proc, SHUTDOWN)
            self.runtime.unfreeze(proc)
        self._ratelog.warning(("handoff", reason[:40]), "handoff of %r aborted: %s", name, reason)
        self._publish(HandoffAborted(name, proc.pid, reason))
        self._changed()

    def _linked(self, pid: Pid) -> bool:
        """Whether this node has a link to ``pid``'s node, in ``pid``'s incarnation."""
        return self._incarnation_of(pid.node) == pid.incarnation and pid.node in self.transport.connected()

    def _lost_state(self, name: Any, pid: Pid, cause: str) -> None:
        """A leaving node hands ``name`` off without its state (it starts fresh there)."""
        # Once per name and 10 s: a move the new owner refuses is retried until the drain ends.
        what = "%r (%r) starts afresh on its new owner (from its last checkpoint, if any): %s"
        self._ratelog.log(logging.ERROR, ("state lost", name), what, name, pid, cause)
        self._publish(HandoffStateLost(name, pid, cause))

    def _on_flush_marker(self, node: str, msg: FlushMarker) -> None:
        """Step 7 reaches the old host; step 8: relay it behind everything ``node`` sent
        along the old route (at once once COMMITTED, else parked in the frozen mailbox,
        which step 5 forwards with the marker in its place)."""
        out = self.outgoing.get(msg.hid)
        if out is None:
            return
        if out.state is Sending.COMMITTED:
            out.relayed.add(node)
            self.transport.post(out.target, Flushed(msg.hid, node))
            self._progressed()
        else:
            self.runtime.park_marker(out.proc, node, msg.hid)  # behind that node's messages
            out.relayed.add(node)

    # --- the new owner ----------------------------------------------------------------------------

    def _on_handoff_request(self, node: str, msg: HandoffRequest) -> None:
        """Step 2 arrives: step 3 begins (STARTING), at once once its batch is dispatched,
        in a task of its own from where it first suspends (``run_soon``: a join moves
        thousands of names at once, and a task each was a fourteenth of the joiner's CPU).
        A request whose old host is not up here (in the incarnation that sent it) is
        committed from the start (COMMIT_DUE), as ``peer_down_incoming`` commits one that
        came before the verdict."""
        key = (node, msg.hid)
        if key in self.incoming or key in self.opened or key in self._committed_in:
            # Sent again on a new link (``link_up_outgoing``) after this node had it: its
            # answer is on its way, or sent again (``ACCEPT_AGAIN``); a second copy here
            # would outlive the first's claim.
            return
        if self.core.leaving:
            # Draining: it would only have to move on again. The sender learns we are
            # leaving (RegistryLeaving) and retries with its next owner.
            self.transport.post(node, HandoffRefused(msg.hid, "the node is draining"))
            return
        inc = Incoming(
            node, msg.hid, msg.name, msg.spec, msg.old_pid, msg.ancestors, msg.checkpoint, msg.ancestor_handoffs
        )
        self.incoming[key] = inc
        if self._incarnation_of(node) != msg.old_pid.incarnation:
            # The old host is down here already: this node read the request only after its
            # verdict (it was paused, and the request waited in the socket behind it), so
            # peer_down_incoming has run and will not run again for it. Committed now, as
            # then (rule 3): the copy claims the name once it runs. Accepted instead, it
            # waited for a commit that could never come, and the acceptance it repeated
            # reached the old host's next incarnation, which knows no such handoff and
            # cancelled it: the copy died with the old host's last state, which no other
            # node held any more (the checkpoint campaign, seed 4229829433: 19 copies).
            self._commit_due(inc)
        start = self._start(inc, msg.has_state, msg.state)
        if not self.runtime.run_soon(start):
            self._spawn(start)

    async def _start(self, inc: Incoming, has_state: bool, state: Any) -> None:
        """Step 3: start the copy from the spec, ``end_handoff(state)`` first in its
        mailbox, gated; then, as the handoff stands once it runs: accept it (4), claim it
        (6, committed meanwhile) or stop it (withdrawn meanwhile)."""
        name = inc.name
        previous = self._pending.waiter(name)
        if previous is not None:
            await asyncio.shield(previous)
        mine = self.core.claims[self.node].get(name)
        if mine is not None and self.runtime.local(mine.pid) is not None:
            # A copy already runs here (restarted on this side of a healed netsplit, say) and
            # the old host had not seen its claim when it chose to move its own: a second local
            # claim would replace the first and leave that process running, unregistered.
            # Refuse; conflict resolution settles which copy survives, the old host retries.
            if inc.state is Receiving.COMMIT_DUE:
                # Unless the old host is down here: nothing retries, and the state it sent,
                # held nowhere else, would go with the refusal. The running copy gets it, as
                # a conflict's winner gets its loser's.
                self._orphaned(name, mine.pid, has_state, state, inc.checkpoint)
            self._refuse(inc, f"{name!r} already runs here as {mine.pid!r}")
            return
        self._pending.begin(name)
        try:
            spec = inc.spec
            pid = await run_factory(spec.factory, spec.args, spec.kwargs, self.runtime, self.config.factories)
        except DistableError as exc:
            self._refuse(inc, str(exc))
            return
        finally:
            self._pending.end(name, None)
        proc = self.runtime.local(pid)
        if proc is None:
            self._refuse(inc, "the new process exited at once")
            return
        if has_state:
            self.runtime.run_first(proc, lambda p: p.end_handoff(state)).add_done_callback(
                log_failure(proc, "end_handoff")
            )
        # Its checkpoints continue here (without a Resume state, the last one is delivered
        # to end_handoff the same way); the claim (6) carries their lineage.
        inc.lineage, inc.base = self._handed_in(name, pid, inc.spec, inc.checkpoint, has_state, state)
        # The gate waits for the nodes that can be sending: linked and not suspected. One up
        # here gets the new claim in a Delta and answers with a marker; one linked but not
        # up yet may learn the new pid from the old host's removal and send to it, and gets
        # the claim once it is up here (a joining node often reads its handoffs before its
        # NodeUp for some peers). A suspected node is silent: it would hold the gate to its
        # timeout for nothing. Nodes that link or come up later: peer_up_incoming.
        expected = {n for n in self.transport.connected() if not self._suspected(n)}
        expected.add(self.node)
        expected.discard(inc.source)
        self.runtime.gate(proc, expected)
        inc.waited = expected
        inc.pid, inc.proc = pid, proc
        if inc.state is Receiving.CANCEL_DUE:
            self._stop_copy(inc)
        elif inc.state is Receiving.COMMIT_DUE:
            self._claim(inc)
        else:
            self._accept(inc)

    def _refuse(self, inc: Incoming, reason: str) -> None:
        """Step 4 answered no (4R), from STARTING or a step due: the old host keeps its copy."""
        inc.move(Receiving.REFUSED, Receiving.STARTING, Receiving.COMMIT_DUE, Receiving.CANCEL_DUE)
        self.incoming.pop((inc.source, inc.hid), None)
        self.transport.post(inc.source, HandoffRefused(inc.hid, reason))

    def _accept(self, inc: Incoming) -> None:
        """Step 4, STARTING -> ACCEPTED: the copy runs, gated; tell the old host."""
        inc.move(Receiving.ACCEPTED, Receiving.STARTING)
        assert inc.pid is not None
        self.transport.post(inc.source, HandoffAccepted(inc.hid, inc.pid))
        inc.accepted_at = self.loop.time()
        if self._accept_sweep is None:
            self._accept_sweep = self.loop.call_later(ACCEPT_AGAIN, self._accept_again)

    def _accept_again(self) -> None:
        """Every ``ACCEPT_AGAIN`` s while a handoff to this node waits in ACCEPTED: say step 4
        again to its old host. It answers with the commit (lost with a link), a cancel (it
        gave up: it thought this node dead), or nothing new (a cancel of its own decides);
        an old host that goes down commits it here (``peer_down_incoming``). One timer for
        all of them."""
        self._accept_sweep = None
        if self.runtime.closing:
            return
        now = self.loop.time()
        waiting = False
        for inc in self.incoming.values():
            if inc.state is not Receiving.ACCEPTED or inc.pid is None:
                continue
            waiting = True
            if now - inc.accepted_at >= ACCEPT_AGAIN:
                inc.accepted_at = now
                self.transport.post(inc.source, HandoffAccepted(inc.hid, inc.pid))
        if waiting:
            self._accept_sweep = self.loop.call_later(ACCEPT_AGAIN, self._accept_again)

    def _on_handoff_commit(self, node: str, msg: HandoffCommit) -> None:
        """Step 5 arrives: claim (6), or, while the copy is still starting, once it runs."""
        inc = self.incoming.get((node, msg.hid))
        if inc is None:
            return
        if inc.proc is None:
            self._commit_due(inc)
        elif inc.state is not Receiving.CLAIMED:
            self._claim(inc)

    def _commit_due(self, inc: Incoming) -> None:
        """The move was committed (HandoffCommit, or the old host went down) while the copy
        is still starting: STARTING -> COMMIT_DUE, claimed once it runs (a withdrawal that
        came first still wins)."""
        assert inc.state in _STARTING, f"handoff {inc.hid} of {inc.name!r}: {inc.state} -> {Receiving.COMMIT_DUE}"
        if inc.state is Receiving.STARTING:
            inc.move(Receiving.COMMIT_DUE, Receiving.STARTING)

    def _claim(self, inc: Incoming) -> None:
        """Step 6, ACCEPTED or COMMIT_DUE -> CLAIMED: claim the name with moved_from =
        old pid (the core broadcasts it), and check the gate every ``GATE_CHECK`` s."""
        inc.move(Receiving.CLAIMED, Receiving.ACCEPTED, Receiving.COMMIT_DUE)
        pid = inc.pid
        assert pid is not None
        # Remembered after the incoming handoff is finished: a late HandoffCancel from an old
        # host that did not learn the outcome (it was paused) must hear that it committed.
        key = (inc.source, inc.hid)
        self._committed_in[key] = pid
        self._expiry.drop_later(self._committed_in, key)
        self._handin_settled(inc.name, pid, True)
        self.core.local_claim(
            inc.name,
            pid,
            inc.spec,
            self.loop.time(),
            moved_from=inc.old_pid,
            handoff=inc.hid,
            ancestors=inc.ancestors,
            ancestor_handoffs=inc.ancestor_handoffs,
            lineage=inc.lineage,
            base=inc.base,
        )
        self._changed()
        if inc.exited is not None:
            self._exited(pid, inc.exited[0])  # it exited before its claim (copy_exited)
        inc.claimed_at = self.loop.time()
        deadline = inc.claimed_at + inc.spec.handoff_timeout
        inc.timer = self.loop.call_later(GATE_CHECK, self._gate_check, inc, deadline)

    def _on_handoff_cancel(self, node: str, msg: HandoffCancel) -> None:
        """Step C1 arrives, C2 answers: the old host withdraws the handoff. Stop the copy
        started here, unless the move was committed already (this node saw the old host
        fail and kept the process): the answer says which, and the old host acts on it
        (see hand_off). A cancel from an old host that is down here, for a copy still
        starting that its verdict committed, is ignored (see below)."""
        key = (node, msg.hid)
        inc = self.incoming.get(key)
        gone = inc is not None and self._incarnation_of(node) != inc.old_pid.incarnation
        if inc is not None and inc.state is Receiving.COMMIT_DUE and gone:
            # Committed by the old host's verdict here, and that host is still down: a cancel
            # it sent before it went down, read after the verdict as its request may be, must
            # not withdraw the copy (dead, that host took its own copy along, and its last
            # state is only here). Unanswered: an old host that was only paused gives up
            # waiting and resumes its copy, which this copy's claim then supersedes (its
            # state comes here, as a conflict's loser's does).
            return
        claimed = inc is not None and inc.state is Receiving.CLAIMED
        committed = self._committed_in.get(key) if inc is None else (inc.pid if claimed else None)
        if committed is not None:
            self.transport.post(node, HandoffCancelled(msg.hid, True, committed))
            return
        self.transport.post(node, HandoffCancelled(msg.hid, False))
        if inc is None:
            return
        if inc.proc is None:
            # The factory is still running: _start stops the copy once it runs.
            inc.move(Receiving.CANCEL_DUE, *_STARTING)
            return
        self._stop_copy(inc)

    def _stop_copy(self, inc: Incoming) -> None:
        """C2, ACCEPTED or CANCEL_DUE -> CANCELLED: the copy started here dies, ungated."""
        inc.move(Receiving.CANCELLED, Receiving.ACCEPTED, Receiving.CANCEL_DUE)
        assert inc.proc is not None
        self.incoming.pop((inc.source, inc.hid), None)
        self.runtime.ungate(inc.proc)
        self._handin_settled(inc.name, inc.proc.pid, False)  # the old host's copy continues them
        if inc.exited is not None:
            self._exited(inc.proc.pid, inc.exited[0])  # it exited before (copy_exited): nothing to stop
            return
        ask_to_die(self.runtime, inc.proc)

    def _on_flushed(self, node: str, msg: Flushed) -> None:
        """Step 8 arrives, step 9: release the held messages of the node it names (and
        once the gate is open, remember that it flushed: not held again, 9L)."""
        self._flushed(node, msg.hid, msg.node)

    def _on_route_closed(self, node: str, msg: RouteClosed) -> None:
        """Step 9 without a relay (version 7): ``node`` has the old host down, no link to
        it and nothing queued for it, so nothing it sent along the old route can still
        come (``TrackerCore._defer_flush``): as if the old host had relayed its marker."""
        self._flushed(msg.old_host, msg.hid, node)

    def _flushed(self, old_host: str, hid: int, sender: str) -> None:
        key = (old_host, hid)
        inc = self.incoming.get(key) or self.opened.get(key)
        if inc is None or inc.proc is None:
            return
        inc.flushed.add(sender)
        gate = self.runtime.gate_of(inc.proc)
        if gate is not None:
            gate.release(sender)
        if self.runtime.gate_of(inc.proc) is None and inc.state in _GATED:
            self._open(inc)

    def tell_route_closed(self, notice: RouteClosedNotice) -> None:
        """``notice`` from the core: tell the new host of a move that this node has no route
        left to the old host (``RouteClosed``), if that is so here too: no link to it and
        nothing queued for it (what is queued goes out when a link comes up, and could
        then be forwarded behind this node's later direct messages). Otherwise its marker
        goes once the old host is up here, as before. The service's command; never awaits."""
        transport = self.transport
        if transport.peer_version(notice.new_host) < ROUTE_CLOSED_VERSION:
            return  # it would not know the message; its gate waits as before
        if transport.is_connected(notice.old_host) or transport.queued(notice.old_host):
            return
        transport.post(notice.new_host, RouteClosed(notice.hid, notice.old_host))

    def _gate_check(self, inc: Incoming, deadline: float) -> None:
        """Step 9 without a marker: open the gate of a handed-in process for every sender
        that cannot be sending any more (down, or suspected: paused, cut off), for all when
        the old host that relays the markers is gone, and for all at ``deadline``; check
        again every ``GATE_CHECK`` seconds until it is open. A message it held waited at
        most that long behind a marker that may never come (counted in statistics)."""
        if inc.state not in _GATED or inc.proc is None:
            return
        gate = self.runtime.gate_of(inc.proc)
        if gate is not None:
            now = self.loop.time()
            peers = self.core.peers
            # The old host relays every marker: once it is gone, none will come, this
            # node's own included (nor does its old pid forward anything any more).
            source_gone = self._source_gone(inc)
            if now >= deadline or source_gone:
                stuck = sorted(gate.waiting)
            else:
                linked = self.transport.is_connected
                stuck = sorted(
                    n
                    for n in gate.waiting
                    if n != self.node and ((n not in peers and not linked(n)) or self._suspected(n))
                )
            for node in stuck:
                self.gate_releases += 1
                self.gate_held += len(gate.held.get(node, ()))
                if source_gone:
                    gate.release(node)
                else:
                    self._let_through(inc, gate, node)
            if stuck and now >= deadline:
                self._ratelog.warning(
                    ("gate", inc.source),
                    "handoff of %r from %s: no flush from %s within %.1f s; releasing held messages",
                    inc.name,
                    inc.source,
                    ", ".join(stuck),
                    inc.spec.handoff_timeout,
                )
            if self.runtime.gate_of(inc.proc) is not None:
                inc.timer = self.loop.call_later(GATE_CHECK, self._gate_check, inc, deadline)
                return
        self._open(inc)

    def _open(self, inc: Incoming) -> None:
        """Step 9 done, CLAIMED or REGATED -> OPEN: every node is flushed or let through.

        Kept ``forward_ttl`` (the old pid forwards that long), then forgotten: a node that
        was neither flushed nor waited for, cut off from here through the whole move but not
        from the old host, may have sent to the old pid, and once it comes up here
        (``peer_up_incoming``), what it sends to the new pid could overtake that on its way
        through the old host (9L)."""
        if inc.timer is not None:
            inc.timer.cancel()
            inc.timer = None
        if inc.state is Receiving.REGATED:
            inc.move(Receiving.OPEN, Receiving.REGATED)
            return
        inc.move(Receiving.OPEN, Receiving.CLAIMED)
        key = (inc.source, inc.hid)
        self.incoming.pop(key, None)
        if inc.pid is not None and self.runtime.local(inc.pid) is inc.proc:
            # One set from now on (a join wave keeps thousands of these): 9L asks only
            # whether a node is in either.
            inc.waited |= inc.flushed
            inc.flushed = inc.waited
            inc.checkpoint = None  # its state went to the copy: not kept forward_ttl more
            self.opened[key] = inc
            self._expiry.drop_later(self.opened, key)

    def _regate(self, inc: Incoming, node: str) -> None:
        """9L, OPEN (or REGATED already) -> REGATED: ``node`` came up here after the gate
        opened, as a node cut off from here may (see ``_open``): hold its direct messages
        until its marker comes, or the gate check lets it through, as step 3's gate does."""
        inc.waited.add(node)  # once
        proc = inc.proc
        if proc is None or inc.pid is None or self.runtime.local(inc.pid) is not proc:
            return  # moved on or exited since: its pid leads elsewhere, or nowhere
        gate = self.runtime.gate_of(proc)
        if gate is None:
            gate = self.runtime.gate(proc, set())
        gate.expect(node)
        self._ask_flush(inc, node)
        if inc.state is Receiving.OPEN:
            inc.move(Receiving.REGATED, Receiving.OPEN)
            deadline = self.loop.time() + inc.spec.handoff_timeout
            inc.timer = self.loop.call_later(GATE_CHECK, self._gate_check, inc, deadline)

    def _asks_flush(self, node: str) -> bool:
        """Whether ``node``'s link agreed on a protocol version with ``FlushAsk`` (a node not
        linked yet is not asked: an older one could not decode it). Query."""
        return self.transport.peer_version(node) >= FLUSH_ASK_VERSION

    def _ask_flush(self, inc: Incoming, node: str) -> None:
        """Ask ``node``, which the gate of ``inc`` holds, for its marker (``FlushAsk``): one
        that saw the claim sends none again by itself. A node that speaks no ``FlushAsk``
        sends its marker when it sees the claim, as before."""
        if self._asks_flush(node):
            self.transport.post(node, FlushAsk(inc.hid, inc.old_pid, to_wire(inc.name)))

    def _let_through(self, inc: Incoming, gate: Gate, node: str) -> None:
        """Release ``node`` from ``inc``'s gate without its marker, and remember it (9L)."""
        if node in gate.waiting:  # not released by its marker (8) yet
            if inc.released is None:
                inc.released = set()
            inc.released.add(node)
        gate.release(node)

    def _source_gone(self, inc: Incoming) -> bool:
        """Whether the old host that relays the markers of ``inc`` is down, suspected or
        replaced by a new incarnation here (the old pid's): none will come. Query."""
        source = inc.source
        return (
            source not in self.core.peers
            or self._suspected(source)
            or self._incarnation_of(source) != inc.old_pid.incarnation
        )


# Receiving states before the copy runs, those a drain waits for, and those whose gate the
# gate check watches (step 6 to 9, and 9L).
_STARTING = (Receiving.STARTING, Receiving.COMMIT_DUE, Receiving.CANCEL_DUE)
_IN_FLIGHT = frozenset((Receiving.STARTING, Receiving.COMMIT_DUE, Receiving.ACCEPTED))
_GATED = (Receiving.CLAIMED, Receiving.REGATED)
