"""The conflict exchange's waits and memory, both sides. Sans-I/O.

Described in docs/internals.md, "Resolution" (the exchange) and "Conflicts at scale" (why
its waits follow progress); the registry service (``_service.py``) runs it: it freezes a
losing copy, sends its state to the winner's node in a ``ConflictState(ref)``, and retires
the copy when ``ConflictStateTaken(ref)`` comes back (or resumes it, if the answer says
the winner was gone: the state was dropped; for the outbox, an answer all the same).
``ConflictOutbox`` is the loser's side (which states wait for an answer, which to send
again, which to give up), ``ConflictInbox`` the winner's (which refs it took already).

Rules:
    1. A losing copy retires only once its state is confirmed taken (``taken``): the
       state a link lost would take along what the loser acknowledged. While it waits,
       the copy stays frozen: nothing it acknowledges can be missing from the state.
    2. A state is sent again as it was, under its ref, never rebuilt: the winner's node
       takes a ref once (``ConflictInbox``) and answers a repeat at once, so a second
       send costs a message, not a second ``resolve_conflict``, and a retry continues
       where the exchange was instead of starting it again.
    3. Waits follow progress, not a fixed time: the states sent to one node are answered
       in the order that node received them (one FIFO link each way; the winner's node
       answers in the handler that takes the state). So while answers come, the states
       behind them are on their way; a state sent (last) before the first send of one
       that was answered was lost, and is sent again at once (a link dropped between).
       Only a node silent for ``timeout`` (no answer to any state sent to it) gets every
       waiting state again, and then waits twice as long, up to ``max_interval``; and a
       node whose link was replaced without a verdict here (``link_renewed``: a cut
       healed, or one side was paused) gets them all again at once, its next silent round
       ``timeout`` from then: what went on the old link may be lost, and the node is
       reachable now. Only an answer starts the rounds over (a link that comes up again
       and again and carries nothing must not keep a loser frozen for ever).
    4. A winner's node that goes down here is waited for, ``timeout`` at most: a verdict
       is an opinion (a loop stalled by the very conflicts it works through is declared
       failed as easily as a dead node), and the node that comes back under the same
       incarnation gets every waiting state again, under the same refs. Given up (the
       loser resumes, and the tracker settles the conflict again later) only when the
       winner's node stays down that long, comes back as a new incarnation (it holds
       nothing), stays silent through ``rounds`` rounds of rule 3, or when one state was
       passed over ``skips`` times by answers to later ones (it will not take it).
    5. The inbox remembers a ref at least ``memory`` seconds (and at most ``limit`` refs
       per node, the oldest going first): longer than a loser sends it again.

Theory of operation:
    Per winner node, the outbox keeps the waiting refs in the order of their last send,
    each with the sequence numbers of its first and last send (counted per node) and how
    often it was passed over; the node's incarnation when they were sent, whether it is
    down here; a deadline, the interval it was set with, and the silent rounds since the
    last answer. Inputs are method calls with ``now``; each returns what
    the shell must do: the refs to send again (their messages are the shell's) and the
    refs given up.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class _Waiting:
    first: int  # the sequence number of its first send (per node)
    last: int  # of its last send
    skips: int = 0  # times an answer to a later state passed it over


@dataclass(slots=True)
class _Peer:
    deadline: float
    interval: float
    incarnation: int  # the node's when the states were sent (0: not known)
    down: bool = False  # down here: waiting for it to come back (rule 4)
    seq: int = 0  # sends to this node so far
    rounds: int = 0  # silent rounds since the last answer
    waiting: dict[int, _Waiting] = field(default_factory=dict)  # ref -> its sends, by last send


@dataclass(frozen=True, slots=True)
class Due:
    """What the outbox asks of the shell: send these refs again (each to ``node``), give
    these up (the loser resumes; the conflict is settled again later)."""

    resend: tuple[tuple[str, int], ...] = ()
    given_up: tuple[int, ...] = ()


NOTHING = Due()


class ConflictOutbox:
    """The loser's side: the states sent and not yet confirmed taken (see the rules)."""

    def __init__(self, timeout: float = 5.0, max_interval: float = 40.0, rounds: int = 4, skips: int = 4) -> None:
        self.timeout = timeout
        self.max_interval = max_interval
        self.rounds = rounds
        self.skips = skips
        self._peers: dict[str, _Peer] = {}
        self._node_of: dict[int, str] = {}  # ref -> the node it waits on

    def __len__(self) -> int:
        """States waiting for an answer."""
        return len(self._node_of)

    def waiting(self, node: str) -> list[int]:
        """The refs waiting on ``node``, in the order of their last send. Query."""
        peer = self._peers.get(node)
        return list(peer.waiting) if peer is not None else []

    def sent(self, node: str, ref: int, now: float, incarnation: int = 0) -> None:
        """``ConflictState(ref)`` was posted to ``node`` (the first time), whose incarnation
        up here is ``incarnation`` (0: none known)."""
        peer = self._peers.get(node)
        if peer is None:
            peer = self._peers[node] = _Peer(now + self.timeout, self.timeout, incarnation)
        elif not peer.waiting:
            peer.deadline, peer.interval, peer.rounds = now + self.timeout, self.timeout, 0
            peer.incarnation, peer.down = incarnation, False
        peer.seq += 1
        peer.waiting[ref] = _Waiting(peer.seq, peer.seq)
        self._node_of[ref] = node

    def taken(self, node: str, ref: int, now: float) -> tuple[bool, Due]:
        """``ConflictStateTaken(ref)`` came from ``node``: whether ``ref`` was waiting on it
        (the loser may retire), and the states it shows were lost (rule 3)."""
        peer = self._peers.get(node)
        answered = peer.waiting.pop(ref, None) if peer is not None else None
        if peer is None or answered is None:
            return False, NOTHING  # late (given up meanwhile), repeated, or not ours
        del self._node_of[ref]
        peer.deadline, peer.interval, peer.rounds = now + self.timeout, self.timeout, 0
        lost = []
        for other, sends in peer.waiting.items():
            if sends.last >= answered.first:
                break  # ordered by last send: the rest were sent after it, and are on their way
            lost.append(other)
        if not lost:
            return True, NOTHING
        resend: list[tuple[str, int]] = []
        given_up: list[int] = []
        for other in lost:
            sends = peer.waiting[other]
            sends.skips += 1
            if sends.skips > self.skips:
                self._forget(peer, other)
                given_up.append(other)
            else:
                self._again(node, peer, other, resend)
        return True, Due(tuple(resend), tuple(given_up))

    def peer_down(self, node: str, now: float) -> None:
        """``node`` went down here: its waiting states wait ``timeout`` for it (rule 4)."""
        peer = self._peers.get(node)
        if peer is not None and peer.waiting and not peer.down:
            peer.down = True
            peer.deadline = now + self.timeout

    def peer_up(self, node: str, incarnation: int, now: float) -> Due:
        """``node`` is up here as ``incarnation``: back from a verdict, it gets its waiting
        states again; as another incarnation, they are given up (rule 4)."""
        peer = self._peers.get(node)
        if peer is None or not peer.waiting:
            return NOTHING
        if peer.incarnation and incarnation and incarnation != peer.incarnation:
            return Due(given_up=self._give_up(node))
        if not peer.down:
            return NOTHING
        peer.down = False
        peer.deadline, peer.interval, peer.rounds = now + self.timeout, self.timeout, 0
        resend: list[tuple[str, int]] = []
        for ref in list(peer.waiting):
            self._again(node, peer, ref, resend)
        return Due(tuple(resend))

    def link_renewed(self, node: str, incarnation: int, now: float) -> Due:
        """A new link to ``node`` (as ``incarnation``) replaced one that closed without a
        verdict here: its waiting states go again now (rule 3), rather than once the
        silence of rule 3 ends, up to ``max_interval`` later (the fault campaign: a loser
        paused while the winner's node was cut off sent its states into the dead link, and
        the exchange ended 9 s after the heal). Down here: ``peer_up`` does it. As another
        incarnation: given up (rule 4)."""
        peer = self._peers.get(node)
        if peer is None or not peer.waiting or peer.down:
            return NOTHING
        if peer.incarnation and incarnation and incarnation != peer.incarnation:
            return Due(given_up=self._give_up(node))
        peer.deadline = now + self.timeout  # the silent rounds so far still count (rule 3)
        resend: list[tuple[str, int]] = []
        for ref in list(peer.waiting):
            self._again(node, peer, ref, resend)
        return Due(tuple(resend))

    def next_deadline(self) -> float:
        """When ``handle_timer`` has work (inf if never)."""
        return min((p.deadline for p in self._peers.values() if p.waiting), default=float("inf"))

    def handle_timer(self, now: float) -> Due:
        """Every node silent past its deadline gets its waiting states again, or, after
        ``rounds`` such rounds, they are given up (rules 3 and 4)."""
        resend: list[tuple[str, int]] = []
        given_up: list[int] = []
        for node, peer in list(self._peers.items()):
            if not peer.waiting:
                del self._peers[node]
                continue
            if now < peer.deadline:
                continue
            if peer.down or peer.rounds >= self.rounds:
                given_up.extend(self._give_up(node))
                continue
            peer.rounds += 1
            peer.interval = min(peer.interval * 2, self.max_interval)
            peer.deadline = now + peer.interval
            for ref in list(peer.waiting):
                self._again(node, peer, ref, resend)
        if not (resend or given_up):
            return NOTHING
        return Due(tuple(resend), tuple(given_up))

    def _again(self, node: str, peer: _Peer, ref: int, resend: list[tuple[str, int]]) -> None:
        peer.seq += 1
        sends = peer.waiting.pop(ref)
        sends.last = peer.seq
        peer.waiting[ref] = sends  # to the end: the order is by last send
        resend.append((node, ref))

    def _give_up(self, node: str) -> tuple[int, ...]:
        peer = self._peers.pop(node)
        for ref in peer.waiting:
            del self._node_of[ref]
        return tuple(peer.waiting)

    def _forget(self, peer: _Peer, ref: int) -> None:
        del peer.waiting[ref]
        del self._node_of[ref]


class ConflictInbox:
    """The winner's side: the refs taken from each node, to take each once (rule 5).

    A node's refs are kept in a dict of ints and floats, which the cycle collector never
    visits, however many thousands of conflicts a heal brings."""

    def __init__(self, memory: float = 600.0, limit: int = 1_000_000) -> None:
        self.memory = memory
        self.limit = limit
        self._taken: dict[str, dict[int, float]] = {}

    def has(self, node: str, ref: int) -> bool:
        """Whether ``ref`` from ``node`` was taken already. Query."""
        refs = self._taken.get(node)
        return refs is not None and ref in refs

    def take(self, node: str, ref: int, now: float) -> bool:
        """Whether ``ref`` from ``node`` is new: then it is remembered as taken now."""
        refs = self._taken.get(node)
        if refs is None:
            refs = self._taken[node] = {}
        elif ref in refs:
            return False
        if refs and (len(refs) >= self.limit or next(iter(refs.values())) < now - 2 * self.memory):
            # Rebuilt, never trimmed entry by entry (a dict emptied from the front is slow
            # to iterate): at most once per ``memory`` seconds, or per ``limit / 2`` refs.
            horizon = now - self.memory
            kept = [(r, t) for r, t in refs.items() if t >= horizon][-(self.limit // 2) :]
            refs = self._taken[node] = dict(kept)
        refs[ref] = now
        return True

    def __len__(self) -> int:
        return sum(len(refs) for refs in self._taken.values())
