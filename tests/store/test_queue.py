"""The write-behind queue (``WriteQueue``, pure: driven by hand with ``now``) and the
shell's ordering rules, on a ``MemoryStore`` that a test takes away and gives back."""

from __future__ import annotations

import random

import pytest

from distable import DistableError, Pid, StoreUnavailable, UnencodableValue
from distable.store import DurableStore, MemoryStore, Outcome, WriteQueue
from distable.store._queue import ENTRY_OVERHEAD, Kind
from distable.testing import eventually
from distable.wire._messages import Lineage, Spec

from .._seed import printed_seed

L0, L1 = Lineage(0, Pid("a", 1, 1)), Lineage(1, Pid("a", 1, 1))
SPEC = Spec("app:start", [], {}, "transient", 5.0)
CP, RM = Kind.CHECKPOINT, Kind.REMOVE


def queue(**kwargs: int) -> WriteQueue:
    return WriteQueue(retry_initial=1.0, retry_max=8.0, rng=random.Random(printed_seed()), **kwargs)


def test_one_write_per_name_the_latest_in_the_place_of_the_first() -> None:
    q = queue()
    assert q.put(b"a", "a", CP, L0, 1, b"a1", now=0.0)
    assert q.put(b"b", "b", CP, L0, 1, b"b1", now=1.0)
    assert q.put(b"a", "a", CP, L0, 2, b"a2", now=2.0)
    assert q.put(b"a", "a", RM, L0, 0, None, now=3.0)  # a removal replaces a queued checkpoint
    assert len(q) == 2
    assert q.queued_bytes == 2 * ENTRY_OVERHEAD + 2 + len(b"b1")
    assert q.lag(5.0) == 5.0  # since the first unwritten write of "a"
    first = q.take(5.0)
    assert first is not None
    assert (first.name, first.kind, first.since) == ("a", RM, 0.0)
    second = q.take(5.0)
    assert second is not None
    assert (second.name, second.state) == ("b", b"b1")
    assert q.take(5.0) is None
    assert not q.idle()  # both are being written
    q.done(first, Outcome.APPLIED)
    q.done(second, Outcome.STALE)
    assert q.idle()
    assert (q.written, q.refused, q.lag(9.0)) == (1, 1, 0.0)


def test_bounded_by_names_and_bytes_a_replacement_always_fits() -> None:
    q = queue(limit=2, max_bytes=3 * ENTRY_OVERHEAD + 100)
    assert q.put(b"a", "a", CP, L0, 1, b"x", now=0.0)
    assert q.put(b"b", "b", CP, L0, 1, b"x", now=0.0)
    assert not q.put(b"c", "c", CP, L0, 1, b"x", now=0.0)  # a third name
    assert q.put(b"a", "a", CP, L0, 2, b"y" * 50, now=0.0)  # replacing fits
    assert not q.put(b"b", "b", CP, L0, 2, b"y" * 500, now=0.0)  # but not a state past the byte bound
    assert (len(q), q.dropped) == (2, 2)


def test_a_failed_write_goes_back_unless_a_newer_one_came_and_the_queue_backs_off() -> None:
    q = queue()
    q.put(b"a", "a", CP, L0, 1, b"1", now=0.0)
    q.put(b"b", "b", CP, L0, 1, b"1", now=0.0)
    a = q.take(0.0)
    assert a is not None
    q.put(b"a", "a", CP, L0, 2, b"2", now=0.5)  # while "a" seq 1 is being written
    assert q.take(0.5) is not None  # "b": "a" is busy
    delay = q.failed_write(a, now=1.0)
    assert 0.5 <= delay <= 1.0  # jittered in [1 - 0.5, 1) of the first delay
    assert not q.up
    assert q.next_deadline() == 1.0 + delay
    assert q.take(1.0) is None  # backing off
    again = q.take(1.0 + delay)
    assert again is not None
    assert (again.seq, again.state) == (2, b"2")  # the newer one, not the failed one
    second = q.failed_write(again, now=5.0)
    assert 1.0 <= second <= 2.0  # doubled
    assert len(q) == 1  # it went back: no newer write of "a"
    retried = q.take(5.0 + second)
    assert retried is not None
    q.done(retried, Outcome.APPLIED)
    assert q.up
    assert q.next_deadline() is None
    assert q.failed == 2


def test_a_synchronous_write_supersedes_older_queued_writes_only() -> None:
    q = queue()
    q.put(b"a", "a", RM, L0, 0, None, now=0.0)
    ticket = q.ticket()  # a synchronous write of "a" is issued after the removal
    q.begin(b"a")
    assert q.take(0.0) is None  # "a" is busy
    q.end(b"a")
    q.written_sync(b"a", ticket, Outcome.APPLIED)
    assert len(q) == 0
    ticket = q.ticket()
    q.put(b"a", "a", CP, L0, 3, b"3", now=1.0)  # issued after the synchronous write began
    q.written_sync(b"a", ticket, Outcome.APPLIED)
    assert len(q) == 1


# --- the shell, on a MemoryStore -----------------------------------------------------------


async def test_queued_writes_catch_up_when_the_store_is_back() -> None:
    engine = MemoryStore()
    store = DurableStore(engine, timeout=1.0, retry_initial=0.01, retry_max=0.05, rng=random.Random(printed_seed()))
    await store.save_name("w", SPEC, 1, L0, fresh=True)
    await store.save_name("gone", SPEC, 1, L0, fresh=True)
    engine.available = False
    with pytest.raises(StoreUnavailable, match=r"^store memory:// unavailable: taken away"):
        await store.save_name("x", SPEC, 1, L0, fresh=True)
    with pytest.raises(StoreUnavailable):
        await store.save_checkpoint("w", L0, 1, b"1")  # fails, and is queued
    assert store.checkpoint_behind("w", L0, 2, b"2")  # replaces it
    assert store.remove_behind("gone", L0)
    stats = store.statistics()
    assert (stats.up, stats.queued) == (False, 2)
    assert stats.failed >= 2
    engine.available = True
    assert await store.flush(5.0)
    found = {r.name: r for r in await engine.load()}
    assert set(found) == {"w"}
    assert (found["w"].seq, found["w"].state) == (2, b"2")
    stats = store.statistics()
    assert (stats.up, stats.queued, stats.lag, stats.dropped) == (True, 0, 0.0, 0)
    await store.close()


async def test_a_registration_after_a_queued_removal_is_not_undone_by_it() -> None:
    engine = MemoryStore()
    store = DurableStore(engine, timeout=1.0, retry_initial=0.01, retry_max=0.05, rng=random.Random(printed_seed()))
    await store.save_name("w", SPEC, 1, L1, fresh=True)
    engine.available = False
    store.remove_behind("w", L1)  # unregistered while the store is away
    await eventually(lambda: store.statistics().failed >= 1)
    engine.available = True
    # Registered again (a fresh lineage, epoch 0: older than L1) before the queue caught up:
    # the queued removal is superseded, not applied after it.
    assert await store.save_name("w", SPEC, 2, L0, fresh=True) is Outcome.APPLIED
    assert await store.flush(5.0)
    assert [(r.name, r.replicas, r.lineage) for r in await engine.load()] == [("w", 2, L0)]
    await store.close()


async def test_bad_input_raises_at_once_and_nothing_is_queued() -> None:
    store = DurableStore(MemoryStore())
    with pytest.raises(UnencodableValue):
        store.checkpoint_behind(object(), L0, 1, b"s")
    with pytest.raises(TypeError):
        store.remove_behind({"not": "hashable"}, L0)
    with pytest.raises(ValueError, match="seq"):
        store.checkpoint_behind("w", L0, -1, b"s")
    with pytest.raises(UnencodableValue):
        await store.save_checkpoint(object(), L0, 1, b"s")
    assert store.statistics().queued == 0
    await store.close()
    with pytest.raises(DistableError, match="closed"):
        store.remove_behind("w", L0)


async def test_a_full_queue_drops_and_counts() -> None:
    engine = MemoryStore()
    engine.available = False
    store = DurableStore(engine, queue_limit=2, retry_initial=10.0, retry_max=10.0)
    assert store.checkpoint_behind("a", L0, 1, b"s")
    assert store.checkpoint_behind("b", L0, 1, b"s")
    assert not store.checkpoint_behind("c", L0, 1, b"s")
    assert store.statistics().dropped == 1
    await store.close(drain_timeout=0.05)  # bounded: the store is away; what is queued is lost
