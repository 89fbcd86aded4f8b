"""Hostile and broken input against a real listening node, from raw sockets.

For each case: the node logs a line naming the peer's address and the problem, closes
that connection (our reader sees the end of the stream), and goes on serving a
well-behaved node (guarantee 7 in docs/design.md). A raw peer authenticates, when a case
needs it, with ``HandshakeCore`` and the right cookie, writing frames by hand.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from distable import Node, Pid, TransportConfig
from distable.registry import REGISTRY_SERVER_ID
from distable.testing import eventually, pending_handshakes
from distable.wire import encode_frame
from distable.wire._messages import (
    REGISTRY_ERROR,
    REGISTRY_OK,
    REPLY_EXIT,
    REPLY_OK,
    CallReply,
    CallRequest,
    GroupJoinRequest,
    RegisterNameRequest,
    RegisterRequest,
    RegistryReply,
    Reject,
    Send,
    Spec,
    handshake_decoder,
)

from ._support import (
    COOKIE,
    RawPeer,
    assert_still_serves,
    describe_log,
    echo_process,
    log_lines,
    raw_peer,
    refused_port,
    spawn_echo,
)

WARNING = logging.WARNING


@dataclass
class Target:
    """The node under attack, a process on it, and the name a raw peer authenticates as."""

    node: Node
    echo: Pid
    raw_name: str


@pytest.fixture
def raw_name() -> Iterator[str]:
    with refused_port() as port:
        yield f"raw@127.0.0.1:{port}"


@pytest.fixture
def config() -> TransportConfig:
    """The target's link tunables; a test overrides this fixture (parametrize) to change them."""
    return TransportConfig(max_frame_size=64 * 1024, tick_timeout=120.0)


@pytest.fixture
async def target(config: TransportConfig, raw_name: str, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Target]:
    caplog.set_level(logging.DEBUG, logger="distable.transport")
    node = Node("target", cookie=COOKIE, transport=config)
    await node.start()
    try:
        yield Target(node, await spawn_echo(node, []), raw_name)
    finally:
        await node.stop()


def closing_line(caplog: pytest.LogCaptureFixture, level: int, raw: RawPeer, problem: str) -> list[logging.LogRecord]:
    """The transport's "closing link to <name> (<addr>): <reason>" line for this raw peer."""
    return log_lines(caplog, level, "closing link to", f"({raw.address})", problem)


async def assert_closed_with_log(
    caplog: pytest.LogCaptureFixture, target: Target, raw: RawPeer, problem: str, level: int = WARNING
) -> None:
    """The node closed ``raw``'s connection, logged why, and still serves a good peer."""
    assert await raw.closed_by_peer(), "the node left the connection open"
    await eventually(lambda: closing_line(caplog, level, raw, problem), message=lambda: describe_log(caplog))
    assert target.raw_name not in target.node.transport.connected()
    assert target.node.name not in target.node.transport.connected()
    await assert_still_serves(target.node, target.echo)


# --- before authentication ---------------------------------------------------------------


async def test_wrong_cookie_is_refused_and_logged(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    async with raw_peer(target.node.port) as raw:
        raw.start_handshake(name=target.raw_name, expected=target.node.name, cookie="not-the-cookie")
        await raw.answer_challenge()  # the node challenges anyone; our Proof is then wrong
        failures = target.node.statistics().transport.handshake_failures
        await assert_closed_with_log(caplog, target, raw, "handshake failed: peer's proof of the cookie is wrong")
        assert target.node.statistics().transport.handshake_failures == failures + 1
        assert target.raw_name not in target.node.nodes()  # never became a member


async def test_truncated_frame_then_close_is_logged(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    async with raw_peer(target.node.port) as raw:
        raw.send_bytes((100).to_bytes(4, "big") + b"\x95\x01")  # announces 100 bytes, sends 2
        raw.writer.write_eof()
        await assert_closed_with_log(caplog, target, raw, "in the middle of a frame")


async def test_truncated_frame_then_close_after_authentication_is_logged(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw_peer(target.node.port) as raw:
        await raw.handshake(name=target.raw_name, expected=target.node.name)
        raw.send_bytes((100).to_bytes(4, "big") + b"\x91")
        raw.writer.write_eof()
        await assert_closed_with_log(caplog, target, raw, "in the middle of a frame")
        assert target.raw_name in closing_line(caplog, WARNING, raw, "in the middle of a frame")[0].getMessage()


async def test_frame_over_the_handshake_limit_before_authentication_is_refused(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw_peer(target.node.port) as raw:
        raw.send_bytes((4097).to_bytes(4, "big"))  # only the header: the node refuses it from that alone
        await assert_closed_with_log(caplog, target, raw, "protocol error: handshake frame of 4097 bytes (max 4096)")


@pytest.mark.parametrize(
    ("garbage", "problem"),
    [
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "protocol error: handshake frame of"),
        (encode_frame(b"\xc1\xc1\xc1 not msgpack"), "protocol error: malformed handshake message"),
        (encode_frame(msgspec.msgpack.encode([16, "a Send before the handshake"])), "malformed handshake message"),
    ],
    ids=["http-request", "garbage-in-a-frame", "wrong-message-type"],
)
async def test_garbage_before_authentication_is_refused(
    target: Target, caplog: pytest.LogCaptureFixture, garbage: bytes, problem: str
) -> None:
    async with raw_peer(target.node.port) as raw:
        raw.send_bytes(garbage)
        await assert_closed_with_log(caplog, target, raw, problem)
        assert target.node.statistics().transport.protocol_errors >= 1


@pytest.mark.parametrize("config", [TransportConfig(handshake_timeout=0.3)])
async def test_peer_that_never_finishes_its_handshake_is_closed_after_the_timeout(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw_peer(target.node.port) as silent, raw_peer(target.node.port) as stuck:
        stuck.start_handshake(name=target.raw_name, expected=target.node.name)
        await stuck.read_frame()  # got the Challenge, and never sends its Proof
        await assert_closed_with_log(caplog, target, silent, "handshake not completed within 0.3 s")
        # The same host again, for the same reason, within the rate-limit interval: closed
        # too, and counted rather than logged (guarantee 8: a client retrying from new
        # ephemeral ports must not flood the log).
        assert await stuck.closed_by_peer(), "the node left the connection open"
        assert not closing_line(caplog, WARNING, stuck, "handshake not completed")
        await assert_still_serves(target.node, target.echo)


@pytest.mark.parametrize("config", [TransportConfig(max_pending_handshakes=4, handshake_timeout=60.0)])
async def test_more_than_max_pending_handshakes_at_once_are_refused(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    node = target.node
    held = [await RawPeer.open(node.port) for _ in range(4)]
    try:
        await eventually(lambda: pending_handshakes(node) == 4)  # the node's own count of them
        async with raw_peer(target.node.port) as fifth, raw_peer(target.node.port) as sixth:
            for raw in (fifth, sixth):
                assert await raw.closed_by_peer()
            # one line for the host, the second refusal counted (rate-limited per host)
            assert closing_line(caplog, WARNING, fifth, "too many unauthenticated connections at once")
            assert not closing_line(caplog, WARNING, sixth, "too many unauthenticated connections at once")
            assert pending_handshakes(node) == 4  # the ones already held are not disturbed
    finally:
        for raw in held:
            await raw.close()
    await eventually(lambda: pending_handshakes(node) == 0)
    await assert_still_serves(target.node, target.echo)


async def test_peer_presenting_the_nodes_own_name_is_refused(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    async with raw_peer(target.node.port) as raw:
        raw.start_handshake(name=target.node.name, expected=target.node.name)
        # Refused at the Hello already (before any proof): nothing to learn from us.
        assert handshake_decoder.decode(await raw.read_frame()) == Reject("the dialer claims this node's own name")
        await assert_closed_with_log(caplog, target, raw, "handshake refused: the dialer claims this node's own name")


async def test_authenticated_peer_whose_name_is_not_a_node_name_is_refused(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw_peer(target.node.port) as raw:
        raw.start_handshake(name="no-at-sign-or-port", expected=target.node.name)
        await raw.answer_challenge()  # right cookie: refused only after it proved it
        assert handshake_decoder.decode(await raw.read_frame()) == Reject(
            "the peer's node name is not of the form name@host:port"
        )
        await assert_closed_with_log(caplog, target, raw, "refused link: the peer's node name is not of the form")


# --- after authentication ----------------------------------------------------------------


async def test_authenticated_oversized_frame_header_closes_the_link(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw_peer(target.node.port) as raw:
        await raw.handshake(name=target.raw_name, expected=target.node.name)
        await eventually(lambda: target.node.transport.is_connected(target.raw_name))
        raw.send_bytes((64 * 1024 + 1).to_bytes(4, "big"))
        await assert_closed_with_log(caplog, target, raw, "protocol error: frame of 65537 bytes announced")
        assert target.raw_name in closing_line(caplog, WARNING, raw, "frame of 65537")[0].getMessage()


async def test_authenticated_garbage_frame_closes_the_link(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    async with raw_peer(target.node.port) as raw:
        await raw.handshake(name=target.raw_name, expected=target.node.name)
        raw.send_bytes(encode_frame(b"\xc1 this is not msgpack"))
        await assert_closed_with_log(caplog, target, raw, "protocol error: undecodable frame")


async def test_unknown_message_type_is_dropped_with_a_warning_and_the_rest_of_the_batch_delivered(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    log = echo_process(target.node, target.echo).log
    async with raw_peer(target.node.port) as raw:
        await raw.handshake(name=target.raw_name, expected=target.node.name)
        raw.send_batch([[999, "from the future"], Send(target.echo, "hello"), [999]])
        await eventually(lambda: log == [("info", "hello")], message=lambda: f"{log}")
        dropped = log_lines(caplog, WARNING, "dropped a message from", target.raw_name, f"({raw.address})")
        assert dropped, describe_log(caplog)
        # The link stays up: an unknown message is a newer peer's business, not an attack.
        raw.send_batch([Send(target.echo, "still linked")])
        await eventually(lambda: log == [("info", "hello"), ("info", "still linked")], message=lambda: f"{log}")
        assert target.node.transport.is_connected(target.raw_name)
    await assert_still_serves(target.node, target.echo)


async def test_messages_for_a_pid_that_no_longer_exists_are_dropped_and_counted_and_calls_answered_noproc(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    node = target.node
    gone = await spawn_echo(node)
    assert await node.stop_process(gone) == "normal"
    dropped_before = node.statistics().runtime.dropped_messages
    async with raw_peer(node.port) as raw:
        await raw.handshake(name=target.raw_name, expected=node.name)
        raw.send_batch([Send(gone, "too late")])
        await eventually(lambda: node.statistics().runtime.dropped_messages == dropped_before + 1)

        raw.send_batch([CallRequest(7, gone, None, ("echo", "anyone?"))])
        reply = await read_until(raw, CallReply)
        assert reply == CallReply(7, REPLY_EXIT, "noproc")

        assert node.transport.is_connected(target.raw_name)  # nothing wrong with the peer: the link stays
        assert not [r for r in caplog.records if r.levelno >= WARNING], describe_log(caplog)  # silent
    await assert_still_serves(node, target.echo)


async def test_registry_requests_get_typed_error_replies_and_a_malformed_one_a_warning(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    node = target.node
    server = Pid(node.name, node.incarnation, REGISTRY_SERVER_ID)
    async with raw_peer(node.port) as raw:
        await raw.handshake(name=target.raw_name, expected=node.name)
        raw.send_batch(
            [
                [46, "not a ref", "name", "not a spec"],  # a RegisterRequest with fields of the wrong types
                RegisterNameRequest(1, "by-hand", Pid(target.raw_name, 1, 5)),  # no process of this node
                RegisterRequest(2, "odd", Spec("tests.registry.apps:Counter", [], {}, "sometimes", 5.0)),
                GroupJoinRequest(3, "group", target.echo),
                CallRequest(4, server, None, ["register", "too short"]),  # the list form of version 2
            ]
        )
        replies: dict[int, Any] = {}
        for _ in range(20):
            if len(replies) == 4:
                break
            for message in await raw.read_messages():
                if isinstance(message, RegistryReply | CallReply):
                    replies[message.ref] = message
        assert replies[1] == RegistryReply(1, REGISTRY_ERROR, None, "ProcessExited", "noproc")
        assert (replies[2].status, replies[2].error) == (REGISTRY_ERROR, "FactoryError")
        assert "restart must be one of" in replies[2].detail
        assert replies[3] == RegistryReply(3, REGISTRY_OK, target.echo)
        assert (replies[4].status, replies[4].payload[:2]) == (REPLY_OK, ["error", "FactoryError"])
        assert node.members("group") == [target.echo]
        assert node.registered() == []
        dropped = log_lines(caplog, WARNING, "dropped a message from", target.raw_name, f"({raw.address})")
        assert dropped, describe_log(caplog)
        assert node.transport.is_connected(target.raw_name)
    await assert_still_serves(node, target.echo)


async def read_until(raw: RawPeer, kind: type[Any], frames: int = 20) -> Any:
    """The first message of type ``kind`` the node sends (skipping keep-alive ticks)."""
    for _ in range(frames):
        for message in await raw.read_messages():
            if isinstance(message, kind):
                return message
    raise AssertionError(f"no {kind.__name__} within {frames} frames")
