"""Real nodes (runtime, membership, registry) on a simulated network, under Hypothesis-generated schedules.

Each example runs a whole cluster of ``Node`` objects in one ``VirtualTimeLoop`` over a
seeded ``MemoryNetwork``: the production code, with production defaults (LAN membership
preset, default registry and transport tunables), minutes of cluster life in a fraction
of a second of real time, reproducible from the example alone.

A schedule has two phases:

1. Chaos: from a cluster of 3-5 nodes (at most 6 live at once), registrations of fresh
   names (a ``Tally`` per name, registered through its factory), casts to names from a
   ``Sender`` process on a random node, acknowledged increments (calls) of names from a
   random node, unregistrations, joins of new nodes, nodes coming back under an old name
   and port (a new incarnation), graceful leaves, crashes, restarts (a kill and at once a
   new incarnation under the same name and port, while the old one's links still drain),
   pauses (a SIGSTOP of 2-15 s, mostly longer than failure detection: the node resumes
   with its stale view and late timers, see ``MemoryNetwork.pause``), partitions (black
   holes or resets) and heals, with gaps between them, often none. Then every route heals,
   every paused node resumes and the cluster must settle.
2. Graceful: registrations, casts, joins, returns and graceful leaves only. The cluster
   must settle again, and nothing may have been lost on the way.

Six properties draw the chaos phase with different weights: every kind of fault mixed,
netsplits, deaths and returns, pauses, overlapping joins, leaves, kills and restarts, and
none at all (graceful churn only).

When it has settled (checked again after a further quiet period), for every live node:

* the membership view is exactly the set of live nodes, and so is the registry's placement;
* all replicas agree: the same ``registered()`` everywhere;
* every registered name runs exactly once (live ``Tally`` processes counted on every
  live node), on its owner, and no live ``Tally`` runs for a name nobody has registered;
* no name was lost: each successful registration that was not unregistered is still
  registered, unless every node that knew of it crashed, or went away within
  ``TOO_SOON`` of its host's crash (before it could know), or left while it knew of no
  other node (nobody to hand it to);
* no acknowledged increment is missing from its name's surviving copy, unless a node
  that held it crashed (its state went with it; a pause is not a crash);
* nothing is frozen: no process of a name is left frozen (mid-handoff) and no name moving;
* a name that only ever moved gracefully (one fresh start, every other start a
  ``Resume``) carries the complete record of what any of its incarnations handled, in order;
* in the chaos phase, no name that never restarted received a sender's messages twice or
  out of order; in the graceful phase, every message a sender cast reached the name, in
  order, with no gap, whatever moved meanwhile, and no name restarted;
* no task or callback raised, and nothing was logged at ERROR level.

Every assertion message names the example's seed; Hypothesis prints the whole schedule.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
import unittest.mock
from collections import Counter, defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from distable import Caller, DistableError, NameNotFound, Node, Pid, Process, Resume
from distable.node import _node as node_module
from distable.registry._conflicts import ConflictOutbox, Due
from distable.registry._service import RegistryService
from distable.testing import (
    MemoryDiscovery,
    MemoryNetwork,
    VirtualTimeLoop,
    abort,
    handoffs_in_flight,
    is_frozen,
    is_running,
    local_names,
    queued,
    seed_membership,
)
from distable.wire._messages import ConflictState

COOKIE = "sim-cookie"
MAX_NODES = 6
MIN_LIVE = 2
POLICIES = ("temporary", "transient", "permanent")
#: Virtual seconds the cluster gets to settle after the last fault (membership, syncs every
#: 10 s, handoff retries on the next sync, restart backoff): generous, as it costs nothing
#: unless something is wrong.
SETTLE = 300.0
QUIET = 30.0  # then it must stay settled this long


# --- the application ---------------------------------------------------------------------------


class World:
    """What the processes of one example report. All its nodes share this OS process."""

    def __init__(self) -> None:
        self.inits: Counter[str] = Counter()  # name -> Tally.init calls (fresh starts and handed-in ones)
        self.resumes: Counter[str] = Counter()  # name -> end_handoff calls
        self.handled: defaultdict[str, list[tuple[str, int]]] = defaultdict(list)  # by any incarnation, in order
        self.sent: defaultdict[tuple[str, str], list[int]] = defaultdict(list)  # (sender, name) -> seqs cast
        self.not_found = 0  # casts a sender could not make: the name was not in its replica
        self.last_pid: dict[str, Pid] = {}  # name -> the pid of its latest incarnation
        self.acked: defaultdict[str, dict[str, None]] = defaultdict(dict)  # name -> increments acknowledged
        self.crash_lost: defaultdict[str, set[str]] = defaultdict(set)  # increments held by a crashed copy

    def fresh_starts(self, name: str) -> int:
        return self.inits[name] - self.resumes[name]


_world = World()


def world() -> World:
    return _world


class Tally(Process):
    """Records every ``(sender, seq)`` cast to it, and every increment called on it (the
    call's reply acknowledges it); hands both over with ``Resume``, and takes a conflict
    loser's increments."""

    async def init(self, name: str) -> None:
        self.name = name
        self.record: list[tuple[str, int]] = []
        self.increments: dict[str, None] = {}  # an ordered set
        world().inits[name] += 1
        world().last_pid[name] = self.pid

    async def handle_cast(self, message: Any) -> None:
        sender, seq = message
        self.record.append((sender, seq))
        world().handled[self.name].append((sender, seq))

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        _, increment = message
        self.increments[increment] = None
        return len(self.increments)

    async def begin_handoff(self) -> Resume:
        return Resume((list(self.record), list(self.increments)))

    async def end_handoff(self, state: Any) -> None:
        record, increments = state
        self.record = [(sender, seq) for sender, seq in record] + self.record
        self.increments = dict.fromkeys([*increments, *self.increments])
        world().resumes[self.name] += 1

    async def resolve_conflict(self, state: Any) -> None:
        _, increments = state
        self.increments.update(dict.fromkeys(increments))


class Sender(Process):
    """On info ("fire", name, count, spacing, tag): casts ``(sender id, seq)`` to ``name``
    ``count`` times, ``spacing`` seconds apart, numbering each (sender id, name) from 1."""

    async def init(self, base: str) -> None:
        self.base = base
        self.seq: Counter[tuple[str, str]] = Counter()

    async def handle_info(self, message: Any) -> None:
        match message:
            case ("fire", str(name), int(count), float(spacing), str(tag)):
                sender = f"{self.base}/{tag}"
                for i in range(count):
                    if i and spacing:
                        await asyncio.sleep(spacing)
                    seq = self.seq[sender, name] + 1
                    try:
                        self.node.cast(name, (sender, seq))
                    except NameNotFound:
                        world().not_found += 1
                        continue
                    self.seq[sender, name] = seq
                    world().sent[sender, name].append(seq)


# --- schedules ---------------------------------------------------------------------------------

Op = tuple[Any, ...]


@dataclass(frozen=True)
class Schedule:
    seed: int
    size: int
    max_latency: float
    initial_names: int
    chaos: tuple[tuple[float, Op], ...]
    graceful: tuple[tuple[float, Op], ...]


index = st.integers(0, 63)
gaps = st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0, 2.0, 4.0])
spacings = st.sampled_from([0.0, 0.01, 0.1, 0.5])
OPS: dict[str, st.SearchStrategy[Op]] = {
    "register": st.tuples(st.just("register"), index, st.sampled_from(POLICIES)),
    "send": st.tuples(st.just("send"), index, index, st.integers(1, 20), spacings),
    "join": st.just(("join",)),
    "rejoin": st.tuples(st.just("rejoin"), index),  # a gone node back under its name and port
    "leave": st.tuples(st.just("leave"), index),
    "wait": st.tuples(st.just("wait"), st.sampled_from([1.0, 3.0, 10.0])),
    "unregister": st.tuples(st.just("unregister"), index, index),
    "crash": st.tuples(st.just("crash"), index),
    "partition": st.tuples(st.just("partition"), st.integers(1, 2**MAX_NODES - 2), st.booleans()),
    "heal": st.just(("heal",)),
    "incr": st.tuples(st.just("incr"), index, index, st.integers(1, 10), spacings),
    "restart": st.tuples(st.just("restart"), index),  # kill -9, and at once a new incarnation
    "pause": st.tuples(st.just("pause"), index, st.sampled_from([2.0, 6.0, 9.0, 15.0])),
}
GRACEFUL = {"register": 2, "send": 4, "incr": 2, "join": 1, "rejoin": 1, "leave": 2, "wait": 1}


def ops(weights: dict[str, int]) -> st.SearchStrategy[Op]:
    """Operations drawn with the given relative weights."""
    if not weights:
        return st.nothing()
    return st.sampled_from([kind for kind, w in weights.items() for _ in range(w)]).flatmap(OPS.__getitem__)


def schedules(
    chaos: dict[str, int], chaos_max: int = 25, graceful_max: int = 15, chaos_gaps: st.SearchStrategy[float] = gaps
) -> st.SearchStrategy[Schedule]:
    return st.builds(
        Schedule,
        seed=st.integers(0, 2**32 - 1),
        size=st.integers(3, 5),
        max_latency=st.sampled_from([0.0, 0.002, 0.02, 0.1]),
        initial_names=st.integers(1, 8),
        chaos=st.lists(st.tuples(chaos_gaps, ops(chaos)), max_size=chaos_max).map(tuple),
        graceful=st.lists(st.tuples(gaps, ops(GRACEFUL)), min_size=1, max_size=graceful_max).map(tuple),
    )


#: Every kind of fault, mixed with everything else.
MIXED = {**GRACEFUL, "unregister": 1, "crash": 1, "partition": 1, "heal": 1}
#: Netsplits (black holes and resets) with registrations and traffic across them.
SPLITS = {"register": 2, "send": 3, "partition": 3, "heal": 2, "wait": 2, "join": 1, "leave": 1}
#: Nodes dying and coming back under the same name (a new incarnation).
DEATHS = {
    "register": 2,
    "send": 2,
    "crash": 3,
    "rejoin": 3,
    "restart": 2,
    "join": 1,
    "wait": 2,
    "partition": 1,
    "heal": 1,
}
#: Nodes paused longer than failure detection (a GC or VM stall, SIGSTOP), waking with a stale view.
PAUSES = {**GRACEFUL, "pause": 4, "incr": 4, "crash": 1, "restart": 1, "wait": 2}
#: Joins, graceful leaves, kills, restarts and pauses overlapping, with traffic.
OVERLAP = {
    "register": 2,
    "send": 2,
    "incr": 3,
    "join": 3,
    "leave": 3,
    "crash": 2,
    "restart": 2,
    "pause": 2,
    "rejoin": 1,
}
#: Gaps between overlapping faults: mostly none.
quick_gaps = st.sampled_from([0.0, 0.0, 0.0, 0.01, 0.1, 0.5, 2.0])


# --- the harness ---------------------------------------------------------------------------------


#: A node that knew a crashed node's name but went away (crashed, or began to leave)
#: within this many seconds of the crash could not have restarted it: the name may go.
TOO_SOON = 1.0


@dataclass
class CrashRecord:
    node: str
    hosted: set[str]  # names claimed on the crashed node
    known_elsewhere: set[str]  # names some surviving node's replica held
    at: float = 0.0
    knowers: dict[str, set[tuple[str, int]]] = field(default_factory=dict)  # name -> (node, incarnation) that knew it


@dataclass
class Sim:
    schedule: Schedule
    net: MemoryNetwork = field(init=False)
    live: list[Node] = field(default_factory=list)
    leaving: list[Node] = field(default_factory=list)
    gone: list[Node] = field(default_factory=list)  # left or crashed
    senders: dict[str, Pid] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    registered_ok: set[str] = field(default_factory=set)
    uncertain: set[str] = field(default_factory=set)  # unregistered, or asked to be: either outcome is fine
    crashes: list[CrashRecord] = field(default_factory=list)
    isolated: set[tuple[str, int]] = field(default_factory=set)  # (node, incarnation) that left alone
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    gone_at: dict[tuple[str, int], float] = field(default_factory=dict)  # (node, incarnation) -> crash or leave
    tasks_on: defaultdict[str, list[asyncio.Task[Any]]] = field(default_factory=lambda: defaultdict(list))
    paused: list[Node] = field(default_factory=list)  # live (or leaving) nodes paused now
    failures: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # expected failures of operations, by kind
    trace: list[str] = field(default_factory=list)
    started: int = 0
    increments: int = 0

    def __post_init__(self) -> None:
        s = self.schedule
        self.net = MemoryNetwork(s.seed, latency=(0.0, s.max_latency))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def note(self, text: str) -> None:
        self.trace.append(f"{self.loop.time():9.3f} {text}")

    def fail(self, text: str) -> None:
        self.failures.append(text)

    def spawn(self, coro: Coroutine[Any, Any, None], on: Node) -> None:
        """Run an operation made through the node ``on``, as an application on it does: it
        waits while ``on`` is paused and dies with ``on`` if ``on`` crashes."""
        task = asyncio.create_task(coro, context=self.net.context_of(on))
        self.tasks.append(task)
        self.tasks_on[on.name].append(task)

    # --- nodes -----------------------------------------------------------------------------

    async def start_node(self, again: Node | None = None) -> Node:
        """Start a new node, or one under the name and port of ``again`` (a new incarnation)."""
        k = self.started
        self.started += 1
        node = Node(
            again.short_name if again is not None else f"n{k}",
            port=again.port if again is not None else 0,
            cookie=COOKIE,
            cluster=MemoryDiscovery(self.net),
            transport_factory=self.net.transport_factory,
        )

        async def boot() -> None:
            await node.start()
            # The membership core's rng is not injectable: seed it before its first use (its
            # first timer), so that the run is reproducible.
            seed_membership(node, f"{self.schedule.seed}/membership/{k}")
            self.senders[node.name] = await node.spawn(Sender, f"{node.short_name}.{k}")

        # Everything the node does runs in its own host context, so that it can be paused.
        await asyncio.create_task(boot(), context=self.net.host_context())
        self.live.append(node)
        self.note(f"started {node.name}{' again' if again is not None else ''}")
        return node

    def pick(self, i: int) -> Node:
        return self.live[i % len(self.live)]

    async def stop_node(self, node: Node) -> None:
        others = [n for n in self.live + self.leaving if n is not node]
        if not node.nodes() or all(self.net.is_cut(node.name, n.name) for n in others):
            # Nobody to hand its names to (cut off, or not linked to anyone yet): the names
            # it runs end with it, as with a crash.
            self.isolated.add((node.name, node.incarnation))
        try:
            await node.stop()
        except Exception as exc:
            self.fail(f"graceful stop of {node.name} raised {exc!r}")
        if (node.name, node.incarnation) in self.isolated:
            self.lose_increments(node)
        self.leaving.remove(node)
        self.gone.append(node)
        self.note(f"{node.name} has left")

    def lose_increments(self, node: Node) -> None:
        """The increments held by ``node``'s copies go with it (a crash, or a lone leave)."""
        for proc in node.runtime.processes():
            if isinstance(proc, Tally) and hasattr(proc, "name"):
                world().crash_lost[proc.name].update(proc.increments)

    def losses(self, node: Node) -> CrashRecord:
        """What ``node`` takes with it if it goes now, without handing anything off."""
        survivors = [n for n in self.live + self.leaving if n is not node]
        hosted = {name for name in local_names(node) if isinstance(name, str)}
        knowers = {name: {(n.name, n.incarnation) for n in survivors if n.whereis(name) is not None} for name in hosted}
        known = {name for name in self.names if any(n.whereis(name) is not None for n in survivors)}
        return CrashRecord(node.name, hosted, known, self.loop.time(), knowers)

    def crash(self, node: Node) -> None:
        loss = self.losses(node)
        self.crashes.append(loss)
        self.gone_at.setdefault((node.name, node.incarnation), self.loop.time())
        self.lose_increments(node)
        self.live.remove(node)
        self.gone.append(node)
        if node in self.paused:
            self.paused.remove(node)
        self.net.crash(node)
        for task in self.tasks_on.pop(node.name, []):
            task.cancel()  # what it was doing for the test dies with it
        self.note(f"crashed {node.name} (hosting {sorted(loss.hosted)})")

    # --- operations --------------------------------------------------------------------------

    async def register(self, via: Node, name: str, policy: str) -> None:
        try:
            pid = await via.register(name, Tally, name, restart=policy, timeout=10.0)
        except asyncio.CancelledError:
            self.uncertain.add(name)  # ``via`` crashed meanwhile
            raise
        except DistableError as exc:
            self.errors[f"register: {type(exc).__name__}"] += 1
            self.uncertain.add(name)  # it may have been registered all the same (a lost reply)
            self.note(f"register {name} via {via.name} failed: {exc!r}")
            return
        self.registered_ok.add(name)
        self.note(f"registered {name} as {pid}")

    async def increment(self, via: Node, name: str, count: int, spacing: float, tag: str) -> None:
        """``count`` acknowledged increments of ``name``, one call at a time, from ``via``."""
        for i in range(count):
            if i and spacing:
                await asyncio.sleep(spacing)
            self.increments += 1
            increment = f"{via.short_name}/{tag}/{self.increments}"
            try:
                await via.call(name, ("add", increment), timeout=5.0)
            except DistableError as exc:
                self.errors[f"increment: {type(exc).__name__}"] += 1
                continue
            world().acked[name][increment] = None

    async def unregister(self, via: Node, name: str) -> None:
        self.uncertain.add(name)
        try:
            await via.unregister(name, timeout=10.0)
        except DistableError as exc:
            self.errors[f"unregister: {type(exc).__name__}"] += 1

    async def apply(self, op: Op, tag: str) -> None:
        kind = op[0]
        if kind == "register":
            name = f"name{len(self.names)}"
            self.names.append(name)
            via = self.pick(op[1])
            self.note(f"register {name} via {via.name} ({op[2]})")
            self.spawn(self.register(via, name, op[2]), via)
        elif kind == "send":
            if not self.names:
                return
            via, name = self.pick(op[1]), self.names[op[2] % len(self.names)]
            self.note(f"send {op[3]} x {name} from {via.name}")
            self.net.context_of(via).run(via.send, self.senders[via.name], ("fire", name, op[3], float(op[4]), tag))
        elif kind == "incr":
            if not self.names:
                return
            via, name = self.pick(op[1]), self.names[op[2] % len(self.names)]
            self.note(f"increment {name} {op[3]} x from {via.name}")
            self.spawn(self.increment(via, name, op[3], float(op[4]), tag), via)
        elif kind == "unregister":
            if not self.names:
                return
            via, name = self.pick(op[1]), self.names[op[2] % len(self.names)]
            self.note(f"unregister {name} via {via.name}")
            self.spawn(self.unregister(via, name), via)
        elif kind == "join":
            if len(self.live) + len(self.leaving) < MAX_NODES:
                await self.start_node()
        elif kind == "rejoin":
            taken = {n.name for n in self.live + self.leaving}
            back = sorted({n.name: n for n in self.gone if n.name not in taken}.values(), key=lambda n: n.name)
            if back and len(self.live) + len(self.leaving) < MAX_NODES:
                await self.start_node(again=back[op[1] % len(back)])
        elif kind == "leave":
            if len(self.live) > MIN_LIVE:
                node = self.pick(op[1])
                self.live.remove(node)
                self.leaving.append(node)
                self.gone_at[node.name, node.incarnation] = self.loop.time()
                self.note(f"{node.name} leaves")
                self.spawn(self.stop_node(node), node)
        elif kind == "crash":
            if len(self.live) > MIN_LIVE:
                self.crash(self.pick(op[1]))
        elif kind == "restart":
            if len(self.live) > MIN_LIVE:
                node = self.pick(op[1])
                self.crash(node)
                await self.start_node(again=node)
        elif kind == "pause":
            members = self.live + self.leaving  # a leaving node too: a pause as its names move
            node = members[op[1] % len(members)]
            healthy = [n for n in self.live if n not in self.paused and n is not node]
            if node not in self.paused and len(healthy) >= MIN_LIVE:
                self.net.pause(node)
                self.paused.append(node)
                self.note(f"paused {node.name} for {op[2]} s")
                self.loop.call_later(op[2], self.resume, node)
        elif kind == "partition":
            members = self.live + self.leaving
            side = [n.name for i, n in enumerate(members) if op[1] >> i & 1]
            rest = [n.name for n in members if n.name not in side]
            if side and rest:
                self.net.partition(side, rest, reset=op[2])
                self.note(f"partition {side} | {rest}{' (reset)' if op[2] else ''}")
        elif kind == "heal":
            self.net.heal()
            self.note("heal")
        elif kind == "wait":
            await asyncio.sleep(op[1])

    def resume(self, node: Node) -> None:
        if node in self.paused:
            self.paused.remove(node)
            self.net.resume(node)
            self.note(f"resumed {node.name}")

    async def play(self, ops: tuple[tuple[float, Op], ...], tag: str) -> None:
        for gap, op in ops:
            await asyncio.sleep(gap)
            await self.apply(op, tag)

    async def finish_tasks(self, within: float) -> None:
        pending = [t for t in self.tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=within)
            for task in still:
                self.fail(f"an operation did not finish within {within} s: {task.get_coro()!r}")
                task.cancel()
        self.tasks = []

    # --- observation ------------------------------------------------------------------------------

    def live_tallies(self) -> dict[str | None, list[Tally]]:
        """Live ``Tally`` processes by name (None: still starting, ``init`` not run yet)."""
        found: dict[str | None, list[Tally]] = defaultdict(list)
        for node in self.live:
            for proc in node.runtime.processes():
                if isinstance(proc, Tally) and proc.alive:
                    found[getattr(proc, "name", None)].append(proc)
        return found

    def senders_idle(self) -> bool:
        for node in self.live:
            proc = node.runtime.local(self.senders[node.name])
            if proc is not None and (is_running(proc) or queued(proc)):
                return False
        return True

    def unsettled(self) -> str | None:
        """None once the cluster has settled, else the first thing that has not."""
        live = self.live
        everyone = sorted(n.name for n in live)
        for node in live:
            if node.nodes() != [n for n in everyone if n != node.name]:
                return f"{node.name} sees {node.nodes()}, not {everyone}"
            if list(node.placement().nodes) != everyone:
                return f"{node.name} places names on {node.placement().nodes}"
        views = [dict(n.registered()) for n in live]
        for node, view in zip(live, views, strict=True):
            if view != views[0]:
                return (
                    f"replicas differ: {live[0].name} {sorted(views[0].items())} != {node.name} {sorted(view.items())}"
                )
        tallies = self.live_tallies()
        if None in tallies:
            return f"processes starting: {[p.pid for p in tallies[None]]}"
        by_name = {n.name: n for n in live}
        for name, pid in views[0].items():
            owner = live[0].placement().owner(name)
            if pid.node != owner:
                return f"{name} is registered as {pid}, not on its owner {owner}"
            host = by_name.get(pid.node)
            proc = host.runtime.local(pid) if host is not None else None
            if not isinstance(proc, Tally):
                return f"{name} is registered as {pid}, which is not a live Tally"
            if len(tallies.get(name, ())) != 1 and name not in self.uncertain:  # unregistered: its process lives on
                return f"{name} runs {len(tallies.get(name, ()))} times: {[p.pid for p in tallies[name]]}"
        for name, procs in tallies.items():
            if name not in views[0] and name not in self.uncertain:
                return f"{name} is not registered but runs as {[p.pid for p in procs]}"
        if not self.senders_idle():
            return "senders still sending"
        for node in live:
            moving = handoffs_in_flight(node).moving
            if moving:
                return f"{node.name} is still moving {sorted(moving)}"
        for name, procs in tallies.items():
            frozen = [p.pid for p in procs if is_frozen(p)]
            if frozen:
                return f"{name}: {frozen} frozen"
        return None

    async def settle(self, what: str) -> None:
        loop = self.loop
        deadline = loop.time() + SETTLE
        problem = self.unsettled()
        while problem is not None and loop.time() < deadline:
            await asyncio.sleep(0.25)
            problem = self.unsettled()
        if problem is None:
            self.note(f"{what}: settled")
            await asyncio.sleep(QUIET)
            problem = self.unsettled()
            if problem is not None:
                self.fail(f"{what}: settled, then fell apart within {QUIET} s: {problem}")
        else:
            self.fail(f"{what}: not settled within {SETTLE} s: {problem}")

    # --- checks -------------------------------------------------------------------------------------

    def excused(self, name: str) -> bool:
        """Every node that knew of ``name`` crashed, or it ran last on a node that left while
        it knew no other node: nobody is left to restart it."""
        for c in self.crashes:
            if name in c.hosted and (
                name not in c.known_elsewhere
                or all(self.gone_at.get(k, math.inf) <= c.at + TOO_SOON for k in c.knowers.get(name, ()))
            ):
                return True
        last = world().last_pid.get(name)
        return last is not None and (last.node, last.incarnation) in self.isolated

    def check_names(self, what: str) -> None:
        view = dict(self.live[0].registered())
        lost = sorted(n for n in self.registered_ok - self.uncertain if n not in view and not self.excused(n))
        if lost:
            self.fail(f"{what}: names lost: {lost}")
        tallies = self.live_tallies()
        w = world()
        for name in sorted(view):
            procs = tallies.get(name, [])
            if len(procs) != 1 or name in self.uncertain:
                continue
            unacked = [i for i in w.acked[name] if i not in procs[0].increments and i not in w.crash_lost[name]]
            if unacked:
                self.fail(
                    f"{what}: {name} ({procs[0].pid}) lacks {len(unacked)} acknowledged increment(s) no crash "
                    f"took: {unacked[:10]}"
                )
        for name in sorted(view):
            if w.fresh_starts(name) == 1 and name in tallies and len(tallies[name]) == 1:
                record = tallies[name][0].record
                if record != w.handled[name]:
                    missing = [m for m in w.handled[name] if m not in record]
                    self.fail(
                        f"{what}: {name} only moved gracefully ({w.inits[name]} starts, {w.resumes[name]} resumes) "
                        f"but its record lacks {missing[:10]} (record {len(record)}, handled {len(w.handled[name])})"
                    )

    def check_order(self, tag: str) -> None:
        """Chaos phase: a name that never restarted got each sender's messages at most once, in order."""
        w = world()
        for (sender, name), _ in sorted(w.sent.items()):
            if not sender.endswith(f"/{tag}") or w.fresh_starts(name) != 1:
                continue
            got = [seq for s, seq in w.handled[name] if s == sender]
            if got != sorted(set(got)):
                self.fail(f"chaos: {name} got {sender}'s messages out of order or twice: {got}")

    def check_delivery(self, tag: str, restarts_before: dict[str, int]) -> None:
        """Graceful phase: every message cast reached its name, in order, exactly once."""
        w = world()
        tallies = self.live_tallies()
        for (sender, name), sent in sorted(w.sent.items()):
            if not sender.endswith(f"/{tag}"):
                continue
            procs = tallies.get(name, [])
            if len(procs) != 1:
                if name not in self.uncertain and not self.excused(name):
                    self.fail(f"graceful: {name} ({len(procs)} copies) got messages from {sender}")
                continue
            got = [seq for s, seq in procs[0].record if s == sender]
            if got != sent:
                lost = sorted(set(sent) - set(got))
                self.fail(f"graceful: {name} got {sender}'s messages {got}, but {sent} were sent (lost: {lost})")
        for name in sorted(self.names):
            if w.fresh_starts(name) > max(restarts_before.get(name, 0), 1):
                self.fail(
                    f"graceful: {name} was started fresh again: its state was lost ({w.fresh_starts(name)} starts)"
                )

    # --- the whole run --------------------------------------------------------------------------------

    async def run(self) -> None:
        s = self.schedule
        for _ in range(s.size):
            await self.start_node()
        await self.settle("start")
        for i in range(s.initial_names):
            await self.apply(("register", i, POLICIES[i % len(POLICIES)]), "0")
        await self.finish_tasks(60.0)

        await self.play(s.chaos, "1")
        self.net.heal()
        for node in list(self.paused):
            self.resume(node)
        self.note("heal all, resume all")
        await self.finish_tasks(120.0)
        await self.settle("after the chaos")
        self.check_names("after the chaos")
        self.check_order("1")

        before = {name: world().fresh_starts(name) for name in self.names}
        await self.play(s.graceful, "2")
        await self.finish_tasks(120.0)
        await self.settle("after the graceful phase")
        self.check_names("after the graceful phase")
        self.check_delivery("2", before)

    async def shutdown(self) -> None:
        for node in self.live + self.leaving:
            self.net.crash(node)
        for _ in range(3):  # a cancelled task may spawn one more, once
            for node in self.live + self.leaving + self.gone:
                abort(node)
            await asyncio.sleep(0.1)
        for task in self.tasks:
            task.cancel()


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


class _VirtualWallClock:
    """``time`` as ``distable.node`` sees it in a simulation: ``time_ns`` (a node's
    incarnation) follows the virtual clock, unique and increasing, so that a schedule
    replays exactly (incarnations order pids and break ties); the rest is the real module."""

    def __init__(self) -> None:
        self.last = 0

    def time_ns(self) -> int:
        now = int((1_800_000_000 + asyncio.get_running_loop().time()) * 1e9)
        self.last = max(now, self.last + 1000)
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def run_schedule(schedule: Schedule) -> Sim:
    """Run one schedule on a fresh virtual-time loop; return the simulation and its findings."""
    global _world
    _world = World()
    sim = Sim(schedule)
    errors = _ErrorLog()
    logger = logging.getLogger("distable")
    logger.addHandler(errors)

    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        sim.fail(f"the loop reported: {context.get('message')} {context.get('exception')!r}")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(on_loop_error)
        try:
            await sim.run()
        finally:
            await sim.shutdown()
            gc.collect()  # a task whose exception nobody retrieved reports it when collected

    try:
        with (
            asyncio.Runner(loop_factory=VirtualTimeLoop) as runner,
            unittest.mock.patch.object(node_module, "time", _VirtualWallClock()),
        ):
            runner.run(main())
    finally:
        logger.removeHandler(errors)
    sim.failures.extend(f"logged: {line}" for line in errors.records)
    return sim


def describe(sim: Sim) -> str:
    return "\n".join(
        [
            f"seed {sim.schedule.seed}: {len(sim.failures)} problem(s):",
            *(f"  - {f}" for f in sim.failures),
            f"expected operation failures: {dict(sim.errors)}",
            "trace:",
            *(f"  {line}" for line in sim.trace[-80:]),
        ]
    )


# --- the tests ----------------------------------------------------------------------------------------


#: Examples per property; six properties. Each example is minutes of simulated cluster life.
#: With the membership simulator's, well over 500 seeded schedules per run (about a minute).
EXAMPLES = 60


def sim_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        # No shrinking: it could outrun the per-test timeout. A failure prints its schedule,
        # its seed and the run's trace; replay it with run_schedule(schedule).
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@sim_settings(EXAMPLES)
@given(schedules(MIXED))
def test_every_kind_of_fault_then_graceful_moves(schedule: Schedule) -> None:
    sim = run_schedule(schedule)
    assert not sim.failures, describe(sim)


@sim_settings(EXAMPLES)
@given(schedules(SPLITS))
def test_netsplits_heal_into_one_copy_of_every_name(schedule: Schedule) -> None:
    sim = run_schedule(schedule)
    assert not sim.failures, describe(sim)


@sim_settings(EXAMPLES)
@given(schedules(DEATHS))
def test_crashed_names_restart_once_even_when_nodes_return_under_the_same_name(schedule: Schedule) -> None:
    sim = run_schedule(schedule)
    assert not sim.failures, describe(sim)


@sim_settings(EXAMPLES)
@given(schedules(PAUSES))
def test_nodes_paused_past_failure_detection_wake_without_losing_or_doubling_anything(schedule: Schedule) -> None:
    sim = run_schedule(schedule)
    assert not sim.failures, describe(sim)


@sim_settings(EXAMPLES)
@given(schedules(OVERLAP, chaos_gaps=quick_gaps))
def test_overlapping_joins_leaves_kills_restarts_and_pauses(schedule: Schedule) -> None:
    sim = run_schedule(schedule)
    assert not sim.failures, describe(sim)


@sim_settings(EXAMPLES)
@given(schedules({}, chaos_max=0, graceful_max=30))
def test_graceful_churn_loses_no_message_and_no_state(schedule: Schedule) -> None:
    sim = run_schedule(schedule)
    assert not sim.failures, describe(sim)


#: Schedules that found a bug, each kept as a regression test (the fix is named in its id).
REGRESSIONS = {
    "restart-asks-an-owner-that-never-knew-the-claim": Schedule(
        seed=2598,
        size=3,
        max_latency=0.1,
        initial_names=7,
        chaos=((0.0, ("crash", 27)), (0.0, ("join",)), (2.0, ("heal",))),
        graceful=((0.5, ("send", 54, 55, 2, 0.01)), (2.0, ("join",))),
    ),
    "hello-repeated-after-a-one-sided-down": Schedule(
        seed=36765,
        size=4,
        max_latency=0.0,
        initial_names=3,
        chaos=(
            (4.0, ("register", 56, "permanent")),
            (0.1, ("leave", 11)),
            (1.0, ("unregister", 61, 53)),
            (2.0, ("register", 47, "permanent")),
            (4.0, ("send", 49, 36, 7, 0.1)),
            (0.01, ("partition", 13, False)),
            (2.0, ("send", 11, 29, 6, 0.5)),
            (4.0, ("register", 56, "permanent")),
            (0.5, ("unregister", 61, 53)),
        ),
        graceful=(
            (4.0, ("wait", 10.0)),
            (0.5, ("register", 15, "permanent")),
            (2.0, ("send", 30, 61, 4, 0.5)),
            (1.0, ("leave", 21)),
            (1.0, ("leave", 21)),
        ),
    ),
    "two-handoffs-of-one-name-into-one-node": Schedule(
        seed=4294967295,
        size=3,
        max_latency=0.0,
        initial_names=5,
        chaos=((1.0, ("wait", 10.0)), (0.01, ("partition", 58, True)), (4.0, ("join",)), (4.0, ("join",))),
        graceful=((0.5, ("send", 37, 51, 3, 0.0)), (0.1, ("register", 2, "transient"))),
    ),
    "drain-waits-for-an-accepted-incoming-handoff": Schedule(
        seed=422029,
        size=4,
        max_latency=0.002,
        initial_names=4,
        chaos=(
            (2.0, ("heal",)),
            (0.1, ("register", 32, "transient")),
            (0.0, ("leave", 28)),
            (0.01, ("leave", 22)),
            (0.0, ("wait", 3.0)),
            (2.0, ("send", 14, 23, 8, 0.0)),
            (1.0, ("leave", 50)),
            (1.0, ("unregister", 59, 39)),
        ),
        graceful=(
            (2.0, ("join",)),
            (0.01, ("join",)),
            (0.0, ("leave", 58)),
            (0.0, ("leave", 45)),
            (4.0, ("wait", 1.0)),
            (0.5, ("join",)),
            (0.5, ("send", 10, 57, 3, 0.01)),
            (2.0, ("send", 13, 3, 1, 0.5)),
            (4.0, ("wait", 1.0)),
        ),
    ),
    "drain-waits-for-the-new-owners-flush-marker": Schedule(
        seed=142198,
        size=3,
        max_latency=0.1,
        initial_names=7,
        chaos=((0.5, ("register", 62, "permanent")), (4.0, ("join",))),
        graceful=(
            (0.01, ("register", 31, "transient")),
            (0.5, ("send", 47, 45, 2, 0.5)),
            (0.5, ("send", 24, 9, 4, 0.0)),
            (4.0, ("wait", 3.0)),
            (2.0, ("wait", 1.0)),
            (0.1, ("leave", 40)),
            (1.0, ("leave", 41)),
            (0.5, ("wait", 10.0)),
            (0.0, ("send", 23, 51, 3, 0.1)),
            (0.0, ("wait", 1.0)),
            (1.0, ("leave", 11)),
            (0.0, ("join",)),
            (0.0, ("send", 6, 24, 3, 0.1)),
            (0.01, ("leave", 52)),
            (0.01, ("wait", 1.0)),
        ),
    ),
    "registry-ignores-a-node-that-is-not-up": Schedule(
        seed=1322772839,
        size=5,
        max_latency=0.02,
        initial_names=2,
        chaos=(
            (1.0, ("wait", 1.0)),
            (0.5, ("heal",)),
            (2.0, ("wait", 3.0)),
            (0.0, ("send", 42, 9, 6, 0.1)),
            (0.01, ("send", 40, 45, 6, 0.0)),
            (0.1, ("crash", 50)),
            (4.0, ("crash", 15)),
            (0.01, ("heal",)),
            (4.0, ("partition", 17, False)),
            (1.0, ("wait", 1.0)),
            (0.5, ("partition", 15, False)),
            (2.0, ("crash", 32)),
            (1.0, ("partition", 11, False)),
        ),
        graceful=((0.0, ("join",)),),
    ),
    "drain-waits-for-a-registration-in-progress": Schedule(
        seed=556,
        size=4,
        max_latency=0.02,
        initial_names=1,
        chaos=((0.5, ("wait", 1.0)), (4.0, ("register", 15, "temporary"))),
        graceful=(
            (4.0, ("leave", 47)),
            (4.0, ("register", 15, "temporary")),
            (4.0, ("register", 15, "temporary")),
            (0.0, ("leave", 0)),
        ),
    ),
    "conflict-winner-independent-of-placement": Schedule(
        seed=6417,
        size=4,
        max_latency=0.1,
        initial_names=2,
        chaos=(
            (0.5, ("partition", 49, True)),
            (4.0, ("heal",)),
            (0.5, ("register", 56, "permanent")),
            (0.1, ("partition", 49, True)),
            (0.01, ("wait", 1.0)),
            (4.0, ("heal",)),
            (0.1, ("join",)),
            (4.0, ("wait", 1.0)),
            (0.5, ("register", 17, "transient")),
            (0.0, ("register", 45, "permanent")),
            (2.0, ("send", 49, 52, 14, 0.5)),
        ),
        graceful=((0.5, ("rejoin", 21)),),
    ),
    "leaving-node-with-no-placed-peer-keeps-its-names": Schedule(
        seed=213,
        size=3,
        max_latency=0.02,
        initial_names=4,
        chaos=((0.0, ("restart", 35)), (0.0, ("join",)), (0.0, ("restart", 25)), (0.0, ("leave", 60))),
        graceful=((0.0, ("rejoin", 25)),),
    ),
    "leaver-restarts-a-restarted-nodes-names-it-knew": Schedule(
        seed=299,
        size=5,
        max_latency=0.1,
        initial_names=1,
        chaos=(
            (0.0, ("restart", 54)),
            (0.0, ("join",)),
            (0.0, ("crash", 43)),
            (0.0, ("leave", 52)),
            (2.0, ("leave", 56)),
            (0.0, ("leave", 27)),
        ),
        graceful=((0.0, ("leave", 25)),),
    ),
    # A link to an owner restarted under its name and port was dialed twice (the backoff
    # redial scheduled as the dead incarnation's link dropped, besides membership's own
    # redial; or a redial while the new incarnation's link was being accepted): the new
    # incarnation took the second link in place of the first and closed it with a
    # HandoffCommit unread, and the handed-in name ran unclaimed for good. Fixed by
    # "one dial at a time, none while a link is up or being accepted" (Transport._dial_later).
    "a-name-handed-to-a-restarted-owner-loses-its-claim--transport-one-dial-at-a-time": Schedule(
        seed=907,
        size=4,
        max_latency=0.02,
        initial_names=2,
        chaos=((0.0, ("register", 50, "transient")), (0.0, ("restart", 51))),
        graceful=((0.0, ("send", 14, 13, 8, 0.1)),),
    ),
    "names-restarted-and-handed-to-a-restarted-owner-diverge--transport-one-dial-at-a-time": Schedule(
        seed=29057330,
        size=5,
        max_latency=0.1,
        initial_names=6,
        chaos=((4.0, ("crash", 13)), (4.0, ("wait", 10.0)), (2.0, ("send", 51, 45, 7, 0.1)), (0.0, ("restart", 47))),
        graceful=((0.0, ("send", 27, 42, 20, 0.01)),),
    ),
    # A leaving n3 handed name1 to n2, which accepted and was killed at once; n3 took the
    # HandoffAccepted (already in flight) after its link to n2 was down, committed, and
    # dropped its claim: no claim was left anywhere to restart from. Fixed: a host commits
    # only while linked to the accepting incarnation (else it asks, see _cancel), and a
    # name handed to a node that dies before claiming it is restarted by its old host.
    "a-handoff-accepted-by-a-node-killed-at-once-is-not-committed-blindly": Schedule(
        seed=885421912,
        size=4,
        max_latency=0.02,
        initial_names=7,
        chaos=(
            (0.0, ("leave", 55)),
            (0.01, ("restart", 37)),
            (0.0, ("restart", 10)),
            (0.1, ("crash", 7)),
            (0.1, ("leave", 41)),
            (0.0, ("crash", 12)),
            (0.5, ("pause", 40, 2.0)),
            (0.0, ("restart", 31)),
            (0.01, ("leave", 61)),
            (2.0, ("pause", 5, 2.0)),
            (0.5, ("join",)),
            (0.01, ("join",)),
        ),
        graceful=(
            (0.01, ("send", 47, 41, 2, 0.5)),
            (0.1, ("leave", 0)),
            (0.0, ("wait", 10.0)),
            (0.01, ("send", 29, 35, 20, 0.1)),
            (2.0, ("join",)),
            (4.0, ("send", 18, 38, 16, 0.1)),
        ),
    ),
}


@pytest.mark.parametrize("schedule", REGRESSIONS.values(), ids=REGRESSIONS.keys())
def test_schedules_that_found_bugs(schedule: Schedule) -> None:
    sim = run_schedule(schedule)
    assert not sim.failures, describe(sim)


def test_a_fixed_schedule_is_reproducible() -> None:
    schedule = Schedule(
        seed=1234,
        size=4,
        max_latency=0.02,
        initial_names=6,
        chaos=(
            (0.5, ("send", 0, 0, 5, 0.1)),
            (0.1, ("partition", 0b0011, False)),
            (2.0, ("register", 1, "permanent")),
            (3.0, ("crash", 2)),
            (5.0, ("heal",)),
            (1.0, ("join",)),
            (0.5, ("incr", 1, 3, 10, 0.1)),
            (0.0, ("pause", 0, 9.0)),
            (0.5, ("incr", 0, 4, 5, 0.5)),
            (1.0, ("restart", 1)),
        ),
        graceful=(
            (0.0, ("send", 1, 2, 10, 0.05)),
            (0.2, ("join",)),
            (0.2, ("leave", 0)),
            (0.0, ("send", 2, 3, 10, 0.05)),
        ),
    )
    first, second = run_schedule(schedule), run_schedule(schedule)
    assert not first.failures, describe(first)
    # The same schedule does the same things at the same virtual times, to the incarnation.
    assert first.trace == second.trace
    assert [n.incarnation for n in first.live] == [n.incarnation for n in second.live]
    assert dict(first.errors) == dict(second.errors)


def test_conflict_states_whose_answers_never_come_go_again_after_the_silence_and_the_cluster_settles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # n0 is cut off while names are incremented on both sides (each side restarts the other's
    # names: two copies of each), and the cut heals. The winners' nodes ignore the first
    # losers' states they get (as if the winner's node had been paused when they came): the
    # losers' nodes hear no answer for longer than the 5 s they wait in silence, so they send
    # the waiting states again, under the same refs (docs/internals.md, "Conflicts at
    # scale"); each is taken once, and the cluster settles with every acknowledged increment.
    # (A timed pause of n0 after the heal stopped catching the exchange in flight once
    # handlers ran in the turn their frame arrives: pauses 0 to 3 s after it all missed.)
    resent: list[tuple[str, int]] = []
    ignored: list[int] = []
    handle_timer = ConflictOutbox.handle_timer
    on_state = RegistryService._on_conflict_state

    def spy(self: ConflictOutbox, now: float) -> Due:
        due = handle_timer(self, now)
        resent.extend(due.resend)
        return due

    def unanswered(self: RegistryService, node: str, msg: ConflictState) -> None:
        if len(ignored) < 3:
            ignored.append(msg.ref)
            return
        on_state(self, node, msg)

    monkeypatch.setattr(ConflictOutbox, "handle_timer", spy)
    monkeypatch.setattr(RegistryService, "_on_conflict_state", unanswered)
    schedule = Schedule(
        seed=4242,
        size=3,
        max_latency=0.02,
        initial_names=8,
        chaos=(
            (0.5, ("partition", 1, False)),
            (0.0, ("incr", 0, 1, 3, 0.1)),
            (0.0, ("incr", 1, 2, 3, 0.1)),
            (6.0, ("heal",)),
            (0.0, ("incr", 2, 3, 3, 0.1)),
            (0.0, ("wait", 20.0)),
        ),
        graceful=((0.0, ("send", 1, 2, 5, 0.05)),),
    )
    sim = run_schedule(schedule)
    assert not sim.failures, describe(sim)
    assert ignored, "no loser's state was sent: the schedule no longer makes conflicts"
    # Those the silence caught went again from the timer (a state sent before one that was
    # answered goes again at once, without waiting: not counted here).
    assert resent, "no state waited through a silent round: the schedule no longer exercises it"
