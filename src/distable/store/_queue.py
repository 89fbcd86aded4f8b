"""The writes the registry does not wait for, until the store takes them: pure (no clock,
no I/O; the shell passes ``now``), so that coalescing, bounds and retries are tested
without Redis.

One entry per name, the latest: a write-behind checkpoint replaces an older queued
checkpoint or removal of the same name, and a removal replaces a queued checkpoint
("latest wins": the registry issues a name's writes in its own order). The entries are
taken oldest first, one name at a time: a name being written (``busy``, by the queue's
drain or by a synchronous write) is not taken again until that write ends, so two writes
of one name never race each other to the engine. After a failure nothing is taken until
the ``Backoff`` delay has passed; the failed write goes back unless a newer write of its
name was queued meanwhile.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._backoff import Backoff
from ..wire._messages import Lineage
from ._api import Outcome

if TYPE_CHECKING:
    import random

#: What an entry costs beyond its state, for the byte bound (the key, the lineage, the dict slot).
ENTRY_OVERHEAD = 128


class Kind(enum.Enum):
    CHECKPOINT = "checkpoint"
    REMOVE = "remove"


@dataclass(slots=True)
class Write:
    """One queued write of ``name`` (``key`` is its stored form)."""

    key: bytes
    name: Any
    kind: Kind
    lineage: Lineage
    seq: int
    state: bytes | None
    ticket: int  # the order writes were issued in, across names and synchronous writes
    since: float  # when the oldest unwritten write of this name was queued (the lag)

    @property
    def size(self) -> int:
        return ENTRY_OVERHEAD + len(self.key) + (len(self.state) if self.state is not None else 0)


class WriteQueue:
    """The queue and its counters. ``limit`` entries and ``max_bytes`` bytes at most: a
    write of a name not queued yet that does not fit is dropped (``put`` returns False);
    a write that replaces a queued one always fits if its state does."""

    def __init__(
        self,
        limit: int = 10_000,
        max_bytes: int = 64 << 20,
        *,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        if limit < 1 or max_bytes < 1:
            raise ValueError("the queue's limit and max_bytes must be at least 1")
        self.limit = limit
        self.max_bytes = max_bytes
        self.backoff = Backoff(retry_initial, retry_max, rng=rng)  # rng: jittered (the shell passes one)
        self._queued: dict[bytes, Write] = {}  # oldest first
        self._busy: dict[bytes, int] = {}  # key -> how many writes of it are under way
        self._bytes = 0
        self._ticket = 0
        self._retry_at = 0.0
        self.up = True
        self.written = 0
        self.refused = 0
        self.failed = 0
        self.dropped = 0

    # --- issuing ----------------------------------------------------------------------------

    def ticket(self) -> int:
        """The next write's place in the order (a synchronous write takes one too)."""
        self._ticket += 1
        return self._ticket

    def put(
        self, key: bytes, name: Any, kind: Kind, lineage: Lineage, seq: int, state: bytes | None, now: float
    ) -> bool:
        """Queue a write of ``name``, replacing a queued one; False (and counted in
        ``dropped``) when it does not fit."""
        old = self._queued.get(key)
        write = Write(key, name, kind, lineage, seq, state, self.ticket(), now if old is None else old.since)
        freed = old.size if old is not None else 0
        if (old is None and len(self._queued) >= self.limit) or self._bytes - freed + write.size > self.max_bytes:
            self.dropped += 1
            return False
        self._bytes += write.size - freed
        self._queued[key] = write  # a replaced entry keeps its place
        return True

    # --- the drain --------------------------------------------------------------------------

    def take(self, now: float) -> Write | None:
        """The oldest queued write whose name is not busy, now busy; None while backing
        off or when there is none."""
        if now < self._retry_at:
            return None
        for key, write in self._queued.items():
            if key not in self._busy:
                del self._queued[key]
                self._bytes -= write.size
                self.begin(key)
                return write
        return None

    def done(self, write: Write, outcome: Outcome) -> None:
        """``write`` reached the engine, which applied or refused it."""
        self.end(write.key)
        self._count(outcome)
        self.recovered()

    def failed_write(self, write: Write, now: float) -> float:
        """``write`` could not reach the engine: it goes back (unless its name has a newer
        queued write), and nothing is taken for the returned delay."""
        self.put_back(write)
        return self.unavailable(now)

    def put_back(self, write: Write) -> None:
        """``write``, taken, was not written (it failed, or the drain was stopped under it):
        queued again unless its name has a newer queued write (dropped if the queue is full)."""
        self.end(write.key)
        if write.key not in self._queued:
            if len(self._queued) < self.limit and self._bytes + write.size <= self.max_bytes:
                self._queued[write.key] = write
                self._bytes += write.size
            else:
                self.dropped += 1

    def discard(self, write: Write) -> None:
        """``write`` failed for a reason retrying cannot mend (a bug): it is not retried."""
        self.end(write.key)
        self.dropped += 1

    # --- synchronous writes ----------------------------------------------------------------

    def busy(self, key: bytes) -> bool:
        return key in self._busy

    def begin(self, key: bytes) -> None:
        self._busy[key] = self._busy.get(key, 0) + 1

    def end(self, key: bytes) -> None:
        left = self._busy[key] - 1
        if left:
            self._busy[key] = left
        else:
            del self._busy[key]

    def written_sync(self, key: bytes, ticket: int, outcome: Outcome) -> None:
        """A synchronous write of ``key`` (issued as ``ticket``) reached the engine: a
        queued write of the name issued before it is superseded and dropped."""
        self._count(outcome)
        self.recovered()
        old = self._queued.get(key)
        if old is not None and old.ticket < ticket:
            del self._queued[key]
            self._bytes -= old.size

    def unavailable(self, now: float) -> float:
        """An attempt failed: the delay before the queue is tried again."""
        self.failed += 1
        self.up = False
        delay = self.backoff.next_delay(now)
        self._retry_at = now + delay
        return delay

    def recovered(self) -> None:
        self.up = True
        self.backoff.reset()
        self._retry_at = 0.0

    def _count(self, outcome: Outcome) -> None:
        if outcome is Outcome.APPLIED:
            self.written += 1
        else:
            self.refused += 1

    # --- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def next_deadline(self) -> float | None:
        """When a write can be taken again after a failure (None: not backing off, or
        nothing queued)."""
        return self._retry_at if self._queued and self._retry_at else None

    def lag(self, now: float) -> float:
        """Seconds since the oldest queued write was queued."""
        return max(0.0, now - min(w.since for w in self._queued.values())) if self._queued else 0.0

    def idle(self) -> bool:
        """Nothing queued and nothing being written."""
        return not self._queued and not self._busy
