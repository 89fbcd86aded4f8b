"""Discovery strategies: how a node finds the others. Chosen with ``Node(cluster=...)``.

Each strategy only *discovers* candidate node names; the membership core decides whom
to dial and tracks who is alive. Several strategies may be combined (a list).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .._extras import require
from .._log import RateLimitedLog
from ..transport import format_node_name
from ._packet import GossipCodec, Heartbeat, PacketRejected

log = logging.getLogger("distable.membership")


class DiscoveryContext(Protocol):
    """What a running strategy may use. Called on the event loop; must not block."""

    name: str
    incarnation: int
    cookie: bytes

    def discovered(self, name: str, incarnation: int = 0, urgent: bool = False) -> None: ...

    def refutation(self) -> int: ...

    def is_up(self, name: str) -> bool: ...

    def foreign(self) -> None:
        """A packet of another cluster arrived (another cookie): counted, so
        that a node that finds no one can say it heard others."""


class Strategy(Protocol):
    """A discovery strategy: ``run`` runs until cancelled, reporting what it finds."""

    async def run(self, ctx: DiscoveryContext) -> None: ...


# --- multicast (or broadcast) heartbeats --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gossip:
    """UDP heartbeats to a multicast group (or a broadcast address).

    Every packet is authenticated with a key derived from the cookie and carries a
    timestamp and a nonce, so forgeries and replays are dropped; ``encrypt=True`` also
    encrypts it (ChaCha20-Poly1305, needs the ``crypto`` extra: ``cryptography``). Clusters with
    different cookies can share one group without seeing each other.

    Attributes:
        multicast_addr: the group (administratively scoped by default).
        port: the UDP port every node binds.
        if_addr: the interface address to send and join on. Loopback by default:
            reaching a LAN is an explicit choice.
        ttl: multicast TTL (1: never leaves the link).
        interval: seconds between heartbeats, each jittered by ±``jitter`` of it.
        broadcast_only: send to ``broadcast_addr`` instead (networks without multicast).
        broadcast_addr: defaults to 127.255.255.255 on loopback, else 255.255.255.255.
    """

    multicast_addr: str = "239.255.43.92"
    port: int = 45892
    if_addr: str = "127.0.0.1"
    ttl: int = 1
    interval: float = 1.0
    jitter: float = 0.2
    broadcast_only: bool = False
    broadcast_addr: str | None = None
    encrypt: bool = False
    window: float = 30.0

    def __post_init__(self) -> None:
        if self.encrypt:
            require("crypto", "Gossip(encrypt=True)")

    def destination(self) -> tuple[str, int]:
        if not self.broadcast_only:
            return (self.multicast_addr, self.port)
        if self.broadcast_addr:
            return (self.broadcast_addr, self.port)
        loopback = ipaddress.ip_address(self.if_addr).is_loopback
        return ("127.255.255.255" if loopback else "255.255.255.255", self.port)

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self.broadcast_only:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                # Bound to the broadcast address itself: it receives the broadcasts, and
                # nothing sent to this host's other addresses (so not every interface).
                sock.bind(self.destination())
            else:
                # Bound to the group address, so unicast traffic to the port is not seen.
                sock.bind((self.multicast_addr, self.port))
                group = socket.inet_aton(self.multicast_addr) + socket.inet_aton(self.if_addr)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.if_addr))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def run(self, ctx: DiscoveryContext) -> None:
        loop = asyncio.get_running_loop()
        codec = GossipCodec(ctx.cookie, encrypt=self.encrypt, window=self.window)
        ratelog = RateLimitedLog(log, f"{ctx.name}: ", interval=30.0)
        protocol = _GossipProtocol(ctx, codec, ratelog)
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=self._socket())
        destination = self.destination()
        rng = random.Random()
        try:
            while True:
                heartbeat = Heartbeat(ctx.name, ctx.incarnation, ctx.refutation())
                try:
                    transport.sendto(codec.seal(heartbeat, time.time(), os.urandom(16)), destination)
                except OSError as exc:
                    ratelog.warning("send", "cannot send gossip heartbeat to %s:%d: %s", *destination, exc)
                await asyncio.sleep(self.interval * (1 + self.jitter * (2 * rng.random() - 1)))
        finally:
            transport.close()


class _GossipProtocol(asyncio.DatagramProtocol):
    def __init__(self, ctx: DiscoveryContext, codec: GossipCodec, ratelog: RateLimitedLog) -> None:
        self.ctx = ctx
        self.codec = codec
        self.ratelog = ratelog
        self.rejected: dict[str, int] = {}
        self._foreign: set[tuple[str, int]] = set()  # senders of other clusters' packets, said once each

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            heartbeat = self.codec.open(data, time.time())
        except PacketRejected as exc:
            self.rejected[exc.kind] = self.rejected.get(exc.kind, 0) + 1
            if exc.kind == "foreign":
                self.ctx.foreign()
                # Legitimate when clusters share a group, so said once per sender, at INFO:
                # also what a node with the wrong cookie sees (it then runs on its own).
                if addr not in self._foreign and len(self._foreign) < 1024:
                    self._foreign.add(addr)
                    logging.getLogger("distable.membership").info(
                        "%s: dropped gossip packet from %s:%s: %s (a different cookie?)",
                        self.ctx.name,
                        addr[0],
                        addr[1],
                        exc,
                    )
                return
            self.ratelog.log(
                logging.WARNING, (exc.kind, addr[0]), "dropped gossip packet from %s:%s: %s", addr[0], addr[1], exc
            )
            return
        if heartbeat.name != self.ctx.name:
            self.ctx.discovered(heartbeat.name, heartbeat.incarnation, urgent=not self.ctx.is_up(heartbeat.name))

    def error_received(self, exc: Exception) -> None:
        self.ratelog.warning("error", "gossip socket error: %s", exc)


# --- a fixed list ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Static:
    """A fixed list of node names (``name@host:port``), dialed and redialed with backoff."""

    nodes: Sequence[str]
    recheck: float = 5.0

    async def run(self, ctx: DiscoveryContext) -> None:
        while True:
            for name in self.nodes:
                if name != ctx.name and not ctx.is_up(name):
                    ctx.discovered(name)
            await asyncio.sleep(self.recheck)


# --- DNS -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DNSPoll:
    """Resolve ``query`` every ``interval`` seconds and dial ``basename@address:port``.

    Fits a Kubernetes headless service: every pod runs a node named ``basename`` on
    ``port``, and the service's name resolves to every pod's address. ``nameservers``
    (with ``dns_port``) overrides the system resolver; resolving uses dnspython (the ``dns`` extra).
    """

    query: str
    port: int = 4370
    basename: str = "distable"
    interval: float = 5.0
    nameservers: Sequence[str] = ()
    dns_port: int = 53
    timeout: float = 2.0

    def __post_init__(self) -> None:
        require("dns", "DNSPoll")

    def _resolver(self) -> Any:
        import dns.asyncresolver

        if self.nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = list(self.nameservers)
            resolver.port = self.dns_port
        else:
            resolver = dns.asyncresolver.Resolver()
        resolver.lifetime = self.timeout
        return resolver

    async def resolve(self) -> list[str]:
        """The node names the query resolves to now (A and AAAA records).

        Raises:
            dns.exception.DNSException: no name found, and a lookup failed (not merely
                empty): the first such failure.
        """
        import dns.exception
        import dns.resolver

        resolver = self._resolver()
        names: list[str] = []
        errors: list[dns.exception.DNSException] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await resolver.resolve(self.query, rdtype)
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
            except dns.exception.DNSException as exc:
                # One record type failing (a server that refuses AAAA) must not hide the other's answer.
                errors.append(exc)
                continue
            names.extend(format_node_name(self.basename, r.to_text(), self.port) for r in answer)
        if errors and not names:
            raise errors[0]
        return sorted(set(names))

    async def run(self, ctx: DiscoveryContext) -> None:
        ratelog = RateLimitedLog(log, f"{ctx.name}: ", interval=60.0)
        while True:
            try:
                for name in await self.resolve():
                    if name != ctx.name and not ctx.is_up(name):
                        ctx.discovered(name)
            except Exception as exc:
                ratelog.warning("dns", "DNS lookup of %r failed: %s", self.query, exc)
            await asyncio.sleep(self.interval)


def as_strategies(cluster: Any) -> list[Strategy]:
    """Normalize ``Node(cluster=...)``: None, one strategy, or a list of them."""
    if cluster is None:
        return []
    if isinstance(cluster, list | tuple):
        return list(cluster)
    return [cluster]


StrategyFactory = Callable[[], Strategy]
