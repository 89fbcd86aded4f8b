"""The tracker core: the replicated registry of names and groups. Sans-I/O.

Rules:
    * Every node holds a full replica, so ``whereis`` is a dict lookup (``pids``) that
      never waits on the network or on a sync.
    * Every change to an entry is made by the node hosting the pid (its *host*) and
      broadcast by it in a ``Delta``; nobody relays another host's claims. Links are
      FIFO, so the replica of host H on node N is exactly H's table as of the last
      message N received from H. Each host numbers its own changes with a logical
      ``clock`` (no wall clocks): a change older than what the replica holds is ignored.
    * Anti-entropy: each node sends every peer a ``Digest`` of its own claims (one hash
      per bucket of ring positions) when the peer comes up and every ``sync_interval``;
      the peer asks for the buckets whose digest differs from its replica
      (``SyncRequest``) and replaces those buckets with the answer (``SyncReply``).
      Only differences travel, and a sync never blocks lookups or registrations.
    * Resolution of a name claimed by several hosts is a pure function of the claims
      alone (not of the placement, which differs between nodes for a moment when one
      changes), so every node that holds the same claims picks the same winner: a claim
      made by a handoff supersedes the exact pid it replaced (``moved_from``); otherwise
      (a healed netsplit) the claim on the name's ring owner among the claimants' hosts
      wins (the placement's owner, when it hosts a copy), or else the one on the smallest
      host name. The host of each losing claim (and only it) is told to resolve the conflict.
    * When a host goes down, its claims are dropped everywhere; each factory-registered
      name it hosted (and had not handed off) is restarted by the one node that owns it
      in the new placement: exactly once, in a stable cluster. A name handed to it whose
      claim has not arrived (the replica resolves it to the handoff's successor meanwhile)
      counts as one it hosted, and so does one whose removal names a successor already
      gone here. The other nodes that held
      the claim ask that owner to (it may never have heard of it: it joined too late);
      registration there is idempotent.
    * Placement covers server nodes that are up, have said hello, and are not
      draining (``RegistryLeaving``). When it changes, every local factory-registered
      name whose owner moved is handed off (``StartHandoff`` command); with no owner (no
      quorum) the local process is stopped.

The core never calls user code and never waits: it emits commands (start a process
from its spec, hand a process off, stop one, resolve a conflict) that the shell runs,
and the shell feeds back the outcomes (``local_claim``, ``local_unclaim``,
``local_exit``, ``handoff_done``...).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from .._backoff import Backoff
from ..ring._ring import hash_name
from ..ring._strategy import DistributionStrategy, Placement
from ..wire._codec import to_wire
from ..wire._messages import (
    CLAIM_GROUP,
    CLAIM_NAME,
    Claim,
    Delta,
    Digest,
    FlushAsk,
    FlushMarker,
    Lineage,
    RegistryHello,
    RegistryLeaving,
    Removal,
    Spec,
    SyncReply,
    SyncRequest,
)
from ..wire._types import NORMAL, SHUTDOWN, Pid
from ._events import (
    ConflictResolved,
    GroupJoined,
    GroupLeft,
    NameRegistered,
    NameUnregistered,
    RegistryEvent,
)

if TYPE_CHECKING:
    import random

BUCKETS = 64
_MASK = (1 << 64) - 1
_ANCESTORS_MAX = 4  # pids a claim remembers it superseded beyond moved_from (a bound)
_SHARED_SPECS_MAX = 1024  # distinct argument-less specs shared per node (a bound, not a tunable)
_ENDED_MAX = 10_000  # names whose claim ended lately, remembered per node (a bound: see _ended)
# A restart owed: (due, seq, name, spec, reason, lineage, base).
_Restart = tuple[float, int, Any, Spec, str, Lineage | None, Lineage | None]


@dataclass(frozen=True, slots=True)
class GroupKey:
    """The key of a group membership claim in a host's claim table."""

    group: Any
    pid: Pid


def claim_key(claim: Claim | Removal) -> Hashable:
    """The key of ``claim`` in its host's table: a name claim's is the name itself (no
    tuple per entry on every node), a group claim's a ``GroupKey``, which no name equals
    (names are wire values)."""
    if claim.kind == CLAIM_NAME:
        name: Hashable = claim.key
        return name
    return GroupKey(claim.key, claim.pid)


def wire_spec(spec: Spec) -> Spec:
    """The spec with its arguments prepared for the wire (tuples, pids... as ext types):
    the spec itself when it has none."""
    if not (spec.args or spec.kwargs):
        return spec
    return Spec(
        spec.factory, to_wire(spec.args), to_wire(spec.kwargs), spec.restart, spec.handoff_timeout, spec.replicas
    )


def wire_claim(claim: Claim) -> Claim:
    """The claim with its user values prepared for the wire (tuples, pids... as ext types):
    the claim itself when nothing needs preparing (a str or int name, no arguments)."""
    spec = claim.spec if claim.spec is None else wire_spec(claim.spec)
    key = to_wire(claim.key)
    if key is claim.key and spec is claim.spec:
        return claim
    return msgspec.structs.replace(claim, key=key, spec=spec)


def _padded(handoffs: tuple[int, ...], n: int) -> tuple[int, ...]:
    """``handoffs`` beside ``n`` ancestors: an older peer's claim has none (0: not known)."""
    return handoffs if len(handoffs) == n else (*handoffs, *(0,) * n)[:n]


def _handoffs_of(claim: Claim) -> tuple[int, ...]:
    """The ids of the handoffs that moved each of ``claim.ancestors`` on (0: not known)."""
    return _padded(claim.ancestor_handoffs, len(claim.ancestors))


def _latest_exits(pids: tuple[Pid, ...], handoffs: tuple[int, ...]) -> dict[Pid, int]:
    """Each pid once, in the order of its first place, with the latest handoff it left by
    (a copy that displaced another on its host stands for both lines: it left a pid the two
    share by both moves)."""
    exits: dict[Pid, int] = {}
    for pid, hid in zip(pids, handoffs, strict=True):
        if hid > exits.get(pid, -1):
            exits[pid] = hid
    return exits


def _merged_exits(pids: tuple[Pid, ...], handoffs: tuple[int, ...]) -> tuple[tuple[Pid, ...], tuple[int, ...]]:
    """``_latest_exits``, the first ``_ANCESTORS_MAX`` of them, as ``ancestors`` and
    ``ancestor_handoffs``."""
    kept = list(_latest_exits(pids, handoffs).items())[:_ANCESTORS_MAX]
    return tuple(p for p, _ in kept), tuple(h for _, h in kept)


def _exits(claim: Claim) -> dict[Pid, int]:
    """Each pid ``claim``'s line left, with the latest handoff id it left it by (0: not known)."""
    if claim.moved_from is None:
        return {}
    return _latest_exits((claim.moved_from, *claim.ancestors), (claim.handoff, *_handoffs_of(claim)))


def _later_lines(live: list[Claim]) -> list[Claim]:
    """The claims of ``live`` (none supersedes another's pid) whose lines hold the latest
    move out of every pid they share with another's: of two lines that left one pid by two
    handoffs, the later move's supersedes the earlier's. An old host moves a pid again only
    after it gave the first move up (the new owner seemed dead), so the first was committed
    behind its back (the new owner was paused, and read the request after the old host had
    gone: rule 3 of the handoff), and its copy started from a prefix of the state the later
    one was handed. Handoff ids grow per node incarnation, as its pids do. Each line keeps
    the id it left a pid with however far it moves on (``ancestor_handoffs``), so every node
    that holds the later line's claim picks it, whether the stale line reached it yet, or
    moved on since, or not; the ring (``_pick_winner``) picked the stale copy in one view,
    and the node that had not seen it yet kept the later one: both ran on (the campaign's
    seed 6800000005). Judged only between claims that do not supersede each other by pid: a
    claim's own old pid, still held somewhere, may carry a branch its copy's bounded
    ``ancestors`` dropped. All of ``live`` if none would be left."""
    exits = [_exits(c) for c in live]
    last: dict[Pid, int] = {}
    for left in exits:
        for pid, hid in left.items():
            if hid > last.get(pid, 0):
                last[pid] = hid
    later = [c for c, left in zip(live, exits, strict=True) if not any(0 < h < last[p] for p, h in left.items())]
    return later or live


def _mix(claim: Claim) -> int:
    """A claim's contribution to its bucket's digest (xor-combined, order-free)."""
    pid = claim.pid
    h = claim.position ^ (pid.id * 0x9E3779B97F4A7C15) ^ (pid.incarnation * 0xC2B2AE3D27D4EB4F)
    h ^= (claim.clock * 0x165667B19E3779F9) ^ (claim.kind << 63)
    return h & _MASK


# --- commands for the shell -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartName:
    """Start ``name`` on this node from ``spec`` and claim it (a restart). ``lineage`` and
    ``base``: the checkpoints of the claim that ended, to restore first (None: fresh)."""

    name: Any
    spec: Spec
    reason: str  # "nodedown" | "exit"
    origin: str = ""  # for "nodedown": the node that went down
    lineage: Lineage | None = None
    base: Lineage | None = None


@dataclass(frozen=True, slots=True)
class StartHandoff:
    """Move the local process ``pid`` holding ``name`` to ``target``."""

    name: Any
    pid: Pid
    spec: Spec
    target: str


@dataclass(frozen=True, slots=True)
class StopProcess:
    """Stop the local process ``pid`` (no quorum): ask it to ``die``."""

    name: Any
    pid: Pid
    reason: str


@dataclass(frozen=True, slots=True)
class ResolveConflict:
    """The local process ``loser`` lost ``name`` to ``winner``: send its state, stop it."""

    name: Any
    loser: Pid
    winner: Pid


@dataclass(frozen=True, slots=True)
class RestartElsewhere:
    """The process holding ``name`` exited (or its node died) and must restart on
    ``owner``, from the checkpoints of ``lineage`` (or ``base``) if any."""

    name: Any
    spec: Spec
    owner: str
    lineage: Lineage | None = None
    base: Lineage | None = None


@dataclass(frozen=True, slots=True)
class RouteClosedNotice:
    """Tell ``new_host`` (``RouteClosed``) that this node has no route left to ``old_host``,
    whose pid handoff ``hid`` moved: its marker (deferred until ``old_host`` is up here
    again) need not be waited for. The shell sends it only if this node has no link to
    ``old_host`` and nothing queued for it (nothing it sent that way can still arrive)."""

    new_host: str
    old_host: str
    hid: int


Command = StartName | StartHandoff | StopProcess | ResolveConflict | RestartElsewhere | RouteClosedNotice


@dataclass(slots=True)
class TrackerOutput:
    send: list[tuple[str, Any]] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    events: list[RegistryEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """Tunables of the registry.

    Attributes:
        sync_interval: every node sends each peer a digest of its claims this often.
        restart_backoff: first delay before restarting a crashed process, doubled per
            consecutive crash up to ``restart_backoff_max``.
        restart_reset: a process that ran this long resets its backoff.
        forward_ttl: how long a handed-off pid forwards stragglers to its successor.
        orphan_check: when a node dies, each survivor that knew one of its names but does
            not own it waits this long, then asks the owner to restart the name if it is
            still unregistered (the owner restarts the names it knew of at once; this only
            covers an owner that never learned the claim). Waiting first keeps the cost of
            a node's death linear in its names, not in its names times the survivors.
        factories: glob patterns over factory references (``"myapp.workers:*"``) that this
            node will run for a registration, a restart or a handoff; any other is refused
            with ``FactoryError`` before it is imported. None (the default) runs any
            importable one: then the cookie is the only gate, as in Erlang, and a peer that
            holds it can make this node call any importable function.
        replicas: the standbys of a name's checkpoints when its registration does not say
            (``register(..., replicas=)``): the nodes that keep its latest checkpoint.
        checkpoint_max_bytes: the largest encoded state ``Process.checkpoint`` takes
            (larger: ``CheckpointTooLarge``).
        checkpoint_write_behind: a ``checkpoint(state, wait=False)`` is sent at most this
            often per name (the latest state; those in between are never sent).
    """

    sync_interval: float = 10.0
    restart_backoff: float = 0.05
    restart_backoff_max: float = 5.0
    restart_reset: float = 30.0
    forward_ttl: float = 30.0
    orphan_check: float = 2.0
    factories: tuple[str, ...] | None = None
    replicas: int = 1
    checkpoint_max_bytes: int = 1 << 20
    checkpoint_write_behind: float = 0.005


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    names: int
    local_names: int
    groups: int
    group_members: int
    peers: int
    placement_nodes: tuple[str, ...]
    conflicts: int
    restarts: int
    handoffs_started: int
    syncs_sent: int
    buckets_repaired: int
    # Defaults: a snapshot from a node of an older version still converts.
    handoffs_completed: int = 0
    handoffs_aborted: int = 0
    # Gates of handed-in processes opened for a sender without its flush marker (it went
    # down, silent or unlinked before it came up, or the handoff timeout passed), and the
    # messages they had held.
    gate_releases: int = 0
    gate_held_messages: int = 0
    # Checkpoints (the standby core): records held for other hosts and their bytes, local
    # names with a checkpoint record and their latest states' bytes, puts this node refused
    # (it holds a newer lineage), restores made, and those cut short by their timeout.
    checkpoint_records: int = 0
    checkpoint_record_bytes: int = 0
    checkpoint_hosted: int = 0
    checkpoint_hosted_bytes: int = 0
    checkpoint_refusals: int = 0
    checkpoint_restores: int = 0
    checkpoint_restores_incomplete: int = 0
    # The durable store (issue 12, item 4; "" when the node has none): its address, whether
    # its last attempt succeeded, the writes it applied, refused (stale) and that failed, the
    # writes queued (and their bytes) and dropped (queue full), the age of the oldest queued
    # one, and the names this node started from it at its cold start.
    store: str = ""
    store_up: bool = False
    store_written: int = 0
    store_refused: int = 0
    store_failed: int = 0
    store_queued: int = 0
    store_queued_bytes: int = 0
    store_dropped: int = 0
    store_lag: float = 0.0
    store_restored: int = 0


#: Seconds after which a request for a peer's digest still unanswered counts as lost, when
#: that peer greets this node with a request of its own (see ``on_hello``). Well above a
#: round trip, so that the two requests of one exchange never both go again.
REASK_AFTER = 1.0


@dataclass(slots=True)
class _Peer:
    role: str = "unknown"
    leaving: bool = False
    hello: bool = False
    # Caught up with its claims: its first digest matched ours, or the buckets that
    # differed (``unsynced``) have all come back in SyncReplies.
    synced: bool = False
    unsynced: set[int] = field(default_factory=set)
    # This node asked the peer for its digest (``wants_digest``) and none has come since;
    # when it last asked.
    awaiting_digest: bool = False
    asked: float = 0.0
    incarnation: int = 0  # its incarnation, as membership announced it (0: not told)


class TrackerCore:
    """One node's replica and decisions. Single owner; not thread-safe."""

    def __init__(
        self,
        node: str,
        *,
        role: str,
        strategy: DistributionStrategy,
        config: RegistryConfig,
        rng: random.Random,
        now: float,
    ) -> None:
        self.node = node
        self.role = role
        self.strategy = strategy
        self.config = config
        self._rng = rng
        self.clock = 0
        self.claims: dict[str, dict[Hashable, Claim]] = {node: {}}  # host -> claim_key -> claim
        self.winners: dict[Any, Claim] = {}
        self.pids: dict[Any, Pid] = {}  # whereis: name -> pid, the hot read path
        self.groups: dict[Any, dict[Pid, Claim]] = {}
        self.peers: dict[str, _Peer] = {}
        self.leaving = False
        self.placement: Placement = strategy.place([node] if role == "server" else [])
        self.pinned: set[Any] = set()  # local names whose process answered Ignore
        self.moving: set[Any] = set()  # local names being handed off now
        # names whose host handed them off, until the successor's own claim arrives: the
        # successor, and the claim a peer's handoff removed (None for this node's own
        # handoffs, which _handed restarts): what a restart needs if the successor dies first
        self._successors: dict[Any, tuple[Pid, Claim | None]] = {}
        # name -> the pid whose claim of it ended last (removed with no successor: it exited,
        # or was unregistered), the latest ``_ENDED_MAX``: a handoff's removal naming that
        # pid as successor came after it (from another link) and sets no pointer to it
        self._ended: dict[Any, Pid] = {}
        # node -> the latest incarnation of it that went down here (see _gone)
        self._down: dict[str, int] = {}
        # name -> (new pid, spec) of the names this node handed off, until the new claim arrives
        self._handed: dict[Any, tuple[Pid, Spec, Lineage | None, Lineage | None]] = {}
        # local pid -> the key of its one claim, or a set of keys when it holds several
        self._local_by_pid: dict[Pid, Hashable | set[Hashable]] = {}
        # (factory, restart, handoff_timeout, replicas) -> the one Spec object every argument-less
        # claim of that kind shares: replicas hold N claims, mostly of a few such specs
        self._specs: dict[tuple[str, str, float, int], Spec] = {}
        self._contested_names: set[Any] = set()  # names with more than one claimant now
        self._sample_pids: dict[str, Pid] = {}  # peer -> a pid of it, whose parts others share
        self._pending_claims: list[Claim] = []
        self._pending_removals: list[Removal] = []
        self._resolving: set[tuple[Any, Pid]] = set()
        self._claimant_placements: dict[tuple[str, ...], Placement] = {}  # see _pick_winner
        self._flushed: set[tuple[str, int]] = set()
        # old host -> the handoffs whose claim came while that host was not up here (hid ->
        # (the old pid's incarnation, when)): their markers go when it comes up (see _apply)
        self._flush_due: dict[str, dict[int, tuple[int, float]]] = {}
        # the last greeting of each node that greeted this one while not up here (see on_hello)
        self._early_hellos: dict[str, RegistryHello] = {}
        # heap of (due, seq, name, spec, reason, lineage, base): restarts after a crash
        # ("exit") and checks of names a dead node hosted ("nodedown", see
        # RegistryConfig.orphan_check), with the checkpoints of the claim that ended
        self._restarts: list[_Restart] = []
        self._restart_seq = 0
        # name -> its restart backoff, while it may still matter (see _prune_backoffs)
        self._backoff: dict[Any, Backoff] = {}
        self._next_sync = now + config.sync_interval
        self._out = TrackerOutput()
        self._n_conflicts = self._n_restarts = self._n_handoffs = 0
        self._n_syncs = self._n_repaired = 0
        self._n_handoffs_done = self._n_handoffs_failed = 0
        self.handoffs_pinned = 0  # of the failed: the process stays until the next change (see pinned)

    # --- queries -----------------------------------------------------------------------------

    def owner(self, name: Any) -> str | None:
        return self.placement.owner(name)

    def members(self, group: Any) -> list[Pid]:
        return sorted(self.groups.get(group, {}))

    def registered(self) -> list[tuple[Any, Pid]]:
        return list(self.pids.items())

    def ancestry(self, name: Any, pid: Pid) -> tuple[tuple[Pid, ...], tuple[int, ...]]:
        """The pids ``pid`` (this node's claim of ``name``) replaced, latest first, bounded,
        and beside each the id of the handoff that moved it on: what a handoff of it sends
        on as the next claim's ``ancestors`` and ``ancestor_handoffs``."""
        claim = self.claims[self.node].get(name)
        if claim is None or claim.pid != pid or claim.moved_from is None:
            return (), ()
        return _merged_exits((claim.moved_from, *claim.ancestors), (claim.handoff, *_handoffs_of(claim)))

    def local_claim_of(self, pid: Pid) -> Claim | None:
        """The name claim of the local process ``pid`` (a factory's, if it holds several)."""
        keys = self._local_by_pid.get(pid)
        if keys is None:
            return None
        table = self.claims[self.node]
        found = None
        for key in keys if isinstance(keys, set) else (keys,):
            claim = table.get(key)
            if claim is not None and claim.kind == CLAIM_NAME:
                if claim.spec is not None:
                    return claim
                found = claim
        return found

    def local_names(self) -> list[Claim]:
        return [c for c in self.claims[self.node].values() if c.kind == CLAIM_NAME]

    def take(self) -> TrackerOutput:
        """Everything to do since the last call, with this node's new claims batched into
        one ``Delta`` for every peer."""
        if self._pending_claims or self._pending_removals:
            delta = Delta(
                [wire_claim(c) for c in self._pending_claims],
                [Removal(r.kind, to_wire(r.key), r.pid, r.clock, r.successor) for r in self._pending_removals],
            )
            self._pending_claims = []
            self._pending_removals = []
            for peer in self.peers:
                self._out.send.append((peer, delta))
        out, self._out = self._out, TrackerOutput()
        return out

    def next_deadline(self) -> float:
        deadline = self._next_sync
        if self._restarts:
            deadline = min(deadline, self._restarts[0][0])
        return deadline

    def statistics(self) -> RegistryStatistics:
        return RegistryStatistics(
            names=len(self.pids),
            local_names=sum(1 for c in self.claims[self.node].values() if c.kind == CLAIM_NAME),
            groups=len(self.groups),
            group_members=sum(len(m) for m in self.groups.values()),
            peers=len(self.peers),
            placement_nodes=tuple(self.placement.nodes),
            conflicts=self._n_conflicts,
            restarts=self._n_restarts,
            handoffs_started=self._n_handoffs,
            syncs_sent=self._n_syncs,
            buckets_repaired=self._n_repaired,
            handoffs_completed=self._n_handoffs_done,
            handoffs_aborted=self._n_handoffs_failed,
        )

    # --- membership ----------------------------------------------------------------------------

    def peer_up(self, node: str, now: float, incarnation: int = 0) -> None:
        """``node`` (as ``incarnation``, 0 if not known) is up: greet it and ask for its digest.

        The digest goes both ways on request only (``RegistryHello.wants_digest``): a peer
        that did not see this node go down (a one-sided failure verdict: this node, or that
        one, was paused) would otherwise keep its claims to itself until the next sync,
        while this node, which dropped them, restarts or hands out names it still runs.
        """
        peer = self.peers.setdefault(node, _Peer())
        peer.awaiting_digest, peer.asked, peer.incarnation = True, now, incarnation
        self._out.send.append((node, RegistryHello(self.role, self.leaving, wants_digest=True)))
        early = self._early_hellos.pop(node, None)
        if early is not None:  # its greeting came before it was up here: taken now
            self.on_hello(node, early, now)
        due = self._flush_due.pop(node, None)
        if due:
            since = now - self.config.forward_ttl  # the old host has forgotten older handoffs
            for hid, (life, at) in due.items():
                if (life == incarnation or not incarnation) and at > since:  # another life knows none
                    self._send_flush(node, hid)

    def link_renewed(self, node: str, now: float, incarnation: int = 0) -> bool:
        """A new link to ``node`` came up while ``node`` is up here (as ``incarnation``): it
        replaced one that closed without a NodeDown, and what went on the old one may be
        lost (a partition black-holed it until the transport's idle check closed it; the
        greeting and the Deltas sent meanwhile with it). Greet it again and ask for its
        digest: the digests repair both replicas now, not at the next periodic sync, up to
        ``sync_interval`` later (the fault campaign's 10-12 s waits for placement after a
        heal, seeds 350371862 and 3230367926). It sends what that sync sends, and an answer
        asks nothing back (``on_hello``): no ping-pong. A link to an incarnation other than
        the one up here is membership's to announce (a restart: down, then up). Whether
        it greeted."""
        peer = self.peers.get(node)
        if peer is None or (incarnation and peer.incarnation and incarnation != peer.incarnation):
            return False  # not up here (peer_up greets it when it is), or another life of it
        peer.awaiting_digest, peer.asked = True, now
        self._out.send.append((node, RegistryHello(self.role, self.leaving, wants_digest=True)))
        return True

    def _send_digest(self, node: str) -> None:
        self._out.send.append((node, Digest(self.digest(self.node))))
        self._n_syncs += 1

    def _check_synced(self, peer: _Peer, now: float) -> None:
        """Mark ``peer`` synced once no bucket of its claims is missing; it may now be placed."""
        if not peer.unsynced:
            peer.synced = True
            if peer.hello and self._replace_placement(now):
                self.rebalance()

    def synced_with(self, node: str) -> bool:
        """Has this node greeted ``node`` and caught up with its claims (its first digest
        compared, every differing bucket synced)?"""
        peer = self.peers.get(node)
        return peer is not None and peer.hello and peer.synced

    def peer_down(self, node: str, now: float) -> None:
        """``node`` is down: drop its claims; restart the names this node now owns."""
        peer = self.peers.pop(node, None)
        if len(self._down) >= 10_000:
            self._down.clear()  # bounded: a later removal naming a pid of a forgotten one keeps it
        self._down[node] = max(self._down.get(node, 0), peer.incarnation if peer is not None else 0)
        self._sample_pids.pop(node, None)
        self._early_hellos.pop(node, None)
        orphans: list[tuple[Claim, Spec]] = []
        for name in [n for n, (p, _) in self._successors.items() if p.node == node]:
            _, moved = self._successors.pop(name)  # its claim will never come: forget the name
            self._pick_winner(name)
            if moved is not None and moved.spec is not None and name not in self.winners:
                orphans.append((moved, moved.spec))
        self._flushed = {f for f in self._flushed if f[0] != node}
        self._replace_placement(now)
        # Names a peer handed to ``node`` whose claim never reached this replica: it resolved
        # them to ``node``'s pid meanwhile, and as their owner it may have answered the restart
        # the old host asked of it (that host saw the death first) "registered already". They
        # are orphans like the names of the claims ``node`` held; only forgotten, nobody
        # restarted them.
        for moved, spec in orphans:
            self._restart_orphan(moved.key, spec, moved.position, now, node, moved.lineage, moved.base)
        # Names this node handed to ``node`` that it died before claiming: nobody else holds
        # a claim to restart them from (this node's was removed at the commit).
        for name in [n for n, (pid, *_) in self._handed.items() if pid.node == node]:
            _, spec, lineage, base = self._handed.pop(name)
            if name not in self.winners:
                self._restart_orphan(name, spec, hash_name(name), now, node, lineage, base)
        gone = self.claims.pop(node, {})
        for claim in gone.values():
            if claim.kind == CLAIM_NAME:
                was_winner = self.winners.get(claim.key) is claim
                self._pick_winner(claim.key)
                if was_winner and claim.spec is not None and claim.key not in self.winners:
                    self._restart_orphan(claim.key, claim.spec, claim.position, now, node, claim.lineage, claim.base)
            else:
                self._group_remove(claim)
        self.rebalance()

    def _restart_orphan(
        self,
        name: Any,
        spec: Spec,
        position: int,
        now: float,
        origin: str,
        lineage: Lineage | None = None,
        base: Lineage | None = None,
    ) -> None:
        """``name`` lost its only claim with a node that went down: see that its owner
        restarts it (this node, at once; another, asked at once if this node leaves, else
        after ``orphan_check`` if it has not restarted it by then)."""
        owner = self.placement.owner_of_hash(position)
        if owner == self.node:
            self._n_restarts += 1
            self._out.commands.append(StartName(name, spec, "nodedown", origin, lineage, base))
        elif owner is not None and self.leaving:
            # This node will be gone before any orphan check: it may be the only one left
            # that knew the claim (the others dropped it while its host was thought dead),
            # so it asks the owner now.
            self._n_restarts += 1
            self._out.commands.append(RestartElsewhere(name, spec, owner, lineage, base))
        elif owner is not None:
            # The owner may never have held this claim (it joined, or linked to the dead
            # host, too late to learn of it): if the name is still not back after
            # orphan_check, ask it. Every survivor that knew the claim asks then;
            # registration on the owner is idempotent.
            self._restart_seq += 1
            due = now + self.config.orphan_check
            heapq.heappush(self._restarts, (due, self._restart_seq, name, spec, "nodedown", lineage, base))

    def on_hello(self, node: str, msg: RegistryHello, now: float) -> None:
        peer = self.peers.get(node)
        if peer is None:
            # Not up in this node's view (a message still in flight when membership declared
            # it down, or ahead of the NodeUp): taking it would bring back a peer that no
            # peer_down will remove again. It is taken when the node comes up here: the
            # node brought this one up first and now awaits its digest, so when this node
            # greets it, it answers with its digest only, and without this greeting the
            # node stayed unplaced here until its next periodic sync (a healed partition,
            # each side's verdict ending on its own, in the fault campaign).
            if len(self._early_hellos) >= 10_000:
                self._early_hellos.clear()  # bounded; the periodic sync repairs the rest
            self._early_hellos[node] = msg
            return
        if msg.wants_digest:
            # It has just brought this node up in its view. If this node did not do the same
            # (it never saw that peer go down: one of them was paused, or the verdict was
            # one-sided), the peer dropped this node's claims and stopped sending it Deltas:
            # each side sends the other its digest now, not a sync interval later.
            # A request of ours made a while ago and still unanswered was lost: sent on a
            # link that was replaced without a NodeDown here (a healed partition), it kept
            # the peer unplaced until the next periodic sync. It is made again.
            if not peer.awaiting_digest or now - peer.asked >= REASK_AFTER:
                # Our request goes before our digest: when it arrives, the peer is still
                # awaiting that digest, so it answers with its own and asks nothing back.
                peer.awaiting_digest, peer.asked = True, now
                self._out.send.append((node, RegistryHello(self.role, self.leaving, wants_digest=True)))
            self._send_digest(node)
        changed = not peer.hello or peer.role != msg.role or peer.leaving != msg.leaving
        peer.role, peer.leaving, peer.hello = msg.role, msg.leaving, True
        if changed:
            self._replace_placement(now)
            self.rebalance()

    def on_leaving(self, node: str, msg: RegistryLeaving, now: float) -> None:
        peer = self.peers.get(node)
        if peer is None:
            return  # not up in this node's view (see on_hello)
        if not peer.leaving:
            peer.leaving = True
            self._replace_placement(now)
            self.rebalance()

    def start_leaving(self, now: float) -> None:
        """Drain: leave this node out of placement and hand every local name off."""
        if self.leaving:
            return
        self.leaving = True
        self.pinned.clear()  # names that answered Ignore are asked again: they cannot stay now
        for peer in self.peers:
            self._out.send.append((peer, RegistryLeaving()))
        self._replace_placement(now)
        self.rebalance()
        # Restarts this node still owes (crashed processes waiting out their backoff, orphan
        # checks of a dead node's names) are due now: they go to their owners before this
        # node goes, or nobody may ever make them.
        self._restarts = [(now, *rest) for _, *rest in self._restarts]
        heapq.heapify(self._restarts)
        self.handle_timer(now)

    def restarts_owed(self) -> bool:
        """Whether a restart is still waiting to be made or passed on (a drain waits for it)."""
        return bool(self._restarts)

    def restarts_due(self) -> list[Any]:
        """The names with a restart still to come, the soonest due first: those waiting whose
        name is not registered again already (the orphan check of a name that came back
        meanwhile is no restart)."""
        return [entry[2] for entry in sorted(self._restarts) if entry[2] not in self.pids]

    @property
    def restarts_made(self) -> int:
        """Restarts made here or passed on to the name's owner, since this core started."""
        return self._n_restarts

    @property
    def handoffs_started(self) -> int:
        """Handoffs this core commanded (``StartHandoff``), since it started."""
        return self._n_handoffs

    def _replace_placement(self, now: float) -> bool:
        """Recompute the placement from the peers' states; whether it changed."""
        # A peer is placed once it has said hello and this node has its claims: placed any
        # earlier (a healed netsplit), names it already runs would be handed to it by
        # nodes that do not know yet that it runs them.
        nodes = [n for n, p in self.peers.items() if p.hello and p.synced and p.role == "server" and not p.leaving]
        if self.role == "server" and not self.leaving:
            nodes.append(self.node)
        if sorted(nodes) == self.placement.nodes:
            return False
        self.placement = self.strategy.place(nodes)
        self.pinned.clear()  # a process that chose to stay is asked again on each change
        for name in [n for n in self._contested_names if n in self.winners]:
            self._pick_winner(name)
        return True

    def rebalance(self) -> None:
        """Hand off (or stop) every local factory-registered name this node no longer owns.

        The core calls it on each placement change and sync tick; the shell calls it to retry
        failed handoffs sooner."""
        for claim in list(self.claims[self.node].values()):
            self._rebalance_one(claim)

    def _rebalance_one(self, claim: Claim) -> None:
        """Hand off (or stop) ``claim``'s name if it is local, factory-registered, and not ours."""
        if claim.kind != CLAIM_NAME or claim.spec is None:
            return
        name = claim.key
        if name in self.moving or name in self.pinned or self.winners.get(name) is not claim:
            return
        if name in self._contested_names:
            # Its conflict is being settled (the losers retire into this copy): moving the
            # winner now would change the claimants, and with them the ring that picked
            # it, so another node could pick the other copy and both would retire.
            return
        owner = self.placement.owner_of_hash(claim.position)
        if owner == self.node:
            return
        if owner is None:
            if self.leaving and self.servers_not_placed_yet():
                # A leaving node that has not caught up with its peers yet (it joined a
                # moment ago) places nothing: that is no loss of quorum. The name moves
                # once a peer is placed (the drain waits for it).
                return
            # Leaving with every other server leaving too (or none left): nobody can take it.
            self._out.commands.append(StopProcess(name, claim.pid, "lastnode" if self.leaving else "noquorum"))
            self.moving.add(name)
        else:
            self._n_handoffs += 1
            self.moving.add(name)
            self._out.commands.append(StartHandoff(name, claim.pid, claim.spec, owner))

    def servers_not_placed_yet(self) -> bool:
        """Whether a peer that may be a server, and is not leaving, still waits for its
        hello or its sync before it can be placed."""
        return any(p.role != "client" and not p.leaving and not (p.hello and p.synced) for p in self.peers.values())

    # --- this node's own changes ----------------------------------------------------------------

    def local_claim(
        self,
        name: Any,
        pid: Pid,
        spec: Spec | None,
        now: float,
        *,
        moved_from: Pid | None = None,
        handoff: int = 0,
        ancestors: tuple[Pid, ...] = (),
        ancestor_handoffs: tuple[int, ...] = (),
        lineage: Lineage | None = None,
        base: Lineage | None = None,
    ) -> Claim:
        """Claim ``name`` for the local process ``pid`` and broadcast it (``lineage``,
        ``base``: its checkpoints', from the standby core; ``ancestors`` and
        ``ancestor_handoffs``: the old host's ``ancestry`` of the pid a handoff moved)."""
        self.clock += 1
        if spec is not None and not spec.args and not spec.kwargs:
            spec = self._shared_spec(spec)
        displaced = self.claims[self.node].get(name)
        if displaced is not None and displaced.pid != pid:
            # This copy stands for the one it displaces here (whose state comes to it: see
            # below) and for the pids that one superseded. Without them, a node that has not
            # seen the old host's removal yet counts that old pid live beside this claim, and
            # may pick it: then both copies here retire to a pid that has moved on to one of
            # them (the fault campaign: two copies handed in at once, seed 350371859, five
            # names gone for good).
            # It was not moved on by a handoff (0); the pids each line moved through were.
            pids, handoffs = self.ancestry(name, displaced.pid)
            ancestors, ancestor_handoffs = _merged_exits(
                (displaced.pid, *pids, *ancestors), (0, *handoffs, *_padded(ancestor_handoffs, len(ancestors)))
            )
        claim = Claim(
            CLAIM_NAME,
            name,
            pid,
            self.clock,
            hash_name(name),
            spec,
            moved_from,
            handoff,
            ancestors,
            lineage,
            base,
            ancestor_handoffs,
        )
        self._add_local(claim)
        self._resolve(claim, displaced)
        if displaced is not None and displaced.pid != pid and (name, displaced.pid) not in self._resolving:
            # Two local processes for one name (two handoffs of it came in at once, say):
            # this claim replaces the other in this host's table, so that process would run
            # on unregistered. It loses, as after a netsplit: its state goes to this one,
            # then it is told to die.
            self._resolving.add((name, displaced.pid))
            self._n_conflicts += 1
            self._out.commands.append(ResolveConflict(name, displaced.pid, pid))
            self._out.events.append(ConflictResolved(name, pid, displaced.pid))
        if moved_from is not None and moved_from.node != self.node:
            self._send_flush(moved_from.node, handoff)
        if spec is not None and self.placement.owner_of_hash(claim.position) != self.node:
            # The placement changed while its process was starting (a restart raced the loss
            # of the quorum, a request reached a node that owns the name no more): move or stop
            # it now, not at the next sync. Only this name: the others were rebalanced when the
            # placement changed (a full scan per claim would make a wave of them quadratic).
            self._rebalance_one(claim)
        return claim

    def relineage(self, name: Any, pid: Pid, lineage: Lineage, base: Lineage | None) -> bool:
        """Claim ``name`` again for the local ``pid`` with a new checkpoint ``lineage`` (a
        takeover), keeping everything else of the claim; whether it held the name."""
        claim = self.claims[self.node].get(name)
        if claim is None or claim.pid != pid:
            return False
        self.clock += 1
        old, claim = claim, msgspec.structs.replace(claim, clock=self.clock, lineage=lineage, base=base)
        self.claims[self.node][name] = claim
        if self.winners.get(name) is old:
            self.winners[name] = claim
        self._pending_claims.append(claim)
        return True

    def claimed_lineages(self, name: Any, restarts: Mapping[Any, list[Lineage | None]] | None = None) -> set[Lineage]:
        """The checkpoint lineages and bases of ``name``'s claims in this replica and of
        the restarts of it still owed here: the records a sweep must keep. ``restarts``:
        ``restart_lineages()``, for many names at once."""
        lines: list[Lineage | None] = []
        for claim in self.claimants(name):
            lines += (claim.lineage, claim.base)
        if restarts is None:
            lines += [line for entry in self._restarts if entry[2] == name for line in entry[5:]]
        else:
            lines += restarts.get(name, ())
        handed = self._handed.get(name)
        if handed is not None:
            lines += handed[2:]
        return {line for line in lines if line is not None}

    def restart_lineages(self) -> dict[Any, list[Lineage | None]]:
        """The lineages and bases of the restarts owed here, by name, in one pass: a sweep
        asks ``claimed_lineages`` of every old record, and a node's death leaves thousands
        of restarts owed for ``orphan_check`` (a scan of them per record was quadratic)."""
        found: dict[Any, list[Lineage | None]] = {}
        for entry in self._restarts:
            found.setdefault(entry[2], []).extend(entry[5:])
        return found

    def local_unclaim(self, name: Any, pid: Pid, successor: Pid | None = None) -> bool:
        """Remove this node's claim of ``name`` by ``pid`` (if it still holds it).

        ``successor``: the pid a handoff moved it to; replicas that hear of the removal
        before the successor's own claim keep resolving the name to it meanwhile.
        """
        claim = self.claims[self.node].get(name)
        if claim is None or claim.pid != pid:
            return False
        self._remove_local(name, claim, successor=successor)
        self.moving.discard(name)
        self.pinned.discard(name)
        self._pick_winner(name)
        return True

    def local_join(self, group: Any, pid: Pid) -> None:
        if GroupKey(group, pid) in self.claims[self.node]:
            return
        self.clock += 1
        claim = Claim(CLAIM_GROUP, group, pid, self.clock, hash_name(group))
        self._add_local(claim)
        self._group_add(claim)

    def local_leave(self, group: Any, pid: Pid) -> bool:
        key = GroupKey(group, pid)
        claim = self.claims[self.node].get(key)
        if claim is None:
            return False
        self._remove_local(key, claim)
        self._group_remove(claim)
        return True

    def local_exit(self, pid: Pid, reason: Any, now: float) -> list[tuple[Any, bool]]:
        """A local process exited: drop its claims; restart its names by their policy.

        Returns the factory-registered names it held, each with whether its checkpoints
        are kept (a restart after a crash continues from them, or it was moving) or end
        with it (a normal exit, or no restart follows)."""
        ended: list[tuple[Any, bool]] = []
        keys = self._local_by_pid.pop(pid, None)
        if keys is None:
            return ended
        table = self.claims[self.node]
        for key in list(keys) if isinstance(keys, set) else [keys]:
            claim = table.get(key)
            if claim is None or claim.pid != pid:
                continue
            self._remove_local(key, claim, index=False)
            if claim.kind == CLAIM_GROUP:
                self._group_remove(claim)
                continue
            name = claim.key
            moving = name in self.moving
            self.moving.discard(name)
            self.pinned.discard(name)
            self._pick_winner(name)
            if claim.spec is None:
                continue
            if moving:
                ended.append((name, True))
                continue
            policy = claim.spec.restart
            abnormal = reason not in (NORMAL, SHUTDOWN)
            restarting = False
            if policy == "permanent" or (policy == "transient" and abnormal):
                # After a crash the restart continues from the checkpoints; after a normal
                # exit (a permanent process) it starts fresh, and they are deleted.
                restarting = abnormal
                if abnormal:
                    self.schedule_restart(name, claim.spec, now, claim.lineage, claim.base)
                else:
                    self.schedule_restart(name, claim.spec, now)
            ended.append((name, restarting))
        return ended

    def handoff_done(self, name: Any, old_pid: Pid, new_pid: Pid) -> None:
        """The handoff of ``name`` to ``new_pid`` completed: its claim supersedes ours."""
        self._n_handoffs_done += 1
        if new_pid.node != self.node:
            self._successors[name] = (new_pid, None)  # until the new owner's claim reaches us
            mine = self.claims[self.node].get(name)
            if mine is not None and mine.pid == old_pid and mine.spec is not None:
                # until then, too (see peer_down)
                self._handed[name] = (new_pid, mine.spec, mine.lineage, mine.base)
        self.local_unclaim(name, old_pid, successor=new_pid)

    def handoff_failed(self, name: Any, ignore: bool) -> None:
        """The handoff of ``name`` did not happen; ``ignore``: the process chose to stay."""
        self._n_handoffs_failed += 1
        self.moving.discard(name)
        if ignore:
            self.pinned.add(name)
            self.handoffs_pinned += 1
        if self._contested(name):
            self._pick_winner(name)  # a conflict found while it was moving (see _pick_winner)

    def _add_local(self, claim: Claim) -> None:
        key = claim_key(claim)
        self.claims[self.node][key] = claim
        index = self._local_by_pid
        held = index.get(claim.pid)
        if held is None or held == key:
            index[claim.pid] = key
        elif isinstance(held, set):
            held.add(key)
        else:
            index[claim.pid] = {held, key}
        self._pending_claims.append(claim)

    def _claim_ended(self, name: Any, pid: Pid) -> None:
        """``pid``'s claim of ``name`` ended (no successor): remembered in ``_ended``."""
        ended = self._ended
        ended.pop(name, None)
        ended[name] = pid
        if len(ended) > _ENDED_MAX:
            del ended[next(iter(ended))]

    def _remove_local(self, key: Hashable, claim: Claim, index: bool = True, successor: Pid | None = None) -> None:
        del self.claims[self.node][key]
        if successor is None and claim.kind == CLAIM_NAME:
            self._claim_ended(key, claim.pid)
        if index:
            held = self._local_by_pid.get(claim.pid)
            if isinstance(held, set):
                held.discard(key)
                if not held:
                    del self._local_by_pid[claim.pid]
            elif held == key:
                del self._local_by_pid[claim.pid]
        self.clock += 1
        self._pending_removals.append(Removal(claim.kind, claim.key, claim.pid, self.clock, successor))

    def schedule_restart(
        self, name: Any, spec: Spec, now: float, lineage: Lineage | None = None, base: Lineage | None = None
    ) -> float:
        """Restart ``name`` (its local process exited) after its backoff: ``restart_backoff``,
        doubled per consecutive exit up to ``restart_backoff_max``, reset by a run of
        ``restart_reset``. The owner of the name then makes or is passed the restart.
        Returns the delay, in seconds."""
        backoff = self._backoff.get(name)
        if backoff is None:
            cfg = self.config
            backoff = Backoff(cfg.restart_backoff, cfg.restart_backoff_max, reset_after=cfg.restart_reset)
            self._backoff[name] = backoff
        delay = backoff.next_delay(now)
        self._restart_seq += 1
        # A leaving node passes the restart to the name's owner soon: it cannot wait out
        # the backoff (still bounded: a failing attempt repeats at most 10 times a second).
        due = now + (min(delay, 0.1) if self.leaving else delay)
        heapq.heappush(self._restarts, (due, self._restart_seq, name, spec, "exit", lineage, base))
        return due - now

    # --- messages from peers ------------------------------------------------------------------

    def on_delta(self, host: str, msg: Delta, now: float) -> None:
        if host == self.node or host not in self.peers:
            return  # a host not up here: its claims would stay forever (see on_hello); syncs repair
        table = self.claims.setdefault(host, {})
        for claim in msg.claims:
            key = claim_key(claim)
            old = table.get(key)
            if old is not None and old.clock >= claim.clock:
                continue
            table[key] = claim = self._canonical(claim)
            self._apply(claim, old, now)
        for removal in msg.removals:
            key = claim_key(removal)
            old = table.get(key)
            if old is None or old.pid != removal.pid or old.clock > removal.clock:
                continue
            del table[key]
            if old.kind == CLAIM_NAME:
                successor, gone_to = removal.successor, None
                if successor is None:
                    self._claim_ended(old.key, old.pid)
                elif self._ended.get(old.key) == successor:
                    # Handed to a copy whose claim came and went before this removal (it
                    # exited soon after it arrived): its exit restarted the name or ended
                    # it, by its policy. A pointer to it left the name on a dead pid, and
                    # on its own node the restart was skipped as registered, for good.
                    successor = None
                if successor is not None:
                    if self._gone(successor):
                        gone_to = successor.node
                    else:
                        self._successors[old.key] = (successor, old)
                self._pick_winner(old.key)
                if gone_to is not None and old.spec is not None and old.key not in self.winners:
                    # Handed to a node gone here already (the removal came late: a cut, a slow
                    # link): its claim never comes, and the peer_down that forgets a successor
                    # is past. Kept, the name resolved to a dead pid for good, and as its owner
                    # this node answered the restart the old host asked of it "registered
                    # already" (the fault campaign's lost names, seed 4229829435). It is an
                    # orphan, as if this node had held the dead node's claim.
                    self._restart_orphan(old.key, old.spec, old.position, now, gone_to, old.lineage, old.base)
            else:
                self._group_remove(old)

    def _gone(self, pid: Pid) -> bool:
        """Whether ``pid``'s node incarnation is gone in this node's view: it went down here
        (and is not up again), or a later incarnation of its node is up. A node not seen
        yet (a joiner this node has not linked to) is not gone: its claim is on its way."""
        if pid.node == self.node:
            return False
        peer = self.peers.get(pid.node)
        if peer is not None:
            return peer.incarnation > pid.incarnation
        return self._down.get(pid.node, 0) >= pid.incarnation > 0

    def _canonical(self, claim: Claim) -> Claim:
        """``claim`` as the replica keeps it: an argument-less spec shared with every entry of
        the same spec, and pids sharing their node's name and incarnation objects (a decoded
        claim brings copies of its own, several hundred bytes per entry on every node)."""
        spec = claim.spec
        if spec is not None and not spec.args and not spec.kwargs:
            shared = self._specs.get((spec.factory, spec.restart, spec.handoff_timeout, spec.replicas))
            spec = self._shared_spec(spec) if shared is None else shared
        pid = claim.pid
        sample = self._sample_pids.get(pid.node)
        if sample is not None and sample.incarnation == pid.incarnation and sample.node is not pid.node:
            pid = Pid(sample.node, sample.incarnation, pid.id)
        else:
            pid = self._shared_pid(pid)
        moved = claim.moved_from
        if moved is not None:
            moved = self._shared_pid(moved)
        if spec is claim.spec and pid is claim.pid and moved is claim.moved_from:
            return claim
        return msgspec.structs.replace(claim, pid=pid, spec=spec, moved_from=moved)

    def _shared_pid(self, pid: Pid) -> Pid:
        """``pid``, rebuilt on the node-name and incarnation objects of a pid seen before from
        the same node incarnation (one kept per peer)."""
        sample = self._sample_pids.get(pid.node)
        if sample is None or sample.incarnation != pid.incarnation:
            if pid.node in self.peers:
                self._sample_pids[pid.node] = pid
            return pid
        if sample.node is pid.node:
            return pid
        return Pid(sample.node, sample.incarnation, pid.id)

    def _shared_spec(self, spec: Spec) -> Spec:
        """The one Spec object kept for this argument-less spec (``spec`` the first time)."""
        key = (spec.factory, spec.restart, spec.handoff_timeout, spec.replicas)
        shared = self._specs.get(key)
        if shared is None:
            if len(self._specs) < _SHARED_SPECS_MAX:
                self._specs[key] = spec
            return spec
        return shared

    def _apply(self, claim: Claim, old: Claim | None, now: float, fresh: bool = True) -> None:
        """``claim`` (replacing ``old``) is in its host's table now: settle its name or
        group. ``fresh``: it came as a change (a Delta), not with a repaired bucket of a
        sync, whose claims may have moved long ago."""
        if claim.kind == CLAIM_NAME:
            current = self.winners.get(claim.key)
            if current is None or (current is old and claim.key not in self._contested_names):
                # No claimant before this one (a name has a winner whenever it has a claim),
                # or only the claim this one replaced: it is the only claimant, no search.
                # (``_resolve``, inlined: the path of every registration on every replica.)
                self._win_alone(claim.key, claim)
            else:
                self._pick_winner(claim.key)
            moved = claim.moved_from
            if moved is not None and moved.node != claim.pid.node and moved.node != self.node:
                if moved.node in self.peers:
                    self._send_flush(moved.node, claim.handoff)
                else:
                    # Only to an old host up here: one that is not (it left or died) relays
                    # nothing, and the new host's gate does not wait for it once it is gone
                    # there (see Gate). A claim keeps its moved_from for life, so sent at
                    # once, a node that joins later (a CLI's client node, too) dialed every
                    # gone host a name ever moved from. It goes when that host comes up
                    # here: the new host may hold this node's messages for it (a node that
                    # reached the new host before the old one, after a cut: rule 4 of the
                    # handoff), until its handoff_timeout otherwise. Meanwhile the new
                    # host is told that no route is left (RouteClosed), if none is.
                    self._defer_flush(moved, claim.handoff, now, claim.pid.node if fresh else None)
        else:
            if old is not None:
                self._group_remove(old)
            self._group_add(claim)

    def _defer_flush(self, old_pid: Pid, hid: int, now: float, new_host: str | None) -> None:
        """Send this node's marker for handoff ``hid`` once ``old_pid``'s host is up here;
        and tell ``new_host`` (None: nobody) at once that no route is left to it."""
        if (old_pid.node, hid) in self._flushed:
            return
        due = self._flush_due.get(old_pid.node)
        if new_host is not None and new_host != self.node and (due is None or hid not in due):
            # The old host is down here: unless something this node sent it is still on its
            # way (the shell checks), nothing will reach the new copy along the old route,
            # and the new host need not hold this node's messages until that host comes
            # back here (a heal seen here later than there) or its handoff_timeout. Once
            # per move.
            self._out.commands.append(RouteClosedNotice(new_host, old_pid.node, hid))
        if sum(map(len, self._flush_due.values())) >= 10_000:  # one table per old host: a few
            # Bounded (every name may have moved from a host gone for good, and a joining node
            # syncs them all): a marker is of use only while the old pid forwards (forward_ttl
            # after the move), so the older ones go first; if that is not enough, all go (a
            # marker not sent only keeps a gate closed until its timeout).
            since = now - self.config.forward_ttl
            kept = {host: {h: v for h, v in due.items() if v[1] > since} for host, due in self._flush_due.items()}
            self._flush_due = {host: due for host, due in kept.items() if due}
            if sum(map(len, self._flush_due.values())) >= 10_000:
                self._flush_due.clear()
        self._flush_due.setdefault(old_pid.node, {}).setdefault(hid, (old_pid.incarnation, now))

    def on_flush_ask(self, node: str, msg: FlushAsk, now: float) -> None:
        """``node``, the new host of a handoff, let this node's messages through without its
        marker (it suspected this node, or it went down there) and now holds them again (9L):
        send the marker again, everything this node sent to the old pid goes before it. To
        the old host once it is up here, if it is not now (as for a claim seen then).

        Only once this node holds the asker's claim that the move made: until then it may
        send to the old pid by name, and a marker sent now could open the gate for what it
        sends to the new pid later, ahead of that. It goes when the claim comes (7), as any
        node's does, even if one went for an earlier sight of it (its sync after a heal
        may come after the ask)."""
        old = msg.old_pid
        if old.node in (self.node, node):
            return
        self._flushed.discard((old.node, msg.hid))  # sent once: again when asked
        try:
            claim = self.claims.get(node, {}).get(msg.name)
        except TypeError:  # an unhashable name: no claim has it
            return
        if claim is None or claim.kind != CLAIM_NAME or claim.moved_from != old or claim.handoff != msg.hid:
            return
        peer = self.peers.get(old.node)
        if peer is None:
            self._defer_flush(old, msg.hid, now, None)
            # Asked: told again, even if told once (that notice may have found no link).
            self._out.commands.append(RouteClosedNotice(node, old.node, msg.hid))
        elif peer.incarnation == old.incarnation:
            self._send_flush(old.node, msg.hid)
        # else: another life of the old host is up, which forwards nothing of that one

    def _send_flush(self, old_host: str, hid: int) -> None:
        if (old_host, hid) in self._flushed:
            return
        self._flushed.add((old_host, hid))
        if len(self._flushed) > 100_000:
            self._flushed.clear()  # bounded: a duplicate marker is harmless
        self._out.send.append((old_host, FlushMarker(hid)))

    def on_digest(self, host: str, msg: Digest, now: float) -> None:
        if len(msg.buckets) != BUCKETS:
            return
        peer = self.peers.get(host)
        if peer is not None:
            peer.awaiting_digest = False
        mine = self.digest(host)
        differ = [b for b in range(BUCKETS) if mine[b] != msg.buckets[b]]
        if differ:
            self._out.send.append((host, SyncRequest(differ)))
        if peer is not None and not peer.synced:
            # What differs now is what is missing: a bucket that differed in an earlier
            # digest may have caught up through Deltas since, and no SyncReply would ever
            # clear it (the peer stayed unplaced until it did).
            peer.unsynced = set(differ)
            self._check_synced(peer, now)

    def on_sync_request(self, node: str, msg: SyncRequest, now: float) -> None:
        wanted = {b for b in msg.buckets if 0 <= b < BUCKETS}
        claims = [wire_claim(c) for c in self.claims[self.node].values() if c.position % BUCKETS in wanted]
        self._out.send.append((node, SyncReply(sorted(wanted), claims)))

    def on_sync_reply(self, host: str, msg: SyncReply, now: float) -> None:
        if host == self.node or host not in self.peers:
            return  # not up here (see on_delta)
        buckets = set(msg.buckets)
        self._n_repaired += len(buckets)
        table = self.claims.setdefault(host, {})
        incoming = {claim_key(c): c for c in msg.claims if c.position % BUCKETS in buckets}
        for key, held in [(k, c) for k, c in table.items() if c.position % BUCKETS in buckets]:
            new = incoming.get(key)
            if new is None or new.pid != held.pid or new.clock != held.clock:
                del table[key]
                if held.kind == CLAIM_NAME:
                    self._pick_winner(held.key)
                else:
                    self._group_remove(held)
        for key, claim in incoming.items():
            previous = table.get(key)
            if previous is not None and previous.clock == claim.clock and previous.pid == claim.pid:
                continue
            table[key] = claim = self._canonical(claim)
            self._apply(claim, previous, now, fresh=False)
        peer = self.peers[host]
        if not peer.synced:  # after its claims are in: placing it may move names to it
            peer.unsynced -= buckets
            self._check_synced(peer, now)

    # --- time ------------------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        while self._restarts and self._restarts[0][0] <= now:
            _, _, name, spec, reason, lineage, base = heapq.heappop(self._restarts)
            if name in self.pids:
                continue
            owner = self.placement.owner(name)
            if owner is None:
                continue
            self._n_restarts += 1
            if owner == self.node:
                self._out.commands.append(StartName(name, spec, reason, "", lineage, base))
            else:
                self._out.commands.append(RestartElsewhere(name, spec, owner, lineage, base))
        if now >= self._next_sync:
            self._next_sync = now + self.config.sync_interval
            self._prune_backoffs(now)
            self.rebalance()  # retries handoffs that failed or were refused
            digest = Digest(self.digest(self.node))
            # The hello goes again too: a peer that saw this node go down and come back (a
            # one-sided suspicion) dropped it, and waits for it to place names here again.
            hello = RegistryHello(self.role, self.leaving)
            for peer in self.peers:
                self._out.send.append((peer, hello))
                self._out.send.append((peer, digest))
                self._n_syncs += 1

    def _prune_backoffs(self, now: float) -> None:
        """Forget the backoffs that would start again at ``restart_backoff`` anyway: the last
        restart of their name started ``restart_reset`` ago or more (it ran that long, or the
        name went: handed off, unregistered, restarted elsewhere). The table holds the names
        that exited lately, not every name that ever did; nothing else changes."""
        for name in [n for n, b in self._backoff.items() if b.expired(now)]:
            del self._backoff[name]

    # --- resolution -------------------------------------------------------------------------------

    def claimants(self, name: Any) -> list[Claim]:
        """Every claim of ``name`` in this replica, one per host that claims it (more than
        one: a conflict not settled yet)."""
        return [c for table in self.claims.values() if (c := table.get(name)) is not None]

    def _contested(self, name: Any) -> bool:
        return sum(1 for table in self.claims.values() if name in table) > 1

    def _pick_winner(self, name: Any) -> None:
        """Pick ``name``'s winner among its claimants."""
        cands = self.claimants(name)
        if len(cands) == 1:
            self._win_alone(name, cands[0])
            return
        winner: Claim | None
        if not cands:
            self._contested_names.discard(name)
            moving = self._successors.get(name)
            if moving is not None:
                # Handed off: its new claim is on its way from the new owner. Resolve to the
                # successor meanwhile, so the name never disappears while it moves.
                successor = moving[0]
                self.winners.pop(name, None)
                if self.pids.get(name) != successor:
                    self.pids[name] = successor
                    self._out.events.append(NameRegistered(name, successor))
                return
            winner = None
        else:  # several: a conflict
            self._contested_names.add(name)
            self._successors.pop(name, None)
            self._handed.pop(name, None)
            # A handoff's claim supersedes the pid it moved, and every pid that one had moved
            # through (a node that slept through a move in between may still hold one).
            superseded = {c.moved_from for c in cands if c.moved_from is not None}
            superseded.update(a for c in cands for a in c.ancestors)
            live = [c for c in cands if c.pid not in superseded] or cands
            if len(live) > 1:
                live = _later_lines(live)
            if len(live) == 1:
                winner = live[0]
            else:
                # The ring over the claimants' own hosts decides, not this node's placement of
                # the moment: two nodes whose views differ briefly (one has seen a node join, the
                # other not yet) then still pick the same winner, instead of each yielding to the
                # other's copy and losing the name. When the placement's owner hosts a copy, it
                # is the owner among the claimants too, so that copy wins, as before.
                # A copy that a handoff moved stands for its superseded pids too: the ring is
                # over the hosts of those as well, and an owner that hosted one of them names
                # the copy it became. A node that has not seen the handoff's claim yet still
                # counts the old pid as a claimant of its own; both then pick the same copy
                # (the owner of a set of hosts owns any subset it is in), instead of each
                # retiring its copy to the other's and losing the name (the chaos test found
                # this: a woken node yielded to the old pid, the new host to the woken copy).
                # An old host that two copies' lines left (it handed the name off twice: the
                # first new owner read the request only after its verdict on the old host; and
                # the rule of the later handoff, above, could not decide: a line that moved
                # through a node older than version 6, or two pids of that host)
                # stands for the line whose pid that took over from it is the smaller: that pid
                # stays the same however far its line moves on, where a copy's own pid does not
                # (two views of one conflict, before and after a further move, each yielded to
                # the other's copy and the name was lost: the campaign's seed 5900000001).
                stands_for = {c.pid.node: c for c in live}
                heirs: dict[str, tuple[tuple[str, int], Claim]] = {}
                for c in live:
                    line = (c.pid, c.moved_from, *c.ancestors)
                    for heir, old in itertools.pairwise(line):
                        if heir is None or old is None:
                            break
                        if old.node in stands_for:
                            continue
                        key = (heir.node, heir.id)
                        best = heirs.get(old.node)
                        if best is None or key < best[0]:
                            heirs[old.node] = (key, c)
                for host, (_, c) in heirs.items():
                    stands_for[host] = c
                owner = self._claimant_placement_of(tuple(sorted(stands_for))).owner_of_hash(live[0].position)
                chosen = stands_for.get(owner) if owner is not None else None
                winner = chosen if chosen is not None else min(live, key=lambda c: (c.pid.node, c.pid.id))
            # Every local copy that lost retires: a netsplit's loser, and a copy whose claim
            # a handoff superseded while this node thought the handoff had failed (it was
            # paused, the new owner saw it fail and kept the process it had been handed).
            # Left running, a superseded copy would answer whoever still routes to it.
            for loser in cands:
                if loser is winner or loser.pid.node != self.node:
                    continue
                if name in self.moving:
                    # Being handed off: the move carries its state on, and whatever copy
                    # it becomes is resolved in turn. Resolving it here too would hand
                    # the winner this copy's state twice. A failed move re-resolves it.
                    continue
                if (name, loser.pid) not in self._resolving:
                    self._resolving.add((name, loser.pid))
                    self._n_conflicts += 1
                    self._out.commands.append(ResolveConflict(name, loser.pid, winner.pid))
                    self._out.events.append(ConflictResolved(name, winner.pid, loser.pid))
        if winner is None:
            self.winners.pop(name, None)
            gone = self.pids.pop(name, None)
            if gone is not None:
                self._out.events.append(NameUnregistered(name, gone))
            return
        self.winners[name] = winner
        if self.pids.get(name) != winner.pid:
            self.pids[name] = winner.pid
            self._out.events.append(NameRegistered(name, winner.pid))

    def _resolve(self, claim: Claim, old: Claim | None) -> None:
        """Pick the winner of ``claim``'s name, ``claim`` having just replaced ``old`` (None:
        none) in its host's table (``_apply`` inlines it)."""
        current = self.winners.get(claim.key)
        if current is None or (current is old and claim.key not in self._contested_names):
            self._win_alone(claim.key, claim)  # the only claimant: no search
        else:
            self._pick_winner(claim.key)

    def _win_alone(self, name: Any, winner: Claim) -> None:
        """``_pick_winner`` when ``winner`` is ``name``'s only claimant: the path of every
        registration on every replica, kept apart so that it does only what that case needs."""
        contested = self._contested_names
        was_contested = name in contested
        if was_contested:
            contested.discard(name)
        if self._successors:
            self._successors.pop(name, None)
        if self._handed:
            self._handed.pop(name, None)
        self.winners[name] = winner
        pid = winner.pid
        if self.pids.get(name) != pid:
            self.pids[name] = pid
            self._out.events.append(NameRegistered(name, pid))
        if was_contested and pid.node == self.node:
            self._rebalance_one(winner)  # its move waited for the conflict (see _rebalance_one)

    def _claimant_placement_of(self, hosts: tuple[str, ...]) -> Placement:
        placement = self._claimant_placements.get(hosts)
        if placement is None:
            if len(self._claimant_placements) >= 64:
                self._claimant_placements.clear()  # bounded: a few host sets at a time
            placement = self._claimant_placements[hosts] = self.strategy.place(hosts)
        return placement

    def conflict_failed(self, name: Any, loser: Pid) -> None:
        """The winner did not confirm it took ``loser``'s state: settle the conflict again
        (the loser, resumed meanwhile, is asked for its state anew if it still loses)."""
        self._resolving.discard((name, loser))
        self._pick_winner(name)

    def conflict_done(self, name: Any, loser: Pid) -> None:
        self._resolving.discard((name, loser))
        self.local_unclaim(name, loser)

    # --- groups ---------------------------------------------------------------------------------

    def _group_add(self, claim: Claim) -> None:
        members = self.groups.setdefault(claim.key, {})
        if claim.pid not in members:
            self._out.events.append(GroupJoined(claim.key, claim.pid))
        members[claim.pid] = claim

    def _group_remove(self, claim: Claim) -> None:
        members = self.groups.get(claim.key)
        if members is None or members.get(claim.pid) is not claim:
            return
        del members[claim.pid]
        if not members:
            del self.groups[claim.key]
        self._out.events.append(GroupLeft(claim.key, claim.pid))

    # --- digests ----------------------------------------------------------------------------------

    def digest(self, host: str) -> list[int]:
        """The ``BUCKETS`` hashes of ``host``'s claims in this replica (what its ``Digest``
        would say when this replica holds exactly its table): equal tables, equal digests."""
        buckets = [0] * BUCKETS
        for claim in self.claims.get(host, {}).values():
            buckets[claim.position % BUCKETS] ^= _mix(claim)
        return buckets
