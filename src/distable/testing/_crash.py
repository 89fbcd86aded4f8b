"""Stop an in-process node dead, as a SIGKILL would stop its OS process."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..node import Node


async def crash(node: Node) -> None:
    """Stop ``node`` dead: no graceful drain, no leave announcement, nothing flushed.

    Its links are aborted (whatever was queued is lost), its listening socket closed, its
    timers and tasks cancelled, and its registry reacts to nothing any more; the other
    nodes learn of it from failure detection, as they would of a killed OS process. For
    tests with several nodes in one event loop; the node object is unusable afterwards.
    """
    registry = node.registry
    registry.stop()
    registry._flush_scheduled = True  # nothing it queued goes out any more
    node.runtime.exit_listeners.clear()  # a dead node's registry reacts to nothing
    node.runtime.closing = True
    node.membership.stop()
    transport = node.transport
    transport._closing = True
    if transport._tick_handle is not None:
        transport._tick_handle.cancel()
    server = transport._server
    if server is not None:
        server.close()
    for peer in transport.peers.values():
        peer.wanted = False
        if peer.dial_handle is not None:
            peer.dial_handle.cancel()
        for conn in (peer.conn, peer.dialing):
            if conn is not None and conn.transport is not None:
                conn.transport.abort()  # no flush: whatever was queued is lost
    for conn in list(transport._pending_handshakes):
        if conn.transport is not None:
            conn.transport.abort()
    for _ in range(5):  # cancelled tasks may spawn a last one or two
        tasks = list(node._tasks)
        if not tasks:
            break
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if server is not None:
        await server.wait_closed()
