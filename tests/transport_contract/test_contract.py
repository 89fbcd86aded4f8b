"""One contract, three kinds of link: the real ``Transport`` over TCP and over Unix domain
sockets, and the in-memory ``MemoryTransport``.

Every test here runs three times with the same assertions: ``tcp`` (two real nodes on
127.0.0.1 with ``unix_sockets=False``, asyncio's own loop, real time), ``unix`` (the
same nodes with the default ``unix_sockets=True``: they link over their sockets) and
``memory`` (two real nodes on a seeded ``MemoryNetwork`` with a little latency, on
``VirtualTimeLoop``). Each real run checks that every link it made was of its kind. The
simulator (tests/sim/test_registry_sim.py) relies on the memory one behaving as the real
one does in exactly these respects.

A "cut" breaks the link between two nodes at once (both sides see it go) and refuses
redials until healed. On real sockets it closes the connection and makes each node refuse
the other's handshake; on the memory network it is ``partition(..., reset=True)``.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from distable import NOREPLY, Caller, Down, Node, Pid, Process, ProcessExited, TransportConfig
from distable.testing import MemoryNetwork, MemoryTransport, VirtualTimeLoop
from distable.transport import Transport
from distable.transport._transport import PeerConnection
from tests.integration._support import Sender, Sequence

COOKIE = "contract-cookie"
#: Redial quickly after a heal; everything else is the default.
CONFIG = TransportConfig(backoff_max=0.5)


class Net(abc.ABC):
    """Makes nodes on one kind of network and cuts and heals the link between two of them."""

    kind: str

    @abc.abstractmethod
    def node(self, name: str) -> Node: ...

    @abc.abstractmethod
    def cut(self, a: Node, b: Node) -> None: ...

    @abc.abstractmethod
    def heal(self, a: Node, b: Node) -> None: ...

    @abc.abstractmethod
    def loop_factory(self) -> asyncio.AbstractEventLoop: ...

    def run(self, main: Callable[[Net], Awaitable[None]]) -> None:
        async def wrapper() -> None:
            await main(self)

        with asyncio.Runner(loop_factory=self.loop_factory) as runner:
            runner.run(wrapper())


class _CuttableTransport(Transport):
    """The real transport, refusing the handshake of a peer whose route the test cut, and
    noting what each link it brings up runs over (in ``links``: "unix" or "tcp")."""

    def __init__(self, *, blocked: set[frozenset[str]], links: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._blocked = blocked
        self._links = links

    def _activate(self, conn: PeerConnection) -> None:
        self._links.append("unix" if conn.unix else "tcp")
        super()._activate(conn)

    def _decide(self, conn: PeerConnection) -> str | None:
        peer = conn.core.peer_name
        if peer is not None and frozenset((self.name, peer)) in self._blocked:
            return "route cut by the test"
        return super()._decide(conn)


class SocketNet(Net):
    """Real nodes on 127.0.0.1, linked over TCP (``kind`` "tcp") or Unix domain sockets ("unix")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.blocked: set[frozenset[str]] = set()
        self.links: list[str] = []
        self.config = dataclasses.replace(CONFIG, unix_sockets=kind == "unix")

    def _factory(self, **kwargs: Any) -> Transport:
        return _CuttableTransport(blocked=self.blocked, links=self.links, **kwargs)

    def node(self, name: str) -> Node:
        return Node(name, cookie=COOKIE, transport=self.config, transport_factory=self._factory)

    def run(self, main: Callable[[Net], Awaitable[None]]) -> None:
        super().run(main)
        assert self.links, "no link came up"
        assert set(self.links) == {self.kind}, f"links made: {self.links}"

    def cut(self, a: Node, b: Node) -> None:
        self.blocked.add(frozenset((a.name, b.name)))
        for x, y in ((a, b), (b, a)):
            peer = x.transport.peers.get(y.name)
            if peer is not None:
                for conn in (peer.conn, peer.dialing):
                    if conn is not None:
                        conn.close("route cut by the test")

    def heal(self, a: Node, b: Node) -> None:
        self.blocked.discard(frozenset((a.name, b.name)))

    def loop_factory(self) -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()


class MemoryNet(Net):
    kind = "memory"

    def __init__(self, seed: int = 7) -> None:
        self.network = MemoryNetwork(seed, latency=(0.0002, 0.002))

    def node(self, name: str) -> Node:
        return Node(name, cookie=COOKIE, transport=CONFIG, transport_factory=self.network.transport_factory)

    def cut(self, a: Node, b: Node) -> None:
        self.network.partition([a.name], [b.name], reset=True)

    def heal(self, a: Node, b: Node) -> None:
        self.network.heal([a.name], [b.name])

    def loop_factory(self) -> asyncio.AbstractEventLoop:
        return VirtualTimeLoop()


@pytest.fixture(params=["tcp", "unix", "memory"])
def net(request: pytest.FixtureRequest) -> Net:
    return MemoryNet() if request.param == "memory" else SocketNet(request.param)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` on the loop's own clock (real or virtual) until true, or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


def linked(a: Node, b: Node) -> bool:
    return a.transport.is_connected(b.name) and b.transport.is_connected(a.name)


# --- processes ------------------------------------------------------------------------------


class Echo(Process):
    """("echo", x) -> x; ("hang",) is never answered."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("echo", value):
                return value
            case ("hang",):
                self.hanging = True
                return NOREPLY
        raise ValueError(f"unexpected call {message!r}")


class Watcher(Process):
    """Monitors a pid on call ("monitor", pid) -> ref; every ``Down`` goes to ``downs``."""

    async def init(self, downs: list[Down]) -> None:
        self.downs = downs

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("monitor", Pid() as pid):
                return self.node.monitor(pid)
        raise ValueError(f"unexpected call {message!r}")

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, Down):
            self.downs.append(message)


# --- the contract -----------------------------------------------------------------------------


def test_a_thousand_messages_each_way_arrive_in_the_order_sent(net: Net) -> None:
    count = 1_000

    async def main(net: Net) -> None:
        async with net.node("a") as a, net.node("b") as b:
            seen_on_a: list[int] = []
            seen_on_b: list[int] = []
            on_a, on_b = await a.spawn(Sequence, seen_on_a), await b.spawn(Sequence, seen_on_b)
            send_a, send_b = await a.spawn(Sender), await b.spawn(Sender)
            await a.connect(b.name)

            done = await asyncio.gather(
                a.call(send_a, ("run", on_b, count), timeout=60.0),
                b.call(send_b, ("run", on_a, count), timeout=60.0),
            )
            assert list(done) == [count, count]
            await until(lambda: len(seen_on_a) >= count and len(seen_on_b) >= count, "every message arrived")
            assert seen_on_b == list(range(count))
            assert seen_on_a == list(range(count))

    net.run(main)


def test_a_call_across_returns_the_reply_and_an_unknown_pid_gives_noproc(net: Net) -> None:
    async def main(net: Net) -> None:
        async with net.node("a") as a, net.node("b") as b:
            echo = await b.spawn(Echo)
            await a.connect(b.name)
            assert await a.call(echo, ("echo", ("nested", [1, 2.5, "x"], {"k": echo}))) == (
                "nested",
                [1, 2.5, "x"],
                {"k": echo},
            )
            with pytest.raises(ProcessExited) as exited:
                await a.call(Pid(b.name, b.incarnation, 10_000), ("echo", 1))
            assert exited.value.reason == "noproc"

    net.run(main)


def test_link_loss_fails_calls_with_noconnection_fires_monitors_and_the_link_returns_after_heal(net: Net) -> None:
    async def main(net: Net) -> None:
        async with net.node("a") as a, net.node("b") as b:
            downs: list[Down] = []
            watcher = await a.spawn(Watcher, downs)
            echo = await b.spawn(Echo)
            await a.connect(b.name)
            ref = await a.call(watcher, ("monitor", echo))
            assert await a.call(echo, ("echo", "before")) == "before"  # b has the monitor now
            hanging = asyncio.create_task(a.call(echo, ("hang",), timeout=30.0))
            echo_proc = b.runtime.local(echo)
            assert echo_proc is not None
            await until(lambda: getattr(echo_proc, "hanging", False), "the echo holds the call")
            assert not hanging.done()

            net.cut(a, b)

            with pytest.raises(ProcessExited) as lost:
                await asyncio.wait_for(hanging, 10.0)
            assert lost.value.reason == "noconnection"
            await until(lambda: len(downs) == 1, "the monitor fired")
            assert downs == [Down(ref, echo, "noconnection")]
            # While cut, a new call fails the same way: the redial is refused.
            with pytest.raises(ProcessExited) as refused:
                await a.call(echo, ("echo", "during"), timeout=10.0)
            assert refused.value.reason == "noconnection"
            assert not linked(a, b)

            net.heal(a, b)

            await until(lambda: linked(a, b), "the link came back by itself")
            assert await a.call(echo, ("echo", "after"), timeout=10.0) == "after"  # b's process lived on
            assert downs == [Down(ref, echo, "noconnection")]  # no second Down

    net.run(main)


def test_simultaneous_connect_ends_with_one_link_per_pair_dialed_by_the_smaller_name(net: Net) -> None:
    def settled(node: Node, other: str) -> bool:
        peer = node.transport.peers.get(other)
        return peer is not None and peer.conn is not None and peer.dialing is None and peer.dial_handle is None

    def connects(node: Node, other: str) -> int:
        return sum(p.connects for p in node.statistics().transport.peers if p.name == other)

    async def main(net: Net) -> None:
        for attempt in range(5):
            async with net.node("a") as a, net.node("b") as b:
                await asyncio.gather(a.connect(b.name), b.connect(a.name))
                await until(lambda: settled(a, b.name) and settled(b, a.name), f"settled, attempt {attempt}")

                assert (connects(a, b.name), connects(b, a.name)) == (1, 1), f"attempt {attempt}"
                small, large = sorted((a, b), key=lambda n: n.name)
                small_conn = small.transport.peers[large.name].conn
                large_conn = large.transport.peers[small.name].conn
                assert small_conn is not None
                assert large_conn is not None
                assert (small_conn.dialer, large_conn.dialer) == (True, False), f"attempt {attempt}"
                on_a, on_b = await a.spawn(Echo), await b.spawn(Echo)
                assert await a.call(on_b, ("echo", attempt)) == attempt
                assert await b.call(on_a, ("echo", attempt)) == attempt
                assert (connects(a, b.name), connects(b, a.name)) == (1, 1), f"attempt {attempt}"

    net.run(main)


# --- the fake's own shape -------------------------------------------------------------------------


def test_memory_transport_overrides_only_what_touches_the_os() -> None:
    """It is the real Transport: everything else (handshake, framing, links) is inherited."""
    own = {name for name in vars(MemoryTransport) if not name.startswith("__")}
    assert own == {"listen", "close", "rename", "_open", "_accepted", "_crash"}
    for name in ("listen", "close", "rename", "_open"):
        assert inspect.signature(getattr(MemoryTransport, name)) == inspect.signature(getattr(Transport, name)), name
