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


class Keeper(Process):
    """A registered worker that checkpoints its state (bench/checkpoint.py).

    Calls: ``("put", v)`` checkpoints ``v`` and waits until its standbys hold it, then
    answers ``v``; ``("echo", v)`` answers ``v`` (the same call, no checkpoint); ``"get"``
    answers the state it holds (the last one put, or the one it was restored with).
    Casts: ``("wb", v)`` checkpoints ``v`` write-behind; ``("inc", v)`` only keeps ``v``.
    """

    state: Any = None

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if message == "get":
            return self.state
        kind, value = message
        if kind == "put":
            self.state = value
            await self.checkpoint(value)
        return value

    async def handle_cast(self, message: Any) -> None:
        kind, value = message
        self.state = value
        if kind == "wb":
            self.checkpoint(value, wait=False)

    async def end_handoff(self, state: Any) -> None:
        self.state = state
