"""The README's quick start, runnable: python examples/quickstart.py (prints "True 1")."""

# myapp.py in the README (importable on every node: factories travel by reference, never as code)
from typing import Any

import distable
from distable import Caller, Gossip, MembershipConfig, Node, Process, Resume


class Worker(Process):
    async def init(self, name: tuple[str, int]) -> None:
        self.name, self.count = name, 0

    async def handle_cast(self, message: Any) -> None:
        if message == "incr":
            self.count += 1

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if message == "get":
            return self.count
        return None

    async def begin_handoff(self) -> Resume:  # the cluster changed: take my state along
        return Resume(self.count)

    async def end_handoff(self, count: int) -> None:  # on the new node, before any other message
        self.count = count


async def main() -> None:
    cluster = Gossip(if_addr="127.0.0.1")  # multicast on loopback by default
    async with Node("a", cookie="secret", cluster=cluster, membership=MembershipConfig.local()):
        pid = await distable.register(("worker", 1), Worker, ("worker", 1))
        distable.cast(("worker", 1), "incr")  # by name, from any node
        print(distable.whereis(("worker", 1)) == pid, await distable.call(("worker", 1), "get"))


if __name__ == "__main__":
    distable.run(main())  # uvloop when installed
