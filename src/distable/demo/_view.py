"""What the demo shows while it runs: a live view in a terminal, plain lines elsewhere.

``Watch`` reads the cluster the way any tool would, through the public API of the
driver's client node:

* ``statistics_of(node)``: what each node reports about itself: the workers it hosts
  (``registry.local_names``), the handoffs it started and the names it restarted;
* ``events_of(node, since)``: the latest events each node reports (handoffs, restarts;
  the driver's own journal for ``NodeUp`` and ``NodeDown``), for the scrolling list;
* ``events()`` of the driver's own node: every change of its registry replica, without
  loss, from which it counts the workers that moved off and onto each node.

A node's journal keeps its last 1,000 events, and a busy node records one per name that
changes (thousands in a second when a node joins), so the list shows the latest lines of
each poll; the counts never depend on it.

``LiveView`` renders the watch with ``rich.live.Live`` (the driver refreshes it after
each poll, about four times a second); ``PlainView`` prints plain lines instead, for logs,
CI and tests. Both take the same calls from the driver (``View``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from distable import CallTimeout, EventStream, NameRegistered, NameUnregistered, Node, Pid, ProcessExited

#: Latest events kept for the live view's scrolling list.
EVENT_LINES = 12

#: Seconds a poll of one node may take before it counts as unanswered.
POLL_TIMEOUT = 2.0

_PID = re.compile(r"<pid (?P<node>.+)/\d+>")


def node_of(pid_text: str) -> str | None:
    """The node name in a pid's text form (``"<pid a@127.0.0.1:4370/12>"``), as events
    render pids."""
    match = _PID.fullmatch(pid_text)
    return match["node"] if match else None


@dataclass
class NodeRow:
    """One node as the view shows it; the driver sets ``status``, polls fill in the rest.

    ``status`` is "up", "leaving" (SIGTERM sent), "stopped", "killed" or "client".
    ``workers``, ``handoffs_started`` and ``restarts`` are the node's own figures (the last
    ones read, for a node that is gone); ``moved_out`` and ``moved_in`` count the workers
    the driver's replica saw move off and onto it with a handoff.
    """

    name: str
    short: str
    role: str = "server"
    status: str = "up"
    workers: int = 0
    handoffs_started: int = 0
    restarts: int = 0
    moved_out: int = 0
    moved_in: int = 0
    seq: int = 0  # the last event number read from this node's journal
    reading: asyncio.Lock = field(default_factory=asyncio.Lock)  # one reader of its journal at a time


@dataclass
class Progress:
    """The driver's progress, as the view shows it."""

    step: str = "starting"
    detail: str = ""
    total: int = 0
    registered: int = 0
    resolved: int = 0
    on_owner: int = 0


@dataclass
class Watch:
    """Every node's figures and latest events, read through the client node ``client``.

    Runs on the event loop; ``poll()`` is called from one task at a time, and never raises
    for a node that does not answer (a node that is gone keeps its last figures).
    """

    client: Node
    on_line: Callable[[str], None] = lambda line: None  # each event line, as it is read
    rows: dict[str, NodeRow] = field(default_factory=dict)
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=EVENT_LINES))
    killed: set[str] = field(default_factory=set)  # nodes killed: what leaves them is restarted, not handed off
    dropped: int = 0  # replica events lost because the driver fell behind (none expected)
    _where: dict[Any, Pid] = field(default_factory=dict, init=False)  # each name's pid, as last seen
    _own: EventStream | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # From now on, every change of the driver's replica (read at each poll; room for
        # far more than the changes of a quarter of a second).
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
        """Stop reading the driver's replica changes."""
        if self._own is not None:
            self._own.close()

    async def poll(self) -> None:
        """Read the driver's replica changes, then every reachable node's figures and events."""
        self._read_own()
        lines: list[tuple[float, str]] = []
        for row in [row for row in self.rows.values() if row.status in ("up", "leaving", "client")]:
            with contextlib.suppress(CallTimeout, ProcessExited):
                await self._poll(row, lines)
        for _, line in sorted(lines):
            self._add_line(line)

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
        """Count the moves in the driver's replica: a name whose pid changed node directly
        moved by a handoff (a restart makes it unregistered first, or leaves a killed node)."""
        stream = self._own
        assert stream is not None
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
            row.workers = stats.registry.local_names
            row.handoffs_started = stats.registry.handoffs_started
            row.restarts = stats.registry.restarts
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
        if row.role == "client":  # membership, as the driver's node sees it
            if kind == "NodeUp":
                return f"{at}  {self.short(event['node'])} is up: {event['node']}"
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


class View(Protocol):
    """What the driver tells the display."""

    def step(self, title: str, detail: str) -> None:
        """A new step begins."""
        ...

    def say(self, text: str) -> None:
        """A line worth keeping (a step's result, the verdict)."""
        ...

    def refresh(self) -> None:
        """Redraw with the latest figures (after a poll, or a change of progress)."""
        ...

    def table(self) -> None:
        """Show the node table now (the plain view prints it; the live one always shows it)."""
        ...

    def open(self) -> None:
        """Draw again after ``close`` (the view starts open)."""
        ...

    def close(self) -> None:
        """Stop drawing; later ``say`` calls still print."""
        ...


class PlainView:
    """Plain lines on stdout, each with the seconds since the demo started."""

    def __init__(self, watch: Watch, progress: Progress) -> None:
        self.watch = watch
        self.progress = progress
        self.started = time.monotonic()
        watch.on_line = self._event

    def _print(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    def _event(self, line: str) -> None:
        # Membership changes only: handoffs and restarts come by the thousand, and each
        # step's result counts them.
        if " is up: " in line or " is down (" in line:
            self._print(f"event {line}")

    def step(self, title: str, detail: str) -> None:
        self._print(f"== {title}: {detail}")

    def say(self, text: str) -> None:
        self._print(text)

    def refresh(self) -> None:
        pass

    def open(self) -> None:
        pass

    def table(self) -> None:
        for row in self.watch.sorted_rows():
            if row.role == "server":
                self._print(
                    f"   {row.short} {row.status:8} workers {row.workers:5}  handoffs out {row.moved_out:5}"
                    f" in {row.moved_in:5}  restarts {row.restarts:5}  ({row.name})"
                )

    def close(self) -> None:
        pass


_STATUS_STYLE = {"up": "green", "leaving": "yellow", "stopped": "dim", "killed": "bold red", "client": "cyan"}


class LiveView:
    """A ``rich.live.Live`` display: the nodes, the current step, progress and latest events."""

    def __init__(self, watch: Watch, progress: Progress, header: str, console: Console | None = None) -> None:
        self.watch = watch
        self.progress = progress
        self.header = header
        self.console = console or Console()
        # Refreshed by the driver after each poll, not by Live's own thread: rendering reads
        # the driver's state, which only its event loop may touch.
        self.live = Live(self.render(), console=self.console, auto_refresh=False, redirect_stderr=False)
        self.live.start()

    def step(self, title: str, detail: str) -> None:
        self.progress.step, self.progress.detail = title, detail
        self.console.print(Text(f"{title}: {detail}", style="bold"))
        self.refresh()

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def refresh(self) -> None:
        if self.live.is_started:
            self.live.update(self.render(), refresh=True)

    def table(self) -> None:
        pass  # always on screen

    def open(self) -> None:
        if not self.live.is_started:
            self.live.start()

    def close(self) -> None:
        if self.live.is_started:
            self.refresh()
            self.live.stop()

    def render(self) -> RenderableType:
        progress = self.progress
        return Group(
            Text(self.header, style="bold"),
            Text.assemble((progress.step, "bold cyan"), "  ", progress.detail),
            self._nodes(),
            self._bars(),
            Panel(
                Text("\n".join(self.watch.lines) or "(none yet)", no_wrap=True, overflow="ellipsis"),
                title="latest events (from each node's journal)",
                title_align="left",
                height=EVENT_LINES + 2,
            ),
        )

    def _nodes(self) -> Table:
        table = Table(
            caption="workers, restarts: as each node reports them; handoffs: workers seen moving off/onto each node",
            caption_justify="left",
        )
        for column in ("node", "status", "workers", "handoffs\nout", "handoffs\nin", "restarts"):
            table.add_column(column, justify="left" if column in ("node", "status") else "right")
        if self.watch.dropped:
            table.caption = f"{table.caption} ({self.watch.dropped:,} replica changes missed: handoffs are low)"
        for row in self.watch.sorted_rows():
            server = row.role == "server"
            table.add_row(
                row.name,
                Text(row.status, style=_STATUS_STYLE.get(row.status, "")),
                f"{row.workers:,}" if server else "-",
                f"{row.moved_out:,}" if server else "-",
                f"{row.moved_in:,}" if server else "-",
                f"{row.restarts:,}" if server else "-",
            )
        return table

    def _bars(self) -> Table:
        progress = self.progress
        grid = Table.grid(padding=(0, 1))
        for label, value in (
            ("registered", progress.registered),
            ("resolved", progress.resolved),
            ("on owner", progress.on_owner),
        ):
            grid.add_row(
                Text(f"{label:>10}"),
                ProgressBar(total=max(progress.total, 1), completed=value, width=40),
                Text(f"{value:,} / {progress.total:,}"),
            )
        return grid
