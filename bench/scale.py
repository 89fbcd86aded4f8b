"""Scale (issue 13, item 5): a cluster of many ``distable node`` processes, and the chart of
join and kill costs as N grows, beside Swarm's.

    .venv/bin/python bench/scale.py [--quick] [cluster [--nodes 16] [--n 20000] [--window 60]
        [--membership default|local] [--logs DIR]]
    .venv/bin/python bench/scale.py chart FILE.jsonl... [--swarm RUN_DIR...] [-o docs/scale.png]

``cluster``: ``--nodes`` real ``distable node`` server processes (``s01``, ``s02``...; each
``--cluster none --connect s01``, so no multicast: they find each other through s01's
member table), default settings (``--membership lan``, the default), each running
``_scaleapp`` (a probe the benchmark calls), and this process's own client node (linked
to s01; it registers, looks up and asks the probes, and owns no names). Phases, each
figure a JSON line (``_common.emit``) named ``scale_<figure>_<nodes>n_<N>``:

  formation    seconds from the first launch until every node places names on all of them
  register_32  N names registered from 32 concurrent callers here, until the last reply
  memory       the RSS growth of the server nodes together, per name (process + every replica)
  traffic      a quiet window (``--window`` s, nothing registered or asked): what each
               node's links to the other server nodes carried (the transport's per-peer
               counters, read through the probe before and after), per node per second:
               bytes and messages out and in (the mean over the nodes, and the min and
               max in the config), with the membership's probes and rumors and the
               registry's syncs. In a quiet cluster these links carry only membership
               (SWIM probes, push-pull) and the registry's anti-entropy
  join         one more node starts: seconds from its launch (``join``) and from its "up"
               line (``join_after_up``) until every name is on its owner in the new
               placement and every replica is equal (bench/registry.py's ``settle``)
  kill         a node is SIGKILLed (s05 of 16): seconds until every name runs again and every replica
               is equal
  leave        another node (s11 of 16) leaves gracefully (SIGTERM: it hands its names off): the same

``chart``: reads JSON lines of bench/registry.py (figures ``registry_join_*`` and
``registry_kill_*``; samples of one N and membership setting pooled, their median drawn)
and the folders of Swarm runs (bench/swarm/run.sh: ``ctl.log`` and ``run.log``), and draws
join and kill time against N, distable's points beside Swarm's, to a PNG. A Swarm step that
timed out is drawn at its bound with an arrow up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import emit, median, note
from registry import (
    Cluster,
    Expectation,
    call_sample,
    cpu_of,
    goes,
    membership_config,
    register_all,
    settle,
    timed,
)

import distable
from distable import Node, Pid
from distable.ring import hash_name
from distable.testing import die_with_parent

HERE = Path(__file__).resolve().parent
LOGS = "/tmp/distable-scale-logs"


class CliNode:
    """One ``distable node`` process, asked through its probe (``_scaleapp``) by the client
    node of ``cluster``: what ``NodeProcess`` offers bench/registry.py's ``Cluster``."""

    def __init__(self, cluster: Cluster, proc: asyncio.subprocess.Process, name: str, probe: Pid) -> None:
        self.cluster = cluster
        self._proc = proc
        self.name = name
        self.probe = probe
        assert proc.stdout is not None
        self._drain = asyncio.ensure_future(proc.stdout.read())  # never let a full pipe block it

    @property
    def proc(self) -> asyncio.subprocess.Process:
        return self._proc

    @classmethod
    async def start(cls, cluster: Cluster, short: str, connect: Sequence[str], membership: str, logs: Path) -> CliNode:
        args = [sys.executable, "-m", "distable.cli", "node", "--name", short, "--host", "127.0.0.1", "--port", "0"]
        args += ["--cookie", cluster.cookie, "--cluster", "none", "--app-dir", str(HERE), "--app", "_scaleapp:start"]
        args += ["--join-timeout", "0", "--log-level", "warning"]
        if membership == "local":
            args += ["--membership", "local"]
        for node in connect:
            args += ["--connect", node]
        with (logs / f"{short}.log").open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=err,
                preexec_fn=die_with_parent,
            )  # fmt: skip
        assert proc.stdout is not None
        probe: Pid | None = None
        try:
            while True:
                line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
                if not line:
                    raise RuntimeError(f"{short} exited with {await proc.wait()} before it was up; see {logs}")
                if line.startswith("scale-probe "):
                    raw = json.loads(line.partition(" ")[2])
                    probe = Pid(raw[0], raw[1], raw[2])
                elif line.startswith("distable: node ") and probe is not None:
                    return cls(cluster, proc, probe.node, probe)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise

    async def ask(self, question: str, timeout: float = 30.0) -> Any:
        return await self.cluster.client.call(self.probe, question, timeout=timeout)

    async def registry_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.ask("registry_stats")
        return result

    async def registry_check(self, timeout: float = 30.0) -> dict[str, Any]:
        result: dict[str, Any] = await self.ask("registry_check", timeout)
        return result

    async def rss(self) -> int:
        return int(await self.ask("rss"))

    async def traffic(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.ask("traffic")
        return result

    def kill(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()

    def terminate(self) -> None:
        if self._proc.returncode is None:
            self._proc.terminate()

    async def wait(self, timeout: float = 20.0) -> int:
        return await asyncio.wait_for(self._proc.wait(), timeout)

    async def close(self) -> None:
        self.kill()
        with contextlib.suppress(Exception):
            await self.wait(20)
        self._drain.cancel()


class CliCluster(Cluster):
    """bench/registry.py's cluster, its server nodes ``distable node`` processes."""

    def __init__(self, cookie: str, membership: str, logs: Path) -> None:
        super().__init__(cookie, "client", membership)
        self.logs = logs

    async def start_child(self, short: str, connect: Sequence[str]) -> CliNode:
        child = await CliNode.start(self, short, connect, self.membership, self.logs)
        self.children[short] = child
        return child


def cli_children(cluster: CliCluster) -> list[CliNode]:
    return [c for c in cluster.live() if isinstance(c, CliNode)]


async def traffic_window(cluster: CliCluster, seconds: float) -> dict[str, Any]:
    """What each server node's links to the other server nodes carried in a quiet window."""
    children = cli_children(cluster)
    servers = {c.name for c in children}
    before = await asyncio.gather(*(c.traffic() for c in children))
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    after = await asyncio.gather(*(c.traffic() for c in children))
    elapsed = time.monotonic() - t0
    per: dict[str, list[float]] = defaultdict(list)
    for b, a in zip(before, after, strict=True):
        sums = [0, 0, 0, 0]
        for peer, counts in a["peers"].items():
            if peer not in servers:
                continue  # this benchmark's client node: the probes' own calls
            old = b["peers"].get(peer, [0, 0, 0, 0])
            for i in range(4):
                sums[i] += counts[i] - old[i]
        for key, value in zip(("bytes_in", "bytes_out", "messages_in", "messages_out"), sums, strict=True):
            per[key].append(value / elapsed)
        for group in ("membership", "registry"):
            for key, value in a[group].items():
                per[key].append((value - b[group][key]) / elapsed)
    return {key: {"mean": sum(v) / len(v), "min": min(v), "max": max(v)} for key, v in per.items()}


async def run_cluster(args: argparse.Namespace) -> None:
    nodes, n = args.nodes, args.n
    tag = f"{nodes}n_{n // 1000}k" if n % 1000 == 0 else f"{nodes}n_{n}"
    logs = Path(args.logs)
    cluster = CliCluster(secrets.token_hex(16), args.membership, logs)
    rng = random.Random(int(os.environ.get("BENCH_SEED", "1")))
    names = [f"worker-{i}" for i in range(n)]
    positions = [hash_name(name) for name in names]
    base = {"n": n, "nodes": nodes, "membership": args.membership}

    def figure(key: str, value: float, unit: str, **config: Any) -> None:
        emit(f"scale_{key}_{tag}", value, unit, **base, load=os.getloadavg()[0], **config)

    try:
        launched = time.monotonic()
        first = await cluster.start_child("s01", ())
        await asyncio.gather(*(cluster.start_child(f"s{i:02d}", [first.name]) for i in range(2, nodes + 1)))
        all_up = time.monotonic()
        config = membership_config(args.membership)
        async with Node("bench", cookie=cluster.cookie, role="client", membership=config) as node:
            cluster.node = node
            await node.connect(first.name, timeout=20.0)
            await cluster.wait_placement(cluster.servers(), timeout=120)
            formed = time.monotonic()
            figure("formation", formed - launched, "s", processes_up=all_up - launched)
            note(f"formation: {formed - launched:.2f} s ({all_up - launched:.2f} s until every process was up)")

            rss0 = await cluster.server_rss()
            rate, _ = await register_all(node, names, 32, {})
            figure("register_32", rate, "reg/s")
            note(f"register_32: {rate:,.0f}/s")
            expect = Expectation(names, positions, cluster.servers())
            await settle(cluster, expect, n, 60 + n / 200, time.monotonic())
            per_name = (await cluster.server_rss() - rss0) / n
            figure("memory_per_name", per_name, "B", replicas=nodes + 1)
            note(f"memory: {per_name:.0f} B per name (its process and {nodes} server replicas)")

            await asyncio.sleep(2.0)  # the registrations' last deltas and acks
            t = await traffic_window(cluster, args.window)
            for key in ("bytes_out", "bytes_in", "messages_out", "messages_in"):
                unit = "B/s" if key.startswith("bytes") else "msg/s"
                figure(f"traffic_{key}", t[key]["mean"], unit, window=args.window, **t[key])
            figure("membership_probes", t["probes"]["mean"], "probes/s", window=args.window)
            figure("registry_syncs", t["syncs_sent"]["mean"], "syncs/s", window=args.window)
            note(f"traffic per node: {json.dumps({k: round(v['mean'], 1) for k, v in t.items()})}")

            out: dict[str, float] = {}
            cpu: dict[str, list[dict[str, float]]] = {}
            cpu0 = cpu_of(cluster)
            started = time.monotonic()
            await cluster.start_child(f"s{nodes + 1:02d}", [first.name])
            up = time.monotonic()
            expect = Expectation(names, positions, cluster.servers())
            await timed(cluster, "join", expect, started, cpu0, out, cpu)
            figure("join", out["join"], "s", up_line=up - started, cpu_s=sum(cpu["join"][-1].values()))
            figure("join_after_up", out["join"] - (up - started), "s")
            await call_sample(node, names, rng)

            # one node SIGKILLed (s05 of 16), then another leaves gracefully (s11 of 16)
            for key, index in (("kill", max(2, nodes // 3)), ("leave", 2 * nodes // 3 + 1)):
                child = cluster.children[f"s{index:02d}"]
                stop = child.kill if key == "kill" else child.terminate
                servers = [s for s in cluster.servers() if s != child.name]
                await goes(cluster, key, child, stop, Expectation(names, positions, servers), out, cpu)
                figure(key, out[key], "s", cpu_s=sum(cpu[key][-1].values()))
                await child.wait(60)
                await call_sample(node, names, rng)
    finally:
        await cluster.close()


# --- the chart --------------------------------------------------------------------------------


def distable_points(paths: Sequence[str]) -> dict[tuple[str, str], dict[int, list[float]]]:
    """(figure, membership) -> N -> samples, from bench/registry.py's JSON lines."""
    out: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            fig = json.loads(line)
            match = re.fullmatch(r"registry_(join|kill)_\d+k?", fig["name"])
            if match:
                config = fig["config"]
                out[(match[1], config.get("membership", "local"))][config["n"]] += config["samples"]
    return out


def swarm_points(folders: Sequence[str]) -> dict[str, dict[int, list[tuple[float, bool]]]]:
    """figure -> N -> [(seconds, timed out)], from Swarm runs (run.sh's run.log and ctl.log):
    the time at which every name ran on its owner (the ``api`` time, as in summarize.py)."""
    out: dict[str, dict[int, list[tuple[float, bool]]]] = defaultdict(lambda: defaultdict(list))
    for folder in folders:
        head = (Path(folder) / "run.log").read_text()
        text = (Path(folder) / "ctl.log").read_text()
        run = re.search(r"N=(\d+)", head)
        assert run is not None, folder
        for key, pattern in (("join", r"join: "), ("kill", r"kill b \(\d+ procs\): ")):
            conv = re.search(pattern + r"%\{api: \{:(\w+), ([\d.]+)\}", text)
            if conv is not None:
                out[key][int(run[1])].append((float(conv[2]), conv[1] != "ok"))
    return out


def draw(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = distable_points(args.files)
    swarm = swarm_points(args.swarm)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    labels = {"default": "distable, default settings", "local": 'distable, "local" preset'}
    for ax, key, title in zip(axes, ("join", "kill"), ("a 4th node joins", "a node is SIGKILLed"), strict=True):
        for (fig_key, membership), by_n in sorted(ours.items(), key=lambda kv: kv[0][1] != "default"):
            if fig_key != key:
                continue
            xs = sorted(by_n)
            ys = [median(by_n[x]) for x in xs]
            ax.plot(xs, ys, "o-", label=labels.get(membership, membership))
            for x, y in zip(xs, ys, strict=True):  # the default's labels above, the others' below
                offset = (-10, 7) if membership == "default" else (-10, -13)
                ax.annotate(f"{y:.2f} s", (x, y), textcoords="offset points", xytext=offset, fontsize=8)
        for x, runs in sorted(swarm.get(key, {}).items()):
            y = median([s for s, _ in runs])
            timed_out = any(t for _, t in runs)
            ax.plot([x], [y], "^" if timed_out else "s", color="tab:red", markersize=8, label="Swarm 3.4")
            text = f"> {y:.0f} s (bound)" if timed_out else f"{y:.2f} s" if y < 10 else f"{y:.1f} s"
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8, color="tab:red")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted({n for by_n in ours.values() for n in by_n} | set(swarm.get(key, {})))
        ax.set_xticks(ticks, [f"{t // 1000}k" for t in ticks])
        ax.minorticks_off()
        ax.set_xlim(ticks[0] * 0.8, ticks[-1] * 1.25)
        ax.set_ylim(0.1, 600)
        ax.set_xlabel("names (N), 3 server nodes")
        ax.set_title(f"{title}: every name running on its owner")
        ax.grid(True, which="both", alpha=0.3)
        handles, names = ax.get_legend_handles_labels()
        unique = dict(zip(names, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=8, loc="upper left")
    axes[0].set_ylabel("seconds (log scale)")
    fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    note(f"wrote {args.output}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # As run_all.py runs every script (no command: the cluster run; --quick: 4 nodes, 2,000 names)
    parser.add_argument("--quick", action="store_true", help="cluster: 4 nodes, 2,000 names, a 5 s window")
    parser.add_argument("--repeats", type=int, default=1, help="accepted for run_all.py; one run")
    parser.add_argument("--only", default="", help="accepted for run_all.py; every phase always runs")
    parser.set_defaults(command="cluster", nodes=16, n=20_000, window=60.0, membership="default", logs=LOGS)
    sub = parser.add_subparsers(dest="command")
    c = sub.add_parser("cluster", help="many distable node processes: join, kill, leave, traffic")
    c.add_argument("--nodes", type=int, default=16)
    c.add_argument("--n", type=int, default=20_000)
    c.add_argument("--window", type=float, default=60.0, help="seconds of the quiet traffic window")
    c.add_argument("--membership", choices=("default", "local"), default="default")
    c.add_argument("--logs", default=LOGS, help="the nodes' stderr, one file each")
    ch = sub.add_parser("chart", help="join and kill against N, beside Swarm's")
    ch.add_argument("files", nargs="+", help="JSON lines of bench/registry.py")
    ch.add_argument("--swarm", nargs="*", default=[], help="folders of Swarm runs (run.sh's logs)")
    ch.add_argument("-o", "--output", default="scale.png")
    ch.add_argument("--title", default="join and kill against N")
    args = parser.parse_args()
    args.command = args.command or "cluster"
    if args.quick and args.command == "cluster":
        args.nodes, args.n, args.window = 4, 2_000, 5.0
    return args


def main() -> None:
    args = parse()
    if args.command == "chart":
        draw(args)
    else:
        Path(args.logs).mkdir(parents=True, exist_ok=True)
        distable.run(run_cluster(args))


if __name__ == "__main__":
    main()
