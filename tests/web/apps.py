"""The processes the web tests register (by reference: ``"tests.web.apps:Worker"``).

Child node processes import this module as ``tests.web.apps``: it imports nothing else
from the test suite.
"""

from __future__ import annotations

from typing import Any

from distable import Caller, Process, Resume

WORKER = "tests.web.apps:Worker"


class Worker(Process):
    """Counts "incr" calls; "get" answers ``(count, node)``; "crash" raises. Moves with its
    count (``Resume``)."""

    async def init(self, key: Any = None) -> None:
        self.key = key
        self.count = 0

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case "incr":
                self.count += 1
                return self.count
            case "get":
                return (self.count, self.pid.node)
            case "crash":
                raise RuntimeError(f"{self.key!r} was asked to crash")
        raise ValueError(f"unknown call {message!r}")

    async def begin_handoff(self) -> Resume:
        return Resume(self.count)

    async def end_handoff(self, state: Any) -> None:
        self.count = state
