"""What the demo shows while it runs: a live view in a terminal, plain lines elsewhere.

The figures and events come from a ``Watch`` (``distable.cli._watch``, which ``distable
top`` uses too) on the driver's client node: what each node reports about itself, the
latest events of each node's journal, and the moves the driver's replica saw.

``LiveView`` renders the watch with ``rich.live.Live`` (the driver refreshes it after
each poll, about four times a second); ``PlainView`` prints plain lines instead, for logs,
CI and tests. Both take the same calls from the driver (``View``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from distable.cli._watch import STATUS_STYLE, Watch, events_panel


@dataclass
class Progress:
    """The driver's progress, as the view shows it."""

    step: str = "starting"
    detail: str = ""
    total: int = 0
    registered: int = 0
    resolved: int = 0
    on_owner: int = 0


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
            events_panel(self.watch.lines),
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
                Text(row.status, style=STATUS_STYLE.get(row.status, "")),
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
