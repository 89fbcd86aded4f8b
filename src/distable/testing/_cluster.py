"""Nodes in separate OS processes, for cluster tests and examples."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ..wire import Pid


class NodeProcess:
    """A node running in its own OS process (see ``distable.testing._child``).

    Start with ``await NodeProcess.start(...)``; stop with ``terminate()`` (graceful)
    or ``kill()`` (SIGKILL), then ``await wait()``. ``close()`` does whatever is needed
    to make sure the process is gone, and is safe to call twice.
    """

    def __init__(self, proc: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.proc = proc
        self.info = info
        self.name: str = info["node"]
        self.incarnation: int = info["incarnation"]

    @classmethod
    async def start(
        cls,
        name: str,
        cookie: str,
        *,
        spawn: dict[str, str] | None = None,
        connect: Sequence[str] = (),
        paths: Sequence[str] = (),
        port: int = 0,
        log_level: str = "WARNING",
        timeout: float = 20.0,
    ) -> NodeProcess:
        """Start the node and wait until it reports that it is up.

        ``spawn`` maps labels to ``"module:ProcessClass"``; each is started in the
        child and its pid is available as ``pid(label)``.
        """
        args = [sys.executable, "-m", "distable.testing._child", "--name", name, "--cookie", cookie]
        args += ["--port", str(port), "--log-level", log_level]
        for label, ref in (spawn or {}).items():
            args += ["--spawn", f"{label}={ref}"]
        for node in connect:
            args += ["--connect", node]
        for path in paths:
            args += ["--path", os.fspath(path)]
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TimeoutError(f"node process {name} did not start within {timeout} s") from None
        if not line:
            code = await proc.wait()
            raise RuntimeError(f"node process {name} exited with code {code} before it was up")
        return cls(proc, json.loads(line))

    def pid(self, label: str) -> Pid:
        node, incarnation, local_id = self.info["pids"][label]
        return Pid(node, incarnation, local_id)

    def kill(self) -> None:
        """SIGKILL: the node dies without a word to anyone."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: the node stops gracefully."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float = 20.0) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.terminate()
            try:
                await self.wait(10.0)
            except TimeoutError:
                self.kill()
                await self.proc.wait()
