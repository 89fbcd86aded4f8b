"""Factories and ``register_type`` types defined in a script's ``__main__`` either work
across nodes or fail at once with an error saying what to do (issue 10).

The script runs as ``python notes.py`` and registers a name owned by a ``distable node``
process that imports the same file as its app (``--app notes --app-dir DIR``): the
factory's reference and the type's wire name use the script's module name, not
``__main__`` (which names another program on the other node). A script whose file name
is not a module name (``my-notes.py``) is refused with the fix in the message.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.cli.conftest import COOKIE, Processes, free_ports, run_to_end

pytestmark = pytest.mark.cluster

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import sys
    from dataclasses import dataclass
    from typing import Any

    from distable import Caller, Node, Process, register_type


    @register_type
    @dataclass(frozen=True)
    class Note:
        text: str


    class Keeper(Process):
        async def init(self, note: Note) -> None:
            self.note = note

        async def handle_call(self, message: Any, caller: Caller) -> Any:
            return (self.note, self.node.name)


    async def main(peer: str) -> None:
        async with Node("script", cookie=sys.argv[2], connect=[peer]) as node:
            await node.wait_joined(10, expect=2)
            name = next(f"k-{i}" for i in range(1000) if node.placement().owner(f"k-{i}") == peer)
            try:
                await node.register(name, Keeper, Note("hi"))
            except TypeError as exc:
                print("TypeError:", exc, flush=True)
                return
            print(await node.call(name, "get"), flush=True)


    if __name__ == "__main__":
        asyncio.run(main(sys.argv[1]))
    """
)


async def run_script(path: Path, peer: str) -> str:
    answer = await run_to_end(sys.executable, str(path), peer, COOKIE)
    assert answer.code == 0, answer.stderr
    return answer.stdout.strip()


async def test_a_scripts_factory_and_types_work_on_a_node_that_imports_the_script(
    processes: Processes, tmp_path: Path
) -> None:
    (tmp_path / "notes.py").write_text(SCRIPT)
    (port,) = free_ports(1)
    peer = await processes.start(
        "peer",
        "--port",
        str(port),
        "--cookie",
        COOKIE,
        "--cluster",
        "none",
        "--app",
        "notes",
        "--app-dir",
        str(tmp_path),
    )
    assert await run_script(tmp_path / "notes.py", peer.name) == f"(Note(text='hi'), '{peer.name}')"


async def test_a_script_that_other_nodes_cannot_import_is_told_what_to_do(processes: Processes, tmp_path: Path) -> None:
    (tmp_path / "my-notes.py").write_text(SCRIPT)
    (port,) = free_ports(1)
    peer = await processes.start("peer", "--port", str(port), "--cookie", COOKIE, "--cluster", "none")
    answer = await run_script(tmp_path / "my-notes.py", peer.name)
    assert answer.startswith("TypeError: factory 'Keeper' is defined in the script being run (__main__)"), answer
    assert "move it into a module" in answer
