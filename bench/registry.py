"""Registry benchmarks on 3 real server nodes, the scenario of Swarm 3.4's (bench/swarm).

    .venv/bin/python bench/registry.py [--n 10000,50000] [--repeats 5] [--from client|server] [--quick]
        [--membership local|default] [--kill-signal kill|stop] [--no-calls] [--registrations-only]

Setup: three server nodes a, b, c host the registered workers (``_workers.Worker``, idle),
membership preset "local" (``--membership default``: ``MembershipConfig()``, the settings a
node has when none are given, everywhere). Where this process's own node stands is ``--from``:

  client (default)  a, b, c each run in their own OS process (``NodeProcess``, linked by
                    ``--connect``); this process is a *client* node (``role="client"``): it
                    holds a full replica, registers, looks up and calls, but owns no names,
                    so every registration from here is a real request to the owner
  server            this process is server node a itself (b and c are OS processes): it
                    registers, looks up and calls as Swarm's harness does from its node a,
                    so a third of the names start locally, and calls go only to the names
                    that live on other nodes

The cluster that places and hosts names is exactly three nodes either way. Swarm's
harness (bench/swarm) runs the same phases with the same N, callers and calls;
``bench/swarm/side_by_side.sh`` alternates both in one sitting and reports ratios.

Each repeat uses two fresh clusters and N workers (names "worker-0"...):

  first cluster
    register_one     N registrations issued one at a time from this node (each waits for
                     its pid), timed until the last reply
    memory           then: the RSS growth of a, b and c together since before the first
                     registration (N idle workers, each with its replica on 3 nodes; after
                     a collection and malloc_trim in each) divided by N; the client
                     replica's growth in this process is reported on its own
  second cluster
    register_32      the N names from 32 concurrent callers (tasks here)
    whereis          ``node.whereis(name)`` and ``distable.whereis(name)`` over all N names
                     in a tight loop, median of 5 passes (µs per lookup; ``bare_`` is a
                     plain ``dict.get`` on a copy of the replica: the limit)
    call_name        a process here calls the names round-robin by name, one caller and
                     then 64 (20,000 and 100,000 calls; from a server node, only the names
                     on other nodes); ``call_pid`` is the same by pid, measured pid, name,
                     name, pid so that both see the same machine (what resolving the name
                     costs). ``--no-calls`` skips both (the scale runs)
    join             a 4th server node d starts (connected to a): seconds from d's "up"
                     line until every name is on its owner in the 4-node placement and
                     every replica (a, b, c, d and this one) is equal
    kill             b is SIGKILLed, d still in, as in Swarm's run: seconds until every
                     name runs again on a, c or d and every replica (a, c, d, this one) is
                     equal (b's quarter of the names restarts). ``--kill-signal stop``
                     freezes b instead (SIGSTOP: its sockets stay open, so only the failure
                     detector's timeouts find it), figure ``freeze``; b is SIGKILLed once
                     the rest has settled
    leave            d leaves gracefully (SIGTERM: it hands its names back), seconds
                     until the same holds for a and c (Swarm's run has no such step)

"Done" is measured the same way for join, leave and kill: poll every node cheaply
(``registry_stats``: names, local claims, handoffs and restarts in flight) until each
looks done; then confirm with a full walk on every node (``registry_check``: every name
resolves to a pid on its placement owner, every local claim's process is alive, and the
replica digests are equal) and with real lookups here (``whereis`` of all N names, each
on its owner); the time is that of the poll that was confirmed. After the timing, 200
random names are called to check that they answer.

Figures (JSON lines, see _common.py), each with its N in the name (``_10k``, ``_50k``...),
``from`` and the target in its config where there is one, and the CPU each process spent
(µs per registration, or CPU seconds for join, kill and leave). No figure of Swarm's is
built in: compare with Swarm only within one sitting (bench/swarm/side_by_side.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from _common import Timer, cpu_seconds, emit, median, note

import distable
from distable import MembershipConfig, Node, Process
from distable.ring import Ring, hash_name
from distable.testing import NodeProcess, registry_check, registry_stats, rss_bytes

HERE = Path(__file__).resolve().parent
WORKER = "_workers:Worker"
POLL = 0.02  # seconds between cheap polls

#: Our targets: (value, "min" | "max"), by figure and N (None: any N).
TARGETS: dict[str, dict[int | None, float]] = {
    "register_one": {None: 10_000},
    "register_32": {None: 50_000},
    "whereis_node": {None: 0.3},
    "whereis_module": {None: 0.3},
    "call_name": {None: 15_000},
    "call_name_64": {None: 100_000},
    "join": {10_000: 1.0, 50_000: 5.0},
    "kill": {10_000: 1.5, 50_000: 5.0},
    "memory_per_worker": {None: 4096},
}
MAXIMA = {"whereis_node", "whereis_module", "join", "kill", "memory_per_worker", "leave"}


def target_of(figure: str, n: int) -> float | None:
    goals = TARGETS.get(figure, {})
    return goals.get(n, goals.get(None))


def label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


class NameCaller(Process):
    """On ``("run", names, n, future)``: calls ``names`` round-robin by name, n calls in a row."""

    async def handle_info(self, message: Any) -> None:
        _, names, n, fut = message
        call = distable.call
        k = len(names)
        for i in range(n):
            await call(names[i % k], i)
        fut.set_result(n)


# --- the cluster ------------------------------------------------------------------------------


class Child(Protocol):
    """A server node in an OS process of its own, as the cluster uses it: ``NodeProcess``,
    or one that bench/scale.py starts with ``distable node``."""

    name: str

    @property
    def proc(self) -> asyncio.subprocess.Process: ...

    async def registry_stats(self) -> dict[str, Any]: ...

    async def registry_check(self, timeout: float = ...) -> dict[str, Any]: ...

    async def rss(self) -> int: ...

    def kill(self) -> None: ...

    def terminate(self) -> None: ...

    async def wait(self, timeout: float = ...) -> int: ...

    async def close(self) -> None: ...


class Cluster:
    """Three (or four) server nodes and the node of this process: a client beside them, or
    (``origin="server"``) server node a itself."""

    def __init__(self, cookie: str, origin: str = "client", membership: str = "local") -> None:
        self.cookie = cookie
        self.origin = origin
        self.membership = membership  # "local" or "default" (``MembershipConfig()``: the child's "lan")
        self.children: dict[str, Child] = {}
        self.gone: set[str] = set()  # stopping or killed: no longer asked anything
        self.node: Node | None = None

    def servers(self) -> list[str]:
        """The live server nodes (this one first when it is one)."""
        own = [self.client.name] if self.origin == "server" else []
        return own + [c.name for c in self.live()]

    def server(self, short: str) -> str:
        """The full name of server node ``short`` ("a", "b"...), this one or a child."""
        return self.client.name if self.origin == "server" and short == "a" else self.children[short].name

    async def server_rss(self) -> int:
        """Resident set sizes of the server nodes together (this process's when it is one)."""
        total = sum(await asyncio.gather(*(c.rss() for c in self.live())))
        return total + (rss_bytes() if self.origin == "server" else 0)

    async def start_child(self, short: str, connect: Sequence[str]) -> Child:
        preset = "local" if self.membership == "local" else "lan"  # lan() is MembershipConfig()
        child = await NodeProcess.start(short, self.cookie, connect=connect, paths=[str(HERE)], preset=preset)
        self.children[short] = child
        return child

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.children.values()), return_exceptions=True)

    @property
    def client(self) -> Node:
        assert self.node is not None
        return self.node

    def live(self) -> list[Child]:
        return [c for c in self.children.values() if c.proc.returncode is None and c.name not in self.gone]

    async def wait_placement(self, servers: list[str], timeout: float = 30.0) -> None:
        """Until every live node (and this one) places names on exactly ``servers``."""
        want = sorted(servers)
        deadline = time.monotonic() + timeout
        while True:
            stats = await asyncio.gather(*(c.registry_stats() for c in self.live()))
            mine = registry_stats(self.client)
            if all(s["placement"] == want for s in [*stats, mine]):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"placement never became {want}: {[s['placement'] for s in stats]}")
            await asyncio.sleep(0.05)


class Expectation:
    """Where each of the N names belongs for a set of server nodes."""

    def __init__(self, names: list[str], positions: list[int], servers: list[str]) -> None:
        ring = Ring().place(servers)
        self.servers = sorted(servers)
        self.owners = [ring.owner_of_hash(p) for p in positions]
        self.count = {s: 0 for s in servers}
        for owner in self.owners:
            assert owner is not None
            self.count[owner] += 1
        self.names = names


async def settle(
    cluster: Cluster, expect: Expectation, n: int, timeout: float, started: float
) -> tuple[float, dict[str, Any]]:
    """Poll until every live node holds N names, all on their owners, replicas equal.

    Returns the seconds from ``started`` (a ``time.monotonic()``) to the confirmed poll,
    and details (polls, confirmations tried).
    """
    node = cluster.client
    deadline = started + timeout
    polls = confirms = 0
    last: Any = None
    while True:
        polls += 1
        children = cluster.live()
        stats = await asyncio.gather(*(c.registry_stats() for c in children))
        polled_at = time.monotonic()
        mine = registry_stats(node)
        last = {c.name: s for c, s in zip(children, stats, strict=True)}
        quiet = all(
            s["names"] == n
            and s["placement"] == expect.servers
            and not (s["moving"] or s["outgoing"] or s["incoming"] or s["pending"] or s["restarts_due"])
            for s in [*stats, mine]
        )
        placed = mine["local"] == expect.count.get(node.name, 0) and all(
            s["local"] == expect.count.get(c.name, 0) for c, s in zip(children, stats, strict=True)
        )
        if quiet and placed:
            confirms += 1
            checks = await asyncio.gather(*(c.registry_check() for c in children))
            own = registry_check(node)
            digests = {own["digest"], *(ch["digest"] for ch in checks)}
            ok = (
                len(digests) == 1
                and own["on_owner"] == n
                and own["local_alive"] == own["local"] == expect.count.get(node.name, 0)
                and all(
                    ch["on_owner"] == n and ch["local_alive"] == ch["local"] == expect.count[c.name]
                    for c, ch in zip(children, checks, strict=True)
                )
                and real_lookups(node, expect)
            )
            if ok:
                return polled_at - started, {"polls": polls, "confirmations": confirms}
            last = {"checks": checks, "own": own}
        if time.monotonic() > deadline:
            raise TimeoutError(f"not settled within {timeout} s: {last}")
        await asyncio.sleep(POLL)


def real_lookups(node: Node, expect: Expectation) -> bool:
    """``whereis`` every name here: each resolves to a pid on its owner."""
    whereis = node.whereis
    for name, owner in zip(expect.names, expect.owners, strict=True):
        pid = whereis(name)
        if pid is None or pid.node != owner:
            return False
    return True


async def call_sample(node: Node, names: list[str], rng: random.Random, k: int = 200) -> None:
    """Call ``k`` random names: each must answer (the worker really runs)."""
    for name in rng.sample(names, min(k, len(names))):
        got = await node.call(name, name, timeout=10.0)
        if got != name:
            raise RuntimeError(f"{name!r} answered {got!r}")


# --- the phases -------------------------------------------------------------------------------------


async def register_all(node: Node, names: list[str], callers: int, timer_pids: dict[str, int]) -> tuple[float, Any]:
    """Register every name from ``callers`` concurrent tasks; registrations per second."""
    register = node.register

    async def caller(part: list[str]) -> None:
        for name in part:
            await register(name, WORKER)

    parts = [names[i::callers] for i in range(callers)]
    with Timer(timer_pids) as t:
        await asyncio.gather(*(caller(p) for p in parts))
    sample = t.sample(len(names))
    return sample.value, sample.cpu_us


def time_whereis(node: Node, names: list[str], passes: int) -> dict[str, float]:
    """µs per lookup: ``node.whereis``, ``distable.whereis`` and a bare ``dict.get``."""
    out: dict[str, float] = {}
    table = dict(node.registered())
    lookups: dict[str, Callable[[Any], Any]] = {
        "whereis_node": node.whereis,
        "whereis_module": distable.whereis,
        "bare_whereis": table.get,
    }
    for key, fn in lookups.items():
        best = []
        for _ in range(passes):
            start = time.perf_counter()
            for name in names:
                fn(name)
            best.append((time.perf_counter() - start) / len(names) * 1e6)
        out[key] = median(best)
    return out


async def call_by_name(node: Node, names: Sequence[Any], callers: int, n: int, timer_pids: dict[str, int]) -> float:
    loops = [await node.spawn(NameCaller) for _ in range(callers)]
    loop = asyncio.get_running_loop()
    per = n // callers
    futs: list[asyncio.Future[int]] = [loop.create_future() for _ in loops]
    with Timer(timer_pids) as t:
        for i, (pid, fut) in enumerate(zip(loops, futs, strict=True)):
            part = names[i::callers] or names
            node.send(pid, ("run", part, per, fut))
        await asyncio.wait_for(asyncio.gather(*futs), 300)
    for pid in loops:
        await node.stop_process(pid)
    return t.sample(per * callers).value


def membership_config(membership: str) -> MembershipConfig:
    return MembershipConfig.local() if membership == "local" else MembershipConfig()


@contextlib.asynccontextmanager
async def three_nodes(origin: str, membership: str = "local") -> AsyncIterator[tuple[Cluster, Node]]:
    """A fresh cluster of server nodes a, b, c: a, b, c in child processes and the client
    node here (``origin="client"``), or a here and b, c in child processes ("server")."""
    cluster = Cluster(secrets.token_hex(16), origin, membership)
    try:
        if origin == "server":
            async with Node("a", cookie=cluster.cookie, membership=membership_config(membership)) as node:
                cluster.node = node
                await asyncio.gather(cluster.start_child("b", [node.name]), cluster.start_child("c", [node.name]))
                await cluster.wait_placement(cluster.servers())
                yield cluster, node
            return
        a = await cluster.start_child("a", ())
        await asyncio.gather(cluster.start_child("b", [a.name]), cluster.start_child("c", [a.name]))
        config = membership_config(membership)
        async with Node("bench", cookie=cluster.cookie, role="client", membership=config) as node:
            cluster.node = node
            await node.connect(a.name, timeout=20.0)
            await cluster.wait_placement(cluster.servers())
            yield cluster, node
    finally:
        await cluster.close()


def cpu_of(cluster: Cluster) -> dict[str, float]:
    """CPU seconds so far of every live child and of this process, by short name."""
    out = {"self": cpu_seconds()}
    for short, child in cluster.children.items():
        if child.proc.returncode is None:
            with contextlib.suppress(OSError):
                out[short] = cpu_seconds(child.proc.pid)
    return out


def cpu_note(before: dict[str, float], after: dict[str, float]) -> str:
    """CPU seconds each process spent between two ``cpu_of`` snapshots (a new one: since it started)."""
    return " ".join(f"{k} {after[k] - before.get(k, 0.0):.2f}" for k in after) + " (CPU s)"


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 3) for k in after}


async def calls(
    node: Node, names: list[str], expect3: Expectation, out: dict[str, float], pids: dict[str, int], n_calls: int
) -> None:
    """Calls by name and by pid, one caller and 64 (the figures ``call_*``, into ``out``)."""
    # the names on other nodes (all of them from a client node), as Swarm's harness calls
    remote = [name for name, owner in zip(names, expect3.owners, strict=True) if owner != node.name]
    by_pid = [pid for name in remote if (pid := node.whereis(name)) is not None]
    for callers, suffix, count in ((1, "", n_calls), (64, "_64", n_calls * 5)):
        # pid, name, name, pid: both see the same drift of the machine's load
        rates: dict[str, list[float]] = {"pid": [], "name": []}
        for kind in ("pid", "name", "name", "pid"):
            targets = by_pid if kind == "pid" else remote
            rates[kind].append(await call_by_name(node, targets, callers, count // 2, pids))
        for kind, pair in rates.items():
            out[f"call_{kind}{suffix}"] = sum(pair) / len(pair)
    note(
        f"  call by name: {out['call_name']:,.0f}/s (by pid {out['call_pid']:,.0f}/s), "
        f"64 callers {out['call_name_64']:,.0f}/s (by pid {out['call_pid_64']:,.0f}/s)"
    )


async def one_run(
    n: int, args: argparse.Namespace, rng: random.Random, cpu: dict[str, list[dict[str, float]]]
) -> dict[str, float]:
    """Two fresh clusters (one for the registrations one at a time and the memory, one for
    everything else); the figures of this run."""
    out: dict[str, float] = {}
    names = [f"worker-{i}" for i in range(n)]
    positions = [hash_name(name) for name in names]
    origin = args.origin

    async with three_nodes(origin, args.membership) as (cluster, node):
        pids = {short: child.proc.pid for short, child in cluster.children.items()}
        expect3 = Expectation(names, positions, cluster.servers())
        rss0 = await cluster.server_rss()
        own0 = rss_bytes()
        rate, per_op = await register_all(node, names, 1, pids)
        out["register_one"] = rate
        cpu.setdefault("register_one", []).append(per_op)
        note(f"  register_one: {rate:,.0f}/s cpu µs/op {per_op}")
        await settle(cluster, expect3, n, 60 + n / 500, time.monotonic())
        rss1 = await cluster.server_rss()
        own1 = rss_bytes()
        out["memory_per_worker"] = (rss1 - rss0) / n
        if origin == "client":
            out["client_replica_bytes"] = (own1 - own0) / n
            note(f"  client replica: {out['client_replica_bytes']:.0f} B/name")
        note(f"  memory: {out['memory_per_worker']:.0f} B/worker")

    async with three_nodes(origin, args.membership) as (cluster, node):
        b, c = cluster.children["b"], cluster.children["c"]
        pids = {short: child.proc.pid for short, child in cluster.children.items()}
        a_name = cluster.server("a")
        three = cluster.servers()
        expect3 = Expectation(names, positions, three)
        rate, per_op = await register_all(node, names, 32, pids)
        out["register_32"] = rate
        cpu.setdefault("register_32", []).append(per_op)
        note(f"  register_32: {rate:,.0f}/s cpu µs/op {per_op}")
        await settle(cluster, expect3, n, 60 + n / 500, time.monotonic())
        if args.registrations_only:
            return out

        # lookups and calls by name (and by pid, side by side: what resolving the name costs)
        for key, value in time_whereis(node, names, 5).items():
            out[key] = value
        note(f"  whereis µs: node {out['whereis_node']:.3f} module {out['whereis_module']:.3f}")
        if not args.no_calls:
            await calls(node, names, expect3, out, pids, 5_000 if args.quick else 20_000)

        # a 4th node joins
        cpu0 = cpu_of(cluster)
        launched = time.monotonic()
        d = await cluster.start_child("d", [a_name])
        up = time.monotonic()
        out["join_startup"] = up - launched
        note(f"  ({up - launched:.2f} s to start d)")
        await timed(cluster, "join", Expectation(names, positions, [*three, d.name]), up, cpu0, out, cpu)
        await call_sample(node, names, rng)

        # b is SIGKILLed (or frozen), d still in (Swarm's run kills b of a, b, c, d); then d leaves gracefully
        expect = Expectation(names, positions, [a_name, c.name, d.name])
        if args.kill_signal == "stop":
            await goes(cluster, "freeze", b, lambda: os.kill(b.proc.pid, signal.SIGSTOP), expect, out, cpu)
            b.kill()  # declared down and replaced already: now it goes for good
        else:
            await goes(cluster, "kill", b, b.kill, expect, out, cpu)
        await b.wait(30)
        await call_sample(node, names, rng)
        await goes(cluster, "leave", d, d.terminate, Expectation(names, positions, [a_name, c.name]), out, cpu)
        await d.wait(30)
        await call_sample(node, names, rng)
    return out


async def timed(
    cluster: Cluster,
    key: str,
    expect: Expectation,
    started: float,
    cpu0: dict[str, float],
    out: dict[str, float],
    cpu: dict[str, list[dict[str, float]]],
) -> None:
    """Seconds from ``started`` until the cluster settles on ``expect`` (figure ``key`` in
    ``out``), and the CPU each process spent since ``cpu0`` (a ``cpu_of`` snapshot)."""
    n = len(expect.names)
    seconds, detail = await settle(cluster, expect, n, 60 + n / 200, started)
    out[key] = seconds
    cpu1 = cpu_of(cluster)
    cpu.setdefault(key, []).append(cpu_delta(cpu0, cpu1))
    note(f"  {key}: {seconds:.3f} s {detail}")
    note(f"    {cpu_note(cpu0, cpu1)}")


async def goes(
    cluster: Cluster,
    key: str,
    child: Child,
    stop: Callable[[], None],
    expect: Expectation,
    out: dict[str, float],
    cpu: dict[str, list[dict[str, float]]],
) -> None:
    """``stop`` ``child`` (kill, terminate, freeze); seconds until the rest settles on ``expect``."""
    cpu0 = cpu_of(cluster)
    started = time.monotonic()
    cluster.gone.add(child.name)
    stop()
    await timed(cluster, key, expect, started, cpu0, out, cpu)


def report(
    n: int, args: argparse.Namespace, runs: list[dict[str, float]], cpu: dict[str, list[dict[str, float]]]
) -> None:
    origin = args.origin
    units = {
        "register_one": "reg/s",
        "register_32": "reg/s",
        "whereis_node": "us",
        "whereis_module": "us",
        "bare_whereis": "us",
        "call_name": "calls/s",
        "call_pid": "calls/s",
        "call_name_64": "calls/s",
        "call_pid_64": "calls/s",
        "memory_per_worker": "B",
        "client_replica_bytes": "B",
        "join": "s",
        "join_startup": "s",
        "leave": "s",
        "kill": "s",
        "freeze": "s",
    }
    for key, unit in units.items():
        samples = [r[key] for r in runs if key in r]
        if not samples:
            continue
        value = median(samples)
        config: dict[str, Any] = {"n": n, "nodes": 3, "from": origin, "repeats": len(samples), "samples": samples}
        config["membership"] = args.membership
        config["load"] = os.getloadavg()[0]  # the 1-minute load average as the figure is reported
        if key == "client_replica_bytes":
            # Later runs reuse the memory the earlier clusters' replicas freed in this process:
            # only the first run's growth (a fresh heap) measures the replica.
            value = samples[0]
            config["measured"] = "first run only"
        goal = target_of(key, n)
        if goal is not None:
            config["target"] = goal
            config["met"] = value <= goal if key in MAXIMA else value >= goal
        if key in cpu:
            # CPU per process: µs per registration, or seconds for the whole join/leave/kill
            per = cpu[key]
            medians = {k: round(median([c[k] for c in per if k in c]), 3) for k in per[0]}
            config["cpu_us_per_op" if key.startswith("register") else "cpu_s"] = medians
        if key == "bare_whereis":
            for of in ("whereis_node", "whereis_module"):  # the limit beside each (run_all.py's bare_ pairing)
                emit(f"bare_registry_{of}_{label(n)}", value, unit, **config)
            continue
        emit(f"registry_{key}_{label(n)}", value, unit, **config)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="", help="comma-separated worker counts (default 10000,50000)")
    parser.add_argument("--repeats", type=int, default=0, help="runs per N (default 5 at 10k, 3 above)")
    parser.add_argument(
        "--from",
        dest="origin",
        choices=("client", "server"),
        default="client",
        help="register, look up and call from a client node beside a, b, c (default) or from server node a",
    )
    parser.add_argument(
        "--membership",
        choices=("local", "default"),
        default="local",
        help='membership settings of every node: the "local" preset (default) or MembershipConfig() (the defaults)',
    )
    parser.add_argument(
        "--kill-signal",
        choices=("kill", "stop"),
        default="kill",
        help="kill b with SIGKILL (figure kill), or freeze it with SIGSTOP (figure freeze: found by timeouts only)",
    )
    parser.add_argument("--no-calls", action="store_true", help="skip the calls by name and by pid")
    parser.add_argument(
        "--registrations-only",
        action="store_true",
        help="stop each run after the registrations and the memory (no lookups, calls, join, kill or leave)",
    )
    parser.add_argument("--quick", action="store_true", help="N = 2000, 1 run (a smoke run)")
    parser.add_argument("--only", default="", help="accepted for run_all.py; every phase always runs")
    return parser.parse_args()


async def main() -> None:
    args = parse()
    sizes = [int(x) for x in args.n.split(",") if x] or ([2_000] if args.quick else [10_000, 50_000])
    rng = random.Random(int(os.environ.get("BENCH_SEED", "1")))
    for n in sizes:
        repeats = args.repeats or (1 if args.quick else 5 if n <= 10_000 else 3)
        runs = []
        cpu: dict[str, list[dict[str, float]]] = {}
        for i in range(repeats):
            note(f"registry N={n:,} run {i + 1}/{repeats}")
            runs.append(await one_run(n, args, rng, cpu))
        report(n, args, runs, cpu)


if __name__ == "__main__":
    distable.run(main())
