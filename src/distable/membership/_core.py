"""The membership core: who is in the cluster, and who has failed. Sans-I/O.

Words:
    * *refutation* (the refutation number): SWIM's "incarnation number", renamed
      because in distable "incarnation" is a node's restart stamp. It starts at 0 with
      each incarnation, and only the node itself raises it: each time it refutes a
      suspicion or a death verdict of itself, to above the number that verdict carried.
      Rumors about one incarnation are ordered by it.

Rules:
    * No I/O, no clock, no global randomness: every input carries ``now``, randomness
      comes from an injected ``random.Random``, and outputs are collected in a
      ``MembershipOutput`` that the shell (or the simulator) carries out.
    * A member is identified by its name *and* its incarnation (the stamp a node takes
      when it starts, as in its pids). A newer incarnation of a name replaces the older
      one (``NodeDown(old, "restarted")`` then ``NodeUp(new)``); a rumor about an older
      incarnation is ignored. Nothing is ever mixed across incarnations.
    * Within one incarnation, rumors are ordered by their refutation number (see
      ``_supersedes``); only the member itself raises its own, to refute a suspicion
      or a false death.
    * A member is *up* (listed by ``up_members``, announced with ``NodeUp``) while it is
      alive or suspected and this node holds a link to it; it goes *down*
      (``NodeDown``) only when it fails (suspicion timed out), leaves, or is replaced by
      a newer incarnation. A link that drops and returns inside the suspicion timeout
      therefore produces no event at all: a flapping link cannot cause an event storm.

Theory of operation (SWIM, Das et al. 2002, with Lifeguard-style refutation):
    Every ``protocol_period`` the node probes one member, in a shuffled round-robin
    order, with a ``Ping`` over its link. No ``Ack`` within ``probe_timeout`` (or no
    link at all) sends ``PingReq`` to ``indirect_probes`` other members, who probe on
    its behalf. No ack by the end of the period marks the member *suspect*, and so does
    the loss of its TCP link. A suspect that does not refute within the suspicion
    timeout is declared *dead*. Status changes are rumors: each is piggybacked on
    probes and acks ``retransmits(n)`` times, so news reaches all n members in
    O(log n) periods; a full-state ``MemberSync`` (push-pull) on every new link and
    every ``push_pull_interval`` repairs whatever piggybacking missed. A member learned
    from a rumor, a multicast heartbeat, a static list or DNS is dialed (``connect``).

Invariants:
    * ``members`` never holds this node itself.
    * For each name, at most one incarnation is tracked; ``announced`` is True exactly
      when a ``NodeUp`` was emitted for that incarnation and no ``NodeDown`` since.
    * A dead member stays as a tombstone for ``reclaim_after`` seconds, a departed one
      for ``forget_left_after``, so stale rumors cannot resurrect it; only its own
      refutation (a higher refutation number; never after leaving) or a newer
      incarnation can. Then it is forgotten: its entry goes, its link is given up
      (``disconnect``), and for as long again a *forgotten* record (name, incarnation,
      refutation, status) is kept, which appears nowhere else and only filters rumors:
      stale news about that incarnation makes no entry (news that a dead one is alive
      makes this node send it its verdict, once: a refutation follows if it runs), a
      refutation or a newer incarnation is taken as usual.
    * A rumor that a member this node does not hold is dead or has left creates no
      entry (SWIM has nothing to bury): it leaves a forgotten record at most. Otherwise
      two nodes that forget a member at slightly different times would hand its
      tombstone back and forth in push-pulls, forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import msgspec

from ..wire._messages import (
    MEMBER_ALIVE,
    MEMBER_DEAD,
    MEMBER_LEFT,
    MEMBER_SUSPECT,
    Ack,
    MemberSync,
    Ping,
    PingReq,
    Rumor,
)
from ._config import MembershipConfig
from ._events import NodeDown, NodeUp

if TYPE_CHECKING:
    import random

ALIVE = MEMBER_ALIVE
SUSPECT = MEMBER_SUSPECT
DEAD = MEMBER_DEAD
LEFT = MEMBER_LEFT
STATUS_NAMES = {ALIVE: "alive", SUSPECT: "suspect", DEAD: "dead", LEFT: "left"}

_NEVER = float("inf")


@dataclass(slots=True)
class Member:
    """This node's view of one other node."""

    name: str
    incarnation: int
    refutation: int
    status: int
    since: float
    link: bool = False
    announced: bool = False
    suspect_deadline: float = _NEVER
    was_linked: bool = False  # a link to this incarnation came up (since it was last failed by refusal)
    refusals: int = 0  # dials refused in a row since its link dropped
    client: bool = False  # a role="client" node: linked with, never gossiped, probed or buried

    def rumor(self) -> Rumor:
        return Rumor(self.name, self.incarnation, self.refutation, self.status)


@dataclass(slots=True)
class MembershipOutput:
    """What the shell must do after an input: send, dial, hang up, publish."""

    send: list[tuple[str, Any]] = field(default_factory=list)
    connect: list[str] = field(default_factory=list)
    disconnect: list[str] = field(default_factory=list)
    events: list[NodeUp | NodeDown] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.send or self.connect or self.disconnect or self.events)


@dataclass(frozen=True, slots=True)
class _Forgotten:
    """What is left of a member once its tombstone is gone: enough to spot stale news."""

    incarnation: int
    refutation: int
    status: int  # DEAD or LEFT
    until: float
    told: bool = False  # a dead one was sent its verdict (see _news_of_unknown)


@dataclass(slots=True)
class _Probe:
    target: str
    seq: int
    indirect_at: float
    fail_at: float
    indirect_sent: bool = False


class MemberInfo(msgspec.Struct, frozen=True, rename={"incarnation": "creation", "refutation": "incarnation"}):
    """A snapshot row of the member table.

    Another node receives it as plain data (``Node.statistics_of``), keyed by field
    name: ``rename`` keeps the names that earlier versions send and expect.
    """

    name: str
    incarnation: int
    refutation: int
    status: str
    link: bool
    up: bool
    role: str = "server"


@dataclass(frozen=True, slots=True)
class MembershipStatistics:
    members: tuple[MemberInfo, ...]
    probes: int
    probe_failures: int
    suspicions: int
    refutations: int
    failures: int
    rumors_sent: int
    refused: int = 0  # members this node failed at once: their address refused its redials

    def peers(self) -> int:
        """The other server nodes up in this node's view: "peers" in ``distable status``
        and the dashboard alike (client nodes, such as the query itself, do not count)."""
        return sum(1 for m in self.members if m.up and m.role == "server")


def _supersedes(new: Rumor, status: int, refutation: int) -> bool:
    """Does ``new`` replace what is known (``status`` at ``refutation``, same incarnation)?"""
    if status == LEFT:
        return False
    if new.status == LEFT:
        return True
    if new.status == ALIVE:
        return new.refutation > refutation
    if new.status == SUSPECT:
        return new.refutation >= refutation if status == ALIVE else new.refutation > refutation
    # DEAD
    return new.refutation >= refutation if status in (ALIVE, SUSPECT) else new.refutation > refutation


class MembershipCore:
    """One node's membership state machine. Single owner; not thread-safe."""

    def __init__(
        self,
        name: str,
        incarnation: int,
        config: MembershipConfig,
        rng: random.Random,
        now: float,
        *,
        allow: tuple[str, ...] = (),
        deny: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.incarnation = incarnation
        self.refutation = 0
        self.config = config
        self._rng = rng
        self.allow = allow
        self.deny = deny
        self.members: dict[str, Member] = {}
        self.forgotten: dict[str, _Forgotten] = {}  # see the module's invariants
        self.left = False
        self._rumors: dict[str, list[Any]] = {}  # name -> [Rumor, transmissions left]
        self._order: list[str] = []
        self._order_pos = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, tuple[str, int, float]] = {}  # our seq -> (requester, its seq, expiry)
        self._seq = 0
        self._next_probe = now
        self._next_push_pull = now + config.push_pull_interval
        self._out = MembershipOutput()
        self._probes = self._probe_failures = self._suspicions = 0
        self._refutations = self._failures = self._rumors_sent = 0
        self._refused = 0
        self._queue_rumor(self._self_rumor())

    # --- queries ---------------------------------------------------------------------

    def allowed(self, name: str) -> bool:
        """Allow/deny patterns (shell globs on node names): deny wins; empty allow allows all."""
        if name == self.name:
            return False
        if any(fnmatchcase(name, p) for p in self.deny):
            return False
        return not self.allow or any(fnmatchcase(name, p) for p in self.allow)

    def up_members(self) -> list[str]:
        """The members up in this node's view (client nodes are not members)."""
        return sorted(m.name for m in self.members.values() if m.announced and not m.client)

    def member(self, name: str) -> Member | None:
        return self.members.get(name)

    def take(self) -> MembershipOutput:
        """Everything the shell must do since the last call."""
        out, self._out = self._out, MembershipOutput()
        return out

    def next_deadline(self) -> float:
        deadline = self._next_probe
        probe = self._probe
        if probe is not None:
            deadline = min(deadline, probe.fail_at if probe.indirect_sent else probe.indirect_at)
        deadline = min(deadline, self._next_push_pull)
        for m in self.members.values():
            if m.status == SUSPECT:
                deadline = min(deadline, m.suspect_deadline)
            elif m.status in (DEAD, LEFT):
                deadline = min(deadline, self._forget_at(m))
        for _, _, expiry in self._relays.values():
            deadline = min(deadline, expiry)
        return deadline

    def statistics(self) -> MembershipStatistics:
        return MembershipStatistics(
            members=tuple(
                MemberInfo(
                    m.name,
                    m.incarnation,
                    m.refutation,
                    STATUS_NAMES[m.status],
                    m.link,
                    m.announced,
                    "client" if m.client else "server",
                )
                for m in sorted(self.members.values(), key=lambda m: m.name)
            ),
            probes=self._probes,
            probe_failures=self._probe_failures,
            suspicions=self._suspicions,
            refutations=self._refutations,
            failures=self._failures,
            rumors_sent=self._rumors_sent,
            refused=self._refused,
        )

    # --- inputs: discovery and links --------------------------------------------------------

    def discovered(self, name: str, now: float, incarnation: int = 0) -> None:
        """A discovery strategy saw ``name`` (``incarnation`` if the source tells it): dial it."""
        if self.left or not self.allowed(name):
            return
        m = self.members.get(name)
        if m is None:
            if incarnation and self._left_for_good(name, incarnation, now):
                return  # a late heartbeat
        else:
            if m.status == DEAD and incarnation and incarnation == m.incarnation:
                # A heartbeat from the very incarnation we hold as failed: it still runs (a
                # partition healed, a stall ended). A link we still hold to it is stale (it
                # carried no refutation; across a partition TCP may be backing off for
                # seconds): drop it, and the next heartbeat dials afresh; the new link's
                # push-pull tells the node the verdict, and its refutation revives it.
                if m.link:
                    self._out.disconnect.append(name)
                else:
                    self._out.connect.append(name)
                return
            if m.link or (incarnation and incarnation < m.incarnation):
                return
            if m.status in (DEAD, LEFT) and incarnation <= m.incarnation:
                return  # a tombstone; only the node's own refutation or a restart revives it
        self._out.connect.append(name)

    def link_up(self, name: str, incarnation: int, now: float, client: bool = False) -> None:
        """The transport authenticated a link to ``name`` (incarnation ``incarnation``); ``client``:
        it said it is a ``role="client"`` node (a tool), tracked only while linked."""
        if self.left:
            return
        if not self.allowed(name):
            self._out.disconnect.append(name)
            return
        m = self.members.get(name)
        if m is None:
            if self._left_for_good(name, incarnation, now):
                self._out.disconnect.append(name)  # a late link
                return
            gone = self.forgotten.pop(name, None)
            if gone is not None and gone.told and incarnation == gone.incarnation:
                # Back from the dead after this node sent it its verdict (a one-off
                # message, see _news_of_unknown): want the link, as its tombstone did.
                self._out.connect.append(name)
        if m is None or incarnation > m.incarnation:
            if m is not None:
                self._down(m, "restarted")
            m = self.members[name] = Member(name, incarnation, 0, ALIVE, now, client=client)
            self._queue_rumor(m.rumor())
        elif incarnation < m.incarnation:
            return
        m.client = client
        m.link = m.was_linked = True
        m.refusals = 0
        self._maybe_announce(m)
        # Push-pull on every new link: the newcomer learns the whole table at once.
        self._out.send.append((name, MemberSync(self._table(), True)))

    def link_down(self, name: str, now: float) -> None:
        """The link to ``name`` is gone: suspect it (unless it already failed or left)."""
        m = self.members.get(name)
        if m is None:
            return
        if m.client:
            self._drop_client(m, "left")
            return
        m.link = False
        if m.status == ALIVE:
            self._suspect(m, now)
        if m.status in (ALIVE, SUSPECT) and not self.left and self.allowed(name):
            # Redial it (the transport backs off): a live member's link comes back, and a
            # dead process's address refuses (see dial_refused). Not one denied since it
            # joined (``deny`` changed): its link came up and was dropped at once, and the
            # transport's back-off, reset by every handshake that completes, never grew: the
            # two nodes redialed each other thousands of times a second.
            self._out.connect.append(name)

    def dial_refused(self, name: str, now: float) -> bool:
        """A dial to ``name`` was refused (ECONNREFUSED): its host answered, and nothing
        listens at its address.

        After ``refusals_to_fail`` refusals in a row, once a link to this incarnation had
        been up and dropped, the member is failed at once, without waiting for its
        suspicion to time out: its process is gone (a paused or cut-off one is never
        refused, it goes through suspicion). The verdict is sent straight to every linked
        member, besides being gossiped, so the whole cluster agrees within a round trip.
        A refusal from a member never linked (an address unreachable from here only)
        proves nothing: it is left to the failure detector. Returns whether it failed.
        """
        if self.left:
            return False
        m = self.members.get(name)
        if m is None or m.link or not m.was_linked or m.status not in (ALIVE, SUSPECT):
            return False
        m.refusals += 1
        limit = self.config.refusals_to_fail
        if limit <= 0 or m.refusals < limit:
            self._out.connect.append(name)  # dial again (the transport does, backing off)
            return False
        m.was_linked = False
        m.refusals = 0
        self._refused += 1
        self._fail(m, now)
        verdict = MemberSync([m.rumor()], False)
        for other in self.members.values():
            if other.link and other.status in (ALIVE, SUSPECT) and not other.client:
                self._out.send.append((other.name, verdict))
        return True

    # --- inputs: messages -------------------------------------------------------------------

    def receive(self, sender: str, msg: Any, now: float) -> None:
        """A membership message arrived from ``sender`` over its link."""
        if self.left:
            return
        if isinstance(msg, Ping):
            self._apply_all(msg.rumors, now)
            self._out.send.append((sender, Ack(msg.seq, self._piggyback())))
        elif isinstance(msg, Ack):
            self._apply_all(msg.rumors, now)
            probe = self._probe
            if probe is not None and probe.seq == msg.seq:
                self._probe = None
            relay = self._relays.pop(msg.seq, None)
            if relay is not None:
                requester, their_seq, _ = relay
                self._out.send.append((requester, Ack(their_seq, [])))
        elif isinstance(msg, PingReq):
            self._apply_all(msg.rumors, now)
            target = self.members.get(msg.target)
            if target is not None and target.link and target.status in (ALIVE, SUSPECT):
                self._seq += 1
                self._relays[self._seq] = (sender, msg.seq, now + self.config.protocol_period)
                self._out.send.append((msg.target, Ping(self._seq, self._piggyback())))
        elif isinstance(msg, MemberSync):
            self._apply_all(msg.rumors, now)
            if msg.reply:
                self._out.send.append((sender, MemberSync(self._table(), False)))

    # --- inputs: time and leaving ------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Run everything due at ``now``: probes, suspicion timeouts, push-pull, reclaim."""
        if self.left:
            return
        cfg = self.config
        probe = self._probe
        if probe is not None:
            if not probe.indirect_sent and now >= probe.indirect_at:
                self._send_indirect(probe)
            if probe.indirect_sent and now >= probe.fail_at:
                self._probe = None
                self._probe_failures += 1
                m = self.members.get(probe.target)
                if m is not None and m.status == ALIVE:
                    self._suspect(m, now)
        if now >= self._next_probe:
            self._next_probe = now + cfg.protocol_period
            if self._probe is None:
                self._start_probe(now)
        for m in list(self.members.values()):
            if m.status == SUSPECT and now >= m.suspect_deadline:
                self._fail(m, now)
            elif m.status in (DEAD, LEFT) and now >= self._forget_at(m):
                self._forget(m, now)
        for name, gone in list(self.forgotten.items()):
            if now >= gone.until:
                del self.forgotten[name]
        for seq, (_, _, expiry) in list(self._relays.items()):
            if now >= expiry:
                del self._relays[seq]
        if now >= self._next_push_pull:
            self._next_push_pull = now + cfg.push_pull_interval
            linked = [m.name for m in self.members.values() if m.link and m.status in (ALIVE, SUSPECT) and not m.client]
            if linked:
                self._out.send.append((self._rng.choice(linked), MemberSync(self._table(), True)))

    def leave(self, now: float) -> None:
        """Graceful leave: tell every linked member directly, then stop taking part."""
        if self.left:
            return
        rumor = Rumor(self.name, self.incarnation, self.refutation, LEFT)
        for m in self.members.values():
            if m.link:
                self._out.send.append((m.name, MemberSync([rumor], False)))
        self.left = True

    # --- internals ---------------------------------------------------------------------------

    def _self_rumor(self) -> Rumor:
        return Rumor(self.name, self.incarnation, self.refutation, ALIVE)

    def _table(self) -> list[Rumor]:
        return [self._self_rumor(), *(m.rumor() for m in self.members.values() if not m.client)]

    def _start_probe(self, now: float) -> None:
        target = self._next_target()
        if target is None:
            return
        cfg = self.config
        self._seq += 1
        self._probes += 1
        probe = self._probe = _Probe(target.name, self._seq, now + cfg.probe_timeout, now + cfg.protocol_period)
        if target.link:
            self._out.send.append((target.name, Ping(self._seq, self._piggyback())))
        else:
            self._send_indirect(probe)

    def _next_target(self) -> Member | None:
        for _ in range(2):
            while self._order_pos < len(self._order):
                name = self._order[self._order_pos]
                self._order_pos += 1
                m = self.members.get(name)
                if m is not None and m.status in (ALIVE, SUSPECT) and not m.client:
                    return m
            self._order = [n for n, m in self.members.items() if m.status in (ALIVE, SUSPECT) and not m.client]
            self._rng.shuffle(self._order)
            self._order_pos = 0
        return None

    def _send_indirect(self, probe: _Probe) -> None:
        probe.indirect_sent = True
        helpers = [
            m.name
            for m in self.members.values()
            if m.link and m.status == ALIVE and m.name != probe.target and not m.client
        ]
        k = min(self.config.indirect_probes, len(helpers))
        for name in self._rng.sample(helpers, k):
            self._out.send.append((name, PingReq(probe.seq, probe.target, self._piggyback())))

    def _apply_all(self, rumors: list[Rumor], now: float) -> None:
        for r in rumors:
            self._apply(r, now)

    def _apply(self, r: Rumor, now: float) -> None:
        if r.name == self.name:
            if r.incarnation == self.incarnation and r.status in (SUSPECT, DEAD):
                if r.refutation >= self.refutation:
                    self.refutation = r.refutation + 1  # refute: "I am alive, and newer than that"
                    self._refutations += 1
                # Also for an older refutation number: whoever still spreads it has not heard our
                # refutation, whose retransmits may be spent; it rides on our very next reply.
                self._queue_rumor(self._self_rumor())
            return
        if not self.allowed(r.name):
            return
        m = self.members.get(r.name)
        if m is None:
            if not self._news_of_unknown(r, now):
                return
            m = self.members[r.name] = Member(r.name, r.incarnation, r.refutation, r.status, now)
            if r.status == SUSPECT:
                m.suspect_deadline = now + self._suspicion_timeout()
            if r.status in (ALIVE, SUSPECT):
                self._out.connect.append(r.name)
            self._queue_rumor(r)
            return
        if r.incarnation < m.incarnation:
            return
        if m.client:  # only its own news, over its link: nothing to spread
            if r.status in (DEAD, LEFT):
                self._drop_client(m, "left")
            elif r.incarnation == m.incarnation:
                m.refutation = max(m.refutation, r.refutation)
            return
        if r.incarnation > m.incarnation:
            self._down(m, "restarted")
            new = self.members[r.name] = Member(r.name, r.incarnation, r.refutation, r.status, now)
            if r.status == SUSPECT:
                new.suspect_deadline = now + self._suspicion_timeout()
            if r.status in (ALIVE, SUSPECT):
                self._out.connect.append(r.name)
            self._queue_rumor(r)
            return
        if not _supersedes(r, m.status, m.refutation):
            return
        if r.status == DEAD and m.link and m.status in (ALIVE, SUSPECT):
            # Another node's verdict on a member we still hold a link to may be stale (sent
            # across a partition and delivered when it healed) or come from the cut-off
            # side: it only starts our own suspicion, which the member refutes if it is
            # alive and our own timeout confirms if it is not (memberlist's push-pull rule).
            r = Rumor(r.name, r.incarnation, r.refutation, SUSPECT)
        old_status = m.status
        m.refutation = r.refutation
        if r.status != old_status:
            m.status = r.status
            m.since = now
        ask = False
        if r.status == ALIVE:
            m.suspect_deadline = _NEVER
            if old_status in (DEAD, LEFT) and not m.link:
                self._out.connect.append(m.name)
            self._maybe_announce(m)
        elif r.status == SUSPECT:
            if old_status != SUSPECT:
                self._suspicions += 1
                m.suspect_deadline = now + self._suspicion_timeout()
                ask = m.link
        elif r.status == DEAD:
            self._failures += old_status != DEAD
            self._down(m, "failed")
        else:  # LEFT
            self._down(m, "left")
            self._out.disconnect.append(m.name)
        self._queue_rumor(r)
        if ask:
            # Suspected on someone else's word: ping it now, the suspicion riding along, so
            # a live member refutes within one round trip (Lifeguard's "buddy system").
            self._seq += 1
            self._out.send.append((m.name, Ping(self._seq, self._piggyback())))

    def _drop_client(self, m: Member, reason: str) -> None:
        """A client's link is gone (or it left): forget it at once, no tombstone (it was
        never gossiped, so no stale rumor of it can come back)."""
        self._down(m, reason)
        del self.members[m.name]
        self._rumors.pop(m.name, None)
        self._out.disconnect.append(m.name)

    def _forget_at(self, m: Member) -> float:
        """When the tombstone of ``m`` (dead or left) goes."""
        cfg = self.config
        return m.since + (cfg.forget_left_after if m.status == LEFT else cfg.reclaim_after)

    def _forget(self, m: Member, now: float) -> None:
        """Drop the entry of a dead or departed member; keep a forgotten record of it."""
        del self.members[m.name]
        self._rumors.pop(m.name, None)
        # Stop redialing it: a failed node is retried only until forgotten (so a healed
        # partition reconnects), then only fresh discovery or its own news brings it back.
        self._out.disconnect.append(m.name)
        self._remember(m.name, m.incarnation, m.refutation, m.status, now)

    def _remember(self, name: str, incarnation: int, refutation: int, status: int, now: float) -> None:
        span = self.config.forget_left_after if status == LEFT else self.config.reclaim_after
        self.forgotten[name] = _Forgotten(incarnation, refutation, status, now + span)

    def _recall(self, name: str, now: float) -> _Forgotten | None:
        gone = self.forgotten.get(name)
        if gone is not None and now >= gone.until:
            del self.forgotten[name]
            return None
        return gone

    def _left_for_good(self, name: str, incarnation: int, now: float) -> bool:
        """Is ``incarnation`` of the forgotten ``name`` one that left, or older than one forgotten?"""
        gone = self._recall(name, now)
        return gone is not None and (
            incarnation < gone.incarnation or (incarnation == gone.incarnation and gone.status == LEFT)
        )

    def _news_of_unknown(self, r: Rumor, now: float) -> bool:
        """A rumor about a member not in the table: should it make an entry?

        Only news that it is alive or suspected does, unless it is stale: about an incarnation
        older than one forgotten, or the same one without superseding what was known of
        it (after a leave nothing does). Dead and left make no entry, only a record. Stale
        news that a forgotten dead member is alive makes this node tell it its verdict.
        """
        gone = self._recall(r.name, now)
        if gone is not None and r.incarnation <= gone.incarnation:
            if r.incarnation < gone.incarnation:
                return False
            if not _supersedes(r, gone.status, gone.refutation):
                if gone.status == DEAD and r.status in (ALIVE, SUSPECT) and not gone.told:
                    # Someone still holds it alive. It may be (a partition that outlasted
                    # the tombstone healed): tell it the verdict, once, as the tombstone's
                    # push-pull would have. If it runs, the link brings it back up and its
                    # refutation reaches everyone; if not, that costs one failed dial.
                    self.forgotten[r.name] = replace(gone, told=True)
                    verdict = Rumor(r.name, gone.incarnation, gone.refutation, DEAD)
                    self._out.send.append((r.name, MemberSync([verdict], False)))
                return False
        if r.status in (ALIVE, SUSPECT):
            self.forgotten.pop(r.name, None)
            return True
        # Fresher news that it is gone (a first hearing, a newer incarnation or refutation number, a
        # leave after a death): remember that, for as long as a tombstone would stand.
        self._remember(r.name, r.incarnation, r.refutation, r.status, now)
        return False

    def _suspect(self, m: Member, now: float) -> None:
        m.status = SUSPECT
        m.since = now
        m.suspect_deadline = now + self._suspicion_timeout()
        self._suspicions += 1
        self._queue_rumor(m.rumor())

    def _fail(self, m: Member, now: float) -> None:
        m.status = DEAD
        m.since = now
        m.suspect_deadline = _NEVER
        self._failures += 1
        self._down(m, "failed")
        self._queue_rumor(m.rumor())

    def _down(self, m: Member, reason: str) -> None:
        if m.announced:
            m.announced = False
            self._out.events.append(NodeDown(m.name, reason, m.client))

    def _maybe_announce(self, m: Member) -> None:
        if not m.announced and m.link and m.status in (ALIVE, SUSPECT):
            m.announced = True
            self._out.events.append(NodeUp(m.name, m.incarnation, m.client))

    def _suspicion_timeout(self) -> float:
        return self.config.suspicion_timeout(len(self.members) + 1)

    def _queue_rumor(self, r: Rumor) -> None:
        m = self.members.get(r.name)
        if m is not None and m.client:
            return  # a client is nobody else's business
        # Clients are not probed, so little piggybacked news reaches them: each change goes
        # to them at once (a server that restarted is then dialed by the client itself).
        for c in self.members.values():
            if c.client and c.link:
                self._out.send.append((c.name, MemberSync([r], False)))
        self._rumors[r.name] = [r, self.config.retransmits(len(self.members) + 1)]

    def _piggyback(self) -> list[Rumor]:
        if not self._rumors:
            return []
        limit = self.config.max_piggyback
        entries = self._rumors
        names = sorted(entries, key=lambda n: -entries[n][1])[:limit] if len(entries) > limit else list(entries)
        out = []
        for name in names:
            entry = entries[name]
            out.append(entry[0])
            entry[1] -= 1
            if entry[1] <= 0:
                del entries[name]
        self._rumors_sent += len(out)
        return out
