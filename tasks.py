#!/usr/bin/env python3
"""One-line entry points that work on a fresh clone with only Python 3.11+.

    python3 tasks.py demo     run the local multi-node demo
    python3 tasks.py test     run every check: lint, format, types, the test suite
    python3 tasks.py bench    run the benchmarks in bench/ (JSON lines)
    python3 tasks.py chaos    the long fault campaign against real node processes
                              (--minutes 30, --runs N, --seed S, --checkpoints;
                              see tests/chaos/__main__.py)
    python3 tasks.py constraints
                              regenerate constraints.txt from pyproject.toml (uv pip compile:
                              every extra and dependency group, the versions already pinned
                              kept where they still fit; --upgrade takes the newest)

Each creates ``.venv`` on first use and installs the exact versions from
constraints.txt (again only when that file or pyproject.toml changes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


#: ``uv pip compile`` arguments that make constraints.txt from pyproject.toml (the output
#: file comes after ``-o``; tests/packaging/test_constraints.py checks the file is current).
COMPILE = [
    "pip",
    "compile",
    "pyproject.toml",
    "--all-extras",
    "--group",
    "dev",
    "--group",
    "bench",
    "--universal",
    "--quiet",
    "--custom-compile-command",
    "python3 tasks.py constraints",
]


def _stamp() -> str:
    h = hashlib.sha256()
    for name in ("constraints.txt", "pyproject.toml"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_env() -> None:
    stamp_file = VENV / ".distable-stamp"
    stamp = _stamp()
    if stamp_file.exists() and stamp_file.read_text() == stamp and PY.exists():
        return
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing pinned dependencies (constraints.txt) ...", flush=True)
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-r", str(ROOT / "constraints.txt")], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    stamp_file.write_text(stamp)


#: Debian packages the test suite uses (netns tests, DNS discovery, the dashboard's browser
#: tests, `distable top` in a terminal, the Redis store's tests), by the command each provides.
SYSTEM_PACKAGES = {
    "ip": "iproute2",
    "nft": "nftables",
    "dnsmasq": "dnsmasq",
    "chromium": "chromium",
    "tmux": "tmux",
    "redis-server": "redis-server",
}


def ensure_system_packages() -> None:
    """Install missing system packages with apt-get when running as root.

    Tests that need a missing tool print why they are skipped; as root (CI), they are
    installed here so that nothing is skipped.
    """
    missing = sorted({pkg for cmd, pkg in SYSTEM_PACKAGES.items() if shutil.which(cmd) is None})
    if not missing:
        return
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"note: {', '.join(missing)} not installed; tests that need them will say so", flush=True)
        return
    print(f"installing system packages: {' '.join(missing)} ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def run(*cmd: str) -> None:
    print("$", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=ROOT).returncode
    if code:
        sys.exit(code)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("demo", "test", "bench", "chaos", "constraints", "env"):
        sys.exit(__doc__)
    ensure_env()
    task, rest = argv[0], argv[1:]
    py = str(PY)
    if task == "demo":
        os.execv(py, [py, "-m", "distable.demo", *rest])  # it handles Ctrl-C itself: stops every node in order
    elif task == "test":
        ensure_system_packages()
        run(py, "-m", "ruff", "check", ".")
        run(py, "-m", "ruff", "format", "--check", ".")
        run(py, "-m", "mypy")
        run(py, "-m", "pytest", *rest)
    elif task == "bench":
        run(py, "bench/run_all.py", *rest)
    elif task == "chaos":
        run(py, "-m", "tests.chaos", *rest)
    elif task == "constraints":
        run(str(BIN / "uv"), *COMPILE, "-o", "constraints.txt", *rest)


if __name__ == "__main__":
    main(sys.argv[1:])
