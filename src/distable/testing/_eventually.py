"""Polling with a deadline: the only way tests here wait for something to happen."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str | Callable[[], str] = "condition not met",
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that.

    Raises:
        TimeoutError: not truthy within ``timeout`` seconds; the message says what was
            awaited (call it lazily to include the last observed state).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"after {timeout} s: {text}")
        await asyncio.sleep(interval)
