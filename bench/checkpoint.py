"""Checkpoint benchmarks (issue 12) on 3 real server nodes and a client node here.

    .venv/bin/python bench/checkpoint.py [--n 10000,50000] [--repeats 3] [--quick]

Setup: server nodes a, b, c each in their own OS process (``NodeProcess``, membership
preset "local"), this process a client node (it owns no names), as bench/registry.py's
``--from client``. Workers are ``_workers.Keeper``: a call ``("put", v)`` checkpoints
``v`` and answers once its standbys hold it.

  latency      1,000 workers with ``replicas=1`` and 1,000 with ``replicas=2``; one caller
               and then 64 callers here call them round-robin by name, ``("echo", v)``
               (the same call, no checkpoint: the baseline), ``("put", v)`` for each
               replica count, measured echo, r1, r2, r2, r1, echo so that each sees the
               same drift of the machine; calls/s and the p50/p99 latency of one call
  write_behind one worker takes 10,000 casts a second for 3 s, ``("wb", v)`` (a
               write-behind checkpoint each) and, as the baseline, ``("inc", v)`` (none):
               the puts its host really sent per second (messages to its standby, less the
               baseline's), the CPU of the host, and the state its standby holds at the end
  memory       N workers (``replicas=1``) registered, then each checkpoints a small state
               (a dict of about 100 bytes encoded): RSS growth of a, b and c per worker,
               registered and then checkpointed
  kill         then b is SIGKILLed: seconds until every name runs again on a or c with
               every replica equal (as bench/registry.py's kill); then every name is
               called and must answer the state it last checkpointed

Figures are JSON lines (see _common.py), each with its N where it has one.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from _common import Timer, emit, median, note
from registry import Cluster, Expectation, cpu_delta, cpu_of, label, settle, three_nodes

import distable
from distable import Node, Process
from distable.ring import hash_name
from distable.testing import NodeProcess

KEEPER = "_workers:Keeper"


class Caller(Process):
    """On ``("run", names, n, kind, future)``: ``n`` calls ``(kind, i)`` round-robin by name;
    the future gets the latency of each call in seconds."""

    async def handle_info(self, message: Any) -> None:
        _, names, n, kind, fut = message
        call = distable.call
        clock = time.perf_counter
        k = len(names)
        took = []
        for i in range(n):
            start = clock()
            await call(names[i % k], (kind, i))
            took.append(clock() - start)
        fut.set_result(took)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def calls(node: Node, names: list[str], kind: str, callers: int, n: int, pids: dict[str, int]) -> dict[str, Any]:
    """``n`` calls of ``kind`` from ``callers`` processes here: rate, latency, CPU per call."""
    loops = [await node.spawn(Caller) for _ in range(callers)]
    loop = asyncio.get_running_loop()
    futs: list[asyncio.Future[list[float]]] = [loop.create_future() for _ in loops]
    per = n // callers
    with Timer(pids) as t:
        for i, (pid, fut) in enumerate(zip(loops, futs, strict=True)):
            node.send(pid, ("run", names[i::callers] or names, per, kind, fut))
        took = [x for part in await asyncio.wait_for(asyncio.gather(*futs), 300) for x in part]
    for pid in loops:
        await node.stop_process(pid)
    sample = t.sample(per * callers)
    return {"rate": sample.value, "p50": percentile(took, 0.5), "p99": percentile(took, 0.99), "cpu": sample.cpu_us}


async def register(node: Node, names: list[str], replicas: int, callers: int = 32) -> None:
    async def part(chunk: list[str]) -> None:
        for name in chunk:
            await node.register(name, KEEPER, replicas=replicas)

    await asyncio.gather(*(part(names[i::callers]) for i in range(callers)))


async def latency(cluster: Cluster, node: Node, quick: bool) -> dict[str, Any]:
    pids = {short: child.proc.pid for short, child in cluster.children.items()}
    sets = {1: [f"r1-{i}" for i in range(1000)], 2: [f"r2-{i}" for i in range(1000)]}
    for replicas, names in sets.items():
        await register(node, names, replicas)
        # a name's first checkpoint also makes its claim again, with the lineage it begins
        # (once per name): done here, so that the figures are of checkpoints in a steady state
        await calls(node, names, "put", 64, len(names), pids)
    n1 = 2_000 if quick else 10_000
    out: dict[str, list[dict[str, Any]]] = {}
    for callers, n in ((1, n1), (64, n1 * 5)):
        for key in ("echo", "r1", "r2", "r2", "r1", "echo"):
            names = sets[2] if key == "r2" else sets[1]
            result = await calls(node, names, "echo" if key == "echo" else "put", callers, n // 2, pids)
            out.setdefault(f"{key}_{callers}", []).append(result)
    figures: dict[str, Any] = {}
    for key, results in out.items():
        figures[key] = {
            "rate": sum(r["rate"] for r in results) / len(results),
            "p50_us": median([r["p50"] for r in results]) * 1e6,
            "p99_us": median([r["p99"] for r in results]) * 1e6,
        }
        note(
            f"  {key}: {figures[key]['rate']:,.0f} calls/s "
            f"p50 {figures[key]['p50_us']:.0f} µs p99 {figures[key]['p99_us']:.0f} µs"
        )
    return figures


async def write_behind(cluster: Cluster, node: Node, quick: bool) -> dict[str, Any]:
    """10,000 casts a second for 3 s to one worker, with and without write-behind checkpoints."""
    name = "hot"
    await node.register(name, KEEPER, replicas=1)
    pid = node.whereis(name)
    assert pid is not None
    host = next(c for c in cluster.children.values() if c.name == pid.node)
    assert isinstance(host, NodeProcess)  # three_nodes starts NodeProcess children
    short = next(s for s, c in cluster.children.items() if c is host)
    seconds, rate = (1.0 if quick else 3.0), 10_000
    out: dict[str, Any] = {}
    for kind in ("inc", "wb", "wb", "inc"):
        before = await host.stats()
        cpu0 = cpu_of(cluster)
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        total = int(seconds * rate)
        while sent < total:  # bounded: total casts, paced in bursts of 100 every 10 ms
            for _ in range(100):
                node.cast(pid, (kind, sent))
                sent += 1
            due = start + sent / rate
            await asyncio.sleep(max(0.0, due - loop.time()))
        got = await node.call(pid, "get", timeout=10.0)
        elapsed = loop.time() - start
        after = await host.stats()
        cpu = cpu_delta(cpu0, cpu_of(cluster))
        if got != total - 1:
            raise RuntimeError(f"the worker holds {got!r}, not {total - 1}")
        out.setdefault(kind, []).append(
            {
                "messages_out": messages_out(after) - messages_out(before),
                "bytes_out": bytes_out(after) - bytes_out(before),
                "seconds": elapsed,
                "host_cpu": cpu[short] / elapsed,
            }
        )
    wb, inc = out["wb"], out["inc"]
    puts = median([r["messages_out"] / r["seconds"] for r in wb]) - median(
        [r["messages_out"] / r["seconds"] for r in inc]
    )
    figures = {
        "puts_per_s": puts,
        "bytes_per_s": median([r["bytes_out"] / r["seconds"] for r in wb])
        - median([r["bytes_out"] / r["seconds"] for r in inc]),
        "host_cpu_wb": median([r["host_cpu"] for r in wb]),
        "host_cpu_none": median([r["host_cpu"] for r in inc]),
    }
    note(
        f"  write-behind at {rate:,}/s: {puts:,.0f} puts/s sent, host CPU {figures['host_cpu_wb']:.0%} "
        f"(without checkpoints {figures['host_cpu_none']:.0%})"
    )
    return figures


def messages_out(stats: dict[str, Any]) -> int:
    return sum(p["messages_out"] for p in stats["transport"]["peers"])


def bytes_out(stats: dict[str, Any]) -> int:
    return sum(p["bytes_out"] for p in stats["transport"]["peers"])


def state_of(i: int) -> dict[str, Any]:
    """A small state, about 100 bytes encoded, different for every worker."""
    return {"count": i, "owner": f"user-{i}", "tags": ["a", "b", "c"], "pad": "x" * 48}


async def memory_and_kill(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    names = [f"worker-{i}" for i in range(n)]
    positions = [hash_name(name) for name in names]
    async with three_nodes("client") as (cluster, node):
        servers = cluster.servers()
        rss0 = await cluster.server_rss()
        await register(node, names, 1)
        await settle(cluster, Expectation(names, positions, servers), n, 60 + n / 500, time.monotonic())
        rss1 = await cluster.server_rss()

        async def put(chunk: list[int]) -> None:
            for i in chunk:
                await node.call(names[i], ("put", state_of(i)), timeout=30.0)

        started = time.monotonic()
        await asyncio.gather(*(put(list(range(k, n, 64))) for k in range(64)))
        out["checkpoint_all_per_s"] = n / (time.monotonic() - started)
        rss2 = await cluster.server_rss()
        out["memory_registered"] = (rss1 - rss0) / n
        out["memory_checkpointed"] = (rss2 - rss1) / n
        note(
            f"  memory per worker: {out['memory_registered']:.0f} B registered, "
            f"+{out['memory_checkpointed']:.0f} B checkpointed "
            f"({out['checkpoint_all_per_s']:,.0f} checkpoints/s, 64 callers)"
        )

        b = cluster.children["b"]
        rest = [s for s in servers if s != b.name]
        cpu0 = cpu_of(cluster)
        started = time.monotonic()
        cluster.gone.add(b.name)
        b.kill()
        seconds, detail = await settle(cluster, Expectation(names, positions, rest), n, 60 + n / 200, started)
        out["kill"] = seconds
        note(f"  kill: {seconds:.3f} s {detail}; CPU s {cpu_delta(cpu0, cpu_of(cluster))}")
        await b.wait(30)

        wrong = 0

        async def check(chunk: list[int]) -> None:
            nonlocal wrong
            for i in chunk:
                if await node.call(names[i], "get", timeout=30.0) != state_of(i):
                    wrong += 1

        await asyncio.gather(*(check(list(range(k, n, 64))) for k in range(64)))
        if wrong:
            raise RuntimeError(f"{wrong} of {n} workers did not come back with their last checkpoint")
        note(f"  every one of the {n:,} workers answers its last checkpoint")
    return out


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--n", default="", help="comma-separated worker counts for memory and kill (default 10000,50000)"
    )
    parser.add_argument("--repeats", type=int, default=0, help="runs per N (default 3 at 10k, 1 above)")
    parser.add_argument("--quick", action="store_true", help="N = 2000, shorter phases (a smoke run)")
    parser.add_argument("--only", default="", help="accepted for run_all.py; every phase always runs")
    return parser.parse_args()


async def main() -> None:
    args = parse()
    async with three_nodes("client") as (cluster, node):
        figures = await latency(cluster, node, args.quick)
        wb = await write_behind(cluster, node, args.quick)
    for key, value in figures.items():
        kind, callers = key.split("_")
        replicas = 0 if kind == "echo" else int(kind[1])
        shape: dict[str, Any] = {
            "callers": int(callers),
            "replicas": replicas,
            "p50_us": round(value["p50_us"], 1),
            "p99_us": round(value["p99_us"], 1),
        }
        emit(f"checkpoint_{kind}_{callers}", value["rate"], "calls/s", **shape)
    emit(
        "checkpoint_write_behind_puts",
        wb["puts_per_s"],
        "puts/s",
        casts_per_s=10_000,
        **{k: round(v, 3) for k, v in wb.items() if k != "puts_per_s"},
    )
    sizes = [int(x) for x in args.n.split(",") if x] or ([2_000] if args.quick else [10_000, 50_000])
    for n in sizes:
        runs = [await memory_and_kill(n) for _ in range(args.repeats or (1 if args.quick or n > 10_000 else 3))]
        for key, unit in (
            ("memory_registered", "B"),
            ("memory_checkpointed", "B"),
            ("checkpoint_all_per_s", "ckpt/s"),
            ("kill", "s"),
        ):
            samples = [r[key] for r in runs]
            config: dict[str, Any] = {
                "n": n,
                "nodes": 3,
                "repeats": len(samples),
                "samples": [round(s, 3) for s in samples],
            }
            if key == "kill":
                config["target"] = 1.5 if n <= 10_000 else 5.0
                config["met"] = median(samples) <= config["target"]
            emit(f"checkpoint_{key}_{label(n)}", median(samples), unit, **config)


if __name__ == "__main__":
    distable.run(main())
