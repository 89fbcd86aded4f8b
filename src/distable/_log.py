"""Logging helpers shared by every layer: node-tagged lines, rate limiting, and the
output format of the ``distable`` command and of applications that want it.

A repeated log line is rate-limited (docs/design.md, guarantee 8: no retry loop may
flood the log): the first line for a key is written, later ones within ``interval`` seconds are counted and the count is
reported with the next line that gets through.

Every node-tagged line names its node. The layers write ``"<node name>: message"``
(``RateLimitedLog``'s prefix, or a ``"%s: "`` format with the node name first), and
``configure_logging`` turns that into a ``node`` field: ``NodeFilter`` finds the node
of each record (an explicit ``extra={"node": ...}``, else that leading name, else the
node current in the logging task's context) and the formatters print it once, as a
field, with the prefix removed from the message.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import time
from collections.abc import Hashable
from typing import Any, TextIO


class RateLimitedLog:
    """Writes at most one line per key per ``interval`` seconds.

    Used from the event loop only (not thread-safe). The clock is injectable so the
    sans-I/O cores can use it with explicit time.
    """

    __slots__ = ("_clock", "_extra", "_last", "_logger", "_prefix", "_suppressed", "interval")

    def __init__(self, logger: logging.Logger, prefix: str = "", interval: float = 10.0, clock: Any = None) -> None:
        self._logger = logger
        self._prefix = prefix
        node = _NODE_PREFIX.match(prefix)
        # The layers pass "<node name>: " as the prefix: the node becomes a field too.
        self._extra = {"node": node.group(1)} if node is not None else None
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
            self._suppressed.clear()
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg = msg + " (%d similar lines suppressed)"
            args = (*args, suppressed)
        self._logger.log(level, self._prefix + msg, *args, exc_info=exc_info, extra=self._extra)
        return True

    def warning(self, key: Hashable, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def info(self, key: Hashable, msg: str, *args: Any) -> bool:
        return self.log(logging.INFO, key, msg, *args)

    def debug(self, key: Hashable, msg: str, *args: Any) -> bool:
        if not self._logger.isEnabledFor(logging.DEBUG):
            return False
        return self.log(logging.DEBUG, key, msg, *args)


#: ``name@host:port: `` (or ``name@[v6]:port: ``) at the start of a line: the node prefix.
_NODE_PREFIX = re.compile(r"([^\s@]+@(?:\[[^\]\s]+\]|[^\s:\[\]]+):\d+): ")

#: The attribute ``configure_logging`` marks its handler with, to replace it when called again.
_HANDLER_MARK = "_distable_handler"

FORMATS = ("text", "json")


def _context_node() -> str | None:
    """The name of the node current in this context (``async with Node`` and its tasks)."""
    # Imported here, not at the top: every layer imports this module, the runtime package
    # among them, and importing runtime._context runs the runtime package's __init__ first.
    from .runtime._context import CURRENT_RUNTIME

    runtime = CURRENT_RUNTIME.get()
    name = runtime.node_name if runtime is not None else None
    return name if isinstance(name, str) and name else None


class NodeFilter(logging.Filter):
    """Sets ``record.node`` (the node name, or None) on every record; filters nothing.

    The node is, in order: ``extra={"node": ...}`` given by the caller; the node name a
    line starts with (``"a@127.0.0.1:4370: ..."``); the node current in the context
    that logs. Runs wherever the record is handled (any thread); never raises.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        node = getattr(record, "node", None)
        if not isinstance(node, str) or not node:
            node = None
            try:
                match = _NODE_PREFIX.match(record.getMessage())
            except Exception:  # a bad format string: the formatter reports it
                match = None
            node = match.group(1) if match is not None else _context_node()
        record.node = node
        return True


def _message_without_node(record: logging.LogRecord) -> str:
    """The record's message, without the ``"<node>: "`` prefix its ``node`` field repeats."""
    message = record.getMessage()
    node = getattr(record, "node", None)
    if isinstance(node, str) and message.startswith(node + ": "):
        message = message[len(node) + 2 :]
    return message


class TextFormatter(logging.Formatter):
    """``2024-05-01 12:00:00,123 INFO [a@127.0.0.1:4370] distable.node: node started``;
    ``[-]`` when the line has no node."""

    def format(self, record: logging.LogRecord) -> str:
        node = getattr(record, "node", None) or "-"
        line = f"{self.formatTime(record)} {record.levelname} [{node}] {record.name}: {_message_without_node(record)}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``node``
    (null when the line has none), ``message``, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "node": getattr(record, "node", None),
            "message": _message_without_node(record),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(
            out,
            default=str,
        )


def configure_logging(level: str = "INFO", fmt: str = "text", *, stream: TextIO | None = None) -> None:
    """Send every log line (the root logger's) to ``stream`` (stderr), with its node.

    Args:
        level: a level name ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"; any case).
        fmt: "text" (``time LEVEL [node] logger: message``) or "json" (one object per
            line with ``time``, ``level``, ``logger``, ``node`` and ``message``).
        stream: where lines go; ``sys.stderr`` by default.

    Calling it again replaces the handler it installed (handlers installed by others
    stay). Call it from the main thread before starting nodes.

    Raises:
        ValueError: unknown level or format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    levels = logging.getLevelNamesMapping()
    number = levels.get(str(level).upper())
    if number is None or str(level).upper() == "NOTSET":
        known = ", ".join(n for n in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
        raise ValueError(f"log level must be one of {known}, not {level!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(NodeFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(number)
