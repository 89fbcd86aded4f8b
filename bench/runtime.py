"""Local runtime benchmarks: send throughput, call round trips, bytes per idle process.

    .venv/bin/python bench/runtime.py -o runtime.json [--fast | --rigorous] [--only NAME,...]
    .venv/bin/python -m pyperf compare_to old.json runtime.json

A pyperf script (``_perf.py``; pyperf's own options: ``--help``): each figure is a pyperf
benchmark, run in worker processes of its own, each on one node in that OS process, on
uvloop (as ``distable.run``), its loops calibrated; a value is the wall time of one message
or call. Beside each figure the script measures a bare-bones loop with no runtime at all
(a deque mailbox drained in batches by an async handler; futures for calls), the
``bare_*`` benchmarks, so the ratio to "the limit" comes from the same run on the same
machine. The metadata of each worker's run also holds the CPU time per operation
(``cpu_us_per_op_self``), which a busy machine distorts far less than the wall clock.
The memory per idle process is measured before the workers run, in three fresh OS
processes (an RSS delta means something only on a fresh heap), and written to the same
file as benchmarks of one value per process.

Benchmarks (``run_all.py`` reads the file and reports each as a figure):
    local_send             1 sender process -> 1 receiver, until the receiver handled all
    local_send_64          64 sender processes -> 1 receiver
    local_call             1 caller process calling 1 server in a loop
    local_call_64          64 caller processes calling 1 server concurrently
    idle_process_bytes     memory per idle process (RSS delta and tracemalloc) over N spawns
    spawn                  process starts per second (spawn + init)
    bare_*                 the same workloads without distable
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from collections import deque
from functools import partial
from typing import Any

from _common import Timer, note
from _perf import PerfRunner, measured
from _procs import CallLoop, Echo

import distable
from distable import Caller, Node, Pid, Process

CHUNK = 1000  # messages a sender sends per handler invocation
IDLE_AFTER = 2.0  # seconds without a message after which a process counts as idle


class Receiver(Process):
    """Counts info messages; resolves ``done`` when ``expected`` have arrived."""

    async def init(self) -> None:
        self.count = 0
        self.expected = -1
        self.done: asyncio.Future[int] | None = None

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        # ("expect", n, future): local calls carry the future itself (nothing is copied).
        _, self.expected, self.done = message
        self.count = 0
        return None

    async def handle_info(self, message: Any) -> None:
        self.count += 1
        if self.count == self.expected and self.done is not None:
            self.done.set_result(self.count)


class Sender(Process):
    """On ("go", dest, n): sends n ints to dest, CHUNK per handler (re-sending itself the rest)."""

    async def handle_info(self, message: Any) -> None:
        _, dest, remaining = message
        send = distable.send
        k = min(CHUNK, remaining)
        for i in range(k):
            send(dest, i)
        if remaining > k:
            send(self.pid, ("go", dest, remaining - k))


class Idle(Process):
    """A process that does nothing (the default handlers)."""


# --- distable workloads ---------------------------------------------------------------


async def send_run(node: Node, per: int, senders: int) -> Timer:
    """``senders`` processes sending ``per`` messages each to one receiver, timed until it has all."""
    rx = await node.spawn(Receiver)
    txs = [await node.spawn(Sender) for _ in range(senders)]
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    await node.call(rx, ("expect", per * senders, done))
    with Timer() as t:
        for tx in txs:
            node.send(tx, ("go", rx, per))
        await asyncio.wait_for(done, 60)
    for pid in [rx, *txs]:
        await node.stop_process(pid)
    return t


async def call_run(node: Node, per: int, callers: int) -> Timer:
    """``callers`` processes making ``per`` calls each to one server, in a loop."""
    server = await node.spawn(Echo)
    loops = [await node.spawn(CallLoop) for _ in range(callers)]
    loop = asyncio.get_running_loop()
    futs: list[asyncio.Future[int]] = [loop.create_future() for _ in loops]
    with Timer() as t:
        for pid, fut in zip(loops, futs, strict=True):
            node.send(pid, ("run", server, per, fut))
        await asyncio.wait_for(asyncio.gather(*futs), 60)
    for pid in [server, *loops]:
        await node.stop_process(pid)
    return t


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def idle_run(node: Node, n: int, trace: bool) -> tuple[float, float]:
    """(bytes per idle process, spawns/s) over ``n`` spawns; tracemalloc or RSS."""
    gc.collect()
    if trace:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = rss_bytes()
    pids: list[Pid] = []
    with Timer() as t:
        for _ in range(n):
            pids.append(await node.spawn(Idle))
    # Idle means no message for a while: a drain task may linger briefly after a message.
    await asyncio.sleep(IDLE_AFTER)
    gc.collect()
    if trace:
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    else:
        after = rss_bytes()
    # The pid list itself is the benchmark's, not the processes': subtract it.
    own = sys.getsizeof(pids)
    per = (after - before - own) / n
    for i in range(0, n, 1000):  # stop them a thousand at a time (not 100k drain tasks at once)
        for fut in [node.runtime.stop(pid) for pid in pids[i : i + 1000]]:
            await fut
    del pids
    gc.collect()
    return per, n / t.elapsed


# --- bare-bones baselines (no runtime) --------------------------------------------------


class BareProcess:
    """The least an actor can be: a deque mailbox drained in batches by one long-lived task.

    The task sleeps on a future while the mailbox is empty; ``put`` wakes it.
    """

    __slots__ = ("handler", "mailbox", "task", "waiter")

    def __init__(self, handler: Any) -> None:
        self.mailbox: deque[Any] = deque()
        self.handler = handler
        self.waiter: asyncio.Future[None] | None = None
        self.task = asyncio.get_running_loop().create_task(self.run())

    def put(self, item: Any) -> None:
        self.mailbox.append(item)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.set_result(None)

    async def run(self) -> None:
        mb = self.mailbox
        handler = self.handler
        create = asyncio.get_running_loop().create_future
        while True:
            n = 0
            while mb:
                await handler(mb.popleft())
                n += 1
                if n == 64:
                    n = 0
                    await asyncio.sleep(0)
            self.waiter = create()
            await self.waiter

    def close(self) -> None:
        self.task.cancel()


async def bare_send_run(_node: Node, per: int, senders: int) -> Timer:
    """``send_run`` between ``BareProcess`` objects (the node is not used: it only runs beside them)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    state = [0]
    n = per * senders

    async def on_message(msg: Any) -> None:
        state[0] += 1
        if state[0] == n:
            done.set_result(n)

    rx = BareProcess(on_message)

    def make_sender() -> BareProcess:
        async def handler(remaining: Any) -> None:
            put = rx.put
            k = min(CHUNK, remaining)
            for i in range(k):
                put(i)
            if remaining > k:
                me.put(remaining - k)

        me = BareProcess(handler)
        return me

    txs = [make_sender() for _ in range(senders)]
    with Timer() as t:
        for tx in txs:
            tx.put(per)
        await done
    for p in [rx, *txs]:
        p.close()
    return t


async def bare_call_run(_node: Node, per: int, callers: int) -> Timer:
    """``call_run`` between ``BareProcess`` objects (the node is not used: it only runs beside them)."""
    loop = asyncio.get_running_loop()

    async def echo(item: Any) -> None:
        msg, fut = item
        fut.set_result(msg)

    server = BareProcess(echo)

    async def caller() -> None:
        put = server.put
        create = loop.create_future
        for i in range(per):
            fut = create()
            put((i, fut))
            await fut

    with Timer() as t:
        await asyncio.gather(*(caller() for _ in range(callers)))
    server.close()
    return t


# --- main ------------------------------------------------------------------------------


IDLE_CHILD = "--idle-child"  # runtime.py --idle-child N: one idle measurement in a fresh process
IDLE_RUNS = 3  # fresh processes that measure it, one after the other


async def idle_once(n: int) -> dict[str, float]:
    """Memory per idle process (RSS, then tracemalloc) and spawns/s, over ``n`` spawns."""
    async with Node("bench", cookie="bench") as node:
        rss, rate = await idle_run(node, n, trace=False)
        traced, _ = await idle_run(node, n, trace=True)
    return {"rss": rss, "traced": traced, "spawn": 1 / rate}


def idle_figures(n: int, runs: int = IDLE_RUNS) -> list[Any]:
    """``idle_once`` in ``runs`` fresh OS processes, one after the other (an RSS delta means
    something only on a fresh heap), as pyperf benchmarks of one value per process."""
    got: list[dict[str, float]] = []
    for _ in range(runs):
        cmd = [sys.executable, __file__, IDLE_CHILD, str(n)]
        got.append(json.loads(subprocess.run(cmd, stdout=subprocess.PIPE, check=True).stdout))
        rss, traced, spawn = got[-1]["rss"], got[-1]["traced"], got[-1]["spawn"]
        note(f"idle process: {rss:,.0f} B (RSS), {traced:,.0f} B (tracemalloc); {1 / spawn:,.0f} spawns/s")
    config: dict[str, Any] = {"processes": n, "idle_after_s": IDLE_AFTER}
    return [
        measured("idle_process_bytes", [g["rss"] for g in got], "byte", "bytes", method="rss", **config),
        measured(
            "idle_process_bytes_traced", [g["traced"] for g in got], "byte", "bytes", method="tracemalloc", **config
        ),
        measured("spawn", [g["spawn"] for g in got], "second", "spawns/s", loops=n, processes=n),
    ]


async def start_node() -> Node:
    node = Node("bench", cookie="bench")
    await node.start()
    return node


def main() -> None:
    if sys.argv[1:2] == [IDLE_CHILD]:
        print(json.dumps(distable.run(idle_once(int(sys.argv[2])))))
        return
    perf = PerfRunner(__doc__, start_node, Node.stop)
    idle: list[Any] = []
    # first, before the workers: idle processes in fresh processes of their own (see idle_figures)
    if perf.manager and perf.wanted("idle_process_bytes"):
        if perf.args.debug_single_value:  # a smoke run: one process, enough spawns that the RSS
            # delta stands above the heap's reuse of freed pages (2,000 once measured -4 B: pyperf
            # takes only positive values, and the smoke test failed)
            idle = idle_figures(20_000, runs=1)
        else:
            idle = idle_figures(20_000 if perf.fast else 100_000)
    for senders, name in ((1, "local_send"), (64, "local_send_64")):
        perf.bench(name, "msg/s", partial(send_run, senders=senders), per_loop=senders, senders=senders)
        perf.bench("bare_" + name, "msg/s", partial(bare_send_run, senders=senders), per_loop=senders, senders=senders)
    for callers, name in ((1, "local_call"), (64, "local_call_64")):
        perf.bench(name, "calls/s", partial(call_run, callers=callers), per_loop=callers, callers=callers)
        perf.bench(
            "bare_" + name, "calls/s", partial(bare_call_run, callers=callers), per_loop=callers, callers=callers
        )
    perf.finish(*idle)


if __name__ == "__main__":
    main()
