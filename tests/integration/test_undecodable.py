"""Messages a node cannot decode (a user type registered on one node only) reach the
caller as errors, between two real nodes on loopback.

Both nodes live in this OS process, which has one table of registered types; a test
makes the receiving side not know a type by removing it from the decoding half of that
table only (``unknown_on_receipt``): encoding still works, as on a node that registered
it, and decoding fails with "unregistered user type", as on a node that did not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Callable
from logging import WARNING
from typing import Any

import pytest

from distable import (
    NOREPLY,
    Caller,
    Down,
    HandoffAborted,
    Node,
    Process,
    ProcessExited,
    Resume,
    UndecodableMessage,
    call,
    multi_call,
    register_type,
)
from distable.testing import eventually, watchers
from distable.wire import _codec

from ._support import COOKIE, Echo, Watcher, describe_log, echo_process, log_lines, next_down

CALL_TIMEOUT = 20.0  # far longer than an answer takes: a CallTimeout means the error was lost


@dataclasses.dataclass(frozen=True)
class Room:
    """A user type; ``unknown_on_receipt`` makes it unknown to every receiving node."""

    name: str


register_type(Room)
WIRE_NAME = f"{Room.__module__}.{Room.__qualname__}"


@pytest.fixture
def unknown_on_receipt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(_codec._user_by_name, WIRE_NAME)


@pytest.fixture
async def pair(caplog: pytest.LogCaptureFixture) -> AsyncIterator[tuple[Node, Node]]:
    """Node a (the sender) linked with node b (the receiver)."""
    caplog.set_level(logging.INFO)
    async with Node("a", cookie=COOKIE) as a, Node("b", cookie=COOKIE) as b:
        await a.connect(b.name, timeout=10.0)
        yield a, b


class Answerer(Process):
    """Answers ("room", name) with a ``Room``; ("hang",) is held unanswered until ("release", x)."""

    async def init(self) -> None:
        self.held: list[Caller] = []

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("room", str(name)):
                return Room(name)
            case ("hang",):
                self.held.append(caller)
                return NOREPLY
            case ("release", value):
                for held in self.held:
                    held.reply(value)
                self.held.clear()
                return "released"
        raise ValueError(message)


def _holding(answerer: Answerer) -> Callable[[], bool]:
    return lambda: bool(answerer.held)


class Holder(Process):
    """A registered process whose handoff state is a ``Room``."""

    async def init(self, name: str) -> None:
        self.name = name

    async def begin_handoff(self) -> Resume:
        return Resume(Room(self.name))

    async def end_handoff(self, state: Any) -> None:
        self.name = state.name


class Exiter(Process):
    """Stops itself with a ``Room`` as its exit reason on the info "exit"."""

    async def handle_info(self, message: Any) -> None:
        self.stop(Room("gone"))


@pytest.mark.usefixtures("unknown_on_receipt")
async def test_a_call_whose_message_the_callee_node_cannot_decode_fails_at_once_with_a_typed_error(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    echo = await b.spawn(Echo, [])
    with pytest.raises(UndecodableMessage) as caught:
        await a.call(echo, ("echo", Room("lobby")), timeout=CALL_TIMEOUT)
    error = caught.value
    assert (error.node, error.type_name, error.part) == (b.name, WIRE_NAME, "message")
    for part in (WIRE_NAME, b.name, "register_type"):
        assert part in str(error)
    # The receiver says so too, naming the sender and the type; the link stays and serves.
    assert log_lines(caplog, WARNING, "could not decode a CallRequest from", a.name, WIRE_NAME), describe_log(caplog)
    assert b.statistics().runtime.undecodable_received == 1
    assert a.statistics().runtime.undecodable_sent == 1
    assert await a.call(echo, ("echo", "fine"), timeout=CALL_TIMEOUT) == "fine"


@pytest.mark.usefixtures("unknown_on_receipt")
async def test_a_call_whose_reply_the_caller_node_cannot_decode_fails_at_once_with_a_typed_error(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    answerer = await b.spawn(Answerer)
    with pytest.raises(UndecodableMessage) as caught:
        await a.call(answerer, ("room", "lobby"), timeout=CALL_TIMEOUT)
    error = caught.value
    assert (error.node, error.type_name, error.part) == (a.name, WIRE_NAME, "reply")
    assert log_lines(caplog, WARNING, "could not decode a CallReply from", b.name, WIRE_NAME), describe_log(caplog)
    assert a.statistics().runtime.undecodable_received == 1


@pytest.mark.usefixtures("unknown_on_receipt")
async def test_a_cast_the_receiver_cannot_decode_is_counted_and_logged_on_both_sides(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    log: list[Any] = []
    echo = await b.spawn(Echo, log)
    a.cast(echo, ("join", Room("lobby")))
    a.send(echo, ("join", Room("hall")))
    a.cast(echo, "after")  # the same batch: delivered, in order
    await eventually(lambda: log == [("cast", "after")], message=lambda: f"{log}")
    assert b.statistics().runtime.undecodable_received == 2
    await eventually(lambda: a.statistics().runtime.undecodable_sent == 2, message=lambda: describe_log(caplog))
    assert log_lines(caplog, WARNING, "could not decode a Cast from", a.name, repr(echo), WIRE_NAME)
    assert log_lines(caplog, WARNING, b.name, "could not decode a cast this node sent", repr(echo), WIRE_NAME)
    # Rate-limited: the second drop of the same type from the same peer is not a second line.
    assert len(log_lines(caplog, WARNING, f"from {a.name}")) == 1, describe_log(caplog)
    assert len(log_lines(caplog, WARNING, "this node sent")) == 1, describe_log(caplog)
    assert b.transport.is_connected(a.name)
    assert echo_process(b, echo).log == [("cast", "after")]


@pytest.mark.usefixtures("unknown_on_receipt")
async def test_a_monitor_fires_when_the_exit_reason_cannot_be_decoded(pair: tuple[Node, Node]) -> None:
    a, b = pair
    downs: asyncio.Queue[Down] = asyncio.Queue()
    watcher = await a.spawn(Watcher, downs)
    target = await b.spawn(Exiter)
    ref = await a.call(watcher, ("monitor", target))
    exiter = b.runtime.local(target)
    assert exiter is not None
    await eventually(lambda: watchers(exiter))  # b has the monitor: the exit is not "noproc"
    b.send(target, "exit")
    down = await next_down(downs)
    assert (down.ref, down.pid) == (ref, target)
    assert isinstance(down.reason, str)
    assert WIRE_NAME in down.reason


@pytest.mark.usefixtures("unknown_on_receipt")
async def test_a_version_1_peer_gets_an_exit_reason_and_no_drop_notice(
    pair: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    monkeypatch.setattr(b.transport, "peer_version", lambda node: 1)
    echo = await b.spawn(Echo, [])
    with pytest.raises(ProcessExited) as caught:
        await a.call(echo, ("echo", Room("lobby")), timeout=CALL_TIMEOUT)
    assert WIRE_NAME in str(caught.value.reason)
    a.cast(echo, Room("lobby"))
    # A call after the cast returns after anything b sent back about the cast.
    assert await a.call(echo, ("echo", 1), timeout=CALL_TIMEOUT) == 1
    assert a.statistics().runtime.undecodable_sent == 0


async def test_call_without_timeout_waits_for_the_reply(pair: tuple[Node, Node]) -> None:
    a, b = pair
    answerer = await b.spawn(Answerer)
    local = await a.spawn(Answerer)
    for node, dest in ((b, answerer), (a, local)):
        waiting = asyncio.ensure_future(a.call(dest, ("hang",), timeout=None))
        holder = node.runtime.local(dest)
        assert isinstance(holder, Answerer)
        await eventually(_holding(holder))
        assert not waiting.done()
        assert await a.call(dest, ("release", "late"), timeout=CALL_TIMEOUT) == "released"
        assert await waiting == "late"
    assert await call(answerer, ("release", None), timeout=None) == "released"  # the module-level call (on b)


@pytest.mark.parametrize("timeout", [-1.0, -0.001, math.nan])
async def test_a_negative_or_nan_timeout_is_refused_before_anything_is_sent(
    pair: tuple[Node, Node], timeout: float
) -> None:
    a, b = pair
    log: list[Any] = []
    remote = await b.spawn(Echo, log)
    local = await a.spawn(Echo, log)
    for dest in (remote, local):
        with pytest.raises(ValueError, match="timeout"):
            await a.call(dest, ("echo", 1), timeout=timeout)
        with pytest.raises(ValueError, match="timeout"):
            await call(dest, ("echo", 1), timeout=timeout)
        with pytest.raises(ValueError, match="timeout"):
            await a.runtime.call(dest, ("echo", 1), timeout=timeout)
    for caller in (a.multi_call, multi_call):
        with pytest.raises(ValueError, match="timeout"):
            await caller("an empty group", ("echo", 1), timeout)
    await a.join("echoes", local)
    with pytest.raises(ValueError, match="timeout"):
        await a.multi_call("echoes", ("echo", 1), timeout)
    # Nothing reached a callee; a good call still works.
    assert await a.call(remote, ("echo", 2), timeout=CALL_TIMEOUT) == 2
    assert log == []


@pytest.mark.usefixtures("unknown_on_receipt")
async def test_a_registration_whose_arguments_the_owner_cannot_decode_fails_at_once_with_a_typed_error(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    await eventually(lambda: b.name in a.placement().nodes)  # a fresh Placement at each change
    placement = a.placement()
    name = next(f"room-{i}" for i in range(1000) if placement.owner(f"room-{i}") == b.name)
    with pytest.raises(UndecodableMessage) as caught:
        await a.register(name, Holder, Room("lobby"), timeout=CALL_TIMEOUT)
    assert (caught.value.node, caught.value.type_name) == (b.name, WIRE_NAME)
    assert log_lines(caplog, WARNING, "could not decode a RegisterRequest from", a.name, WIRE_NAME), describe_log(
        caplog
    )
    assert a.whereis(name) is None
    assert (await a.register(name, Echo, timeout=CALL_TIMEOUT)).node == b.name  # the link still serves


@pytest.mark.usefixtures("unknown_on_receipt")
async def test_a_handoff_whose_state_the_new_owner_cannot_decode_is_refused_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    names = [f"room-{i}" for i in range(8)]
    async with Node("a", cookie=COOKIE) as a:
        for name in names:
            await a.register(name, Holder, name, handoff_timeout=60.0)
        aborted: list[HandoffAborted] = []
        events = a.events()

        async def collect() -> None:
            async for event in events:
                if isinstance(event, HandoffAborted):
                    aborted.append(event)

        collector = asyncio.create_task(collect())
        try:
            async with Node("b", cookie=COOKIE) as b:
                await b.connect(a.name, timeout=10.0)
                # Far sooner than the handoff timeout: the refusal names the node and the type.
                await eventually(lambda: aborted, timeout=20.0, message=lambda: describe_log(caplog))
                assert b.name in aborted[0].reason
                assert WIRE_NAME in aborted[0].reason
                assert log_lines(caplog, WARNING, "could not decode a HandoffRequest from", a.name, WIRE_NAME)
        finally:
            collector.cancel()
            events.close()
