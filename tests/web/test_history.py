"""The charts' history: bounded ring buffers aligned with the sample times, rates from
counters, and ``/api/history`` serving it (all of it, or what follows ``?since=``)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

import distable.web._server as web_server
from distable.testing import eventually
from distable.web import start_web
from distable.web._history import CLUSTER_SERIES, NODE_SERIES, History

from .conftest import Nodes, get_json
from .test_api import register_all

T0 = 1_700_000_000.0


def row(
    name: str, *, names: int = 0, processes: int = 0, lag: float = 0.001, incarnation: int = 1, **counters: int
) -> dict[str, Any]:
    """A ``node_row`` with what the history reads."""
    return {
        "name": name,
        "incarnation": incarnation,
        "local_names": names,
        "processes": processes,
        "loop_lag": lag,
        "handoffs": {"started": 0, "completed": counters.get("handoffs", 0), "aborted": 0},
        "restarts": counters.get("restarts", 0),
        "calls": counters.get("calls", 0),
        "error": None,
    }


def down(name: str) -> dict[str, Any]:
    return {"name": name, "error": "CallTimeout: no answer"}


def snapshot(time: float, *rows: dict[str, Any]) -> dict[str, Any]:
    answered = [r for r in rows if r["error"] is None]
    return {
        "time": time,
        "nodes": list(rows),
        "counts": {
            "nodes": len(rows),
            "servers": len(answered),
            "unreachable": len(rows) - len(answered),
            "names": sum(r["local_names"] for r in answered),
            "processes": sum(r["processes"] for r in answered),
        },
    }


def assert_aligned(data: dict[str, Any]) -> None:
    """Every series of an ``as_json`` answer is as long as its times."""
    length = len(data["time"])
    assert list(data["cluster"]) == list(CLUSTER_SERIES)
    assert all(len(values) == length for values in data["cluster"].values()), data
    for name, series in data["nodes"].items():
        assert list(series) == list(NODE_SERIES), name
        assert all(len(values) == length for values in series.values()), (name, data)


def test_the_history_keeps_the_last_samples_aligned_and_turns_counters_into_rates() -> None:
    history = History(size=4, max_nodes=2)
    history.record(snapshot(T0, row("a", names=5, calls=10), row("b", names=3, calls=0)))
    history.record(snapshot(T0 + 2, row("a", names=4, calls=30, handoffs=2), row("b", names=4, calls=4, handoffs=1)))
    data = history.as_json()
    assert_aligned(data)
    assert data["time"] == [T0, T0 + 2]
    assert data["nodes"]["a"]["names"] == [5, 4]
    assert data["nodes"]["a"]["calls"] == [None, 10.0]  # (30 - 10) / 2 s; no rate without a previous sample
    assert data["nodes"]["b"]["handoffs"] == [None, 0.5]
    assert data["cluster"]["calls"] == [None, 12.0]
    assert data["cluster"]["names"] == [8, 8]

    # c joins beyond max_nodes: no series of its own, but its rates count cluster-wide.
    # b stops answering (a gap); a restarts (a new incarnation: its counters start anew).
    history.record(snapshot(T0 + 3, row("a", incarnation=2, calls=1), down("b"), row("c", calls=100)))
    history.record(snapshot(T0 + 4, row("a", incarnation=2, calls=3), down("b"), row("c", calls=105)))
    data = history.as_json()
    assert_aligned(data)
    assert sorted(data["nodes"]) == ["a", "b"]
    assert data["nodes"]["b"]["processes"] == [0, 0, None, None]
    assert data["nodes"]["a"]["calls"] == [None, 10.0, None, 2.0]
    assert data["cluster"]["calls"] == [None, 12.0, None, 7.0]
    assert data["cluster"]["unreachable"] == [0, 0, 1, 1]

    # Bounded: the oldest samples go; a node with nothing left in the window goes too,
    # which frees its place for c.
    for i in range(5, 9):
        history.record(snapshot(T0 + i, row("a", incarnation=2), down("b"), row("c")))
    assert len(history.times) == 4
    assert all(len(s) == 4 for s in history.cluster.values())
    data = history.as_json()
    assert_aligned(data)
    assert data["time"] == [T0 + 5, T0 + 6, T0 + 7, T0 + 8]
    assert sorted(history.nodes) == ["a", "c"]
    assert data["nodes"]["c"]["processes"] == [None, None, 0, 0]  # tracked once b was dropped

    # ?since= returns what follows a sample, and only the nodes with a value in it.
    assert history.as_json(since=T0 + 8)["time"] == []
    assert history.as_json(since=T0 + 8)["nodes"] == {}
    tail = history.as_json(since=T0 + 6)
    assert_aligned(tail)
    assert tail["time"] == [T0 + 7, T0 + 8]
    assert sorted(tail["nodes"]) == ["a", "c"]


def test_the_sample_times_only_increase() -> None:
    history = History(size=3)
    history.record(snapshot(T0, row("a")))
    history.record(snapshot(T0 - 5, row("a")))  # the wall clock stepped back
    times = history.as_json()["time"]
    assert times[1] > times[0]


async def test_api_history_serves_the_samples_bounded(
    nodes: Nodes, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_server, "SAMPLE_INTERVAL", 0.05)
    a, b = await nodes.start(2)
    await register_all(a, 10)
    await eventually(lambda: nodes.idle() and nodes.agreed(10), message=nodes.describe)
    async with await start_web(a, port=0) as web:
        web.history = History(size=5)
        await eventually(lambda: len(web.history.times) == 5, message="the server did not sample")
        await eventually(lambda: web.history.samples >= 8, message="the server stopped sampling")
        status, data = await get_json(http, web.url + "/api/history")
        assert status == 200
        assert_aligned(data)
        assert data["size"] == 5
        assert len(data["time"]) == 5  # bounded: the older samples are gone
        assert data["time"] == sorted(data["time"])
        assert sorted(data["nodes"]) == sorted([a.name, b.name])
        for node in (a, b):
            series = data["nodes"][node.name]
            assert series["names"][-1] == node.statistics().registry.local_names
            assert series["processes"][-1] == node.statistics().runtime.processes
            assert all(lag is not None and lag >= 0 for lag in series["loop_lag"])
        assert data["cluster"]["nodes"][-1] == 2
        assert data["cluster"]["names"][-1] == 10
        assert data["cluster"]["calls"][-1] > 0  # the sampler's own statistics_of calls, at least

        last = data["time"][-1]
        status, tail = await get_json(http, f"{web.url}/api/history?since={last}")
        assert status == 200
        assert all(t > last for t in tail["time"])
        assert_aligned(tail)


async def test_without_the_dashboard_nothing_is_sampled(nodes: Nodes, http: aiohttp.ClientSession) -> None:
    (a,) = await nodes.start(1)
    async with await start_web(a, port=0, dashboard=False) as web:
        async with http.get(web.url + "/api/history") as response:
            assert response.status == 404
        assert web.history.samples == 0
