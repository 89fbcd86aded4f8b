"""The handoff protocol, both sides: the old host that moves a process, the new owner that
takes it (the table in docs/internals.md, "Handoff", has every step).

Old host X to new owner Y::

    X  begin_handoff() inside the process, which then freezes (its mailbox fills,
       nothing is handled)                  -> HandoffRequest(hid, name, spec, state)
    Y  starts the process from the spec, puts end_handoff(state) first in its mailbox,
       gates it (direct messages from each node are held)   -> HandoffAccepted(new pid)
    X  forwards the frozen mailbox in order (Forwarded), retires the old pid (it now
       forwards stragglers), tells the old process to die()  -> HandoffCommit
    Y  claims the name (moved_from = old pid) and broadcasts the claim
    *  every node that sees that claim sends FlushMarker(hid) to X; X relays it to Y as
       Flushed(hid, node) after everything that node sent along the old route; Y then
       releases that node's held messages.

If X gives up before Y accepts (timeout, Y refuses or dies), X sends HandoffCancel and
unfreezes the process: it simply stays, and the move is retried later.

It uses the runtime's handoff operations (freeze, forward_mailbox, gate, ...) and the
tracker core, and nothing of the registry service that owns it: what it needs of the
service is passed to ``HandoffCoordinator``, so imports run service -> handoff -> runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .._errors import DistableError, FactoryError, ProcessExited
from .._log import RateLimitedLog
from ..runtime import Ignore, Process, Restart, Resume, Runtime
from ..transport import Transport
from ..wire import Pid, to_wire
from ..wire._messages import (
    CLAIM_NAME,
    Flushed,
    FlushMarker,
    HandoffAccepted,
    HandoffCancel,
    HandoffCancelled,
    HandoffCommit,
    HandoffRefused,
    HandoffRequest,
    Spec,
)
from ._aio import detached, log_failure, within
from ._core import HandOff, RegistryConfig, TrackerCore
from ._events import HandoffAborted, HandoffCompleted, HandoffStarted, HandoffStateLost
from ._factory import run_factory

log = logging.getLogger("distable.registry")

GATE_CHECK = 0.25  # how often a handed-in process's gate looks for senders that went silent


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
                "%r (%r): begin_handoff raised %r; it starts afresh on its new owner",
                self.name,
                proc,
                exc,
                exc_info=exc,
            )
            answer = Restart()
        if not isinstance(answer, Restart | Resume | Ignore):
            log.error(
                "%r (%r): begin_handoff returned %r, not Restart/Resume/Ignore; it starts afresh on its new owner",
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


class _EndHandoff:
    __slots__ = ("state",)

    def __init__(self, state: Any) -> None:
        self.state = state

    async def __call__(self, proc: Process) -> None:
        await proc.end_handoff(self.state)


@dataclass(slots=True)
class Outgoing:
    hid: int
    name: Any
    proc: Process
    target: str
    accepted: asyncio.Future[Pid]
    committed: bool = False
    relayed: set[str] = field(default_factory=set)
    # Set once HandoffCancel is sent: the new owner's answer (its pid if it had committed).
    cancel_answer: asyncio.Future[Pid | None] | None = None


@dataclass(slots=True)
class Incoming:
    source: str
    hid: int
    name: Any
    spec: Spec
    old_pid: Pid
    ancestors: tuple[Pid, ...]
    pid: Pid | None = None
    proc: Process | None = None
    commit_pending: bool = False
    cancelled: bool = False
    committed: bool = False
    timer: asyncio.TimerHandle | None = None


class HandoffCoordinator:
    """The handoffs of one node, as old host (``outgoing``) and as new owner (``incoming``).

    Every method runs on the event loop. Its interface to the registry service that owns
    it is what ``__init__`` takes:

    * ``runtime``, ``transport``, ``core``, ``config``: the node's, shared with the service;
    * ``pending``: the service's registrations still starting their process, by name (a
      handoff in waits for one of its name, and is one itself while its factory runs);
    * ``first_hid``: where this node's handoff ids start (random: see the service);
    * ``creation_of(node)``, ``suspected(node)``: membership's view of a peer;
    * ``spawn(coro)``: run a task on the node's task group; ``publish(event)``: a registry event;
    * ``changed()``: the core has outputs: carry them out at the end of this loop turn;
    * ``progressed()``: a marker was relayed: wake a drain waiting for its handoffs' markers;
    * ``retry_later()``: a move failed: rebalance again after a back-off;
      ``retry_reset()``: a move succeeded: the back-off starts over.

    None of the callables awaits.
    """

    def __init__(
        self,
        runtime: Runtime,
        transport: Transport,
        core: TrackerCore,
        config: RegistryConfig,
        *,
        pending: dict[Any, asyncio.Future[Pid | None]],
        first_hid: int,
        creation_of: Callable[[str], int | None],
        suspected: Callable[[str], bool],
        spawn: Callable[[Coroutine[Any, Any, Any]], Any],
        publish: Callable[[Any], None],
        changed: Callable[[], None],
        progressed: Callable[[], None],
        retry_later: Callable[[], None],
        retry_reset: Callable[[], None],
    ) -> None:
        self.runtime = runtime
        self.transport = transport
        self.core = core
        self.config = config
        self.node = runtime.node_name
        self.loop = runtime.loop
        self._pending = pending
        self._hid = first_hid
        self._creation_of = creation_of
        self._suspected = suspected
        self._spawn = spawn
        self._publish = publish
        self._changed = changed
        self._progressed = progressed
        self._retry_later = retry_later
        self._retry_reset = retry_reset
        self._ratelog = RateLimitedLog(log, f"{self.node}: ")
        self.outgoing: dict[int, Outgoing] = {}
        self.incoming: dict[tuple[str, int], Incoming] = {}
        self._committed_in: dict[tuple[str, int], Pid] = {}  # (old host, hid) -> new pid
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
        }

    # --- what the service asks --------------------------------------------------------------------

    def busy(self) -> bool:
        """Whether a handoff is in flight, either way (not committed, not cancelled)."""
        if any(not o.committed for o in self.outgoing.values()):
            return True
        # A handoff to this node accepted before it began to drain: once committed, its
        # claim is moved on like the others; stopping now would kill the only copy.
        return any(not i.committed and not i.cancelled for i in self.incoming.values())

    def relayed_to_all(self, nodes: set[str]) -> bool:
        """Whether every committed handoff from here has relayed a marker of each of ``nodes``."""
        return all(not o.committed or nodes <= o.relayed for o in self.outgoing.values())

    async def settled(self, pid: Pid, timeout: float) -> None:
        """Wait (at most ``timeout`` each) for the handoffs of ``pid`` in flight to commit or fail."""
        moving = [o for o in self.outgoing.values() if o.proc.pid == pid and not o.committed]
        for out in moving:  # let it commit or fail first (the handoff's own wait comes first)
            with contextlib.suppress(Exception):
                await within(out.accepted, timeout)

    def peer_down_incoming(self, node: str) -> None:
        """``node`` is down: the handoffs it was making to this node commit (those it was
        told were accepted) or commit once started; gates stop waiting for it."""
        for key, inc in list(self.incoming.items()):
            if inc.source == node and not inc.committed and inc.pid is not None and not inc.cancelled:
                # The old host died mid-handoff: keep the process it handed us.
                self._commit(inc)
            gate = self.runtime.gate_of(inc.proc) if inc.proc is not None else None
            if gate is not None:
                if inc.source == node:
                    gate.release_all()
                else:
                    gate.release(node)
            if inc.source == node and inc.pid is None:
                inc.commit_pending = True
            if inc.proc is not None and self.runtime.gate_of(inc.proc) is None and inc.committed:
                self._finish_incoming(key)

    def peer_down_outgoing(self, node: str) -> None:
        """``node`` is down: the handoffs to it that it has not accepted fail, and a cancel
        waiting for its answer has it: none."""
        for out in list(self.outgoing.values()):
            if out.target == node and not out.accepted.done():
                out.accepted.set_exception(ProcessExited("noconnection"))
            if out.target == node and out.cancel_answer is not None and not out.cancel_answer.done():
                out.cancel_answer.set_result(None)

    # --- the old host -----------------------------------------------------------------------------

    async def hand_off(self, command: HandOff) -> None:
        """Move the local process ``command.pid`` to ``command.target`` (the whole of the
        old host's side); its outcome goes to the core (handoff_done or handoff_failed)."""
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
        freeze = FreezeForHandoff(self.runtime, name)
        try:
            frozen = detached(self.runtime.run_in(proc, freeze))
            answer = await within(frozen, spec.handoff_timeout)
        except (TimeoutError, ProcessExited) as exc:
            freeze.cancelled = True
            if not self.core.leaving or not proc.alive:
                self._abort(name, proc, f"begin_handoff did not answer: {exc!r}")
                return
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
                return
            # A node that leaves cannot keep it (guarantee 5: a graceful leave hands every
            # process off): it starts afresh on its new owner, as for Restart().
            answer = Restart()
        self._hid += 1
        hid = self._hid
        out = Outgoing(hid, name, proc, target, self.loop.create_future())
        self.outgoing[hid] = out
        wire_spec = Spec(spec.factory, to_wire(spec.args), to_wire(spec.kwargs), spec.restart, spec.handoff_timeout)
        has_state = isinstance(answer, Resume)
        ancestors = self.core.lineage(name, command.pid)
        try:
            state = to_wire(answer.state) if isinstance(answer, Resume) else None
            request = HandoffRequest(hid, to_wire(name), wire_spec, command.pid, has_state, state, ancestors)
            self.transport.post(target, request)
        except DistableError as exc:
            if not self.core.leaving:
                del self.outgoing[hid]
                self.core.handoff_failed(name, True)  # retrying cannot help: it stays here
                self.runtime.unfreeze(proc)
                log.error("%s: cannot hand %r off: its state cannot cross the wire: %s", self.node, name, exc)
                self._publish(HandoffAborted(name, command.pid, f"state cannot be sent: {exc}"))
                return
            self._lost_state(name, command.pid, f"its state cannot cross the wire: {exc}")
            has_state = False
            request = HandoffRequest(hid, to_wire(name), wire_spec, command.pid, False, None, ancestors)
            self.transport.post(target, request)
        unknown: str | None = None  # why the outcome is unknown, if it is
        try:
            new_pid = await within(out.accepted, spec.handoff_timeout)
            if not self._linked(new_pid):
                # Accepted, but the link to that incarnation is gone since (a commit posted
                # now would reach its next incarnation, or nobody).
                unknown = f"{target} was lost after it accepted"
        except TimeoutError as exc:
            unknown = f"{target} did not take it: {exc}"
        except DistableError as exc:
            # Refused, or the new owner is down (its claims are dropped with it): it never
            # ran there, or no longer does. Resume the process here.
            del self.outgoing[hid]
            self._abort(name, proc, f"{target} did not take it: {exc}")
            return
        if unknown is not None:
            # The new owner may have started the process and, seeing this node fail meanwhile
            # (a pause), kept and claimed it; or it died with its copy. Ask before resuming
            # the copy here.
            committed = await self._cancel(out, spec.handoff_timeout)
            if committed is None:
                del self.outgoing[hid]
                self._abort(name, proc, unknown)
                return
            new_pid = committed
        # Commit: forward what queued up, retire the old pid, let the new owner claim.
        out.committed = True
        self._forward_mailbox(proc, new_pid, target, hid)
        self.runtime.retire(proc, new_pid, self.config.forward_ttl)
        self.transport.post(target, HandoffCommit(hid))
        self.core.handoff_done(name, command.pid, new_pid)
        self._retry_reset()
        self._changed()
        ask_to_die(self.runtime, proc)
        self.runtime.unfreeze(proc)
        self.loop.call_later(self.config.forward_ttl, self.outgoing.pop, hid, None)
        self._publish(
            HandoffCompleted(
                name, command.pid, new_pid, "resume" if has_state else "restart", time.perf_counter() - started
            )
        )

    def _linked(self, pid: Pid) -> bool:
        """Whether this node has a link to ``pid``'s node, in ``pid``'s incarnation."""
        return self._creation_of(pid.node) == pid.incarnation and pid.node in self.transport.connected()

    async def _cancel(self, out: Outgoing, timeout: float) -> Pid | None:
        """Withdraw the handoff ``out`` whose outcome is unknown; the new owner's pid if it
        had committed (then the move stands), else None (it stopped its copy, or cannot
        answer: it is down, or silent for ``timeout``, and a copy it kept anyway is retired
        as superseded once its claim arrives, see TrackerCore._resolve)."""
        out.accepted.cancel()  # a late HandoffAccepted changes nothing now: the answer decides
        out.cancel_answer = self.loop.create_future()
        try:
            self.transport.post(out.target, HandoffCancel(out.hid))
            return await within(out.cancel_answer, timeout)
        except Exception:  # no link, no answer in time, or the target went down
            return None

    def _lost_state(self, name: Any, pid: Pid, cause: str) -> None:
        """A leaving node hands ``name`` off without its state (it starts fresh there)."""
        # Once per name and 10 s: a move the new owner refuses is retried until the drain ends.
        what = "%r (%r) starts afresh on its new owner: %s"
        self._ratelog.log(logging.ERROR, ("state lost", name), what, name, pid, cause)
        self._publish(HandoffStateLost(name, pid, cause))

    def _abort(self, name: Any, proc: Process, reason: str) -> None:
        self.core.handoff_failed(name, False)
        self._retry_later()
        if proc.alive:
            self.runtime.unfreeze(proc)
        self._ratelog.warning(("handoff", reason[:40]), "handoff of %r aborted: %s", name, reason)
        self._publish(HandoffAborted(name, proc.pid, reason))
        self._changed()

    def _forward_mailbox(self, proc: Process, new_pid: Pid, target: str, hid: int) -> None:
        """Forward ``proc``'s frozen mailbox to ``new_pid`` in order (flush markers relayed
        as the handoff ``hid``'s, in their place); system operations stay with ``proc``."""
        post = self.transport.post

        def relay(node: str, _marker_hid: int) -> None:
            post(target, Flushed(hid, node))

        self.runtime.forward_mailbox(proc, new_pid, relay)

    def _on_handoff_accepted(self, node: str, msg: HandoffAccepted) -> None:
        out = self.outgoing.get(msg.hid)
        if out is None or out.target != node or out.accepted.done():
            if out is None:
                self.transport.post(node, HandoffCancel(msg.hid))  # we gave up already
            return  # (a cancel sent already: its answer decides, see _cancel)
        out.accepted.set_result(msg.new_pid)

    def _on_handoff_cancelled(self, node: str, msg: HandoffCancelled) -> None:
        out = self.outgoing.get(msg.hid)
        if out is None or out.target != node or out.cancel_answer is None or out.cancel_answer.done():
            return
        out.cancel_answer.set_result(msg.new_pid if msg.committed else None)

    def _on_handoff_refused(self, node: str, msg: HandoffRefused) -> None:
        out = self.outgoing.get(msg.hid)
        if out is not None and out.target == node and not out.accepted.done():
            out.accepted.set_exception(FactoryError(msg.reason))

    def _on_flush_marker(self, node: str, msg: FlushMarker) -> None:
        out = self.outgoing.get(msg.hid)
        if out is None:
            return
        if out.committed:
            out.relayed.add(node)
            self.transport.post(out.target, Flushed(msg.hid, node))
            self._progressed()
        elif self.runtime.park_marker(out.proc, node, msg.hid):  # behind that node's messages
            out.relayed.add(node)

    # --- the new owner ----------------------------------------------------------------------------

    def _on_handoff_request(self, node: str, msg: HandoffRequest) -> None:
        if self.core.leaving:
            # Draining: it would only have to move on again. The sender learns we are
            # leaving (RegistryLeaving) and retries with its next owner.
            self.transport.post(node, HandoffRefused(msg.hid, "the node is draining"))
            return
        inc = Incoming(node, msg.hid, msg.name, msg.spec, msg.old_pid, msg.ancestors)
        self.incoming[(node, msg.hid)] = inc
        self._spawn(self._accept(inc, msg.has_state, msg.state))

    async def _accept(self, inc: Incoming, has_state: bool, state: Any) -> None:
        name = inc.name
        fut: asyncio.Future[Pid | None] = self.loop.create_future()
        previous = self._pending.get(name)
        if previous is not None:
            await asyncio.shield(previous)
        mine = self.core.claims[self.node].get((CLAIM_NAME, name))
        if mine is not None and self.runtime.local(mine.pid) is not None:
            # A copy already runs here (restarted on this side of a healed netsplit, say) and
            # the old host had not seen its claim when it chose to move its own: a second local
            # claim would replace the first and leave that process running, unregistered.
            # Refuse; conflict resolution settles which copy survives, the old host retries.
            self.incoming.pop((inc.source, inc.hid), None)
            self.transport.post(inc.source, HandoffRefused(inc.hid, f"{name!r} already runs here as {mine.pid!r}"))
            return
        self._pending[name] = fut
        try:
            spec = inc.spec
            pid = await run_factory(spec.factory, spec.args, spec.kwargs, self.runtime, self.config.factories)
        except DistableError as exc:
            self.incoming.pop((inc.source, inc.hid), None)
            self.transport.post(inc.source, HandoffRefused(inc.hid, str(exc)))
            return
        finally:
            if self._pending.get(name) is fut:
                del self._pending[name]
            fut.set_result(None)
        proc = self.runtime.local(pid)
        if proc is None:
            self.incoming.pop((inc.source, inc.hid), None)
            self.transport.post(inc.source, HandoffRefused(inc.hid, "the new process exited at once"))
            return
        if has_state:
            self.runtime.run_first(proc, _EndHandoff(state)).add_done_callback(log_failure(proc, "end_handoff"))
        # The gate waits only for nodes that can be sending: up here (they get the new
        # claim in a Delta, and answer with a marker) and not suspected. A node linked but
        # not up, or silent, would hold the gate to its timeout for nothing.
        peers = self.core.peers
        expected = {n for n in self.transport.connected() if n in peers and not self._suspected(n)}
        expected.add(self.node)
        expected.discard(inc.source)
        self.runtime.gate(proc, expected)
        inc.pid, inc.proc = pid, proc
        if inc.cancelled:
            self.incoming.pop((inc.source, inc.hid), None)
            self.runtime.ungate(proc)
            ask_to_die(self.runtime, proc)
            return
        if inc.commit_pending:
            self._commit(inc)
        else:
            self.transport.post(inc.source, HandoffAccepted(inc.hid, pid))

    def _on_handoff_commit(self, node: str, msg: HandoffCommit) -> None:
        inc = self.incoming.get((node, msg.hid))
        if inc is None:
            return
        if inc.pid is None:
            inc.commit_pending = True
        else:
            self._commit(inc)

    def _commit(self, inc: Incoming) -> None:
        if inc.committed or inc.pid is None:
            return
        inc.committed = True
        # Remembered after the incoming handoff is finished: a late HandoffCancel from an old
        # host that did not learn the outcome (it was paused) must hear that it committed.
        key = (inc.source, inc.hid)
        self._committed_in[key] = inc.pid
        self.loop.call_later(self.config.forward_ttl, self._committed_in.pop, key, None)
        self.core.local_claim(
            inc.name,
            inc.pid,
            inc.spec,
            self.loop.time(),
            moved_from=inc.old_pid,
            handoff=inc.hid,
            ancestors=inc.ancestors,
        )
        self._changed()
        deadline = self.loop.time() + inc.spec.handoff_timeout
        inc.timer = self.loop.call_later(GATE_CHECK, self._gate_check, (inc.source, inc.hid), deadline)

    def _on_handoff_cancel(self, node: str, msg: HandoffCancel) -> None:
        """The old host withdraws the handoff: stop the copy started here, unless the move
        was committed already (this node saw the old host fail and kept the process): the
        answer says which, and the old host acts on it (see hand_off)."""
        key = (node, msg.hid)
        inc = self.incoming.get(key)
        committed = self._committed_in.get(key) if inc is None else (inc.pid if inc.committed else None)
        if committed is not None:
            self.transport.post(node, HandoffCancelled(msg.hid, True, committed))
            return
        self.transport.post(node, HandoffCancelled(msg.hid, False))
        if inc is None:
            return
        if inc.proc is None:
            inc.cancelled = True  # the factory is still running: _accept stops it
            return
        del self.incoming[key]
        self.runtime.ungate(inc.proc)
        ask_to_die(self.runtime, inc.proc)

    def _on_flushed(self, node: str, msg: Flushed) -> None:
        key = (node, msg.hid)
        inc = self.incoming.get(key)
        if inc is None or inc.proc is None:
            return
        gate = self.runtime.gate_of(inc.proc)
        if gate is not None:
            gate.release(msg.node)
        if self.runtime.gate_of(inc.proc) is None and inc.committed:
            self._finish_incoming(key)

    def _gate_check(self, key: tuple[str, int], deadline: float) -> None:
        """Open the gate of a handed-in process for every sender that cannot be sending any
        more (down, or suspected: paused, cut off), for all when the old host that relays
        the markers is gone, and for all at ``deadline``; check
        again every ``GATE_CHECK`` seconds until it is open. A message it held waited at
        most that long behind a marker that may never come (counted in statistics)."""
        inc = self.incoming.get(key)
        if inc is None or inc.proc is None:
            return
        gate = self.runtime.gate_of(inc.proc)
        if gate is not None:
            now = self.loop.time()
            peers = self.core.peers
            source = inc.source
            # The old host relays every marker: once it is down, suspected or replaced by a
            # new incarnation (the old pid's), none will come, this node's own included.
            source_gone = (
                source not in peers or self._suspected(source) or self._creation_of(source) != inc.old_pid.incarnation
            )
            if now >= deadline or source_gone:
                stuck = sorted(gate.waiting)
            else:
                stuck = sorted(n for n in gate.waiting if n != self.node and (n not in peers or self._suspected(n)))
            for node in stuck:
                self.gate_releases += 1
                self.gate_held += len(gate.held.get(node, ()))
                gate.release(node)
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
                inc.timer = self.loop.call_later(GATE_CHECK, self._gate_check, key, deadline)
                return
        self._finish_incoming(key)

    def _finish_incoming(self, key: tuple[str, int]) -> None:
        inc = self.incoming.pop(key, None)
        if inc is not None and inc.timer is not None:
            inc.timer.cancel()
