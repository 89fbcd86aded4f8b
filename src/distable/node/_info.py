"""What a node tells others about itself: its statistics and its recent events.

Every node runs an ``InfoServer`` (a system process with the well-known local id 2, beside
the registry server's 1), so that any node, a ``role="client"`` one included, can read any
other node's ``statistics()`` snapshot and the tail of its event journal (``_events.py``)
with one call. The CLI (``distable status``), the dashboard and the demo's live view use
it through ``Node.statistics_of`` and ``Node.events_of``; both are read-only.

The server knows nothing of the node: it is given the two reads it answers with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ..runtime import Caller, Process

INFO_SERVER_ID = 2


class InfoServer(Process):
    """Answers ``"statistics"`` and ``("events", since)`` for other nodes (local id 2).

    ``statistics()`` returns the node's snapshot (sent as plain data); ``events_since(seq)``
    returns the journal's events numbered above ``seq``, rendered.
    """

    system = True

    async def init(self, statistics: Callable[[], Any], events_since: Callable[[int], list[dict[str, Any]]]) -> None:
        self._statistics = statistics
        self._events_since = events_since

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case "statistics":
                return msgspec.to_builtins(self._statistics())
            case ("events", int(since)):
                return self._events_since(since)
        raise ValueError(f"unknown info request {message!r}")
