"""``distable top``: a live view of a running cluster, refreshed about once a second.

The command joins the cluster as a client node, as ``distable status`` does
(``_query.cluster_view``: the same options, the same errors), and reads it with the
demo's ``Watch`` (``_watch``): every node's ``statistics_of`` snapshot and the new events
of its journal (``events_of``), at every refresh. A node's status comes from the
membership views of the client and of every node that answered, for the newest
incarnation of that node any of them knows: "up" (alive and answering), "suspect",
"unreachable" (alive in every view, but it did not answer), "failed" or "left"; a node
is listed until every view has forgotten it. Handoffs and restarts per second are the
differences of the node's counters between its last two snapshots.

Three outputs:

* live (stdout is a terminal): a ``rich.live.Live`` screen, redrawn after each poll and
  at each key. Keys are read from the terminal in cbreak mode by the event loop
  (``loop.add_reader``), never by a blocking read: a letter sorts by its column (again:
  the other way), space or ``z`` pauses (the view stops polling), ``q`` quits. The
  terminal's mode is saved before and restored after, however the command ends
  (``q``, Ctrl-C, SIGTERM or an error).
* plain (stdout is not a terminal): one table and the new event lines per interval;
  ``--once``: one snapshot (two polls ``--interval`` apart, so the rates are real).
* ``--json``: the same snapshot as one JSON object per interval, one per line
  (``--once``: one object).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from distable import Node

from . import _query
from ._watch import EVENT_LINES, GONE, STATUS_STYLE, NodeRow, Watch, events_panel

if TYPE_CHECKING:
    from distable.membership import MemberInfo  # the rows of statistics().membership.members

#: Statuses in the order "sort by status" lists them.
STATUS_ORDER = ("up", "suspect", "unreachable", "failed", "left")
_STATUS_RANK = {status: rank for rank, status in enumerate(STATUS_ORDER)}

#: A membership status -> how bad it is: of the views that know a node's newest
#: incarnation, the worst one decides.
_MEMBER_RANK = {"alive": 0, "suspect": 1, "dead": 2, "left": 3}
_STATUS_OF_RANK = ("up", "suspect", "failed", "left")


@dataclass(frozen=True)
class Column:
    """A column of the table: its key (a letter of its title), and how it sorts."""

    key: str
    title: str
    sort: Callable[[NodeRow], Any]
    descending: bool  # the first press lists the highest first
    cell: Callable[[NodeRow], str]

    def header(self, sorted_by: bool, descending: bool) -> Text:
        """The title with its key underlined, and an arrow when the table sorts by it."""
        text = Text(self.title)
        at = self.title.find(self.key)
        if at >= 0:
            text.stylize("underline", at, at + 1)
        if sorted_by:
            text.append(" ▼" if descending else " ▲", style="bold")
        return text


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


COLUMNS: tuple[Column, ...] = (
    Column("n", "node", lambda r: r.name, False, lambda r: r.name),
    Column("s", "status", lambda r: _STATUS_RANK.get(r.status, len(STATUS_ORDER)), False, lambda r: r.status),
    Column("m", "names", lambda r: r.workers, True, lambda r: f"{r.workers:,}"),
    Column("p", "processes", lambda r: r.processes, True, lambda r: f"{r.processes:,}"),
    Column("h", "handoffs/s", lambda r: r.handoff_rate or 0.0, True, lambda r: _rate(r.handoff_rate)),
    Column("r", "restarts/s", lambda r: r.restart_rate or 0.0, True, lambda r: _rate(r.restart_rate)),
    Column("l", "lag ms", lambda r: r.loop_lag, True, lambda r: f"{r.loop_lag * 1000:,.1f}"),
    Column("u", "uptime", lambda r: r.uptime, True, lambda r: _query.format_duration(r.uptime)),
)
BY_KEY = {column.key: column for column in COLUMNS}
PAUSE_KEYS = frozenset(" z")
QUIT_KEYS = frozenset("qQ")


def member_status(name: str, answered: bool, views: Sequence[Sequence[MemberInfo]]) -> str | None:
    """Node ``name``'s status from membership ``views`` (each a ``MembershipStatistics.members``),
    given whether it ``answered`` the last poll; None if no view knows it any more."""
    entries = [m for members in views for m in members if m.name == name and m.role == "server"]
    if not entries:
        return "up" if answered else None
    newest = max(m.incarnation for m in entries)
    rank = max(_MEMBER_RANK.get(m.status, 0) for m in entries if m.incarnation == newest)
    if rank == 0 and not answered:
        return "unreachable"
    return _STATUS_OF_RANK[rank]


@dataclass
class Top:
    """What the view shows and how: the watch's rows, the sort column, paused or not.

    ``poll()`` and the key handler (``press``) run on the client's event loop."""

    watch: Watch
    interval: float
    sort: Column = COLUMNS[0]
    descending: bool = False
    paused: bool = False
    polled_at: float = 0.0  # wall-clock time of the last poll
    fresh: list[str] = field(default_factory=list)  # event lines not printed yet (plain output)

    def __post_init__(self) -> None:
        self.watch.on_line = self.fresh.append

    @property
    def client(self) -> Node:
        return self.watch.client

    def press(self, key: str) -> bool:
        """Act on one key; True when it quits."""
        if key in QUIT_KEYS:
            return True
        if key in PAUSE_KEYS:
            self.paused = not self.paused
        elif key in BY_KEY:
            column = BY_KEY[key]
            if column is self.sort:
                self.descending = not self.descending
            else:
                self.sort, self.descending = column, column.descending
        return False

    def _views(self) -> list[Sequence[MemberInfo]]:
        """The membership views: the client's, and those of the nodes that just answered."""
        views: list[Sequence[MemberInfo]] = [self.client.statistics().membership.members]
        views += [row.stats.membership.members for row in self.servers() if row.answered and row.stats is not None]
        return views

    async def poll(self) -> None:
        """Add the nodes any view knows, read every node, then set each one's status
        (dropping those every view has forgotten)."""
        client = self.client
        known = {m.name for members in self._views() for m in members if m.role == "server"} | set(client.nodes())
        for name in sorted(known - set(self.watch.rows) - {client.name}):
            self.watch.add(name, name)
        await self.watch.poll()
        self.polled_at = time.time()
        views = self._views()
        for row in self.servers():
            status = member_status(row.name, row.answered, views)
            if status is None:
                del self.watch.rows[row.name]
            else:
                row.status = status
                row.answered = row.answered and status not in GONE

    def servers(self) -> list[NodeRow]:
        """The server nodes, in the order of the sort column (ties by name)."""
        rows = sorted((row for row in self.watch.rows.values() if row.role == "server"), key=lambda row: row.name)
        return sorted(rows, key=self.sort.sort, reverse=self.descending)

    def counts(self) -> tuple[int, int, int, int]:
        """Server nodes up, server nodes listed, names in the client's replica, processes
        of the nodes that answered."""
        rows = self.servers()
        up = sum(1 for row in rows if row.status == "up")
        processes = sum(row.processes for row in rows if row.answered)
        return up, len(rows), self.client.statistics().registry.names, processes

    def summary(self) -> str:
        up, listed, names, processes = self.counts()
        at = time.strftime("%H:%M:%S", time.localtime(self.polled_at))
        return f"{up} of {listed} server node(s) up, {names:,} name(s), {processes:,} process(es) at {at}"

    # --- rendering -------------------------------------------------------------------------------

    def table(self, limit: int | None = None) -> Table:
        """The nodes (at most ``limit`` rows, the last one saying how many more)."""
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for column in COLUMNS:
            header = column.header(column is self.sort, self.descending)
            table.add_column(header, justify="left" if column.key in "ns" else "right", no_wrap=True)
        rows = self.servers()
        shown = rows if limit is None or len(rows) <= limit else rows[: max(limit - 1, 0)]
        for row in shown:
            status = Text(row.status, style=STATUS_STYLE.get(row.status, ""))
            if row.status in GONE:
                table.add_row(Text(row.name, style="dim"), status, *(["-"] * (len(COLUMNS) - 2)))
            else:
                style = "" if row.answered else "dim"  # its last figures
                cells = [Text(column.cell(row), style=style) for column in COLUMNS]
                cells[1] = status
                table.add_row(*cells)
        if len(shown) < len(rows):
            table.add_row(Text(f"… {len(rows) - len(shown)} more", style="dim"))
        return table

    def render(self, height: int) -> RenderableType:
        """The live screen for a terminal ``height`` lines high."""
        header = Text("distable top", style="bold", no_wrap=True, overflow="ellipsis")
        if self.paused:
            header.append("  PAUSED", style="reverse bold")
        header.append(f"  {self.summary()}, via {self.client.name}")
        keys = "/".join(c.key for c in COLUMNS)
        footer = Text(
            f"{keys}: sort by the underlined column (again: reverse)   space/z: pause   q: quit",
            style="dim",
            no_wrap=True,
            overflow="ellipsis",
        )
        # header, footer, the table's head (2 lines) and the events' frame (2 lines)
        room = max(height - 6, 2)
        nodes = len(self.servers())
        lines = min(EVENT_LINES, max(room - nodes, 3))
        return Group(header, self.table(limit=max(room - lines, 1)), events_panel(self.watch.lines, lines), footer)

    def snapshot(self, events: Sequence[str]) -> dict[str, Any]:
        """The view as JSON data."""
        _, _, names, processes = self.counts()
        return {
            "time": round(self.polled_at, 3),
            "client": self.client.name,
            "names": names,
            "processes": processes,
            "nodes": [_node_json(row) for row in self.servers()],
            "events": list(events),
        }

    def take_fresh(self, limit: int = EVENT_LINES) -> list[str]:
        """The event lines read since the last call (the latest ``limit`` of them)."""
        lines = self.fresh[-limit:]
        self.fresh.clear()
        return lines


def _node_json(row: NodeRow) -> dict[str, Any]:
    gone = row.status in GONE
    figures: dict[str, Any] = {
        "names": row.workers,
        "processes": row.processes,
        "handoffs_started": row.handoffs_started,
        "restarts": row.restarts,
        "handoffs_per_s": row.handoff_rate,
        "restarts_per_s": row.restart_rate,
        "loop_lag": row.loop_lag,
        "uptime": round(row.uptime, 3),
    }
    if gone:
        figures = dict.fromkeys(figures)
    return {"name": row.name, "status": row.status, "answered": row.answered, **figures}


# --- the terminal --------------------------------------------------------------------------------


@contextlib.contextmanager
def cbreak(fd: int | None) -> Iterator[None]:
    """Terminal ``fd`` in cbreak mode (each key at once, not echoed; Ctrl-C still
    interrupts), its mode restored however the block ends. None: nothing to do."""
    if fd is None:
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def keyboard() -> int | None:
    """The file descriptor to read keys from: stdin, when it is a terminal."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if os.isatty(fd) else None


def live_output(once: bool, as_json: bool) -> bool:
    """Whether the live screen is the output: not --once or --json, and stdout is a terminal."""
    return not once and not as_json and sys.stdout.isatty()


# --- running -------------------------------------------------------------------------------------


async def main(
    settings: dict[str, Any], *, timeout: float, interval: float, once: bool, as_json: bool, keys: int | None
) -> None:
    """Join the cluster, show it until ``q``, SIGTERM or Ctrl-C (``--once``: one snapshot), leave.

    Raises:
        CliError: no node of the cluster answered (see ``_query.cluster_view``).
    """
    async with _query.cluster_view(settings, timeout) as view:
        watch = Watch(view.node, count_moves=False, news_after=time.time())  # connecting is no news
        watch.add(view.node.name, "this client", role="client")  # its journal: NodeUp, NodeDown
        top = Top(watch, interval)
        try:
            if once:
                await top.poll()
                await asyncio.sleep(interval)  # a second snapshot: the rates
                await top.poll()
                _print_block(top, as_json, once=True)
                return
            with _stop_on_sigterm() as stop:
                if live_output(once, as_json):
                    await _live(top, stop, keys)
                else:
                    await _plain(top, stop, as_json)
        finally:
            watch.close()


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[asyncio.Event]:
    """An event SIGTERM sets (so that the view ends as ``q`` ends it)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
        yield stop
        return
    try:
        yield stop
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(seconds, 0.0))


async def _plain(top: Top, stop: asyncio.Event, as_json: bool) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await top.poll()
        _print_block(top, as_json, once=False)
        await _wait(stop, started + top.interval - loop.time())


def _print_block(top: Top, as_json: bool, *, once: bool) -> None:
    events = top.take_fresh()
    if as_json:
        data = top.snapshot(events)
        if once:
            _query.print_json(data)
        else:
            print(json.dumps(data), flush=True)
        return
    out = _query.console()
    out.print(Text.assemble(("distable top", "bold"), f": {top.summary()}"), highlight=False)
    out.print(top.table())
    if events:
        out.print(Text("events:\n" + "\n".join(f"  {line}" for line in events)), highlight=False)
    out.print()


async def _live(top: Top, stop: asyncio.Event, keys: int | None) -> None:
    loop = asyncio.get_running_loop()
    console = Console()
    # Redrawn here, not by Live's own thread: rendering reads the rows, which only the
    # event loop may touch.
    with Live(console=console, screen=True, auto_refresh=False, redirect_stderr=False) as live:

        def draw() -> None:
            live.update(top.render(console.size.height), refresh=True)

        def on_keys() -> None:
            assert keys is not None
            data = os.read(keys, 64)
            if not data:  # end of input: no more keys
                loop.remove_reader(keys)
                return
            if data.startswith(b"\x1b"):  # an escape sequence (arrows, function keys): ignored
                return
            for key in data.decode(errors="ignore"):
                if top.press(key):
                    stop.set()
                    return
            draw()

        if keys is not None:
            loop.add_reader(keys, on_keys)
        try:
            draw()
            while not stop.is_set():
                started = loop.time()
                if not top.paused:
                    await top.poll()
                    draw()
                await _wait(stop, started + top.interval - loop.time())
        finally:
            if keys is not None:
                loop.remove_reader(keys)
