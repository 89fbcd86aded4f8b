"""Entry point of a node run in its own OS process by ``NodeProcess``.

    python -m distable.testing._child --name b --cookie c [--host H] [--port 0]
        [--spawn label=module:Class ...] [--path DIR ...] [--connect NODE ...]
        [--gossip IF_ADDR] [--gossip-port P] [--gossip-interval S] [--broadcast]
        [--static NODE ...] [--preset local|lan] [--app module[:function] ...]
        [--dashboard HOST:PORT] [--log-format text|json] [--no-unix-sockets]
        [--store URL] [--store-timeout S]

Protocol on stdout, one JSON object per line:
    {"up": {"node": name, "incarnation": n, "pids": {label: [node, incarnation, id]},
            "dashboard": url or null}}
        once the node is up;
    {"event": "NodeUp" | "NodeDown", "node": ..., "detail": ..., "t": wall-clock time}
        for every membership event;
    {"reply": ...} for each command read on stdin: ``nodes`` (the node's view),
        ``stats`` (membership, transport, registry and runtime counters), ``registered`` (the
        registry replica: ``{"names": [[name, pid], ...], "placement": [node, ...]}``)
        or ``whereis <name as JSON>`` (JSON lists stand for tuples; the reply is the
        pid as ``[node, incarnation, id]``, or null); and for benchmarks (see ``_probe``)
        ``registry_stats`` (cheap sizes and in-flight work), ``registry_check`` (every
        name walked once: on its owner, alive, replica digest) and ``rss`` (bytes);
        ``register <JSON {"factory": "module:attr", "names": [...], "restart": "temporary"}>``
        registers each name with the factory, all at once (the reply is
        ``{"registered": count, "errors": {name as JSON: error}}``).

``--dashboard HOST:PORT`` serves the node's metrics and dashboard (``distable.web``; port
0 picks a free one) and reports its URL in the "up" line. ``--log-format`` switches the
log lines on stderr to ``distable._log.configure_logging``'s text or JSON format (by
default: ``time [name] LEVEL logger: message``).

``--no-unix-sockets`` keeps every link of the node on TCP (``TransportConfig.unix_sockets``).

``--app module`` imports the module once the node is started, before the "up" line;
``--app module:function`` also calls ``function(node)`` (awaited if it returns an
awaitable), so an application can start its processes (a supervisor...) there.

Stops gracefully on SIGTERM, SIGINT, the command ``stop``, or when its standard input
closes (so it never outlives a parent that died).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from typing import Any

import msgspec

from .._apps import import_ref, load_app, run_app
from .._log import configure_logging
from ..membership import Gossip, MembershipConfig, NodeDown, NodeUp, Static, Strategy
from ..node import Node, run
from ..runtime import Process
from ..transport import TransportConfig
from ..wire import Pid, lists_as_tuples
from ._probe import registry_check, registry_stats, rss_bytes

#: Registry probes for benchmarks (see ``_probe``): command -> function of the node.
_PROBES: dict[str, Any] = {
    "registry_stats": registry_stats,
    "registry_check": registry_check,
    "rss": lambda node: rss_bytes(),
}


def _pid_json(pid: Pid | None) -> list[Any] | None:
    return None if pid is None else [pid.node, pid.incarnation, pid.id]


def _registry_reply(node: Node, command: str) -> Any:
    """The reply to a registry query read on stdin (``registered`` or ``whereis <json>``)."""
    if command == "registered":
        return {
            "names": [[name, _pid_json(pid)] for name, pid in node.registered()],
            "placement": list(node.placement().nodes),
        }
    _, _, name = command.partition(" ")
    return _pid_json(node.whereis(lists_as_tuples(json.loads(name))))


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def _strategies(args: argparse.Namespace) -> list[Strategy]:
    out: list[Strategy] = []
    if args.gossip:
        out.append(
            Gossip(
                if_addr=args.gossip,
                port=args.gossip_port,
                interval=args.gossip_interval,
                broadcast_only=args.broadcast,
            )
        )
    if args.static:
        out.append(Static(args.static, recheck=1.0))
    return out


def _dashboard_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"--dashboard wants HOST:PORT (port 0 for any free one), not {text!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


async def _register(node: Node, request: dict[str, Any]) -> dict[str, Any]:
    """The ``register`` command: each name in ``request["names"]`` registered at once."""
    factory = request["factory"]
    restart = request.get("restart", "temporary")
    names = [lists_as_tuples(name) for name in request["names"]]
    results = await asyncio.gather(
        *(node.register(name, factory, restart=restart) for name in names), return_exceptions=True
    )
    errors = {
        json.dumps(name): repr(r)
        for name, r in zip(request["names"], results, strict=True)
        if isinstance(r, BaseException)
    }
    return {"registered": len(names) - len(errors), "errors": errors}


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    preset = MembershipConfig.local() if args.preset == "local" else MembershipConfig.lan()
    apps = [load_app(ref) for ref in args.app]  # before joining: their types and factories exist
    node = Node(
        args.name,
        host=args.host,
        port=args.port,
        cookie=args.cookie,
        connect=args.connect,
        cluster=_strategies(args),
        membership=preset,
        transport=TransportConfig(unix_sockets=args.unix_sockets),
        store=args.store,
        store_timeout=args.store_timeout,
    )
    async with node:
        # Only membership events are reported: a stream that takes nothing else, so the
        # registry's events (one per name registered or moved) never reach the reporter.
        stream = node.events(10_000, kinds=(NodeUp, NodeDown))

        async def report() -> None:
            async for event in stream:
                if isinstance(event, NodeUp | NodeDown):
                    detail = event.incarnation if isinstance(event, NodeUp) else event.reason
                    _emit({"event": type(event).__name__, "node": event.node, "detail": detail, "t": time.time()})

        reporter = asyncio.ensure_future(report())
        pending = b""
        jobs: set[asyncio.Task[Any]] = set()  # registrations asked for on stdin; cancelled at the end

        async def answer_register(payload: str) -> None:
            try:
                _emit({"reply": await _register(node, json.loads(payload))})
            except Exception as exc:  # a bad request: say so, keep running
                _emit({"reply": {"registered": 0, "errors": {"request": repr(exc)}}})

        def on_stdin() -> None:
            nonlocal pending
            data = os.read(stdin, 4096)
            if not data:
                stop.set()
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                command = line.decode().strip()
                if command == "nodes":
                    _emit({"reply": node.nodes()})
                elif command == "stats":
                    stats = node.statistics()
                    _emit(
                        {
                            "reply": {
                                "membership": msgspec.to_builtins(stats.membership),
                                "transport": dataclasses.asdict(stats.transport),
                                "registry": dataclasses.asdict(stats.registry),
                                "runtime": dataclasses.asdict(stats.runtime),
                            }
                        }
                    )
                elif command == "registered" or command.startswith("whereis "):
                    _emit({"reply": _registry_reply(node, command)})
                elif command.startswith("register "):
                    job = asyncio.ensure_future(answer_register(command.partition(" ")[2]))
                    jobs.add(job)
                    job.add_done_callback(jobs.discard)
                elif command in _PROBES:
                    _emit({"reply": _PROBES[command](node)})
                elif command == "stop":
                    stop.set()

        stdin = sys.stdin.fileno()
        loop.add_reader(stdin, on_stdin)
        pids: dict[str, list[Any]] = {}
        for item in args.spawn:
            label, _, ref = item.partition("=")
            cls = import_ref(ref)
            if not (isinstance(cls, type) and issubclass(cls, Process)):
                raise TypeError(f"{ref} is not a Process subclass")
            pid = await node.spawn(cls)
            pids[label] = [pid.node, pid.incarnation, pid.id]
        for app in apps:
            await run_app(node, app)
        web = None
        if args.dashboard is not None:
            from ..web import start_web  # aiohttp is imported only when a dashboard is asked for

            web = await start_web(node, *args.dashboard)
        up = {"node": node.name, "incarnation": node.incarnation, "pids": pids, "dashboard": web and web.url}
        _emit({"up": up})
        await stop.wait()
        loop.remove_reader(stdin)
        reporter.cancel()
        for job in list(jobs):
            job.cancel()
        await asyncio.gather(reporter, *jobs, return_exceptions=True)
        stream.close()
        if web is not None:
            await web.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--spawn", action="append", default=[])
    parser.add_argument("--path", action="append", default=[])
    parser.add_argument("--connect", action="append", default=[])
    parser.add_argument("--gossip", metavar="IF_ADDR", default=None)
    parser.add_argument("--gossip-port", type=int, default=45892)
    parser.add_argument("--gossip-interval", type=float, default=0.25)
    parser.add_argument("--broadcast", action="store_true")
    parser.add_argument("--static", action="append", default=[])
    parser.add_argument("--preset", choices=("local", "lan"), default="local")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--app", action="append", default=[], metavar="MODULE[:FUNCTION]")
    parser.add_argument("--dashboard", type=_dashboard_address, default=None, metavar="HOST:PORT")
    parser.add_argument("--log-format", choices=("text", "json"), default=None)
    parser.add_argument("--no-unix-sockets", dest="unix_sockets", action="store_false")
    parser.add_argument("--store", default=None, metavar="URL")
    parser.add_argument("--store-timeout", type=float, default=2.0)
    args = parser.parse_args()
    sys.path[:0] = args.path
    if args.log_format is not None:
        configure_logging(args.log_level, args.log_format)
    else:
        logging.basicConfig(
            level=args.log_level,
            stream=sys.stderr,
            format=f"%(asctime)s [{args.name}] %(levelname)s %(name)s: %(message)s",
        )
    run(_main(args))


if __name__ == "__main__":
    main()
