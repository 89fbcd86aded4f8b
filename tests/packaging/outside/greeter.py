"""A user's app, copied next to the installed wheel's venv: ``distable node --app greeter:start``
registers one process, ``greeter``, that answers calls."""

from __future__ import annotations

from typing import Any

from distable import Node, Process


class Greeter(Process):
    async def handle_call(self, message: Any, caller: Any) -> Any:
        return f"{message} from {self.node.name}"


async def start(node: Node) -> None:
    await node.register("greeter", Greeter)
