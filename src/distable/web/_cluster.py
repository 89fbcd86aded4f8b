"""What the dashboard shows, gathered from every node through the public API.

``cluster_snapshot`` asks every node in this node's view for its ``statistics()`` at
once (``Node.statistics_of``); ``poll_events`` asks every node for its journal's tail
(``Node.events_of``) after a cursor (node name -> last event number seen). A node that
does not answer is reported with an error and never fails the whole answer.

Both run on the node's event loop, in the task of the HTTP request (or of an event
stream) that asked; neither touches the node's state except through the public API
(``Node.placement()`` for the ring).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter as Tally
from typing import TYPE_CHECKING, Any

from ..ring import HashRing

if TYPE_CHECKING:
    from ..node import Node, NodeStatistics

#: Event types not listed one by one (a registration wave makes thousands): counted.
SKIPPED_EVENTS = frozenset({"NameRegistered", "NameUnregistered", "GroupJoined", "GroupLeft", "HandoffStarted"})

#: Bounds on a cursor read from a request: entries and characters.
MAX_CURSOR_NODES = 1000
MAX_CURSOR_CHARS = 64 * 1024


class BadRequest(ValueError):
    """A query parameter is wrong; the message says what is expected (sent with a 400)."""


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def node_row(stats: NodeStatistics) -> dict[str, Any]:
    """One node's line of the dashboard's table, from its snapshot (a pure function)."""
    registry = stats.registry
    statuses = Tally(m.status for m in stats.membership.members)
    return {
        "name": stats.name,
        "role": stats.role,
        "incarnation": stats.incarnation,
        "uptime": stats.uptime,
        "processes": stats.runtime.processes,
        "local_names": registry.local_names,
        "names": registry.names,
        "groups": registry.groups,
        "handoffs": {
            "started": registry.handoffs_started,
            "completed": registry.handoffs_completed,
            "aborted": registry.handoffs_aborted,
        },
        "restarts": registry.restarts,
        "calls": stats.runtime.calls,
        "conflicts": registry.conflicts,
        "peers": stats.membership.peers(),  # as `distable status` counts them
        "members": dict(statuses),
        "loop_lag": stats.runtime.last_loop_lag,
        "max_loop_lag": stats.runtime.max_loop_lag,
        "placement": list(registry.placement_nodes),
        "error": None,
    }


async def cluster_snapshot(node: Node, timeout: float = 2.0) -> dict[str, Any]:
    """Every node of the cluster (this one first, then the others by name) and the ring.

    Returns ``{"node", "time", "nodes": [row...], "counts": {...}, "ring": {...}}``,
    where a row is ``node_row``'s, or ``{"name", "error"}`` for a node that did not
    answer within ``timeout`` seconds (or is not linked any more).
    """
    names = [node.name, *sorted(set(node.nodes()) - {node.name})]
    answers = await asyncio.gather(*(node.statistics_of(n, timeout=timeout) for n in names), return_exceptions=True)
    rows: list[dict[str, Any]] = []
    for name, answer in zip(names, answers, strict=True):
        if isinstance(answer, BaseException):
            if isinstance(answer, KeyboardInterrupt | SystemExit):
                raise answer
            rows.append({"name": name, "error": _error_text(answer)})
        else:
            rows.append(node_row(answer))
    placement = node.placement()
    shares = placement.shares() if isinstance(placement, HashRing) else {}
    answered = [r for r in rows if r["error"] is None]
    hosted = {r["name"]: r["local_names"] for r in answered}
    total_hosted = sum(hosted.values())
    ring_nodes = sorted(set(placement.nodes) | {n for n, count in hosted.items() if count})
    own = answered[0] if answered and answered[0]["name"] == node.name else None
    return {
        "node": node.name,
        "time": time.time(),
        "nodes": rows,
        "counts": {
            "nodes": len(rows),
            "servers": sum(1 for r in answered if r["role"] == "server"),
            "unreachable": len(rows) - len(answered),
            "names": own["names"] if own is not None else None,
            "processes": sum(r["processes"] for r in answered),
        },
        "ring": {
            "placement": list(placement.nodes),
            "nodes": [
                {
                    "node": n,
                    "hash_share": shares.get(n, 0.0),
                    "names": hosted.get(n),
                    "name_share": (hosted.get(n, 0) / total_hosted) if total_hosted else 0.0,
                }
                for n in ring_nodes
            ],
        },
    }


def parse_cursor(text: str | None) -> dict[str, int]:
    """A cursor from a query parameter or a ``Last-Event-ID`` header: a JSON object that
    maps node names to the number of the last event seen (``{}`` when absent).

    Raises:
        BadRequest: it is not such an object (the message shows the expected form).
    """
    if text is None or text.strip() == "":
        return {}
    example = '{"a@127.0.0.1:4370": 12}'
    if len(text) > MAX_CURSOR_CHARS:
        raise BadRequest(f"since is too long ({len(text)} characters, at most {MAX_CURSOR_CHARS})")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"since must be a JSON object of node name -> event number, e.g. {example}: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"since must be a JSON object of node name -> event number, e.g. {example}, not {text!r}")
    if len(value) > MAX_CURSOR_NODES:
        raise BadRequest(f"since names {len(value)} nodes, at most {MAX_CURSOR_NODES}")
    cursor: dict[str, int] = {}
    for key, seq in value.items():
        if type(seq) is not int or seq < 0:
            raise BadRequest(f"since[{key!r}] must be a non-negative integer (an event number), not {seq!r}")
        cursor[key] = seq
    return cursor


async def poll_events(node: Node, since: dict[str, int], timeout: float = 2.0) -> dict[str, Any]:
    """The events of every node after ``since``, merged by time (oldest first).

    Returns ``{"events": [...], "since": cursor, "skipped": {type: count}, "errors":
    {node: text}}``. Each event is ``Node.events_of``'s plain data with ``source`` (the
    node that published it) added. Types in ``SKIPPED_EVENTS`` are counted in
    ``skipped``, not listed. The returned cursor covers the nodes of the cluster now
    and, within ``MAX_CURSOR_NODES``, the ones ``since`` named.
    """
    names = [node.name, *sorted(set(node.nodes()) - {node.name})]
    answers = await asyncio.gather(
        *(node.events_of(n, since.get(n, 0), timeout=timeout) for n in names), return_exceptions=True
    )
    events: list[dict[str, Any]] = []
    skipped: Tally[str] = Tally()
    errors: dict[str, str] = {}
    cursor = {n: since.get(n, 0) for n in names}
    for name, answer in zip(names, answers, strict=True):
        if isinstance(answer, BaseException):
            if isinstance(answer, KeyboardInterrupt | SystemExit):
                raise answer
            errors[name] = _error_text(answer)
            continue
        if not isinstance(answer, list):
            errors[name] = f"unexpected answer {type(answer).__name__}"
            continue
        for event in answer:
            seq = event.get("seq") if isinstance(event, dict) else None
            if type(seq) is not int:
                continue
            cursor[name] = max(cursor[name], seq)
            kind = str(event.get("type"))
            if kind in SKIPPED_EVENTS:
                skipped[kind] += 1
            else:
                events.append({**event, "source": name})
    for name, seq in since.items():  # nodes not in view now: keep their place, bounded
        if name not in cursor and len(cursor) < MAX_CURSOR_NODES:
            cursor[name] = seq
    events.sort(key=lambda e: (e.get("time", 0.0), e["source"], e["seq"]))
    return {"events": events, "since": cursor, "skipped": dict(skipped), "errors": errors}
