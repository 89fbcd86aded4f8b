"""Asking a running cluster: ``distable status``, ``whereis`` and ``registered``.

The command joins the cluster as a short-lived ``role="client"`` node (it hosts no names,
so its arrival and departure move nothing), authenticated with the cluster's cookie like
any node, and waits until its view is complete before answering:

* it has a link to at least one server node (``statistics().registry.placement_nodes``),
* it knows every server node its servers know (their ``placement_nodes``), and
* its registry replica holds every name: the servers' ``registry.local_names`` (read
  with ``statistics_of``) add up to its replica's size.

The wait is bounded (``--timeout``). With no server node by then, the command fails,
saying for each node it tried why (no answer, ...). It fails at once, without waiting,
when no link is up and every node it tried refused it for a reason waiting cannot fix:
its cookie ("not authorized"), another node at that address (a wrong node name), no
protocol version in common, or nothing listening there. With servers but a replica
still syncing, it answers from what it has and warns on stderr. At the end the client
node leaves gracefully.

Only the public API and ``statistics()`` snapshots are used (docs/design.md, "Architecture").
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from distable import MembershipConfig, Node, NodeStatistics, Pid
from distable.wire import lists_as_tuples

from .._extras import installed
from ._options import CliError

if TYPE_CHECKING:
    from rich.console import Console

#: How often the client re-checks whether its view is complete, in seconds.
POLL_INTERVAL = 0.05


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What the client saw once settled (or when the time ran out)."""

    node: Node
    servers: dict[str, NodeStatistics]
    complete: bool


@asynccontextmanager
async def cluster_view(node_kwargs: dict[str, Any], timeout: float) -> AsyncIterator[ClusterView]:
    """Join as a client node, wait for a complete view, yield it, then leave gracefully.

    Raises:
        CliError: no server node answered within ``timeout`` seconds.
        OSError: the client node cannot listen.
    """
    node = Node(
        f"cli-{os.getpid()}",
        port=0,
        role="client",
        membership=MembershipConfig.local(),
        drain_timeout=1.0,
        **node_kwargs,
    )
    async with node:
        view = await settle(node, timeout)
        if not view.servers:
            errors = dial_errors(node, DIAL_ERROR_KINDS | {"unreachable", "handshake"})
            raise CliError(
                f"no node of the cluster answered within {timeout:g} s"
                + (f": {'; '.join(errors)}" if errors else " (wrong cookie, node name or address?)")
            )
        if not view.complete:
            warn(f"the registry was still syncing after {timeout:g} s: the answer may be incomplete")
        yield view


async def settle(node: Node, timeout: float) -> ClusterView:
    """Poll until the client's view is complete (see the module's docstring) or ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: dict[str, NodeStatistics] = {}
    while True:
        errors = dial_errors(node, DIAL_ERROR_KINDS)
        if errors:
            raise CliError("; ".join(errors))
        servers = node.statistics().registry.placement_nodes
        if servers:
            remaining = max(deadline - loop.time(), POLL_INTERVAL)
            answers = await asyncio.gather(
                *(node.statistics_of(server, timeout=remaining) for server in servers), return_exceptions=True
            )
            stats = {s: a for s, a in zip(servers, answers, strict=True) if isinstance(a, NodeStatistics)}
            if stats:
                seen = stats
            if len(stats) == len(servers) and _complete(node, stats):
                return ClusterView(node, stats, True)
        if loop.time() >= deadline:
            return ClusterView(node, seen, False)
        await asyncio.sleep(POLL_INTERVAL)


#: Dial failures that waiting does not fix (``PeerStatistics.error_kind``).
DIAL_ERROR_KINDS = frozenset({"not_authorized", "wrong_node", "version", "refused"})


def dial_errors(node: Node, kinds: frozenset[str]) -> list[str]:
    """Why the client's dials failed, when no link is up and every node it tried (at
    least one) failed with an error of ``kinds``; else nothing."""
    peers = node.statistics().transport.peers
    if not peers or any(p.connected or p.error_kind not in kinds for p in peers):
        return []
    return [p.error for p in peers]


def _complete(node: Node, stats: dict[str, NodeStatistics]) -> bool:
    known = set(stats)
    if any(not set(s.registry.placement_nodes) <= known for s in stats.values()):
        return False
    hosted = sum(s.registry.local_names for s in stats.values())
    return hosted == node.statistics().registry.names


def warn(text: str) -> None:
    click.echo(f"distable: warning: {text}", err=True)


# --- status ---------------------------------------------------------------------------------


async def status_rows(view: ClusterView) -> list[dict[str, Any]]:
    """One row per node of the cluster, this client excluded: every node that answered
    (state "up"), then those it cannot ask: "unreachable" (up in its view but no answer),
    "suspect" or "failed" in a server's view (a failed one is listed until forgotten)."""
    node = view.node
    others = [n for n in node.nodes() if n not in view.servers and n != node.name]
    answers = await asyncio.gather(*(node.statistics_of(n, timeout=2.0) for n in others), return_exceptions=True)
    stats = dict(view.servers)
    missing: dict[str, str] = {}
    for name, answer in zip(others, answers, strict=True):
        if isinstance(answer, NodeStatistics):
            stats[name] = answer
        else:
            missing[name] = "unreachable"
            warn(f"{name} did not answer: {answer}")
    rank = {"suspect": 1, "dead": 2}
    for s in list(stats.values()):
        for m in s.membership.members:
            if m.role == "server" and m.status in rank and m.name not in stats and m.name != node.name:
                state = "failed" if m.status == "dead" else "suspect"
                if rank.get(missing.get(m.name, ""), 0) < rank[m.status]:
                    missing[m.name] = state
    rows = [_status_row(stats[name]) for name in sorted(stats)]
    return rows + [_lost_row(name, state) for name, state in sorted(missing.items())]


def _status_row(s: NodeStatistics) -> dict[str, Any]:
    registry = s.registry
    return {
        "name": s.name,
        "state": "up",
        "role": s.role,
        "uptime": round(s.uptime, 3),
        "processes": s.runtime.processes,
        "local_names": registry.local_names,
        "peers": s.membership.peers(),  # as the dashboard counts them
        "handoffs": {  # as the dashboard shows them
            "started": registry.handoffs_started,
            "completed": registry.handoffs_completed,
            "aborted": registry.handoffs_aborted,
        },
        "restarts": registry.restarts,
    }


def _lost_row(name: str, state: str) -> dict[str, Any]:
    """A node the client cannot ask: what its columns hold (nothing known)."""
    empty = dict.fromkeys(("role", "uptime", "processes", "local_names", "peers", "handoffs", "restarts"))
    return {"name": name, "state": state, **empty}


def print_status(rows: Sequence[dict[str, Any]], names: int, as_json: bool) -> None:
    if as_json:
        print_json(list(rows))
        return
    servers = sum(1 for r in rows if r["role"] == "server")
    lost = sum(1 for r in rows if r["state"] != "up")
    caption = f"{servers} server node(s), {names} registered name(s)"
    caption += f"; {lost} node(s) not answering" if lost else ""
    headers = ["node", "state", "role", "uptime", "processes", "local names", "peers"]
    headers += ["handoffs started/completed/aborted", "restarts"]
    cells: list[list[Cell]] = []
    for r in rows:
        if r["state"] != "up":
            cells.append([r["name"], (r["state"], "bold red"), *(["-"] * 7)])
            continue
        h = r["handoffs"]
        cells.append(
            [
                r["name"],
                r["state"],
                r["role"],
                format_duration(r["uptime"]),
                *(str(r[k]) for k in ("processes", "local_names", "peers")),
                f"{h['started']}/{h['completed']}/{h['aborted']}",
                str(r["restarts"]),
            ]
        )
    print_table(headers, cells, caption=caption, right=headers[3:])


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h03m``, ``4d02h``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


# --- names ------------------------------------------------------------------------------------


def name_from_json(text: str) -> Any:
    """A registered name written as JSON; JSON has no tuples, so lists stand for tuples.

    Raises:
        click.UsageError: not JSON, or not a hashable name.
    """
    try:
        value = lists_as_tuples(json.loads(text))
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"--json-name {text!r} is not JSON: {exc.msg}") from None
    if isinstance(value, dict):
        raise click.UsageError(f"--json-name {text!r}: a name cannot be a JSON object")
    return value


def name_json(name: Any) -> Any:
    """A name as JSON data: tuples become lists; other types their ``repr``."""
    if isinstance(name, tuple | list):
        return [name_json(v) for v in name]
    if name is None or isinstance(name, str | int | float | bool):
        return name
    return repr(name)


def name_text(name: Any) -> str:
    return name if isinstance(name, str) else repr(name)


def entry(name: Any, pid: Pid) -> dict[str, Any]:
    return {"name": name_json(name), "pid": str(pid), "node": pid.node, "id": pid.id}


def sort_names(entries: list[tuple[Any, Pid]]) -> list[tuple[Any, Pid]]:
    """By name when the names compare (all strings, all tuples of the same shape), else by
    type and ``repr``."""
    try:
        return sorted(entries, key=lambda e: e[0])
    except TypeError:
        return sorted(entries, key=lambda e: (type(e[0]).__name__, repr(e[0])))


def print_entries(entries: Sequence[tuple[Any, Pid]], *, caption: str | None = None) -> None:
    """A table of names (strings as themselves, other names as Python writes them)."""
    print_table(
        ("name", "pid", "node"), [[name_text(name), str(pid), pid.node] for name, pid in entries], caption=caption
    )


# --- output ----------------------------------------------------------------------------------


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


#: A table cell: its text, or its text and a rich style ("bold red"), which plain tables drop.
Cell = str | tuple[str, str]


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[Cell]], *, caption: str | None = None, right: Collection[str] = ()
) -> None:
    """A table on stdout, the columns named in ``right`` aligned right: drawn by rich with
    the ``cli`` extra, else plain columns two spaces apart, then the caption (so the
    commands work with ``pip install distable`` alone)."""
    if installed("cli"):
        from rich.table import Table
        from rich.text import Text

        table = Table(caption=caption)
        for header in headers:
            table.add_column(header, justify="right" if header in right else "left")
        for row in rows:
            table.add_row(*(Text(c) if isinstance(c, str) else Text(c[0], style=c[1]) for c in row))
        console().print(table)
        return
    texts = [[c if isinstance(c, str) else c[0] for c in row] for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in texts]) for i, header in enumerate(headers)]
    for line in [list(headers), *texts]:
        cells = (t.rjust(w) if h in right else t.ljust(w) for t, w, h in zip(line, widths, headers, strict=True))
        click.echo("  ".join(cells).rstrip())
    if caption:
        click.echo(caption)


def console() -> Console:
    """A console on stdout; wide when stdout is not a terminal (so pipes get whole rows).
    Needs the ``cli`` extra (rich)."""
    from rich.console import Console

    out = Console(file=sys.stdout)
    if not out.is_terminal:
        out = Console(file=sys.stdout, width=200)
    return out
