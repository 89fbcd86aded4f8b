"""Membership benchmarks: nodes as real OS processes, local preset, Gossip multicast.

    .venv/bin/python bench/membership.py [--repeats 3] [--quick] [--only NAME,...]

Every node is a ``distable.testing.NodeProcess`` (its own Python process) on loopback,
discovering the others by multicast gossip on 127.0.0.1 (TTL 1) on a random port with a
random cookie, so no other run on this machine can mix in. Times come from the children's
own event stamps (the ``t`` of each ``NodeUp``/``NodeDown`` line, wall clock, one machine)
measured against the wall-clock moment this script acted. Each figure is the median of
``--repeats`` runs; every sample is in its config.

Figures (JSON lines, see _common.py):
    mesh_total_<N>         N nodes started together (N = 3, 8, 16): from the first process
                           start until every node's view is full              target N=8: < 2 s
    mesh_startup_<N>       ... of which process start-up: until the last child said "up"
    mesh_formation_<N>     ... and the rest: from the last "up" until the mesh was full
    mesh_cpu_<N>           CPU seconds the N children had used once the mesh was full (mostly
                           start-up: imports, then the node's start); divided by the number
                           of cores, it is the start-up time an otherwise idle machine allows
    node_start             one node alone: process start until "up" (Python start-up)
    node_down_after_kill   SIGKILL of one of 8 nodes -> NodeDown on every survivor (max
                           over survivors)                                         target: < 1.5 s
    partition_detect       (root only) one host of 4 cut off by nftables drop rules in its
                           namespace -> both sides report NodeDown
    heal_to_mesh           (root only) rules removed -> every view full again   target: < 2 s
    *_unplug               the same with the host's switch port taken down and up; the heal
                           then includes the kernel's activation of the link (up to ~1 s of
                           linkwatch delay before the veth passes packets again)
    gossip_udp_*           heartbeat traffic per node: packets and IP bytes sent per second
                           (from the interval and a sealed heartbeat's size), and received
                           (every other node's)
    membership_tcp_*       link traffic per node per second in a quiet 8-node cluster, from
                           the transport counters (probes, acks, push-pull, keep-alives)
    netns_link_tx_*        (root only) everything a node's host sent on its link per second,
                           from the kernel's interface counters, in a quiet 4-host cluster

The partition figures run on ``tests/netns/_topology.Lan`` (a switch and hosts in network
namespaces of their own, a private subnet); without root they are skipped with a note.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from _common import emit, median, note, parse_args, wanted

import distable
from distable.membership import Gossip, GossipCodec, Heartbeat
from distable.testing import NodeProcess, free_gossip_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.netns._topology, for the partition figures

from tests.netns._topology import Lan, missing_requirements, new_prefix  # noqa: E402

PRESET = "local"
GOSSIP_INTERVAL = 0.25  # the NodeProcess default (the library's own default is 1 s)
WAIT = 60.0  # seconds any one step may take before the run is declared failed
QUIET = 5.0  # seconds of the quiet window for the traffic figures


# --- helpers -----------------------------------------------------------------------------


async def poll(predicate: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = WAIT) -> None:
    """Wait until ``predicate`` holds, checking every 10 ms."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.01)


def full_at(node: NodeProcess, names: set[str], since: int = 0) -> float | None:
    """The child's time at which ``node``'s view (replayed from its events) was first full
    again at or after event index ``since``; None if it is not full yet."""
    want = names - {node.name}
    seen: set[str] = set()
    last = 0.0
    for index, e in enumerate(node.events):
        if index >= since and seen == want:
            return last  # full already when the mark was set
        if e["event"] == "NodeUp":
            seen.add(e["node"])
        elif e["event"] == "NodeDown":
            seen.discard(e["node"])
        last = float(e["t"])
        if index >= since and seen == want:
            return last
    return None


def mesh_time(nodes: Sequence[NodeProcess], since: dict[str, int] | None = None) -> float | None:
    """When the last node's view became full (child clocks), or None if some view is not full."""
    names = {n.name for n in nodes}
    times = [full_at(n, names, (since or {}).get(n.name, 0)) for n in nodes]
    if any(t is None for t in times):
        return None
    return max(t for t in times if t is not None)


async def views_full(nodes: Sequence[NodeProcess]) -> bool:
    names = {n.name for n in nodes}
    answers = await asyncio.gather(*(n.nodes() for n in nodes))
    return all(set(v) == names - {n.name} for n, v in zip(nodes, answers, strict=True))


async def close_all(nodes: Sequence[NodeProcess]) -> None:
    await asyncio.gather(*(n.close() for n in nodes), return_exceptions=True)


async def start_nodes(
    n: int, cookie: str, *, port: int, hosts: Sequence[tuple[str, str | None]] | None = None
) -> tuple[list[NodeProcess], list[float]]:
    """Start ``n`` nodes at once; return them and the wall-clock time each was up.

    ``hosts`` gives each node's (address, namespace); loopback by default.
    """

    async def one(i: int) -> tuple[NodeProcess, float]:
        addr, netns = hosts[i] if hosts else ("127.0.0.1", None)
        node = await NodeProcess.start(
            f"n{i}",
            cookie,
            host=addr,
            gossip=addr,
            gossip_port=port,
            gossip_interval=GOSSIP_INTERVAL,
            preset=PRESET,
            netns=netns,
            timeout=WAIT,
        )
        return node, time.time()

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    nodes = [r[0] for r in results if isinstance(r, tuple)]
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        await close_all(nodes)
        raise errors[0]
    return nodes, [r[1] for r in results if isinstance(r, tuple)]


def cpu_seconds(node: NodeProcess) -> float:
    """CPU time (user + system) the node's process has used so far, from /proc (Linux)."""
    with open(f"/proc/{node.proc.pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_downs(pairs: Sequence[tuple[NodeProcess, str]], marks: dict[str, int]) -> list[float] | None:
    """For each (node, about): the child's time of the first NodeDown of ``about`` that
    ``node`` reported from event index ``marks[node.name]`` on; None while one is missing."""
    found = []
    for node, about in pairs:
        times = [e["t"] for e in node.events[marks[node.name] :] if e["event"] == "NodeDown" and e["node"] == about]
        if not times:
            return None
        found.append(float(times[0]))
    return found


def reported(pairs: Sequence[tuple[NodeProcess, str]], marks: dict[str, int]) -> bool:
    return first_downs(pairs, marks) is not None


def meshed(nodes: Sequence[NodeProcess], since: dict[str, int] | None = None) -> bool:
    return mesh_time(nodes, since) is not None


def downs(nodes: Sequence[NodeProcess]) -> int:
    return sum(e["event"] == "NodeDown" for n in nodes for e in n.events)


# --- figures -------------------------------------------------------------------------------


async def form(n: int, rng: random.Random) -> tuple[dict[str, float], list[NodeProcess]]:
    """Start n nodes together; time start-up and formation. Returns the running nodes."""
    cookie = secrets.token_hex(8)
    port = free_gossip_port(range(47000, 48000), rng)
    t0 = time.time()
    nodes, ups = await start_nodes(n, cookie, port=port)
    try:
        if n == 1:
            return {"startup": max(ups) - t0}, nodes
        await poll(partial(meshed, nodes), f"full mesh of {n}")
        full = mesh_time(nodes)
        assert full is not None
        if not await views_full(nodes):
            raise RuntimeError(f"the events say the mesh of {n} formed, but nodes() disagrees")
    except BaseException:
        await close_all(nodes)
        raise
    times = {
        "startup": max(ups) - t0,
        "formation": full - max(ups),
        "total": full - t0,
        "startup_cpu": sum(cpu_seconds(node) for node in nodes),  # a little after start-up, in fact
    }
    if downs(nodes):
        note(f"  warning: {downs(nodes)} NodeDown events while {n} nodes formed a mesh")
    return times, nodes


async def kill_to_node_down(nodes: list[NodeProcess]) -> float:
    """SIGKILL the last node; seconds until every survivor reported it down (max)."""
    victim, survivors = nodes[-1], nodes[:-1]
    marks = {s.name: len(s.events) for s in survivors}
    pairs = [(s, victim.name) for s in survivors]
    t_kill = time.time()
    victim.kill()
    await poll(partial(reported, pairs, marks), "NodeDown for the killed node on every survivor")
    found = first_downs(pairs, marks)
    assert found is not None
    await victim.wait()
    return max(found) - t_kill


async def quiet_traffic(nodes: Sequence[NodeProcess], window: float) -> dict[str, float]:
    """Transport counters of every node over ``window`` seconds: per node per second."""
    before = await asyncio.gather(*(n.stats() for n in nodes))
    t0 = time.monotonic()
    await asyncio.sleep(window)  # a benchmark's measuring window, not a wait for a condition
    after = await asyncio.gather(*(n.stats() for n in nodes))
    elapsed = time.monotonic() - t0

    def total(stats: dict[str, Any], key: str) -> int:
        return sum(int(p[key]) for p in stats["transport"]["peers"])

    per_node = len(nodes) * elapsed
    return {
        key: sum(total(a, key) - total(b, key) for a, b in zip(after, before, strict=True)) / per_node
        for key in ("bytes_out", "messages_out", "frames_out")
    }


def heartbeat_ip_bytes(name: str, cookie: str) -> int:
    """The size on the wire (IPv4 + UDP headers included) of one heartbeat of ``name``."""
    codec = GossipCodec(cookie.encode(), encrypt=Gossip().encrypt)
    packet = codec.seal(Heartbeat(name, time.time_ns() // 1000, 0), time.time(), os.urandom(16))
    return len(packet) + 20 + 8


def link_counters(netns: str, iface: str) -> tuple[int, int]:
    """(tx packets, tx bytes) of an interface inside a namespace, from ``ip -s -j link``."""
    out = subprocess.run(
        ["ip", "-n", netns, "-s", "-j", "link", "show", iface], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    tx = json.loads(out)[0]["stats64"]["tx"]
    return int(tx["packets"]), int(tx["bytes"])


async def partition_figures(hosts_n: int, repeats: int, rng: random.Random) -> dict[str, list[float]]:
    """On a netns LAN: cut one host off and heal it, ``repeats`` times by each method (nftables
    rules in its namespace; its switch port down); plus the links' counters in a quiet window."""
    lan = Lan(new_prefix(), rng.randrange(1, 255))
    nodes: list[NodeProcess] = []
    samples: dict[str, list[float]] = {"tx_packets": [], "tx_bytes": []}
    try:
        hosts = lan.build(hosts_n)
        nodes, _ = await start_nodes(
            hosts_n, secrets.token_hex(8), port=Gossip().port, hosts=[(h.addr, h.netns) for h in hosts]
        )
        await poll(partial(meshed, nodes), "full mesh on the netns LAN")

        before = [link_counters(h.netns, h.iface) for h in hosts]
        t0 = time.monotonic()
        await asyncio.sleep(QUIET)  # measuring window
        after = [link_counters(h.netns, h.iface) for h in hosts]
        elapsed = time.monotonic() - t0
        samples["tx_packets"].append(sum(a[0] - b[0] for a, b in zip(after, before, strict=True)) / hosts_n / elapsed)
        samples["tx_bytes"].append(sum(a[1] - b[1] for a, b in zip(after, before, strict=True)) / hosts_n / elapsed)

        lone, others = nodes[-1], nodes[:-1]
        pairs = [(lone, o.name) for o in others] + [(o, lone.name) for o in others]
        cuts = {"nftables": (lan.block, lan.unblock), "unplug": (lan.unplug, lan.plug)}
        for method, (cut, heal) in cuts.items():
            for _ in range(repeats):
                marks = {n.name: len(n.events) for n in nodes}
                t_cut = time.time()
                await cut(hosts[-1])
                await poll(partial(reported, pairs, marks), "both sides of the cut report NodeDown")
                found = first_downs(pairs, marks)
                assert found is not None
                samples.setdefault(f"detect_{method}", []).append(max(found) - t_cut)

                healed = {n.name: len(n.events) for n in nodes}
                t_heal = time.time()
                await heal(hosts[-1])
                await poll(partial(meshed, nodes, healed), "full mesh after the heal")
                full = mesh_time(nodes, healed)
                assert full is not None
                samples.setdefault(f"heal_{method}", []).append(full - t_heal)
                if not await views_full(nodes):
                    raise RuntimeError("the events say the mesh healed, but nodes() disagrees")
                falsely_down = [
                    e["node"]
                    for o in others
                    for e in o.events[marks[o.name] :]
                    if e["event"] == "NodeDown" and e["node"] != lone.name
                ]
                if falsely_down:
                    note(f"  warning: live nodes reported down during the cut: {falsely_down}")
    finally:
        await close_all(nodes)
        lan.close()
    return samples


# --- main ------------------------------------------------------------------------------------


async def main() -> None:
    args = parse_args(__doc__, repeats=3)
    reps = max(1, args.repeats)
    seed = int(os.environ.get("DISTABLE_BENCH_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    note(f"seed {seed}; {os.cpu_count()} CPUs; preset {PRESET}, gossip every {GOSSIP_INTERVAL} s on loopback")
    base = {"preset": PRESET, "gossip_interval": GOSSIP_INTERVAL, "repeats": reps}
    sizes = (3, 8) if args.quick else (3, 8, 16)

    if wanted(args, "node_start"):
        starts = []
        for _ in range(reps):
            times, nodes = await form(1, rng)
            await close_all(nodes)
            starts.append(times["startup"])
        emit("node_start", median(starts), "s", **base, samples=starts)
        note(f"node_start: {median(starts):.3f} s")

    kills: list[float] = []
    traffic: list[dict[str, float]] = []
    hb_bytes = 0
    for n in sizes:
        names = [f"mesh_total_{n}", f"mesh_startup_{n}", f"mesh_formation_{n}"]
        measure_kill = n == 8 and wanted(args, "node_down_after_kill")
        measure_traffic = n == 8 and any(wanted(args, f) for f in ("gossip_udp", "membership_tcp"))
        if not (any(wanted(args, f) for f in names) or measure_kill or measure_traffic):
            continue
        runs: list[dict[str, float]] = []
        for _ in range(reps):
            times, nodes = await form(n, rng)
            try:
                runs.append(times)
                note(f"  {n} nodes: " + ", ".join(f"{k} {v:.3f} s" for k, v in times.items()))
                if measure_traffic:
                    traffic.append(await quiet_traffic(nodes, QUIET))
                    hb_bytes = heartbeat_ip_bytes(nodes[0].name, "x" * 16)
                if measure_kill:
                    kills.append(await kill_to_node_down(nodes))
                    note(f"  SIGKILL -> NodeDown everywhere: {kills[-1]:.3f} s")
            finally:
                await close_all(nodes)
        for key in ("total", "startup", "formation"):
            samples = [r[key] for r in runs]
            emit(f"mesh_{key}_{n}", median(samples), "s", **base, nodes=n, samples=samples)
        cpu = [r["startup_cpu"] for r in runs]
        emit(f"mesh_cpu_{n}", median(cpu), "cpu-s", **base, nodes=n, cpus=os.cpu_count(), samples=cpu)
        note(f"mesh of {n}: total {median([r['total'] for r in runs]):.3f} s")

    if kills:
        emit("node_down_after_kill", median(kills), "s", **base, nodes=8, samples=kills)
    if traffic:
        n = 8
        for key, unit in (("bytes_out", "B/s"), ("messages_out", "msg/s"), ("frames_out", "frames/s")):
            samples = [t[key] for t in traffic]
            emit(
                f"membership_tcp_{key}_per_node",
                median(samples),
                unit,
                **base,
                nodes=n,
                window_s=QUIET,
                samples=samples,
            )
        packets = 1 / GOSSIP_INTERVAL
        emit("gossip_udp_packets_sent_per_node", packets, "pkt/s", **base, nodes=n)
        emit("gossip_udp_bytes_sent_per_node", packets * hb_bytes, "B/s", **base, nodes=n, packet_ip_bytes=hb_bytes)
        emit("gossip_udp_packets_received_per_node", (n - 1) * packets, "pkt/s", **base, nodes=n)
        emit("gossip_udp_bytes_received_per_node", (n - 1) * packets * hb_bytes, "B/s", **base, nodes=n)

    if any(wanted(args, f) for f in ("partition_detect", "heal_to_mesh", "netns_link_tx")):
        reason = missing_requirements()
        if reason is not None:
            note(f"skipping the partition figures: {reason}")
        else:
            hosts_n = 4
            s = await partition_figures(hosts_n, reps, rng)
            cfg = {**base, "hosts": hosts_n}
            for method, suffix in (("nftables", ""), ("unplug", "_unplug")):
                how = {"cut": "nftables drop rules in the host's namespace"}
                if method == "unplug":
                    how = {"cut": "the host's switch port down", "includes": "kernel link activation delay"}
                detect, heal = s[f"detect_{method}"], s[f"heal_{method}"]
                emit(f"partition_detect{suffix}", median(detect), "s", **cfg, **how, samples=detect)
                emit(f"heal_to_mesh{suffix}", median(heal), "s", **cfg, **how, samples=heal)
                note(f"partition by {method}: detect {median(detect):.3f} s, heal {median(heal):.3f} s")
            emit("netns_link_tx_packets_per_node", median(s["tx_packets"]), "pkt/s", **cfg, window_s=QUIET)
            emit("netns_link_tx_bytes_per_node", median(s["tx_bytes"]), "B/s", **cfg, window_s=QUIET)


if __name__ == "__main__":
    distable.run(main())
