"""``distable node``: run one node until SIGTERM or SIGINT, then leave gracefully.

The node starts (listens, joins the cluster: with ``--app``, it first waits, at most
``--join-timeout`` seconds, until it has found other nodes and synced its replica with
them, so that the apps' registrations see the names that already run), imports the
``--app`` modules in order
(running ``module:function`` with the node), starts the dashboard and the metrics
endpoint if asked, prints one line saying it is up, and waits. The first SIGTERM or
SIGINT makes it leave: web servers close, every registered process is handed off to its
new owner with its state (bounded by ``--drain-timeout``), the links close, and the
command exits 0. Later signals are ignored (the leave is bounded by the drain timeout;
SIGKILL quits at once, and the other nodes then restart the names instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from distable import Node

from .._apps import AppError, start_app
from ._options import CliError

log = logging.getLogger("distable.cli")


@dataclass(frozen=True, slots=True)
class WebEndpoint:
    """``--dashboard`` (``dashboard=True``: the dashboard and /metrics) or ``--metrics``."""

    option: str
    host: str
    port: int
    dashboard: bool


async def run_node(
    node: Node, apps: Sequence[str], web: Sequence[WebEndpoint], cluster: str, join_timeout: float = 3.0
) -> None:
    """Run ``node`` until a signal; see the module's docstring.

    Raises:
        CliError: the node cannot listen, an app fails, or a web endpoint cannot start.
    """
    loop = asyncio.get_running_loop()
    leave = asyncio.Event()

    def on_signal(signum: int) -> None:
        what = signal.Signals(signum).name
        if leave.is_set():
            # Not a forced exit: one signal may arrive twice (sent to a process group and
            # forwarded by a wrapper), and the leave is bounded by --drain-timeout anyway.
            log.warning("%s: %s: already leaving (SIGKILL quits at once, without handoffs)", node.name, what)
            return
        log.info("%s: %s: leaving the cluster", node.name, what)
        leave.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(node)
            except OSError as exc:
                # The event loop's own wording varies (uvloop's is long): say it plainly.
                reason = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
                raise CliError(f"cannot listen on {node.host}:{node.port}: {reason}") from None
            startup = asyncio.ensure_future(_start(node, apps, web, stack, join_timeout))
            waiter = asyncio.ensure_future(leave.wait())
            try:
                await asyncio.wait({startup, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if not startup.done():  # a signal while the apps start: leave at once
                startup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await startup
                return
            urls = startup.result()
            extra = "".join(f", {name} {url}" for name, url in urls)
            click.echo(f"distable: node {node.name} up (role {node.role}, cluster {cluster}{extra})")
            await leave.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("%s: left the cluster", node.name)


async def _start(
    node: Node, apps: Sequence[str], web: Sequence[WebEndpoint], stack: contextlib.AsyncExitStack, join_timeout: float
) -> list[tuple[str, str]]:
    if apps and join_timeout > 0 and not await node.wait_joined(join_timeout):
        log.info("%s: found no cluster within %g s: starting the apps as its first node", node.name, join_timeout)
    for ref in apps:
        try:
            await start_app(node, ref)
        except AppError as exc:
            raise CliError(str(exc)) from None
    urls = []
    for endpoint in web:
        server = await _start_web(node, endpoint)
        stack.push_async_callback(server.close)
        urls.append(("dashboard" if endpoint.dashboard else "metrics", str(server.url)))
    return urls


async def _start_web(node: Node, endpoint: WebEndpoint) -> Any:
    try:
        web = importlib.import_module("distable.web")
    except ImportError as exc:
        raise CliError(f"{endpoint.option} needs distable.web, which cannot be imported: {exc}") from None
    try:
        return await web.start_web(node, endpoint.host, endpoint.port, dashboard=endpoint.dashboard)
    except OSError as exc:
        what = "the dashboard" if endpoint.dashboard else "metrics"
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc  # the bind error itself
        raise CliError(f"cannot serve {what} on {endpoint.host}:{endpoint.port}: {cause.strerror or cause}") from None
