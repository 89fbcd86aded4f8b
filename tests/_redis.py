"""A real ``redis-server`` for a test: on 127.0.0.1 only, a free port, a data folder of
the test's own; killed, paused, resumed and restarted at will, always stopped at the end.

``redis-server`` is Debian's package of that name (``python3 tasks.py test`` installs it
when run as root, as on CI). When it is missing, the test fails on CI (``CI`` set) and
is skipped elsewhere, saying why.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distable.testing import free_tcp_ports

from ._system import system_tool

#: How long a start may take before the test fails (polled, not slept).
START_TIMEOUT = 20.0


def redis_server_binary() -> str:
    """The ``redis-server`` binary; skips the test when it is missing (fails on CI)."""
    return system_tool("redis-server", package="redis-server")


class RedisServer:
    """One ``redis-server`` process (restartable on the same port and folder).

    ``persistent``: every write is appended and fsynced (``appendonly yes``,
    ``appendfsync always``), so a restart, even after SIGKILL, finds it; otherwise
    nothing is saved (``--save ""``, no append-only file).
    """

    def __init__(self, binary: str, folder: Path, *, persistent: bool = False) -> None:
        self.binary = binary
        self.folder = folder
        self.persistent = persistent
        self.port = free_tcp_ports(1)[0]
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    def command(self) -> list[str]:
        durability = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        return [
            self.binary,
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--port", str(self.port),
            "--dir", str(self.folder),
            "--save", "",
            *durability,
            "--daemonize", "no",
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip

    def start(self) -> None:
        """Start it and wait (polling PING, bounded) until it answers."""
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                raise AssertionError(f"redis-server on port {self.port} exited {code} at start:\n{self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"redis-server on port {self.port} did not answer within {START_TIMEOUT} s")
            time.sleep(0.01)  # the poll's interval

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def signal(self, signum: int) -> None:
        assert self.proc is not None, "not running"
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        assert self.proc is not None, "not running"
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        if self.proc is not None:
            self.stop()
        self.start()

    def stop(self) -> None:
        """Stop it (SIGCONT first, in case it is paused; SIGKILL after 10 s)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def redis_server(folder: Path, *, persistent: bool = False) -> Iterator[RedisServer]:
    """A started ``RedisServer`` in ``folder``, stopped at the end whatever happens."""
    server = RedisServer(redis_server_binary(), folder, persistent=persistent)
    try:
        server.start()
        yield server
    finally:
        server.stop()
