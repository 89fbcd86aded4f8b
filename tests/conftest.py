"""Fixtures of the whole test suite."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_socket_folder() -> Iterator[None]:
    """The nodes of this run (in this process and in the processes it starts, which inherit
    the environment) put their Unix domain sockets in a folder of this run's own, deleted
    at the end: the sockets that nodes stopped dead leave behind do not pile up in the
    user's folder, and no node of this run meets a node of another run or a real one there."""
    saved = os.environ.get("XDG_RUNTIME_DIR")
    root = tempfile.mkdtemp(prefix="dt-")  # short: a socket's path has a length limit
    os.environ["XDG_RUNTIME_DIR"] = root
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def restored_root_logger() -> Iterator[None]:
    """Each test leaves the root logger as it found it (level and handlers): a test that
    runs ``distable node`` in-process installs a handler on its captured stderr, which is
    closed after the test, and the next test's log lines then failed on it ("Logging
    error", in a CLI test's one-line output)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
