"""Two nodes on loopback, each its own OS process; processes call across them.

    python3 tasks.py demo

The parent starts node "b" as a child process (hosting a ``Counter``), runs node "a"
itself with a ``Greeter``, and prints each exchange: a's greeter calls b's counter,
b's counter calls a's greeter back, and a monitor on the counter reports its exit
when b stops. Everything runs on 127.0.0.1 and ends by itself in a few seconds.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import distable
from distable import Caller, Down, Node, Pid, Process, call
from distable.testing import NodeProcess, eventually

HERE = Path(__file__).resolve().parent


class Counter(Process):
    """Counts the greetings it gets, and greets the sender back."""

    async def init(self) -> None:
        self.count = 0

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("hello", str(who), Pid() as greeter):
                self.count += 1
                answer = await call(greeter, ("thanks", self.node.name))
                return f"hello {who}, you are visitor #{self.count} on {self.node.name} (they said: {answer})"
        raise ValueError(f"unexpected call {message!r}")


class Greeter(Process):
    """Answers the counter's thanks, and reports when the counter goes away."""

    async def init(self) -> None:
        self.downs: list[Down] = []

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("thanks", str(node)):
                return f"you're welcome, {node}"
            case ("watch", Pid() as pid):
                return distable.monitor(pid)
            case "downs":
                return self.downs
        raise ValueError(f"unexpected call {message!r}")

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, Down):
            self.downs.append(message)


async def main() -> None:
    cookie = secrets.token_hex(16)
    b = await NodeProcess.start("b", cookie, spawn={"counter": "two_nodes:Counter"}, paths=[str(HERE)])
    try:
        async with Node("a", cookie=cookie) as node:
            counter = b.pid("counter")
            greeter = await Greeter.start()
            print(f"node {node.name} is up; node {b.name} runs in OS process {b.proc.pid}")
            for i in range(3):
                reply = await call(counter, ("hello", f"greeter-{i}", greeter))
                print(f"  a -> b: hello  |  b -> a: thanks  |  reply: {reply}")
            await call(greeter, ("watch", counter))
            b.terminate()
            await b.wait()
            downs = await eventually(lambda: call(greeter, "downs"), timeout=10)
            print(f"  b stopped; a's monitor on the counter fired: {downs[0].reason!r}")
            print("done: 3 cross-node round trips each way, and one remote monitor")
    finally:
        await b.close()


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    distable.run(main())
