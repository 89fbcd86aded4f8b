"""A type registered on one node only, with the other node in its own OS process.

The test's node registers ``Room`` (this module does, at import); the child node never
imports this module, so it cannot decode a ``Room``: exactly a deployment where one node
runs newer application code. The caller must learn of it at once, and both sides must
say so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from distable import Node, UndecodableMessage, register_type
from distable.testing import NodeProcess, eventually

from .conftest import COOKIE, HERE

pytestmark = pytest.mark.cluster

CALL_TIMEOUT = 20.0  # far longer than an answer takes: a CallTimeout means the error was lost


@register_type
@dataclasses.dataclass(frozen=True)
class Room:
    name: str


WIRE_NAME = f"{Room.__module__}.{Room.__qualname__}"


async def test_a_type_the_other_node_never_registered_fails_the_call_at_once_and_the_cast_is_reported(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "b.log"
    with log_path.open("wb") as log_file:
        remote = await NodeProcess.start(
            "b", COOKIE, spawn={"worker": "apps:Worker"}, paths=[str(HERE)], stderr=log_file
        )
    try:
        worker = remote.pid("worker")
        async with Node("a", cookie=COOKIE) as node:
            await node.connect(remote.name, timeout=20.0)
            with pytest.raises(UndecodableMessage) as caught:
                await node.call(worker, Room("lobby"), timeout=CALL_TIMEOUT)
            assert (caught.value.node, caught.value.type_name) == (remote.name, WIRE_NAME)

            node.cast(worker, Room("lobby"))

            async def counted() -> bool:
                runtime = (await remote.stats())["runtime"]
                return bool(runtime["undecodable_received"] == 2)

            await eventually(counted, timeout=20.0, message=lambda: log_path.read_text())
            await eventually(lambda: node.statistics().runtime.undecodable_sent == 2, timeout=20.0)
            # The worker still serves, over the same link.
            assert await node.call(worker, "ping", timeout=CALL_TIMEOUT) == "pong"
            text = log_path.read_text()
            assert f"could not decode a CallRequest from {node.name}" in text, text
            assert WIRE_NAME in text, text
    finally:
        await remote.close()
