"""One port, one node: a node that binds a port another node holds fails at once, with
the port in its error, on either event loop, even before the holder has started.

Found in a trial: three ``distable node`` processes started together on the default
port; two said they were up on it (the second's ``listen`` had failed unreported), and
the client's handshake met the wrong node there. ``distable node`` processes started
together: tests/cli/test_cli_startup.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from distable import Node, Static
from distable.testing import eventually, free_tcp_ports

try:
    import uvloop
except ImportError:  # pragma: no cover - the "fast" extra is in the test environment
    uvloop = None  # type: ignore[assignment]

COOKIE = "bind-test-cookie"
RUNNERS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {"asyncio": asyncio.run}
if uvloop is not None:
    RUNNERS["uvloop"] = uvloop.run


@pytest.mark.parametrize("loop", sorted(RUNNERS))
def test_a_node_cannot_bind_a_port_a_bound_node_holds_before_either_starts(loop: str) -> None:
    (port,) = free_tcp_ports(1)

    async def scenario() -> None:
        first = Node("first", host="127.0.0.1", port=port, cookie=COOKIE)
        second = Node("second", host="127.0.0.1", port=port, cookie=COOKIE)
        await first.bind()  # bound, not started: not accepting links yet
        try:
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}:.*address already in use"):
                await second.bind()
            # The holder is untouched: it starts, and a node that dials the port meets it.
            await first.start()
            async with Node("probe", role="client", cookie=COOKIE, cluster=Static([first.name])) as probe:
                await eventually(lambda: first.name in probe.nodes())
        finally:
            await first.stop()

    RUNNERS[loop](scenario())
