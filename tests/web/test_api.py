"""``/api/cluster`` and ``/api/events``: what the nodes hold, every node listed even when
it does not answer, and a clear 400 (never a 500) for a bad query."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from typing import Any

import aiohttp
import pytest

from distable import Node, Pid
from distable.node._info import INFO_SERVER_ID
from distable.ring import HashRing
from distable.testing import event_streams, eventually
from distable.web import start_web

from .conftest import WORKER, Nodes, get_json

NAMES = 30


async def register_all(node: Node, count: int, prefix: str = "w") -> None:
    await asyncio.gather(*(node.register((prefix, i), WORKER, (prefix, i)) for i in range(count)))


async def test_cluster_counts_equal_what_the_nodes_hold(nodes: Nodes, http: aiohttp.ClientSession) -> None:
    a, b, c = await nodes.start(3)
    await register_all(b, NAMES)
    await eventually(lambda: nodes.idle() and nodes.agreed(NAMES), message=nodes.describe)
    async with await start_web(a, port=0) as web:
        status, snapshot = await get_json(http, web.url + "/api/cluster")
    assert status == 200
    assert snapshot["node"] == a.name
    assert snapshot["counts"] == {
        "nodes": 3,
        "servers": 3,
        "unreachable": 0,
        "names": NAMES,
        "processes": sum(n.statistics().runtime.processes for n in (a, b, c)),
    }
    rows = {row["name"]: row for row in snapshot["nodes"]}
    assert [row["name"] for row in snapshot["nodes"]] == [a.name, *sorted([b.name, c.name])]
    for node in (a, b, c):
        stats = node.statistics()
        row = rows[node.name]
        assert row["error"] is None
        assert row["role"] == "server"
        assert row["processes"] == stats.runtime.processes
        assert row["local_names"] == stats.registry.local_names == sum(p.node == node.name for _, p in a.registered())
        assert row["names"] == NAMES
        assert row["peers"] == 2
        assert row["handoffs"] == {"started": 0, "completed": 0, "aborted": 0}
        assert row["uptime"] > 0
    ring = snapshot["ring"]
    assert ring["placement"] == sorted(n.name for n in (a, b, c))
    expected = HashRing(ring["placement"]).shares()
    for entry in ring["nodes"]:
        assert entry["hash_share"] == pytest.approx(expected[entry["node"]])
        assert entry["names"] == rows[entry["node"]]["local_names"]
        assert entry["name_share"] == pytest.approx(entry["names"] / NAMES)
    assert sum(e["name_share"] for e in ring["nodes"]) == pytest.approx(1.0)


async def test_a_node_that_does_not_answer_is_listed_with_its_error(nodes: Nodes, http: aiohttp.ClientSession) -> None:
    a, b = await nodes.start(2)
    await b.stop_process(Pid(b.name, b.incarnation, INFO_SERVER_ID))  # b can no longer answer
    async with await start_web(a, port=0) as web:
        status, snapshot = await get_json(http, web.url + "/api/cluster?timeout=0.5")
        assert status == 200
        rows = {row["name"]: row for row in snapshot["nodes"]}
        assert rows[a.name]["error"] is None
        assert rows[b.name]["error"], rows[b.name]
        assert snapshot["counts"]["unreachable"] == 1
        assert snapshot["counts"]["nodes"] == 2
        status, batch = await get_json(http, web.url + "/api/events")
        assert status == 200
        assert set(batch["errors"]) == {b.name}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("/api/cluster?timeout=abc", "timeout must be a number of seconds"),
        ("/api/cluster?timeout=0", "timeout must be a number of seconds"),
        ("/api/cluster?timeout=nan", "timeout must be a number of seconds"),
        ("/api/cluster?timeout=1e9", "timeout must be a number of seconds"),
        ("/api/cluster?node=x", "unknown query parameter 'node'"),
        ("/api/cluster?timeout=1&timeout=2", "given more than once"),
        ("/api/events?since=not-json", "since must be a JSON object"),
        ("/api/events?since=[1,2]", "since must be a JSON object"),
        ('/api/events?since={"a":-1}', "must be a non-negative integer"),
        ('/api/events?since={"a":"3"}', "must be a non-negative integer"),
        ('/api/events?since={"a":1.5}', "must be a non-negative integer"),
        ('/api/events?since={"a":true}', "must be a non-negative integer"),
        ("/api/events?limit=3", "unknown query parameter 'limit'"),
        ("/api/events/stream?since=nope", "since must be a JSON object"),
        ("/api/history?since=abc", "since must be a sample time"),
        ("/api/history?since=inf", "since must be a sample time"),
        ("/api/history?since=1&since=2", "given more than once"),
        ("/api/history?limit=3", "unknown query parameter 'limit'"),
    ],
)
async def test_bad_query_gets_a_clear_400(nodes: Nodes, http: aiohttp.ClientSession, query: str, expected: str) -> None:
    (a,) = await nodes.start(1)
    async with await start_web(a, port=0) as web:
        path, _, params = query.partition("?")
        url = web.url + path + "?" + urllib.parse.quote(params, safe="=&")
        async with http.get(url) as response:
            assert response.status == 400, await response.text()
            body = await response.json()
        assert expected in body["error"], body
        async with http.get(web.url + "/api/cluster") as response:
            assert response.status == 200  # and the server keeps serving


async def test_read_only(nodes: Nodes, http: aiohttp.ClientSession) -> None:
    (a,) = await nodes.start(1)
    async with await start_web(a, port=0) as web:
        for path in ("/", "/metrics", "/api/cluster", "/api/events", "/api/history"):
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                async with http.request(method, web.url + path) as response:
                    assert response.status == 405, (method, path)
        async with http.get(web.url + "/") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            page = await response.text()
        for asset in ("/static/app.js", "/static/style.css", "/static/uPlot.iife.min.js", "/static/uPlot.min.css"):
            assert asset in page
            async with http.get(web.url + asset) as response:
                assert response.status == 200, asset
        async with http.get(web.url + "/static/../../etc/passwd") as response:
            assert response.status == 404


async def test_events_are_merged_from_every_node_and_name_floods_counted(
    nodes: Nodes, http: aiohttp.ClientSession
) -> None:
    a, b = await nodes.start(2)
    async with await start_web(a, port=0) as web:
        await register_all(a, 10)
        await eventually(lambda: nodes.agreed(10), message=nodes.describe)
        status, batch = await get_json(http, web.url + "/api/events")
        assert status == 200
        assert batch["errors"] == {}
        ups = {(e["source"], e["node"]) for e in batch["events"] if e["type"] == "NodeUp"}
        assert ups == {(a.name, b.name), (b.name, a.name)}
        assert not any(e["type"] == "NameRegistered" for e in batch["events"])
        # Every node publishes a NameRegistered for every name it learns of.
        assert batch["skipped"]["NameRegistered"] == 20
        times = [e["time"] for e in batch["events"]]
        assert times == sorted(times)
        since = batch["since"]
        assert set(since) == {a.name, b.name}

        # Nothing new since the cursor: nothing again.
        status, again = await get_json(http, web.url + "/api/events?since=" + urllib.parse.quote(json.dumps(since)))
        assert (status, again["events"], again["skipped"]) == (200, [], {})
        assert again["since"] == since

        # A third node joins: both see it, and the cursor brings only that.
        c = await nodes.add("late")
        status, new = await get_json(http, web.url + "/api/events?since=" + urllib.parse.quote(json.dumps(since)))
        ups = {(e["source"], e["node"]) for e in new["events"] if e["type"] == "NodeUp"}
        assert {(a.name, c.name), (b.name, c.name)} <= ups
        assert (c.name, a.name) in ups  # c's own journal, from its first event on
        assert all(e["seq"] > since.get(e["source"], 0) for e in new["events"])


async def read_sse(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The next ``data:`` message of an event stream, with its ``id``."""
    fields: dict[str, str] = {}
    while True:
        line = (await response.content.readline()).decode()
        if line == "":
            raise EOFError("the stream ended")
        line = line.rstrip("\n")
        if line == "":
            if "data" in fields:
                return {"id": fields.get("id"), **json.loads(fields["data"])}
            fields.clear()
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value


async def test_event_stream_sends_what_is_new_and_ends_with_the_client(
    nodes: Nodes, http: aiohttp.ClientSession
) -> None:
    a, _ = await nodes.start(2)
    async with await start_web(a, port=0) as web:
        async with http.get(web.url + "/api/events/stream") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            first = await read_sse(response)
            assert {e["type"] for e in first["events"]} == {"NodeUp"}
            assert json.loads(first["id"]) == first["since"]
            c = await nodes.add("late")
            seen: list[dict[str, Any]] = []

            async def saw_c() -> bool:
                seen.extend((await read_sse(response))["events"])
                return any(e["type"] == "NodeUp" and e["node"] == c.name for e in seen)

            await eventually(saw_c, timeout=10.0)
            assert len(web._streams) == 1
        # The client hung up: the server's stream ends by itself.
        await eventually(lambda: not web._streams, timeout=5.0, message="the stream outlived its client")

        # Resuming with Last-Event-ID sends nothing old.
        async with http.get(web.url + "/api/events/stream", headers={"Last-Event-ID": first["id"]}) as response:
            resumed = await read_sse(response)
            assert all(e["seq"] > first["since"].get(e["source"], 0) for e in resumed["events"])


async def test_close_ends_open_streams(nodes: Nodes, http: aiohttp.ClientSession) -> None:
    (a,) = await nodes.start(1)
    web = await start_web(a, port=0)
    async with http.get(web.url + "/api/events/stream") as response:
        assert response.status == 200
        await eventually(lambda: len(web._streams) == 1)
        await asyncio.wait_for(web.close(), 5.0)
        assert not web._streams
        assert web._task is not None
        assert web._task.done()
    await web.close()  # twice is fine


async def test_start_errors(nodes: Nodes) -> None:
    unstarted = Node("x", cookie="c")
    with pytest.raises(RuntimeError, match="not started"):
        await start_web(unstarted, port=0)
    (a,) = await nodes.start(1)
    with pytest.raises(ValueError, match="port"):
        await start_web(a, port=70000)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve HTTP on 127.0.0.1:{port}"):
            await start_web(a, port=port)
    assert event_streams(a) == 0  # the failed servers closed their event streams
