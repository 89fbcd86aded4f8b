"""Small asyncio helpers of the registry: a bounded job lane, a cheap shielded wait, and
futures whose outcome nobody awaits.

Everything here runs on the event loop; nothing here knows the registry's protocols.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("distable.registry")
T = TypeVar("T")


class Lane:
    """Runs queued jobs in order, at most ``limit`` at once, in at most ``limit`` tasks.

    Each task takes the next job when its current one is done; a job's exception is logged
    and does not stop the others. Event loop only.
    """

    __slots__ = ("_jobs", "_limit", "_spawn", "_workers")

    def __init__(self, spawn: Callable[[Coroutine[Any, Any, Any]], Any], limit: int) -> None:
        self._jobs: deque[Callable[[], Coroutine[Any, Any, None]]] = deque()
        self._limit = max(1, limit)
        self._spawn = spawn
        self._workers = 0

    def put(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._jobs.append(job)
        if self._workers < self._limit:
            self._workers += 1
            self._spawn(self._work())

    def __len__(self) -> int:
        """Jobs waiting for a task (not counting those running)."""
        return len(self._jobs)

    @property
    def busy(self) -> bool:
        """Whether a job is waiting or running."""
        return bool(self._jobs) or self._workers > 0

    async def _work(self) -> None:
        try:
            while self._jobs:
                job = self._jobs.popleft()
                try:
                    await job()
                except Exception:
                    log.exception("registry job %r failed", job)
        finally:
            self._workers -= 1


async def within(fut: asyncio.Future[T], timeout: float) -> T:
    """``await asyncio.wait_for(asyncio.shield(fut), timeout)`` at a fraction of its cost (a
    handoff waits twice): ``fut``'s outcome, or TimeoutError after ``timeout`` seconds;
    ``fut`` itself is never cancelled."""
    if not fut.done():
        loop = fut.get_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake(_: object = None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        handle = loop.call_later(timeout, wake)
        fut.add_done_callback(wake)
        try:
            await waiter
        finally:
            handle.cancel()
            fut.remove_done_callback(wake)
        if not fut.done():
            raise TimeoutError(f"not done within {timeout} s")
    return fut.result()


class Starting:
    """The names whose process is being started here (a registration, a restart, a
    handoff's copy), each with the outcome a later start of it waits for. Its future is
    made only when such a start waits (almost never): the one made for every registration
    on its owner cost as much as a tenth of the owner's registry work. Event loop only."""

    __slots__ = ("_loop", "_starts")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._starts: dict[Any, asyncio.Future[Any] | None] = {}

    def __contains__(self, name: Any) -> bool:
        return name in self._starts

    def __len__(self) -> int:
        return len(self._starts)

    def begin(self, name: Any) -> None:
        """A start of ``name`` begins (none is under way: ``waiter`` said so)."""
        self._starts[name] = None

    def waiter(self, name: Any) -> asyncio.Future[Any] | None:
        """What a start of ``name`` under way will be done with (await it shielded), or None
        if there is none."""
        if name not in self._starts:
            return None
        fut = self._starts[name]
        if fut is None:
            fut = self._starts[name] = self._loop.create_future()
        return fut

    def end(self, name: Any, outcome: Any) -> None:
        """The start of ``name`` is over: wake whoever waits with ``outcome``."""
        fut = self._starts.pop(name, None)
        if fut is not None and not fut.done():
            fut.set_result(outcome)


def detached(fut: asyncio.Future[T]) -> asyncio.Future[T]:
    """Mark the outcome of a ``run_in`` as seen: when the process exits first (a second
    ``die`` queued behind the first, a conflict resolved during a shutdown), nobody waits
    for it, and asyncio would log "exception was never retrieved" as an error."""
    fut.add_done_callback(_seen)
    return fut


def _seen(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def log_failure(subject: object, what: str) -> Callable[[asyncio.Future[Any]], None]:
    """A done-callback that logs at ERROR if the future failed: "<subject>: <what> raised"."""

    def done(fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            log.error("%r: %s raised", subject, what, exc_info=fut.exception())

    return done
