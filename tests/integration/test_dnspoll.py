"""DNS discovery (``DNSPoll``) against a real dnsmasq serving on 127.0.0.1.

The dnsmasq of each test reads no system configuration, forwards nothing (no upstream
servers), and answers for two names (one per node address, 127.0.0.2, .3, .4):

* ``nodes.distable.test`` in a local-only domain: A records, and an empty answer to AAAA;
* ``nodes.unscoped.test`` outside it: A records, but AAAA is REFUSED (nowhere to forward).

Nodes are all named ``app`` and listen on the same port, each on its own loopback
address, the way pods of a Kubernetes headless service do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rdatatype
import pytest

from distable import Node
from distable.membership import DNSPoll, MembershipConfig
from distable.testing import eventually

from .._system import system_tool
from ._support import describe_log, log_lines

QUERY = "nodes.distable.test"
UNSCOPED_QUERY = "nodes.unscoped.test"
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
COOKIE = "dnspoll-cookie"


def dnsmasq_path() -> str:
    """The dnsmasq binary; skips the test when it is missing (fails on CI, where it must be there)."""
    return system_tool("dnsmasq", package="dnsmasq", path="/usr/local/sbin:/usr/sbin:/sbin")


def free_dns_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP a moment ago (dnsmasq binds both)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


def shared_node_port() -> int:
    """A TCP port free on every one of ``HOSTS`` a moment ago."""
    for _ in range(20):
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            first.bind((HOSTS[0], 0))
            port = int(first.getsockname()[1])
            try:
                for host in HOSTS[1:]:
                    stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)).bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no TCP port free on all of {HOSTS}")


def names(port: int) -> list[str]:
    return [f"app@{host}:{port}" for host in HOSTS]


class Dnsmasq:
    """A dnsmasq in the foreground, on 127.0.0.1:``port`` only."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    def poll(self, query: str = QUERY, **kwargs: Any) -> DNSPoll:
        """A ``DNSPoll`` asking this server."""
        return DNSPoll(query, basename="app", nameservers=["127.0.0.1"], dns_port=self.port, **kwargs)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


async def start_dnsmasq(binary: str, log_path: Path) -> Dnsmasq:
    port = free_dns_port()
    records = [f"--host-record={name},{host}" for name in (QUERY, UNSCOPED_QUERY) for host in HOSTS]
    args = [
        "--no-daemon",  # foreground, no pid file, no change of user
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--log-facility=-",
        "--local=/distable.test/",
        *records,
    ]
    with log_path.open("ab") as log_file:
        proc = await asyncio.create_subprocess_exec(
            binary, *args, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )
    server = Dnsmasq(proc, port, log_path)
    probe = server.poll(timeout=0.1)

    async def answers() -> bool:
        if proc.returncode is not None:
            raise RuntimeError(f"dnsmasq exited with code {proc.returncode}:\n{server.output()}")
        try:
            return bool(await probe.resolve())
        except Exception:
            return False

    try:
        await eventually(
            answers, timeout=10.0, interval=0.05, message=lambda: f"dnsmasq never answered:\n{server.output()}"
        )
    except BaseException:
        await stop_dnsmasq(server)
        raise
    return server


async def stop_dnsmasq(server: Dnsmasq) -> None:
    if server.proc.returncode is None:
        server.proc.terminate()
        try:
            await asyncio.wait_for(server.proc.wait(), 10.0)
        except TimeoutError:
            server.proc.kill()
            await server.proc.wait()


@pytest.fixture
async def dnsmasq(tmp_path: Path) -> AsyncIterator[Dnsmasq]:
    binary = dnsmasq_path()
    server = await start_dnsmasq(binary, tmp_path / "dnsmasq.log")
    try:
        yield server
    finally:
        await stop_dnsmasq(server)


# --- resolving ------------------------------------------------------------------------------


async def test_resolve_returns_a_node_name_for_every_address_the_query_has(dnsmasq: Dnsmasq) -> None:
    assert await dnsmasq.poll(port=4370).resolve() == names(4370)


async def test_resolve_of_a_name_without_records_returns_nothing(dnsmasq: Dnsmasq) -> None:
    assert await dnsmasq.poll("nobody.distable.test").resolve() == []


async def test_resolve_keeps_the_a_records_when_the_aaaa_lookup_is_refused(dnsmasq: Dnsmasq) -> None:
    """One record type failing (dnsmasq refuses AAAA here) must not hide the other's answer."""
    assert await dnsmasq.poll(UNSCOPED_QUERY, port=4370).resolve() == names(4370)


# --- discovery ------------------------------------------------------------------------------


async def test_nodes_found_by_dns_form_a_full_mesh(dnsmasq: Dnsmasq) -> None:
    port = shared_node_port()
    poll = dnsmasq.poll(port=port, interval=0.2)
    local = MembershipConfig.local()
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                Node("app", host=host, port=port, cookie=COOKIE, cluster=poll, membership=local)
            )
            for host in HOSTS
        ]
        assert [node.name for node in nodes] == names(port)

        def meshed() -> bool:
            return all(node.nodes() == [n for n in names(port) if n != node.name] for node in nodes)

        await eventually(meshed, message=lambda: "views: " + "; ".join(f"{n.name}: {n.nodes()}" for n in nodes))


# --- a DNS server that is down ------------------------------------------------------------


class SilentServer(asyncio.DatagramProtocol):
    """A DNS server that is down: it reads queries and never answers. Counts the lookups."""

    def __init__(self) -> None:
        self.lookups: set[tuple[int, str]] = set()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        with contextlib.suppress(Exception):
            query = dns.message.from_wire(data)
            # A retry reuses its query's id: each (id, type) is one lookup.
            self.lookups.add((query.id, dns.rdatatype.to_text(query.question[0].rdtype)))


async def silent_server() -> tuple[asyncio.DatagramTransport, SilentServer, int]:
    """Start a ``SilentServer`` on 127.0.0.1; returns its transport, itself and its port."""
    silent = SilentServer()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: silent, local_addr=("127.0.0.1", 0)
    )
    return transport, silent, int(transport.get_extra_info("sockname")[1])


async def test_a_dns_server_that_is_down_gives_one_rate_limited_warning_and_the_node_keeps_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="distable.membership")
    transport, silent, dns_port = await silent_server()
    try:
        poll = DNSPoll(QUERY, basename="app", nameservers=["127.0.0.1"], dns_port=dns_port, interval=0.05, timeout=0.2)
        async with Node("app", cookie=COOKIE, cluster=poll, membership=MembershipConfig.local()) as node:
            await eventually(
                lambda: sum(kind == "A" for _, kind in silent.lookups) >= 3,
                message=lambda: f"lookups seen by the silent server: {sorted(silent.lookups)}",
            )

            warnings = log_lines(caplog, logging.WARNING, node.name, f"DNS lookup of {QUERY!r} failed")
            assert len(warnings) == 1, describe_log(caplog)
            assert not log_lines(caplog, logging.ERROR, "discovery strategy"), describe_log(caplog)
            # Still serving: another node links to it, and the failing poll keeps going.
            async with Node("other", cookie=COOKIE, membership=MembershipConfig.local()) as other:
                await other.connect(node.name)
                await eventually(lambda: node.nodes() == [other.name], message=lambda: f"{node.nodes()}")
            polls = sum(kind == "A" for _, kind in silent.lookups)
            await eventually(lambda: sum(kind == "A" for _, kind in silent.lookups) > polls)
    finally:
        transport.close()
