"""Watching a running cluster for a live view: the demo's view and ``distable top`` alike.

``Watch`` reads the cluster the way any tool would, through the public API of a client
node:

* ``statistics_of(node)``: what each node reports about itself: the names it hosts
  (``registry.local_names``), its processes, the handoffs it started and the names it
  restarted, its event-loop lag; from two successive snapshots, handoffs and restarts
  per second;
* ``events_of(node, since)``: the latest events each node reports (handoffs, restarts;
  the client's own journal for ``NodeUp`` and ``NodeDown``, which every server would
  report again), for the scrolling list;
* optionally (``count_moves``), ``events()`` of the client's own node: every change of
  its registry replica, without loss, from which it counts the names that moved off and
  onto each node (the demo's check).

A node's journal keeps its last 1,000 events, and a busy node records one per name that
changes (thousands in a second when a node joins), so the list shows the latest lines of
each poll; the counts never depend on it.

Whoever owns the watch adds its rows and sets their ``status``; ``poll()`` reads every
row that is not gone. Everything runs on the client's event loop.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.panel import Panel
from rich.text import Text

from distable import (
    CallTimeout,
    EventStream,
    NameRegistered,
    NameUnregistered,
    Node,
    NodeStatistics,
    Pid,
    ProcessExited,
)

#: Latest events kept for the scrolling list.
EVENT_LINES = 12

#: Seconds a poll of one node may take before it counts as unanswered.
POLL_TIMEOUT = 2.0

#: Row statuses whose node is gone: ``poll()`` no longer asks it.
GONE = frozenset({"stopped", "killed", "failed", "left"})

#: How each status is shown (the demo's and ``distable top``'s).
STATUS_STYLE = {
    "up": "green",
    "client": "cyan",
    "leaving": "yellow",
    "suspect": "yellow",
    "unreachable": "yellow",
    "stopped": "dim",
    "left": "dim",
    "killed": "bold red",
    "failed": "bold red",
}

_PID = re.compile(r"<pid (?P<node>.+)/\d+>")


def node_of(pid_text: str) -> str | None:
    """The node name in a pid's text form (``"<pid a@127.0.0.1:4370/12>"``), as events
    render pids."""
    match = _PID.fullmatch(pid_text)
    return match["node"] if match else None


@dataclass
class NodeRow:
    """One node as a view shows it; its owner sets ``status``, polls fill in the rest.

    ``workers`` (the names it hosts), ``processes``, ``handoffs_started``, ``restarts``,
    ``loop_lag`` and ``uptime`` are the node's own figures (the last ones read, for a
    node that is gone); ``handoff_rate`` and ``restart_rate`` are per second between its
    last two snapshots (None before the second). ``moved_out`` and ``moved_in`` count
    the names the client's replica saw move off and onto it with a handoff
    (``count_moves``).
    """

    name: str
    short: str
    role: str = "server"
    status: str = "up"
    workers: int = 0
    processes: int = 0
    handoffs_started: int = 0
    restarts: int = 0
    loop_lag: float = 0.0
    uptime: float = 0.0
    handoff_rate: float | None = None
    restart_rate: float | None = None
    moved_out: int = 0
    moved_in: int = 0
    stats: NodeStatistics | None = None  # its last snapshot
    answered: bool = False  # whether its last poll was answered
    read_at: float | None = None  # event-loop time of its last snapshot
    seq: int = 0  # the last event number read from this node's journal
    reading: asyncio.Lock = field(default_factory=asyncio.Lock)  # one reader of its journal at a time

    def update(self, stats: NodeStatistics, now: float) -> None:
        """Take the snapshot ``stats``, read at event-loop time ``now``. A new
        incarnation starts its counters and its journal over: no rate from the old one."""
        old = self.stats
        if old is not None and old.incarnation != stats.incarnation:
            self.seq, self.read_at = 0, None
        registry = stats.registry
        if self.read_at is not None and now > self.read_at:
            elapsed = now - self.read_at
            self.handoff_rate = max(registry.handoffs_started - self.handoffs_started, 0) / elapsed
            self.restart_rate = max(registry.restarts - self.restarts, 0) / elapsed
        else:
            self.handoff_rate = self.restart_rate = None
        self.stats, self.read_at = stats, now
        self.workers = registry.local_names
        self.processes = stats.runtime.processes
        self.handoffs_started = registry.handoffs_started
        self.restarts = registry.restarts
        self.loop_lag = stats.runtime.last_loop_lag
        self.uptime = stats.uptime


@dataclass
class Watch:
    """Every node's figures and latest events, read through the client node ``client``.

    ``poll()`` is called from one task at a time, and never raises for a node that does
    not answer (a node that is gone keeps its last figures).
    """

    client: Node
    on_line: Callable[[str], None] = lambda line: None  # each event line, as it is read
    count_moves: bool = True
    # The client's own NodeUp/NodeDown events up to this wall time are its first view of a
    # cluster that was already there (``distable top``), not news: not listed.
    news_after: float = 0.0
    rows: dict[str, NodeRow] = field(default_factory=dict)
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=EVENT_LINES))
    killed: set[str] = field(default_factory=set)  # nodes killed: what leaves them is restarted, not handed off
    dropped: int = 0  # replica events lost because the client fell behind (none expected)
    _where: dict[Any, Pid] = field(default_factory=dict, init=False)  # each name's pid, as last seen
    _own: EventStream | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.count_moves:
            # From now on, every change of the client's replica (read at each poll; room
            # for far more than the changes of a quarter of a second).
            self._own = self.client.events(maxsize=100_000)

    def add(self, name: str, short: str, *, role: str = "server") -> NodeRow:
        row = NodeRow(name, short, role=role, status="client" if role == "client" else "up")
        self.rows[name] = row
        return row

    def sorted_rows(self) -> list[NodeRow]:
        """The server nodes by short name, then the client."""
        return sorted(self.rows.values(), key=lambda row: (row.role == "client", row.short))

    def short(self, name: str | None) -> str:
        row = self.rows.get(name or "")
        return row.short if row is not None else str(name)

    def handoffs_started(self) -> int:
        """The handoffs every node reported starting, in total (gone nodes: their last figure)."""
        return sum(row.handoffs_started for row in self.rows.values())

    def close(self) -> None:
        """Stop reading the client's replica changes."""
        if self._own is not None:
            self._own.close()

    async def poll(self) -> None:
        """Read the client's replica changes, then every node's figures and events, all
        nodes at once (one that does not answer delays none of the others)."""
        self._read_own()
        lines: list[tuple[float, str]] = []
        rows = [row for row in self.rows.values() if row.status not in GONE]
        await asyncio.gather(*(self._try(row, lines) for row in rows))
        for _, line in sorted(lines):
            self._add_line(line)

    async def _try(self, row: NodeRow, lines: list[tuple[float, str]]) -> None:
        try:
            await self._poll(row, lines)
        except (CallTimeout, ProcessExited):
            row.answered = False
        else:
            row.answered = True

    async def follow(self, name: str, interval: float = 0.01) -> None:
        """Poll node ``name``, which is stopping, until it no longer answers.

        A stopping node hands its workers off and exits within moments: polled at the
        usual pace, its last figures would leave with it unread.
        """
        row = self.rows[name]
        while True:
            lines: list[tuple[float, str]] = []
            try:
                await self._poll(row, lines)
            except (CallTimeout, ProcessExited):
                return
            finally:
                for _, line in sorted(lines):
                    self._add_line(line)
            await asyncio.sleep(interval)

    def _read_own(self) -> None:
        """Count the moves in the client's replica: a name whose pid changed node directly
        moved by a handoff (a restart makes it unregistered first, or leaves a killed node)."""
        stream = self._own
        if stream is None:
            return
        while True:
            try:
                event = stream.get_nowait()
            except asyncio.QueueEmpty:
                break
            if isinstance(event, NameRegistered):
                old = self._where.get(event.name)
                self._where[event.name] = event.pid
                if old is not None and old.node != event.pid.node and old.node not in self.killed:
                    source, target = self.rows.get(old.node), self.rows.get(event.pid.node)
                    if source is not None and target is not None:
                        source.moved_out += 1
                        target.moved_in += 1
            elif isinstance(event, NameUnregistered):
                self._where.pop(event.name, None)
        self.dropped = stream.dropped

    async def _poll(self, row: NodeRow, lines: list[tuple[float, str]]) -> None:
        if row.role == "server":
            stats = await self.client.statistics_of(row.name, timeout=POLL_TIMEOUT)
            row.update(stats, asyncio.get_running_loop().time())
        async with row.reading:
            events = await self.client.events_of(row.name, row.seq, timeout=POLL_TIMEOUT)
            for event in events:
                row.seq = event["seq"]
                line = self._line(row, event)
                if line is not None:
                    lines.append((event["time"], line))

    def _add_line(self, line: str) -> None:
        self.lines.append(line)
        self.on_line(line)

    def _line(self, row: NodeRow, event: dict[str, Any]) -> str | None:
        """``event``, reported by ``row``'s node, as a line of the list (None: not shown)."""
        kind = event["type"]
        at = time.strftime("%H:%M:%S", time.localtime(event["time"])) + f".{int(event['time'] * 1000) % 1000:03d}"
        if row.role == "client":  # membership, as the client's node sees it
            if event["time"] <= self.news_after:
                return None
            if kind == "NodeUp":
                node, short = event["node"], self.short(event["node"])
                return f"{at}  {short} is up" + ("" if short == node else f": {node}")
            if kind == "NodeDown":
                return f"{at}  {self.short(event['node'])} is down ({event['reason']})"
            return None
        if kind == "HandoffCompleted":
            target = self.short(node_of(event["new_pid"]))
            how = "with its state" if event["answer"] == "resume" else "fresh"
            duration = event["duration"] * 1000
            return f"{at}  {row.short} → {target}  {event['name']} handed off {how} ({duration:.0f} ms)"
        if kind == "ProcessRestarted":
            why = "its node died" if event["reason"] == "nodedown" else event["reason"]
            return f"{at}  {row.short}  {event['name']} restarted from its factory ({why})"
        if kind == "HandoffAborted":
            return f"{at}  {row.short}  {event['name']} stays for now: {event['reason']}"
        if kind == "ConflictResolved":
            return f"{at}  {row.short}  {event['name']}: duplicate resolved, {event['winner']} survives"
        return None


def events_panel(lines: Iterable[str], height: int = EVENT_LINES) -> Panel:
    """The latest event lines in a box of ``height`` lines (the newest at the bottom)."""
    shown = list(lines)[-height:] if height > 0 else []
    return Panel(
        Text("\n".join(shown) or "(none yet)", no_wrap=True, overflow="ellipsis"),
        title="latest events (from each node's journal)",
        title_align="left",
        height=height + 2,
    )
