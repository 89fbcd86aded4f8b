"""Process groups across two nodes: join, publish, multi_call, leave.

    python examples/groups.py

Node "b" runs in its own OS process with two ``Member`` processes that join the group
"room" in their ``init``; node "a" (this process) adds one member of its own. From "a",
``publish`` sends every member a message, ``multi_call`` asks each what it heard (one
``Reply`` per member: a value, or the error that member gave), and a member that leaves
is no longer reached. Everything runs on 127.0.0.1 and ends by itself in a few seconds.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import distable
from distable import Caller, MembershipConfig, Node, Process, call
from distable.testing import NodeProcess, eventually

HERE = Path(__file__).resolve().parent
ROOM = "room"


class Member(Process):
    """Joins ``ROOM`` when it starts; remembers what it hears; tells what it heard when asked."""

    async def init(self) -> None:
        self.heard: list[Any] = []
        await distable.join(ROOM, self.pid)  # leaves by itself when it exits or its node dies

    async def handle_info(self, message: Any) -> None:  # publish() arrives here, as send() does
        self.heard.append(message)

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case "heard":
                return list(self.heard)  # a copy: a local caller would otherwise share this list
            case "leave":
                await distable.leave(ROOM, self.pid)
                return None
        raise ValueError(f"unexpected call {message!r}")


async def main() -> None:
    cookie = secrets.token_hex(16)
    async with Node("a", cookie=cookie, membership=MembershipConfig.local()) as a:
        b = await NodeProcess.start(
            "b", cookie, spawn={"m1": "groups:Member", "m2": "groups:Member"}, connect=[a.name], paths=[str(HERE)]
        )
        try:
            await Member.start()
            members = await eventually(lambda: len(distable.members(ROOM)) == 3 and distable.members(ROOM))
            print(f"{ROOM!r} has {len(members)} members: {', '.join(str(p) for p in sorted(members))}")

            sent_to = distable.publish(ROOM, "hello")  # one send per member, fire and forget
            print(f"publish({ROOM!r}, 'hello') sent to {sent_to} members; multi_call({ROOM!r}, 'heard'):")
            first = await distable.multi_call(ROOM, "heard", timeout=2.0)
            for reply in first:
                print(f"  {reply.pid}: {reply.value if reply.ok else reply.error!r}")

            leaver = b.pid("m2")
            await call(leaver, "leave")
            await eventually(lambda: len(distable.members(ROOM)) == 2)
            distable.publish(ROOM, "bye")
            print(f"{leaver} left; publish({ROOM!r}, 'bye'); multi_call({ROOM!r}, 'heard'):")
            second = await distable.multi_call(ROOM, "heard")
            for reply in second:
                print(f"  {reply.pid}: {reply.value if reply.ok else reply.error!r}")
            print(f"  (and {leaver}, no longer a member: {await call(leaver, 'heard')})")

            ok = all(r.ok and r.value == ["hello"] for r in first) and len(first) == 3
            ok = ok and all(r.ok and r.value == ["hello", "bye"] for r in second) and len(second) == 2
            print("done: 3 members on 2 nodes, each reached once per publish" if ok else "FAILED")
        finally:
            await b.close()


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    distable.run(main())
