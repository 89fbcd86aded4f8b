"""Process classes the cross-node benchmarks start in a child node (``NodeProcess(paths=[bench/])``)."""

from __future__ import annotations

from typing import Any

import distable
from distable import Caller, Process


class Sink(Process):
    """Counts info messages; ``call(sink, "count")`` returns the count and resets it.

    Links are ordered, so a count call sent after N messages is answered after the sink
    has handled all N: that reply is the end of a one-way measurement.
    """

    async def init(self) -> None:
        self.count = 0

    async def handle_info(self, message: Any) -> None:
        self.count += 1

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        count, self.count = self.count, 0
        return count


class Echo(Process):
    """Replies with the message itself."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        return message


class CallLoop(Process):
    """On ``("run", target, n, future)``: calls ``target`` n times in a row, then resolves the future.

    The future is a local object: local delivery never copies, so this message may hold it.
    """

    async def handle_info(self, message: Any) -> None:
        _, target, n, fut = message
        call = distable.call
        for i in range(n):
            await call(target, i)
        fut.set_result(n)
