"""A real node's multicast gossip socket under crafted, broken and hostile packets.

Each test starts a node with ``Gossip(port=P)`` on loopback, with a random cookie and a
random gossip port (both from a seeded ``random.Random``; the seed is printed, and
``DISTABLE_TEST_SEED`` replays it), then sends UDP packets to the multicast group from
its own socket (``IP_MULTICAST_IF`` 127.0.0.1, TTL 1), built with ``GossipCodec``.

What a node does with a packet is observed from outside: a valid heartbeat makes it
dial the name in it (a ``peers`` row in its transport statistics; the names point at a
loopback port that is bound but not listening, so every dial is refused at once), and
a dropped packet leaves one log line naming the sender's address and the kind of drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest

from distable import Node
from distable.membership import Gossip, GossipCodec, Heartbeat, MembershipConfig, PacketRejected, Static
from distable.membership._packet import HEADER_SIZE
from distable.testing import eventually, free_gossip_port
from tests._seed import seeded_rng

from ._support import describe_log, free_port, refused_port

GROUP = Gossip().multicast_addr
INTERVAL = 0.1


def pick_gossip_port(rng: random.Random) -> int:
    """A free gossip port for this test (a range of its own), printed."""
    port = free_gossip_port(range(46000, 47000), rng)
    print(f"gossip port {port}")
    return port


@contextlib.contextmanager
def multicast_socket(port: int | None = None) -> Iterator[socket.socket]:
    """A UDP socket that sends to the group on loopback only (TTL 1).

    With ``port``, it also joins the group on loopback and receives what is sent to
    ``port`` (beside the node, which shares the port).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        if port is None:
            sock.bind(("127.0.0.1", 0))
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((GROUP, port))
            membership = socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1")
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()


async def heartbeat_heard(listener: socket.socket, codec: GossipCodec, name: str, timeout: float = 10.0) -> None:
    """Wait until ``name``'s own heartbeat reaches ``listener``: its gossip socket is then bound and joined."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            data, _ = await loop.sock_recvfrom(listener, 2048)
            with contextlib.suppress(PacketRejected):
                if codec.open(data, time.time()).name == name:
                    return


def peer_names(node: Node) -> set[str]:
    """The node names ``node``'s transport keeps (or tries to keep) a link with."""
    return {peer.name for peer in node.statistics().transport.peers}


@dataclass
class GossipTarget:
    """A running node with a gossip socket, and a way to send it packets."""

    node: Node
    cookie: str
    port: int
    codec: GossipCodec
    rng: random.Random
    sender: socket.socket
    refused: int

    @property
    def sender_address(self) -> str:
        """How the node names our sending socket in its log lines."""
        host, port = self.sender.getsockname()
        return f"{host}:{port}"

    def fake_name(self, label: str) -> str:
        """A node name nobody answers to: its port is bound but not listening."""
        return f"{label}@127.0.0.1:{self.refused}"

    def heartbeat(self, name: str, *, wall_now: float | None = None, codec: GossipCodec | None = None) -> bytes:
        """A packet announcing ``name``, sealed now (or at ``wall_now``) with a fresh nonce."""
        beat = Heartbeat(name, 1_700_000_000_000_000, 0)
        now = time.time() if wall_now is None else wall_now
        return (codec or self.codec).seal(beat, now, self.rng.randbytes(16))

    def send(self, packet: bytes) -> None:
        self.sender.sendto(packet, (GROUP, self.port))

    async def dialed(self, name: str) -> None:
        """Wait until the node dials ``name`` (it acted on a heartbeat naming it)."""
        await eventually(
            lambda: name in peer_names(self.node),
            message=lambda: f"{self.node.name} never dialed {name}; it dials {sorted(peer_names(self.node))}",
        )


@contextlib.asynccontextmanager
async def gossip_target(caplog: pytest.LogCaptureFixture) -> AsyncIterator[GossipTarget]:
    caplog.set_level(logging.DEBUG, logger="distable.membership")
    rng = seeded_rng()
    cookie = f"gossip-input-{rng.getrandbits(64):016x}"
    port = pick_gossip_port(rng)
    codec = GossipCodec(cookie.encode())
    gossip = Gossip(port=port, interval=INTERVAL)
    with refused_port() as refused, multicast_socket() as sender, multicast_socket(port) as listener:
        async with Node("target", cookie=cookie, cluster=gossip, membership=MembershipConfig.local()) as node:
            await heartbeat_heard(listener, codec, node.name)
            yield GossipTarget(node, cookie, port, codec, rng, sender, refused)


def drop_lines(caplog: pytest.LogCaptureFixture, target: GossipTarget, kind: str) -> list[logging.LogRecord]:
    """The node's log lines about dropping a ``kind`` packet from our sender, any level."""
    return [
        r
        for r in caplog.records
        if r.name == "distable.membership"
        and "dropped gossip packet" in r.getMessage()
        and f"from {target.sender_address}: {kind}:" in r.getMessage()
        and target.node.name in r.getMessage()
    ]


# --- valid packets ------------------------------------------------------------------------


async def test_valid_heartbeat_from_an_unknown_name_makes_the_node_dial_it(caplog: pytest.LogCaptureFixture) -> None:
    async with gossip_target(caplog) as target:
        fake = target.fake_name("fake")
        assert fake not in peer_names(target.node)

        target.send(target.heartbeat(fake))

        await target.dialed(fake)
        assert fake not in target.node.nodes(), "a name nobody answers to must not count as up"


async def test_replayed_packet_is_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    async with gossip_target(caplog) as target:
        packet = target.heartbeat(target.fake_name("once"))
        target.send(packet)
        await target.dialed(target.fake_name("once"))
        assert not drop_lines(caplog, target, "replay")

        target.send(packet)

        lines = await eventually(lambda: drop_lines(caplog, target, "replay"), message=lambda: describe_log(caplog))
        assert [r.levelno for r in lines] == [logging.WARNING]


@pytest.mark.parametrize("bad_name", ["no-at-sign", "x@127.0.0.1:0", "x@127.0.0.1:99999", "x@:1"])
async def test_authenticated_heartbeat_with_a_malformed_name_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture, bad_name: str
) -> None:
    """Only a cookie holder can send one (a buggy member): it must not break the node's gossip."""
    async with gossip_target(caplog) as target:
        target.send(target.heartbeat(bad_name))
        target.send(target.heartbeat(target.fake_name("after")))

        await target.dialed(target.fake_name("after"))
        assert bad_name not in peer_names(target.node)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and repr(bad_name) in r.getMessage()]
        assert len(warnings) == 1, describe_log(caplog)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], describe_log(caplog)


# --- bad packets --------------------------------------------------------------------------


def forged(target: GossipTarget, name: str) -> bytes:
    """A valid packet with one bit of its MAC flipped."""
    packet = bytearray(target.heartbeat(name))
    packet[-1] ^= 0x01
    return bytes(packet)


def stale(target: GossipTarget, name: str) -> bytes:
    """A valid packet sealed an hour ago (the window is 30 s)."""
    return target.heartbeat(name, wall_now=time.time() - 3600)


def truncated(target: GossipTarget, name: str) -> bytes:
    """A valid packet cut off ten bytes into its payload."""
    return target.heartbeat(name)[: HEADER_SIZE + 10]


def garbage(target: GossipTarget, name: str) -> bytes:
    return b"GARB" + target.rng.randbytes(196)


def foreign(target: GossipTarget, name: str) -> bytes:
    """A valid packet of another cluster (another cookie) sharing the group and port."""
    return target.heartbeat(name, codec=GossipCodec(b"another-cluster-" + target.cookie.encode()))


BAD_PACKETS: list[tuple[Callable[[GossipTarget, str], bytes], str, int]] = [
    (forged, "forged", logging.WARNING),
    (stale, "stale", logging.WARNING),
    (truncated, "malformed", logging.WARNING),
    (garbage, "malformed", logging.WARNING),
    (foreign, "foreign", logging.INFO),  # once per sender: legitimate, but also a wrong cookie
]


@pytest.mark.parametrize(("make", "kind", "level"), [pytest.param(*case, id=case[0].__name__) for case in BAD_PACKETS])
async def test_bad_packet_is_dropped_and_logged_with_its_sender_and_kind(
    caplog: pytest.LogCaptureFixture, make: Callable[[GossipTarget, str], bytes], kind: str, level: int
) -> None:
    async with gossip_target(caplog) as target:
        victim = target.fake_name("victim")

        target.send(make(target, victim))

        lines = await eventually(lambda: drop_lines(caplog, target, kind), message=lambda: describe_log(caplog))
        assert [r.levelno for r in lines] == [level], describe_log(caplog)
        assert victim not in peer_names(target.node), "the node acted on a dropped packet"
        # The node still acts on the next valid packet.
        target.send(target.heartbeat(target.fake_name("after")))
        await target.dialed(target.fake_name("after"))
        assert victim not in peer_names(target.node)


async def test_fifty_forged_packets_log_at_most_a_couple_of_warnings(caplog: pytest.LogCaptureFixture) -> None:
    async with gossip_target(caplog) as target:
        for _ in range(50):
            target.send(forged(target, target.fake_name("flood")))
        # One socket, in order: once this valid packet is acted on, all 50 were read.
        target.send(target.heartbeat(target.fake_name("sentinel")))
        await target.dialed(target.fake_name("sentinel"))

        lines = drop_lines(caplog, target, "forged")
        assert 1 <= len(lines) <= 2, describe_log(caplog)
        assert all(r.levelno == logging.WARNING for r in lines)
        assert target.fake_name("flood") not in peer_names(target.node)


async def test_node_still_admits_a_new_member_by_gossip_after_hostile_input(caplog: pytest.LogCaptureFixture) -> None:
    async with gossip_target(caplog) as target:
        replayed = target.heartbeat(target.fake_name("replayed"))
        for make, _, _ in BAD_PACKETS:
            target.send(make(target, target.fake_name("bad")))
        target.send(replayed)
        target.send(replayed)
        target.send(b"")
        target.send(b"\x00" * 2000)

        gossip = Gossip(port=target.port, interval=INTERVAL)
        async with Node("late", cookie=target.cookie, cluster=gossip, membership=MembershipConfig.local()) as late:
            await eventually(
                lambda: target.node.nodes() == [late.name] and late.nodes() == [target.node.name],
                message=lambda: f"target sees {target.node.nodes()}, late sees {late.nodes()}",
            )
        assert target.fake_name("bad") not in peer_names(target.node)


# --- several strategies -------------------------------------------------------------------


async def test_a_list_of_strategies_runs_every_one_of_them() -> None:
    """``cluster=[Gossip(...), Static([...])]``: one peer is found only by gossip, one only by the list."""
    rng = seeded_rng()
    cookie = f"strategy-list-{rng.getrandbits(64):016x}"
    gossip = Gossip(port=pick_gossip_port(rng), interval=INTERVAL)
    local = MembershipConfig.local()
    listed_port = free_port()
    listed_name = f"listed@127.0.0.1:{listed_port}"
    async with (
        Node("listed", port=listed_port, cookie=cookie, membership=local) as listed,  # no discovery at all
        Node("both", cookie=cookie, cluster=[gossip, Static([listed_name], recheck=0.2)], membership=local) as both,
        Node("gossiper", cookie=cookie, cluster=gossip, membership=local) as gossiper,  # not in the static list
    ):
        assert listed.name == listed_name
        await eventually(
            lambda: both.nodes() == sorted([listed.name, gossiper.name]),
            message=lambda: f"{both.name} sees {both.nodes()}",
        )
