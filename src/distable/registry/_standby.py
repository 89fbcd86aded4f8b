"""The standby core: replicated checkpoints, both sides (host and standby). Sans-I/O.

Described in docs/internals.md, "Checkpoints", which names every rule below and says why;
the registry service (``_service.py``) runs it beside the tracker core.

Rules:
    * The standbys of a name hosted here are ``ring.standbys(placement, name, node, k)``:
      the first ``k`` nodes of its preference list other than this node. The host sends
      them its latest state (``CheckpointPut``); a waiting checkpoint completes when every
      *current* standby acknowledged its seq or a later one (with none, at once only if
      no other server node is up).
    * Re-replication is host-driven: when the standbys change, the new ones get the latest
      state, and the old ones (and any other *holder*: a handoff's, a restore's, a
      conflict loser's) get a ``CheckpointDrop`` only once every current standby has
      acknowledged the latest seq. Nothing is dropped because a host failed.
    * A checkpoint is ``(lineage, seq)``. A standby keeps one record per name, the highest
      lineage and in it the highest seq it accepted; it refuses a put of an older lineage
      than the one it holds (or hosts), so a woken host cannot overwrite the checkpoints of
      the copy that replaced it. A refused host reports it (``CheckpointRefused``, again at
      each retry) and waits for the shell's ``host_takeover``.
    * A restore follows the claim: the records of the dead claim's lineage (or of a
      lineage based on it), else of its base; never the highest lineage found anywhere.
      It asks every server node up and waits for each answer, or its node's fall, or
      ``fetch_timeout``, and also asks the nodes an answer names that it did not know; the
      restarted process begins a new lineage above every epoch seen.
    * Everything sent that expects an answer (puts, drops, fetches) is sent again after
      ``retry_interval``, doubling up to ``retry_max``: a link may drop messages and come
      back without a peer going down. An answer counts only from the incarnation of its
      sender that is up here (a node restarted under its name holds nothing).
    * ``sweep`` forgets the records no claim needs (their lineage is no claim's lineage or
      base) once they were not written for ``drop_ttl``: what the drops could not reach.

Theory of operation:
    Host records (``_Hosted``) hold, per local name that checkpoints, the latest state
    sent, its lineage, base and seq, per standby what it acknowledged and what was sent,
    the holders to drop, the waiting checkpoints and a write-behind state. A name has one
    host record in ``_hosted``, the *current* one; another live local copy of it (two
    copies handed in at once, a restart beside a copy not claimed yet) keeps its own
    record aside in ``_displaced``, by pid, quiet (nothing sent, no wait completes) until
    the registry makes it current (its claim, a takeover) or the current one goes. Standby
    records are the ``Checkpoint`` structs as they arrived, by name. Fetch jobs collect
    the answers of every peer up for one restart. One heap of timers (write-behind
    flushes, retries, fetch deadlines) and a queue of tombstones give ``next_deadline``.
    Inputs are method calls with ``now``; ``take()`` returns what to send, the completed
    checkpoints, the restores and the refusals.

Invariants:
    * A holder is dropped only after every current standby acknowledged the latest seq, so
      the nodes holding the latest acknowledged checkpoint of a name always include a full
      standby set (the current one or an earlier one).
    * A record is replaced only by a later seq of its lineage or by a newer lineage; it is
      deleted only by a drop of its own lineage at a seq at least its own, when this node
      comes to host its line, or by a sweep once no claim names its lineage.
    * The old host of a handoff keeps its latest state as a record and is one of the
      holders the new host drops: the name is never on fewer nodes while it moves.
    * Every live local copy of a name has its own host record until it retires, exits or
      is removed; at most one of them, the current one, sends. A displaced record is live
      and its name has a current record (of another pid).
    * Each ``restart_starting`` token gets exactly one ``Restored``; each waiting
      checkpoint's token exactly one ``CheckpointDone``.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .._errors import CheckpointTooLarge
from ..ring._ring import hash_name
from ..ring._strategy import Placement, standbys
from ..wire._codec import to_wire
from ..wire._messages import (
    Checkpoint,
    CheckpointAck,
    CheckpointDrop,
    CheckpointFetch,
    CheckpointHandover,
    CheckpointHave,
    CheckpointMessage,
    CheckpointPut,
    Holder,
    Lineage,
    Spec,
)
from ..wire._types import Pid

_NEVER = float("inf")
_FETCH_NAMES = 256  # names per CheckpointFetch
_SHARED_SPECS = 1024  # argument-less specs the records share, at most


@dataclass(frozen=True, slots=True)
class StandbyConfig:
    """Tunables of checkpoints (the integration maps ``RegistryConfig`` onto these).

    Attributes:
        max_bytes: the largest encoded state a checkpoint may have.
        write_behind: a ``wait=False`` checkpoint is sent at most this often per name.
        retry_interval: an unanswered put, drop or fetch is sent again after this long,
            doubling up to ``retry_max``.
        fetch_timeout: a restore waits at most this long for the peers' answers (longer
            than failure detection, so a silent peer is declared down first).
        drop_ttl: a drop is resent to a holder that is down for this long, and leaves a
            tombstone this long.
    """

    max_bytes: int = 1 << 20
    write_behind: float = 0.005
    retry_interval: float = 0.5
    retry_max: float = 5.0
    fetch_timeout: float = 10.0
    drop_ttl: float = 30.0


# --- outputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointDone:
    """The waiting checkpoint ``token`` of ``name`` completed: ``ok`` with ``reason``
    ``"acked"`` (every current standby holds it), else ``"exited"``, ``"removed"`` or
    ``"retired"`` (its process stopped here first)."""

    name: Any
    token: int
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Restored:
    """The answer to ``restart_starting(name, token, ...)``: start the process with
    ``checkpoint`` (None: fresh), then pass this to ``host_started(restored=...)``.

    ``continued``: the process crashed here and continues its lineage. ``epoch``: the
    highest epoch the restore saw (the new lineage goes above it). ``holders``: the nodes
    holding the restored line's records (this node among them, for its own record),
    dropped once the new host's put is acknowledged.
    ``complete``: every peer answered (or went down) before ``fetch_timeout``.
    """

    name: Any
    token: int
    checkpoint: Checkpoint | None
    continued: bool
    epoch: int
    holders: tuple[Holder, ...]
    complete: bool = True


@dataclass(frozen=True, slots=True)
class CheckpointRefused:
    """A standby (``node``) refused a put of the local ``pid``'s lineage for ``name``: it
    holds the newer lineage ``held``, last written by ``writer``. The shell calls
    ``host_takeover`` if this copy is the current one (docs/internals.md)."""

    name: Any
    pid: Pid
    node: str
    held: Lineage
    writer: Pid


@dataclass(slots=True)
class StandbyOutput:
    send: list[tuple[str, Any]] = field(default_factory=list)
    done: list[CheckpointDone] = field(default_factory=list)
    restored: list[Restored] = field(default_factory=list)
    refused: list[CheckpointRefused] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StandbyStatistics:
    records: int  # held for other hosts
    record_bytes: int
    hosted: int  # local names with a host record (running, or exited awaiting restart)
    hosted_bytes: int
    puts_sent: int
    puts_received: int
    refusals: int  # puts this node refused
    drops_sent: int
    retransmits: int
    restores: int
    restores_incomplete: int


# --- state ---------------------------------------------------------------------------------------


class _Hosted:
    """One local name's checkpoints, as its host keeps them."""

    __slots__ = (
        "acked",
        "base",
        "epoch_seen",
        "flush_at",
        "handed_in",
        "handing_off",
        "holders",
        "known",
        "last_put",
        "lineage",
        "live",
        "name",
        "pending",
        "pid",
        "position",
        "refused",
        "replicas",
        "reported",
        "retrying",
        "sent",
        "seq",
        "spec",
        "standbys",
        "state",
        "superseded",
        "waiting",
        "wire_name",
    )

    def __init__(self, name: Any, pid: Pid, spec: Spec | None, replicas: int, lineage: Lineage) -> None:
        self.name = name
        self.wire_name = to_wire(name)
        self.position = hash_name(name)
        self.pid = pid
        self.spec = spec
        self.replicas = replicas
        self.live = True  # its process runs here (else it exited and a restart follows)
        self.handing_off = False  # frozen for a handoff: nothing is sent
        # Handed in and not claimed yet (``handin_settled``): the move may still be
        # withdrawn, and then ``superseded`` (this node's record of the name as a standby,
        # which the copy replaced) is its record again.
        self.handed_in = False
        self.superseded: Checkpoint | None = None
        self.lineage = lineage
        self.base: Lineage | None = None
        self.seq = 0
        self.state: bytes | None = None  # the state of ``seq``
        self.standbys: tuple[str, ...] = ()
        self.acked: dict[str, int] = {}  # standby -> the highest seq of ``lineage`` it holds
        self.sent: dict[str, int] = {}  # standby -> the seq last sent to it, not acknowledged yet
        # standby -> the highest seq of ``lineage`` sent to it: what it may hold, even while
        # it is down (a paused node keeps it), for the drops
        self.known: dict[str, int] = {}
        self.refused: dict[str, Lineage] = {}  # standby -> the newer lineage it holds
        # Dicts of atomic values rather than sets and lists: CPython's cycle collector
        # never tracks them, and its full passes visit every tracked object (with tens of
        # thousands of host records, those passes were most of a node's checkpoint CPU).
        self.reported: dict[Lineage, None] = {}
        self.retrying: dict[str, None] = {}  # standbys with a retry timer armed
        self.holders: dict[str, tuple[Lineage, int]] = {}  # to drop once fully replicated
        self.waiting: dict[int, int] = {}  # token -> seq, in seq order
        self.pending: bytes | None = None  # a write-behind state not sent yet
        self.flush_at: float | None = None
        self.last_put = -_NEVER
        self.epoch_seen = lineage.epoch  # the highest epoch heard of for this name

    def checkpoint(self) -> Checkpoint | None:
        if self.state is None:
            return None
        return Checkpoint(self.wire_name, self.lineage, self.base, self.seq, self.pid, self.state, self.spec)

    def held_by(self) -> dict[str, tuple[Lineage, int]]:
        """Every node that may hold a record of this name from this host: its standbys
        that were sent or acknowledged something, and its holders."""
        found = dict(self.holders)
        for node in self.standbys:
            seq = self.known.get(node, -1)
            if seq >= 0:
                found[node] = (self.lineage, seq)
        return found


@dataclass(slots=True)
class _Drop:
    lineage: Lineage
    upto: int
    expires: float
    retrying: bool = False


@dataclass(slots=True)
class _Fetch:
    name: Any
    lineage: Lineage
    base: Lineage | None
    pending: set[str]
    asked: set[str]
    deadline: float
    first_ref: int  # answers to older fetches of the name do not count
    found: list[tuple[str, Checkpoint]] = field(default_factory=list)
    delay: float = 0.0


class StandbyCore:
    """One node's checkpoints: what it hosts and what it holds for others. Single owner;
    not thread-safe; never waits."""

    def __init__(
        self, node: str, *, incarnation: int = 0, config: StandbyConfig, placement: Placement, now: float
    ) -> None:
        self.node = node
        self.incarnation = incarnation
        self.config = config
        self.placement = placement
        self.up: set[str] = set()  # server peers up (the fetch asks them all)
        self._incarnations: dict[str, int] = {}  # peer up -> its incarnation, when known
        self._gone: set[str] = set()  # peers seen going down and not back: not asked
        self._hosted: dict[Any, _Hosted] = {}  # name -> its current host record
        # pid -> the record of another live local copy of a name in ``_hosted``: quiet until
        # the registry settles which copy is current (``_promote``), or it goes.
        self._displaced: dict[Pid, _Hosted] = {}
        self.records: dict[Any, Checkpoint] = {}  # held for other hosts, by name
        self._record_at: dict[Any, float] = {}  # name -> when its record was last written
        self._record_bytes = 0
        self._specs: dict[tuple[str, str, float, int], Spec] = {}  # shared by records (``_keep``)
        self._hosted_bytes = 0
        self._tombstones: dict[Any, tuple[Lineage, int, float]] = {}
        self._tomb_queue: deque[tuple[float, Any]] = deque()
        self._drops: dict[tuple[Any, str], _Drop] = {}
        self._fetches: dict[int, _Fetch] = {}  # token -> job
        self._fetching: dict[Any, set[int]] = {}  # name -> tokens of its jobs
        self._fetch_out: dict[str, list[Any]] = {}  # peer -> names to ask it this turn
        self._refs: dict[int, tuple[str, list[Any]]] = {}  # fetch ref -> (peer, names)
        self._next_ref = 1
        self._timers: list[tuple[float, int, str, Any]] = []
        self._timer_seq = 0
        self._out = StandbyOutput()
        self._n_puts = self._n_puts_in = self._n_refusals = self._n_drops = 0
        self._n_retransmits = self._n_restores = self._n_incomplete = 0

    # --- queries -------------------------------------------------------------------------------

    def take(self) -> StandbyOutput:
        """Everything to do since the last call; the fetches of this turn are batched into
        one ``CheckpointFetch`` per peer."""
        for peer, names in self._fetch_out.items():
            if peer in self._gone:
                continue
            for i in range(0, len(names), _FETCH_NAMES):
                # A wave of restores (a dead node's names) asks in parts: each answer then
                # holds at most that many records, well inside a frame.
                part = names[i : i + _FETCH_NAMES]
                ref = self._next_ref
                self._next_ref += 1
                self._refs[ref] = (peer, part)
                self._out.send.append((peer, CheckpointFetch(ref, [to_wire(n) for n in part])))
        self._fetch_out = {}
        out, self._out = self._out, StandbyOutput()
        return out

    def next_deadline(self) -> float:
        deadline = self._timers[0][0] if self._timers else _NEVER
        if self._tomb_queue:
            deadline = min(deadline, self._tomb_queue[0][0])
        return deadline

    def statistics(self) -> StandbyStatistics:
        return StandbyStatistics(
            records=len(self.records),
            record_bytes=self._record_bytes,
            hosted=len(self._hosted) + len(self._displaced),
            hosted_bytes=self._hosted_bytes,
            puts_sent=self._n_puts,
            puts_received=self._n_puts_in,
            refusals=self._n_refusals,
            drops_sent=self._n_drops,
            retransmits=self._n_retransmits,
            restores=self._n_restores,
            restores_incomplete=self._n_incomplete,
        )

    def hosted(self, name: Any, pid: Pid | None = None) -> Checkpoint | None:
        """The latest checkpoint this node sent of its local ``name`` (None: none); with
        ``pid``, of that copy's record (current or displaced), and None for another copy's."""
        rec = self._hosted.get(name) if pid is None else self._record(name, pid)
        return None if rec is None else rec.checkpoint()

    def lineage_of(self, name: Any, pid: Pid | None = None) -> tuple[Lineage, Lineage | None] | None:
        """The lineage and base of the local ``name`` (what its claim carries); with ``pid``,
        of that copy's record."""
        rec = self._hosted.get(name) if pid is None else self._record(name, pid)
        return None if rec is None else (rec.lineage, rec.base)

    def holders_of(self, name: Any, pid: Pid) -> list[Holder]:
        """The nodes that may hold records of the local ``pid``'s ``name`` (its standbys and
        holders): what a conflict's loser sends the winner to take over."""
        rec = self._record(name, pid)
        if rec is None:
            return []
        return [Holder(node, lineage, seq) for node, (lineage, seq) in sorted(rec.held_by().items())]

    def standbys_of(self, name: Any) -> list[str]:
        """The current standbys of the local ``name``."""
        rec = self._hosted.get(name)
        return [] if rec is None else list(rec.standbys)

    def replicated(self, name: Any) -> bool:
        """Whether the local ``name``'s latest checkpoint is held by every current standby
        and no holder up is left to drop (also true with no checkpoint and nothing to drop)."""
        rec = self._hosted.get(name)
        if rec is None:
            return True
        if rec.pending is not None or rec.holders:
            return False
        if any(n in self.up for k, n in self._drops if k == name):
            return False
        return rec.state is None or self._held(rec) >= rec.seq

    def replicated_seq(self, name: Any) -> int | None:
        """The highest seq of the local ``name``'s lineage that every current standby holds
        (-1 while one holds none of it; None if not hosted): at least the seq of every
        checkpoint whose wait completed, once it is 0 or more."""
        rec = self._hosted.get(name)
        return None if rec is None else self._held(rec)

    def restoring(self) -> int:
        """Restores waiting for their peers' answers."""
        return len(self._fetches)

    # --- membership and placement ---------------------------------------------------------------

    def peer_up(self, node: str, now: float, incarnation: int = 0) -> None:
        """The server ``node`` (``incarnation``: 0 when unknown) is up: put the latest state
        to it where it is a standby, and send it the drops it missed."""
        if node == self.node or node in self.up:
            return
        self.up.add(node)
        self._gone.discard(node)
        if incarnation:
            self._incarnations[node] = incarnation
        for rec in self._hosted.values():
            if node in rec.standbys:
                self._replicate(rec, now)
        for (name, target), drop in self._drops.items():
            if target == node:
                self._send_drop(name, node, drop, now)

    def peer_down(self, node: str, now: float) -> None:
        """``node`` is down (or declared so): what it acknowledged no longer counts (it may
        come back as a new incarnation, holding nothing), and no restore waits for it."""
        if node not in self.up:
            return
        self.up.discard(node)
        self._incarnations.pop(node, None)
        if len(self._gone) >= 10_000:
            self._gone.clear()  # bounded: a restore may then wait for a dead node until its timeout
        self._gone.add(node)
        for rec in self._hosted.values():
            rec.acked.pop(node, None)
            rec.sent.pop(node, None)
            rec.refused.pop(node, None)
        for token in [t for t, job in self._fetches.items() if node in job.pending]:
            job = self._fetches[token]
            job.pending.discard(node)
            if not job.pending:
                self._finish(token, complete=True)
        self._refs = {ref: entry for ref, entry in self._refs.items() if entry[0] != node}

    def placement_changed(self, placement: Placement, now: float) -> None:
        """The tracker's placement changed: recompute every local name's standbys."""
        self.placement = placement
        for rec in self._hosted.values():
            self._restandby(rec, now)

    def _restandby(self, rec: _Hosted, now: float, replicate: bool = True) -> None:
        new = tuple(standbys(self.placement, rec.name, self.node, rec.replicas, rec.position))
        if new == rec.standbys:
            return
        for node in rec.standbys:
            if node in new:
                continue
            rec.acked.pop(node, None)
            rec.sent.pop(node, None)
            seq = rec.known.pop(node, -1)
            if seq >= 0:
                # Even one that refused: a later retry may have been taken (its newer record
                # went), and a drop of this lineage leaves a newer one alone.
                rec.holders[node] = (rec.lineage, seq)
            rec.refused.pop(node, None)
        for node in new:
            # A standby again: the put replaces what it holds (it stays a holder until it
            # acknowledged), and no drop may follow that put.
            self._drops.pop((rec.name, node), None)
        rec.standbys = new
        if replicate:
            self._replicate(rec, now)

    # --- the host's side ----------------------------------------------------------------------

    def host_started(
        self,
        name: Any,
        pid: Pid,
        spec: Spec | None,
        replicas: int,
        now: float,
        *,
        resumed: CheckpointHandover | None = None,
        resume_state: bytes | None = None,
        restored: Restored | None = None,
        handed_in: bool = False,
    ) -> tuple[Lineage, Lineage | None]:
        """The process ``pid`` holding ``name`` started here: fresh, handed in (``resumed``,
        with its ``Resume`` state encoded as ``resume_state`` if any; ``handed_in``: handed
        in without a handover, not claimed yet) or restarted (``restored``, the answer to
        ``restart_starting``). Returns the lineage and base its claim carries.

        Another live copy of ``name`` here keeps its own record: a copy handed in and not
        claimed yet waits beside the current one (displaced) until ``handin_settled``;
        any other start claims the name at once, and the current copy is displaced."""
        old = self._hosted.get(name)
        if restored is not None and restored.continued and old is not None and not old.live:
            old.pid, old.spec, old.replicas, old.live = pid, spec, replicas, True
            self._restandby(old, now)
            return old.lineage, old.base
        rec = _Hosted(name, pid, spec, replicas, Lineage(0, pid))
        state: bytes | None = None
        if resumed is not None:
            rec.lineage, rec.base, rec.seq = resumed.lineage, resumed.base, resumed.seq
            rec.holders = {h.node: (h.lineage, h.seq) for h in resumed.holders if h.node != self.node}
            state = resume_state if resume_state is not None else resumed.state
            if resume_state is not None:
                rec.seq += 1  # the Resume state supersedes the last checkpoint
        elif restored is not None:
            rec.lineage = Lineage(restored.epoch + 1, pid)
            rec.holders = {h.node: (h.lineage, h.seq) for h in restored.holders if h.node != self.node}
            if restored.checkpoint is not None:
                rec.base = restored.checkpoint.lineage
                rec.seq = restored.checkpoint.seq + 1  # the restored state, put under the new lineage
                state = restored.checkpoint.state
        rec.epoch_seen = rec.lineage.epoch
        if old is not None and (not old.live or old.pid == pid):
            # The copy of a process that exited here (a restart replaces it), or this very
            # process's record again.
            self._inherit(rec, old)
            self._fail_waiting(old, "retired")
            self._forget_hosted(old, now)
        again = self._displaced.get(pid)
        if again is not None and again.name == name:
            self._fail_waiting(again, "retired")
            self._forget_hosted(again, now)
        held = self.records.get(name)
        mine = {h.lineage for h in restored.holders if h.node == self.node} if restored is not None else set()
        if held is not None and (held.lineage in (rec.lineage, rec.base) or held.lineage in mine):
            self._forget_record(name)  # the host copy supersedes this node's own record
            if resumed is not None:
                rec.superseded = held  # ... unless the move is withdrawn (handin_settled)
        rec.handed_in = resumed is not None or handed_in
        if state is not None:
            rec.state = state
            self._hosted_bytes += len(state)
            rec.last_put = now
        current = self._hosted.get(name)
        if current is not None and rec.handed_in:
            # Another live copy has the name's record (two handoffs of it came in at once, or
            # one beside a restart): this one waits aside, quiet, until its claim (or its
            # withdrawal) settles which copy is current. Forgetting either record left the
            # copy that won the tracker's conflict with none (seed 1718318914).
            self._share_epochs(rec, current)
            self._displaced[pid] = rec
            return rec.lineage, rec.base
        self._hosted[name] = rec
        if current is not None:
            self._displace(current, rec)
        self._restandby(rec, now)
        return rec.lineage, rec.base

    def host_checkpoint(self, name: Any, pid: Pid, state: bytes, now: float, token: int | None = None) -> None:
        """The local process ``pid`` checkpoints ``state`` (encoded). With ``token``, the
        caller waits for a ``CheckpointDone`` of it; without, write-behind.

        Raises:
            CheckpointTooLarge: ``state`` is longer than ``max_bytes`` (nothing changes).
        """
        if len(state) > self.config.max_bytes:
            raise CheckpointTooLarge(len(state), self.config.max_bytes)
        rec = self._record(name, pid)  # a displaced copy's is kept, and sent once it is current
        if rec is None or not rec.live:
            if token is not None:
                self._out.done.append(CheckpointDone(name, token, False, "removed"))
            return
        if token is None:
            due = rec.last_put + self.config.write_behind
            if rec.pending is None and now >= due and not rec.handing_off:
                self._put(rec, state, now)
                return
            rec.pending = state
            if rec.flush_at is None and not rec.handing_off:
                rec.flush_at = max(now, due)
                self._arm(rec.flush_at, "flush", name)
            return
        rec.pending, rec.flush_at = None, None
        self._put(rec, state, now)
        rec.waiting[token] = rec.seq
        self._settle(rec, now)

    def handover(self, name: Any, pid: Pid, now: float) -> CheckpointHandover | None:
        """A handoff of ``name`` begins (its process is frozen): send a waiting write-behind
        state, stop re-replicating, and return what the new host continues from (the
        shell leaves out ``state`` when the process answered ``Resume``)."""
        rec = self._record(name, pid)
        if rec is None:
            return None
        if rec.pending is not None:
            self._put(rec, rec.pending, now)
        rec.handing_off = True
        held = rec.held_by()
        checkpoint = rec.checkpoint()
        if checkpoint is not None:
            # This node stays a holder until the new host has re-replicated: the new host
            # may not see its standbys yet (it joined a moment ago), and the old standbys
            # may have been dropped already.
            self._keep(name, checkpoint, now)
            held[self.node] = (rec.lineage, rec.seq)
        holders = [Holder(node, lineage, seq) for node, (lineage, seq) in sorted(held.items())]
        return CheckpointHandover(rec.lineage, rec.base, rec.seq, holders, rec.state)

    def handoff_aborted(self, name: Any, pid: Pid, now: float) -> None:
        """The handoff did not happen: the process resumes here, and so does re-replication."""
        rec = self._record(name, pid)
        if rec is not None and rec.handing_off:
            rec.handing_off = False
            # The next seq is the handed-in copy's, should the request still be read (a
            # partition held it up): its Resume state goes under it (``host_started``), and
            # the same (lineage, seq) holding two states, a standby kept whichever came
            # first and a restore picked either. This copy goes on above it.
            rec.seq += 1
            held = self.records.get(name)
            if held is not None and held.lineage == rec.lineage:
                self._forget_record(name)  # the host copy again
            if rec.pending is not None and rec.flush_at is None:
                rec.flush_at = now
                self._arm(now, "flush", name)
            self._replicate(rec, now)

    def host_retired(self, name: Any, pid: Pid, now: float) -> list[Holder]:
        """``pid`` stopped holding ``name`` here without ending it (a committed handoff, a
        lost conflict): forget its record, drop nothing; return the holders of its records,
        for the winner of a conflict to take over. Another live copy of the name here
        (displaced) has the name's record again."""
        rec = self._record(name, pid)
        if rec is None:
            return []
        holders = [Holder(node, lineage, seq) for node, (lineage, seq) in sorted(rec.held_by().items())]
        self._fail_waiting(rec, "retired")
        self._forget_hosted(rec, now)
        return holders

    def handin_settled(self, name: Any, pid: Pid, kept: bool, now: float) -> None:
        """The handoff that brought ``pid`` here (``host_started(resumed=...)``) is settled:
        ``kept`` (committed, step 6: the copy holds the name; the record it superseded is
        gone for good) or withdrawn (C2: the copy stops, the old host's continues). A
        withdrawn copy leaves this node holding what it held as a standby before: it
        acknowledged that record to the old host, which counts on it, and, the old host
        failing next, the name's restart here needs it (forgotten, the restart found
        nothing and started afresh: one failure lost acknowledged checkpoints).

        A kept copy claims the name, and the tracker makes the latest local claim the
        current one: its record is the name's from now on (another live copy's is
        displaced, until the tracker's conflict between them is settled)."""
        rec = self._record(name, pid)
        if rec is None or not rec.handed_in:
            return
        superseded = rec.superseded
        rec.handed_in, rec.superseded = False, None
        if kept:
            self._promote(rec, now)
            return
        self.host_retired(name, pid, now)
        held = self.records.get(name)
        if superseded is not None and (held is None or (held.lineage, held.seq) < (superseded.lineage, superseded.seq)):
            self._keep(name, superseded, now)

    def host_exited(self, name: Any, pid: Pid, now: float) -> None:
        """The process exited and a restart follows (a crash under a restart policy): its
        latest state is kept (and still re-replicated) for the restart, here or elsewhere.
        A displaced copy's (another copy has the name's record) is kept as this node's
        record of the name instead, unless it holds a newer one."""
        rec = self._record(name, pid)
        if rec is None or not rec.live:
            return
        if rec.pending is not None:
            self._put(rec, rec.pending, now)
        if self._quiet(rec):
            self._fail_waiting(rec, "exited")
            latest = rec.checkpoint()
            self._forget_hosted(rec, now)
            held = self.records.get(name)
            if latest is not None and (held is None or (held.lineage, held.seq) < (latest.lineage, latest.seq)):
                self._keep(name, latest, now)
            return
        rec.live = False
        rec.handing_off = False
        self._fail_waiting(rec, "exited")
        self._replicate(rec, now)

    def host_removed(self, name: Any, pid: Pid, now: float) -> None:
        """The name ends (unregistered; its process exited and is not restarted): delete its
        checkpoints everywhere (those of its lineage: another live copy of the name here
        keeps its own)."""
        rec = self._record(name, pid)
        if rec is None:
            return
        self._fail_waiting(rec, "removed")
        for node, (lineage, seq) in rec.held_by().items():
            self._start_drop(name, node, lineage, seq, now)
        self._forget_hosted(rec, now)
        if name not in self._hosted:
            self._forget_record(name)  # a record of another copy of it, if any: the name ends

    def host_takeover(self, name: Any, pid: Pid, now: float, absorbed: Iterable[Holder] = ()) -> Lineage | None:
        """Make the local copy's lineage the newest (it won a conflict, or a refusal came
        from a stale record): begin a lineage above every epoch heard of, put the latest
        state under it, and drop the old lineage's and ``absorbed``'s holders once that is
        acknowledged. Returns the new lineage (the claim is made again with it). A
        displaced copy's record becomes the name's first: the registry chose that copy."""
        rec = self._record(name, pid)
        if rec is None or not rec.live:
            return None
        self._promote(rec, now, replicate=False)
        absorbed = list(absorbed)
        top = max([rec.epoch_seen, rec.lineage.epoch, *(h.lineage.epoch for h in absorbed)])
        old = rec.lineage
        held = self.records.get(name)
        if held is not None and (
            held.lineage == old or any(h.node == self.node and h.lineage == held.lineage for h in absorbed)
        ):
            self._forget_record(name)  # this node held the loser's record for it: superseded
        for h in absorbed:
            if h.node != self.node and h.node not in rec.standbys:
                rec.holders.setdefault(h.node, (h.lineage, h.seq))
        # The standbys need no drop: the put of the new lineage replaces what they hold.
        rec.lineage, rec.base = Lineage(top + 1, pid), old
        rec.epoch_seen = rec.lineage.epoch
        for node in rec.standbys:
            if node not in self.up and rec.known.get(node, -1) >= 0:
                # Down (paused, say): it keeps the old lineage until the new put reaches it
                # when it is back, or this drop if it is no standby by then.
                rec.holders[node] = (old, rec.known[node])
        rec.acked.clear()
        rec.sent.clear()
        rec.known.clear()
        rec.refused.clear()
        rec.reported.clear()
        state = rec.pending if rec.pending is not None else rec.state
        rec.pending, rec.flush_at = None, None
        if state is not None:
            self._put(rec, state, now)
        self._settle(rec, now)
        return rec.lineage

    def _put(self, rec: _Hosted, state: bytes, now: float) -> None:
        if rec.state is not None:
            self._hosted_bytes -= len(rec.state)
        self._hosted_bytes += len(state)
        rec.seq += 1
        rec.state = state
        rec.pending = None
        rec.flush_at = None
        rec.last_put = now
        self._replicate(rec, now)

    def _replicate(self, rec: _Hosted, now: float) -> None:
        """Send the latest state to every standby up that does not hold it and was not sent
        it yet; then settle. Nothing for a displaced record (quiet until it is current)."""
        if self._quiet(rec):
            return
        if rec.state is not None and not rec.handing_off:
            for node in rec.standbys:
                if node not in self.up or node in rec.refused:
                    continue
                if rec.acked.get(node, -1) >= rec.seq or rec.sent.get(node, -1) >= rec.seq:
                    continue
                self._send_put(rec, node, now)
        self._settle(rec, now)

    def _send_put(self, rec: _Hosted, node: str, now: float) -> None:
        checkpoint = rec.checkpoint()
        assert checkpoint is not None
        rec.sent[node] = rec.known[node] = rec.seq
        self._n_puts += 1
        self._out.send.append((node, CheckpointPut(checkpoint)))
        if node not in rec.retrying:
            rec.retrying[node] = None
            self._arm(now + self.config.retry_interval, "put", (rec.name, node, self.config.retry_interval))

    def _settle(self, rec: _Hosted, now: float) -> None:
        """Complete the waiting checkpoints every current standby holds; once all hold the
        latest, drop the holders. With no standby, the waits complete only if no other
        server node is up at all (alone, nobody could hold them); a node up but not placed
        yet (it joined a moment ago) is waited for, until the placement makes it one.
        Nothing for a displaced record."""
        if self._quiet(rec):
            return
        done = self._held(rec)
        while rec.waiting:
            token, seq = next(iter(rec.waiting.items()))
            if seq > done:
                break
            del rec.waiting[token]
            self._out.done.append(CheckpointDone(rec.name, token, True, "acked"))
        if rec.holders and rec.state is not None and done >= rec.seq:
            for node, (lineage, seq) in list(rec.holders.items()):
                # With no standby (none placed, in this node's view), a holder that is up
                # is the only other copy: it stays until a standby holds the state.
                if node not in rec.standbys and (rec.standbys or node not in self.up):
                    del rec.holders[node]
                    self._start_drop(rec.name, node, lineage, seq, now)

    def _held(self, rec: _Hosted) -> int:
        """The highest seq every current standby holds (with none: all of them if no other
        server node is up, else nothing yet)."""
        if rec.standbys:
            return min(rec.acked.get(n, -1) for n in rec.standbys)
        return -1 if self.up else rec.seq

    # --- two live local copies of one name ----------------------------------------------------------

    def _record(self, name: Any, pid: Pid) -> _Hosted | None:
        """The host record of the local copy ``pid`` of ``name``: the current one, or
        displaced (None: that copy has none)."""
        rec = self._hosted.get(name)
        if rec is not None and rec.pid == pid:
            return rec
        rec = self._displaced.get(pid) if self._displaced else None
        return rec if rec is not None and rec.name == name else None

    def _quiet(self, rec: _Hosted) -> bool:
        """Whether ``rec`` is displaced: it sends nothing and completes no wait."""
        return bool(self._displaced) and self._displaced.get(rec.pid) is rec

    def _inherit(self, rec: _Hosted, old: _Hosted) -> None:
        """``rec`` replaces ``old``, a copy whose process exited here: the holders of its
        line are ``rec``'s to drop."""
        if old.lineage in (rec.lineage, rec.base):
            for node, line in old.held_by().items():
                if node != self.node:
                    rec.holders.setdefault(node, line)

    @staticmethod
    def _share_epochs(a: _Hosted, b: _Hosted) -> None:
        """Two copies of one name here: each has heard of the other's epochs (a takeover
        begins above every epoch heard of, the other copy's lineage included)."""
        top = max(a.epoch_seen, b.epoch_seen, a.lineage.epoch, b.lineage.epoch)
        a.epoch_seen = b.epoch_seen = top

    def _displace(self, rec: _Hosted, by: _Hosted) -> None:
        """``by`` is the name's current record now; ``rec``, a live copy's, waits aside,
        quiet: its retry timers stop finding it, its waits stay open (completed once it is
        current again, failed if it retires)."""
        self._share_epochs(rec, by)
        rec.retrying.clear()
        rec.flush_at = None
        self._displaced[rec.pid] = rec

    def _promote(self, rec: _Hosted, now: float, replicate: bool = True) -> None:
        """The displaced ``rec`` becomes its name's current record (its copy claimed the
        name, won its conflict, or the current copy went); the current one, if live, is
        displaced, and the copy of a process that exited here is replaced. Its standbys are
        put its latest state again (the other copy's puts may have replaced what they
        acknowledged), unless ``replicate`` is False (a takeover puts its own)."""
        if self._displaced.get(rec.pid) is not rec:
            return
        del self._displaced[rec.pid]
        current = self._hosted.get(rec.name)
        self._hosted[rec.name] = rec
        if current is not None:
            self._share_epochs(rec, current)
            if current.live:
                self._displace(current, rec)
            else:
                self._inherit(rec, current)
                self._fail_waiting(current, "retired")
                self._forget_hosted(current, now)
        rec.acked.clear()
        rec.sent.clear()
        rec.refused.clear()
        rec.reported.clear()
        self._restandby(rec, now, replicate=False)
        if not replicate:
            return
        if rec.pending is not None and not rec.handing_off:
            self._put(rec, rec.pending, now)
        else:
            self._replicate(rec, now)

    def _fail_waiting(self, rec: _Hosted, reason: str) -> None:
        for token in rec.waiting:
            self._out.done.append(CheckpointDone(rec.name, token, False, reason))
        rec.waiting.clear()

    def _forget_hosted(self, rec: _Hosted, now: float) -> None:
        """Forget a host record, current or displaced; when it was the name's current one,
        the copy displaced last (another live copy of the name here) is current again."""
        if self._hosted.get(rec.name) is rec:
            del self._hosted[rec.name]
            heir = next((r for r in reversed(self._displaced.values()) if r.name == rec.name), None)
            if heir is not None:
                self._promote(heir, now)
        elif self._displaced.get(rec.pid) is rec:
            del self._displaced[rec.pid]
        if rec.state is not None:
            self._hosted_bytes -= len(rec.state)
        rec.state = rec.pending = None
        rec.standbys = ()
        rec.retrying.clear()

    # --- drops ------------------------------------------------------------------------------------

    def _start_drop(self, name: Any, node: str, lineage: Lineage, upto: int, now: float) -> None:
        if node == self.node:
            return
        drop = self._drops.get((name, node))
        if drop is not None and (drop.lineage != lineage or drop.upto >= upto):
            return  # a drop of it is on its way already
        drop = _Drop(lineage, upto, now + self.config.drop_ttl)
        self._drops[name, node] = drop
        if node in self.up:
            self._send_drop(name, node, drop, now)
        else:  # sent if it comes back up in time (peer_up); forgotten at expiry
            self._arm(drop.expires, "drop", (name, node, self.config.retry_interval))

    def _send_drop(self, name: Any, node: str, drop: _Drop, now: float) -> None:
        self._n_drops += 1
        self._out.send.append((node, CheckpointDrop(to_wire(name), drop.lineage, drop.upto)))
        if not drop.retrying:
            drop.retrying = True
            self._arm(now + self.config.retry_interval, "drop", (name, node, self.config.retry_interval))

    # --- the standby's side ----------------------------------------------------------------------

    def on_message(self, node: str, msg: CheckpointMessage, now: float) -> None:
        """Hand a checkpoint message from ``node`` to its handler below."""
        if isinstance(msg, CheckpointPut):
            self.on_put(node, msg, now)
        elif isinstance(msg, CheckpointAck):
            self.on_ack(node, msg, now)
        elif isinstance(msg, CheckpointDrop):
            self.on_drop(node, msg, now)
        elif isinstance(msg, CheckpointFetch):
            self.on_fetch(node, msg, now)
        else:
            self.on_have(node, msg, now)

    def on_put(self, node: str, msg: CheckpointPut, now: float) -> None:
        """A host's checkpoint: keep it unless a newer lineage is held; answer."""
        self._n_puts_in += 1
        cp = msg.checkpoint
        name = cp.name
        rec = self._hosted.get(name)
        line = rec if rec is not None and rec.live and rec.lineage == cp.lineage else None
        if line is None and self._displaced:
            line = next((r for r in self._displaced.values() if r.name == name and r.lineage == cp.lineage), None)
        if line is not None and not line.handing_off:
            # A straggler from the old host of a handoff: the live copy here continues it.
            kept = line.superseded
            if line.handed_in and (kept is None or (cp.lineage, cp.seq) > (kept.lineage, kept.seq)):
                # Not claimed yet: should the move be withdrawn, this node is that host's
                # standby again, holding what it acknowledged now.
                line.superseded = cp
            self._out.send.append((node, self._ack(line.wire_name, cp.lineage, max(line.seq, cp.seq))))
            return
        tomb = self._tombstones.get(name)
        if tomb is not None and tomb[0] == cp.lineage and cp.seq < tomb[1] and now < tomb[2]:
            return  # a put that its own line's drop overtook (see the tombstones)
        if rec is not None and cp.lineage < rec.lineage:
            # This node hosts a newer lineage of the name (it restarted it, say, while the
            # sender slept): refused, as a standby holding it would.
            self._n_refusals += 1
            mine = Checkpoint(rec.wire_name, rec.lineage, rec.base, rec.seq, rec.pid, b"")
            self._out.send.append((node, self._ack(to_wire(name), cp.lineage, cp.seq, mine)))
            return
        if rec is not None and not rec.live and cp.lineage > rec.lineage:
            # The copy of a process that exited here: the name was restarted elsewhere since,
            # under a newer lineage (its holders, this node's among them, answered the fetch).
            self._forget_hosted(rec, now)
        held = self.records.get(name)
        wire_name = to_wire(name)
        if held is None or cp.lineage > held.lineage or (cp.lineage == held.lineage and cp.seq > held.seq):
            self._keep(name, cp, now)
            self._out.send.append((node, self._ack(wire_name, cp.lineage, cp.seq)))
        elif cp.lineage == held.lineage:
            self._out.send.append((node, self._ack(wire_name, cp.lineage, held.seq)))
        else:
            self._n_refusals += 1
            self._out.send.append((node, self._ack(wire_name, cp.lineage, cp.seq, held)))

    def _ack(self, name: Any, lineage: Lineage, seq: int, refused: Checkpoint | None = None) -> CheckpointAck:
        if refused is not None:
            return CheckpointAck(name, lineage, seq, False, refused.lineage, refused.writer, False, self.incarnation)
        return CheckpointAck(name, lineage, seq, incarnation=self.incarnation)

    def _keep(self, name: Any, cp: Checkpoint, now: float) -> None:
        self._forget_record(name)
        spec = cp.spec
        if spec is not None and not spec.args and not spec.kwargs:
            # One Spec object per argument-less spec, as the tracker's replica keeps them: a
            # decoded one per record is ~300 bytes and a list the cycle collector tracks.
            key = (spec.factory, spec.restart, spec.handoff_timeout, spec.replicas)
            shared = self._specs.get(key)
            if shared is None and len(self._specs) < _SHARED_SPECS:
                self._specs[key] = spec
            elif shared is not None and shared is not spec:
                cp = msgspec.structs.replace(cp, spec=shared)
        self.records[name] = cp
        self._record_at[name] = now
        self._record_bytes += len(cp.state)

    def _forget_record(self, name: Any) -> None:
        held = self.records.pop(name, None)
        if held is not None:
            self._record_bytes -= len(held.state)
            del self._record_at[name]

    def sweep(self, now: float, claimed: Callable[[Any], Collection[Lineage]]) -> int:
        """Forget what no claim needs: a record (or the copy of a process that exited here)
        whose lineage is neither the lineage nor the base of any claim of its name
        (``claimed(name)``, from the tracker's replica), and that was not written for
        ``drop_ttl`` (a restart's claim may follow its first puts). Returns how many went.

        The claims decide which copy is current; this removes what the drops could not
        reach: the records of a copy that died unseen, of a name unregistered while their
        node slept. The shell calls it every sync interval."""
        horizon = now - self.config.drop_ttl
        gone = 0
        for name in [n for n, at in self._record_at.items() if at <= horizon]:
            if self.records[name].lineage not in claimed(name):
                self._forget_record(name)
                gone += 1
        for rec in [r for r in self._hosted.values() if not r.live and r.last_put <= horizon]:
            if rec.lineage not in claimed(rec.name):
                self._fail_waiting(rec, "removed")
                self._forget_hosted(rec, now)
                gone += 1
        return gone

    def on_drop(self, node: str, msg: CheckpointDrop, now: float) -> None:
        """Delete the record of ``msg.name`` if it is of that lineage, up to that seq; an
        exited host copy too (its name restarted elsewhere); answer."""
        name = msg.name
        held = self.records.get(name)
        if held is not None and held.lineage == msg.lineage and held.seq <= msg.upto:
            self._forget_record(name)
        rec = self._hosted.get(name)
        if rec is not None and not rec.live and rec.lineage == msg.lineage and rec.seq <= msg.upto:
            for holder, (lineage, seq) in rec.held_by().items():
                if holder != node:
                    # Its standbys hold what the new host restored from: the restore's
                    # holders include them, but a drop more from here costs nothing.
                    self._start_drop(name, holder, lineage, seq, now)
            self._forget_hosted(rec, now)
        expires = now + self.config.drop_ttl
        self._tombstones[name] = (msg.lineage, msg.upto, expires)
        self._tomb_queue.append((expires, name))
        ack = CheckpointAck(to_wire(name), msg.lineage, msg.upto, dropped=True, incarnation=self.incarnation)
        self._out.send.append((node, ack))

    def on_ack(self, node: str, msg: CheckpointAck, now: float) -> None:
        """A standby's answer to a put or a drop (ignored from an incarnation of it that is
        not the one up here: what a dead one held, the next one does not)."""
        known = self._incarnations.get(node)
        if known is not None and msg.incarnation and msg.incarnation != known:
            return
        name = msg.name
        if msg.dropped:
            drop = self._drops.get((name, node))
            if drop is not None and drop.lineage == msg.lineage and drop.upto <= msg.seq:
                del self._drops[name, node]
            return
        rec = self._hosted.get(name)
        if rec is None or msg.lineage != rec.lineage or node not in rec.standbys:
            return  # about an earlier lineage, or a node that is no standby any more
        if msg.ok:
            rec.holders.pop(node, None)  # whatever else it held of the name, this replaced
            rec.refused.pop(node, None)  # the newer lineage it held went (dropped, say)
            if msg.seq > rec.acked.get(node, -1):
                rec.acked[node] = msg.seq
            if rec.sent.get(node, -1) <= msg.seq:
                rec.sent.pop(node, None)
            self._settle(rec, now)
            return
        rec.sent.pop(node, None)
        if msg.held is None or msg.writer is None or msg.held <= rec.lineage:
            return
        rec.refused[node] = msg.held
        rec.epoch_seen = max(rec.epoch_seen, msg.held.epoch)
        if msg.held not in rec.reported:
            rec.reported[msg.held] = None
            self._out.refused.append(CheckpointRefused(name, rec.pid, node, msg.held, msg.writer))

    # --- restores -----------------------------------------------------------------------------------

    def restart_starting(
        self,
        name: Any,
        token: int,
        lineage: Lineage | None,
        base: Lineage | None,
        now: float,
        also: Iterable[str] = (),
    ) -> None:
        """``name`` is about to restart here; its dead claim had ``lineage`` and ``base``
        (None: start fresh). Answers ``Restored(token)`` once: at once from this node's own
        copy of a process that crashed here, else after asking every server node up, and
        ``also`` the nodes that asked for this restart (the old host of a crashed process
        asks its owner, which may not see it up yet), and every node their answers name."""
        self._n_restores += 1
        if lineage is None:
            self._out.restored.append(Restored(name, token, None, False, -1, ()))
            return
        rec = self._hosted.get(name)
        if rec is not None and not rec.live and rec.lineage == lineage:
            self._out.restored.append(Restored(name, token, rec.checkpoint(), True, rec.epoch_seen, ()))
            return
        peers = set(self.up) | {n for n in also if n != self.node and n not in self._gone}
        job = _Fetch(name, lineage, base, peers, set(peers), now + self.config.fetch_timeout, self._next_ref)
        self._fetches[token] = job
        self._fetching.setdefault(name, set()).add(token)
        if not peers:
            self._finish(token, complete=True)
            return
        for peer in sorted(peers):
            self._fetch_out.setdefault(peer, []).append(name)
        job.delay = self.config.retry_interval
        self._arm(min(now + job.delay, job.deadline), "fetch", token)

    def on_fetch(self, node: str, msg: CheckpointFetch, now: float) -> None:
        """Answer with every record held here for those names."""
        found: list[Checkpoint] = []
        for name in msg.names:
            held = self._held_here(name)
            if held:
                # Records are kept decoded: the name goes back to the wire form (tuples, pids...).
                wire_name = to_wire(name)
                found += [cp if cp.name is wire_name else msgspec.structs.replace(cp, name=wire_name) for cp in held]
        self._out.send.append((node, CheckpointHave(msg.ref, found, sorted(self.up))))

    def _held_here(self, name: Any) -> list[Checkpoint]:
        """Every record of ``name`` on this node: its record as a standby, and each local
        copy's (the current one, the displaced ones), with the standby record a handed-in
        copy superseded until its move settles. A restore here and a fetch from elsewhere
        both read all of them: a copy handed in by a handoff its old host had aborted
        (read late, after a partition) hid this node's newer standby record of the same
        line, and the restart of the name here, its next host dead, found nothing and
        started fresh (the checkpointed campaign, seed 864894953: one failure lost
        acknowledged ops)."""
        found: list[Checkpoint] = []
        held = self.records.get(name)
        if held is not None:
            found.append(held)
        current = self._hosted.get(name)
        copies = [rec for rec in self._displaced.values() if rec.name == name]  # live copies set aside
        for rec in copies if current is None else [current, *copies]:
            mine = rec.checkpoint()
            if mine is not None:
                found.append(mine)
            if rec.superseded is not None:
                found.append(rec.superseded)
        return found

    def on_have(self, node: str, msg: CheckpointHave, now: float) -> None:
        entry = self._refs.pop(msg.ref, None)
        if entry is None or entry[0] != node:
            return
        finished: list[int] = []
        held: dict[Any, list[Checkpoint]] = {}
        for cp in msg.checkpoints:
            held.setdefault(cp.name, []).append(cp)
        for name in entry[1]:
            for token in self._fetching.get(name, ()):
                job = self._fetches[token]
                if node in job.pending and msg.ref >= job.first_ref:
                    job.pending.discard(node)
                    job.found.extend((node, cp) for cp in held.get(name, ()))
                    # A node the answerer sees up and this one does not know yet (it joined a
                    # moment ago) may hold the only copy: its host re-replicated to it and
                    # dropped the old standbys. It is asked too.
                    for peer in msg.peers:
                        if peer != self.node and peer not in job.asked and peer not in self._gone:
                            job.asked.add(peer)
                            job.pending.add(peer)
                            self._fetch_out.setdefault(peer, []).append(name)
                    if not job.pending:
                        finished.append(token)
        for token in finished:
            self._finish(token, complete=True)

    def _finish(self, token: int, complete: bool) -> None:
        job = self._fetches.pop(token)
        tokens = self._fetching[job.name]
        tokens.discard(token)
        if not tokens:
            del self._fetching[job.name]
        found = list(job.found)
        found += [(self.node, cp) for cp in self._held_here(job.name)]
        line, base = job.lineage, job.base
        chosen: Checkpoint | None = None
        chain = [cp for _, cp in found if line in (cp.lineage, cp.base)]
        if chain:
            chosen = max(chain, key=lambda cp: (cp.lineage, cp.seq))
        elif base is not None:
            from_base = [cp for _, cp in found if cp.lineage == base]
            if from_base:
                chosen = max(from_base, key=lambda cp: cp.seq)
        epochs = [cp.lineage.epoch for _, cp in found] + [line.epoch] + ([base.epoch] if base is not None else [])
        holders = tuple(
            Holder(node, cp.lineage, cp.seq)
            for node, cp in found
            if line in (cp.lineage, cp.base) or (base is not None and cp.lineage == base)
        )
        if not complete:
            self._n_incomplete += 1
        self._out.restored.append(Restored(job.name, token, chosen, False, max(epochs), holders, complete))

    # --- time ---------------------------------------------------------------------------------------

    def _arm(self, due: float, kind: str, key: Any) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (due, self._timer_seq, kind, key))

    def handle_timer(self, now: float) -> None:
        while self._tomb_queue and self._tomb_queue[0][0] <= now:
            expires, name = self._tomb_queue.popleft()
            tomb = self._tombstones.get(name)
            if tomb is not None and tomb[2] <= expires:
                del self._tombstones[name]
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, key = heapq.heappop(self._timers)
            if kind == "flush":
                self._on_flush(key, now)
            elif kind == "put":
                self._on_put_retry(key, now)
            elif kind == "drop":
                self._on_drop_retry(key, now)
            else:
                self._on_fetch_retry(key, now)

    def _on_flush(self, name: Any, now: float) -> None:
        rec = self._hosted.get(name)
        if rec is None or rec.flush_at is None or rec.flush_at > now:
            return
        rec.flush_at = None
        if rec.pending is not None and not rec.handing_off:
            self._put(rec, rec.pending, now)

    def _on_put_retry(self, key: tuple[Any, str, float], now: float) -> None:
        name, node, delay = key
        rec = self._hosted.get(name)
        if rec is None or node not in rec.retrying:
            return
        waiting = rec.state is not None and node in rec.standbys and rec.acked.get(node, -1) < rec.seq
        if not waiting:
            del rec.retrying[node]
            return
        if node in self.up and not rec.handing_off:
            # A standby that refused is asked again too (its newer record may be gone), and
            # a refusal again is reported again: the shell decides anew (the other copy may
            # have gone meanwhile).
            held = rec.refused.get(node)
            if held is not None:
                rec.reported.pop(held, None)
            self._n_retransmits += 1
            checkpoint = rec.checkpoint()
            assert checkpoint is not None
            rec.sent[node] = rec.known[node] = rec.seq
            self._n_puts += 1
            self._out.send.append((node, CheckpointPut(checkpoint)))
        delay = min(delay * 2, self.config.retry_max)
        self._arm(now + delay, "put", (name, node, delay))

    def _on_drop_retry(self, key: tuple[Any, str, float], now: float) -> None:
        name, node, delay = key
        drop = self._drops.get((name, node))
        if drop is None:
            return
        if now >= drop.expires:
            del self._drops[name, node]
            return
        if node in self.up:
            self._n_retransmits += 1
            self._n_drops += 1
            self._out.send.append((node, CheckpointDrop(to_wire(name), drop.lineage, drop.upto)))
        delay = min(delay * 2, self.config.retry_max)
        self._arm(min(now + delay, drop.expires), "drop", (name, node, delay))

    def _on_fetch_retry(self, token: int, now: float) -> None:
        job = self._fetches.get(token)
        if job is None:
            return
        if now >= job.deadline:
            self._finish(token, complete=False)
            return
        for peer in sorted(job.pending):
            self._n_retransmits += 1
            self._fetch_out.setdefault(peer, []).append(job.name)
        job.delay = min(job.delay * 2, self.config.retry_max)
        self._arm(min(now + job.delay, job.deadline), "fetch", token)
