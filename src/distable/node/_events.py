"""How a node's events reach its subscribers: ``EventBus`` fans each one out to every
``EventStream`` (what ``events()`` returns) and records it in the node's journal. The
events themselves are defined by the layers that publish them (``membership._events``,
``registry._events``)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..membership import NodeDown, NodeUp
from ._info import EventJournal


class EventStream:
    """An async iterator over a node's events, subscribed from the moment it is made.

    Use ``async with node.events() as events: async for e in events: ...`` or iterate
    it directly and ``close()`` it when done. If the consumer falls more than
    ``maxsize`` events behind, the oldest events are dropped and counted in
    ``dropped``, so a slow consumer never grows the node's memory without bound.
    """

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.dropped = 0

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
        self._bus.streams.discard(self)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of events to every open ``EventStream``. Event loop only."""

    def __init__(self, journal: EventJournal | None = None) -> None:
        self.streams: set[EventStream] = set()
        self.journal = journal if journal is not None else EventJournal()

    def subscribe(self, maxsize: int = 10_000) -> EventStream:
        stream = EventStream(self, maxsize)
        self.streams.add(stream)
        return stream

    def publish(self, event: Any) -> None:
        if isinstance(event, NodeUp | NodeDown) and event.client:
            return  # a client node (a tool) is not a member: its comings and goings are no event
        self.journal.record(event)
        for stream in self.streams:
            stream._put(event)
