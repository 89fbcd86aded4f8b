"""Every example in examples/ runs and prints what it promises (real node processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "two_nodes.py": "done: 3 cross-node round trips each way, and one remote monitor",
    "quickstart.py": "True 1",
}


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=90, cwd=EXAMPLES
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert EXPECTED[name] in result.stdout, result.stdout[-2000:]
