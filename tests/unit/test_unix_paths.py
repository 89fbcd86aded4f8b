"""Where the Unix domain sockets of nodes are (``transport._unix``), and which peers are on
this host: pure functions of names, folders and the environment."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from distable.transport import _unix


def test_a_readable_name_is_the_file_name_with_the_network_namespace() -> None:
    assert _unix.socket_path("/run/x", "a@127.0.0.1:4370", "4026531840") == "/run/x/a@127.0.0.1:4370.4026531840.sock"
    assert _unix.socket_path("/run/x", "a@[::1]:4370", "") == "/run/x/a@[::1]:4370.sock"


def test_two_network_namespaces_give_two_paths_for_one_name() -> None:
    one = _unix.socket_path("/tmp/d", "a@127.0.0.1:4370", "4026531840")
    other = _unix.socket_path("/tmp/d", "a@127.0.0.1:4370", "4026532001")
    assert one != other


@pytest.mark.parametrize("name", ["a/b@127.0.0.1:1", ".hidden@127.0.0.1:1", "é@127.0.0.1:1", "a b@127.0.0.1:1"])
def test_a_name_that_is_no_safe_file_name_becomes_a_hash_in_the_folder(name: str) -> None:
    path = _unix.socket_path("/tmp/d", name, "1")
    assert path is not None
    folder, file = os.path.split(path)
    assert folder == "/tmp/d"
    assert file.endswith(".sock")
    assert len(file) == 32 + len(".sock")
    assert path == _unix.socket_path("/tmp/d", name, "1")  # both ends compute the same
    assert path != _unix.socket_path("/tmp/d", name, "2")


def test_a_path_past_the_limit_becomes_a_hash_or_none_when_even_that_is_too_long() -> None:
    name = "n" * 80 + "@127.0.0.1:4370"
    path = _unix.socket_path("/tmp/d", name, "4026531840")
    assert path is not None
    assert len(path) <= _unix.MAX_PATH
    assert name not in path
    assert _unix.socket_path("/" + "d" * _unix.MAX_PATH, "a@127.0.0.1:1", "") is None


@pytest.mark.parametrize(
    ("peer", "own", "local"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.2", "127.0.0.1", True),  # any loopback address
        ("::1", "127.0.0.1", True),
        ("localhost", "10.0.0.5", True),
        ("0.0.0.0", "10.0.0.5", True),  # dialing the unspecified address reaches this host
        ("10.0.0.5", "10.0.0.5", True),  # this node's own host
        ("10.0.0.6", "10.0.0.5", False),
        ("10.0.0.6", "127.0.0.1", False),
        ("fd00::1", "fd00::2", False),
        ("example.org", "10.0.0.5", False),
    ],
)
def test_a_peer_is_on_this_host_when_its_host_is_loopback_or_this_nodes_own(peer: str, own: str, local: bool) -> None:
    assert _unix.same_host(peer, own) is local


def test_the_folder_is_under_xdg_runtime_dir_else_a_temporary_folder_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert _unix.socket_dir() == "/run/user/1000/distable"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert _unix.socket_dir() == os.path.join(tempfile.gettempdir(), f"distable-{os.geteuid()}")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/path")  # not a valid value: ignored
    assert _unix.socket_dir() == os.path.join(tempfile.gettempdir(), f"distable-{os.geteuid()}")


def test_the_folder_is_made_private_and_refused_when_open_to_others_or_a_symlink(tmp_path: Path) -> None:
    made = tmp_path / "made"
    assert _unix.prepare_dir(str(made)) is None
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert _unix.prepare_dir(str(made)) is None  # again: it exists, and is fit

    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o755)
    problem = _unix.prepare_dir(str(open_dir))
    assert problem is not None
    assert "open to other users" in problem

    link = tmp_path / "link"
    link.symlink_to(made)
    problem = _unix.prepare_dir(str(link))
    assert problem is not None
    assert "not a folder" in problem

    file = tmp_path / "file"
    file.write_text("")
    problem = _unix.prepare_dir(str(file))
    assert problem is not None
    assert "not a folder" in problem

    if os.geteuid() == 0:  # only root can give a folder away
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        problem = _unix.prepare_dir(str(theirs))
        assert problem is not None
        assert "belongs to another user" in problem
