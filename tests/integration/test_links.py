"""Links between real nodes over loopback TCP, all in this one OS process and event loop.

Each test starts its nodes with ``async with Node(...)`` on 127.0.0.1, port 0 unless a
test needs a fixed one, and talks to processes by pid.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

import pytest
import trustme

from distable import (
    Crash,
    Down,
    MessageTooLarge,
    Node,
    NodeDown,
    NodeUp,
    Pid,
    Process,
    ProcessExited,
    TransportConfig,
    UnencodableValue,
)
from distable.testing import close_listener, crash, eventually
from distable.transport import _transport
from distable.wire._messages import Tick

from ._support import (
    COOKIE,
    Sender,
    Sequence,
    Watcher,
    assert_still_serves,
    describe_log,
    echo_process,
    free_port,
    log_lines,
    next_down,
    raw_peer,
    refused_port,
    spawn_echo,
)


def peer_connects(node: Node, other: str) -> int:
    """How many times ``node``'s link to ``other`` came up (its transport statistics)."""
    for peer in node.statistics().transport.peers:
        if peer.name == other:
            return peer.connects
    return 0


# --- messages and calls ---------------------------------------------------------------


async def test_call_cast_and_send_work_both_ways_by_pid() -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        log_a: list[Any] = []
        log_b: list[Any] = []
        on_a = await spawn_echo(a, log_a)
        on_b = await spawn_echo(b, log_b)
        await a.connect(b.name)

        assert await a.call(on_b, ("echo", ("from", "a", 1))) == ("from", "a", 1)
        assert await b.call(on_a, ("echo", {"from": "b", "pid": on_b})) == {"from": "b", "pid": on_b}
        a.cast(on_b, "cast a->b")
        a.send(on_b, "send a->b")
        b.cast(on_a, "cast b->a")
        b.send(on_a, "send b->a")

        await eventually(lambda: len(log_a) == 2 and len(log_b) == 2, message=lambda: f"{log_a} {log_b}")
        assert log_b == [("cast", "cast a->b"), ("info", "send a->b")]
        assert log_a == [("cast", "cast b->a"), ("info", "send b->a")]


async def test_ten_thousand_cross_node_messages_arrive_in_order() -> None:
    count = 10_000
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        seen: list[int] = []
        receiver = await b.spawn(Sequence, seen)
        sender = await a.spawn(Sender)
        await a.connect(b.name)

        assert await a.call(sender, ("run", receiver, count), timeout=60.0) == count

        await eventually(lambda: len(seen) >= count, timeout=30.0, message=lambda: f"{len(seen)} of {count} arrived")
        assert len(seen) == count
        first_wrong = next((i for i, n in enumerate(seen) if n != i), None)
        assert first_wrong is None, f"out of order from position {first_wrong}: {seen[first_wrong : first_wrong + 5]}"


async def test_remote_call_to_a_process_that_exits_mid_call_raises_process_exited_with_its_reason() -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        callee = await spawn_echo(b)
        await a.connect(b.name)
        pending = asyncio.create_task(a.call(callee, ("hang",), timeout=30.0))
        try:
            await eventually(lambda: len(echo_process(b, callee).hanging) == 1)
            assert await b.stop_process(callee, "gave up") == "gave up"
            with pytest.raises(ProcessExited) as exited:
                await asyncio.wait_for(pending, 10.0)
            assert exited.value.reason == "gave up"
        finally:
            pending.cancel()


async def test_remote_call_to_a_process_that_crashes_mid_call_raises_process_exited_with_the_crash() -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        callee = await spawn_echo(b)
        await a.connect(b.name)
        with pytest.raises(ProcessExited) as exited:
            await a.call(callee, ("crash", "boom"))
        # The crash crosses the wire as type, message and traceback, not as an exception object.
        assert exited.value.reason == Crash("ValueError", "boom")
        assert "ValueError: boom" in exited.value.reason.traceback


async def test_calling_a_pid_that_never_existed_on_the_remote_node_raises_noproc() -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        await a.connect(b.name)
        never = Pid(b.name, b.incarnation, 10_000)
        with pytest.raises(ProcessExited) as exited:
            await a.call(never, ("echo", 1))
        assert exited.value.reason == "noproc"


# --- monitors ---------------------------------------------------------------------------


async def test_monitor_of_a_remote_pid_fires_down_with_the_real_reason() -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        downs: asyncio.Queue[Down] = asyncio.Queue()
        watcher = await a.spawn(Watcher, downs)
        target = await spawn_echo(b)
        await a.connect(b.name)
        ref = await a.call(watcher, ("monitor", target))
        # The call below travels on the same ordered link as the MonitorRequest and is
        # handled after it, so once it returns, b has registered the monitor.
        assert await a.call(target, ("echo", "sync")) == "sync"

        await b.stop_process(target, "finished")

        down = await next_down(downs)
        assert down == Down(ref, target, "finished")
        assert downs.empty()


async def test_monitor_of_a_nonexistent_remote_pid_fires_down_noproc() -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        downs: asyncio.Queue[Down] = asyncio.Queue()
        watcher = await a.spawn(Watcher, downs)
        await a.connect(b.name)
        never = Pid(b.name, b.incarnation, 10_000)
        ref = await a.call(watcher, ("monitor", never))
        assert await next_down(downs) == Down(ref, never, "noproc")


async def test_stopping_a_remote_node_fires_monitors_and_fails_in_flight_calls() -> None:
    async with Node("a", cookie=COOKIE) as a:
        downs: asyncio.Queue[Down] = asyncio.Queue()
        watcher = await a.spawn(Watcher, downs)
        async with Node("b", cookie=COOKIE) as b:
            watched = await spawn_echo(b)
            held = await spawn_echo(b)
            await a.connect(b.name)
            ref = await a.call(watcher, ("monitor", watched))
            in_flight = asyncio.create_task(a.call(held, ("hang",), timeout=30.0))
            await eventually(lambda: len(echo_process(b, held).hanging) == 1)  # b holds the call, unanswered
        # Leaving b's block (Node.stop) stops every process on b with reason "shutdown"
        # *before* its links close: each exit queues its DownNotice / CallReply(exit) on
        # the link, then b queues its leave announcement, and Transport.close() flushes
        # that batch and closes (not aborts) the socket. TCP keeps order, so all of it
        # reaches a ahead of the end of the stream: a sees the real reason, "shutdown",
        # not "noconnection" (what a node lost without a word gives: tests/cluster).
        try:
            down = await next_down(downs)
            assert down == Down(ref, watched, "shutdown")
            with pytest.raises(ProcessExited) as exited:
                await asyncio.wait_for(in_flight, 10.0)
            assert exited.value.reason == "shutdown"
        finally:
            in_flight.cancel()

        # A call made once b is gone fails with "noconnection" (its redial is refused),
        # long before its timeout.
        with pytest.raises(ProcessExited) as gone:
            await a.call(held, ("echo", 1), timeout=20.0)
        assert gone.value.reason == "noconnection"
        assert downs.empty()  # the link loss fired no second Down for the same monitor


async def test_restarted_node_is_a_new_incarnation_and_old_pids_get_noproc() -> None:
    async with Node("a", cookie=COOKIE) as a:
        async with Node("b", cookie=COOKIE) as old_b:
            port, old_incarnation = old_b.port, old_b.incarnation
            old_pid = await spawn_echo(old_b)
            await a.connect(old_b.name)
            assert await a.call(old_pid, ("echo", 1)) == 1
        await eventually(lambda: old_pid.node not in a.nodes())

        log: list[Any] = []
        async with Node("b", cookie=COOKIE, port=port) as new_b:
            new_pid = await spawn_echo(new_b, log)
            assert new_b.name == old_pid.node
            assert new_b.incarnation != old_incarnation
            assert new_pid.id == old_pid.id  # same name, port and local id: only the incarnation differs
            await a.connect(new_b.name, timeout=20.0)

            dropped_before = new_b.statistics().runtime.dropped_messages
            with pytest.raises(ProcessExited) as exited:
                await a.call(old_pid, ("echo", 2))
            assert exited.value.reason == "noproc"
            a.send(old_pid, "for the old process")
            a.cast(old_pid, "for the old process")
            await eventually(lambda: new_b.statistics().runtime.dropped_messages == dropped_before + 2)
            assert log == []  # nothing meant for the old incarnation reached the new process
            assert await a.call(new_pid, ("echo", 3)) == 3
            assert [p.incarnation for p in a.statistics().transport.peers if p.name == new_b.name] == [
                new_b.incarnation
            ]


# --- links ------------------------------------------------------------------------------


async def test_simultaneous_dial_ends_with_exactly_one_link_each_side() -> None:
    def settled(node: Node, other: str) -> bool:
        # No dial of either side is still in flight or scheduled (it could replace the link).
        peer = node.transport.peers.get(other)
        return peer is not None and peer.conn is not None and peer.dialing is None and peer.dial_handle is None

    for attempt in range(20):
        async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
            await asyncio.gather(a.connect(b.name), b.connect(a.name))
            await eventually(lambda: settled(a, b.name) and settled(b, a.name), message=f"attempt {attempt}")

            assert a.nodes() == [b.name], f"attempt {attempt}"
            assert b.nodes() == [a.name], f"attempt {attempt}"
            assert (peer_connects(a, b.name), peer_connects(b, a.name)) == (1, 1), f"attempt {attempt}"
            # Both kept the link dialed by the node with the smaller name.
            small, large = sorted((a, b), key=lambda n: n.name)
            small_conn = small.transport.peers[large.name].conn
            large_conn = large.transport.peers[small.name].conn
            assert small_conn is not None
            assert large_conn is not None
            assert (small_conn.dialer, large_conn.dialer) == (True, False), f"attempt {attempt}"

            on_a, on_b = await spawn_echo(a), await spawn_echo(b)
            assert await a.call(on_b, ("echo", attempt)) == attempt
            assert await b.call(on_a, ("echo", attempt)) == attempt
            assert (peer_connects(a, b.name), peer_connects(b, a.name)) == (1, 1), f"attempt {attempt}"


async def test_a_denied_node_is_refused_in_the_handshake_backs_off_and_both_sides_say_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``a`` denies ``b`` (``deny=``), ``b`` does not deny ``a``. ``a`` refuses ``b``'s
    links in the handshake, and both say why, with the other's name; ``b`` backs off. Until
    2026-12-07 ``a`` accepted each link and dropped it at once: ``b`` saw ``a`` up and down
    and redialed it at once (a completed handshake reset its backoff), thousands of times
    a second, and only ``a`` said why ("disconnect requested")."""
    caplog.set_level(logging.WARNING, logger="distable")
    async with Node("a", cookie=COOKIE, deny=["b@*"]) as a, Node("b", cookie=COOKIE) as b:
        b.transport.connect(a.name)
        peer = b.transport.peers[a.name]
        await eventually(
            lambda: peer.backoff.delay >= 0.4,
            timeout=15,
            message=lambda: f"backoff {peer.backoff.delay}, {peer_connects(b, a.name)} links",
        )
        assert peer_connects(b, a.name) == 0  # never linked
        refused = log_lines(caplog, logging.WARNING, "refused the link from", b.name, "do not admit it")
        assert refused, describe_log(caplog)
        said = log_lines(caplog, logging.WARNING, "cannot link with", a.name, "not admitted by its")
        assert said, describe_log(caplog)
        assert a.nodes() == []
        assert b.nodes() == []  # never up there either


def settled(node: Node, other: str) -> bool:
    """Linked to ``other``, and no dial to it under way or scheduled (it could replace the link)."""
    peer = node.transport.peers.get(other)
    return peer is not None and peer.conn is not None and peer.dialing is None and peer.dial_handle is None


async def test_a_node_restarted_on_its_port_that_dials_first_keeps_its_one_link_and_loses_nothing() -> None:
    """b is killed and restarted under its name and port, and the new b dials a while a
    still holds the dead b's link. a takes the new link in place of the stale one; the
    stale one's drop must not make a dial b as well: b would accept that second link in
    place of its own (b's name is the larger) and close the first with what a sent on it
    unread, while both nodes stay up (seed 907 of the registry simulator lost a
    HandoffCommit so)."""
    count = 500
    async with Node("a", cookie=COOKIE) as a:
        old_b = Node("b", cookie=COOKIE)
        await old_b.start()
        await a.connect(old_b.name)
        await close_listener(old_b)  # free the port for the new b; the old links stay up for now
        async with Node("b", cookie=COOKIE, port=old_b.port, connect=[a.name]) as b:
            assert (b.name, b.incarnation != old_b.incarnation) == (old_b.name, True)
            await eventually(
                lambda: a.transport.peers[b.name].incarnation == b.incarnation and a.transport.is_connected(b.name),
                message="a took the new b's link",
            )
            await crash(old_b)
            seen: list[int] = []
            on_b, send_a = await b.spawn(Sequence, seen), await a.spawn(Sender)
            # A stream across the link while any second dial of a's would land.
            assert await a.call(send_a, ("run", on_b, count), timeout=60.0) == count
            await eventually(lambda: len(seen) >= count, message=lambda: f"{len(seen)} of {count} arrived")
            assert seen == list(range(count))
            await eventually(lambda: settled(a, b.name) and settled(b, a.name), message="no dial left on either side")
            # a linked with the old b once and the new b once; the new b with a once: none replaced.
            assert (peer_connects(a, b.name), peer_connects(b, a.name)) == (2, 1)
            assert await a.call(on_b, ("seq", count)) == count
            assert (peer_connects(a, b.name), peer_connects(b, a.name)) == (2, 1)


async def test_events_yield_node_up_and_node_down() -> None:
    async with Node("a", cookie=COOKIE) as a, a.events() as events:
        async with Node("b", cookie=COOKIE) as b:
            await a.connect(b.name)
            up = await asyncio.wait_for(anext(events), 10.0)
            assert up == NodeUp(b.name, b.incarnation)
            b_name = b.name
        # b left gracefully: it announced its leave on the link before closing it.
        assert await asyncio.wait_for(anext(events), 10.0) == NodeDown(b_name, "left")


async def test_connect_to_a_node_not_up_yet_links_by_itself_once_it_starts(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within ``STARTUP_GRACE`` of its first dial, a peer that refuses is said at INFO (the
    nodes of a cluster start together); then at WARNING (a wrong address, a node that
    never started); either way the link comes up by itself once the peer starts."""
    monkeypatch.setattr(_transport, "STARTUP_GRACE", 0.5)
    caplog.set_level(logging.INFO, logger="distable.transport")
    port = free_port()
    name = f"b@127.0.0.1:{port}"
    async with Node("a", cookie=COOKIE, transport=TransportConfig(backoff_max=0.2)) as a:
        connecting = asyncio.create_task(a.connect(name, timeout=30.0))
        try:
            # a has tried and failed at least once, and backs off before the next dial.
            await eventually(lambda: log_lines(caplog, logging.INFO, "cannot reach", name, "it may not be started yet"))
            assert not log_lines(caplog, logging.WARNING, "cannot reach", name)  # not while it may be starting
            await eventually(lambda: log_lines(caplog, logging.WARNING, "cannot reach", name, "retrying in"))
            assert not connecting.done()
            async with Node("b", cookie=COOKIE, port=port) as b:
                assert b.name == name
                await asyncio.wait_for(connecting, 20.0)  # nobody dialed again by hand
                assert a.nodes() == [name]
                echo = await spawn_echo(b)
                assert await a.call(echo, ("echo", "up")) == "up"
        finally:
            connecting.cancel()


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts: a throwaway CA, and a certificate for 127.0.0.1 signed by it."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    return server, client


async def test_tls_links_carry_calls_both_ways(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    async with Node("a", cookie=COOKIE, tls=tls_pair) as a, Node("b", cookie=COOKIE, tls=tls_pair) as b:
        on_a, on_b = await spawn_echo(a), await spawn_echo(b)
        await a.connect(b.name)
        link = a.transport.peers[b.name].conn
        assert link is not None
        assert link.transport is not None
        assert link.transport.get_extra_info("ssl_object") is not None  # really encrypted
        assert await a.call(on_b, ("echo", "over tls")) == "over tls"
        assert await b.call(on_a, ("echo", "back")) == "back"


async def test_tls_node_and_plain_node_cannot_link_and_both_keep_running(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="distable.transport")
    async with Node("tls", cookie=COOKIE, tls=tls_pair) as secure, Node("plain", cookie=COOKIE) as plain:
        results = await asyncio.gather(
            secure.connect(plain.name, timeout=1.0), plain.connect(secure.name, timeout=1.0), return_exceptions=True
        )
        assert [type(r) for r in results] == [TimeoutError, TimeoutError]
        secure.disconnect(plain.name)
        plain.disconnect(secure.name)
        assert secure.nodes() == []
        assert plain.nodes() == []
        # The plain node read a TLS ClientHello where a frame header belongs: a protocol error.
        assert log_lines(caplog, logging.WARNING, "closing link to unauthenticated peer", "handshake frame of"), (
            describe_log(caplog)
        )

        # Both still serve peers of their own kind.
        await assert_still_serves(plain, await spawn_echo(plain))
        echo = await spawn_echo(secure)
        async with Node("tls2", cookie=COOKIE, tls=tls_pair) as other:
            await other.connect(secure.name)
            assert await other.call(echo, ("echo", "fine")) == "fine"


# --- backpressure ---------------------------------------------------------------------------


class Blaster(Process):
    """Sends one chunk to ``dest`` per "more" info, then asks itself for "more" (bounded by ``limit``)."""

    async def init(self, dest: Pid, chunk: bytes, limit: int) -> None:
        self.dest = dest
        self.chunk = chunk
        self.limit = limit
        self.sent = 0
        self.last_send_congested = False
        self.stopped = False
        self.woke_after_stop = False

    async def handle_info(self, message: Any) -> None:
        if self.stopped:
            self.woke_after_stop = True
            return
        if self.sent >= self.limit:
            return
        self.node.send(self.dest, self.chunk)
        self.sent += 1
        # The runtime parks a congestion future here; the drain waits on it before our next message.
        self.last_send_congested = self._blocked is not None
        self.node.send(self.pid, "more")


async def test_stalled_peer_suspends_senders_then_is_disconnected_past_the_hard_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="distable.transport")
    hard_limit = 1024 * 1024
    config = TransportConfig(soft_limit=256 * 1024, hard_limit=hard_limit, tick_timeout=120.0)
    chunk = b"x" * (32 * 1024)
    with refused_port() as raw_port:
        raw_name = f"raw@127.0.0.1:{raw_port}"
        raw_pid = Pid(raw_name, 1, 1)
        async with Node("a", cookie=COOKIE, transport=config) as a, raw_peer(a.port, rcvbuf=4096) as raw:
            # A peer that authenticates and then never reads another byte.
            await raw.handshake(name=raw_name, expected=a.name)
            await eventually(lambda: a.transport.is_connected(raw_name))
            peer = a.transport.peers[raw_name]
            assert peer.conn is not None
            assert peer.conn.transport is not None
            # Shrink a's socket buffer too, so that the stall shows after kilobytes, not megabytes.
            peer.conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)

            blaster_pid = await a.spawn(Blaster, raw_pid, chunk, 2000)
            blaster = a.runtime.local(blaster_pid)
            assert isinstance(blaster, Blaster)
            a.send(blaster_pid, "more")

            # The socket fills up, the transport pauses writing, and the sending process is
            # parked on the congestion future with its next "more" still in its mailbox.
            await eventually(lambda: peer.paused and blaster.last_send_congested, message=lambda: f"{blaster.sent}")
            parked_at = blaster.sent
            assert parked_at < 2000
            for _ in range(200):  # plenty of loop turns: the stall is permanent, so it stays parked
                await asyncio.sleep(0)
            assert blaster.sent == parked_at
            congestion = a.transport.post(raw_name, Tick())
            assert isinstance(congestion, asyncio.Future)
            assert not congestion.done()
            assert a.transport.is_connected(raw_name)

            # Plain code (not a process) is never parked, so its backlog grows to the hard limit.
            blaster.stopped = True
            for _ in range(hard_limit // len(chunk) + 8):
                if not a.transport.is_connected(raw_name):
                    break
                a.send(raw_pid, chunk)
            assert not a.transport.is_connected(raw_name)
            assert log_lines(caplog, logging.WARNING, raw_name, "exceed the hard limit"), describe_log(caplog)
            assert congestion.done()  # the backlog was dropped: waiting senders are released
            await eventually(lambda: blaster.woke_after_stop)  # the parked process ran its next message
            assert blaster.sent == parked_at
            assert await raw.closed_by_peer()

            await assert_still_serves(a, await spawn_echo(a))


# --- what cannot be sent -----------------------------------------------------------------------


class NotRegistered:
    """A class nobody registered with ``distable.register_type``."""


async def test_unencodable_payload_raises_unencodable_value_on_the_sender() -> None:
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        echo = await spawn_echo(b, log)
        await a.connect(b.name)
        with pytest.raises(UnencodableValue):
            a.send(echo, NotRegistered())
        with pytest.raises(UnencodableValue):
            a.cast(echo, ["fine", {"nested": NotRegistered()}])
        with pytest.raises(UnencodableValue):
            await a.call(echo, ("echo", NotRegistered()))
        # Nothing half-encoded went out: the link carries the next message as usual.
        a.send(echo, "after")
        assert await a.call(echo, ("echo", "ok")) == "ok"
        assert log == [("info", "after")]


async def test_message_larger_than_max_frame_size_raises_message_too_large_on_the_sender() -> None:
    config = TransportConfig(max_frame_size=64 * 1024)
    async with Node("a", cookie=COOKIE, transport=config) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        echo = await spawn_echo(b, log)
        await a.connect(b.name)
        with pytest.raises(MessageTooLarge):
            a.send(echo, b"x" * 100_000)
        with pytest.raises(MessageTooLarge):
            await a.call(echo, ("echo", b"x" * 100_000))
        a.send(echo, b"small")
        assert await a.call(echo, ("echo", "ok")) == "ok"
        assert log == [("info", b"small")]
        assert a.nodes() == [b.name]


async def test_messages_that_fit_a_frame_alone_but_not_together_are_all_delivered() -> None:
    config = TransportConfig(max_frame_size=64 * 1024)
    async with Node("a", cookie=COOKIE, transport=config) as a, Node("b", cookie=COOKIE) as b:
        log: list[Any] = []
        echo = await spawn_echo(b, log)
        await a.connect(b.name)
        payloads = [bytes([i]) * 40_000 for i in range(5)]
        for payload in payloads:  # one loop turn: they would share one batch
            a.send(echo, payload)
        await eventually(lambda: len(log) == len(payloads), message=lambda: f"{len(log)} arrived")
        assert log == [("info", p) for p in payloads]


async def test_tls_node_closes_a_peer_that_never_starts_the_tls_handshake(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    config = TransportConfig(handshake_timeout=0.3)
    async with Node("tls", cookie=COOKIE, tls=tls_pair, transport=config) as secure:
        async with raw_peer(secure.port) as silent:  # plain TCP, and not a byte sent
            assert await silent.closed_by_peer(timeout=10.0), "a silent peer held a TLS node's socket"
        await assert_tls_node_serves(secure, tls_pair)


async def assert_tls_node_serves(node: Node, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    echo = await spawn_echo(node)
    async with Node("tls-good", cookie=COOKIE, tls=tls) as good:
        await good.connect(node.name)
        assert await good.call(echo, ("echo", "fine")) == "fine"
