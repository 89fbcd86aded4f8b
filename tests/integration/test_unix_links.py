"""Links over Unix domain sockets between real nodes on 127.0.0.1 (``transport._unix``).

Every test gets a socket folder of its own: ``XDG_RUNTIME_DIR`` points at a fresh private
temporary folder (node processes started here inherit it). What a link runs over is read
from the transport statistics (``PeerStatistics.link``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import ssl
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from distable import Node, TransportConfig
from distable.testing import NodeProcess, eventually
from distable.transport import _unix

from ._support import COOKIE, describe_log, free_port, log_lines, spawn_echo
from .test_links import Blaster

NO_UNIX = TransportConfig(unix_sockets=False)


@pytest.fixture(autouse=True)
def socket_folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's socket folder (made by the first node), in a fresh private folder."""
    root = tempfile.mkdtemp(prefix="dt-")  # short: a socket's path has a length limit
    monkeypatch.setenv("XDG_RUNTIME_DIR", root)
    try:
        yield Path(root) / "distable"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def link(node: Node, other: str) -> str:
    """What ``node``'s link to ``other`` runs over: "unix", "tcp", or "" (none)."""
    return next((p.link for p in node.statistics().transport.peers if p.name == other), "")


def socket_file(name: str) -> Path:
    """Where node ``name`` has its socket (as every node of this host computes it)."""
    path = _unix.socket_path(_unix.socket_dir(), name, _unix.netns_id())
    assert path is not None
    return Path(path)


def is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def refuses(path: Path) -> bool:
    """Is a connect to the socket at ``path`` refused (nothing listens there)?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            return True
    return False


async def linked_over(a: Node, b: Node, kind: str) -> None:
    """Link ``a`` to ``b``; both ends say the link runs over ``kind``, and calls cross it."""
    await a.connect(b.name)
    await eventually(lambda: a.transport.is_connected(b.name) and b.transport.is_connected(a.name))
    assert (link(a, b.name), link(b, a.name)) == (kind, kind)
    on_a, on_b = await spawn_echo(a), await spawn_echo(b)
    assert await a.call(on_b, ("echo", "a->b")) == "a->b"
    assert await b.call(on_a, ("echo", "b->a")) == "b->a"


# --- the link -------------------------------------------------------------------------------


async def test_two_nodes_on_loopback_link_over_their_unix_sockets(socket_folder: Path) -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        for node in (a, b):
            path = socket_file(node.name)
            assert path.parent == socket_folder
            assert is_socket(path), f"no socket at {path}"
        assert stat.S_IMODE(os.lstat(socket_folder).st_mode) == 0o700
        await linked_over(a, b, "unix")
        conn = a.transport.peers[b.name].conn
        assert conn is not None
        assert conn.address == "unix socket"


async def test_a_graceful_stop_removes_the_socket_file() -> None:
    async with Node("a", cookie=COOKIE) as a:
        path = socket_file(a.name)
        assert is_socket(path)
    assert not path.exists()


async def test_a_node_process_stopped_by_sigterm_removes_its_socket_file() -> None:
    b = await NodeProcess.start("b", COOKIE)
    try:
        path = socket_file(b.name)
        assert is_socket(path)
        b.terminate()
        assert await b.wait() == 0
    finally:
        await b.close()
    assert not path.exists()


async def test_tls_runs_over_the_unix_socket_too() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server)
    server.verify_mode = ssl.CERT_REQUIRED  # both ends prove themselves, as over TCP
    ca.configure_trust(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cert.configure_cert(client)
    ca.configure_trust(client)
    tls = (server, client)
    async with Node("a", cookie=COOKIE, tls=tls) as a, Node("b", cookie=COOKIE, tls=tls) as b:
        await linked_over(a, b, "unix")
        conn = a.transport.peers[b.name].conn
        assert conn is not None
        assert conn.transport is not None
        assert conn.transport.get_extra_info("ssl_object") is not None  # really encrypted
        # A node without TLS reaches the socket, and gets no link: TLS is not optional there.
        async with Node("plain", cookie=COOKIE) as plain:
            with pytest.raises(TimeoutError):
                await plain.connect(a.name, timeout=1.0)


async def test_a_wrong_cookie_is_refused_over_the_unix_socket(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="distable.transport")
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie="another cookie") as b:
        with pytest.raises(TimeoutError):
            await b.connect(a.name, timeout=1.0)
        assert log_lines(caplog, logging.WARNING, "refused this node: not authorized"), describe_log(caplog)
        assert not a.transport.is_connected(b.name)


# --- falling back to TCP ------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["dialer without", "acceptor without", "file removed", "file refuses"])
async def test_a_peer_without_a_usable_socket_is_linked_over_tcp(case: str) -> None:
    config_a = NO_UNIX if case == "dialer without" else TransportConfig()
    config_b = NO_UNIX if case == "acceptor without" else TransportConfig()
    async with Node("a", cookie=COOKIE, transport=config_a) as a, Node("b", cookie=COOKIE, transport=config_b) as b:
        path = socket_file(b.name)
        assert is_socket(path) == (case != "acceptor without")
        assert is_socket(socket_file(a.name)) == (case != "dialer without")
        if case in ("file removed", "file refuses"):
            path.unlink()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as squatter:
            if case == "file refuses":
                squatter.bind(str(path))  # a socket file nothing listens on
                assert refuses(path)
            await linked_over(a, b, "tcp")


async def test_a_live_socket_at_the_nodes_path_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="distable.transport")
    port = free_port()
    path = socket_file(f"b@127.0.0.1:{port}")
    path.parent.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen()
        made = path.lstat().st_ctime_ns
        async with Node("b", cookie=COOKIE, port=port) as b:
            assert log_lines(caplog, logging.WARNING, "no Unix domain socket", "a live node listens"), describe_log(
                caplog
            )
            assert path.lstat().st_ctime_ns == made  # not replaced
            async with Node("a", cookie=COOKIE, transport=NO_UNIX) as a:
                await linked_over(a, b, "tcp")  # b serves TCP as ever
        assert path.lstat().st_ctime_ns == made  # b did not remove what it had not made


async def test_a_socket_folder_open_to_other_users_is_not_used(
    socket_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="distable.transport")
    os.mkdir(socket_folder)
    os.chmod(socket_folder, 0o755)
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        assert log_lines(caplog, logging.WARNING, "use TCP", "open to other users"), describe_log(caplog)
        assert os.listdir(socket_folder) == []
        await linked_over(a, b, "tcp")


# --- a killed node's socket file -----------------------------------------------------------------


async def test_the_socket_file_of_a_killed_node_process_is_replaced_by_the_next_node_of_its_name() -> None:
    dead = await NodeProcess.start("b", COOKIE)
    try:
        path = socket_file(dead.name)
        assert is_socket(path)
        dead.kill()  # SIGKILL: no chance to remove anything
        await dead.wait()
    finally:
        await dead.close()
    assert is_socket(path), "the killed node's socket file is left behind"
    assert refuses(path)

    port = int(dead.name.rpartition(":")[2])
    async with Node("a", cookie=COOKIE, transport=TransportConfig(backoff_max=0.5)) as a:
        # While nobody has the name, a dial fails as over TCP (refused), not otherwise.
        with pytest.raises(TimeoutError):
            await a.connect(dead.name, timeout=0.5)
        assert a.transport.dial_refused(dead.name)
        async with Node("b", cookie=COOKIE, port=port) as b:
            assert b.name == dead.name
            assert is_socket(path)
            assert not refuses(path)  # a socket of its own, which accepts
            await eventually(lambda: a.transport.is_connected(b.name), timeout=20.0)  # a redials by itself
            assert link(a, b.name) == "unix"
        assert not path.exists()


# --- backpressure -------------------------------------------------------------------------------


async def test_a_peer_that_stops_reading_its_unix_socket_parks_senders_then_is_disconnected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="distable.transport")
    hard_limit = 1024 * 1024
    config = TransportConfig(soft_limit=256 * 1024, hard_limit=hard_limit, tick_timeout=120.0)
    chunk = b"x" * (32 * 1024)
    async with Node("a", cookie=COOKIE, transport=config) as a, Node("b", cookie=COOKIE) as b:
        sink = await spawn_echo(b)
        await a.connect(b.name)
        await eventually(lambda: link(b, a.name) == "unix")
        b_end = b.transport.peers[a.name].conn
        assert b_end is not None
        assert b_end.transport is not None
        b_end.transport.pause_reading()  # b stops reading: a's socket fills up

        blaster = await a.spawn(Blaster, sink, chunk, 2000)
        process = a.runtime.local(blaster)
        assert isinstance(process, Blaster)
        a.send(blaster, "more")
        peer = a.transport.peers[b.name]
        await eventually(lambda: peer.paused and process.last_send_congested, message=lambda: f"{process.sent} sent")
        parked_at = process.sent
        for _ in range(200):  # plenty of loop turns: parked while b reads nothing
            await asyncio.sleep(0)
        assert process.sent == parked_at
        assert a.transport.is_connected(b.name)

        # Plain code is never parked: its backlog grows past the hard limit, and the link goes.
        for _ in range(hard_limit // len(chunk) + 8):
            if not a.transport.is_connected(b.name):
                break
            a.send(sink, chunk)
        assert not a.transport.is_connected(b.name)
        assert log_lines(caplog, logging.WARNING, b.name, "exceed the hard limit"), describe_log(caplog)
        process.stopped = True
        # It comes back (b takes the new link in place of the stalled one), over the socket
        # again, and carries calls.
        await a.connect(b.name, timeout=10.0)
        assert link(a, b.name) == "unix"
        assert await a.call(sink, ("echo", "after"), timeout=10.0) == "after"


def test_the_socket_folder_fixture_is_where_nodes_put_their_sockets(socket_folder: Path) -> None:
    assert _unix.socket_dir() == str(socket_folder)
    assert os.environ["XDG_RUNTIME_DIR"] == str(socket_folder.parent)
