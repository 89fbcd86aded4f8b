"""``distable node`` start-up order, with real node processes: a node fails before the
cluster sees it, imports its apps before anything can be handed to it, and nodes started
together wait for each other before their apps register (no duplicate, no conflict).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import Any

import pytest

from distable import Node, Static
from distable.testing import eventually, free_gossip_port
from tests._seed import seeded_rng
from tests.cli import cliapp, roomapp
from tests.cli.conftest import COOKIE, NodeProc, Processes, free_ports

pytestmark = pytest.mark.cluster


def static_options(shorts: list[str], ports: list[int]) -> list[str]:
    return [arg for short, port in zip(shorts, ports, strict=True) for arg in ("--static", f"{short}@127.0.0.1:{port}")]


async def events_about(node: str, about: str) -> list[dict[str, Any]]:
    """The events ``node`` recorded about node ``about`` (NodeUp, NodeDown...)."""
    async with Node("probe", cookie=COOKIE, role="client", cluster=Static([node])) as probe:
        await eventually(lambda: node in probe.nodes())
        return [e for e in await probe.events_of(node) if e.get("node") == about]


async def test_a_node_that_cannot_start_fails_with_one_line_before_the_cluster_sees_it(processes: Processes) -> None:
    # Each mistake is found before the node joins: no other node ever sees it come and go
    # (today a busy dashboard port was found after the node had joined and taken
    # handoffs, and a missing app after the join wait).
    port_a, port_b = free_ports(2)
    common = ["--cookie", COOKIE, *static_options(["a", "b"], [port_a, port_b]), "--membership", "local"]
    a = await processes.start("a", "--port", str(port_a), *common, "--log-level", "warning")
    b_name = f"b@127.0.0.1:{port_b}"
    app = ["--app", "tests.cli.cliapp:start", "--join-timeout", "600"]  # the wait would outlast the test
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        cases = [
            (
                ["--dashboard", f"127.0.0.1:{busy}", *app],
                f"cannot serve the dashboard on 127.0.0.1:{busy}: Address already in use",
            ),
            (
                ["--metrics", f"127.0.0.1:{busy}", *app],
                f"cannot serve metrics on 127.0.0.1:{busy}: Address already in use",
            ),
            (
                ["--app", "tests.cli.no_such_app:start", "--join-timeout", "600"],
                "cannot import app module 'tests.cli.no_such_app': ModuleNotFoundError: "
                "No module named 'tests.cli.no_such_app'",
            ),
            (
                ["--app", "tests.cli.cliapp:nothing", "--join-timeout", "600"],
                "app module 'tests.cli.cliapp' has no 'nothing'",
            ),
        ]
        for args, error in cases:
            b = await processes.spawn("b", "--port", str(port_b), *common, *args, "--log-level", "warning")
            assert await b.wait() == 1, b.log()
            assert b.log().splitlines() == [f"distable: error: {error}"]
    assert await events_about(a.name, b_name) == []
    assert a.proc.returncode is None


async def test_a_joining_node_decodes_the_app_types_in_the_state_handed_to_it(processes: Processes) -> None:
    # The rooms' state holds register_type dataclasses. b imports its app before it joins,
    # so a's handoffs to b decode at once: none is refused and retried ("unregistered user
    # type"), which froze the moving rooms for seconds.
    port_a, port_b = free_ports(2)
    static = static_options(["a", "b"], [port_a, port_b])
    common = ["--cookie", COOKIE, *static, "--membership", "local", "--app", "tests.cli.roomapp:start"]
    a = await processes.start("a", "--port", str(port_a), *common, "--join-timeout", "0")
    names = [a.name, f"b@127.0.0.1:{port_b}"]
    async with Node("probe", cookie=COOKIE, role="client", cluster=Static(names)) as probe:
        await eventually(lambda: all(probe.whereis(room) for room in roomapp.ROOMS))
        for room in roomapp.ROOMS:
            probe.cast(room, ("post", "ann", f"hello {room}"))
        for room in roomapp.ROOMS:  # after the casts: the same link, in order
            assert (await probe.call(room, "get"))[0] == [roomapp.Message("ann", f"hello {room}")]

        b = await processes.start("b", "--port", str(port_b), *common)

        def moved() -> bool:
            where = {room: probe.whereis(room) for room in roomapp.ROOMS}
            placement = probe.placement()
            return len(placement.nodes) == 2 and all(
                pid is not None and pid.node == placement.owner(room) for room, pid in where.items()
            )

        await eventually(moved, timeout=30, message=lambda: f"rooms not placed; a: {a.log()[-2000:]}")
        assert any(probe.whereis(room).node == b.name for room in roomapp.ROOMS)  # type: ignore[union-attr]
        for room in roomapp.ROOMS:
            messages, _ = await probe.call(room, "get")
            assert messages == [roomapp.Message("ann", f"hello {room}")]
        stats = (await probe.statistics_of(a.name)).registry
        assert stats.handoffs_aborted == 0, a.log()
    assert "unregistered user type" not in a.log() + b.log()


@pytest.mark.parametrize("discovery", ["gossip", "static"])
async def test_nodes_started_together_make_no_duplicate_and_no_conflict(processes: Processes, discovery: str) -> None:
    # Four nodes start at the same moment, and each app registers the same names with
    # whereis_or_register. A node whose join wait ended at the first peer it met
    # registered on a partial ring: its copies met the others' as a "netsplit" conflict.
    # Gossip nodes wait until no new node has appeared for a moment; the static ones are
    # told how many to expect (--expect).
    rng = seeded_rng()
    for _ in range(3):
        ports = free_ports(4)
        shorts = ["a", "b", "c", "d"]
        if discovery == "static":
            found = [*static_options(shorts, ports), "--expect", str(len(shorts))]
        else:
            found = ["--cluster", "gossip", "--gossip-port", str(free_gossip_port(rng=rng))]
        common = ["--cookie", COOKIE, *found, "--membership", "local", "--app", "tests.cli.cliapp:start_many"]
        spawned = [
            await processes.spawn(short, "--port", str(port), *common, "--log-level", "info")
            for short, port in zip(shorts, ports, strict=True)
        ]
        nodes = list(await asyncio.gather(*(node.up() for node in spawned)))
        await check_each_name_runs_once(nodes)
        for node in nodes:
            node.proc.kill()
            await node.wait()
        conflicts = [line for node in nodes for line in node.log().splitlines() if "netsplit" in line]
        assert conflicts == []


async def check_each_name_runs_once(nodes: list[NodeProc]) -> None:
    names = [node.name for node in nodes]
    async with Node("probe", cookie=COOKIE, role="client", cluster=Static(names)) as probe:
        await eventually(lambda: set(names) <= set(probe.nodes()) and all(map(probe.whereis, cliapp.MANY)))
        stats = [(await probe.statistics_of(name)).registry for name in names]
        assert [s.conflicts for s in stats] == [0] * len(names)
        assert sum(s.local_names for s in stats) == len(cliapp.MANY)  # each name runs once
        for name in cliapp.MANY:
            pid = probe.whereis(name)
            assert pid is not None
            assert await probe.call(pid, "get") == (name, 0, pid.node)


async def test_nodes_started_together_on_one_port_leave_exactly_one_up(processes: Processes) -> None:
    (port,) = free_ports(1)
    common = ["--port", str(port), "--cookie", COOKIE, "--cluster", "none", "--log-level", "warning"]
    nodes = await asyncio.gather(*(processes.spawn(f"n{i}", *common) for i in range(4)))
    up, failed = [], []
    for node in nodes:
        assert node.proc.stdout is not None
        line = (await asyncio.wait_for(node.proc.stdout.readline(), 30.0)).decode()
        if line.startswith("distable: node "):
            up.append(node.short)
        else:
            assert await node.wait() == 1, node.log()
            assert f"cannot listen on 127.0.0.1:{port}" in node.log(), node.log()
            failed.append(node.short)
    assert len(up) == 1, f"up: {up}, failed: {failed}"


async def test_a_gossip_node_with_another_cookie_warns_that_it_heard_another_cluster(processes: Processes) -> None:
    # The usual mistake: a node started with another cookie than its cluster's. With gossip
    # no node dials, so nothing refuses it; it hears the others' packets, drops them as
    # foreign, finds no one, and starts alone. It must say why at WARNING, not only "found
    # no other node" (the first node of a new cluster says that too).
    gossip = ["--cluster", "gossip", "--gossip-port", str(free_gossip_port(rng=seeded_rng()))]
    common = [*gossip, "--port", "0", "--membership", "local", "--app", "tests.cli.cliapp:start"]
    first = await processes.spawn("a", "--cookie", COOKIE, *common, "--log-level", "info")
    await first.up()
    stray = await processes.spawn("s", "--cookie", "not-the-cookie", *common)  # waits 3 s to join: 2-4 packets
    await stray.up()
    log = stray.log()
    [line] = [line for line in log.splitlines() if "gossip packet(s) of another cluster" in line]
    assert "WARNING" in line, log
    assert "--cookie-file" in log, log


async def test_a_node_stopped_as_a_whole_says_so_when_it_wakes_and_blames_no_handler(processes: Processes) -> None:
    # SIGSTOP (a debugger, a paused VM) stops every thread of the node: its event loop's
    # beat is late when it wakes, as after a handler that held the loop. It used to say
    # "event loop held for 1.5 s so far, at .../asyncio/runners.py in Runner.run", which
    # sends the user looking for a blocking handler; it now says it was stopped, and that
    # its peers may have declared it failed meanwhile.
    node = await processes.start("a", "--port", "0", "--cookie", COOKIE, "--cluster", "none", "--log-level", "info")
    node.proc.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(1.5)  # the stop itself (block_warning is 0.25 s)
    finally:
        node.proc.send_signal(signal.SIGCONT)
    await eventually(lambda: "this process was stopped for" in node.log(), timeout=10, message=node.log)
    [line] = [line for line in node.log().splitlines() if "this process was stopped for" in line]
    assert "WARNING" in line, line
    assert "its peers may have declared this node failed" in line, line
    for blame in ("event loop held", "event loop stalled", "event loop free again", "blocked the event loop"):
        assert blame not in node.log(), node.log()
