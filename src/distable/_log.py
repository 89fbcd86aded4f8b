"""Logging helpers shared by every layer: node-tagged loggers and rate limiting.

A repeated log line is rate-limited (guarantee 8 in DESIGN.md): the first line for a
key is written, later ones within ``interval`` seconds are counted and the count is
reported with the next line that gets through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from typing import Any


class RateLimitedLog:
    """Writes at most one line per key per ``interval`` seconds.

    Used from the event loop only (not thread-safe). The clock is injectable so the
    sans-I/O cores can use it with explicit time.
    """

    __slots__ = ("_clock", "_last", "_logger", "_prefix", "_suppressed", "interval")

    def __init__(self, logger: logging.Logger, prefix: str = "", interval: float = 10.0, clock: Any = None) -> None:
        self._logger = logger
        self._prefix = prefix
        self.interval = interval
        self._clock = clock or time.monotonic
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def log(self, level: int, key: Hashable, msg: str, *args: Any, exc_info: Any = None) -> bool:
        """Log ``msg % args`` unless ``key`` was logged within the interval. Returns True if written."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) > 4096:  # bound memory when keys are unbounded (peer addresses)
            self._last.clear()
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg = msg + " (%d similar lines suppressed)"
            args = (*args, suppressed)
        self._logger.log(level, self._prefix + msg, *args, exc_info=exc_info)
        return True

    def warning(self, key: Hashable, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def info(self, key: Hashable, msg: str, *args: Any) -> bool:
        return self.log(logging.INFO, key, msg, *args)

    def debug(self, key: Hashable, msg: str, *args: Any) -> bool:
        if not self._logger.isEnabledFor(logging.DEBUG):
            return False
        return self.log(logging.DEBUG, key, msg, *args)
