"""Every example in examples/ runs and prints what it promises (real node processes)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "two_nodes.py": "done: 3 cross-node round trips each way, and one remote monitor",
    "quickstart.py": "True 1",
    "groups.py": "done: 3 members on 2 nodes, each reached once per publish",
    "handoff.py": "done: moved with its state, every message delivered once and in order",
}


def run_example(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=90, cwd=EXAMPLES
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert EXPECTED[name] in result.stdout, result.stdout[-2000:]
    return result.stdout


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - {"groups.py", "handoff.py"}))
def test_example_runs(name: str) -> None:
    run_example(name)


def test_groups_example_reaches_every_member_on_both_nodes() -> None:
    out = run_example("groups.py")
    assert "'room' has 3 members" in out, out
    assert out.count("['hello']") == 4, out  # 3 members after the first publish, and the one that left
    assert out.count("['hello', 'bye']") == 2, out  # the 2 that stayed
    assert re.search(r"<pid a@127\.0\.0\.1:\d+/\d+>: \['hello', 'bye'\]", out), out
    assert len(re.findall(r"<pid b@127\.0\.0\.1:\d+/\d+>: \['hello', 'bye'\]", out)) == 1, out


def test_handoff_example_moves_the_worker_with_its_state_and_forwards_in_order() -> None:
    out = run_example("handoff.py")
    assert re.search(r"moved to b@127\.0\.0\.1:\d+ \(answer 'resume'\)", out), out
    assert "the new copy handled first: end_handoff" in out, out
    resumed = re.search(r"state resumed at count (\d+)", out)
    assert resumed is not None, out
    assert int(resumed.group(1)) >= 100, out
    forwarded = re.search(r"casts sent to the old pid, delivered to the new copy: (\d+)", out)
    assert forwarded is not None, out
    assert int(forwarded.group(1)) > 0, out  # some casts really were in flight during the move
    assert "out of order or missing: none" in out, out
