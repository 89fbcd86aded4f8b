"""A Jepsen-style fault test of distable: real ``distable node`` processes, a seeded nemesis,
a workload of acknowledged operations on named counters, and a checker.

One run (``run(Config(seed=...))``):

1. Start ``servers`` server nodes (``python -m distable.cli node``, names ``s0``.. on fixed
   loopback ports, so that a node restarts under the same name; gossip on a free loopback
   port), each running ``tests.chaos.app:start``, and a ``role="client"`` node in this
   process. Register ``names`` counters through the client and wait until the cluster is
   quiescent (below).
2. Run the workload (``clients`` tasks, each calling ``("add", op id)`` on a random counter
   at most ``rate`` times a second; each answer is an acknowledgement, recorded with the
   lineage and node that answered; an error or timeout is indeterminate) while the nemesis
   plays its schedule: ``faults`` faults drawn from the seed, at least one of each kind
   (``KINDS``), spread over ``window`` seconds and overlapping, each on a target chosen
   (from the seed) among the healthy nodes when it starts, never leaving fewer than two
   healthy ones (a fault that would is skipped, and said so). With ``Config(partitions=True)``
   the nemesis also cuts the network (``PARTITION``): the nodes keep running on both sides,
   each side declares the other failed and restarts its names, and when the cut heals the
   conflicts must lose nothing acknowledged (a partition excuses no loss; with
   checkpoints, the nodes cut off count as failed while the cut lasts: to the checkpoint
   guarantee, a node that cannot be reached has failed).
3. Stop the workload; poll (no sleeps) until the cluster is quiescent, at most
   ``quiesce_timeout`` seconds: every live node answers; all place names on exactly the
   live nodes; every replica equals the client's and holds every registered name, on its
   owner; exactly one live copy per name, the one the replicas point at; nothing frozen,
   gated, moving, pending or due to restart. The time from the end of the last fault to
   then is the run's time to quiescence.
4. Check the data: every acknowledged op is in its counter's surviving state, unless the
   lineage that acknowledged it was lost with a crashed (SIGKILLed) host, or acknowledged
   before the drain of a leaving host timed out (its log's warning, ``DRAIN_TIMED_OUT``:
   the names still there stop, and their owners restart them without their state); every
   lineage that acknowledged ops is the surviving one or was absorbed into it, unless a
   host of that lineage crashed, was paused or timed out its drain (a state reset
   otherwise). Then SIGTERM every node: each must exit 0 (as must every graceful leave
   during the run).

With ``Config(checkpoints=True)`` the counters answer an ``add`` only once it is in an
acknowledged checkpoint (registered with ``replicas`` standbys; see ``tests.chaos.app``),
and a crash excuses nothing by itself: the guarantee is that an acknowledged checkpoint
survives while at most ``replicas`` of the nodes holding it fail before re-replication
completes. The checker models that from its own fault timeline (``Failure``: a SIGKILL
until the restart is up, a SIGSTOP until SIGCONT) and the ledgers, conservatively (the
other failures may be of any node, not only the name's standbys): a missing acknowledged
op is pinned to where it went missing (the first restore of its lineage that lacks it, or
its lineage's last host's failure, or a failure of a host of the copy that had it) and
allowed (``lost_allowed``) only if ``replicas`` other failures were under way there, or
had ended less than ``rereplication`` seconds before; otherwise it is a violation
(``lost_violating``): ``backwards`` if its lineage survives (the state went back),
``lost-ack`` if not (see ``Run.lost_at``).

Each problem is a ``Violation`` with a kind; the run keeps its files in ``run_dir``:
``harness.log`` (the plan, every fault and check with times), ``acks.jsonl``, each node
launch's log (``<node>.<launch>.log``), its ledger (``ledger/``: which lineage each node
hosted, see ``tests.chaos.app``) and, for the nodes up at the end, their event journals
(``events.<node>.<launch>.jsonl``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import re
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from distable import Gossip, MembershipConfig, Node, Pid
from distable.testing import die_with_parent, eventually, free_gossip_port, free_tcp_ports

from ._partition import Partitions

ROOT = Path(__file__).resolve().parents[2]  # nodes import the app as tests.chaos.app
APP = "tests.chaos.app"
FACTORY = f"{APP}:Counter"
MAX_SERVERS = 7
MIN_HEALTHY = 2
CALL_TIMEOUT = 8.0  # an op may wait for a failure verdict, a restart or a handoff gate
INSPECT_TIMEOUT = 3.0
START_TIMEOUT = 40.0  # a node's start on a busy machine (interpreter, join wait, app)
DRAIN_TIMEOUT = 15.0  # --drain-timeout of every node
EXIT_TIMEOUT = DRAIN_TIMEOUT + 15.0

#: The nemesis's fault kinds: every schedule has at least one of each (and of ``PARTITION``
#: with ``Config.partitions``).
KINDS = ("kill", "term", "term-kill", "pause", "join", "leave", "join-pause")
#: A network partition: a minority of the healthy nodes (one, or two of five or more) cut
#: off from the other nodes, both ways, for a few seconds; every node keeps running, and
#: the client reaches both sides (``tests.chaos._partition``).
PARTITION = "partition"
#: Kinds that make a node's state legitimately lost (a crash) or possibly reset (a pause).
CRASHES = frozenset({"kill", "term-kill"})
PAUSES = frozenset({"pause", "join-pause"})
#: The WARNING of a leaving node whose drain timed out (``RegistryService.drain``, in the
#: node's log, ``TextFormatter``'s format): the names still there stop at once (calls
#: waiting for them fail) and their owners restart them fresh, without their state. It
#: lists at most five names (then ", ...").
DRAIN_TIMED_OUT = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(?P<ms>\d{3}) WARNING \[(?P<node>[^\]]+)\] \S+: "
    r"drain timed out after [\d.]+ s with (?P<count>\d+) name\(s\) still here \((?P<names>.*)\): "
    r"they stop now, and their owners restart them fresh, without their state$"
)


@dataclass(frozen=True)
class Config:
    seed: int
    run_dir: Path
    servers: int = 5
    names: int = 200
    clients: int = 4
    rate: float = 25.0  # ops per second per client task, at most
    faults: int = 11
    window: float = 40.0  # seconds over which faults start
    quiesce_timeout: float = 30.0
    log_level: str = "info"
    #: The counters checkpoint before they answer (``tests.chaos.app``), registered with
    #: ``replicas`` standbys, and the checker holds them to the checkpoint guarantee.
    checkpoints: bool = False
    replicas: int = 1
    #: With checkpoints: how long after a failure ends (SIGCONT, or the killed node's
    #: restart is up) the cluster may still be re-replicating, so that another failure
    #: then counts as overlapping it.
    rereplication: float = 2.0
    #: The nemesis also cuts the network (``PARTITION``); the nodes then link over TCP only.
    partitions: bool = False


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass
class Result:
    seed: int
    run_dir: Path
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    skipped: int = 0
    violations: list[Violation] = field(default_factory=list)
    quiescence: float | None = None  # seconds from the last fault's end; None: never
    acks: int = 0
    indeterminate: int = 0
    lost_to_crash: int = 0  # acknowledged ops lost with a SIGKILLed host (allowed)
    lost_to_drain: int = 0  # acknowledged before a host's drain timed out, lost with it (allowed)
    duration: float = 0.0
    checkpoints: bool = False
    lost_allowed: int = 0  # with checkpoints: acknowledged ops lost when failures overlapped
    lost_violating: int = 0  # with checkpoints: lost while one node at a time failed

    def kinds(self) -> collections.Counter[str]:
        return collections.Counter(v.kind for v in self.violations)


@dataclass(frozen=True)
class Fault:
    """One planned fault: its start (seconds into the window), kind and drawn numbers."""

    at: float
    kind: str
    pick: float  # chooses the target among the healthy nodes when it starts
    duration: float  # pause length, or downtime before a restart
    delay: float  # term-kill: SIGKILL this long after SIGTERM; join-pause: pause this long after the join


@dataclass(frozen=True)
class Failure:
    """A node failed (wall clock, as in the ledgers): SIGKILLed at ``start`` and up again
    at ``end``, paused (SIGSTOP) at ``start`` and resumed (SIGCONT) at ``end``, or cut off
    from the others (a partition) from ``start`` until the cut healed at ``end``."""

    node: str
    kind: str
    start: float
    end: float


@dataclass(frozen=True)
class DrainTimeout:
    """A leaving node's drain timed out at ``at`` (its warning's time, wall clock, to the
    millisecond): the names still there stopped, and lost their state. ``names``: those the
    warning lists; ``complete``: it lists them all (else the others are unknown)."""

    node: str
    at: float
    names: frozenset[str]
    complete: bool


@dataclass(frozen=True)
class Ack:
    """An acknowledged op: its counter's lineage and node that answered, when the call
    was made and when its answer came (wall clock)."""

    op: str
    lineage: str
    node: str
    called: float
    acked: float


def plan(rng: random.Random, faults: int, window: float, partitions: bool = False) -> list[Fault]:
    """The schedule: ``faults`` faults (at least one of each kind), start times spread over
    the first 85% of ``window``."""
    choices = (*KINDS, PARTITION) if partitions else KINDS
    kinds = list(choices) + [rng.choice(choices) for _ in range(max(0, faults - len(choices)))]
    rng.shuffle(kinds)
    starts = sorted(rng.uniform(0.0, 0.85 * window) for _ in kinds)
    out = []
    for at, kind in zip(starts, kinds, strict=True):
        if kind in PAUSES:
            duration = rng.uniform(3.0, 6.0)
        elif kind == PARTITION:
            duration = rng.uniform(3.0, 8.0)
        elif kind in ("kill", "term-kill", "term"):
            duration = rng.uniform(0.5, 3.0)
        else:
            duration = 0.0
        # term-kill: a drain of a few dozen names takes about that long; join-pause: the
        # pause starts this long after the newcomer's first handoff
        delay = rng.uniform(0.0, 0.3) if kind == "term-kill" else rng.uniform(0.0, 0.1)
        out.append(Fault(round(at, 3), kind, rng.random(), round(duration, 3), round(delay, 3)))
    return out


def _pid(raw: list[Any]) -> Pid:
    return Pid(raw[0], raw[1], raw[2])


class Server:
    """One server node name (``sN@127.0.0.1:PORT``) and its current OS process, if any.

    ``state``: "new" (never started), "up", "down" (crashed, to restart), "out" (left).
    ``busy``: a fault is acting on it (it is not healthy meanwhile).
    """

    def __init__(self, short: str, port: int) -> None:
        self.short = short
        self.port = port
        self.name = f"{short}@127.0.0.1:{port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.inspector: Pid | None = None
        self.state = "new"
        self.busy = False
        self.launches = 0
        self.drainer: asyncio.Task[None] | None = None
        self.died_unseen = False  # its process exited while "up" (reported once)

    @property
    def healthy(self) -> bool:
        return self.state == "up" and not self.busy


class Run:
    """One run of the fault test (see the module's docstring)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.result = Result(config.seed, config.run_dir, checkpoints=config.checkpoints)
        config.run_dir.mkdir(parents=True, exist_ok=True)
        (config.run_dir / "ledger").mkdir(exist_ok=True)
        self.log_file: TextIO = (config.run_dir / "harness.log").open("w", buffering=1)
        self.acks_file: TextIO = (config.run_dir / "acks.jsonl").open("w", buffering=1)
        self.cookie = f"chaos-{self.rng.getrandbits(64):016x}"
        self.gossip_port = free_gossip_port(range(46000, 47000), self.rng)
        ports = free_tcp_ports(MAX_SERVERS)
        self.servers = [Server(f"s{i}", port) for i, port in enumerate(ports)]
        self.by_name = {s.name: s for s in self.servers}
        self.names = [f"c{i:04d}" for i in range(config.names)]
        self.partitions = Partitions(s.short for s in self.servers) if config.partitions else None
        self.client: Node | None = None
        self.t0 = time.time()
        # what the checker needs
        self.faults_on: dict[str, list[tuple[float, str]]] = collections.defaultdict(list)  # node -> (t, kind)
        self.acks: dict[str, list[Ack]] = collections.defaultdict(list)  # by name
        self.failures: list[Failure] = []  # kills (until the restart is up) and pauses
        self.exits: list[tuple[str, int | None, str]] = []  # (node, code, why) of graceful stops
        self.last_fault_end = 0.0
        self.active_faults = 0
        self.quiet_after: dict[float, float] = {}  # a fault's end -> time to quiescence after it
        self.last_problems: list[Violation] = []
        self.t_faults = time.monotonic()  # when the schedule's clock starts (set again then)

    # --- logging ------------------------------------------------------------------------------

    def log(self, what: str) -> None:
        line = f"{time.time() - self.t0:8.3f} {what}"
        self.log_file.write(line + "\n")

    def violation(self, kind: str, detail: str) -> None:
        self.result.violations.append(Violation(kind, detail))
        self.log(f"VIOLATION {kind}: {detail}")

    # --- node processes -----------------------------------------------------------------------

    async def start(self, server: Server) -> None:
        """Launch ``server`` and wait for its "up" line (and its inspector's pid before it)."""
        server.launches += 1
        launch = f"{server.short}.{server.launches}"
        log_path = self.config.run_dir / f"{launch}.log"
        env = {**os.environ, "DISTABLE_CHAOS_LEDGER": str(self.config.run_dir / "ledger" / f"{launch}.jsonl")}
        args = [sys.executable, "-m", "distable.cli", "node", "--name", server.short, "--host", "127.0.0.1"]
        args += ["--port", str(server.port), "--cookie", self.cookie, "--cluster", "gossip"]
        args += ["--gossip-if", "127.0.0.1", "--gossip-port", str(self.gossip_port), "--membership", "local"]
        args += ["--app-dir", str(ROOT), "--app", f"{APP}:start", "--log-level", self.config.log_level]
        args += ["--drain-timeout", str(DRAIN_TIMEOUT), "--allow-factory", f"{APP}:*"]
        if self.partitions is not None:
            args = self.partitions.wrap(server.short, [*args, "--no-unix-sockets"])
        self.log(f"start {server.name} (launch {server.launches}, log {log_path.name})")
        with log_path.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
                env=env,
                preexec_fn=die_with_parent,
                # A session of its own: in the campaign's process group, a node paused
                # (SIGSTOP) when that group became orphaned (the shell that started the
                # campaign in the background exited) got the kernel's SIGHUP and died
                # (POSIX's orphaned process group rule): a crash the nemesis never made.
                start_new_session=True,
            )
        server.proc = proc
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = (await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))).decode()
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise RuntimeError(f"{server.name} did not start within {START_TIMEOUT} s; see {log_path}") from None
            if not line:
                code = await proc.wait()
                raise RuntimeError(f"{server.name} exited with {code} before it was up; see {log_path}")
            if line.startswith("chaos-inspector "):
                server.inspector = _pid(json.loads(line.partition(" ")[2]))
            elif line.startswith("distable: node "):
                break
        server.drainer = asyncio.ensure_future(self._drain_stdout(proc))
        server.state = "up"
        server.died_unseen = False
        self.log(f"up {server.name} (os pid {proc.pid}, inspector {server.inspector})")

    @staticmethod
    async def _drain_stdout(proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while await proc.stdout.readline():
            pass

    def signal(self, server: Server, sig: signal.Signals, alive: bool = True) -> None:
        """Send ``sig`` to ``server``'s process if it runs. ``alive``: the fault expects it
        to (its first signal, or the SIGCONT that ends a pause); False where it may have
        exited on its own (a SIGTERM's drain may end before the SIGKILL that follows)."""
        if server.proc is None:
            return
        code = server.proc.returncode
        if code is None:
            server.proc.send_signal(sig)
            self.log(f"{sig.name} {server.name}")
        elif alive and server.state == "up" and not server.died_unseen:
            # Dead while the run counts it up: every later fault on it is void, and the
            # checker would blame the node's last fault for what its death lost.
            server.died_unseen = True
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
            self.violation("unexpected-exit", f"{server.name} exited ({how}) while up, seen at its {sig.name}")

    async def wait_exit(self, server: Server, timeout: float = EXIT_TIMEOUT) -> int | None:
        """Its exit code, or None if it did not exit in time (then it is killed)."""
        assert server.proc is not None
        try:
            code: int | None = await asyncio.wait_for(server.proc.wait(), timeout)
        except TimeoutError:
            code = None
            self.signal(server, signal.SIGCONT, alive=False)
            self.signal(server, signal.SIGKILL, alive=False)
            await server.proc.wait()
        self.log(f"exited {server.name}: {code}")
        return code

    async def graceful_stop(self, server: Server, why: str) -> None:
        self.signal(server, signal.SIGTERM)
        code = await self.wait_exit(server)
        self.exits.append((server.name, code, why))
        if code != 0:
            self.violation("unclean-exit", f"{server.name} ({why}) exited with {code} after SIGTERM")

    def live(self) -> list[Server]:
        return [s for s in self.servers if s.state == "up"]

    # --- the nemesis --------------------------------------------------------------------------

    def target(self, fault: Fault) -> Server | None:
        """A healthy node for ``fault``, if taking it leaves at least two healthy ones."""
        healthy = [s for s in self.servers if s.healthy]
        if len(healthy) - 1 < MIN_HEALTHY:
            return None
        return healthy[int(fault.pick * len(healthy))]

    def spare(self, fault: Fault) -> Server | None:
        """A node name that is not running (never started, or left) for a join."""
        free = [s for s in self.servers if s.state in ("new", "out") and not s.busy]
        return free[int(fault.pick * len(free))] if free else None

    def mark(self, server: Server, kind: str) -> None:
        self.faults_on[server.name].append((time.time(), kind))

    def failed(self, server: Server, kind: str, start: float) -> None:
        """``server`` failed from ``start`` until now (its restart is up, or it resumed)."""
        failure = Failure(server.name, kind, start, time.time())
        self.failures.append(failure)
        self.log(f"failed {server.name}: {kind} {start - self.t0:.3f}-{failure.end - self.t0:.3f} s")

    async def play(self, fault: Fault) -> None:
        await asyncio.sleep(max(0.0, self.t_faults + fault.at - time.monotonic()))  # the schedule's clock
        kind = fault.kind
        server = self.spare(fault) if kind in ("join", "join-pause") else self.target(fault)
        if server is None:
            self.result.skipped += 1
            self.log(f"skip {kind} at {fault.at} s: no node may take it")
            return
        server.busy = True
        self.active_faults += 1
        self.result.faults[kind] += 1
        self.log(f"fault {kind} on {server.name} ({fault})")
        try:
            if kind == "kill":
                self.mark(server, kind)
                killed = time.time()
                self.signal(server, signal.SIGKILL)
                await self.wait_exit(server)
                server.state = "down"
                await asyncio.sleep(fault.duration)  # downtime: part of the fault
                await self.start(server)
                self.failed(server, kind, killed)
            elif kind == "term-kill":
                self.signal(server, signal.SIGTERM)
                await asyncio.sleep(fault.delay)  # SIGKILL while it drains
                self.mark(server, kind)
                killed = time.time()
                self.signal(server, signal.SIGKILL, alive=False)  # it may have drained already
                drained = await self.wait_exit(server) == 0
                if drained:  # it had drained already: a graceful leave
                    self.faults_on[server.name].pop()
                    self.exits.append((server.name, 0, "term-kill"))
                    self.result.faults[kind] -= 1
                    self.result.faults["term (drained before the kill)"] += 1
                server.state = "down"
                await asyncio.sleep(fault.duration)
                await self.start(server)
                if not drained:
                    self.failed(server, kind, killed)
            elif kind == "term":
                await self.graceful_stop(server, "term")
                server.state = "down"
                await asyncio.sleep(fault.duration)
                await self.start(server)
            elif kind == "leave":
                await self.graceful_stop(server, "leave")
                server.state = "out"
            elif kind == "pause":
                await self.pause(server, fault.duration)
            elif kind == "join":
                await self.start(server)
            elif kind == "join-pause":
                await self.join_pause(server, fault)
            elif kind == PARTITION:
                await self.partition(server, fault)
        finally:
            server.busy = False
            self.active_faults -= 1
            self.last_fault_end = max(self.last_fault_end, time.monotonic())
            self.log(f"fault {kind} on {server.name} done")

    async def join_pause(self, server: Server, fault: Fault) -> None:
        """Start ``server`` and pause an old host just as names move to it: the host of the
        first process it is handed (from its ledger), ``fault.delay`` after that handoff
        (a random healthy node if none is handed before it is up)."""
        ledger = self.config.run_dir / "ledger" / f"{server.short}.{server.launches + 1}.jsonl"
        starting = asyncio.ensure_future(self.start(server))

        def first_handoff() -> str | bool | None:
            if ledger.exists():
                for line in ledger.read_text().splitlines():
                    with contextlib.suppress(ValueError):
                        entry = json.loads(line)
                        if entry.get("event") == "resume" and entry.get("from"):
                            return str(entry["from"])
            return starting.done()

        try:
            found = await eventually(first_handoff, timeout=START_TIMEOUT, interval=0.005)
        except TimeoutError:
            found = None
        source = self.by_name.get(found) if isinstance(found, str) else None
        if source is not None and source.healthy and len([s for s in self.servers if s.healthy]) - 1 >= MIN_HEALTHY:
            victim: Server | None = source
            self.log(f"join-pause: {server.name} got its first handoff from {source.name}")
        else:
            victim = self.target(fault)
            self.log(f"join-pause: no handoff source to pause ({found!r}); a healthy node instead")
        if victim is None:
            self.log("join-pause: no node may be paused after the join")
        else:
            victim.busy = True
            try:
                await asyncio.sleep(fault.delay)  # names are moving to the newcomer now
                await self.pause(victim, fault.duration)
            finally:
                victim.busy = False
        await starting

    async def partition(self, server: Server, fault: Fault) -> None:
        """Cut ``server`` (and, drawn from the seed, one more healthy node if five or more
        are) off from the other nodes for ``fault.duration`` seconds. One cut at a time:
        a partition that finds one under way is skipped."""
        assert self.partitions is not None
        if self.partitions.cut_now is not None:
            self.log(f"skip partition of {server.name}: a cut is under way")
            self.result.faults[PARTITION] -= 1
            self.result.skipped += 1
            return
        side = [server]
        healthy = [s for s in self.servers if s.healthy]
        if fault.delay > 0.05 and len(healthy) >= 4:  # a second one of five or more; three stay
            second = healthy[int(fault.pick * len(healthy))]
            side.append(second)
            second.busy = True
        try:
            for s in side:
                self.mark(s, PARTITION)
            cut = time.time()
            self.partitions.cut(s.short for s in side)
            self.log(f"cut {', '.join(s.name for s in side)} off from the others")
            try:
                await asyncio.sleep(fault.duration)  # the partition itself
            finally:
                self.partitions.heal()
                self.log("healed")
            for s in side:
                self.faults_on[s.name].append((time.time(), "partition-end"))
                # Unreachable from the others while cut off: with checkpoints, a failure
                # of the checkpoint guarantee's kind (a host and its standby on either side
                # of a cut are two failures); without, a partition excuses nothing.
                self.failed(s, PARTITION, cut)
        finally:
            for s in side[1:]:
                s.busy = False

    async def pause(self, server: Server, duration: float) -> None:
        self.mark(server, "pause")
        paused = time.time()
        self.signal(server, signal.SIGSTOP)
        try:
            await asyncio.sleep(duration)  # the pause itself
        finally:
            self.signal(server, signal.SIGCONT)
        self.faults_on[server.name].append((time.time(), "pause-end"))
        self.failed(server, "pause", paused)

    # --- the workload -------------------------------------------------------------------------

    async def worker(self, index: int, stop: asyncio.Event) -> None:
        client = self.client
        assert client is not None
        rng = random.Random(f"{self.config.seed}/{index}")
        period = 1.0 / self.config.rate
        seq = 0
        next_at = time.monotonic()
        while not stop.is_set() and seq < 1_000_000:
            seq += 1
            name = rng.choice(self.names)
            op = f"w{index}-{seq}"
            called = time.time()
            try:
                reply = await client.call(name, ("add", op), timeout=CALL_TIMEOUT)
                if isinstance(reply, dict):  # with checkpoints: its checkpoint failed
                    raise RuntimeError(reply["error"])
                node, lineage, _ = reply
            except Exception as exc:
                self.result.indeterminate += 1
                self.acks_file.write(json.dumps({"op": op, "name": name, "error": repr(exc)}) + "\n")
            else:
                self.result.acks += 1
                ack = Ack(op, lineage, node, called, time.time())
                self.acks[name].append(ack)
                entry = {"op": op, "name": name, "lineage": lineage, "node": node, "t": ack.acked, "called": called}
                self.acks_file.write(json.dumps(entry) + "\n")
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)  # the rate limit (or the stop)
            else:
                next_at = time.monotonic()

    # --- the checker --------------------------------------------------------------------------

    async def inspect(self, server: Server) -> dict[str, Any] | None:
        assert self.client is not None
        assert server.inspector is not None
        try:
            reply: dict[str, Any] = await self.client.call(server.inspector, "inspect", timeout=INSPECT_TIMEOUT)
        except Exception:
            return None
        return reply

    async def problems(self) -> list[Violation]:
        """What keeps the cluster from quiescence (empty: quiescent), one violation per kind."""
        client = self.client
        assert client is not None
        out: list[Violation] = []
        live = self.live()
        expected = sorted(s.name for s in live)
        replies = await asyncio.gather(*(self.inspect(s) for s in live))
        views = {s.name: r for s, r in zip(live, replies, strict=True) if r is not None}
        silent = [s.name for s, r in zip(live, replies, strict=True) if r is None]
        if silent:
            out.append(Violation("unresponsive", f"{silent} do not answer"))
        placements = {"client": sorted(client.placement().nodes)}
        placements.update({node: sorted(v["placement"]) for node, v in views.items()})
        wrong = {who: p for who, p in placements.items() if p != expected}
        if wrong:
            out.append(Violation("placement", f"want {expected}; {wrong}"))
        mine = dict(client.registered())
        missing = sorted(set(self.names) - set(mine))
        if missing:
            out.append(Violation("unregistered", f"{len(missing)} names not in the client's replica: {missing[:8]}"))
        extra = sorted(set(mine) - set(self.names))
        if extra:
            out.append(Violation("extra-name", f"{len(extra)} unexpected names: {extra[:8]}"))
        differ: dict[str, list[str]] = {}
        for node, view in views.items():
            theirs = {name: _pid(pid) for name, pid in view["replica"]}
            names = sorted(n for n in set(mine) | set(theirs) if mine.get(n) != theirs.get(n))
            if names:
                differ[node] = [f"{n}: client {mine.get(n)}, node {theirs.get(n)}" for n in names[:3]] + [
                    f"({len(names)} names)"
                ]
        if differ:
            out.append(Violation("replica-divergence", str(differ)))
        off = {node: [*v["off_owner"][:5], f"({len(v['off_owner'])})"] for node, v in views.items() if v["off_owner"]}
        if off:
            out.append(Violation("off-owner", str(off)))
        copies: dict[str, list[tuple[Pid, str, bool, bool]]] = collections.defaultdict(list)
        for view in views.values():
            for name, pid, lineage, _, frozen, gated in view["copies"]:
                copies[name].append((_pid(pid), lineage, frozen, gated))
        if not silent:  # a silent node's copies are unknown
            dups = {n: [(str(p), lin) for p, lin, _, _ in c] for n, c in sorted(copies.items()) if len(c) > 1}
            if dups:
                sample = dict(list(dups.items())[:5])
                out.append(Violation("duplicate", f"{len(dups)} names run twice or more: {sample}"))
            dead = [n for n in self.names if n in mine and not copies.get(n)]
            if dead:
                out.append(Violation("no-live-copy", f"{len(dead)} registered names run nowhere: {dead[:8]}"))
            stale = [
                (n, str(mine[n])) for n, c in sorted(copies.items()) if n in mine and mine[n] not in {p for p, *_ in c}
            ]
            if stale:
                out.append(Violation("stale-pid", f"{len(stale)} names' replica pid is not a live copy: {stale[:5]}"))
        frozen = [(n, str(p)) for n, c in sorted(copies.items()) for p, _, f, g in c if f or g]
        if frozen:
            out.append(Violation("frozen", f"{len(frozen)} copies frozen or gated: {frozen[:5]}"))
        keys = ("moving", "outgoing", "incoming", "pending", "restarts_due")
        work = {node: {k: v["work"][k] for k in keys if v["work"][k]} for node, v in views.items()}
        work = {node: w for node, w in work.items() if w}
        if work:
            out.append(Violation("in-flight", str(work)))
        digests = {v["digest"] for v in views.values()}
        if len(digests) > 1 and not differ:
            out.append(Violation("replica-divergence", f"digests differ: {sorted(digests)}"))
        return out

    async def watch_quiescence(self, done: asyncio.Event) -> None:
        """While no fault is under way, poll until the cluster is quiescent after the latest
        fault's end, and keep that time (``quiet_after``): measured when it happens, since
        more faults may still be scheduled (the run's end would add the wait for them)."""
        measured = 0.0
        while not done.is_set():
            end = self.last_fault_end
            if self.active_faults == 0 and end > measured:
                problems = await self.problems()
                if not problems and self.active_faults == 0 and self.last_fault_end == end:
                    self.quiet_after[end] = time.monotonic() - end
                    measured = end
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.05)

    async def quiesce(self, timeout: float) -> bool:
        """Poll ``problems()`` until it is empty (True) or ``timeout`` passes (False)."""

        seen: list[tuple[str, ...]] = []

        async def check() -> bool:
            self.last_problems = await self.problems()
            kinds = tuple(v.kind for v in self.last_problems)
            if not seen or kinds != seen[-1]:  # what is left, each time it changes
                seen.append(kinds)
                self.log("waiting for: " + ("; ".join(str(v)[:300] for v in self.last_problems) or "nothing"))
            return not self.last_problems

        try:
            await eventually(check, timeout=timeout, interval=0.05)
        except TimeoutError:
            return False
        return True

    @staticmethod
    def hosts(ledger: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[float, str]]]:
        """(name, lineage) -> [(since, node)]: every node that hosted the lineage, from when,
        and every host of a lineage that absorbed it (a conflict's winner), from then on: a
        lineage's state lives on in its winner, and is lost with it."""
        out: dict[tuple[str, str], list[tuple[float, str]]] = collections.defaultdict(list)
        winners: dict[tuple[str, str], list[tuple[float, str]]] = collections.defaultdict(list)
        for entry in ledger:
            if entry["event"] in ("fresh", "resume", "restore"):
                out[(entry["name"], entry["lineage"])].append((entry["t"], entry["node"]))
            elif entry["event"] == "merge":
                winners[(entry["name"], entry["loser"])].append((entry["t"], entry["lineage"]))
                # The winner's node holds the loser's state from then on. Said directly: when
                # both copies share a lineage (one restored from the other's checkpoints while
                # its node was paused), the lineage's own hosts list the loser's node last.
                out[(entry["name"], entry["loser"])].append((entry["t"], entry["node"]))
        for key in list(out):
            name, lineage = key
            seen = {lineage}
            todo = [(0.0, lineage)]
            while todo:
                since, current = todo.pop()
                for t, winner in winners.get((name, current), []):
                    if t >= since and winner not in seen:
                        seen.add(winner)
                        todo.append((t, winner))
                        out[key] += [(max(t, at), node) for at, node in out.get((name, winner), [])]
        return out

    def excuse(self, hosted: list[tuple[float, str]], kinds: frozenset[str]) -> str | None:
        """A fault of ``kinds`` on a host of a lineage after it got it (the explanation), or None."""
        for since, node in hosted:
            for t, kind in self.faults_on.get(node, []):
                if kind in kinds and t >= since:
                    return f"{kind} of {node} at {t - self.t0:.3f} s"
        return None

    def drain_timeouts(self) -> list[DrainTimeout]:
        """Every drain that timed out during the run, from the node logs' warnings
        (``DRAIN_TIMED_OUT``; the time is local, as the log writes it).

        From ``check_states``; never awaits."""
        out = []
        for path in sorted(self.config.run_dir.glob("*.log")):
            if path.name == "harness.log":
                continue
            for line in path.read_text(errors="replace").splitlines():
                match = DRAIN_TIMED_OUT.match(line)
                if match is None:
                    continue
                at = time.mktime(time.strptime(match["time"], "%Y-%m-%d %H:%M:%S")) + int(match["ms"]) / 1000
                names = frozenset(re.findall(r"'([^']*)'", match["names"]))
                out.append(DrainTimeout(match["node"], at, names, len(names) == int(match["count"])))
                self.log(f"drain of {match['node']} timed out at {at - self.t0:.3f} s ({path.name}): {match['names']}")
        return out

    @staticmethod
    def drained(name: str, hosted: list[tuple[float, str]], drains: list[DrainTimeout]) -> DrainTimeout | None:
        """The latest drain that timed out (of ``drains``) with ``name``'s lineage on it: on
        the lineage's latest host then (a lineage that had moved on took its state along),
        its warning listing ``name`` or not listing every name. None if there is none.

        From ``check_states``; never awaits."""

        def host_at(at: float) -> str | None:
            before = [(since, node) for since, node in hosted if since <= at]
            return max(before)[1] if before else None

        holding = [
            drain for drain in drains if (name in drain.names or not drain.complete) and host_at(drain.at) == drain.node
        ]
        return max(holding, key=lambda drain: drain.at, default=None)

    def lost_at(
        self,
        ack: Ack,
        kept: bool,
        hosted: list[tuple[float, str]],
        got: list[dict[str, Any]],
        alive_until: float = 0.0,
        replaced_at: float | None = None,
    ) -> str:
        """With checkpoints, where ``ack``'s op of a lineage (``kept`` or lost) went missing
        and what allows it ("allowed: ..."), or why nothing does. ``hosted``: the lineage's
        hosts (``hosts``); ``got``: its ledger's restores and resumes, in time order.

        A kept lineage lost it at its first restore (or resume) since the call that lacks
        it: allowed if ``replicas`` + 1 failures were under way then, or had ended less
        than ``Config.rereplication`` seconds before (re-replication still running); or if
        a host of the copy that had it (the node that acknowledged it, or one the lineage
        moved to before that restore) failed before the restore with ``replicas`` other
        failures overlapping (the rule of a lost lineage, below): a copy of the lineage
        that a paused host kept running, declared failed, then outlived the copy that had
        the op and its standbys (the restore only shows the loss). A lost
        lineage was lost with its last host (the latest in ``hosted``): allowed if that
        host's next failure overlapped ``replicas`` others, each begun while it was under
        way, or before it and ended less than ``rereplication`` seconds before it began.
        A failure of that host that ended before ``alive_until`` (the lineage's last
        acknowledgement, by anyone) did not end the lineage: a cut-off host whose copy
        went on afterwards (seed 2067849925: 282 ops pinned to a partition that the
        lineage outlived by 19 s, lost at a later kill that overlapped a pause). Of the
        failures left, the last that began before ``replaced_at`` (when the name first
        started under another lineage after that host took it) is the one: the copy lived
        until then, and an earlier failure it outlived did not end it.
        Conservative: the other failures may be of any node, not only the name's standbys."""
        window = self.config.rereplication

        def span(f: Failure) -> str:
            return f"{f.kind} of {f.node.partition('@')[0]} {f.start - self.t0:.3f}-{f.end - self.t0:.3f} s"

        def overlapping(failure: Failure) -> list[Failure]:
            return [
                f
                for f in self.failures
                if f is not failure
                and (f.start <= failure.start <= f.end + window or failure.start <= f.start <= failure.end)
            ]

        if kept:
            event = next((e for e in got if e["t"] >= ack.called and ack.op not in e["ops"]), None)
            if event is None:
                return "no restore or resume of its lineage lacks it"
            at = event["t"]
            active = [f for f in self.failures if f.start <= at <= f.end + window]
            where = f"the {event['event']} on {event['node'].partition('@')[0]} at {at - self.t0:.3f} s"
            if len(active) > self.config.replicas:
                return f"allowed: lost at {where}, failures under way: {', '.join(map(span, active))}"
            holders = {ack.node} | {node for t, node in hosted if ack.called <= t <= at}
            for held in self.failures:
                if held.node in holders and held.end >= ack.called and held.start <= at:
                    others = overlapping(held)
                    if len(others) >= self.config.replicas:
                        return (
                            f"allowed: lost with {span(held)} (a host of the op's copy) with "
                            f"{', '.join(map(span, others))}; seen at {where}"
                        )
            return f"lost at {where}, failures under way: {', '.join(map(span, active)) or 'none'}"
        if not hosted:
            return "its lineage has no host in the ledger"
        since, host = max(hosted)
        after = max(ack.called, alive_until)
        candidates = [f for f in self.failures if f.node == host and f.start >= since and f.end >= after]
        before = [f for f in candidates if replaced_at is not None and f.start <= replaced_at]
        failure = max(before, key=lambda f: f.start) if before else next(iter(candidates), None)
        if failure is None:
            return f"its last host, {host.partition('@')[0]} from {since - self.t0:.3f} s, never failed after"
        others = overlapping(failure)
        if len(others) >= self.config.replicas:
            return f"allowed: {span(failure)} (its last host) with {', '.join(map(span, others))}"
        return f"lost with {span(failure)} (its last host), overlapping {', '.join(map(span, others)) or 'nothing'}"

    def judge(
        self,
        name: str,
        lineage: str,
        missing: list[Ack],
        kept: bool,
        hosted: list[tuple[float, str]],
        got: list[dict[str, Any]],
        entries: list[tuple[float, str]],
    ) -> list[str]:
        """With checkpoints: count the acknowledged ops of ``lineage`` missing from
        ``name``'s state as allowed or not (``lost_at``); the violations, one line per op.
        ``entries``: (t, lineage) of each of ``name``'s ledger entries."""
        out = []
        allowed: list[tuple[str, str]] = []
        where = ", ".join(f"{node.partition('@')[0]} from {t - self.t0:.3f} s" for t, node in sorted(hosted))
        alive_until = max((a.acked for a in self.acks.get(name, ()) if a.lineage == lineage), default=0.0)
        since = max(hosted)[0] if hosted else 0.0
        replaced_at = min((t for t, other in entries if other != lineage and t > since), default=None)
        for ack in missing:
            why = self.lost_at(ack, kept, hosted, got, alive_until, replaced_at)
            if why.startswith("allowed: "):
                allowed.append((ack.op, why))
                continue
            self.result.lost_violating += 1
            out.append(
                f"{name}: {ack.op} of {'kept' if kept else 'lost'} lineage {lineage} (hosted on {where or '?'}), "
                f"called {ack.called - self.t0:.3f} s, acknowledged {ack.acked - self.t0:.3f} s by "
                f"{ack.node.partition('@')[0]}: {why}"
            )
        if allowed:
            self.result.lost_allowed += len(allowed)
            self.log(f"  lost, allowed: {name}: {len(allowed)} ops of lineage {lineage}, the first {allowed[0]}")
        return out

    async def check_data(self) -> None:
        """Acknowledged ops and lineages against every counter's surviving state, read from
        the counters (``check_states``)."""
        client = self.client
        assert client is not None
        ledger: list[dict[str, Any]] = []
        for path in sorted((self.config.run_dir / "ledger").glob("*.jsonl")):
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    ledger.append(json.loads(line))

        async def state(name: str) -> Any:
            try:
                return await client.call(name, "state", timeout=INSPECT_TIMEOUT)
            except Exception as exc:
                return exc

        states = dict(zip(self.names, await asyncio.gather(*(state(n) for n in self.names)), strict=True))
        self.check_states(states, ledger)

    def check_states(self, states: dict[str, Any], ledger: list[dict[str, Any]]) -> None:
        """The checks of ``check_data`` on ``states`` (name -> its counter's state, or the
        exception reading it raised) and the nodes' ``ledger`` entries; the violations go
        to the result.

        From ``check_data`` (and the checker's tests); never awaits."""
        hosts = self.hosts(ledger)
        entries: dict[str, list[tuple[float, str]]] = collections.defaultdict(list)  # name -> (t, lineage), for judge
        for entry in ledger:
            # A fresh copy's line is written at its first call, maybe long after it started
            # (a restart no one called for a while): the lineage it replaced ended at the
            # start (seed 6600000005: a kill's restart, first called after a later pause,
            # was blamed on the pause).
            entries[entry["name"]].append((float(entry.get("started", entry["t"])), entry["lineage"]))
        got: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)  # with checkpoints
        for entry in sorted(ledger, key=lambda e: float(e["t"])):
            if entry["event"] in ("restore", "resume") and "ops" in entry:
                got[(entry["name"], entry["lineage"])].append(entry)
        # With checkpoints the owners restart those names from their checkpoints, in the
        # same lineage: a drain that timed out excuses neither a reset nor a loss then.
        drains = [] if self.config.checkpoints else self.drain_timeouts()
        unreadable = [n for n, s in states.items() if isinstance(s, BaseException)]
        if unreadable:
            self.violation("unreadable", f"{len(unreadable)} counters do not answer: {unreadable[:5]}")
        lost: list[str] = []
        resets: list[str] = []
        backwards: list[str] = []  # with checkpoints, ops lost without overlapping failures: of kept lineages
        gone: list[str] = []  # and of lost lineages
        checkpoints = self.config.checkpoints
        for name in self.names:
            final = states[name]
            if isinstance(final, BaseException):
                continue
            ops = set(final["ops"])
            kept = {final["lineage"], *final["absorbed"]}
            lineages: dict[str, list[Ack]] = collections.defaultdict(list)
            for ack in self.acks.get(name, []):
                lineages[ack.lineage].append(ack)
            for lineage, acked in lineages.items():
                missing_acks = [ack for ack in acked if ack.op not in ops]
                missing = [ack.op for ack in missing_acks]
                hosted = hosts.get((name, lineage), [])
                where = ",".join(sorted({node.partition("@")[0] for _, node in hosted}))
                if lineage in kept:
                    if missing and checkpoints:  # the state went backwards
                        backwards += self.judge(
                            name, lineage, missing_acks, True, hosted, got[(name, lineage)], entries[name]
                        )
                    elif missing:
                        lost.append(f"{name}: {len(missing)} ops of kept lineage {lineage} missing: {missing[:3]}")
                    continue
                crash = self.excuse(hosted, CRASHES)
                pause = self.excuse(hosted, PAUSES)
                drain = self.drained(name, hosted, drains)
                if crash is None and pause is None and drain is None:
                    resets.append(f"{name}: lineage {lineage} (hosted on {where or '?'}) gone, now {final['lineage']}")
                if missing and checkpoints:  # a crash excuses nothing by itself
                    gone += self.judge(name, lineage, missing_acks, False, hosted, [], entries[name])
                elif missing and crash is None and drain is not None:
                    # Only what was acknowledged before the drain timed out went with the
                    # state: the names stop then, and calls waiting for them fail (3cbb543).
                    # ``acked`` is when the answer arrived: one in flight then counts as after.
                    timed_out = f"the drain of {drain.node} timed out at {drain.at - self.t0:.3f} s"
                    before = [ack.op for ack in missing_acks if ack.acked < drain.at]
                    after = [ack.op for ack in missing_acks if ack.acked >= drain.at]
                    if before:
                        self.result.lost_to_drain += len(before)
                        self.log(f"  lost, drain: {name}: {len(before)} ops of lineage {lineage}, {timed_out}")
                    if after:
                        lost.append(
                            f"{name}: {len(after)} ops of lost lineage {lineage} missing, "
                            f"acknowledged after {timed_out}: {after[:3]}"
                        )
                elif missing and crash is None:
                    why = f"only a pause explains it ({pause})" if pause else "no crash"
                    lost.append(f"{name}: {len(missing)} ops of lost lineage {lineage} missing, {why}: {missing[:3]}")
                elif missing:
                    self.result.lost_to_crash += len(missing)
        if lost:
            self.violation("lost-ack", f"{len(lost)} counters: " + "; ".join(lost[:6]))
            for line in lost:
                self.log(f"  lost-ack {line}")
        if gone:
            self.violation("lost-ack", f"{len(gone)} ops: " + "; ".join(gone[:4]))
            for line in gone:
                self.log(f"  lost-ack {line}")
        if backwards:
            self.violation("backwards", f"{len(backwards)} ops: " + "; ".join(backwards[:4]))
            for line in backwards:
                self.log(f"  backwards {line}")
        if resets:
            self.violation("reset", f"{len(resets)} counters: " + "; ".join(resets[:6]))
            for line in resets:
                self.log(f"  reset {line}")

    async def dump_events(self) -> None:
        """Each live node's event journal (handoffs, restarts, conflicts...) into
        ``events.<node>.<launch>.jsonl``, to explain what the checks found."""
        client = self.client
        assert client is not None
        for server in self.live():
            try:
                events = await client.events_of(server.name, timeout=INSPECT_TIMEOUT)
            except Exception as exc:
                self.log(f"no events from {server.name}: {exc!r}")
                continue
            path = self.config.run_dir / f"events.{server.short}.{server.launches}.jsonl"
            path.write_text("".join(json.dumps(e, default=str) + "\n" for e in events))

    # --- the run ------------------------------------------------------------------------------

    async def main(self) -> Result:
        config = self.config
        schedule = plan(self.rng, config.faults, config.window, config.partitions)
        self.log(f"time 0 is {self.t0:.3f} (wall clock, as in the ledgers)")
        self.log(f"seed {config.seed}, cookie {self.cookie}, gossip port {self.gossip_port}")
        if config.checkpoints:
            self.log(f"checkpoints: replicas={config.replicas}, re-replication window {config.rereplication} s")
        for fault in schedule:
            self.log(f"plan {fault}")
        gossip = Gossip(if_addr="127.0.0.1", port=self.gossip_port, interval=0.25)
        async with Node(
            "client", cookie=self.cookie, role="client", cluster=gossip, membership=MembershipConfig.local()
        ) as client:
            self.client = client
            await asyncio.gather(*(self.start(s) for s in self.servers[: config.servers]))
            slots = asyncio.Semaphore(32)

            async def register(name: str) -> None:
                async with slots:
                    if config.checkpoints:
                        await client.register(name, FACTORY, name, True, timeout=30.0, replicas=config.replicas)
                    else:
                        await client.register(name, FACTORY, name, timeout=30.0)

            await eventually(
                lambda: sorted(client.placement().nodes) == sorted(s.name for s in self.live()),
                timeout=START_TIMEOUT,
                interval=0.05,
                message="the client never saw every server",
            )
            await asyncio.gather(*(register(n) for n in self.names))
            if not await self.quiesce(config.quiesce_timeout):
                raise RuntimeError(f"the cluster never settled before the faults: {self.last_problems}")
            self.log("settled; faults start")
            stop = asyncio.Event()
            workers = [asyncio.ensure_future(self.worker(i, stop)) for i in range(config.clients)]
            self.t_faults = time.monotonic()
            played = asyncio.Event()
            watcher = asyncio.ensure_future(self.watch_quiescence(played))
            try:
                await asyncio.gather(*(self.play(f) for f in schedule))
            finally:
                played.set()
                await watcher
                stop.set()
                await asyncio.gather(*workers, return_exceptions=True)
            self.log(f"faults over; {self.result.acks} acks, {self.result.indeterminate} indeterminate")
            if await self.quiesce(config.quiesce_timeout):
                quiet = self.quiet_after.get(self.last_fault_end)
                self.result.quiescence = time.monotonic() - self.last_fault_end if quiet is None else quiet
                self.log(f"quiescent {self.result.quiescence:.3f} s after the last fault")
            else:
                self.violation("not-quiescent", f"after {config.quiesce_timeout} s")
                for problem in self.last_problems:
                    self.violation(problem.kind, problem.detail)
            await self.check_data()
            await self.dump_events()
        self.client = None
        live = self.live()
        await asyncio.gather(*(self.graceful_stop(s, "end") for s in live))
        return self.result

    async def cleanup(self) -> None:
        for server in self.servers:
            if server.proc is not None and server.proc.returncode is None:
                self.signal(server, signal.SIGCONT, alive=False)
                self.signal(server, signal.SIGKILL, alive=False)
                await server.proc.wait()
            if server.drainer is not None:
                server.drainer.cancel()
        if self.partitions is not None:
            self.partitions.close()
        self.log_file.close()
        self.acks_file.close()


async def run(config: Config) -> Result:
    """One run; the nodes are gone afterwards, whatever happens."""
    chaos = Run(config)
    started = time.monotonic()
    try:
        return await chaos.main()
    finally:
        chaos.result.duration = time.monotonic() - started
        await chaos.cleanup()


def summary(result: Result) -> str:
    faults = " ".join(f"{k}={n}" for k, n in sorted(result.faults.items()) if n)
    q = "never" if result.quiescence is None else f"{result.quiescence:.2f} s"
    if result.checkpoints:
        lost = f"{result.lost_allowed} lost when failures overlapped, {result.lost_violating} lost otherwise"
    else:
        lost = f"{result.lost_to_crash} lost to crashes, {result.lost_to_drain} to drains that timed out"
    lines = [
        f"seed {result.seed}: {sum(result.faults.values())} faults ({faults}; {result.skipped} skipped), "
        f"{result.acks} acks, {result.indeterminate} indeterminate, {lost}, "
        f"quiescent after {q}, {result.duration:.0f} s; logs in {result.run_dir}"
    ]
    lines += [f"  {v}" for v in result.violations]
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    """The campaign's table: one row per run, then time to quiescence (median, worst).
    ``lost(crash)`` and ``lost(drain)`` count the acknowledged ops lost with a SIGKILLed
    host and with a drain that timed out (allowed). With checkpoints, ``lost(ckpt ok)``
    counts the acknowledged ops lost when failures overlapped (allowed) and
    ``lost(ckpt!)`` those lost otherwise (violations)."""
    checkpoints = any(r.checkpoints for r in results)
    lost_head = "lost(ckpt ok)  lost(ckpt!)" if checkpoints else "lost(crash)  lost(drain)"
    rows = [f"run  seed        faults  skipped  acks    indet  {lost_head}  quiesce(s)  violations"]
    for i, r in enumerate(results, 1):
        q = "never" if r.quiescence is None else f"{r.quiescence:.2f}"
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(r.kinds().items())) or "-"
        lost = (
            f"{r.lost_allowed:<14} {r.lost_violating:<12}"
            if checkpoints
            else f"{r.lost_to_crash:<12} {r.lost_to_drain:<12}"
        )
        rows.append(
            f"{i:<4} {r.seed:<11} {sum(r.faults.values()):<7} {r.skipped:<8} {r.acks:<7} {r.indeterminate:<6} "
            f"{lost} {q:<11} {kinds}"
        )
    times = [r.quiescence for r in results if r.quiescence is not None]
    if times:
        rows.append(
            f"time to quiescence after the last fault: median {statistics.median(times):.2f} s, "
            f"worst {max(times):.2f} s ({len(times)} of {len(results)} runs quiesced)"
        )
    total = collections.Counter[str]()
    for r in results:
        total.update(r.kinds())
    rows.append("violations: " + (", ".join(f"{k} x{n}" for k, n in sorted(total.items())) or "none"))
    return "\n".join(rows)
