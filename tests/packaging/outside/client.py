"""A user's script, run by the installed wheel's Python: ``python client.py NODE COOKIE``.

Joins NODE's cluster as a client node, calls the process registered as ``greeter`` on it,
and prints one JSON object: the reply, where distable was imported from, the event loop,
and for each optional feature "ok" or the MissingExtra message.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import distable
from distable import DNSPoll, Gossip, MembershipConfig, MissingExtra, Node, Static


def web() -> None:
    import distable.web  # noqa: F401


async def redis_store() -> None:
    from distable.store import open_store

    await open_store("redis://127.0.0.1:1/0").close()  # made and closed: nothing connects


FEATURES: dict[str, Callable[[], Any]] = {
    "web": web,
    "crypto": lambda: Gossip(encrypt=True),
    "dns": lambda: DNSPoll("distable.invalid"),
    "redis": redis_store,
}


async def main(peer: str, cookie: str) -> dict[str, Any]:
    report: dict[str, Any] = {"distable": distable.__file__, "version": distable.__version__}
    membership = MembershipConfig.local()
    async with Node("b", cookie=cookie, role="client", cluster=Static([peer]), membership=membership) as node:
        deadline = time.monotonic() + 20.0
        while node.whereis("greeter") is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"no process registered as 'greeter' after 20 s (nodes: {node.nodes()})")
            await asyncio.sleep(0.05)
        report["reply"] = await node.call("greeter", "hello", timeout=10.0)
        report["loop"] = type(asyncio.get_running_loop()).__module__
    for name, feature in FEATURES.items():
        try:
            made = feature()
            if inspect.isawaitable(made):
                await made
            report[name] = "ok"
        except MissingExtra as exc:
            report[name] = str(exc)
    return report


if __name__ == "__main__":
    print(json.dumps(distable.run(main(sys.argv[1], sys.argv[2]))))
