"""constraints.txt is what ``python3 tasks.py constraints`` makes of pyproject.toml, and
holds names and versions only.

The check runs the same ``uv pip compile`` on a copy of the file: uv keeps the versions a
file already pins wherever they still fit, so a new release upstream changes nothing,
while a dependency added to, removed from or re-bounded in pyproject.toml does. It needs
the package index (as installing the environment does), not a warm cache.
"""

from __future__ import annotations

import difflib
import re
import subprocess
from pathlib import Path

import tasks
import uv

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+( ; [^#]+)?")


def test_constraints_txt_is_what_pyproject_toml_makes(tmp_path: Path) -> None:
    current = CONSTRAINTS.read_text()
    out = tmp_path / "constraints.txt"
    out.write_text(current)  # its pins are uv's preferences
    command = [uv.find_uv_bin(), *tasks.COMPILE, "-o", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"uv pip compile failed:\n{done.stdout}\n{done.stderr}"
    made = out.read_text()
    diff = "".join(difflib.unified_diff(current.splitlines(True), made.splitlines(True), "constraints.txt", "made"))
    assert made == current, f"constraints.txt is not current: run `python3 tasks.py constraints` and commit it\n{diff}"


def test_constraints_txt_holds_names_and_versions_only() -> None:
    text = CONSTRAINTS.read_text()
    assert "#    python3 tasks.py constraints\n" in text, "the header no longer says how to regenerate the file"
    for line in text.splitlines():
        line = line.split("#")[0].rstrip()
        if line:
            assert PIN.fullmatch(line), f"constraints.txt: not NAME==VERSION [; MARKER]: {line!r}"
