"""The ``Store`` contract, run against every engine alike (``engine``: MemoryStore and
RedisStore on a real redis-server): names with their specs, the newer-only rule for
checkpoints, the removal rule, load, and bad input. Plus the newer-only rule as a
property (hypothesis), on both engines, against a model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distable import Pid, UnencodableValue
from distable.store import MemoryStore, Outcome, RedisStore, Remembered, Store
from distable.wire._messages import Lineage, Spec

from .._redis import RedisServer, redis_server


def lineage(epoch: int, node: str = "a@127.0.0.1:1", incarnation: int = 1, id: int = 1) -> Lineage:
    return Lineage(epoch, Pid(node, incarnation, id))


SPEC = Spec("app.workers:start", ("worker", 7), {"pid": Pid("b", 2, 3), "opts": {"x": (1, 2)}}, "transient", 5.0)
L0, L1, L2 = lineage(0), lineage(1), lineage(2)
APPLIED, STALE, MISSING = Outcome.APPLIED, Outcome.STALE, Outcome.MISSING


async def loaded(store: Store) -> dict[Any, Remembered]:
    return {r.name: r for r in await store.load()}


async def test_a_saved_name_loads_with_its_spec_and_no_checkpoint(engine: Store) -> None:
    assert await engine.load() == []
    assert await engine.save_name("w", SPEC, 2, L0, fresh=True) is APPLIED
    assert await engine.load() == [Remembered("w", SPEC, 2, L0, 0, None)]


@pytest.mark.parametrize("name", ["w", 7, -3, ("worker", 7), ("x", (1, ("y", b"z"))), (Pid("n", 1, 2), 0.5), None])
async def test_any_name_distable_accepts_is_one_key(engine: Store, name: Any) -> None:
    await engine.save_name(name, SPEC, 1, L0, fresh=True)
    await engine.save_name(("other", name), SPEC, 1, L0, fresh=True)
    assert await engine.save_checkpoint(name, L0, 1, b"s1") is APPLIED
    found = await loaded(engine)
    assert set(found) == {name, ("other", name)}
    assert found[name].state == b"s1"
    assert found[("other", name)].state is None


async def test_a_checkpoint_is_stored_only_if_newer_by_lineage_then_seq(engine: Store) -> None:
    await engine.save_name("w", SPEC, 1, L1, fresh=True)
    assert await engine.save_checkpoint("w", L1, 1, b"1") is APPLIED
    assert await engine.save_checkpoint("w", L1, 1, b"again") is STALE  # the same seq
    assert await engine.save_checkpoint("w", L1, 3, b"3") is APPLIED
    assert await engine.save_checkpoint("w", L1, 2, b"2") is STALE  # a straggler
    assert await engine.save_checkpoint("w", L0, 99, b"old lineage") is STALE  # a woken stale host
    assert await engine.save_checkpoint("w", L2, 1, b"new lineage") is APPLIED  # the lineage decides first
    assert await engine.save_checkpoint("w", L1, 100, b"old again") is STALE
    assert (await loaded(engine))["w"] == Remembered("w", SPEC, 1, L2, 1, b"new lineage")


async def test_lineages_order_by_epoch_then_origin_node_incarnation_id(engine: Store) -> None:
    # Each is newer than the one before it: origin node names compare as Python strings
    # (code points: "z" < "é"), not by the server's locale.
    order = [
        lineage(0, "a", 5, 5),
        lineage(0, "b", 0, 0),
        lineage(0, "b", 0, 1),
        lineage(0, "b", 1, 0),
        lineage(0, "z", 0, 0),
        lineage(0, "é", 0, 0),
        lineage(0, "é\U0001f600", 0, 0),
        lineage(1, "a", 0, 0),
        lineage(10, "a", 0, 0),  # not "10" < "9"
        lineage(2**63, "a", 2**63, 2**63),
    ]
    assert order == sorted(order)
    await engine.save_name("w", SPEC, 1, order[0], fresh=True)
    for i, newer in enumerate(order[1:], 1):
        assert await engine.save_checkpoint("w", newer, 1, b"%d" % i) is APPLIED, newer
        assert await engine.save_checkpoint("w", order[i - 1], 2, b"older") is STALE, order[i - 1]
    assert (await loaded(engine))["w"].state == b"%d" % (len(order) - 1)


async def test_a_checkpoint_of_a_name_not_remembered_is_refused(engine: Store) -> None:
    assert await engine.save_checkpoint("w", L0, 1, b"s") is MISSING
    await engine.save_name("w", SPEC, 1, L0, fresh=True)
    assert await engine.remove("w", L0) is APPLIED
    assert await engine.save_checkpoint("w", L0, 2, b"late") is MISSING  # a late write-behind after the removal
    assert await engine.load() == []


async def test_a_removal_applies_unless_the_record_holds_a_newer_lineage(engine: Store) -> None:
    await engine.save_name("w", SPEC, 1, L1, fresh=True)
    await engine.save_checkpoint("w", L1, 5, b"s")
    assert await engine.remove("w", L0) is STALE  # an older copy's exit: the record stays
    assert (await loaded(engine))["w"].state == b"s"
    assert await engine.remove("w", L1) is APPLIED  # the same lineage, whatever its seq
    assert await engine.load() == []
    assert await engine.remove("w", L1) is APPLIED  # not remembered: nothing to do
    await engine.save_name("v", SPEC, 1, L0, fresh=True)
    assert await engine.remove("v", L2) is APPLIED  # a newer lineage removes too
    assert await engine.load() == []


async def test_a_fresh_registration_replaces_the_record_and_a_continued_one_keeps_the_state(engine: Store) -> None:
    await engine.save_name("w", SPEC, 1, L1, fresh=True)
    await engine.save_checkpoint("w", L1, 4, b"s4")
    other = Spec("app:other", [], {}, "permanent", 1.0)
    # A restart elsewhere (a newer lineage, continuing from the checkpoint): the state stays.
    assert await engine.save_name("w", other, 3, L2, fresh=False) is APPLIED
    assert (await loaded(engine))["w"] == Remembered("w", other, 3, L2, 4, b"s4")
    # A continuation of an older lineage (a woken stale host) is refused.
    assert await engine.save_name("w", SPEC, 1, L1, fresh=False) is STALE
    assert await engine.save_checkpoint("w", L2, 5, b"s5") is APPLIED
    # A fresh registration begins from nothing, whatever the record held (its lineage is epoch 0).
    assert await engine.save_name("w", SPEC, 1, L0, fresh=True) is APPLIED
    assert (await loaded(engine))["w"] == Remembered("w", SPEC, 1, L0, 0, None)
    # A continued save of a name not remembered creates it.
    assert await engine.save_name("n", SPEC, 1, L1, fresh=False) is APPLIED
    assert (await loaded(engine))["n"] == Remembered("n", SPEC, 1, L1, 0, None)


async def test_epoch_reads_the_epoch_of_the_lineage_the_record_holds(engine: Store) -> None:
    assert await engine.epoch("w") is None
    await engine.save_name("w", SPEC, 1, lineage(1_700_000_000_000), fresh=True)
    assert await engine.epoch("w") == 1_700_000_000_000
    await engine.save_checkpoint("w", lineage(1_700_000_000_005), 1, b"s")
    assert await engine.epoch("w") == 1_700_000_000_005  # a restart's checkpoint raised it
    await engine.remove("w", lineage(1_700_000_000_005))
    assert await engine.epoch("w") is None


async def test_bad_input_is_refused_before_anything_is_written(engine: Store) -> None:
    with pytest.raises(UnencodableValue):
        await engine.save_name(object(), SPEC, 1, L0, fresh=True)
    with pytest.raises(TypeError):
        await engine.save_name(["a", "list"], SPEC, 1, L0, fresh=True)  # not hashable: not a name
    with pytest.raises(UnencodableValue):
        await engine.save_name("w", Spec("f", (object(),), {}, "transient", 5.0), 1, L0, fresh=True)
    await engine.save_name("w", SPEC, 1, L0, fresh=True)
    with pytest.raises(ValueError, match="seq"):
        await engine.save_checkpoint("w", L0, -1, b"s")
    with pytest.raises(ValueError, match="epoch"):
        await engine.save_checkpoint("w", lineage(-1), 1, b"s")
    with pytest.raises(ValueError, match="replicas"):
        await engine.save_name("w", SPEC, -1, L0, fresh=True)
    with pytest.raises(UnencodableValue):
        await engine.remove(object(), L0)
    assert [r.name for r in await engine.load()] == ["w"]


async def test_large_and_binary_states_round_trip(engine: Store) -> None:
    state = bytes(range(256)) * 4096  # 1 MiB, every byte value
    await engine.save_name("w", SPEC, 1, L0, fresh=True)
    assert await engine.save_checkpoint("w", L0, 1, state) is APPLIED
    assert (await loaded(engine))["w"].state == state


async def test_many_names_load_in_batches(engine: Store) -> None:
    await asyncio.gather(*(engine.save_name(("w", i), SPEC, 1, L0, fresh=True) for i in range(1200)))
    await asyncio.gather(*(engine.save_checkpoint(("w", i), L0, 1, b"%d" % i) for i in range(0, 1200, 2)))
    found = await loaded(engine)
    assert len(found) == 1200
    assert all(found[("w", i)].state == (b"%d" % i if i % 2 == 0 else None) for i in range(1200))


async def test_load_after_a_redis_restart_with_persistence(durable_redis: RedisServer) -> None:
    store = RedisStore(durable_redis.url, namespace="t")
    try:
        await store.save_name(("w", 1), SPEC, 2, L1, fresh=True)
        await store.save_checkpoint(("w", 1), L1, 3, b"three")
        await store.save_name("gone", SPEC, 1, L0, fresh=True)
        await store.remove("gone", L0)
        before = await store.load()
        durable_redis.kill()  # SIGKILL: only what was fsynced survives (appendfsync always: everything)
        durable_redis.start()
        assert await store.load() == before == [Remembered(("w", 1), SPEC, 2, L1, 3, b"three")]
        # The scripts are loaded again after the restart (EVALSHA's NOSCRIPT is handled).
        assert await store.save_checkpoint(("w", 1), L1, 4, b"four") is APPLIED
    finally:
        await store.close()


async def test_namespaces_do_not_see_each_other(redis: RedisServer) -> None:
    a, b = RedisStore(redis.url, namespace="a"), RedisStore(redis.url, namespace="b")
    try:
        await a.save_name("w", SPEC, 1, L0, fresh=True)
        assert await b.load() == []
        assert await b.save_checkpoint("w", L0, 1, b"s") is MISSING
    finally:
        await a.close()
        await b.close()


# --- the newer-only rule as a property -------------------------------------------------------

VERSIONS = st.tuples(
    st.builds(
        lineage,
        st.integers(0, 3),
        st.sampled_from(["a", "b", "aa", "z", "é"]),
        st.integers(0, 2),
        st.integers(0, 2),
    ),
    st.integers(0, 4),
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("checkpoint"), VERSIONS),
        st.tuples(st.just("remove"), VERSIONS),
        st.tuples(st.just("continue"), VERSIONS),
    ),
    max_size=25,
)


async def check_against_model(store: Store, ops: list[tuple[str, tuple[Lineage, int]]]) -> None:
    """Every outcome and the final record are what the rule says: a model of one record."""
    await store.save_name("w", SPEC, 1, L0, fresh=True)
    record: tuple[Lineage, int, bytes | None] | None = (L0, 0, None)
    for i, (op, (line, seq)) in enumerate(ops):
        state = b"%d" % i
        if op == "checkpoint":
            outcome = await store.save_checkpoint("w", line, seq, state)
            if record is None:
                expected = MISSING
            elif (line, seq) > record[:2]:
                expected, record = APPLIED, (line, seq, state)
            else:
                expected = STALE
        elif op == "remove":
            outcome = await store.remove("w", line)
            expected = STALE if record is not None and record[0] > line else APPLIED
            if expected is APPLIED:
                record = None
        else:
            outcome = await store.save_name("w", SPEC, 1, line, fresh=False)
            if record is None:
                expected, record = APPLIED, (line, 0, None)
            elif record[0] > line:
                expected = STALE
            else:
                expected, record = APPLIED, (max(record[0], line), record[1], record[2])
        assert outcome is expected, (i, op, line, seq)
    found = await store.load()
    assert [(r.lineage, r.seq, r.state) for r in found] == ([] if record is None else [record])


@given(ops=OPS)
@settings(max_examples=150, deadline=None)
def test_the_memory_store_follows_the_rule(ops: list[tuple[str, tuple[Lineage, int]]]) -> None:
    asyncio.run(check_against_model(MemoryStore(), ops))


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@given(ops=OPS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_redis_store_follows_the_rule(
    module_redis: RedisServer, ops: list[tuple[str, tuple[Lineage, int]]]
) -> None:
    async def run() -> None:
        store = RedisStore(module_redis.url, namespace=f"p{id(ops)}-{len(ops)}")
        try:
            await store.remove("w", lineage(10**6))  # a namespace an earlier example used starts empty
            await check_against_model(store, ops)
        finally:
            await store.close()

    asyncio.run(run())


def test_redis_server_binds_loopback_only(tmp_path: Path) -> None:
    with redis_server(tmp_path / "r") as server:
        command = server.command()
        assert command[command.index("--bind") + 1] == "127.0.0.1"
        assert command[command.index("--protected-mode") + 1] == "yes"
