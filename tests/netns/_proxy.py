"""A TCP proxy that delays every byte it forwards, with jitter: netem's ``delay D J`` for TCP.

    python tests/netns/_proxy.py --delay 0.05 --jitter 0.03 --seed 7 --source 127.0.0.3 \\
        127.0.0.3:8001=127.0.0.1:7001 127.0.0.3:8002=127.0.0.1:7002 ...

The kernel here has no ``tc netem``, so latency is added in user space. Each
``LISTEN=TARGET`` pair is one listening socket; every connection accepted on it is
forwarded to its target, from the ``--source`` address. Each direction of each
connection delays each chunk it reads by ``delay ± jitter`` (uniform, seeded), but never
delivers a chunk before the one read ahead of it: TCP stays in order, as netem keeps
a flow's packets in order when its jitter is smaller than the gap between them.

It prints ``{"ready": [port, ...]}`` on stdout once it listens, answers the line
``stats`` with ``{"stats": {connections, chunks, bytes, mean_delay}}``, and exits when its
standard input closes (so it never outlives the test) or after ``--lifetime`` seconds;
forwarding is bounded by both.

How the nodes end up talking through it without knowing (see ``test_latency.py``): the
nodes and the proxy share one private network namespace; an nftables ``dnat`` rule in
that namespace's ``nat output`` hook sends every connection to a node's own address to
the proxy instead, except the proxy's own connections (from ``--source``). Node names,
listening addresses and the handshake's "is this the node I dialed" check are all
untouched: a node dialing ``b@127.0.0.1:7002`` reaches, through the proxy, the node
that really is ``b@127.0.0.1:7002``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys

CHUNK = 65536


class Link:
    """One direction of one proxied connection: read, stamp a delivery time, deliver in order."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        rng: random.Random,
        delay: float,
        jitter: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.rng = rng
        self.delay = delay
        self.jitter = jitter
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.last = 0.0
        self.chunks = self.bytes = 0
        self.delayed = 0.0  # the sum of every chunk's time in the proxy

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        while data := await self.reader.read(CHUNK):
            now = loop.time()
            due = now + max(0.0, self.delay + self.rng.uniform(-self.jitter, self.jitter))
            self.last = max(self.last, due)  # never overtake the chunk read before
            self.queue.put_nowait((self.last, data))
            self.chunks += 1
            self.bytes += len(data)
            self.delayed += self.last - now
        self.queue.put_nowait((self.last, b""))

    async def deliver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await self.queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # the delay this proxy exists to add
            if not data:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return
            self.writer.write(data)
            await self.writer.drain()


class Proxy:
    def __init__(self, args: argparse.Namespace) -> None:
        self.delay: float = args.delay
        self.jitter: float = args.jitter
        self.source: str = args.source
        self.rng = random.Random(args.seed)
        self.tasks: set[asyncio.Task[None]] = set()
        self.links: list[Link] = []
        self.connections = 0

    def stats(self) -> dict[str, float]:
        """Connections accepted, chunks and bytes forwarded, and the mean delay added (s)."""
        chunks = sum(link.chunks for link in self.links)
        return {
            "connections": self.connections,
            "chunks": chunks,
            "bytes": sum(link.bytes for link in self.links),
            "mean_delay": sum(link.delayed for link in self.links) / chunks if chunks else 0.0,
        }

    async def serve(self, listen: tuple[str, int], target: tuple[str, int]) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self.tasks.add(task)
            try:
                await self.forward(reader, writer, target)
            finally:
                self.tasks.discard(task)

        return await asyncio.start_server(handle, *listen, reuse_address=True)

    async def forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: tuple[str, int]
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*target, local_addr=(self.source, 0)), 5.0
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        self.connections += 1
        links = (
            Link(reader, up_writer, self.rng, self.delay, self.jitter),
            Link(up_reader, writer, self.rng, self.delay, self.jitter),
        )
        self.links.extend(links)
        try:
            async with asyncio.TaskGroup() as group:  # one side failing ends the whole connection
                for link in links:
                    group.create_task(link.read())
                    group.create_task(link.deliver())
        except* OSError:
            pass
        finally:
            for w in (writer, up_writer):
                w.transport.abort()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main(args: argparse.Namespace) -> None:
    proxy = Proxy(args)
    servers = []
    for pair in args.pairs:
        listen, _, target = pair.partition("=")
        servers.append(await proxy.serve(address(listen), address(target)))
    ports = [int(s.sockets[0].getsockname()[1]) for s in servers]
    print(json.dumps({"ready": ports}), flush=True)

    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()
    pending = b""

    def on_stdin() -> None:
        nonlocal pending
        data = os.read(sys.stdin.fileno(), 4096)
        if not data:
            stdin_closed.set()
            return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip() == b"stats":
                print(json.dumps({"stats": proxy.stats()}), flush=True)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stdin_closed.wait(), args.lifetime)
    loop.remove_reader(sys.stdin.fileno())
    for server in servers:
        server.close()
    for task in list(proxy.tasks):
        task.cancel()
    await asyncio.gather(*proxy.tasks, return_exceptions=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+", metavar="LISTEN=TARGET", help="host:port=host:port")
    parser.add_argument("--delay", type=float, required=True, help="mean one-way delay, seconds")
    parser.add_argument("--jitter", type=float, default=0.0, help="delay varies uniformly by ± this, seconds")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--source", required=True, help="address the proxy dials targets from")
    parser.add_argument("--lifetime", type=float, default=110.0, help="exit after this many seconds")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
