"""Debian tools the tests start (``SYSTEM_PACKAGES`` in tasks.py): found, or the test is
skipped saying why, and fails on CI (``CI`` set), where ``python3 tasks.py test``
installed them as root."""

from __future__ import annotations

import os
import shutil

import pytest


def system_tool(*commands: str, package: str, path: str | None = None) -> str:
    """The path of the first of ``commands`` found (on ``PATH``, then on ``path``), which
    Debian's ``package`` installs; skips the test when none is (fails it on CI)."""
    for command in commands:
        found = shutil.which(command) or (shutil.which(command, path=path) if path else None)
        if found is not None:
            return found
    hint = f"apt-get install {package} (python3 tasks.py test installs it when run as root)"
    if os.environ.get("CI"):
        pytest.fail(f"{commands[0]} is not installed on CI: {hint}")
    print(f"skipping: {commands[0]} not installed: {hint}")
    pytest.skip(f"{commands[0]} not installed: {hint}")
