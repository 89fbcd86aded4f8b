"""``distable top`` against real ``distable node`` processes: plain and JSON output, and
the live view in a terminal, driven through tmux; first its pure pieces (a node's status
from the membership views, the keys), without a cluster.

The cluster is ``conftest.cluster``: nodes ``a`` and ``b`` on loopback, running
``tests.cli.cliapp``. The live view runs in a detached tmux session of a fixed size, on a
tmux server of its own (``tmux -L <unique socket>``, killed at the end), inside a small
shell script that records the terminal's mode before and compares it after each run.
The test reads the screen with ``capture-pane`` and types with ``send-keys``; every wait
polls the screen with a deadline. Without tmux the test is skipped, saying why
(``python3 tasks.py test`` installs it as root, as on CI).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from distable import Node
from distable.cli._top import Top, member_status
from distable.cli._watch import Watch
from distable.membership import MemberInfo
from distable.testing import eventually
from tests.cli.conftest import ROOT, TIMEOUT, Cluster, distable

TMUX = shutil.which("tmux")
#: The pane's size: wide enough for a row of the table on one line.
COLUMNS, LINES = 120, 40


def table_rows(screen: str, nodes: set[str]) -> list[list[str]]:
    """The rows of the nodes' table on ``screen``, in order: the words of each line that
    begins with a node's name (event lines begin with a time)."""
    return [words for words in (line.split() for line in screen.splitlines()) if words and words[0] in nodes]


# --- the pieces, without a cluster ------------------------------------------------------------------


def member(name: str, status: str, incarnation: int = 1, role: str = "server") -> MemberInfo:
    return MemberInfo(name, incarnation, 1, status, link=status == "alive", up=status == "alive", role=role)


def test_a_nodes_status_is_the_worst_any_view_of_its_newest_incarnation_says() -> None:
    alive, suspect, dead, left = (member("a", s) for s in ("alive", "suspect", "dead", "left"))
    assert member_status("a", True, [[alive], [alive]]) == "up"
    assert member_status("a", False, [[alive]]) == "unreachable"  # alive, yet no answer
    assert member_status("a", True, [[alive], [suspect]]) == "suspect"
    assert member_status("a", False, [[suspect], [dead]]) == "failed"
    assert member_status("a", False, [[left], [dead]]) == "left"
    # restarted under the same name: the old incarnation's tombstone no longer counts
    assert member_status("a", True, [[dead], [member("a", "alive", incarnation=2)]]) == "up"
    # forgotten by every view: no longer listed (unless it still answers); clients never count
    assert member_status("a", False, [[member("b", "alive")]]) is None
    assert member_status("a", False, [[member("a", "alive", role="client")]]) is None
    assert member_status("a", True, []) == "up"


def test_keys_sort_by_a_column_reverse_it_pause_and_quit() -> None:
    top = Top(Watch(Node("t", cookie=b"c"), count_moves=False), interval=1.0)
    for name, names, lag in (("a", 5, 0.002), ("b", 9, 0.001), ("c", 1, 0.003)):
        row = top.watch.add(name, name)
        row.workers, row.loop_lag = names, lag

    def order() -> list[str]:
        return [row.name for row in top.servers()]

    assert order() == ["a", "b", "c"]  # by name at first
    assert not top.press("n")
    assert order() == ["c", "b", "a"]  # the same column again: the other way
    top.press("m")
    assert order() == ["b", "a", "c"]  # most names first
    top.press("l")
    assert order() == ["c", "a", "b"]  # most lag first
    top.press("x")  # not a key: nothing changes
    assert order() == ["c", "a", "b"]
    top.press(" ")
    assert top.paused
    top.press("z")
    assert not top.paused
    assert top.press("q")


# --- against a cluster ---------------------------------------------------------------------------------


@pytest.mark.cluster
async def test_once_prints_each_node_with_its_name_count_and_json_streams_until_sigterm(cluster: Cluster) -> None:
    nodes = {cluster.a.name, cluster.b.name}
    status = (await distable("status", "--json", *cluster.discovery)).json()
    hosted = {row["name"]: row["local_names"] for row in status}
    assert set(hosted) == nodes

    answer = await distable("top", "--once", "--interval", "0.2", *cluster.discovery)
    assert answer.code == 0, answer
    rows = table_rows(answer.stdout, nodes)
    # node, status, names, processes, handoffs/s, restarts/s, lag ms, uptime
    assert [(words[0], words[1], int(words[2])) for words in rows] == [(n, "up", hosted[n]) for n in sorted(nodes)]
    assert all(words[4] == "0.0" and words[5] == "0.0" for words in rows), answer.stdout  # two snapshots: rates
    assert f"2 of 2 server node(s) up, {sum(hosted.values())} name(s)" in answer.stdout
    # The client's first view of the cluster is no event (nodes that were up all along
    # listed as "is up" read as restarts); the nodes' own events are listed.
    assert " is up" not in answer.stdout, answer.stdout

    snapshot = (await distable("top", "--once", "--json", "--interval", "0.2", *cluster.discovery)).json()
    assert {n["name"]: (n["status"], n["names"]) for n in snapshot["nodes"]} == {n: ("up", hosted[n]) for n in nodes}
    assert snapshot["names"] == sum(hosted.values())

    # Without --once: one JSON object per line and interval, until SIGTERM (exit 0).
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "distable.cli", "top", "--json", "--interval", "0.2", *cluster.discovery),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        for _ in range(2):
            line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
            assert {n["name"] for n in json.loads(line)["nodes"]} == nodes, line
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        assert proc.returncode == 0, err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.cluster
async def test_wrong_cookie_is_one_line_and_exit_1(cluster: Cluster) -> None:
    answer = await distable("top", "--once", "--cookie", "not-the-cookie", *cluster.discovery[2:])
    assert answer.code == 1
    [line] = answer.stderr.strip().splitlines()
    assert line.startswith("distable: error: "), answer
    assert "not authorized" in line, answer
    assert answer.stdout == ""


class Tmux:
    """A tmux server of its own (``-L socket``, no user configuration) and its one session."""

    def __init__(self, tmp: Path) -> None:
        assert TMUX is not None
        self.socket = f"distable-top-{os.getpid()}-{secrets.token_hex(4)}"
        self.config = tmp / "tmux.conf"
        self.config.write_text("set -g remain-on-exit on\n")  # the pane stays readable after the script
        self.env = {k: v for k, v in os.environ.items() if k != "TMUX"}
        self.path: Path | None = None  # the socket's file, removed by kill()

    async def __call__(self, *args: str) -> str:
        assert TMUX is not None
        proc = await asyncio.create_subprocess_exec(
            TMUX, "-L", self.socket, "-f", str(self.config), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            env=self.env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        assert proc.returncode == 0, f"tmux {' '.join(args)}: {err.decode()}"
        return out.decode()

    async def start(self, command: str) -> None:
        await self("new-session", "-d", "-s", "top", "-x", str(COLUMNS), "-y", str(LINES), "-c", str(ROOT), command)
        self.path = Path((await self("display-message", "-p", "#{socket_path}")).strip())

    async def screen(self) -> str:
        return await self("capture-pane", "-p", "-t", "top")

    async def keys(self, *keys: str) -> None:
        await self("send-keys", "-t", "top", *keys)

    async def kill(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            TMUX or "tmux", "-L", self.socket, "kill-server",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=self.env,
        )  # fmt: skip
        await proc.wait()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@pytest.mark.cluster
@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (python3 tasks.py test installs it as root)")
async def test_live_view_in_a_terminal_sorts_pauses_sees_a_kill_and_restores_the_terminal(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b = cluster.a.name, cluster.b.name
    command = [sys.executable, "-m", "distable.cli", "top", "--interval", "0.3", *cluster.discovery]
    top = " ".join(shlex.quote(word) for word in command)
    stderr = tmp_path / "top.stderr"
    script = tmp_path / "run.sh"
    # Twice: once ended with q, once with Ctrl-C (the shell traps SIGINT to carry on; a
    # trap is reset in the child, which gets the Ctrl-C). After each, the terminal's mode
    # is compared with the one before.
    script.write_text(
        "before=$(stty -g)\ntrap : INT\n"
        f"{top} 2>>{shlex.quote(str(stderr))}\n"
        'echo "first-exit=$?"\n'
        '[ "$(stty -g)" = "$before" ] && echo "first-terminal-restored"\n'
        f"{top} 2>>{shlex.quote(str(stderr))}\n"
        'echo "second-exit=$?"\n'
        '[ "$(stty -g)" = "$before" ] && echo "second-terminal-restored"\n'
    )
    tmux = Tmux(tmp_path)
    screen = ""

    async def read() -> str:
        nonlocal screen
        screen = await tmux.screen()
        return screen

    async def shows(*texts: str) -> bool:
        now = await read()
        return all(text in now for text in texts)

    async def a_is_up() -> bool:
        return [a, "up"] in [words[:2] for words in table_rows(await read(), {a, b})]

    async def rows_are(*expected: tuple[str, str]) -> bool:
        """The table's rows are ``expected``: (node, status), in this order."""
        return [(words[0], words[1]) for words in table_rows(await read(), {a, b})] == list(expected)

    async def until(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
        def message() -> str:
            log = stderr.read_text() if stderr.exists() else ""
            return f"{what}; the screen:\n{screen}\nstderr: {log}"

        await eventually(predicate, timeout=TIMEOUT, interval=0.1, message=message)

    try:
        await tmux.start(f"sh {shlex.quote(str(script))}")
        await until(lambda: rows_are((a, "up"), (b, "up")), "both nodes up, sorted by name")

        # n: the table sorts by node name already, so n sorts it the other way.
        await tmux.keys("n")
        await until(lambda: rows_are((b, "up"), (a, "up")), "the order reversed by n")
        assert "node ▼" in screen
        await tmux.keys("p")
        await until(lambda: shows("processes ▼"), "sorted by processes (p), most first")
        await tmux.keys("n")
        await until(lambda: rows_are((a, "up"), (b, "up")), "sorted by name again (n)")

        await tmux.keys("Space")
        await until(lambda: shows("PAUSED"), "paused by space")
        cluster.b.proc.kill()  # while paused: seen once resumed
        await tmux.keys("Space")
        await until(lambda: rows_are((a, "up"), (b, "failed")), "b failed after its kill, once resumed")
        assert "PAUSED" not in screen

        await tmux.keys("q")
        await until(lambda: shows("first-exit=0", "first-terminal-restored"), "q exits 0, terminal restored")

        # The second run, ended by Ctrl-C once its view is up.
        await until(a_is_up, "the second view up")
        await tmux.keys("C-c")
        await until(lambda: shows("second-exit=130", "second-terminal-restored"), "Ctrl-C exits 130, restored")
    finally:
        await tmux.kill()
