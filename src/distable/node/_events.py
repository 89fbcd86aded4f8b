"""A node's events: the bus that fans them out to ``events()`` streams, and the journal.

Every event a node's layers publish (membership's ``NodeUp``/``NodeDown``, the registry's
``NameRegistered``, ``HandoffCompleted``...: frozen dataclasses named in the past tense)
goes through ``EventBus.publish``, which records it in the node's ``EventJournal`` and
puts it on every open ``EventStream``. A client node's comings and goings are no event.

The journal keeps the node's last ``capacity`` events (the objects themselves: recording
costs an append, rendering happens only when someone asks) with a sequence number, so a
poller (``Node.events_of``, through the ``InfoServer``) asks for "everything after the
last one I saw" and never gets a duplicate.

Everything here runs on the node's event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from ..membership import NodeDown, NodeUp
from ..wire import Pid

_now = time.time


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
        entries.append((self.seq, _now(), event))

    def since(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        """The events numbered above ``seq``, oldest first, at most ``limit`` (the newest)."""
        newer = sorted(entry for entries in (self._entries, self._noisy) for entry in entries if entry[0] > seq)
        return [{"seq": s, "time": t, **render_event(e)} for s, t, e in newer[-limit:]]


class EventStream:
    """An async iterator over a node's events, subscribed from the moment it is made.

    Use ``async with node.events() as events: async for e in events: ...`` or iterate
    it directly and ``close()`` it when done. If the consumer falls more than
    ``maxsize`` events behind, the oldest events are dropped and counted in
    ``dropped``, so a slow consumer never grows the node's memory without bound.
    """

    def __init__(self, bus: EventBus, maxsize: int, kinds: frozenset[type] | None = None) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.dropped = 0
        #: The event classes this stream takes (None: every event); the bus puts no other.
        self.kinds = kinds

    def _put(self, event: Any) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Any:
        return await self._queue.get()

    def get_nowait(self) -> Any:
        """The next event if one is waiting; raises ``asyncio.QueueEmpty`` otherwise."""
        return self._queue.get_nowait()

    def close(self) -> None:
        self._bus.unsubscribe(self)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _event_classes(kinds: type | Iterable[type]) -> frozenset[type]:
    """``kinds`` (``NodeUp``, or ``(NodeUp, NodeDown)``) as a set of classes."""
    if isinstance(kinds, type):
        return frozenset((kinds,))
    if isinstance(kinds, str | bytes):
        raise TypeError(f"kinds must be event classes (e.g. distable.NodeUp), not the string {kinds!r}")
    try:
        classes = frozenset(kinds)
    except TypeError:
        raise TypeError(f"kinds must be an event class or an iterable of them, not {kinds!r}") from None
    for kind in classes:
        if not isinstance(kind, type):
            raise TypeError(f"kinds must be event classes (e.g. distable.NodeUp), not {kind!r}")
    return classes


class EventBus:
    """Fan-out of events to every open ``EventStream``. Event loop only.

    A stream that takes only some kinds of events is listed under each of them: an event
    costs nothing for the streams that do not take it (a membership listener is never
    called for the registrations of a 100,000-name wave)."""

    def __init__(self, journal: EventJournal | None = None) -> None:
        self._every: set[EventStream] = set()  # the streams that take every event
        self._by_kind: dict[type, set[EventStream]] = {}  # the others, under each of their kinds
        self.journal = journal if journal is not None else EventJournal()

    @property
    def streams(self) -> set[EventStream]:
        """Every open stream."""
        return self._every.union(*self._by_kind.values())

    def subscribe(self, maxsize: int = 10_000, kinds: type | Iterable[type] | None = None) -> EventStream:
        """A new stream of the events of ``kinds`` (a class or classes; None: every event).

        Raises:
            TypeError: ``kinds`` holds something that is not a class (a name as a string
                would match nothing, and the stream would stay silent)."""
        stream = EventStream(self, maxsize, None if kinds is None else _event_classes(kinds))
        if stream.kinds is None:
            self._every.add(stream)
        else:
            for kind in stream.kinds:
                self._by_kind.setdefault(kind, set()).add(stream)
        return stream

    def unsubscribe(self, stream: EventStream) -> None:
        self._every.discard(stream)
        for kind in stream.kinds or ():
            listed = self._by_kind.get(kind)
            if listed is not None:
                listed.discard(stream)
                if not listed:
                    del self._by_kind[kind]

    def publish(self, event: Any) -> None:
        kind = type(event)
        if (kind is NodeUp or kind is NodeDown) and event.client:
            return  # a client node (a tool) is not a member: its comings and goings are no event
        self.journal.record(event)
        if self._every:
            for stream in self._every:
                stream._put(event)
        if self._by_kind:
            for stream in self._by_kind.get(kind, ()):
                stream._put(event)
