"""The durable store's interface: what the registry asks of any engine, and what it gets.

An engine remembers *entities* (Akka's "remember entities"): each registered name with
its factory spec and replica count, and the name's last checkpoint, so that a cluster
started from nothing can start every remembered name again with its last state. Every
write is judged atomically by the engine against the record it holds (see
docs/internals.md, "Durable store"): a checkpoint is stored only if it is newer by
``(lineage, seq)``, a removal applies only if its lineage is not older, so a woken stale
host never overwrites a newer lineage.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..wire._messages import Lineage, Spec


class Outcome(enum.Enum):
    """What an engine did with one write."""

    APPLIED = "applied"  #: the record now says what the write said
    STALE = "stale"  #: refused: the record holds a newer lineage (or the same at a seq at least as high)
    MISSING = "missing"  #: refused: a checkpoint of a name the store does not remember (removed, never saved)


@dataclass(frozen=True, slots=True)
class Remembered:
    """One remembered name, as ``Store.load`` returns it: how to start it (``spec``, with
    the user's argument values), its replica count, and its last checkpoint (``lineage``
    and ``seq`` of it, ``state`` the encoded state; ``state`` is None before the first)."""

    name: Any
    spec: Spec
    replicas: int
    lineage: Lineage
    seq: int
    state: bytes | None


@runtime_checkable
class Store(Protocol):
    """An engine. Each method is one atomic operation on one record (``load`` reads all).

    Engines raise ``StoreUnavailable`` when they cannot reach their database, and
    ``UnencodableValue`` (a ``TypeError``) for a name or spec argument the wire codec does
    not carry. Timeouts, queueing and retries are ``DurableStore``'s, around the engine.
    """

    @property
    def address(self) -> str:
        """Where the data lives, for log lines and errors (no password)."""
        ...

    async def save_name(self, name: Any, spec: Spec, replicas: int, lineage: Lineage, *, fresh: bool) -> Outcome:
        """Remember ``name`` (a registration, a restart, a handoff, a takeover).

        ``fresh`` (a new registration, which begins a lineage from nothing): the record is
        replaced whatever it held, with no checkpoint. Otherwise (the name continues from
        a checkpoint): STALE if the record holds a newer lineage; else the spec and
        replica count are replaced, the lineage raised to ``lineage`` if it is newer, and
        the last checkpoint kept (it is the state the name restarts from).
        """
        ...

    async def save_checkpoint(self, name: Any, lineage: Lineage, seq: int, state: bytes) -> Outcome:
        """Store ``state`` as the last checkpoint of ``name`` if ``(lineage, seq)`` is newer
        than the record's (lineage first, then seq); STALE if not, MISSING if the name is
        not remembered."""
        ...

    async def remove(self, name: Any, lineage: Lineage) -> Outcome:
        """Forget ``name`` (unregistered, or exited and not restarted), unless the record
        holds a lineage newer than ``lineage`` (STALE). A name not remembered: APPLIED."""
        ...

    async def epoch(self, name: Any) -> int | None:
        """The epoch of the lineage the record of ``name`` holds (None: not remembered).
        A fresh registration begins its lineage above it, so that no write of an earlier
        registration of the name can beat the new one's."""
        ...

    async def load(self) -> list[Remembered]:
        """Every remembered name (a cluster started from nothing restores them)."""
        ...

    async def close(self) -> None:
        """Release the connections. Idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """``DurableStore.statistics()``: for ``statistics()`` and ``/metrics``.

    ``written``: writes the engine applied; ``refused``: writes it refused (stale, or a
    checkpoint of a name it does not remember); ``failed``: attempts that raised
    ``StoreUnavailable`` (timeouts included); ``queued``: writes waiting to be retried
    (one per name at most) and ``queued_bytes`` their states' size; ``dropped``: writes
    not queued because the queue was full; ``lag``: seconds since the oldest queued
    write was queued (0.0 when none waits); ``up``: whether the last attempt succeeded.
    """

    address: str
    up: bool
    written: int
    refused: int
    failed: int
    queued: int
    queued_bytes: int
    dropped: int
    lag: float
