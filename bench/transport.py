"""Cross-node benchmarks: two nodes, each in its own OS process, over a Unix domain socket
(the default for nodes on one host) or, with ``--tcp``, loopback TCP.

    .venv/bin/python bench/transport.py -o transport.json [--fast | --rigorous] [--only NAME,...] [--tcp]
    .venv/bin/python -m pyperf compare_to old.json transport.json

A pyperf script (``_perf.py``; pyperf's own options: ``--help``): each figure is a pyperf
benchmark, run in worker processes of its own, its loops calibrated; a value is the wall
time of one message or call. Each worker runs node "a" (the senders and callers); node
"b" runs in a child OS process of the worker (``distable.testing.NodeProcess``) hosting
a ``Sink`` and an ``Echo`` from ``bench/_procs.py``; node a dials b, and with ``--tcp``
it has ``TransportConfig(unix_sockets=False)``, so that link is TCP (the metadata says
``flag_tcp``). The ``bare_*`` benchmarks run the
same workloads on the bare-bones link of ``_bare.py`` (msgspec frames over asyncio
protocols on uvloop, writes coalesced per loop turn, no distable) against a child
process of their own, so the ratio to "the limit" is measured in the same run.
The metadata of each worker's run also holds the CPU time per operation of node a and
node b (``cpu_us_per_op_a``, ``_b``, from /proc), which a busy machine distorts far less than
the wall clock.

Benchmarks (``run_all.py`` reads the file and reports each as a figure):
    remote_send          one sender process on a -> the sink on b, until the sink has all
    remote_call          1 caller process on a calling the echo on b in a loop
                         (also reported as remote_call_latency: the mean round trip, µs)
    remote_call_64       64 caller processes on a calling the echo on b concurrently
    bare_*               the same workloads on the bare link
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from _bare import CALL, COUNT, ONEWAY, ClientLink
from _common import Timer
from _perf import PerfRunner
from _procs import CallLoop

import distable
from distable import Node, Pid, Process
from distable.testing import NodeProcess

HERE = Path(__file__).resolve().parent
CHUNK = 1000  # messages per handler invocation (per loop turn for the bare sender)
TCP = "--tcp"
#: Node a's link to b: "unix" or "tcp" (``--tcp``), set by ``main``.
LINK = "unix"


class Sender(Process):
    """On ``("go", dest, remaining, future)``: sends ints to dest, CHUNK per handler.

    It sends itself the rest of the work, so that between chunks the runtime can make
    it wait while the link is congested (backpressure acts between handlers), and
    yields to the loop after each chunk (the link writes once per loop turn). After the
    last chunk it calls the sink for its count: links are ordered, so the reply comes
    once the sink has handled every message.
    """

    async def handle_info(self, message: Any) -> None:
        _, dest, remaining, fut = message
        send = distable.send
        k = min(CHUNK, remaining)
        for i in range(k):
            send(dest, i)
        if remaining > k:
            send(self.pid, ("go", dest, remaining - k, fut))
            await asyncio.sleep(0)  # one chunk per loop turn, as the bare sender does
        else:
            fut.set_result(await distable.call(dest, "count", timeout=120))


@dataclass
class Cluster:
    """Node a (this process), node b (a child process) and the bare-bones link to its server."""

    node: Node
    b: NodeProcess
    sink: Pid
    echo: Pid
    bare_proc: asyncio.subprocess.Process
    link: ClientLink

    @property
    def b_pid(self) -> int:
        """The OS pid of node b's process."""
        return self.b.proc.pid

    @property
    def bare_pid(self) -> int:
        """The OS pid of the bare-bones server's process."""
        assert self.bare_proc.pid is not None
        return self.bare_proc.pid


# --- distable workloads -------------------------------------------------------------------


async def send_run(c: Cluster, n: int) -> Timer:
    node = c.node
    tx = await node.spawn(Sender)
    await node.call(c.sink, "count")  # reset
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with Timer({"b": c.b_pid}) as t:
        node.send(tx, ("go", c.sink, n, fut))
        got = await asyncio.wait_for(fut, 120)
    await node.stop_process(tx)
    if got != n:
        raise RuntimeError(f"the sink handled {got} of {n} messages")
    return t


async def call_run(c: Cluster, per: int, callers: int) -> Timer:
    node = c.node
    loops = [await node.spawn(CallLoop) for _ in range(callers)]
    loop = asyncio.get_running_loop()
    futs: list[asyncio.Future[int]] = [loop.create_future() for _ in loops]
    with Timer({"b": c.b_pid}) as t:
        for pid, fut in zip(loops, futs, strict=True):
            node.send(pid, ("run", c.echo, per, fut))
        await asyncio.wait_for(asyncio.gather(*futs), 120)
    for pid in loops:
        await node.stop_process(pid)
    return t


# --- bare-bones workloads -------------------------------------------------------------------


async def bare_send_run(c: Cluster, n: int) -> Timer:
    link = c.link
    await link.call(COUNT, None)  # reset
    post = link.post
    with Timer({"b": c.bare_pid}) as t:
        sent = 0
        while sent < n:
            k = min(CHUNK, n - sent)
            for i in range(k):
                post((ONEWAY, 0, i))
            sent += k
            if link.paused is not None:
                await link.paused
            else:
                await asyncio.sleep(0)
        got = await link.call(COUNT, None)
    if got != n:
        raise RuntimeError(f"the bare server counted {got} of {n} messages")
    return t


async def bare_call_run(c: Cluster, per: int, callers: int) -> Timer:
    async def caller() -> None:
        call = c.link.call
        for i in range(per):
            await call(CALL, i)

    with Timer({"b": c.bare_pid}) as t:
        await asyncio.gather(*(caller() for _ in range(callers)))
    return t


async def start_bare() -> tuple[asyncio.subprocess.Process, ClientLink]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "_bare.py"), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    port = json.loads(line)["port"]
    _, link = await asyncio.get_running_loop().create_connection(ClientLink, "127.0.0.1", port)
    return proc, link


# --- main ----------------------------------------------------------------------------------


async def start_cluster() -> Cluster:
    cookie = secrets.token_hex(16)
    bare_proc, link = await start_bare()
    b = await NodeProcess.start("b", cookie, spawn={"sink": "_procs:Sink", "echo": "_procs:Echo"}, paths=[str(HERE)])
    node = Node("a", cookie=cookie, transport=distable.TransportConfig(unix_sockets=LINK == "unix"))
    await node.start()
    await node.connect(b.name)
    link_kind = next(p.link for p in node.statistics().transport.peers if p.name == b.name)
    if link_kind != LINK:
        raise RuntimeError(f"node a's link to b is {link_kind}, not {LINK}")
    cluster = Cluster(node, b, b.pid("sink"), b.pid("echo"), bare_proc, link)
    await node.call(cluster.echo, "warm up")
    await link.call(CALL, "warm up")
    return cluster


async def stop_cluster(c: Cluster) -> None:
    await c.node.stop()
    await c.b.close()
    assert c.link.transport is not None
    c.link.transport.close()
    assert c.bare_proc.stdin is not None
    c.bare_proc.stdin.close()
    await asyncio.wait_for(c.bare_proc.wait(), 20)


def main() -> None:
    global LINK
    flags = {TCP: "link the two nodes over loopback TCP, not a Unix domain socket"}
    perf = PerfRunner(__doc__, start_cluster, stop_cluster, me="a", flags=flags)
    LINK = "tcp" if perf.flag(TCP) else "unix"
    perf.bench("remote_send", "msg/s", send_run, payload="int")
    perf.bench("bare_remote_send", "msg/s", bare_send_run, payload="int")
    for callers, name in ((1, "remote_call"), (64, "remote_call_64")):
        # one caller: the mean round trip is a figure too (remote_call_latency, µs)
        for prefix, run in (("", call_run), ("bare_", bare_call_run)):
            perf.bench(
                prefix + name,
                "calls/s",
                partial(run, callers=callers),
                per_loop=callers,
                latency=prefix + name + "_latency" if callers == 1 else None,
                callers=callers,
                payload="int",
            )
    perf.finish()


if __name__ == "__main__":
    main()
