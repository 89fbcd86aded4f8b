"""What a node posts to a peer while it dispatches that peer's data (its replies) goes out
when the dispatch ends, in one frame, in the same loop turn; ``flush_now`` then waits for
it too. Two real ``Transport`` objects over loopback TCP, no node around them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from distable.testing import eventually
from distable.transport import Transport
from distable.transport._transport import format_node_name
from distable.wire._messages import Tick

COOKIE = b"replies-cookie"


async def linked_pair(dispatch_a: Any, dispatch_b: Any) -> tuple[Transport, Transport, asyncio.Future[None]]:
    loop = asyncio.get_running_loop()
    up: asyncio.Future[None] = loop.create_future()

    def on_up(node: str, incarnation: int) -> None:
        if not up.done():
            up.set_result(None)

    transports = []
    for short, dispatch in (("a", dispatch_a), ("b", dispatch_b)):
        transport = Transport(
            name=format_node_name(short, "127.0.0.1", 1),
            incarnation=1,
            cookie=COOKIE,
            loop=loop,
            spawn_task=loop.create_task,
            dispatch=dispatch,
            on_up=on_up,
            on_down=lambda node, incarnation, reason: None,
        )
        port = await transport.listen("127.0.0.1", 0)
        transport.rename(format_node_name(short, "127.0.0.1", port))
        transports.append(transport)
    a, b = transports
    return a, b, up


def frames(transport: Transport, peer: str) -> tuple[int, int]:
    """(frames in, messages in) from ``peer``."""
    for stats in transport.statistics().peers:
        if stats.name == peer:
            return stats.frames_in, stats.messages_in
    return 0, 0


async def test_replies_posted_while_dispatching_a_peers_data_go_out_in_one_frame() -> None:
    b_transport: list[Transport] = []

    def dispatch_b(node: str, messages: list[Any]) -> None:
        (b,) = b_transport
        for _ in messages:
            b.post(node, Tick())
            b.flush_now(node)  # as the registry server does after each reply: waits as well

    a, b, up = await linked_pair(lambda node, messages: None, dispatch_b)
    b_transport.append(b)
    try:
        a.connect(b.name)
        await asyncio.wait_for(up, 10)
        await eventually(lambda: a.is_connected(b.name) and b.is_connected(a.name))
        before = frames(a, b.name)
        for _ in range(5):  # one loop turn: one frame of five requests
            a.post(b.name, Tick())
        await eventually(lambda: frames(a, b.name)[1] >= before[1] + 5, message=lambda: f"{frames(a, b.name)}")
        after = frames(a, b.name)
        assert after[1] - before[1] == 5
        assert after[0] - before[0] == 1  # the five replies in one frame
    finally:
        await a.close()
        await b.close()
