"""``distable node`` as real OS processes, asked by ``distable status / whereis / registered``.

Two server nodes (``a`` and ``b``) run ``tests.cli.cliapp:start`` on loopback with a
static cluster on free ports; every query is its own ``python -m distable.cli`` process,
as an operator would run it. Waits read the processes' output (the node's "up" line, the
queries' answers) with deadlines; no sleeps. Every process is killed at the end, whatever
happens.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trustme

from distable import Node, Static
from distable.testing import eventually
from tests.cli import cliapp
from tests.cli.conftest import COOKIE, TIMEOUT, Cluster, Processes, distable, free_ports

pytestmark = pytest.mark.cluster


def expected_names() -> set[Any]:
    """Every name the cluster's app registers, as ``registered --json`` writes it."""
    return {json.dumps(n) for n in [*cliapp.names("a"), *cliapp.names("b")]}


async def test_status_whereis_registered(cluster: Cluster) -> None:
    # registered: every name of the app, each on a and b, the answer waited for a full replica
    entries = (await distable("registered", "--json", *cluster.discovery)).json()
    assert {json.dumps(e["name"]) for e in entries} == expected_names()
    assert {e["node"] for e in entries} <= {cluster.a.name, cluster.b.name}
    where = {json.dumps(e["name"]): e for e in entries}

    status = (await distable("status", "--json", *cluster.discovery)).json()
    assert [row["name"] for row in status] == sorted([cluster.a.name, cluster.b.name])
    assert {row["role"] for row in status} == {"server"}
    assert sum(row["local_names"] for row in status) == len(expected_names())
    for row in status:
        assert row["local_names"] == sum(1 for e in entries if e["node"] == row["name"])
        assert row["peers"] >= 1
        assert row["processes"] >= row["local_names"]
        assert row["uptime"] > 0

    found = (await distable("whereis", "a-1", "--json", *cluster.discovery)).json()
    assert found == where['"a-1"']
    # A tuple name, given as JSON (lists stand for tuples)
    found = (await distable("whereis", "--json-name", '["pair", 1]', "--json", *cluster.discovery)).json()
    assert found == where['["pair", 1]']
    assert found["name"] == ["pair", 1]
    # The same name as a plain string is another name, not registered: exit code 1
    missing = await distable("whereis", "pair", "--json", *cluster.discovery)
    assert missing.code == 1
    assert json.loads(missing.stdout) == {"name": "pair", "pid": None, "node": None}
    missing = await distable("whereis", "nobody", *cluster.discovery)
    assert missing.code == 1
    assert missing.stderr.strip().startswith("distable: error: 'nobody' is not registered")

    limited = (await distable("registered", "--json", "--limit", "3", *cluster.discovery)).json()
    assert len(limited) == 3

    # Tables, for people: one row per node / per name
    table = await distable("status", *cluster.discovery)
    assert table.code == 0, table
    assert cluster.a.name in table.stdout
    assert cluster.b.name in table.stdout
    table = await distable("registered", *cluster.discovery)
    assert table.code == 0, table
    assert "('pair', 1)" in table.stdout
    assert f"{len(expected_names())} name(s)" in table.stdout


async def test_wrong_cookie_is_one_line_that_says_so_without_waiting(cluster: Cluster) -> None:
    # The nodes answer "not authorized" to a wrong proof of the cookie: the query fails on
    # that answer (long before its timeout), naming each node and the cause.
    static = cluster.discovery[2:]
    answer = await distable("status", "--cookie", "not-the-cookie", "--timeout", str(TIMEOUT), *static)
    assert answer.code == 1
    lines = answer.stderr.strip().splitlines()
    assert len(lines) == 1, answer
    assert lines[0].startswith("distable: error: "), answer
    for node in (cluster.a, cluster.b):
        assert f"{node.name} refused this node: not authorized (its cookie differs" in lines[0], answer
    assert answer.stdout == ""


async def test_a_wrong_node_name_or_a_closed_port_is_said_without_waiting(cluster: Cluster) -> None:
    _, _, port_a = cluster.a.name.rpartition(":")
    answer = await distable(
        "whereis", "a-1", "--cookie", COOKIE, "--static", f"x@127.0.0.1:{port_a}", "--timeout", str(TIMEOUT)
    )
    assert answer.code == 1
    expected = f"the node at 127.0.0.1:{port_a} is not x@127.0.0.1:{port_a} (this is {cluster.a.name})"
    assert expected in answer.stderr, answer
    [closed] = free_ports(1)
    answer = await distable("whereis", "a-1", "--cookie", COOKIE, "--connect", f"z@127.0.0.1:{closed}")
    assert answer.code == 1
    assert f"connection refused at 127.0.0.1:{closed} (nothing listens there)" in answer.stderr, answer


async def test_a_node_whose_cookie_every_node_refuses_says_it_runs_alone(
    cluster: Cluster, processes: Processes
) -> None:
    static = cluster.discovery[2:]
    stray = await processes.spawn("stray", "--cookie", "not-the-cookie", *static, "--membership", "local")

    def said() -> bool:
        log = stray.log()
        return "ERROR" in log and "refused its cookie" in log and "runs on its own" in log

    await eventually(said, timeout=TIMEOUT, message=lambda: f"no ERROR line; log: {stray.log()}")
    assert f"{cluster.a.name} refused this node: not authorized" in stray.log()


async def test_sigterm_hands_names_off_and_exits_0(cluster: Cluster) -> None:
    before = (await distable("registered", "--json", *cluster.discovery)).json()
    assert any(e["node"] == cluster.a.name for e in before)  # a has something to hand off

    cluster.a.terminate()
    assert await cluster.a.wait() == 0, cluster.a.stderr.read_text()

    static_b = ["--cookie", COOKIE, "--static", cluster.b.name]
    after = (await distable("registered", "--json", *static_b)).json()
    assert {json.dumps(e["name"]) for e in after} == expected_names()
    assert {e["node"] for e in after} == {cluster.b.name}
    status = (await distable("status", "--json", *static_b)).json()
    assert [(row["name"], row["local_names"]) for row in status] == [(cluster.b.name, len(expected_names()))]


async def test_tls_cluster(processes: Processes, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "node.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls = ["--tls-cert", str(tmp_path / "node.pem"), "--tls-key", str(tmp_path / "node.pem")]
    tls += ["--tls-ca", str(tmp_path / "ca.pem")]
    (port,) = free_ports(1)
    node = await processes.start(
        "t", "--port", str(port), "--cookie", COOKIE, "--cluster", "none", "--app", "tests.cli.cliapp:start", *tls
    )
    status = (await distable("status", "--json", "--cookie", COOKIE, "--connect", node.name, *tls)).json()
    assert [(row["name"], row["local_names"]) for row in status] == [(node.name, cliapp.COUNT)]
    plain = await distable("status", "--cookie", COOKIE, "--connect", node.name, "--timeout", "1")
    assert plain.code == 1
    assert "no node of the cluster answered within 1 s" in plain.stderr


async def test_dashboard_and_metrics(processes: Processes) -> None:
    node = await processes.start(
        "w", "--port", "0", "--cookie", COOKIE, "--cluster", "none", "--dashboard", "127.0.0.1:0", "--metrics", "0"
    )
    urls = dict(re.findall(r"(dashboard|metrics) (http://\S+?)(?:,|$)", node.details))
    assert set(urls) == {"dashboard", "metrics"}, node.details
    for url in urls.values():
        assert url.startswith("http://127.0.0.1:")
        body = await asyncio.to_thread(fetch, url.rstrip("/") + "/metrics")
        assert "distable" in body
    node.terminate()
    assert await node.wait() == 0


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        body: bytes = response.read()
    return body.decode()


async def test_a_restarted_node_joins_before_its_app_registers_so_no_state_is_lost(processes: Processes) -> None:
    # Both nodes run an app that registers the same names (whereis_or_register). A node
    # that registered before it had seen the cluster would start its own copies, and as
    # the ring owner of some names its fresh copies would win over the running ones:
    # their counts would restart from 0 after a rolling restart.
    port_a, port_b = free_ports(2)
    static = ["--static", f"a@127.0.0.1:{port_a}", "--static", f"b@127.0.0.1:{port_b}"]
    common = ["--cookie", COOKIE, *static, "--membership", "local", "--app", "tests.cli.cliapp:start_shared"]
    common += ["--log-level", "warning", "--join-timeout", "1"]
    a = await processes.start("a", "--port", str(port_a), *common)
    b = await processes.start("b", "--port", str(port_b), *common)
    async with Node("probe", cookie=COOKIE, role="client", cluster=Static([a.name, b.name])) as client:
        await eventually(lambda: all(client.whereis(n) for n in cliapp.SHARED) and len(client.nodes()) == 2)
        for _ in range(3):
            for name in cliapp.SHARED:
                client.cast(name, "incr")
        for name in cliapp.SHARED:
            assert (await client.call(name, "get"))[1] == 3  # after the casts: the same link, in order

        b.terminate()
        assert await b.wait() == 0, b.stderr.read_text()
        b = await processes.start("b", "--port", str(port_b), *common)
        await eventually(lambda: b.name in client.nodes() and all(client.whereis(n) for n in cliapp.SHARED))
        counts = {name: (await client.call(name, "get"))[1] for name in cliapp.SHARED}
        assert counts == dict.fromkeys(cliapp.SHARED, 3)
        for name in cliapp.SHARED:  # and each runs once: the replica's pid is the one answering
            pid = client.whereis(name)
            assert pid is not None
            assert (await client.call(pid, "get"))[2] == pid.node
    conflicts = [line for line in (a.log() + b.log()).splitlines() if "netsplit" in line]
    assert conflicts == []
