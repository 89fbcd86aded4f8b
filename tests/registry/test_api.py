"""The registry's API contract (docs/design.md, "Public API"), on real nodes in one event loop."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

import distable
from distable import (
    AlreadyRegistered,
    FactoryError,
    InvalidFactoryReturn,
    NameNotFound,
    Node,
    Pid,
    ProcessExited,
    RegistryConfig,
    UnencodableValue,
)
from distable.testing import eventually, on_node, registry_stats

from . import apps
from .conftest import Cluster, first_owned


def everywhere(cluster: Cluster, name: Any, pid: Pid | None) -> bool:
    return all(n.whereis(name) == pid for n in cluster.nodes)


async def test_factory_module_is_importable_by_reference() -> None:
    from distable.registry import import_factory

    assert import_factory("tests.registry.apps:Counter") is apps.Counter
    assert import_factory("tests.registry.apps:start_counter") is apps.start_counter


async def test_register_starts_the_process_on_the_owner_from_any_node(cluster: Cluster, three: list[Node]) -> None:
    pids: dict[str, Pid] = {}
    for i in range(30):
        node = three[i % 3]
        name = f"reg-{i}"
        pids[name] = await node.register(name, apps.Counter, key=name)
        owner = node.placement().owner(name)
        assert pids[name].node == owner, f"{name} started on {pids[name].node}, its owner is {owner}"
    assert len({pid.node for pid in pids.values()}) == 3, "30 names should spread over all three nodes"
    assert all(apps.INITS[name] == 1 for name in pids)


async def test_a_registration_is_visible_on_the_calling_node_when_register_returns(
    cluster: Cluster, three: list[Node]
) -> None:
    a, b, _c = three
    placement = a.placement().nodes
    for owner in three:
        name = first_owned(owner.name, placement, "ryw")
        pid = await a.register(name, apps.Counter, key=name)
        assert a.whereis(name) == pid  # read-your-writes, with no wait
        assert await a.call(name, "incr") == 1
        other = await b.spawn(apps.Counter)
        await a.register_name(("ryw", owner.name), other)
        assert a.whereis(("ryw", owner.name)) == other
        await a.unregister(name)
        assert a.whereis(name) is None


async def test_whereis_returns_the_same_pid_on_every_node_once_replicated(cluster: Cluster, three: list[Node]) -> None:
    pids = {f"w-{i}": await three[i % 3].register(f"w-{i}", apps.Counter, key=i) for i in range(12)}
    await eventually(
        lambda: all(everywhere(cluster, name, pid) for name, pid in pids.items()),
        message=lambda: cluster.describe(),
    )
    assert cluster.agreed() == pids


async def test_whereis_is_a_plain_local_read_that_never_waits(cluster: Cluster, three: list[Node]) -> None:
    a, b, _ = three
    pid = await a.register("local-read", apps.Counter)
    await eventually(lambda: everywhere(cluster, "local-read", pid))

    # Not a coroutine: nothing to await, so nothing it could wait on.
    assert not inspect.iscoroutinefunction(Node.whereis)
    assert not inspect.iscoroutinefunction(distable.whereis)
    # It reads the replica's dict itself (the tracker's hot path), no copy and no lock.
    assert b.registry.pids is b.registry.core.pids
    assert b.registry.pids["local-read"] == pid

    # With the network gone (any send raises), lookups still answer at once.
    def no_network(node: str, message: Any) -> None:
        raise AssertionError(f"whereis sent {message!r} to {node}")

    b.transport.post = no_network  # type: ignore[method-assign]
    try:
        assert b.whereis("local-read") == pid
        assert b.whereis("never-registered") is None
        # The module-level function reads the current node's replica the same way.
        assert on_node(b, distable.whereis, "local-read") == pid
        assert on_node(b, distable.whereis, "never-registered") is None
    finally:
        del b.transport.post


async def test_send_cast_and_call_by_name_reach_the_process_from_every_node(
    cluster: Cluster, three: list[Node]
) -> None:
    pid = await three[0].register("target", apps.Counter, key="target")
    await eventually(lambda: everywhere(cluster, "target", pid))
    for i, node in enumerate(three):
        node.cast("target", ("add", 10))
        node.send("target", ("hello", i))
        assert await node.call("target", "incr") == 10 * (i + 1) + i + 1
    assert await three[1].call("target", "get") == (33, pid.node)
    handled = await three[2].call("target", "handled")
    assert handled[:3] == [("cast", ("add", 10)), ("info", ("hello", 0)), ("call", "incr")]


async def test_send_cast_and_call_to_an_unknown_name_raise_name_not_found(cluster: Cluster, three: list[Node]) -> None:
    for node in three:
        with pytest.raises(NameNotFound) as info:
            node.send("nobody", "hi")
        assert info.value.name == "nobody"
        with pytest.raises(NameNotFound):
            node.cast(("no", "body"), "hi")
        with pytest.raises(NameNotFound):
            await node.call("nobody", "hi")


async def test_register_of_a_taken_name_raises_already_registered_with_the_existing_pid(
    cluster: Cluster, three: list[Node]
) -> None:
    pid = await three[0].register("taken", apps.Counter, key="taken")
    await eventually(lambda: everywhere(cluster, "taken", pid))
    for node in three:
        with pytest.raises(AlreadyRegistered) as info:
            await node.register("taken", apps.Counter, key="taken")
        assert info.value.pid == pid
        assert info.value.name == "taken"
        assert str(info.value) == f"'taken' already registered to {pid!r}"
    assert apps.INITS["taken"] == 1


def _messages_to(node: Node, peer: str) -> int:
    return sum(p.messages_out for p in node.statistics().transport.peers if p.name == peer)


# An init that suspends (Counter), and none (Agent: the process starts without a loop turn).
@pytest.mark.parametrize("factory", [apps.Counter, apps.Agent])
async def test_concurrent_registrations_share_deltas_and_are_each_visible_on_the_caller_when_they_return(
    cluster: Cluster, three: list[Node], factory: type[distable.Process]
) -> None:
    # Requests that reach the owner together are served together: one Delta per peer for
    # all their claims, sent before their replies, so each caller still reads its own write
    # at once (guarantee 1) and a third node gets a few Deltas, not one per name.
    a, b, c = three
    ring = a.placement()
    names = [f"rywc-{i}" for i in range(1000) if ring.owner(f"rywc-{i}") == b.name][:100]
    seen: dict[str, Pid | None] = {}
    kwargs: dict[str, Any] = {"key": 0} if factory is apps.Counter else {}

    async def register(name: str) -> Pid:
        pid = await a.register(name, factory, **kwargs)
        seen[name] = a.whereis(name)  # read at once, before anything else runs here
        return pid

    before = _messages_to(b, c.name)
    pids = await asyncio.gather(*(register(name) for name in names))
    assert {pid.node for pid in pids} == {b.name}
    assert [seen[name] for name in names] == pids
    assert _messages_to(b, c.name) - before < len(names) // 4  # not one Delta per registration
    await eventually(lambda: all(everywhere(cluster, name, pid) for name, pid in zip(names, pids, strict=True)))


async def test_register_race_on_the_owner_answers_already_registered_with_the_winner(
    cluster: Cluster, three: list[Node]
) -> None:
    # Both requests reach the owner before either is replicated: the owner serializes them.
    results = await asyncio.gather(
        *(node.register("raced", apps.Counter, key="raced") for node in three), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, Pid)]
    losers = [r for r in results if isinstance(r, AlreadyRegistered)]
    assert len(winners) == 1, results
    assert len(losers) == 2, results
    assert all(e.pid == winners[0] for e in losers)
    assert apps.INITS["raced"] == 1


async def test_whereis_or_register_returns_the_existing_pid(cluster: Cluster, three: list[Node]) -> None:
    pid = await three[0].register("existing", apps.Counter, key="existing")
    await eventually(lambda: everywhere(cluster, "existing", pid))
    for node in three:
        assert await node.whereis_or_register("existing", apps.Counter, key="existing") == pid
    assert apps.INITS["existing"] == 1


async def test_concurrent_whereis_or_register_from_three_nodes_starts_exactly_one_process(
    cluster: Cluster, three: list[Node]
) -> None:
    calls = [three[i % 3].whereis_or_register("solo", apps.Counter, key="solo") for i in range(50)]
    pids = await asyncio.gather(*calls)
    assert len(set(pids)) == 1, set(pids)
    assert apps.INITS["solo"] == 1
    assert cluster.live_copies("solo") == [pids[0]]
    await eventually(lambda: everywhere(cluster, "solo", pids[0]))


async def test_unregister_removes_the_name_everywhere_and_keeps_the_process(
    cluster: Cluster, three: list[Node]
) -> None:
    a, b, _ = three
    # One name hosted on a, unregistered from b (a remote request), one unregistered locally.
    remote_name = first_owned(a.name, a.placement().nodes, "unreg-remote")
    local_name = first_owned(a.name, a.placement().nodes, "unreg-local")
    pids = {name: await a.register(name, apps.Counter, key=name) for name in (remote_name, local_name)}
    await eventually(lambda: all(everywhere(cluster, n, p) for n, p in pids.items()))

    await b.unregister(remote_name)
    await a.unregister(local_name)
    await eventually(lambda: all(everywhere(cluster, n, None) for n in pids), message=cluster.describe)
    for pid in pids.values():
        assert cluster.process(pid).alive
        assert await b.call(pid, "incr") == 1  # still serving by pid
    assert cluster.agreed() == {}
    await b.unregister("never-registered")  # unknown: nothing happens


async def test_registered_lists_every_name_on_every_node(cluster: Cluster, three: list[Node]) -> None:
    expected = {("pair", i): await three[i % 3].register(("pair", i), apps.Counter) for i in range(9)}
    await eventually(lambda: all(dict(n.registered()) == expected for n in three), message=cluster.describe)
    assert all(len(n.registered()) == 9 for n in three)


async def test_register_name_registers_a_local_and_a_remote_pid(cluster: Cluster, three: list[Node]) -> None:
    a, b, c = three
    on_a = await a.spawn(apps.Counter, "by-hand")
    await a.register_name("by-hand-local", on_a)  # the pid is on the calling node
    await c.register_name("by-hand-remote", on_a)  # the pid is on another node
    await eventually(lambda: everywhere(cluster, "by-hand-local", on_a) and everywhere(cluster, "by-hand-remote", on_a))
    assert await b.call("by-hand-remote", "incr") == 1
    # Registering the same pid again under the same name is fine; another pid is not.
    await b.register_name("by-hand-local", on_a)
    other = await b.spawn(apps.Counter)
    with pytest.raises(AlreadyRegistered) as info:
        await b.register_name("by-hand-local", other)
    assert info.value.pid == on_a


async def test_register_name_is_never_moved_on_rebalance(cluster: Cluster) -> None:
    a, b = await cluster.start(2)
    newcomer = await cluster.add("late", join=False)
    future = [a.name, b.name, newcomer.name]
    name = first_owned(newcomer.name, future, "pinned")
    moved = first_owned(newcomer.name, future, "moves")
    pid = await b.spawn(apps.Counter, "pinned")
    await a.register_name(name, pid)
    moved_pid = await a.register(moved, apps.Counter, key="moves")
    await eventually(lambda: all(n.whereis(name) == pid for n in (a, b)))

    await cluster.join(newcomer)
    await cluster.wait_joined()
    # The factory-registered name moves to the newcomer; the register_name entry stays.
    await eventually(lambda: cluster.idle() and cluster.on_owners([moved]), message=cluster.describe)
    assert moved_pid != newcomer.whereis(moved)
    await eventually(lambda: everywhere(cluster, name, pid), message=cluster.describe)
    assert cluster.process(pid).alive
    assert apps.INITS["pinned"] == 1


async def test_register_name_of_a_dead_pid_raises_process_exited(cluster: Cluster, three: list[Node]) -> None:
    a, b, _ = three
    dead = await a.spawn(apps.Counter)
    await a.stop_process(dead)
    with pytest.raises(ProcessExited):
        await a.register_name("ghost-local", dead)
    with pytest.raises(ProcessExited):
        await b.register_name("ghost-remote", dead)
    never = Pid(a.name, a.incarnation, 10_000)
    with pytest.raises(ProcessExited):
        await b.register_name("ghost-never", never)
    assert all(n.registered() == [] for n in three)


@pytest.mark.parametrize(
    ("factory", "error"),
    [
        ("tests.registry.apps:NoSuchFactory", FactoryError),
        ("tests.registry.no_such_module:Counter", FactoryError),
        (apps.raising_factory, FactoryError),
        (apps.CrashingInit, FactoryError),
        (apps.not_a_pid, InvalidFactoryReturn),
        (apps.remote_pid, InvalidFactoryReturn),
    ],
    ids=["missing-attribute", "missing-module", "factory-raises", "init-raises", "not-a-pid", "pid-elsewhere"],
)
async def test_factory_errors_raise_typed_errors_and_leave_nothing_registered(
    cluster: Cluster, three: list[Node], factory: Any, error: type[Exception]
) -> None:
    a = three[0]
    placement = a.placement().nodes
    here = first_owned(a.name, placement, "bad-here")  # the owner is the calling node
    there = first_owned(three[1].name, placement, "bad-there")  # the owner is another node
    for name in (here, there):
        with pytest.raises(error):
            await a.register(name, factory, key=name)
        with pytest.raises(error):
            await a.whereis_or_register(name, factory, key=name)
    assert all(n.registered() == [] for n in three)
    assert all(registry_stats(n)["pending"] == 0 for n in three)
    # Nothing was left behind: the names register fine with a working factory.
    for name in (here, there):
        assert (await a.register(name, apps.start_counter, key=name)).node == a.placement().owner(name)


async def test_a_factory_whose_script_runs_its_loop_at_import_gets_a_factory_error_that_says_why(
    cluster: Cluster, three: list[Node]
) -> None:
    # Seen in a new-user trial: a client script registered a class of its own, the node
    # imported the script for it and ran its unguarded distable.run() inside its loop.
    a = three[0]
    placement = a.placement().nodes
    for name in (first_owned(a.name, placement, "script"), first_owned(three[1].name, placement, "script")):
        with pytest.raises(FactoryError, match=r"RuntimeError.*ran its start-up.*if __name__ == \"__main__\""):
            await a.register(name, "tests.registry.script_app:Counter")
    assert all(n.registered() == [] for n in three)


async def test_factory_not_importable_by_reference_raises_type_error_at_the_call_site(
    cluster: Cluster, three: list[Node]
) -> None:
    a = three[0]

    def closure() -> None:
        pass

    for factory in (lambda: None, closure, "no-colon-here", ":Counter", "tests.registry.apps:"):
        with pytest.raises(TypeError):
            await a.register("lambda", factory)
    assert all(n.registered() == [] for n in three)


async def test_unhashable_or_unencodable_name_raises_type_error(cluster: Cluster, three: list[Node]) -> None:
    a = three[0]
    for name in (["a", "list"], {"a": "dict"}, {1, 2}):
        with pytest.raises(TypeError):
            await a.register(name, apps.Counter)
        with pytest.raises(TypeError):
            await a.register_name(name, await a.spawn(apps.Counter))
    with pytest.raises(UnencodableValue):  # hashable but cannot cross the wire
        await a.register(object(), apps.Counter)
    assert all(n.registered() == [] for n in three)


async def test_client_node_registers_and_calls_but_owns_nothing(cluster: Cluster) -> None:
    servers = await cluster.start(2)
    client = await cluster.add("client", role="client")
    server_names = sorted(n.name for n in servers)
    for node in cluster.nodes:
        assert node.placement().nodes == server_names

    pids = [await client.register(f"from-client-{i}", apps.Counter, key=i) for i in range(10)]
    assert all(pid.node in server_names for pid in pids)
    assert await client.whereis_or_register("from-client-0", apps.Counter) == pids[0]
    await eventually(lambda: all(client.whereis(f"from-client-{i}") == pid for i, pid in enumerate(pids)))
    assert await client.call("from-client-3", "incr") == 1
    client.cast("from-client-3", ("add", 5))
    assert await client.call("from-client-3", "get") == (6, pids[3].node)
    assert client.registry.statistics().local_names == 0
    assert [p for p in client.runtime.processes() if isinstance(p, apps.Counter)] == []


async def test_process_start_with_a_name_registers_it_on_the_owner(cluster: Cluster, three: list[Node]) -> None:
    a, b, _ = three
    name = first_owned(b.name, a.placement().nodes, "started")
    agent = await a.spawn(apps.Agent)
    pid = await a.call(agent, ("start_named", name, "started", 7))
    assert pid.node == b.name  # started on the owner, not on the calling node
    await eventually(lambda: everywhere(cluster, name, pid))
    assert await a.call(name, "get") == (7, b.name)
    assert await a.call(agent, ("start_named", name, "started", 7)) == ("error", "AlreadyRegistered")
    # Without a name, start() still starts an unregistered process on the current node.
    plain = await on_node(a, asyncio.ensure_future, apps.Counter.start("plain"))
    assert plain.node == a.name
    assert a.registered() == [(name, pid)]


async def test_module_level_functions_act_on_the_current_node(cluster: Cluster, three: list[Node]) -> None:
    a, b, _ = three
    agent = await b.spawn(apps.Agent)
    assert await b.call(agent, ("current_node",)) == b.name
    pid = await b.call(agent, ("register", "via-module", "via-module"))
    assert pid.node == b.placement().owner("via-module")
    await eventually(lambda: everywhere(cluster, "via-module", pid))
    assert await b.call(agent, ("whereis", "via-module")) == pid
    assert await b.call(agent, ("call", "via-module", "incr")) == 1
    assert await a.call(agent, ("whereis", "nobody")) is None


async def test_unregister_of_a_pid_that_moved_meanwhile_follows_it_to_its_successor(cluster: Cluster) -> None:
    # The caller looked the name up before a handoff moved it: its request reaches the old
    # host, which passes it on, so the new owner's claim does not keep the name alive.
    a, b = await cluster.start(2)
    newcomer = await cluster.add("late", join=False)
    name = first_owned(newcomer.name, [a.name, b.name, newcomer.name], "moves-then-goes")
    old = await a.register(name, apps.Counter, key=name)
    await cluster.join(newcomer)
    await cluster.wait_joined()
    new = await eventually(lambda: (p := a.whereis(name)) is not None and p.node == newcomer.name and p)
    other = b if old.node == a.name else a
    assert await other.registry.runtime.call(other.registry._server(old.node), ["unregister", name, old], 5.0) == [
        "ok",
        True,
    ]
    await eventually(lambda: all(n.whereis(name) is None for n in cluster.nodes))
    assert await newcomer.call(new, "get") == (0, newcomer.name)  # the process itself keeps running


async def test_wait_joined_returns_once_the_replica_holds_the_clusters_names(cluster: Cluster) -> None:
    a, _ = await cluster.start(2)
    names = [f"joined-{i}" for i in range(60)]
    for name in names:
        await a.register(name, apps.Counter, key=name)
    late = await cluster.add("late", join=False)
    assert not await late.wait_joined(timeout=0.05)  # alone: nothing to join yet
    joining = asyncio.ensure_future(late.wait_joined(timeout=10))
    await cluster.join(late)
    assert await joining
    assert {name for name, _ in late.registered()} == set(names)  # at once, not eventually


async def test_a_node_runs_only_the_factories_its_config_allows(cluster: Cluster) -> None:
    # RegistryConfig.factories: a peer holding the cookie can no longer make a node call
    # any importable function ("os:system"); the refusal comes before any import.
    allowed = RegistryConfig(factories=("tests.registry.apps:Counter", "tests.registry.apps:start_*"))
    a, b = await cluster.start(2, registry=allowed)
    placement = a.placement().nodes
    for owner in (a, b):  # registered on the calling node, and on another node
        name = first_owned(owner.name, placement, "guarded")
        with pytest.raises(FactoryError, match="'os:system' is not allowed"):
            await a.register(name, "os:system", "touch /tmp/distable-must-not-exist")
        with pytest.raises(FactoryError, match="not allowed"):
            await a.register(name, apps.raising_factory)
        assert all(n.whereis(name) is None for n in (a, b))
        assert (await a.register(name, apps.Counter, key=name)).node == owner.name
        other = first_owned(owner.name, placement, "guarded-start")
        assert (await a.register(other, apps.start_counter, key=other)).node == owner.name
    assert "os" not in {ref.partition(":")[0] for ref in _factory_cache()}


def _factory_cache() -> dict[str, Any]:
    from distable.registry import _factory

    return _factory._cache
