"""Local runtime benchmarks: send throughput, call round trips, bytes per idle process.

    .venv/bin/python bench/runtime.py [--repeats 5] [--quick] [--only NAME,...]

Everything runs on one node in this OS process, on uvloop (``distable.run``). Each
figure is the median of ``--repeats`` runs. Beside each figure the script measures a
bare-bones loop with no runtime at all (a deque mailbox drained in batches by an async
handler; futures for calls), so the ratio to "the limit" comes from the same run on the
same machine.
Each figure's config also holds every sample and the CPU time per operation
(``cpu_us_per_op``), which a busy machine distorts far less than the wall clock.

Figures (JSON lines, see _common.py):
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
import os
import sys
import tracemalloc
from collections import deque
from typing import Any

from _common import Sample, Timer, amedian_pair, emit, note, parse_args, wanted
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


async def send_run(node: Node, senders: int, n: int) -> Sample:
    """msg/s for ``senders`` processes sending ``n`` messages in total to one receiver."""
    rx = await node.spawn(Receiver)
    txs = [await node.spawn(Sender) for _ in range(senders)]
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    per = n // senders
    n = per * senders
    await node.call(rx, ("expect", n, done))
    with Timer() as t:
        for tx in txs:
            node.send(tx, ("go", rx, per))
        await asyncio.wait_for(done, 60)
    for pid in [rx, *txs]:
        await node.stop_process(pid)
    return t.sample(n)


async def call_run(node: Node, callers: int, n: int) -> Sample:
    """calls/s for ``callers`` processes making ``n`` calls in total to one server."""
    server = await node.spawn(Echo)
    loops = [await node.spawn(CallLoop) for _ in range(callers)]
    loop = asyncio.get_running_loop()
    per = n // callers
    futs: list[asyncio.Future[int]] = [loop.create_future() for _ in loops]
    with Timer() as t:
        for pid, fut in zip(loops, futs, strict=True):
            node.send(pid, ("run", server, per, fut))
        await asyncio.wait_for(asyncio.gather(*futs), 60)
    for pid in [server, *loops]:
        await node.stop_process(pid)
    return t.sample(per * callers)


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


async def bare_send_run(senders: int, n: int) -> Sample:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    state = [0]
    per = n // senders
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
    return t.sample(n)


async def bare_call_run(callers: int, n: int) -> Sample:
    loop = asyncio.get_running_loop()

    async def echo(item: Any) -> None:
        msg, fut = item
        fut.set_result(msg)

    server = BareProcess(echo)
    per = n // callers

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
    return t.sample(per * callers)


# --- main ------------------------------------------------------------------------------


async def main() -> None:
    args = parse_args(__doc__, repeats=5)
    reps = args.repeats
    q = args.quick
    n_send = 200_000 if q else 500_000
    n_call = 50_000 if q else 100_000
    n_idle = 20_000 if q else 100_000
    async with Node("bench", cookie="bench") as node:
        # first: a fresh heap, so the RSS delta is the processes' and not reused free memory
        if wanted(args, "idle_process_bytes"):
            rss, rate = await idle_run(node, n_idle, trace=False)
            traced, _ = await idle_run(node, n_idle, trace=True)
            emit("idle_process_bytes", rss, "bytes", method="rss", processes=n_idle, idle_after_s=IDLE_AFTER)
            emit(
                "idle_process_bytes_traced",
                traced,
                "bytes",
                method="tracemalloc",
                processes=n_idle,
                idle_after_s=IDLE_AFTER,
            )
            emit("spawn", rate, "spawns/s", processes=n_idle)
            note(f"idle process: {rss:,.0f} B (RSS), {traced:,.0f} B (tracemalloc); {rate:,.0f} spawns/s")
        for senders, name in ((1, "local_send"), (64, "local_send_64")):
            if wanted(args, name):
                res, bare = await amedian_pair(
                    reps,
                    lambda s=senders: send_run(node, s, n_send),  # type: ignore[misc]
                    lambda s=senders: bare_send_run(s, n_send),  # type: ignore[misc]
                )
                config = {"senders": senders, "messages": n_send, "repeats": reps}
                emit(name, res.value, "msg/s", **config, **res.config())
                emit("bare_" + name, bare.value, "msg/s", **config, **bare.config())
                note(f"{name}: {res.value:,.0f} msg/s (bare {bare.value:,.0f}, x{bare.value / res.value:.2f})")
        for callers, name in ((1, "local_call"), (64, "local_call_64")):
            if wanted(args, name):
                res, bare = await amedian_pair(
                    reps,
                    lambda c=callers: call_run(node, c, n_call),  # type: ignore[misc]
                    lambda c=callers: bare_call_run(c, n_call),  # type: ignore[misc]
                )
                config = {"callers": callers, "calls": n_call, "repeats": reps}
                emit(name, res.value, "calls/s", **config, **res.config())
                emit("bare_" + name, bare.value, "calls/s", **config, **bare.config())
                note(f"{name}: {res.value:,.0f} calls/s (bare {bare.value:,.0f}, x{bare.value / res.value:.2f})")


if __name__ == "__main__":
    distable.run(main())
