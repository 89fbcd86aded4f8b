"""A deterministic simulator for membership cores: a jumping clock, a seeded network, a cluster.

In the spirit of trio's fake network and mock clock: nothing here sleeps or touches a
socket. Many ``MembershipCore`` instances run in one process; simulated time jumps from
one event to the next, and every random choice (latency, loss, each core's own rng)
comes from one seed, so a run is exactly reproducible from its seed.

Theory of operation:
    ``SimClock`` keeps one heap of timed callbacks. Each core has at most one live
    timer, re-armed to ``core.next_deadline()`` after every input (as the asyncio
    shell does with ``loop.call_at``); network events (deliveries, dials, link-down
    notices, heartbeats) are heap entries too, so the loop always advances to the
    earliest of all deadlines and pending network events.

    ``SimNetwork`` decides, through its ``route`` hook, how long a datagram, a dial or
    a message takes, and whether a datagram is lost or a dial fails. ``SimCluster``
    carries out each core's ``MembershipOutput``:

    * ``send`` goes over the *link* between the two nodes: reliable and ordered in each
      direction, like TCP. A message is lost only when its link is down (no link, a
      crash, a partition); a graceful leave drains what was already sent.
    * ``connect`` makes a link after a latency unless the pair is partitioned or the
      peer is not running; then the dial fails (the dialer gets ``link_down`` if it
      still thought the link up) and is retried only when the core asks again. A dial
      to the address of a node that was ``kill``-ed (its process gone, its host up) is
      refused: the dialer gets ``dial_refused``.
      Both ends get ``link_up`` when a link forms.
    * ``disconnect``, a crash, a leave and a partition tear links down. Each end still
      running gets ``link_down``: the end that hung up at once, the other after a
      latency (and after whatever a disconnect or a leave still delivers). A notice
      about a link already replaced by a newer one is not delivered, as the real
      transport does not report a replaced connection.
    * ``pause`` is a SIGSTOP and ``resume`` the SIGCONT: while paused, the node's core
      sees nothing and does nothing. Its links stay open (its kernel holds them): what
      its peers send queues in order, a dial to it completes at the dialer (the kernel's
      backlog) and a link event about it waits; its heartbeats stop and the heartbeats
      it would hear are lost; its timer comes due and waits. On resume everything runs
      at once with its stale view: what queued on its links and the late timer, in an
      order a seeded coin picks (a real loop interleaves them). A leave asked of a
      paused node waits for the resume; a crash does not.
    * Discovery is a lossy multicast heartbeat (each node's heartbeat reaches each
      other node with probability ``1 - loss``, at once: multicast latency is nothing
      next to the interval), or, with ``heartbeat=None``, a list of seed nodes dialed
      at start and re-dialed while not up (like ``Static``).

Invariants:
    * Time never goes backwards; events at the same time run in the order scheduled.
    * All randomness comes from ``random.Random`` instances derived from one seed (each
      core gets its own), and nothing iterates in hash order: a seed replays a run.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..membership._config import MembershipConfig
from ..membership._core import ALIVE, SUSPECT, MembershipCore
from ..membership._events import NodeDown, NodeUp

_NEVER = math.inf

#: ``route(src, dst, kind) -> delay or None``. ``kind`` is ``"datagram"`` (a heartbeat:
#: None drops it), ``"connect"`` (a dial: None fails it) or ``"message"`` (on a link:
#: None breaks the link, so both ends see ``link_down``).
RouteHook = Callable[[str, str, str], "float | None"]


class SimClock:
    """Simulated time that jumps to the next scheduled callback; starts at ``start``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0

    @property
    def seq(self) -> int:
        """How many callbacks were ever scheduled: orders events that share a time."""
        return self._seq

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> int:
        """Run ``callback(*args)`` at ``when`` (not before now); return its sequence number."""
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.now), self._seq, callback, args))
        return self._seq

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> int:
        return self.call_at(self.now + delay, callback, *args)

    def next_time(self) -> float:
        """When the earliest pending callback runs (``inf`` if none)."""
        return self._heap[0][0] if self._heap else _NEVER

    def step(self) -> bool:
        """Jump to the earliest pending callback and run it; False if there is none."""
        if not self._heap:
            return False
        when, _, callback, args = heapq.heappop(self._heap)
        self.now = when
        callback(*args)
        return True

    def run_until(self, when: float) -> None:
        """Run every callback due at or before ``when``, then set the time to ``when``."""
        heap = self._heap
        while heap and heap[0][0] <= when:
            self.step()
        self.now = max(self.now, when)


class SimNetwork:
    """Latency, loss and partitions, decided by a seeded ``random.Random``.

    ``route`` is the hook every datagram, dial and link message goes through; replace
    it (``network.route = my_route``) to script other faults, and call
    ``default_route`` from it to keep the usual behaviour.
    """

    def __init__(self, rng: random.Random, *, latency: tuple[float, float] = (0.001, 0.01), loss: float = 0.0) -> None:
        self.rng = rng
        self.latency = latency
        self.loss = loss
        self._group: dict[str, int] = {}
        self.route: RouteHook = self.default_route

    def default_route(self, src: str, dst: str, kind: str) -> float | None:
        if kind != "message" and not self.reachable(src, dst):
            return None
        if kind == "datagram" and self.loss and self.rng.random() < self.loss:
            return None
        lo, hi = self.latency
        return self.rng.uniform(lo, hi)

    def reachable(self, a: str, b: str) -> bool:
        """Are ``a`` and ``b`` on the same side of every partition?"""
        return self._group.get(a, 0) == self._group.get(b, 0)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut the network into ``groups``; nodes named in no group form one more group."""
        self._group = {name: i for i, group in enumerate(groups, 1) for name in group}

    def heal(self) -> None:
        self._group = {}


class Observed(NamedTuple):
    """One membership event, as ``observer`` (of incarnation ``incarnation``) saw it at ``at``."""

    at: float
    observer: str
    incarnation: int
    event: NodeUp | NodeDown


@dataclass(eq=False, slots=True)
class SimNode:
    """One running node: its core and its ends of the links. Replaced on restart."""

    name: str
    incarnation: int
    core: MembershipCore
    links: dict[str, _Link] = field(default_factory=dict)
    dialing: set[str] = field(default_factory=set)
    armed: float = _NEVER  # when this node's live timer fires
    up: set[str] = field(default_factory=set)  # names announced by NodeUp, kept from the events
    paused: bool = False
    late: bool = False  # its timer came due while paused
    pending: list[tuple[Callable[..., None], tuple[Any, ...]]] = field(default_factory=list)  # while paused


@dataclass(eq=False, slots=True)
class _Link:
    """A reliable, ordered, bidirectional link between two running nodes."""

    ends: tuple[SimNode, SimNode]
    last: list[float]  # the last delivery time scheduled towards ends[0] and ends[1]
    closed: bool = False
    drain_seq: int = 0  # once closed, messages scheduled before this seq still arrive

    def other(self, node: SimNode) -> SimNode:
        a, b = self.ends
        return b if node is a else a


class SimCluster:
    """Many membership cores in one process, on a ``SimNetwork``, in ``SimClock`` time.

    Args:
        seed: the seed of every random choice in the run (print it when a test fails).
        config: every node's ``MembershipConfig``.
        latency: the range of one-way latencies, in seconds, drawn for each message.
        loss: the probability that one heartbeat misses one node.
        heartbeat: seconds between one node's heartbeats (jittered by ±20 %), or None to
            discover through ``seeds`` only.
        seeds: with ``heartbeat=None``, the nodes every node dials at start, and again
            every ``seed_recheck`` seconds while the seed is not up.

    ``log`` holds every ``NodeUp``/``NodeDown`` any core emitted, in order; ``delivered``
    counts the messages delivered over links by type, and ``rumors`` the rumors they carried.
    """

    def __init__(
        self,
        seed: int,
        *,
        config: MembershipConfig | None = None,
        latency: tuple[float, float] = (0.001, 0.01),
        loss: float = 0.0,
        heartbeat: float | None = 1.0,
        seeds: Sequence[str] = (),
        seed_recheck: float = 5.0,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = config or MembershipConfig()
        self.clock = SimClock()
        self.network = SimNetwork(random.Random(self.rng.getrandbits(64)), latency=latency, loss=loss)
        self.heartbeat = heartbeat
        self.seeds = tuple(seeds)
        self.seed_recheck = seed_recheck
        self.nodes: dict[str, SimNode] = {}
        self.log: list[Observed] = []
        self.delivered: Counter[str] = Counter()
        self.rumors: Counter[str] = Counter()
        self._incarnations: dict[str, int] = {}
        self.killed: set[str] = set()  # names whose address refuses dials (see kill)

    # --- time ------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now

    def run_until(self, when: float) -> None:
        self.clock.run_until(when)

    def run_for(self, duration: float) -> None:
        self.clock.run_until(self.clock.now + duration)

    def run_until_true(self, predicate: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
        """Run until ``predicate()`` holds (checked every ``poll`` simulated seconds) or ``timeout`` passes."""
        deadline = self.clock.now + timeout
        while not predicate():
            if self.clock.now >= deadline:
                return False
            self.clock.run_until(min(deadline, self.clock.now + poll))
        return True

    # --- the scenario: starting, stopping, partitions ----------------------------------------

    def start(self, name: str, at: float | None = None, *, allow: Sequence[str] = (), deny: Sequence[str] = ()) -> None:
        """Start ``name`` (now or at ``at``) with the next incarnation of that name."""
        self._at(at, self._start, name, tuple(allow), tuple(deny))

    def crash(self, name: str, at: float | None = None) -> None:
        """Stop ``name`` silently: its links break, peers get ``link_down`` after a latency."""
        self._at(at, self._stop, name, False)

    def kill(self, name: str, at: float | None = None) -> None:
        """Kill ``name``'s process on a live host: its links break as in a crash, and from
        then on dials to its address are refused (``dial_refused``) until it starts again."""
        self._at(at, self._kill, name)

    def leave(self, name: str, at: float | None = None) -> None:
        """Graceful leave: ``core.leave``, deliver what it sent, then close its links."""
        self._at(at, self._stop, name, True)

    def pause(self, name: str, at: float | None = None) -> None:
        """SIGSTOP ``name`` (see the module rules); nothing if it is not running."""
        self._at(at, self._pause, name)

    def resume(self, name: str, at: float | None = None) -> None:
        """SIGCONT ``name``: what came due and what queued for it runs at once."""
        self._at(at, self._resume, name)

    def restart(self, name: str, at: float | None = None) -> None:
        """Crash ``name`` and start it again at once, with a new incarnation."""
        self._at(at, self._restart, name)

    def partition(self, *groups: Iterable[str], at: float | None = None) -> None:
        """Cut the network (see ``SimNetwork.partition``); links across the cut break."""
        self._at(at, self._partition, [list(g) for g in groups])

    def heal(self, at: float | None = None) -> None:
        self._at(at, self.network.heal)

    def _at(self, at: float | None, callback: Callable[..., None], *args: Any) -> None:
        if at is None:
            callback(*args)
        else:
            self.clock.call_at(at, callback, *args)

    def _start(self, name: str, allow: tuple[str, ...], deny: tuple[str, ...]) -> None:
        if name in self.nodes:
            raise ValueError(f"{name} is already running")
        self.killed.discard(name)
        incarnation = self._incarnations[name] = self._incarnations.get(name, 0) + 1
        rng = random.Random(self.rng.getrandbits(64))
        core = MembershipCore(name, incarnation, self.config, rng, self.now, allow=allow, deny=deny)
        node = self.nodes[name] = SimNode(name, incarnation, core)
        if self.heartbeat is not None:
            self.clock.call_later(self.rng.uniform(0, self.heartbeat), self._heartbeat, node)
        else:
            self._dial_seeds(node)
        self._flush(node)

    def _stop(self, name: str, graceful: bool) -> None:
        node = self.nodes.get(name)
        if node is None:
            return
        if graceful and node.paused:
            node.pending.append((self._stop, (name, True)))  # SIGTERM waits for SIGCONT
            return
        if graceful:
            node.core.leave(self.now)
            self._flush(node)  # its last words go out before its links close
        del self.nodes[name]
        for link in list(node.links.values()):
            self._break(link, drain=graceful)

    def _kill(self, name: str) -> None:
        if name in self.nodes:
            self._stop(name, False)
            self.killed.add(name)

    def _pause(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is not None:
            node.paused = True

    def _resume(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None or not node.paused:
            return
        node.paused = False
        pending, node.pending = node.pending, []
        late, node.late = node.late, False
        timer_first = late and self.rng.random() < 0.5
        if timer_first:
            self._late_timer(node)
        for callback, args in pending:
            if self.nodes.get(node.name) is not node or node.paused:
                break  # it left (a leave waited for the resume)
            callback(*args)
        if late and not timer_first and self.nodes.get(node.name) is node:
            self._late_timer(node)

    def _late_timer(self, node: SimNode) -> None:
        node.armed = _NEVER
        node.core.handle_timer(self.now)
        self._flush(node)

    def _restart(self, name: str) -> None:
        node = self.nodes.get(name)
        self._stop(name, False)
        self._start(name, node.core.allow if node else (), node.core.deny if node else ())

    def _partition(self, groups: list[list[str]]) -> None:
        self.network.partition(*groups)
        reachable = self.network.reachable
        for node in list(self.nodes.values()):
            for peer, link in list(node.links.items()):
                if not reachable(node.name, peer):
                    self._break(link, drain=False)

    # --- discovery ------------------------------------------------------------------------------

    def _heartbeat(self, node: SimNode) -> None:
        if self.nodes.get(node.name) is not node:
            return
        route = self.network.route
        links = node.links
        # A node already linked to ``node`` would ignore the heartbeat (``discovered``
        # returns at once for a linked member), so only the others are visited; a paused
        # node sends none and hears none.
        others = [] if node.paused else [p for n, p in self.nodes.items() if n not in links and p is not node]
        for peer in [p for p in others if not p.paused]:
            if route(node.name, peer.name, "datagram") is None:
                continue
            peer.core.discovered(node.name, self.now, node.incarnation)
            self._flush(peer)
        assert self.heartbeat is not None
        self.clock.call_later(self.heartbeat * self.rng.uniform(0.8, 1.2), self._heartbeat, node)

    def _dial_seeds(self, node: SimNode) -> None:
        if self.nodes.get(node.name) is not node:
            return
        if node.paused:
            self.clock.call_later(self.seed_recheck, self._dial_seeds, node)
            return
        waiting = False
        for seed in self.seeds:
            if seed != node.name and seed not in node.up:
                node.core.discovered(seed, self.now)
                waiting = True
        self._flush(node)
        if waiting:
            self.clock.call_later(self.seed_recheck, self._dial_seeds, node)

    # --- carrying out a core's output ---------------------------------------------------------

    def _flush(self, node: SimNode) -> None:
        """Carry out ``node``'s output and re-arm its timer."""
        if self.nodes.get(node.name) is not node:
            node.core.take()  # a node that has just left: its last words went out already
            return
        out = node.core.take()
        if out:
            now = self.now
            for event in out.events:
                self.log.append(Observed(now, node.name, node.incarnation, event))
                if isinstance(event, NodeUp):
                    node.up.add(event.node)
                else:
                    node.up.discard(event.node)
            for dst, msg in out.send:
                self._send(node, dst, msg)
            for dst in out.connect:
                self._dial(node, dst)
            for dst in out.disconnect:
                link = node.links.get(dst)
                if link is not None:
                    self._break(link, drain=True, initiator=node)
        deadline = node.core.next_deadline()
        if deadline < node.armed:
            node.armed = deadline
            self.clock.call_at(deadline, self._timer, node, deadline)

    def _timer(self, node: SimNode, when: float) -> None:
        if node.armed != when or self.nodes.get(node.name) is not node:
            return  # re-armed earlier meanwhile, or the node is gone
        if node.paused:
            node.late = True  # fires on resume; ``armed`` stays, so nothing re-arms it before
            return
        node.armed = _NEVER
        node.core.handle_timer(self.now)
        self._flush(node)
        if node.armed <= self.now:
            raise RuntimeError(f"{node.name}: next_deadline() {node.armed} does not advance past {self.now}")

    def _send(self, src: SimNode, dst: str, msg: Any) -> None:
        link = src.links.get(dst)
        if link is None:
            return  # no link, no delivery: only a link carries messages
        delay = self.network.route(src.name, dst, "message")
        if delay is None:
            self._break(link, drain=False)
            return
        target = link.other(src)
        i = 0 if target is link.ends[0] else 1
        at = link.last[i] = max(self.now + delay, link.last[i])
        self.clock.call_at(at, self._deliver, link, target, src.name, msg, self.clock.seq + 1)

    def _deliver(self, link: _Link, dst: SimNode, sender: str, msg: Any, seq: int) -> None:
        if link.closed and seq >= link.drain_seq:
            return
        if self.nodes.get(dst.name) is not dst:
            return
        if dst.paused:  # in its kernel's buffer: read on resume, even if the link closes meanwhile
            dst.pending.append((self._deliver, (link, dst, sender, msg, -1)))
            return
        kind = type(msg).__name__
        self.delivered[kind] += 1
        self.rumors[kind] += len(getattr(msg, "rumors", ()))
        dst.core.receive(sender, msg, self.now)
        self._flush(dst)

    def _dial(self, src: SimNode, dst: str) -> None:
        if dst in src.links or dst in src.dialing:
            return
        src.dialing.add(dst)
        delay = self.network.route(src.name, dst, "connect")
        self.clock.call_later(self.network.latency[1] if delay is None else delay, self._dialed, src, dst, delay)

    def _dialed(self, src: SimNode, dst: str, delay: float | None) -> None:
        src.dialing.discard(dst)
        if self.nodes.get(src.name) is not src or dst in src.links:
            return
        peer = self.nodes.get(dst)
        if delay is None or peer is None or not self.network.reachable(src.name, dst):
            m = src.core.member(dst)
            if m is not None and m.link:
                src.core.link_down(dst, self.now)
                self._flush(src)
            if peer is None and dst in self.killed and delay is not None:
                src.core.dial_refused(dst, self.now)
                self._flush(src)
            return
        link = _Link((src, peer), [self.now, self.now])
        src.links[dst] = link
        peer.links[src.name] = link
        src.core.link_up(dst, peer.incarnation, self.now)
        self._link_up(peer, src.name, src.incarnation)
        self._flush(src)

    def _link_up(self, node: SimNode, peer: str, incarnation: int) -> None:
        if self.nodes.get(node.name) is not node:
            return
        if node.paused:  # accepted on resume
            node.pending.append((self._link_up, (node, peer, incarnation)))
            return
        node.core.link_up(peer, incarnation, self.now)
        self._flush(node)

    def _break(self, link: _Link, *, drain: bool, initiator: SimNode | None = None) -> None:
        """Close ``link``. ``initiator`` (if running) gets ``link_down`` at once; the other
        running end after a latency and after whatever is still being delivered to it."""
        if link.closed:
            return
        link.closed = True
        link.drain_seq = self.clock.seq + 1 if drain else 0
        lo, hi = self.network.latency
        for i, end in enumerate(link.ends):
            other = link.ends[1 - i]
            if end.links.get(other.name) is link:
                del end.links[other.name]
            if self.nodes.get(end.name) is not end:
                continue  # the end that crashed or left hears nothing
            if end is initiator:
                at = self.now
            else:
                at = link.last[i] = max(self.now + self.rng.uniform(lo, hi), link.last[i])
            self.clock.call_at(at, self._link_down, link, end, other.name)

    def _link_down(self, link: _Link, node: SimNode, peer: str) -> None:
        if self.nodes.get(node.name) is not node:
            return
        if node.paused:
            node.pending.append((self._link_down, (link, node, peer)))
            return
        if peer in node.links:
            return  # a newer link to ``peer`` replaced this one
        node.core.link_down(peer, self.now)
        self._flush(node)

    # --- queries -------------------------------------------------------------------------------

    def live(self) -> list[str]:
        return sorted(self.nodes)

    def view(self, name: str) -> list[str]:
        return self.nodes[name].core.up_members()

    def converged(self) -> bool:
        """Does every running node see exactly every other running node, each as up?"""
        n = len(self.nodes) - 1
        if any(len(node.up) != n for node in self.nodes.values()):
            return False
        names = set(self.nodes)
        return all(node.up == names - {name} for name, node in self.nodes.items())

    def settled(self) -> bool:
        """``converged()``, and nothing pending: every node holds every other running node's
        current incarnation as alive and linked (no suspicion left to time out)."""
        if not self.converged():
            return False
        for node in self.nodes.values():
            for name in node.up:
                m = node.core.member(name)
                if m is None or m.status != ALIVE or not m.link or m.incarnation != self.nodes[name].incarnation:
                    return False
        return True

    def check_invariants(self) -> None:
        """Raise AssertionError (naming the seed) if a core breaks an invariant of its member table.

        Meant for a quiet moment (after convergence): ``announced`` implies a link only
        once every link that dropped has come back or timed out.
        """
        problems: list[str] = []
        for node in self.nodes.values():
            core = node.core
            if node.name in core.members:
                problems.append(f"{node.name} lists itself as a member")
            for m in core.members.values():
                if m.announced and not (m.link and m.status in (ALIVE, SUSPECT)):
                    problems.append(f"{node.name} announces {m.name} with link={m.link} status={m.status}")
            if node.up != set(core.up_members()):
                problems.append(f"{node.name}'s NodeUp/NodeDown events disagree with its up_members()")
        if problems:
            raise AssertionError(f"seed {self.seed}: " + "; ".join(problems))

    def events_about(self, observer: str, node: str) -> list[Observed]:
        """What ``observer`` (any incarnation) reported about ``node``, in order."""
        return [o for o in self.log if o.observer == observer and o.event.node == node]
