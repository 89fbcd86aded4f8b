"""The registered worker of bench/registry.py, imported by the child nodes (``paths=[bench/]``)."""

from __future__ import annotations

from typing import Any

from distable import Caller, Process, Resume


class Worker(Process):
    """An idle registered worker: answers calls with the message, stops on the cast "stop",
    and moves with a small state (``Resume``) when the registry hands it off."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        return message

    async def handle_cast(self, message: Any) -> None:
        if message == "stop":
            self.stop("normal")

    async def begin_handoff(self) -> Resume:
        return Resume(1)
