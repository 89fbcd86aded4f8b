"""What a node tells others about itself: its statistics and its recent events.

Every node runs an ``InfoServer`` (a system process with the well-known local id 2, beside
the registry server's 1), so that any node, a ``role="client"`` one included, can read any
other node's ``statistics()`` snapshot and the tail of its event journal with one call.
The CLI (``distable status``), the dashboard and the demo's live view use it through
``Node.statistics_of`` and ``Node.events_of``; both are read-only.

The journal keeps the node's last ``capacity`` events (the objects themselves: recording
costs an append, rendering happens only when someone asks) with a sequence number, so a
poller asks for "everything after the last one I saw" and never gets a duplicate.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from ..runtime import Caller, Process
from ..wire import Pid

if TYPE_CHECKING:
    from ._node import Node

INFO_SERVER_ID = 2


def render_event(event: Any) -> dict[str, Any]:
    """An event as plain data: ``{"type": "HandoffCompleted", "name": "...", ...}``.

    Names and reasons can be any encodable value; they are rendered with ``repr`` (strings
    as themselves) so that a reader needs no knowledge of the user's types; pids become
    their text form.
    """
    out: dict[str, Any] = {"type": type(event).__name__}
    if dataclasses.is_dataclass(event):
        for field in dataclasses.fields(event):
            value = getattr(event, field.name)
            if isinstance(value, Pid):
                out[field.name] = str(value)
            elif isinstance(value, str | int | float | bool) or value is None:
                out[field.name] = value
            else:
                out[field.name] = repr(value)
    return out


#: Events published once per name or group member: a registration wave or a restart of
#: many names produces thousands. The journal keeps fewer of them, apart from the others,
#: so that they never push a join, a handoff or a restart out of it.
NOISY_EVENTS = frozenset({"NameRegistered", "NameUnregistered", "GroupJoined", "GroupLeft"})


class EventJournal:
    """The last events of one node, numbered from 1: up to ``capacity`` of every kind
    but the noisy ones (``NOISY_EVENTS``), and up to ``noisy_capacity`` of those. Event
    loop only."""

    __slots__ = ("_entries", "_noisy", "seq")

    def __init__(self, capacity: int = 1000, noisy_capacity: int = 200) -> None:
        self._entries: deque[tuple[int, float, Any]] = deque(maxlen=capacity)
        self._noisy: deque[tuple[int, float, Any]] = deque(maxlen=noisy_capacity)
        self.seq = 0

    def record(self, event: Any) -> None:
        self.seq += 1
        entries = self._noisy if type(event).__name__ in NOISY_EVENTS else self._entries
        entries.append((self.seq, time.time(), event))

    def since(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        """The events numbered above ``seq``, oldest first, at most ``limit`` (the newest)."""
        newer = sorted(entry for entries in (self._entries, self._noisy) for entry in entries if entry[0] > seq)
        return [{"seq": s, "time": t, **render_event(e)} for s, t, e in newer[-limit:]]


class InfoServer(Process):
    """Answers ``"statistics"`` and ``("events", since)`` for other nodes (local id 2)."""

    system = True

    async def init(self, node: Node) -> None:
        self.owner = node

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case "statistics":
                return msgspec.to_builtins(self.owner.statistics())
            case ("events", int(since)):
                return self.owner._bus.journal.since(since)
        raise ValueError(f"unknown info request {message!r}")
