"""The demo's driver: a cluster of real node processes, three changes, and a verdict.

Theory of operation:

* Three server nodes (``a``, ``b``, ``c``) run as child OS processes (``NodeProcess``),
  each with the demo app (``_app``). They find each other, and the driver, by multicast
  gossip on the loopback interface (TTL 1), on a port picked at random per run and with a
  random cookie, so two demos running side by side never meet.
* The driver is itself a node, ``role="client"``: it holds a replica of the registry,
  registers, casts and calls by name, and hosts no worker. It registers the workers with
  ``register(("worker", i), Worker, i)`` and keeps, for each, the count it expects: every
  cast it sent, since the worker's creation or its last restart.
* Then, one step at a time: (1) node ``d`` joins: about a quarter of the names now belong
  to it and their workers move there with their counts, while the driver keeps casting;
  (2) node ``b`` stops gracefully (SIGTERM): it hands each of its workers off before it
  exits; (3) node ``c`` is killed (SIGKILL): the survivors restart its workers from their
  factory, each from its last checkpoint (a worker checkpoints its count write-behind
  after each cast, and waiting before it answers a call). Between steps the driver casts
  another round.
* After each step it waits, with a deadline and never for a fixed time, until the cluster
  has settled (every replica places names on the same nodes, every worker resolves to its
  ring owner, each node hosts what the replicas say it hosts), then checks what moved and
  calls every worker. The verdict at the end repeats every check from scratch.

Rules: all traffic stays on loopback; every loop that sends is bounded (in rounds or by a
deadline); every child process is stopped however the demo ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from distable import (
    CallTimeout,
    DistableError,
    Gossip,
    MembershipConfig,
    MissingExtra,
    Node,
    Pid,
    ProcessExited,
)
from distable.cli._watch import Watch
from distable.ring import Ring, hash_name
from distable.testing import NodeProcess, free_gossip_port

from ._app import CENSUS, Worker
from ._view import LiveView, PlainView, Progress, View

if TYPE_CHECKING:
    from distable.web import WebServer

T = TypeVar("T")
Name = tuple[str, int]

#: The demo app every server node starts (``--app``).
APP = "distable.demo._app:start_app"
#: The three first server nodes, the one that joins, the one stopped, the one killed.
FIRST = ("a", "b", "c")
NEWCOMER, LEAVER, VICTIM = "d", "b", "c"
#: Registrations and calls in flight at once from the driver.
CONCURRENCY = 64
#: Seconds between two checks of a condition (settled, counts caught up).
POLL = 0.1
#: Seconds between two refreshes of the view (each after a poll of every node).
REFRESH = 0.25
#: Workers picked at random for a cast at each check while workers move (beside every
#: worker still to move, which gets one too).
CASTS_TO_OTHERS = 50
#: Gossip ports the demo picks from (the cluster tests use 47000-47999).
GOSSIP_PORTS = range(46000, 47000)


def worker(i: int) -> Name:
    """The registered name of worker ``i``."""
    return ("worker", i)


class DemoError(Exception):
    """The cluster did not reach the state a step waits for, within the deadline."""


@dataclass(frozen=True)
class Options:
    """The demo's settings (see ``python -m distable.demo --help``).

    Attributes:
        workers: how many workers to register.
        seed: seeds the casts (how many each worker gets) and the samples cast to.
        plain: plain lines instead of the live view.
        keep_running: keep the cluster and the dashboard up after the verdict, until
            Ctrl-C or SIGTERM.
        pause: seconds to pause between steps, so that a person can follow.
        timeout: seconds each step may take to settle before the demo fails.
        dashboard_port: the dashboard's port with ``keep_running`` (0: any free one).
        log_dir: where each node's log goes (one file per node).
    """

    workers: int
    seed: int
    plain: bool
    keep_running: bool
    pause: float
    timeout: float
    dashboard_port: int
    log_dir: Path


def pick_gossip_port() -> int:
    """A port in ``GOSSIP_PORTS`` that no socket on this host has bound."""
    try:
        return free_gossip_port(GOSSIP_PORTS)
    except RuntimeError as exc:
        raise DemoError(str(exc)) from None


async def bounded(items: Iterable[T], action: Callable[[T], Awaitable[Any]]) -> list[Any]:
    """``action(item)`` for every item, at most ``CONCURRENCY`` at a time; results (or the
    exceptions raised) in order."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> Any:
        async with slots:
            return await action(item)

    return list(await asyncio.gather(*(one(item) for item in items), return_exceptions=True))


class Casting:
    """Casts the driver sends while workers move: at each check, one to every worker of
    ``moving`` that it still sees at its old pid, and one to each of a few others."""

    def __init__(self, demo: Demo, moving: set[Name], before: dict[Name, Pid | None]) -> None:
        self.demo = demo
        self.moving = sorted(moving)
        self.before = before
        self.sent = self.to_moving = 0

    def tick(self) -> None:
        demo = self.demo
        whereis = demo.client.whereis
        targets = [name for name in self.moving if whereis(name) == self.before[name]]
        self.to_moving += len(targets)
        targets += demo.rng.sample(demo.names, min(CASTS_TO_OTHERS, len(demo.names)))
        for name in targets:
            demo.client.cast(name, "incr")  # by name: to whatever pid the replica says now
            demo.expected[name] += 1
        self.sent += len(targets)

    def summary(self) -> str:
        return f"{self.sent:,} casts sent while they moved ({self.to_moving:,} to workers not yet moved), none lost"


class Demo:
    """One run of the demo. ``await run()`` returns the exit code (0: verdict OK)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.cookie = secrets.token_hex(16)
        self.gossip_port = pick_gossip_port()
        self.names = [worker(i) for i in range(options.workers)]
        self.positions = [hash_name(name) for name in self.names]
        self.expected: dict[Name, int] = {}  # casts sent to each worker since it (re)started
        self.restarted: set[Name] = set()  # workers restarted after the SIGKILL
        self.children: dict[str, NodeProcess] = {}  # every server node started, by short name
        self.servers: list[str] = []  # short names of the server nodes in the cluster now
        self.owners: list[str | None] = [None] * len(self.names)  # each name's ring owner among ``servers``
        self.failures: list[str] = []
        self.results: dict[str, int | float] = {}  # the summary line's figures
        self.handed_off: set[Name] = set()  # workers moved at least once by a handoff
        self.findings: list[str] = []  # what an OK verdict rests on
        self.progress = Progress(total=options.workers)
        self.interrupted = False
        self._logs: list[IO[bytes]] = []
        self._client: Node | None = None
        self._watch: Watch | None = None
        self._view: View | None = None
        self._started = time.monotonic()

    # --- the pieces every step uses ---------------------------------------------------------

    @property
    def client(self) -> Node:
        assert self._client is not None, "the driver's node is not started"
        return self._client

    @property
    def watch(self) -> Watch:
        assert self._watch is not None
        return self._watch

    @property
    def view(self) -> View:
        assert self._view is not None
        return self._view

    def full(self, short: str) -> str:
        return self.children[short].name

    def short(self, full: str | None) -> str:
        return self.watch.short(full)

    def say(self, text: str) -> None:
        self.view.say(text)

    def fail(self, text: str) -> None:
        self.failures.append(text)
        self.say(f"   FAILED: {text}")

    async def start_server(self, short: str) -> NodeProcess:
        """Start server node ``short`` in its own OS process, running the demo app."""
        log = self._log_file(short)
        child = await NodeProcess.start(
            short,
            self.cookie,
            gossip="127.0.0.1",  # multicast on the loopback interface, TTL 1
            gossip_port=self.gossip_port,
            app=[APP],
            preset="local",
            stderr=log,
            new_session=True,  # a Ctrl-C reaches only the driver, which stops the nodes one by one
        )
        self.children[short] = child
        self.servers.append(short)
        self.watch.add(child.name, short)
        return child

    def _log_file(self, short: str) -> IO[bytes]:
        """The file node ``short`` logs to, open until the demo ends."""
        log = open(self.options.log_dir / f"{short}.log", "ab")  # noqa: SIM115 (open while the child runs)
        self._logs.append(log)
        return log

    def set_servers(self, servers: list[str]) -> None:
        """The cluster's server nodes are now ``servers``: every name's owner changes with them."""
        self.servers = servers
        ring = Ring().place([self.full(s) for s in servers])
        self.owners = [ring.owner_of_hash(position) for position in self.positions]

    def where(self) -> dict[Name, Pid | None]:
        """Every worker's pid, as the driver's replica resolves it (``whereis``: a local read)."""
        whereis = self.client.whereis
        return {name: whereis(name) for name in self.names}

    def lookups(self) -> Counter[str]:
        """Update the progress figures from real lookups; how many workers each node hosts."""
        whereis = self.client.whereis
        resolved = on_owner = 0
        hosted: Counter[str] = Counter()
        for name, owner in zip(self.names, self.owners, strict=True):
            pid = whereis(name)
            if pid is None:
                continue
            resolved += 1
            on_owner += pid.node == owner
            hosted[pid.node] += 1
        self.progress.resolved, self.progress.on_owner = resolved, on_owner
        return hosted

    async def problems(self, registered: int) -> list[str]:
        """What keeps the cluster from having settled with ``registered`` workers (none: settled).

        Settled: the driver and every server node place names on exactly the servers;
        every worker resolves, here, to a pid on its ring owner; and each server's own
        figures agree: its replica holds every name, it claims the names the replicas say
        it hosts, and it runs one process for each (plus its census).
        """
        out: list[str] = []
        expected = sorted(self.full(s) for s in self.servers)
        placement = sorted(self.client.statistics().registry.placement_nodes)
        if placement != expected:
            out.append(f"the driver places names on {[self.short(n) for n in placement]}")
        hosted = self.lookups()
        if self.progress.resolved < registered:
            out.append(f"{registered - self.progress.resolved} workers do not resolve")
        elif self.progress.on_owner < registered:
            out.append(f"{registered - self.progress.on_owner} workers are not on their owner yet")
        for short in self.servers:
            try:
                stats = await self.client.statistics_of(self.full(short), timeout=2.0)
            except (CallTimeout, ProcessExited) as exc:
                out.append(f"{short} does not answer ({exc})")
                continue
            registry, full = stats.registry, self.full(short)
            if sorted(registry.placement_nodes) != expected:
                out.append(f"{short} places names on {[self.short(n) for n in registry.placement_nodes]}")
            if registry.names != registered:
                out.append(f"{short}'s replica holds {registry.names} names")
            if registry.local_names != hosted[full]:
                out.append(f"{short} claims {registry.local_names} names, the replica says {hosted[full]}")
            if stats.runtime.processes != hosted[full] + 1:  # + its census
                out.append(f"{short} runs {stats.runtime.processes - 1} workers, hosts {hosted[full]}")
        return out

    async def settle(self, what: str, registered: int, tick: Callable[[], None] | None = None) -> None:
        """Wait until ``problems()`` is empty, calling ``tick`` between checks.

        Raises:
            DemoError: not settled within the step's timeout.
        """
        deadline = time.monotonic() + self.options.timeout
        while True:
            problems = await self.problems(registered)
            if not problems:
                return
            if time.monotonic() > deadline:
                raise DemoError(f"{what}: not settled after {self.options.timeout:g} s: {'; '.join(problems[:4])}")
            if tick is not None:
                tick()
            await asyncio.sleep(POLL)

    def cast_round(self, names: Iterable[Name]) -> int:
        """Cast 1 to 3 "incr" (seeded) to each of ``names``; the number of casts sent."""
        sent = 0
        for name in names:
            n = self.rng.randint(1, 3)
            for _ in range(n):
                self.client.cast(name, "incr")
            self.expected[name] += n
            sent += n
        return sent

    async def counts_right(self, when: str) -> bool:
        """Call ``"get"`` on every worker: each must answer the count the driver expects,
        from the node that ``whereis`` names. Reports what is wrong as a failure.

        A cast sent to a worker's old pid just before the driver saw it move is forwarded
        by the old host, so it may arrive after a call sent straight to the new one: counts
        still short of the expectation are asked again while they keep catching up.
        """
        pending = self.names
        previous: dict[Name, Any] = {}  # the last round's wrong answers
        deadline = time.monotonic() + 5.0
        while True:
            replies = await bounded(pending, lambda name: self.client.call(name, "get", timeout=10.0))
            wrong: dict[Name, Any] = {}
            behind = []  # answered from the right node, with a count that may still catch up
            for name, reply in zip(pending, replies, strict=True):
                pid = self.client.whereis(name)
                if reply == (self.expected[name], pid.node if pid else None):
                    continue
                wrong[name] = reply
                if isinstance(reply, tuple) and reply[0] < self.expected[name]:
                    behind.append(name)
            catching_up = any(wrong[name] != previous.get(name) for name in behind)
            if not wrong or len(behind) < len(wrong) or not catching_up or time.monotonic() > deadline:
                break
            pending, previous = behind, wrong
            await asyncio.sleep(POLL)
        if not wrong:
            return True
        examples = []
        for name, reply in sorted(wrong.items())[:3]:
            pid = self.client.whereis(name)
            node = self.short(pid.node) if pid is not None else "nowhere"
            examples.append(f"{name} answered {reply!r}, not ({self.expected[name]}, {node})")
        self.fail(f"{when}, {len(wrong):,} workers miscounted, e.g. {'; '.join(examples)}")
        return False

    async def restarts_reported(self) -> int:
        """The restarts the server nodes report (``statistics().registry.restarts``), in total."""
        total = 0
        for short in self.servers:
            with contextlib.suppress(CallTimeout, ProcessExited):
                total += (await self.client.statistics_of(self.full(short), timeout=2.0)).registry.restarts
        return total

    async def show_table(self) -> None:
        """Poll every node now, then show the node table (the plain view prints it)."""
        await self.watch.poll()
        self.view.table()

    def node_gone(self, child: NodeProcess, status: str) -> None:
        """``child`` was stopped or killed: none of its workers run any more."""
        row = self.watch.rows[child.name]
        row.status, row.workers = status, 0

    async def pause(self) -> None:
        """A pause for the person watching (not a wait for any condition)."""
        if self.options.pause > 0:
            self.progress.detail += f"   (next step in {self.options.pause:g} s)"
            self.view.refresh()
            await asyncio.sleep(self.options.pause)

    # --- the steps ------------------------------------------------------------------------------

    async def form_cluster(self) -> None:
        """Start the three first server nodes, register every worker, cast a first round."""
        self.view.step(
            "Starting",
            f"3 server nodes, each in its own OS process, find each other by multicast on 127.0.0.1 "
            f"(port {self.gossip_port}, TTL 1)",
        )
        await asyncio.gather(*(self.start_server(short) for short in FIRST))
        self.set_servers(list(FIRST))
        await self.settle("forming the cluster", 0)
        for short in FIRST:
            self.say(f"   {short} is up: {self.full(short)} (OS process {self.children[short].proc.pid})")

        n = len(self.names)
        self.view.step(
            "Registering",
            f"{n:,} workers, from the driver: register(('worker', i), Worker, i) starts each on the owner of its name",
        )

        async def register(name: Name) -> Pid:
            pid = await self.client.register(name, Worker, name[1])
            self.expected[name] = 0
            self.progress.registered += 1
            return pid

        started = time.monotonic()
        failed = [r for r in await bounded(self.names, register) if isinstance(r, BaseException)]
        if failed:
            raise DemoError(f"{len(failed)} registrations failed, e.g. {failed[0]!r}")
        seconds = time.monotonic() - started
        casts = self.cast_round(self.names)
        await self.settle("registration", n)
        hosted = self.lookups()
        spread = ", ".join(f"{short} {hosted[self.full(short)]:,}" for short in self.servers)
        self.say(f"   {n:,} workers registered in {seconds:.1f} s ({n / seconds:,.0f}/s): {spread}")
        if await self.counts_right("after registration"):
            self.say(f"   {casts:,} casts sent, each worker answers its count")
        await self.show_table()

    async def join(self) -> None:
        """Step 1: a fourth node joins; the workers whose names it now owns move to it."""
        self.view.step(
            "Step 1/3",
            f"node {NEWCOMER} joins: about a quarter of the names now belong to it, and their "
            "workers move there with their state, while the driver keeps casting",
        )
        before = self.where()
        handoffs = self.watch.handoffs_started()
        await self.start_server(NEWCOMER)
        self.set_servers([*FIRST, NEWCOMER])
        newcomer = self.full(NEWCOMER)
        due = {name for name, owner in zip(self.names, self.owners, strict=True) if owner == newcomer}
        casting = Casting(self, due, before)
        await self.settle("the join", len(self.names), casting.tick)
        after = self.where()
        moved = {name for name in self.names if after[name] != before[name]}
        await self.watch.poll()
        reported = self.watch.handoffs_started() - handoffs
        n = len(self.names)
        self.say(
            f"   {len(moved):,} of {n:,} workers ({len(moved) / n:.0%}) moved to {NEWCOMER} "
            f"(the nodes report {reported:,} handoffs)"
        )
        if moved != due:
            self.fail(f"{len(moved ^ due)} workers moved that should not have, or stayed that should have moved")
        if any(pid is None or pid.node != newcomer for name, pid in after.items() if name in moved):
            self.fail(f"some workers moved elsewhere than to {NEWCOMER}")
        if await self.counts_right("after the join"):
            self.say(f"   every worker answers its count: each moved with its state; {casting.summary()}")
        self.handed_off |= moved
        self.results.update(join_moved=len(moved), join_handoffs=reported)
        await self.show_table()

    async def leave(self) -> None:
        """Step 2: a node stops gracefully; it hands each of its workers off, then exits."""
        self.view.step(
            "Step 2/3",
            f"node {LEAVER} stops gracefully (SIGTERM): before it exits, it hands each of its workers, "
            "with its state, to the name's new owner",
        )
        casts = self.cast_round(self.names)
        self.say(f"   {casts:,} more casts first (they are on their way when {LEAVER} gets SIGTERM)")
        before = self.where()
        handoffs = self.watch.handoffs_started()
        leaving = {name for name, pid in before.items() if pid is not None and pid.node == self.full(LEAVER)}
        casting = Casting(self, leaving, before)
        child = self.children[LEAVER]
        self.watch.rows[child.name].status = "leaving"
        child.terminate()
        following = asyncio.ensure_future(self.watch.follow(child.name))  # its handoff reports
        self.set_servers([s for s in self.servers if s != LEAVER])
        await self.settle("the graceful leave", len(self.names), casting.tick)
        code = await child.wait(self.options.timeout)
        await following  # it ends when the node no longer answers
        self.node_gone(child, "stopped")
        if code != 0:
            self.fail(f"{LEAVER} exited with code {code}")
        after = self.where()
        moved = {name for name in self.names if after[name] != before[name]}
        await self.watch.poll()
        reported = self.watch.handoffs_started() - handoffs
        spread = Counter(self.short(pid.node) for name, pid in after.items() if name in moved and pid is not None)
        self.say(
            f"   {LEAVER} exited (code {code}); its {len(leaving):,} workers moved: "
            f"{', '.join(f'{k} {v:,}' for k, v in sorted(spread.items()))} "
            f"(the nodes report {reported:,} handoffs)"
        )
        if moved != leaving:
            self.fail(f"{len(moved ^ leaving)} workers moved that should not have, or stayed that should have moved")
        if await self.counts_right("after the graceful leave"):
            self.say(f"   every worker answers its count: each moved with its state; {casting.summary()}")
        self.handed_off |= moved
        self.results.update(leave_moved=len(moved), leave_handoffs=reported)
        await self.show_table()

    async def kill(self) -> None:
        """Step 3: a node is killed; its workers restart on their new owners from their last
        checkpoint.

        Every worker answered a ``"get"`` just before (each answer waited until its count
        was on its standby), then the driver casts one more round and kills the node at
        once: a restarted worker must come back with at least the count it answered, and
        at most the count the driver sent; the difference is what write-behind lost, by
        design (the increments made after the last checkpoint its standby held).
        """
        self.view.step(
            "Step 3/3",
            f"node {VICTIM} is killed (SIGKILL): no goodbye, no handoff; once the others declare it "
            "failed, its workers restart from their factory on their new owners, from their last checkpoint",
        )
        casts = self.cast_round(self.names)
        await self.counts_right("before the kill")  # each answer waited for its count's checkpoint
        before = self.where()
        lost = {name for name, pid in before.items() if pid is not None and pid.node == self.full(VICTIM)}
        acked = {name: self.expected[name] for name in lost}
        restarts = await self.restarts_reported()
        victim = self.children[VICTIM]
        casts += self.cast_round(self.names)
        # One call over the same link, after the casts: once it is answered, the victim has
        # received them all and counted most; their write-behind checkpoints are on their way.
        probe = min(lost)
        await self.client.call(probe, "get", timeout=10.0)
        acked[probe] = self.expected[probe]
        self.say(f"   {casts:,} more casts first; the kill follows as soon as they reached {VICTIM}")
        self.watch.killed.add(victim.name)
        victim.kill()
        await victim.wait(self.options.timeout)
        self.node_gone(victim, "killed")
        self.set_servers([s for s in self.servers if s != VICTIM])
        started = time.monotonic()
        await self.settle("recovery from the kill", len(self.names))
        seconds = time.monotonic() - started
        after = self.where()
        restarted = {name for name in self.names if after[name] != before[name]}
        reported = await self.restarts_reported() - restarts
        spread = Counter(self.short(pid.node) for name, pid in after.items() if name in lost and pid is not None)
        self.say(
            f"   {VICTIM}'s {len(lost):,} workers run again {seconds:.1f} s after the kill: "
            f"{', '.join(f'{k} {v:,}' for k, v in sorted(spread.items()))} "
            f"(the nodes report {reported:,} restarts)"
        )
        if restarted != lost:
            self.fail(f"{len(restarted ^ lost)} workers restarted that should not have, or did not restart")
        dropped = await self.restored_counts(lost, acked)
        self.restarted = lost
        if await self.counts_right("after the kill"):
            sent = sum(self.expected[name] - acked[name] for name in lost) + dropped
            self.say(
                f"   the restarted workers continue from their last checkpoint: none lost a count it had "
                f"answered; {dropped:,} of the {sent:,} casts they received after that were not yet "
                f"checkpointed when {VICTIM} died (write-behind: the last few milliseconds), lost by design; "
                f"the other {len(self.names) - len(lost):,} workers kept their counts"
            )
        self.results.update(kill_restarted=len(restarted), kill_restarts=reported, kill_increments_lost=dropped)
        await self.show_table()

    async def restored_counts(self, lost: set[Name], acked: dict[Name, int]) -> int:
        """Ask each restarted worker its count: at least the count it answered before the kill
        (its checkpoint was acknowledged), at most what the driver sent. The driver expects
        that count from now on; returns the increments lost in all (sent, never checkpointed)."""
        names = sorted(lost)
        replies = await bounded(names, lambda name: self.client.call(name, "get", timeout=10.0))
        dropped = 0
        for name, reply in zip(names, replies, strict=True):
            count = reply[0] if isinstance(reply, tuple) else None
            if count is None or not acked[name] <= count <= self.expected[name]:
                self.fail(
                    f"after the kill, {name} answered {reply!r}: its count should be between "
                    f"{acked[name]} (checkpointed before the kill) and {self.expected[name]} (sent)"
                )
                continue
            dropped += self.expected[name] - count
            self.expected[name] = count
        return dropped

    async def verdict(self) -> None:
        """Every check again, from scratch: census, lookups, owners, counts."""
        self.view.step("Verdict", "one more round of casts; then every worker is counted, looked up and called")
        casts = self.cast_round(self.names)
        await self.settle("the last casts", len(self.names))
        n = len(self.names)

        # Alive exactly once: the union of what each node's census finds running there.
        replies = await self.client.multi_call(CENSUS, "workers", timeout=10.0)
        census: Counter[int] = Counter()
        found_on: dict[int, str] = {}
        for reply in replies:
            if not reply.ok:
                self.fail(f"the census of {self.short(reply.pid.node)} failed: {reply.error!r}")
                continue
            census.update(reply.value)
            found_on.update(dict.fromkeys(reply.value, reply.pid.node))
        counted = {self.short(reply.pid.node) for reply in replies}
        if counted != set(self.servers):
            self.fail(f"census from {sorted(counted)}, expected {sorted(self.servers)}")
        missing = [i for i in range(n) if census[i] == 0]
        twice = [i for i in range(n) if census[i] > 1]
        unknown = sorted(set(census) - set(range(n)))
        if missing or twice or unknown:
            self.fail(f"census: {len(missing)} workers missing, {len(twice)} running twice, {len(unknown)} unknown")

        # Found by the driver, on the node that runs it, which is its ring owner.
        where = self.where()
        unresolved = [name for name, pid in where.items() if pid is None]
        elsewhere = [name for name, pid in where.items() if pid is not None and found_on.get(name[1]) != pid.node]
        off = [
            name
            for (name, pid), owner in zip(where.items(), self.owners, strict=True)
            if pid is not None and pid.node != owner
        ]
        if unresolved:
            self.fail(f"{len(unresolved)} workers do not resolve, e.g. {unresolved[:3]}")
        if elsewhere:
            self.fail(f"{len(elsewhere)} workers resolve to another node than the one running them")
        if off:
            self.fail(f"{len(off)} workers are not on their ring owner, e.g. {off[:3]}")

        # Their state: every count as expected.
        await self.counts_right("at the end")
        graceful = n - len(self.restarted)
        self.results.update(
            workers=n,
            casts=sum(self.expected.values()),
            last_casts=casts,
            restarted=len(self.restarted),
            seconds=round(time.monotonic() - self._started, 1),
        )
        self.findings = [
            f"{n:,} workers alive exactly once (the census of {', '.join(self.servers)}), each found by "
            "whereis from the driver on its ring owner",
            f"{graceful:,} workers kept their state throughout ({len(self.handed_off - self.restarted):,} of them "
            "moved by a handoff at least once): each answered every cast it was sent",
            f"{len(self.restarted):,} workers restarted after the SIGKILL of {VICTIM} from their last "
            "checkpoint (no count they had answered was lost): each answered the casts it was sent since",
        ]

    # --- the whole run ------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run every step and the verdict; 0 if it is OK, else 1. Children are always stopped."""
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.stop_servers)
            gossip = Gossip(port=self.gossip_port, if_addr="127.0.0.1", ttl=1, interval=0.25)
            self._client = await stack.enter_async_context(
                Node("driver", cookie=self.cookie, role="client", cluster=gossip, membership=MembershipConfig.local())
            )
            self._watch = Watch(self.client)
            stack.callback(self.watch.close)
            self.watch.add(self.client.name, "driver", role="client")
            self._view = self.make_view()
            stack.callback(self.view.close)
            watching = asyncio.ensure_future(self.watching())
            stack.push_async_callback(self.cancel, watching)
            try:
                await self.form_cluster()
                await self.pause()
                await self.join()
                await self.pause()
                await self.leave()
                await self.pause()
                await self.kill()
                await self.pause()
                await self.verdict()
            except (DemoError, DistableError, TimeoutError) as exc:
                self.fail(f"{type(exc).__name__}: {exc}")
            self.view.close()  # the verdict comes last, below the final picture
            self.report()
            if self.options.keep_running:
                self.view.open()
                await self.keep_running()
        return 1 if self.failures else 0

    def make_view(self) -> View:
        if self.options.plain:
            return PlainView(self.watch, self.progress)
        header = (
            f"distable demo: {len(self.names):,} workers on real node processes, gossip on 127.0.0.1 "
            f"port {self.gossip_port} (TTL 1), seed {self.options.seed}"
        )
        return LiveView(self.watch, self.progress, header)

    def report(self) -> None:
        """Print the verdict, what it rests on (or what failed), and the summary line."""
        self.say("")
        if self.failures:
            count = len(self.failures)
            self.say(f"verdict: FAILED ({count} problem{'s' if count > 1 else ''})")
            lines = self.failures
        else:
            self.say("verdict: OK")
            lines = self.findings
        for line in lines:
            self.say(f"   {line}")
        summary = " ".join(f"{key}={value}" for key, value in self.results.items())
        self.say(f"summary: {summary} seed={self.options.seed}")

    async def watching(self) -> None:
        """Poll every node and redraw, about 4 times a second, until cancelled."""
        while True:
            await self.watch.poll()
            self.lookups()
            self.view.refresh()
            await asyncio.sleep(REFRESH)

    async def keep_running(self) -> None:
        """Keep the cluster up, with the web dashboard on the driver's node, until
        cancelled (Ctrl-C or SIGTERM); then the nodes stop gracefully."""
        server: WebServer | None = None
        try:
            from distable.web import start_web  # only here: it loads aiohttp (the web extra)

            server = await start_web(self.client, "127.0.0.1", self.options.dashboard_port)
            where = f"the dashboard is at {server.url}"
        except (OSError, MissingExtra) as exc:
            where = f"no dashboard ({exc})"
        self.view.step("Running", f"the cluster stays up, {where}; Ctrl-C stops every node gracefully")
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self.interrupted or task is None:
                raise
            task.uncancel()  # Ctrl-C is how this mode ends: stop gracefully, exit with the verdict's code
            self.say("stopping every node, one at a time ...")
        finally:
            if server is not None:
                await server.close()

    @staticmethod
    async def cancel(task: asyncio.Future[Any]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def running(self) -> list[NodeProcess]:
        return [child for child in self.children.values() if child.proc.returncode is None]

    async def stop_servers(self) -> None:
        """Stop every server node gracefully, one at a time, newest first (each hands its
        workers to those still up; the last one stops its own); kill any that lingers."""
        try:
            for child in reversed(self.running()):
                row = self.watch.rows.get(child.name) if self._watch else None
                if row is not None:
                    row.status = "leaving"
                await child.close()
                if row is not None:
                    row.status = "stopped"
        finally:
            self.kill_all()
            for log in self._logs:
                log.close()

    def kill_all(self) -> None:
        """SIGKILL every child still running (a second Ctrl-C, or a failed graceful stop)."""
        for child in self.children.values():
            child.kill()
