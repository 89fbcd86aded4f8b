"""Loop lag: a handler that blocks the loop is named in a warning, while it blocks it;
run_blocking is not; uvloop."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from typing import Any

import pytest

import distable
from distable import Caller, Node, Process, run_blocking

from ._support import COOKIE, NODE_NAME, records

BLOCK_WARNING = 0.05
# The executor sleeps BLOCK_FOR, far past this too; the higher threshold only gives a noisy
# machine more room before an unrelated scheduling hiccup looks like a block.
OFFLOAD_BLOCK_WARNING = 0.1
BLOCK_FOR = 0.2
WARNING_TEXT = "blocked the event loop"


class Sleeper(Process):
    """call "block" sleeps on the loop's thread; call "offload" sleeps in the executor."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if message == "block":
            time.sleep(BLOCK_FOR)  # noqa: ASYNC251 - the behaviour under test: a handler blocking the loop
        else:
            await run_blocking(time.sleep, BLOCK_FOR)
        return message


async def test_a_handler_blocking_the_loop_logs_a_warning_naming_the_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="distable.runtime")
    async with Node(NODE_NAME, cookie=COOKIE, block_warning=BLOCK_WARNING) as node:
        pid = await Sleeper.start()
        assert await node.call(pid, "block") == "block"
        [line] = records(caplog, logging.WARNING, WARNING_TEXT)
        assert repr(pid) in line.getMessage()


class Stuck(Process):
    """call: holds the loop until ``released`` is set (by whoever reads the warning), or
    30 s; answers whether it was released."""

    async def init(self, released: threading.Event) -> None:
        self.released = released

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        return self.released.wait(30)  # the behaviour under test: a handler stuck on the loop's thread


class _Releaser(logging.Handler):
    def __init__(self, released: threading.Event) -> None:
        super().__init__(logging.WARNING)
        self.released = released
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if WARNING_TEXT in record.getMessage():
            self.lines.append(record.getMessage())
            self.released.set()


async def test_a_handler_holding_the_loop_is_reported_while_it_holds_it() -> None:
    released = threading.Event()
    releaser = _Releaser(released)
    logger = logging.getLogger("distable.runtime")
    logger.addHandler(releaser)
    try:
        async with Node(NODE_NAME, cookie=COOKIE, block_warning=BLOCK_WARNING) as node:
            pid = await node.spawn(Stuck, released)
            assert await node.call(pid, "hold", timeout=60) is True  # released by the warning, not the 30 s
    finally:
        logger.removeHandler(releaser)
    [line] = releaser.lines
    assert repr(pid) in line
    assert "Stuck.handle_call" in line
    assert "test_loop_lag.py" in line


async def test_run_blocking_in_a_handler_does_not_log_the_blocking_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="distable.runtime")
    async with Node(NODE_NAME, cookie=COOKIE, block_warning=OFFLOAD_BLOCK_WARNING) as node:
        pid = await Sleeper.start()
        assert await node.call(pid, "offload") == "offload"
    assert records(caplog, logging.WARNING, WARNING_TEXT) == []


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_run_uses_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert distable.run(_loop_type()) is uvloop.Loop


def test_run_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes "import uvloop" raise ImportError
    loop_type = distable.run(_loop_type())
    assert issubclass(loop_type, asyncio.BaseEventLoop)
    assert loop_type.__module__.startswith("asyncio")
