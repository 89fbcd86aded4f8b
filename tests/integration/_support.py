"""Processes, a raw-socket peer and log helpers shared by the integration tests.

Everything here runs in the test's own event loop: the nodes of a test live in one OS
process, so a test may hand a process a plain Python object (a list, a queue) through
``init`` and look at it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from distable import NOREPLY, Caller, Down, Node, Pid, Process
from distable.transport import HandshakeCore
from distable.transport._handshake import NONCE_SIZE
from distable.wire import encode_frame
from distable.wire._messages import batch_decoder, handshake_decoder, handshake_encoder

COOKIE = "integration-cookie"


class Echo(Process):
    """A callee with every behaviour the link tests need.

    Calls: ("echo", x) -> x; ("hang",) -> never answered (deferred); ("crash", text)
    -> raises ValueError(text); ("deferred",) -> how many calls it holds unanswered.
    Casts and infos are recorded in ``log`` as ("cast", m) / ("info", m).
    """

    async def init(self, log: list[Any] | None = None) -> None:
        self.log: list[Any] = log if log is not None else []
        self.hanging: list[Caller] = []

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("echo", value):
                return value
            case ("hang",):
                self.hanging.append(caller)
                return NOREPLY
            case ("crash", str(text)):
                raise ValueError(text)
            case ("deferred",):
                return len(self.hanging)
        raise ValueError(f"unexpected call {message!r}")

    async def handle_cast(self, message: Any) -> None:
        self.log.append(("cast", message))

    async def handle_info(self, message: Any) -> None:
        self.log.append(("info", message))


class Sequence(Process):
    """Records the sequence number of every message it gets, however it was sent."""

    async def init(self, seen: list[int]) -> None:
        self.seen = seen

    async def handle_info(self, message: Any) -> None:
        self.seen.append(message[1])

    async def handle_cast(self, message: Any) -> None:
        self.seen.append(message[1])

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        self.seen.append(message[1])
        return message[1]


class Sender(Process):
    """On call ("run", dest, n): sends ("seq", i) for i < n to ``dest``, mixing send, cast and call."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("run", Pid() as dest, int(count)):
                for i in range(count):
                    if i % 50 == 49:
                        reply = await self.node.call(dest, ("seq", i), timeout=30.0)
                        assert reply == i
                    elif i % 2:
                        self.node.send(dest, ("seq", i))
                    else:
                        self.node.cast(dest, ("seq", i))
                return count
        raise ValueError(f"unexpected call {message!r}")


class Watcher(Process):
    """Monitors pids on request: call ("monitor", pid) -> ref; each ``Down`` goes to ``downs``."""

    async def init(self, downs: asyncio.Queue[Down]) -> None:
        self.downs = downs

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("monitor", Pid() as pid):
                return self.node.monitor(pid)
        raise ValueError(f"unexpected call {message!r}")

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, Down):
            self.downs.put_nowait(message)


async def next_down(downs: asyncio.Queue[Down], timeout: float = 10.0) -> Down:
    """The next ``Down`` a ``Watcher`` received, waiting at most ``timeout`` seconds."""
    return await asyncio.wait_for(downs.get(), timeout)


async def spawn_echo(node: Node, log: list[Any] | None = None) -> Pid:
    return await node.spawn(Echo, log)


def echo_process(node: Node, pid: Pid) -> Echo:
    """The live ``Echo`` object behind a local pid (the test shares the node's process)."""
    proc = node.runtime.local(pid)
    assert isinstance(proc, Echo), f"{pid!r} is not a live Echo on {node.name}"
    return proc


async def assert_still_serves(node: Node, echo: Pid) -> None:
    """A fresh, well-behaved node links to ``node`` and a call to ``echo`` on it succeeds."""
    async with Node("good", cookie=COOKIE) as good:
        await good.connect(node.name, timeout=10.0)
        assert await good.call(echo, ("echo", "still here"), timeout=10.0) == "still here"


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port bound by this test and not listening: a dial to it is refused at once.

    Raw peers name themselves ``raw@127.0.0.1:<this port>`` so that if the node under
    test ever dials them back, the dial fails fast and reaches nobody else.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def free_port() -> int:
    """A loopback port that was free a moment ago (for a node started later on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RawPeer:
    """A hand-driven TCP client of a node: speaks (or breaks) the protocol frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        host, port = writer.get_extra_info("sockname")[:2]
        #: how the node under test names this connection's address in its log lines
        self.address = f"{host}:{port}"
        self.core: HandshakeCore | None = None

    @classmethod
    async def open(cls, port: int, *, rcvbuf: int | None = None) -> RawPeer:
        """Connect to 127.0.0.1:``port``; ``rcvbuf`` shrinks the receive buffer (a slow reader)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        # A small stream limit makes the reader stop pulling from the socket early.
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024 if rcvbuf is not None else 2**16)
        return cls(reader, writer)

    # --- writing --------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)

    def send_handshake(self, messages: list[Any]) -> None:
        for message in messages:
            self.writer.write(encode_frame(handshake_encoder.encode(message)))

    def send_batch(self, messages: list[Any]) -> None:
        """One frame holding ``messages`` (structs or raw lists) as a msgpack array."""
        self.writer.write(encode_frame(msgspec.msgpack.encode(messages)))

    # --- reading --------------------------------------------------------------------

    async def read_frame(self, timeout: float = 10.0) -> bytes:
        """The body of the next frame. Raises ``asyncio.IncompleteReadError`` at EOF."""
        async with asyncio.timeout(timeout):
            header = await self.reader.readexactly(4)
            return await self.reader.readexactly(int.from_bytes(header, "big"))

    async def read_messages(self, timeout: float = 10.0) -> list[Any]:
        """The messages of the next batch frame from an authenticated link."""
        return list(batch_decoder.decode(await self.read_frame(timeout)))

    async def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """Read (and discard) until the node closes the connection; True once it has.

        A node that closes with our bytes still unread in its buffer makes the kernel
        send a reset instead of an end-of-file: both mean the node closed it.
        """
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return True

    # --- the handshake --------------------------------------------------------------

    def start_handshake(self, *, name: str, expected: str, cookie: str = COOKIE, incarnation: int = 1) -> None:
        """Send a ``Hello`` as dialer ``name`` reaching ``expected``."""
        self.core = HandshakeCore(
            dialer=True,
            name=name,
            incarnation=incarnation,
            cookie=cookie.encode(),
            nonce=os.urandom(NONCE_SIZE),
            expected_peer=expected,
        )
        self.send_handshake(self.core.start())

    async def answer_challenge(self) -> None:
        """Read the ``Challenge`` and send our ``Proof``."""
        assert self.core is not None
        self.send_handshake(self.core.receive(handshake_decoder.decode(await self.read_frame())))

    async def finish_handshake(self) -> None:
        """Read the ``Welcome`` (or ``Reject``: then ``HandshakeError`` is raised)."""
        assert self.core is not None
        self.core.receive(handshake_decoder.decode(await self.read_frame()))
        assert self.core.state == "ESTABLISHED"

    async def handshake(self, *, name: str, expected: str, cookie: str = COOKIE) -> None:
        """Authenticate fully as node ``name``."""
        self.start_handshake(name=name, expected=expected, cookie=cookie)
        await self.answer_challenge()
        await self.finish_handshake()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_peer(port: int, *, rcvbuf: int | None = None) -> AsyncIterator[RawPeer]:
    peer = await RawPeer.open(port, rcvbuf=rcvbuf)
    try:
        yield peer
    finally:
        await peer.close()


def log_lines(caplog: pytest.LogCaptureFixture, level: int, *parts: str) -> list[logging.LogRecord]:
    """Records at exactly ``level`` whose message contains every one of ``parts``."""
    return [r for r in caplog.records if r.levelno == level and all(p in r.getMessage() for p in parts)]


def describe_log(caplog: pytest.LogCaptureFixture) -> str:
    return "log was:\n" + "\n".join(f"{r.levelname} {r.getMessage()}" for r in caplog.records)
