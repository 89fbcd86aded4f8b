"""Processes and helpers shared by the runtime tests (single node, no peers)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from distable import Caller, Down, Pid, Process, Ref, monitor
from distable.runtime import current_runtime

NODE_NAME = "t"
COOKIE = "c"


async def yield_to_loop(turns: int = 1) -> None:
    """Let the event loop run other ready callbacks ``turns`` times (a yield, not a wait)."""
    for _ in range(turns):
        await asyncio.sleep(0)


class Recorder(Process):
    """Records every message it handles, and how it stops; answers ("echo", x) calls with x.

    ``handle_call`` also answers ("stop", reason) by stopping itself after the reply.
    """

    async def init(self, log: list[Any] | None = None) -> None:
        self.log: list[Any] = log if log is not None else []
        self.terminated: list[Any] = []

    async def handle_info(self, message: Any) -> None:
        self.log.append(("info", message))

    async def handle_cast(self, message: Any) -> None:
        self.log.append(("cast", message))

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        self.log.append(("call", message))
        match message:
            case ("echo", value):
                return value
            case ("stop", reason):
                self.stop(reason)
                return "stopping"
        return None

    async def terminate(self, reason: Any) -> None:
        self.terminated.append(reason)


class Watcher(Process):
    """Monitors pids on request (call ("monitor", pid) -> ref) and records what it receives."""

    async def init(self) -> None:
        self.received: list[Any] = []

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("monitor", pid):
                return monitor(pid)
            case ("demonitor", ref):
                current_runtime().demonitor(ref)
                return True
        raise ValueError(message)

    async def handle_info(self, message: Any) -> None:
        self.received.append(message)

    def downs(self) -> list[Down]:
        return [m for m in self.received if isinstance(m, Down)]


def proc_of(pid: Pid) -> Any:
    """The live local process object ``pid`` names (the test inspects its attributes)."""
    proc = current_runtime().local(pid)
    assert proc is not None, f"{pid!r} is not a live local process"
    return proc


async def watch(pid: Pid) -> tuple[Watcher, Ref]:
    """Start a Watcher that monitors ``pid``; return it and the monitor's ref."""
    watcher_pid = await Watcher.start()
    ref = await current_runtime().call(watcher_pid, ("monitor", pid))
    watcher = proc_of(watcher_pid)
    assert isinstance(watcher, Watcher)
    assert isinstance(ref, Ref)
    return watcher, ref


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    """Captured records at exactly ``level`` whose message contains ``text``."""
    return [r for r in caplog.records if r.levelno == level and text in r.getMessage()]
