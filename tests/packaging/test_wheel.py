"""The package as a user gets it: the sdist and the wheel built from it (``uv build``), the
wheel installed into fresh virtual environments outside the repository, and a cluster run
from there.

One build is shared by the module. Each environment (core: ``pip install distable``;
``[web]``; ``[all]``; and ``[all]`` at the lowest versions pyproject.toml allows) gets
the wheel from pip with this machine's own index settings (its cache makes repeats
fast), or from ``uv pip install --resolution lowest-direct``, and then, from a folder
outside the repository, runs:

* node ``a``: the ``distable node`` command, whose ``--app greeter:start`` registers
  ``greeter``, with ``--dashboard`` where the ``web`` extra is installed;
* node ``b``: ``client.py``, a script using the library as a client node, which calls
  ``greeter`` and reports which optional features import;
* ``distable status`` and ``distable whereis`` against them (plain columns without the
  ``cli`` extra, rich's table with it), and the dashboard's page, static files and
  /metrics over HTTP;
* without an extra, the feature that needs it fails with a message naming the extra;
  with ``[all]``, ``distable demo`` too.

Every failure message starts with the environment's label ("core", "web", "all",
"lowest"), which says what broke. Slow: about a minute on a quiet machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uv
from packaging.requirements import Requirement
from packaging.version import Version

import distable
from distable._extras import EXTRAS
from distable.testing import free_tcp_ports

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = Path(__file__).resolve().parent / "outside"  # the user's files: greeter.py, client.py
UP = re.compile(r"^distable: node (\S+) up \((.*)\)$")
STEP_TIMEOUT = 60.0  # bound on each command (generous: the machine is shared)
INSTALL_TIMEOUT = 300.0  # bound on one environment's install (the package index may be slow)


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The sdist, and the wheel built from it (``uv build``: so a file missing from the
    sdist is missing from the wheel too), built from a copy of the repository's files as
    a fresh clone has them: what the working tree holds and git does not ignore. (In the
    working tree itself, the ``src/distable.egg-info`` an editable install leaves would
    put files into the sdist that pyproject.toml does not.)"""
    tree = tmp_path_factory.mktemp("tree")
    for path in repository_files():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, tree / path)
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [uv.find_uv_bin(), "build", "--quiet", "--out-dir", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert done.returncode == 0, f"uv build failed:\n{done.stdout}\n{done.stderr}"
    (wheel,) = out.glob("distable-*.whl")
    (sdist,) = out.glob("distable-*.tar.gz")
    return Dist(wheel, sdist)


def repository_files(under: str = ".") -> list[str]:
    """The files under ``under`` that git tracks or would add (not ignored), that exist."""
    command = ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", under]
    listed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    return sorted(path for path in listed if path and (ROOT / path).is_file())


def package_files() -> list[str]:
    """Every file of the package in the repository, as ``distable/...``."""
    listed = repository_files("src/distable")
    assert listed, "git ls-files found no file under src/distable"
    return [path.removeprefix("src/") for path in listed]


# --- what the archives hold --------------------------------------------------------------------


def test_the_wheel_holds_the_package_and_its_data_files(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"distable-{distable.__version__}.dist-info/METADATA").decode()
        entry_points = wheel.read(f"distable-{distable.__version__}.dist-info/entry_points.txt").decode()
    missing = [path for path in package_files() if path not in names]
    assert not missing, f"the wheel lacks {missing} (pyproject.toml: [tool.setuptools.package-data])"
    for needed in ("distable/py.typed", "distable/web/static/index.html"):
        assert needed in names
    tops = {name.split("/")[0] for name in names}
    assert tops == {"distable", f"distable-{distable.__version__}.dist-info"}, "the wheel installs more than distable"
    assert "distable = distable.cli:main" in entry_points
    requires = [
        line.removeprefix("Requires-Dist: ") for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    ]
    core = sorted(Requirement(r).name for r in requires if Requirement(r).marker is None)
    assert core == ["click", "msgspec", "xxhash"], f"the core depends on more than a node needs: {core}"
    extras = {
        line.removeprefix("Provides-Extra: ") for line in metadata.splitlines() if line.startswith("Provides-Extra:")
    }
    assert extras == {*EXTRAS, "all"}


def test_the_sdist_holds_what_the_wheel_is_built_from(dist: Dist) -> None:
    prefix = f"distable-{distable.__version__}/"
    with tarfile.open(dist.sdist) as sdist:
        names = {name.removeprefix(prefix) for name in sdist.getnames()}
    needed = ["pyproject.toml", "README.md", "LICENSE", *(f"src/{path}" for path in package_files())]
    missing = [path for path in needed if path not in names]
    assert not missing, f"the sdist lacks {missing} (MANIFEST.in, pyproject.toml)"
    assert not [n for n in names if n.startswith(("tests/", ".venv/", "bench/"))], "the sdist holds test or local files"


# --- installed, from outside ---------------------------------------------------------------------


@dataclass(frozen=True)
class Venv:
    """A virtual environment outside the repository, and the folder its commands run in."""

    label: str  # what failure messages start with: which environment (extras) broke
    path: Path
    work: Path

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def env(self) -> dict[str, str]:
        """This environment's variables: its bin first on PATH, nothing pointing back at the
        repository or at the test's own environment (the pip and uv settings stay)."""
        drop = ("PYTHON", "VIRTUAL_ENV", "DISTABLE_", "PYTEST_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.path)
        return env


def make_venv(tmp_path: Path, label: str) -> Venv:
    venv = Venv(label, tmp_path / f"venv-{label}", tmp_path / "work")
    venv.work.mkdir()
    for name in ("greeter.py", "client.py"):
        shutil.copy(OUTSIDE / name, venv.work / name)
    (venv.work / "cookie").write_text(secrets.token_hex(32))
    return venv


def pip(venv: Venv, *args: str) -> list[str]:
    """A pip command acting on ``venv``: this environment's pip, with the machine's pip
    settings (index, cache), ``--python`` the venv's (which has no pip of its own: making
    a venv with pip takes seconds, and pip is not what is tested)."""
    return [sys.executable, "-m", "pip", "--python", str(venv.bin / "python"), "--disable-pip-version-check", *args]


async def pip_install(venv: Venv, requirement: str) -> None:
    """``python -m venv``, then ``pip install REQUIREMENT``."""
    await ok(venv, sys.executable, "-m", "venv", "--without-pip", str(venv.path))
    await ok(venv, *pip(venv, "install", requirement), timeout=INSTALL_TIMEOUT)


@dataclass(frozen=True)
class Answer:
    code: int
    stdout: str
    stderr: str


async def run(venv: Venv, *command: str, timeout: float = STEP_TIMEOUT) -> Answer:
    """Run ``command`` in ``venv``'s work folder to its end (killed after ``timeout``)."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=venv.work,
        env=venv.env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"[{venv.label}] {' '.join(command)} did not end within {timeout:g} s") from None
    assert proc.returncode is not None
    return Answer(proc.returncode, out.decode(), err.decode())


async def ok(venv: Venv, *command: str, timeout: float = STEP_TIMEOUT) -> str:
    """``command``'s output; it must exit 0."""
    answer = await run(venv, *command, timeout=timeout)
    assert answer.code == 0, (
        f"[{venv.label}] {' '.join(command)} exited {answer.code}:\n{answer.stdout}\n{answer.stderr}"
    )
    return answer.stdout


async def fails_naming(venv: Venv, extra: str, *command: str) -> None:
    """``command`` exits 1 with one line that says to install ``extra``."""
    answer = await run(venv, *command)
    hint = f"pip install 'distable[{extra}]'"
    assert answer.code == 1, f"[{venv.label}] {' '.join(command)}: expected exit 1, got {answer}"
    assert hint in answer.stderr, f"[{venv.label}] {' '.join(command)}: expected {hint!r}, got {answer}"
    assert answer.stderr.count("\n") == 1, f"[{venv.label}] not one line: {answer.stderr!r}"


@dataclass
class NodeA:
    """``distable node`` (the console script of a venv), with ``greeter:start``."""

    proc: asyncio.subprocess.Process
    name: str
    details: str
    stderr: Path


async def start_node_a(venv: Venv, port: int, dashboard: int | None) -> NodeA:
    stderr = venv.work / "node-a.stderr"
    command = [
        str(venv.bin / "distable"),
        "node",
        "--name", "a",
        "--port", str(port),
        "--cookie-file", "cookie",
        "--static", f"a@127.0.0.1:{port}",
        "--membership", "local",
        "--app", "greeter:start",
    ]  # fmt: skip
    if dashboard is not None:
        command += ["--dashboard", f"127.0.0.1:{dashboard}"]
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=venv.work,
            env=venv.env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), STEP_TIMEOUT)).decode().strip()
    except TimeoutError:
        line = "(nothing)"
    match = UP.match(line)
    if match is None:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"[{venv.label}] distable node did not come up: {line!r}\n{stderr.read_text()}")
    return NodeA(proc, match.group(1), match.group(2), stderr)


async def run_cluster(venv: Venv, *, web: bool, cli: bool) -> dict[str, Any]:
    """Node ``a`` (``distable node``), node ``b`` (``client.py``) calling the name ``a``
    registered, the queries, and the dashboard when ``web``; returns ``client.py``'s
    report. Node ``a`` leaves gracefully (exit 0) at the end, or is killed on a failure."""
    port, web_port = free_tcp_ports(2)
    a = await start_node_a(venv, port, web_port if web else None)
    try:
        return await _with_node_a(venv, a, web_port if web else None, cli)
    finally:
        if a.proc.returncode is None:
            a.proc.kill()
            await a.proc.wait()


async def _with_node_a(venv: Venv, a: NodeA, web_port: int | None, cli: bool) -> dict[str, Any]:
    python, command = str(venv.bin / "python"), str(venv.bin / "distable")
    report: dict[str, Any] = json.loads(await ok(venv, python, "client.py", a.name, (venv.work / "cookie").read_text()))
    where = f"[{venv.label}]"
    assert report["reply"] == f"hello from {a.name}", f"{where} {report}"
    assert Path(report["distable"]).is_relative_to(venv.path), f"{where} distable imported from {report['distable']}"
    assert report["version"] == distable.__version__, f"{where} {report}"

    query = ["--cookie-file", "cookie", "--connect", a.name]
    status = await ok(venv, command, "status", *query)
    assert a.name in status, f"{where} {status}"
    assert "1 server node(s), 1 registered name(s)" in status, f"{where} {status}"
    assert ("┃" in status) is cli, f"{where} status is {'not ' if cli else ''}drawn by rich:\n{status}"
    found = json.loads(await ok(venv, command, "whereis", "greeter", "--json", *query))
    assert found["node"] == a.name, f"{where} {found}"

    if web_port is not None:
        assert f"dashboard http://127.0.0.1:{web_port}" in a.details, f"{where} {a.details}"
        static = ROOT / "src" / "distable" / "web" / "static"
        for path, expected in (("/", "index.html"), ("/static/app.js", "app.js"), ("/static/style.css", "style.css")):
            body = await asyncio.to_thread(_get, f"http://127.0.0.1:{web_port}{path}")
            assert body == (static / expected).read_text(), f"{where} GET {path} is not {expected}: {body[:300]!r}"
        metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{web_port}/metrics")
        assert "distable_registered_names" in metrics, f"{where} GET /metrics: {metrics[:300]!r}"

    a.proc.terminate()
    code = await asyncio.wait_for(a.proc.wait(), STEP_TIMEOUT)
    assert code == 0, f"{where} node a exited {code} on SIGTERM:\n{a.stderr.read_text()}"
    return report


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=STEP_TIMEOUT) as response:  # loopback only
        body: bytes = response.read()
    return body.decode()


CORE_MISSING = {
    "web": "distable.web (the dashboard and /metrics) needs aiohttp and prometheus_client: pip install 'distable[web]'",
    "crypto": "Gossip(encrypt=True) needs cryptography: pip install 'distable[crypto]'",
    "dns": "DNSPoll needs dnspython: pip install 'distable[dns]'",
    "redis": "RedisStore (the durable store in Redis) needs redis: pip install 'distable[redis]'",
}


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
async def test_core_only(dist: Dist, tmp_path: Path) -> None:
    """``pip install distable``: a node, the library and the queries; every extra's
    feature names its extra."""
    venv = make_venv(tmp_path, "core")
    await pip_install(venv, str(dist.wheel))
    listed = await ok(venv, *pip(venv, "list", "--format", "json"))
    names = {p["name"].lower() for p in json.loads(listed)}
    assert names == {"click", "distable", "msgspec", "xxhash"}, f"[core] pip install distable installed {sorted(names)}"
    report = await run_cluster(venv, web=False, cli=False)
    assert {k: report[k] for k in CORE_MISSING} == CORE_MISSING, f"[core] {report}"
    assert report["loop"] == "asyncio.unix_events", f"[core] {report}"
    command = str(venv.bin / "distable")
    await fails_naming(venv, "web", command, "node", "--cookie-file", "cookie", "--dashboard", "127.0.0.1:0")
    await fails_naming(venv, "cli", command, "demo", "--plain")
    await fails_naming(venv, "cli", command, "top", "--once", "--cookie", "c", "--static", "a@127.0.0.1:1")


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
async def test_web_extra(dist: Dist, tmp_path: Path) -> None:
    """``pip install 'distable[web]'``: the dashboard, its static files and /metrics."""
    venv = make_venv(tmp_path, "web")
    await pip_install(venv, f"{dist.wheel}[web]")
    report = await run_cluster(venv, web=True, cli=False)
    assert report["web"] == "ok", f"[web] {report}"
    assert report["crypto"] == CORE_MISSING["crypto"], f"[web] {report}"


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
async def test_all_extras(dist: Dist, tmp_path: Path) -> None:
    """``pip install 'distable[all]'``: every feature imports; rich draws the tables; uvloop
    runs the loop; the demo (whose nodes are child processes started by
    ``distable.testing``) runs to its verdict."""
    venv = make_venv(tmp_path, "all")
    await pip_install(venv, f"{dist.wheel}[all]")
    report = await run_cluster(venv, web=True, cli=True)
    assert [report[k] for k in ("web", "crypto", "dns", "redis")] == ["ok"] * 4, f"[all] {report}"
    demo = await ok(venv, str(venv.bin / "distable"), "demo", "--plain", "--workers", "30")
    assert "verdict: OK" in demo, f"[all] distable demo:\n{demo}"
    assert report["loop"] == "uvloop", f"[all] {report}"


def lowest_requirements(wheel: Path) -> list[Requirement]:
    """The wheel's declared dependencies, every extra's included, without extra markers."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"distable-{distable.__version__}.dist-info/METADATA").decode()
    out = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.removeprefix("Requires-Dist: "))
        if req.name == "distable":  # [all]: the other extras
            continue
        marker = str(req.marker or "")
        platform = re.sub(r"\s*(and\s+)?extra == \"\w+\"", "", marker).strip()
        req.marker = None
        out.append(Requirement(f"{req}; {platform}" if platform else str(req)))
    return out


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
async def test_lowest_declared_versions(dist: Dist, tmp_path: Path) -> None:
    """Every runtime dependency at the lowest version pyproject.toml allows (``uv pip
    install --resolution lowest-direct``, each given as a direct requirement): each lower
    bound is a release the index has, and the cluster runs on them."""
    venv = make_venv(tmp_path, "lowest")
    await ok(venv, sys.executable, "-m", "venv", "--without-pip", str(venv.path))
    requirements = lowest_requirements(dist.wheel)
    install = [
        uv.find_uv_bin(),
        "pip",
        "install",
        "--python",
        str(venv.bin / "python"),
        "--resolution",
        "lowest-direct",
    ]
    install += [f"distable[all] @ {dist.wheel.as_uri()}", *map(str, requirements)]
    await ok(venv, *install, timeout=INSTALL_TIMEOUT)
    code = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    versions = json.loads(await ok(venv, str(venv.bin / "python"), "-c", code, *(r.name for r in requirements)))
    for req in requirements:
        bound = min((Version(s.version) for s in req.specifier if s.operator == ">="), default=None)
        assert bound is not None, f"[lowest] {req} has no lower bound"
        assert Version(versions[req.name]) == bound, (
            f"[lowest] {req.name}: the index has no {bound}, got {versions[req.name]}"
        )
    print("lowest versions:", versions)
    report = await run_cluster(venv, web=True, cli=True)
    assert [report[k] for k in ("web", "crypto", "dns", "redis")] == ["ok"] * 4, f"[lowest] {report}"
