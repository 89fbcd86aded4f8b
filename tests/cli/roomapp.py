"""A chat-room app for the start-up tests (``--app tests.cli.roomapp:start``): each room
keeps its messages, instances of a ``register_type`` dataclass, and hands them off.

A node that has not imported this module cannot decode a room's handoff state (its
messages): ``distable node`` must import its apps before it joins. Every node runs
``start``, which registers the same rooms (``whereis_or_register``), as an app meant for
rolling restarts would. Child processes import this module as ``tests.cli.roomapp``, so
it imports nothing else from the test suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distable import Caller, Node, Process, Resume, register_type

ROOMS = [f"room-{i}" for i in range(16)]


@register_type
@dataclass(frozen=True)
class Message:
    author: str
    text: str


class Room(Process):
    """Cast ``("post", author, text)`` adds a message; call "get" answers ``(messages, node name)``."""

    async def init(self, name: str) -> None:
        self.name = name
        self.messages: list[Message] = []

    async def handle_cast(self, message: Any) -> None:
        _, author, text = message
        self.messages.append(Message(author, text))

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        return (list(self.messages), self.node.name)

    async def begin_handoff(self) -> Resume:
        return Resume(list(self.messages))

    async def end_handoff(self, state: Any) -> None:
        self.messages = list(state)


async def start(node: Node) -> None:
    """Every node: each room runs once in the cluster, wherever it is placed."""
    for name in ROOMS:
        await node.whereis_or_register(name, Room, name)
