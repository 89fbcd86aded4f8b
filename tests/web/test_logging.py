"""``configure_logging``: text or JSON lines, each with the node it concerns as a field."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from distable import MembershipConfig, Node
from distable._log import RateLimitedLog, configure_logging
from distable.testing import NodeProcess

from .conftest import COOKIE


@pytest.fixture
def root_logger() -> logging.Logger:
    """The root logger (tests/conftest.py restores it after each test)."""
    return logging.getLogger()


async def test_json_lines_carry_the_node(root_logger: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    async with Node("a", cookie=COOKIE, membership=MembershipConfig.local()) as a:
        logging.getLogger("app").info("inside the node's context")
        RateLimitedLog(logging.getLogger("distable.test"), f"{a.name}: ").warning("k", "rate-limited %d", 1)
    logging.getLogger("app").warning("outside any node")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(set(line) == {"time", "level", "logger", "node", "message"} for line in lines), lines
    by_message = {line["message"]: line for line in lines}
    started = next(line for line in lines if line["message"].startswith("node started"))
    assert (started["node"], started["logger"], started["level"]) == (a.name, "distable.node", "INFO")
    assert by_message["inside the node's context"]["node"] == a.name
    assert by_message["rate-limited 1"]["node"] == a.name
    assert by_message["outside any node"]["node"] is None
    assert not any(line["message"].startswith(a.name) for line in lines), "the prefix is a field now"
    assert started["time"].endswith("+00:00")


async def test_text_lines_and_exceptions(root_logger: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("WARNING", "text", stream=out)
    configure_logging("WARNING", "text", stream=out)  # again: still one handler
    log = logging.getLogger("app")
    log.info("not shown")
    log.warning("%s: something odd", "b@[::1]:4370")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    first, second, *trace = text.splitlines()
    assert first.endswith(" WARNING [b@[::1]:4370] app: something odd")
    assert second.endswith(" ERROR [-] app: failed")
    assert "RuntimeError: boom" in trace[-1]
    assert "not shown" not in text


def test_bad_arguments(root_logger: logging.Logger) -> None:
    with pytest.raises(ValueError, match="log format must be one of text, json"):
        configure_logging("INFO", "xml")
    with pytest.raises(ValueError, match="log level must be one of"):
        configure_logging("LOUD", "text")


@pytest.mark.cluster
async def test_child_node_logs_json() -> None:
    """A node process started with ``log_format="json"`` writes JSON lines with its name."""
    child = await NodeProcess.start("j", COOKIE, log_level="INFO", log_format="json", stderr=asyncio.subprocess.PIPE)
    try:
        child.terminate()
        await child.wait()
        assert child.proc.stderr is not None
        lines = [json.loads(line) for line in (await child.proc.stderr.read()).decode().splitlines()]
    finally:
        await child.close()
    assert {line["node"] for line in lines if line["logger"] == "distable.node"} == {child.name}
