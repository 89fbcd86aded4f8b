"""The bare-bones cross-node limit: msgspec frames over asyncio protocols on uvloop, no distable.

    .venv/bin/python bench/_bare.py      # serve: prints {"port": N}, stops when stdin closes

Both ends speak the same minimal protocol: a frame is a 4-byte big-endian length and a
msgpack array of messages ``[kind, ref, payload]``; every message sent during one
event-loop turn goes out in one frame and one ``write`` (as distable's links do).
The server counts one-way messages and echoes calls. ``transport.py`` runs the
client side and reports the ``bare_*`` figures beside distable's.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
from typing import Any

import msgspec
import uvloop

ONEWAY = 0
CALL = 1
REPLY = 2
COUNT = 3  # a call answered with the number of one-way messages since the last COUNT

_LEN = struct.Struct(">I")


class Link(asyncio.Protocol):
    """One side of a bare link: coalesced writes, frame splitting, pluggable handling."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.out: list[Any] = []
        self.flush_scheduled = False
        self.buf = bytearray()
        self.encode = msgspec.msgpack.Encoder().encode
        self.decode = msgspec.msgpack.Decoder().decode
        self.paused: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.paused = self.loop.create_future()

    def resume_writing(self) -> None:
        fut, self.paused = self.paused, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def post(self, message: Any) -> None:
        self.out.append(message)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        out, self.out = self.out, []
        body = self.encode(out)
        assert self.transport is not None
        self.transport.write(_LEN.pack(len(body)) + body)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (length,) = _LEN.unpack_from(buf, pos)
            if end - pos - 4 < length:
                break
            start = pos + 4
            for message in self.decode(memoryview(buf)[start : start + length]):
                self.handle(message)
            pos = start + length
        del buf[:pos]

    def handle(self, message: Any) -> None:
        raise NotImplementedError


class ServerLink(Link):
    count = 0

    def handle(self, message: Any) -> None:
        kind, ref, payload = message
        if kind == ONEWAY:
            self.count += 1
        elif kind == CALL:
            self.post((REPLY, ref, payload))
        elif kind == COUNT:
            self.post((REPLY, ref, self.count))
            self.count = 0


class ClientLink(Link):
    def __init__(self) -> None:
        super().__init__()
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.seq = 0

    def handle(self, message: Any) -> None:
        _, ref, payload = message
        fut = self.waiting.pop(ref, None)
        if fut is not None and not fut.done():
            fut.set_result(payload)

    async def call(self, kind: int, payload: Any) -> Any:
        self.seq += 1
        ref = self.seq
        fut = self.loop.create_future()
        self.waiting[ref] = fut
        self.post((kind, ref, payload))
        return await fut


async def serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(ServerLink, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    stop = asyncio.Event()

    def on_stdin() -> None:
        if not os.read(sys.stdin.fileno(), 4096):  # the parent closed our stdin (or died)
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await stop.wait()
    loop.remove_reader(sys.stdin.fileno())
    server.close()


if __name__ == "__main__":
    uvloop.run(serve())
