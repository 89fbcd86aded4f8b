"""``DurableStore``: the shell around an engine that the registry talks to.

* Every operation is bounded by ``timeout``: past it, or when the engine cannot reach its
  database, it raises ``StoreUnavailable`` (registrations and acknowledged checkpoints
  fail with it); nothing waits longer.
* The writes the registry does not wait for (a write-behind checkpoint, a removal) are
  queued (``WriteQueue``: one per name, the latest; bounded) and written by one task, in
  order, retried with ``Backoff`` while the store is unavailable: the store catches up
  when it is back. A synchronous checkpoint that failed is queued as well (the state is
  real; the caller got the error).
* A synchronous write of a name waits for a write of it under way and supersedes a
  queued older one, so a name's writes reach the engine in the order they were issued.
* Log lines (logger ``distable.store``) name the store's address and the problem, once
  when it becomes unavailable and once when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._errors import DistableError, StoreUnavailable
from ..wire._messages import Lineage, Spec
from ._api import Outcome, Remembered, Store, StoreStatistics
from ._queue import Kind, Write, WriteQueue
from ._records import check_write, name_key

log = logging.getLogger("distable.store")

T = TypeVar("T")


class DurableStore:
    """The registry's store: ``engine`` with timeouts, a write-behind queue and retries.

    Args:
        engine: a ``Store`` (``RedisStore``, ``MemoryStore``).
        timeout: the most any one operation takes before ``StoreUnavailable``.
        load_timeout: the same for ``load`` (which reads every record: a cold start).
        queue_limit, queue_bytes: the write-behind queue's bounds (names, bytes).
        retry_initial, retry_max: the queue's backoff while the store is unavailable.
        rng: the backoff's jitter (a seeded one in tests).
    """

    def __init__(
        self,
        engine: Store,
        *,
        timeout: float = 2.0,
        load_timeout: float = 30.0,
        queue_limit: int = 10_000,
        queue_bytes: int = 64 << 20,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self.engine = engine
        self.timeout = timeout
        self.load_timeout = load_timeout
        self._clock = clock
        self._queue = WriteQueue(queue_limit, queue_bytes, retry_initial=retry_initial, retry_max=retry_max, rng=rng)
        self._changed: asyncio.Event | None = None  # set (and replaced) when a write ends
        self._wake: asyncio.Event | None = None
        self._drain: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._dropped_logged = 0
        self._closed = False

    @property
    def address(self) -> str:
        return self.engine.address

    def __repr__(self) -> str:
        return f"DurableStore({self.engine!r})"

    # --- synchronous: the caller waits, and gets StoreUnavailable ---------------------------

    async def save_name(self, name: Any, spec: Spec, replicas: int, lineage: Lineage, *, fresh: bool) -> Outcome:
        """``Store.save_name`` within the timeout.

        Raises:
            StoreUnavailable: no answer within the timeout, or the store is unreachable.
            UnencodableValue, TypeError, ValueError: bad input (nothing was sent).
        """
        key = name_key(name)
        return await self._sync(key, lambda: self.engine.save_name(name, spec, replicas, lineage, fresh=fresh))

    async def save_checkpoint(self, name: Any, lineage: Lineage, seq: int, state: bytes) -> Outcome:
        """``Store.save_checkpoint`` within the timeout; when it fails, the checkpoint is
        queued (the store catches up) and the error raised.

        Raises:
            StoreUnavailable: no answer within the timeout, or the store is unreachable.
            UnencodableValue, TypeError, ValueError: bad input (nothing was sent).
        """
        key = name_key(name)
        check_write(lineage, seq)
        try:
            return await self._sync(key, lambda: self.engine.save_checkpoint(name, lineage, seq, state))
        except StoreUnavailable:
            self._put(key, name, Kind.CHECKPOINT, lineage, seq, bytes(state))
            raise

    async def epoch(self, name: Any) -> int | None:
        """``Store.epoch`` within the timeout (a read: it waits for a write of ``name``
        under way, and supersedes nothing).

        Raises:
            StoreUnavailable: no answer within the timeout, or the store is unreachable.
        """
        key = name_key(name)

        async def read() -> int | None:
            await self._until(lambda: not self._queue.busy(key))
            return await self.engine.epoch(name)

        return await self._bounded(read, self.timeout, f"no answer within {self.timeout:g} s")

    async def load(self) -> list[Remembered]:
        """``Store.load`` within ``load_timeout``.

        Raises:
            StoreUnavailable: no answer within the timeout, or the store is unreachable.
        """
        return await self._bounded(self.engine.load, self.load_timeout, f"load not done within {self.load_timeout:g} s")

    async def _sync(self, key: bytes, op: Callable[[], Awaitable[Outcome]]) -> Outcome:
        ticket = self._queue.ticket()

        async def write() -> Outcome:
            await self._until(lambda: not self._queue.busy(key))
            self._queue.begin(key)
            try:
                return await op()
            finally:
                self._queue.end(key)
                self._notify()

        outcome = await self._bounded(write, self.timeout, f"no answer within {self.timeout:g} s")
        self._queue.written_sync(key, ticket, outcome)
        return outcome

    async def _bounded(self, op: Callable[[], Awaitable[T]], timeout: float, late: str) -> T:
        """``op()`` within ``timeout``: past it (``late`` says so) or when the engine cannot
        reach its database, ``StoreUnavailable``, counted and logged; else the store is up."""
        try:
            async with asyncio.timeout(timeout):
                result = await op()
        except TimeoutError:
            self._unavailable(late)
            raise StoreUnavailable(self.address, late) from None
        except StoreUnavailable as exc:
            self._unavailable(exc.detail)
            raise
        self._available()
        return result

    # --- queued: the caller does not wait -----------------------------------------------------

    def checkpoint_behind(self, name: Any, lineage: Lineage, seq: int, state: bytes) -> bool:
        """Queue a checkpoint (replacing a queued write of ``name``); False if the queue is
        full (the write is dropped, counted and logged).

        Raises:
            UnencodableValue, TypeError, ValueError: bad input (nothing was queued).
        """
        key = name_key(name)
        check_write(lineage, seq)
        return self._put(key, name, Kind.CHECKPOINT, lineage, seq, bytes(state))

    def remove_behind(self, name: Any, lineage: Lineage) -> bool:
        """Queue the removal of ``name`` (replacing a queued write of it); False if the
        queue is full.

        Raises:
            UnencodableValue, TypeError, ValueError: bad input (nothing was queued).
        """
        key = name_key(name)
        check_write(lineage)
        return self._put(key, name, Kind.REMOVE, lineage, 0, None)

    def _put(self, key: bytes, name: Any, kind: Kind, lineage: Lineage, seq: int, state: bytes | None) -> bool:
        if self._closed:
            raise DistableError(f"store {self.address} is closed")
        if not self._queue.put(key, name, kind, lineage, seq, state, self._clock()):
            if self._queue.dropped > self._dropped_logged:
                if not self._dropped_logged or self._queue.up:
                    log.warning(
                        "store %s: write queue full (%d names, %d bytes): a %s of %r is not written",
                        self.address,
                        len(self._queue),
                        self._queue.queued_bytes,
                        kind.value,
                        name,
                    )
                self._dropped_logged = self._queue.dropped
            return False
        self._ensure_drain()
        return True

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued write was taken by the store (or dropped); False if
        some remain after ``timeout`` seconds (None: ``self.timeout``)."""
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                await self._until(self._queue.idle)
        except TimeoutError:
            return False
        return True

    def _ensure_drain(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_task(self._drain_loop(), name=f"store {self.address}")

    async def _drain_loop(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            wake.clear()
            now = self._clock()
            write = self._queue.take(now)
            if write is None:
                if self._queue.idle():
                    self._notify()
                deadline = self._queue.next_deadline()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(None if deadline is None else max(0.0, deadline - now)):
                        await wake.wait()
                continue
            await self._write(write)
            self._notify()

    async def _write(self, write: Write) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                if write.kind is Kind.CHECKPOINT:
                    assert write.state is not None
                    outcome = await self.engine.save_checkpoint(write.name, write.lineage, write.seq, write.state)
                else:
                    outcome = await self.engine.remove(write.name, write.lineage)
        except (TimeoutError, StoreUnavailable) as exc:
            detail = exc.detail if isinstance(exc, StoreUnavailable) else f"no answer within {self.timeout:g} s"
            delay = self._queue.failed_write(write, self._clock())
            self._log_down(detail, delay)
        except asyncio.CancelledError:
            self._queue.put_back(write)  # close() stopped the drain under it: not written, and counted
            raise
        except Exception:  # not the store's availability: retrying would fail the same way
            self._queue.discard(write)
            log.exception("store %s: a queued %s of %r failed; not retried", self.address, write.kind.value, write.name)
        else:
            self._queue.done(write, outcome)
            self._available()

    # --- availability and statistics --------------------------------------------------------

    def _unavailable(self, detail: str) -> None:
        self._log_down(detail, self._queue.unavailable(self._clock()))

    def _log_down(self, detail: str, delay: float) -> None:
        if self._down_since is None:
            self._down_since = self._clock()
            log.warning(
                "store %s: unavailable (%s); %d write(s) queued, retrying in %.2f s",
                self.address,
                detail,
                len(self._queue),
                delay,
            )
        else:
            log.debug("store %s: still unavailable (%s); retrying in %.2f s", self.address, detail, delay)

    def _available(self) -> None:
        self._queue.recovered()
        if self._down_since is not None:
            log.info(
                "store %s: reachable again after %.1f s; %d queued write(s) to catch up",
                self.address,
                self._clock() - self._down_since,
                len(self._queue),
            )
            self._down_since = None
            if self._wake is not None:
                self._wake.set()

    def statistics(self) -> StoreStatistics:
        q = self._queue
        return StoreStatistics(
            self.address, q.up, q.written, q.refused, q.failed, len(q), q.queued_bytes, q.dropped, q.lag(self._clock())
        )

    def _notify(self) -> None:
        """A write ended or the queue changed: wake whoever waits for a name or for idle."""
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()
        if self._wake is not None and len(self._queue):
            self._wake.set()  # the drain may have skipped a name that was busy

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    async def close(self, drain_timeout: float = 1.0) -> None:
        """Write what is queued (for at most ``drain_timeout`` seconds), then stop and
        close the engine; what is still queued then is lost, and logged."""
        if self._closed:
            return
        self._closed = True
        flushed = self._queue.idle() or await self.flush(drain_timeout)
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
        if not flushed:
            # After the drain stopped: a write it had under way (a retry, say) is queued again,
            # and counted here, not lost unseen.
            log.warning("store %s: closed with %d queued write(s) not written", self.address, len(self._queue))
        try:
            async with asyncio.timeout(self.timeout):
                await self.engine.close()
        except TimeoutError:
            log.warning("store %s: its connections did not close within %g s", self.address, self.timeout)
