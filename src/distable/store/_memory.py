"""``MemoryStore``: the ``Store`` contract in this process's memory.

Durable only as long as the process: for tests, and as the reference the Redis engine is
checked against (tests/store run the same contract tests on both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..wire._codec import decode_value
from ..wire._messages import Lineage, Spec
from ._api import Outcome, Remembered
from ._records import check_write, decode_spec, encode_spec, name_key


@dataclass(slots=True)
class _Record:
    name: bytes
    spec: bytes
    replicas: int
    lineage: Lineage
    seq: int
    state: bytes | None


class MemoryStore:
    """A ``Store`` in a dict. ``available`` False makes every operation raise
    ``StoreUnavailable`` (a test's way to take the store away)."""

    def __init__(self, address: str = "memory://") -> None:
        self._address = address
        self._records: dict[bytes, _Record] = {}
        self.available = True

    @property
    def address(self) -> str:
        return self._address

    def _check(self) -> None:
        if not self.available:
            from .._errors import StoreUnavailable

            raise StoreUnavailable(self._address, "taken away (MemoryStore.available is False)")

    async def save_name(self, name: Any, spec: Spec, replicas: int, lineage: Lineage, *, fresh: bool) -> Outcome:
        key, blob = name_key(name), encode_spec(spec)
        check_write(lineage, 0, replicas)
        self._check()
        record = self._records.get(key)
        if fresh or record is None:
            self._records[key] = _Record(key, blob, replicas, lineage, 0, None)
            return Outcome.APPLIED
        if record.lineage > lineage:
            return Outcome.STALE
        record.spec, record.replicas = blob, replicas
        record.lineage = max(record.lineage, lineage)
        return Outcome.APPLIED

    async def save_checkpoint(self, name: Any, lineage: Lineage, seq: int, state: bytes) -> Outcome:
        key = name_key(name)
        check_write(lineage, seq)
        self._check()
        record = self._records.get(key)
        if record is None:
            return Outcome.MISSING
        if (lineage, seq) <= (record.lineage, record.seq):
            return Outcome.STALE
        record.lineage, record.seq, record.state = lineage, seq, bytes(state)
        return Outcome.APPLIED

    async def remove(self, name: Any, lineage: Lineage) -> Outcome:
        key = name_key(name)
        check_write(lineage)
        self._check()
        record = self._records.get(key)
        if record is None:
            return Outcome.APPLIED
        if record.lineage > lineage:
            return Outcome.STALE
        del self._records[key]
        return Outcome.APPLIED

    async def epoch(self, name: Any) -> int | None:
        key = name_key(name)
        self._check()
        record = self._records.get(key)
        return None if record is None else record.lineage.epoch

    async def load(self) -> list[Remembered]:
        self._check()
        return [
            Remembered(decode_value(r.name), decode_spec(r.spec), r.replicas, r.lineage, r.seq, r.state)
            for r in self._records.values()
        ]

    async def close(self) -> None:
        pass
