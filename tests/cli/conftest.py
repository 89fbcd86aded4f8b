"""``distable node`` processes for the CLI tests, and ``distable ...`` commands run to the end.

Every node is its own ``python -m distable.cli node`` process, as an operator would run
it; waits read the processes' output (the node's "up" line, a command's exit) with
deadlines, never sleeps; every process a test starts is killed at its end, whatever
happens.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from distable.testing import free_tcp_ports as free_ports

ROOT = Path(__file__).resolve().parents[2]
COOKIE = "cli-test-cookie"
UP = re.compile(r"^distable: node (\S+) up \((.*)\)$")
TIMEOUT = 30.0  # bound on each process's start and each query (generous: the machine is shared)

__all__ = ["COOKIE", "ROOT", "TIMEOUT", "Answer", "Cluster", "NodeProc", "Processes", "distable", "free_ports"]


@dataclass
class NodeProc:
    """One ``distable node`` process; ``details`` is its "up" line's parenthesis."""

    proc: asyncio.subprocess.Process
    short: str
    stderr: Path
    name: str = ""
    details: str = ""

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    async def wait(self) -> int:
        return await asyncio.wait_for(self.proc.wait(), TIMEOUT)

    def log(self) -> str:
        return self.stderr.read_text()

    async def up(self) -> NodeProc:
        """Wait for the "up" line (kill the process if another line comes)."""
        assert self.proc.stdout is not None
        try:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), TIMEOUT)).decode().strip()
        except BaseException:
            self.proc.kill()
            await self.proc.wait()
            raise
        match = UP.match(line)
        if match is None:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"node {self.short} did not come up: {line!r}; stderr: {self.log()}")
        self.name, self.details = match.group(1), match.group(2)
        return self


@dataclass
class Processes:
    """Every node process a test starts; ``close()`` kills whatever is left."""

    tmp: Path
    nodes: list[NodeProc] = field(default_factory=list)

    async def spawn(self, short: str, *args: str) -> NodeProc:
        """Start ``distable node --name SHORT ARGS`` without waiting for anything."""
        stderr = self.tmp / f"{short}-{len(self.nodes)}.stderr"
        cmd = [sys.executable, "-m", "distable.cli", "node", "--name", short, "--app-dir", str(ROOT), *args]
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, stderr=err, stdin=asyncio.subprocess.DEVNULL, cwd=ROOT
            )
        node = NodeProc(proc, short, stderr)
        self.nodes.append(node)
        return node

    async def start(self, short: str, *args: str) -> NodeProc:
        """Start a node and wait until it says it is up."""
        return await (await self.spawn(short, *args)).up()

    async def close(self) -> None:
        for node in self.nodes:
            if node.proc.returncode is None:
                node.proc.kill()
            await node.proc.wait()


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        await procs.close()


@dataclass
class Cluster:
    a: NodeProc
    b: NodeProc
    discovery: list[str]  # the options a query needs to find the cluster


@pytest.fixture
async def cluster(processes: Processes) -> Cluster:
    """Nodes ``a`` and ``b``, a static cluster on two free loopback ports, running cliapp."""
    port_a, port_b = free_ports(2)
    static = ["--static", f"a@127.0.0.1:{port_a}", "--static", f"b@127.0.0.1:{port_b}"]
    common = ["--cookie", COOKIE, *static, "--membership", "local", "--app", "tests.cli.cliapp:start"]
    common += ["--log-level", "warning"]
    a = await processes.start("a", "--port", str(port_a), *common)
    b = await processes.start("b", "--port", str(port_b), *common)
    assert (a.name, b.name) == (f"a@127.0.0.1:{port_a}", f"b@127.0.0.1:{port_b}")
    assert a.details == "role server, cluster static"
    return Cluster(a, b, ["--cookie", COOKIE, *static])


@dataclass(frozen=True)
class Answer:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.stdout)


async def run_to_end(*command: str, cwd: Path | None = None) -> Answer:
    """Run ``command`` to its end (killed if it outlives ``TIMEOUT``)."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Answer(proc.returncode, out.decode(), err.decode())


async def distable(*args: str) -> Answer:
    """Run ``distable ARGS`` (``python -m distable.cli``) to the end."""
    return await run_to_end(sys.executable, "-m", "distable.cli", *args, cwd=ROOT)
