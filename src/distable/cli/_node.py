"""``distable node``: run one node until SIGTERM or SIGINT, then leave gracefully.

Start-up goes in an order that fails before the cluster sees the node, never after:

1. every option is checked (``distable.cli._main``);
2. every ``--app`` module is imported (so the ``register_type`` types, factories and
   ``Process`` classes that other nodes may send here exist) and each ``:function`` found;
3. every port is bound: the node's own (links are refused until step 4), the dashboard's
   and the metrics endpoint's;
4. the node joins: it accepts links and starts discovery; with ``--app`` it waits, at most
   ``--join-timeout`` seconds, until the cluster it can see has settled and it has caught
   up with it (``Node.wait_joined``: ``--expect`` server nodes up, or every node of the
   ``--static`` list, or no new node for a moment), so that the apps' registrations see
   the names that already run and meet no copies started alongside;
5. the apps' functions run (``function(node)``, in order), and one line says it is up.

A failure in steps 1-3 exits 1 with a one-line error before any other node has seen this
one. The first SIGTERM or SIGINT makes it leave: web servers close, every registered
process is handed off to its new owner with its state (bounded by ``--drain-timeout``),
the links close, and the command exits 0. Later signals are ignored (the leave is bounded
by the drain timeout; SIGKILL quits at once, and the other nodes then restart the names
instead).
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

from .._apps import App, AppError, load_app, run_app
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
    node: Node,
    apps: Sequence[str],
    web: Sequence[WebEndpoint],
    cluster: str,
    join_timeout: float = 3.0,
    expect: int | None = None,
) -> None:
    """Run ``node`` until a signal; see the module's docstring.

    Raises:
        CliError: an app cannot be imported or fails, or a port cannot be bound.
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

    loaded = _load_apps(apps)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await node.bind()
            except OSError as exc:
                # The event loop's own wording varies (uvloop's is long): say it plainly.
                reason = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
                raise CliError(f"cannot listen on {node.host}:{node.port}: {reason}") from None
            stack.push_async_exit(node.__aexit__)  # stops the node, joined or not
            urls = []
            for endpoint in web:  # closed before the node leaves
                server = await _start_web(node, endpoint)
                stack.push_async_callback(server.close)
                urls.append(("dashboard" if endpoint.dashboard else "metrics", str(server.url)))
            await node.__aenter__()  # join; the node is current from here on
            startup = asyncio.ensure_future(_start(node, loaded, join_timeout, expect))
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
            startup.result()
            extra = "".join(f", {name} {url}" for name, url in urls)
            click.echo(f"distable: node {node.name} up (role {node.role}, cluster {cluster}{extra})")
            await leave.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("%s: left the cluster", node.name)


def _load_apps(refs: Sequence[str]) -> list[App]:
    try:
        return [load_app(ref) for ref in refs]
    except AppError as exc:
        raise CliError(str(exc)) from None


async def _start(node: Node, apps: Sequence[App], join_timeout: float, expect: int | None) -> None:
    if apps and join_timeout > 0 and not await node.wait_joined(join_timeout, expect=expect):
        _log_unsettled(node, join_timeout, expect)
    if apps:
        await node.wait_restored()  # with --store: the remembered names first, then the apps' registrations
    for app in apps:
        try:
            await run_app(node, app)
        except AppError as exc:
            raise CliError(str(exc)) from None


def _log_unsettled(node: Node, join_timeout: float, expect: int | None) -> None:
    """Say why the join wait ended without a settled cluster, and what that risks."""
    state = node.join_state()
    if expect is not None and state.servers < expect:
        log.warning(
            "%s: found %d of the %d server nodes of --expect within %g s: starting the apps anyway "
            "(names they register may meet copies started elsewhere later: raise --join-timeout to wait longer)",
            node.name,
            state.servers,
            expect,
            join_timeout,
        )
    elif not state.up and state.foreign:
        # The usual mistake behind it: this node's cookie is not theirs.
        log.warning(
            "%s: found no other node within %g s, but heard %d gossip packet(s) of another cluster: is "
            "this node's cookie (--cookie-file) theirs? Starting the apps as the cluster's first node",
            node.name,
            join_timeout,
            state.foreign,
        )
    elif not state.up:
        log.info(
            "%s: found no other node within %g s: starting the apps as the cluster's first node",
            node.name,
            join_timeout,
        )
    else:
        waiting = sorted(state.unsynced | state.pending)
        log.warning(
            "%s: the cluster did not settle within %g s (%d node(s) up%s): starting the apps anyway "
            "(raise --join-timeout, or give --expect N)",
            node.name,
            join_timeout,
            len(state.up),
            f", still catching up with {', '.join(waiting)}" if waiting else ", new nodes still appearing",
        )


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
        reason = os.strerror(cause.errno) if cause.errno else cause.strerror or str(cause)
        raise CliError(f"cannot serve {what} on {endpoint.host}:{endpoint.port}: {reason}") from None
