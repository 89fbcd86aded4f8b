"""Cross-node benchmarks: two nodes, each in its own OS process, over loopback TCP.

    .venv/bin/python bench/transport.py [--repeats 3] [--quick] [--only NAME,...]

This process runs node "a" (the senders and callers); node "b" runs in a child OS
process (``distable.testing.NodeProcess``) hosting a ``Sink`` and an ``Echo`` from
``bench/_procs.py``. Each figure is the median of ``--repeats`` runs, and each run is
followed by the same workload on the bare-bones link of ``_bare.py`` (msgspec frames
over asyncio protocols on uvloop, writes coalesced per loop turn, no distable) against
its own child process, so the ratio to "the limit" is measured side by side.
Each figure's config also holds every sample and the CPU time per operation of
node a and node b (``cpu_us_per_op``, from /proc), which a busy machine distorts far
less than the wall clock.

Figures (JSON lines, see _common.py):
    remote_send          one sender process on a -> the sink on b, until the sink has all
    remote_call          1 caller process on a calling the echo on b in a loop
    remote_call_latency  mean round trip of remote_call (µs)
    remote_call_64       64 caller processes on a calling the echo on b concurrently
    bare_*               the same workloads on the bare link
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from pathlib import Path
from typing import Any

from _bare import CALL, COUNT, ONEWAY, ClientLink
from _common import Sample, Timer, amedian_pair, emit, note, parse_args, wanted
from _procs import CallLoop

import distable
from distable import Node, Pid, Process
from distable.testing import NodeProcess

HERE = Path(__file__).resolve().parent
CHUNK = 1000  # messages per handler invocation (per loop turn for the bare sender)


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


# --- distable workloads -------------------------------------------------------------------


async def send_run(node: Node, b: int, sink: Pid, n: int) -> Sample:
    tx = await node.spawn(Sender)
    await node.call(sink, "count")  # reset
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with Timer({"b": b}) as t:
        node.send(tx, ("go", sink, n, fut))
        got = await asyncio.wait_for(fut, 120)
    await node.stop_process(tx)
    if got != n:
        raise RuntimeError(f"the sink handled {got} of {n} messages")
    return t.sample(n, "a")


async def call_run(node: Node, b: int, echo: Pid, callers: int, n: int) -> Sample:
    loops = [await node.spawn(CallLoop) for _ in range(callers)]
    loop = asyncio.get_running_loop()
    per = n // callers
    futs: list[asyncio.Future[int]] = [loop.create_future() for _ in loops]
    with Timer({"b": b}) as t:
        for pid, fut in zip(loops, futs, strict=True):
            node.send(pid, ("run", echo, per, fut))
        await asyncio.wait_for(asyncio.gather(*futs), 120)
    for pid in loops:
        await node.stop_process(pid)
    return t.sample(per * callers, "a")


# --- bare-bones workloads -------------------------------------------------------------------


async def bare_send_run(link: ClientLink, b: int, n: int) -> Sample:
    await link.call(COUNT, None)  # reset
    post = link.post
    with Timer({"b": b}) as t:
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
    return t.sample(n, "a")


async def bare_call_run(link: ClientLink, b: int, callers: int, n: int) -> Sample:
    per = n // callers

    async def caller() -> None:
        call = link.call
        for i in range(per):
            await call(CALL, i)

    with Timer({"b": b}) as t:
        await asyncio.gather(*(caller() for _ in range(callers)))
    return t.sample(per * callers, "a")


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


async def main() -> None:
    args = parse_args(__doc__, repeats=3)
    reps = args.repeats
    q = args.quick
    n_send = 200_000 if q else 1_000_000
    n_call1 = 5_000 if q else 20_000
    n_call64 = 50_000 if q else 200_000
    cookie = secrets.token_hex(16)
    bare_proc, link = await start_bare()
    b = await NodeProcess.start("b", cookie, spawn={"sink": "_procs:Sink", "echo": "_procs:Echo"}, paths=[str(HERE)])
    try:
        async with Node("a", cookie=cookie) as node:
            await node.connect(b.name)
            sink, echo = b.pid("sink"), b.pid("echo")
            await node.call(echo, "warm up")
            await link.call(CALL, "warm up")
            bpid, barepid = b.proc.pid, bare_proc.pid
            if wanted(args, "remote_send"):
                res, bare = await amedian_pair(
                    reps,
                    lambda: send_run(node, bpid, sink, n_send),
                    lambda: bare_send_run(link, barepid, n_send),
                )
                config = {"messages": n_send, "payload": "int", "repeats": reps}
                emit("remote_send", res.value, "msg/s", **config, **res.config())
                emit("bare_remote_send", bare.value, "msg/s", **config, **bare.config())
                note(f"remote_send: {res.value:,.0f} msg/s (bare {bare.value:,.0f}, x{bare.value / res.value:.2f})")
                note(f"  cpu µs/msg {res.cpu_us} (bare {bare.cpu_us})")
            for callers, n, name in ((1, n_call1, "remote_call"), (64, n_call64, "remote_call_64")):
                if not wanted(args, name):
                    continue
                res, bare = await amedian_pair(
                    reps,
                    lambda c=callers, n=n: call_run(node, bpid, echo, c, n),  # type: ignore[misc]
                    lambda c=callers, n=n: bare_call_run(link, barepid, c, n),  # type: ignore[misc]
                )
                config = {"callers": callers, "calls": n, "payload": "int", "repeats": reps}
                emit(name, res.value, "calls/s", **config, **res.config())
                emit("bare_" + name, bare.value, "calls/s", **config, **bare.config())
                note(f"{name}: {res.value:,.0f} calls/s (bare {bare.value:,.0f}, x{bare.value / res.value:.2f})")
                note(f"  cpu µs/call {res.cpu_us} (bare {bare.cpu_us})")
                if callers == 1:
                    emit("remote_call_latency", 1e6 / res.value, "us", **config, mean_of=n)
                    emit("bare_remote_call_latency", 1e6 / bare.value, "us", **config, mean_of=n)
                    note(f"remote call latency: {1e6 / res.value:.1f} µs (bare {1e6 / bare.value:.1f} µs)")
    finally:
        await b.close()
        assert link.transport is not None
        link.transport.close()
        assert bare_proc.stdin is not None
        bare_proc.stdin.close()
        await asyncio.wait_for(bare_proc.wait(), 20)


if __name__ == "__main__":
    distable.run(main())
