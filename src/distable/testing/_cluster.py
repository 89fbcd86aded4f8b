"""Nodes in separate OS processes, for cluster tests, benchmarks and examples."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import IO, Any

from ..wire import Pid, lists_as_tuples


def die_with_parent() -> None:
    """For ``preexec_fn`` (in the child, before exec): the child gets SIGKILL when the process
    that started it dies, however it dies, so that no node outlives its test or benchmark.
    Linux only (``PR_SET_PDEATHSIG``); a no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class NodeProcess:
    """A node running in its own OS process (see ``distable.testing._child``).

    Start with ``await NodeProcess.start(...)``; stop with ``terminate()`` (graceful)
    or ``kill()`` (SIGKILL), then ``await wait()``. ``close()`` does whatever is needed
    to make sure the process is gone, and is safe to call twice. Membership events the
    node sees are collected in ``events`` (dicts with ``event``, ``node``, ``detail``
    and ``t``, the child's wall-clock time); ``await nodes()`` asks for its view,
    ``await registered()`` and ``await whereis(name)`` read its registry replica.
    ``dashboard_url`` is the URL of its dashboard (``start(..., dashboard=...)``) or None.
    """

    def __init__(self, proc: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.proc = proc
        self.info = info
        self.name: str = info["node"]
        self.incarnation: int = info["incarnation"]
        self.dashboard_url: str | None = info.get("dashboard")
        self.events: list[dict[str, Any]] = []
        self._replies: asyncio.Queue[Any] = asyncio.Queue()
        self._asking = asyncio.Lock()  # one question at a time: replies come back in order
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(
        cls,
        name: str,
        cookie: str,
        *,
        spawn: dict[str, str] | None = None,
        connect: Sequence[str] = (),
        paths: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        gossip: str | None = None,
        gossip_port: int | None = None,
        gossip_interval: float | None = None,
        broadcast: bool = False,
        static: Sequence[str] = (),
        preset: str = "local",
        netns: str | None = None,
        log_level: str = "WARNING",
        app: Sequence[str] = (),
        timeout: float = 20.0,
        stderr: int | IO[Any] | None = None,
        dashboard: str | None = None,
        log_format: str | None = None,
        new_session: bool = False,
        unix_sockets: bool = True,
        store: str | None = None,
        store_timeout: float | None = None,
    ) -> NodeProcess:
        """Start the node and wait until it reports that it is up.

        ``spawn`` maps labels to ``"module:ProcessClass"``; each is started in the
        child and its pid is available as ``pid(label)``. ``app`` lists modules
        (``"module"`` or ``"module:function"``) the child imports once its node is
        started, calling ``function(node)`` if given, before it reports up (``paths``
        are added to its ``sys.path`` first). ``netns`` runs the node in that network
        namespace (``ip netns exec``; needs root). ``stderr`` is where the child's log
        goes (an open file, ``subprocess.DEVNULL``...; inherited by default).
        ``dashboard`` (``"HOST:PORT"``, port 0 for a free one) serves the node's metrics
        and dashboard there (``distable.web``); its URL is then ``dashboard_url``.
        ``log_format`` ("text" or "json") writes the child's log lines with
        ``distable._log.configure_logging``. ``new_session`` runs the child in a session
        of its own, so that a Ctrl-C in the terminal reaches only the parent, which then
        stops its children in its own order (a child still stops by itself when its
        standard input closes). ``unix_sockets=False`` keeps every link of the node on TCP
        (``TransportConfig.unix_sockets``). ``store`` (a URL) gives the node a durable
        store, ``store_timeout`` its timeout (``Node(store=, store_timeout=)``).
        """
        args = [sys.executable, "-m", "distable.testing._child", "--name", name, "--cookie", cookie]
        args += ["--host", host, "--port", str(port), "--log-level", log_level, "--preset", preset]
        for label, ref in (spawn or {}).items():
            args += ["--spawn", f"{label}={ref}"]
        for node in connect:
            args += ["--connect", node]
        for path in paths:
            args += ["--path", os.fspath(path)]
        if gossip is not None:
            args += ["--gossip", gossip]
        if gossip_port is not None:
            args += ["--gossip-port", str(gossip_port)]
        if gossip_interval is not None:
            args += ["--gossip-interval", str(gossip_interval)]
        if broadcast:
            args.append("--broadcast")
        for node in static:
            args += ["--static", node]
        for ref in app:
            args += ["--app", ref]
        if dashboard is not None:
            args += ["--dashboard", dashboard]
        if log_format is not None:
            args += ["--log-format", log_format]
        if not unix_sockets:
            args.append("--no-unix-sockets")
        if store is not None:
            args += ["--store", store]
        if store_timeout is not None:
            args += ["--store-timeout", str(store_timeout)]
        if netns is not None:
            args = ["ip", "netns", "exec", netns, *args]
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=new_session,
            preexec_fn=die_with_parent,
        )
        assert proc.stdout is not None
        try:
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout)
                if not line:
                    code = await proc.wait()
                    raise RuntimeError(f"node process {name} exited with code {code} before it was up")
                msg = json.loads(line)
                if "up" in msg:
                    return cls(proc, msg["up"])
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TimeoutError(f"node process {name} did not start within {timeout} s") from None
        except BaseException:  # cancelled, or a bad line: never leave the child behind
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            msg = json.loads(line)
            if "event" in msg:
                self.events.append(msg)
            elif "reply" in msg:
                self._replies.put_nowait(msg["reply"])

    async def _ask(self, command: str, timeout: float = 10.0) -> Any:
        assert self.proc.stdin is not None
        async with self._asking:
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
            return await asyncio.wait_for(self._replies.get(), timeout)

    async def nodes(self) -> list[str]:
        """The node's current view of the cluster (``Node.nodes()``)."""
        result: list[str] = await self._ask("nodes")
        return result

    async def stats(self) -> dict[str, Any]:
        """Membership, transport, registry and runtime statistics, as dicts."""
        result: dict[str, Any] = await self._ask("stats")
        return result

    async def registered(self) -> list[tuple[Any, Pid]]:
        """Every ``(name, pid)`` in the node's registry replica (JSON lists in names read as tuples)."""
        reply: dict[str, Any] = await self._ask("registered")
        return [(lists_as_tuples(name), Pid(*pid)) for name, pid in reply["names"]]

    async def placement(self) -> list[str]:
        """The server nodes the node's registry places names on."""
        reply: dict[str, Any] = await self._ask("registered")
        return list(reply["placement"])

    async def whereis(self, name: Any) -> Pid | None:
        """``whereis(name)`` in the node's replica; ``name`` must be JSON-encodable (tuples as lists)."""
        reply = await self._ask("whereis " + json.dumps(name))
        return None if reply is None else Pid(*reply)

    async def register(
        self, names: Sequence[Any], factory: str, *, restart: str = "temporary", timeout: float = 30.0
    ) -> dict[str, Any]:
        """Register every name (JSON-encodable; lists stand for tuples) with ``factory``
        (``"module:attr"``) from the node, all at once. Returns ``{"registered": count,
        "errors": {name as JSON: error}}``."""
        request = {"factory": factory, "names": list(names), "restart": restart}
        result: dict[str, Any] = await self._ask("register " + json.dumps(request), timeout)
        return result

    async def registry_stats(self) -> dict[str, Any]:
        """Cheap registry sizes and in-flight work (``distable.testing.registry_stats``)."""
        result: dict[str, Any] = await self._ask("registry_stats")
        return result

    async def registry_check(self, timeout: float = 30.0) -> dict[str, Any]:
        """Every name walked once: on its owner, alive, replica digest (``distable.testing.registry_check``)."""
        result: dict[str, Any] = await self._ask("registry_check", timeout)
        return result

    async def rss(self) -> int:
        """The node process's resident set size in bytes, after a collection."""
        result: int = await self._ask("rss")
        return result

    def pid(self, label: str) -> Pid:
        node, incarnation, local_id = self.info["pids"][label]
        return Pid(node, incarnation, local_id)

    def kill(self) -> None:
        """SIGKILL: the node dies without a word to anyone."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: the node leaves gracefully."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float = 20.0) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait([self._reader], timeout=timeout)
        return code

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.terminate()
            try:
                await self.wait(10.0)
            except TimeoutError:
                self.kill()
                await self.proc.wait()
        self._reader.cancel()
