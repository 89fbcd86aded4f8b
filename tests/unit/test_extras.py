"""Optional dependencies: each feature says which extra to install when its package is
missing, and pyproject.toml declares the extras that ``distable._extras`` names.

A missing package is simulated with ``sys.modules[name] = None`` (its import then fails
as if it were not installed); tests/packaging installs the wheel without the extras for
real.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import distable
from distable import DistableError, DNSPoll, Gossip, MissingExtra
from distable._extras import EXTRAS, installed, missing, require
from distable.cli import main as cli_main
from distable.cli._query import print_table
from distable.demo import main as demo_main

ROOT = Path(__file__).resolve().parents[2]


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` (and their submodules already imported) fail to import."""
    for name in list(sys.modules):
        if name in modules or name.startswith(tuple(f"{m}." for m in modules)):
            monkeypatch.delitem(sys.modules, name)
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_require_names_the_feature_the_packages_and_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "aiohttp")
    assert missing("web") == ("aiohttp",)
    assert not installed("web")
    with pytest.raises(MissingExtra) as caught:
        require("web", "the dashboard")
    error = caught.value
    assert str(error) == "the dashboard needs aiohttp: pip install 'distable[web]'"
    assert (error.feature, error.extra, error.packages) == ("the dashboard", "web", ("aiohttp",))
    assert isinstance(error, DistableError)
    assert isinstance(error, ImportError)


def test_every_missing_package_of_an_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "aiohttp", "prometheus_client")
    with pytest.raises(MissingExtra, match=r"^x needs aiohttp and prometheus_client: pip install 'distable\[web\]'$"):
        require("web", "x")


def test_an_installed_extra_passes() -> None:
    for extra in EXTRAS:
        require(extra, "a test")  # the development environment has every extra


def test_the_extras_are_those_pyproject_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["optional-dependencies"]
    assert set(declared) == {*EXTRAS, "all"}
    for extra, packages in EXTRAS.items():
        names = {req.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip() for req in declared[extra]}
        assert names == set(packages), extra
    assert declared["all"] == [f"distable[{','.join(EXTRAS)}]"]
    # The core needs none of them.
    core = " ".join(project["dependencies"])
    assert not [p for packages in EXTRAS.values() for p in packages if p in core]


def test_gossip_encryption_and_dns_discovery_say_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "cryptography", "dns")
    Gossip()  # unencrypted gossip needs nothing
    with pytest.raises(MissingExtra, match=r"distable\[crypto\]"):
        Gossip(encrypt=True)
    with pytest.raises(MissingExtra, match=r"^DNSPoll needs dnspython: pip install 'distable\[dns\]'$"):
        DNSPoll("distable.default.svc")


def test_the_redis_store_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from distable.store import MemoryStore, open_store

    hide(monkeypatch, "redis")
    assert isinstance(open_store(MemoryStore()), MemoryStore)  # a store object needs nothing
    with pytest.raises(
        MissingExtra, match=r"^RedisStore \(the durable store in Redis\) needs redis: pip install 'distable\[redis\]'$"
    ):
        open_store("redis://127.0.0.1:6379/0")


def test_the_command_says_which_extra_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, "aiohttp", "dns")
    for args, extra in (
        (["node", "--dashboard", "127.0.0.1:0"], "web"),
        (["node", "--metrics", "127.0.0.1:0"], "web"),
        (["node", "--cluster", "dns", "--dns-query", "distable.local"], "dns"),
    ):
        with pytest.raises(SystemExit) as exited:
            cli_main([*args, "--cookie-file", str(ROOT / "pyproject.toml")])
        assert exited.value.code == 1, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith("distable: error: "), err
        assert f"pip install 'distable[{extra}]'" in err, err


def test_the_demo_needs_the_cli_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    hide(monkeypatch, "rich")
    assert demo_main(["--workers", "1"], prog="distable demo") == 1
    assert capsys.readouterr().err == "distable demo: error: the demo needs rich: pip install 'distable[cli]'\n"


def test_tables_without_rich_are_plain_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, "rich")
    print_table(
        ["node", "state", "names"],
        [["a@127.0.0.1:1", "up", "12"], ["b@127.0.0.1:2", ("failed", "bold red"), "-"]],
        caption="2 node(s)",
        right=["names"],
    )
    assert capsys.readouterr().out.splitlines() == [
        "node           state   names",
        "a@127.0.0.1:1  up         12",
        "b@127.0.0.1:2  failed      -",
        "2 node(s)",
    ]


def test_importing_distable_loads_no_extra() -> None:
    # In a fresh interpreter: this one has imported the extras for other tests.
    modules = sorted({m for packages in EXTRAS.values() for m in packages.values()})
    code = f"import sys, distable, distable.cli; print([m for m in {modules!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
    assert distable.__version__
