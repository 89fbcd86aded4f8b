"""Process classes that cluster tests start inside child node processes.

A child imports this module as ``apps`` (``NodeProcess.start(..., paths=[this directory])``),
so it must import nothing from the test suite.
"""

from __future__ import annotations

from typing import Any

from distable import NOREPLY, Caller, Process


class Worker(Process):
    """Calls: "ping" -> "pong"; "hold" -> never answered (kept in flight); "held" -> how many are held."""

    async def init(self) -> None:
        self.held: list[Caller] = []

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case "ping":
                return "pong"
            case "hold":
                self.held.append(caller)
                return NOREPLY
            case "held":
                return len(self.held)
        raise ValueError(f"unexpected call {message!r}")
