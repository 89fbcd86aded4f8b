"""Entry point of a node run in its own OS process by ``NodeProcess``.

    python -m distable.testing._child --name b --cookie c [--host H] [--port 0]
        [--spawn label=module:Class ...] [--path DIR ...] [--connect NODE ...]
        [--gossip IF_ADDR] [--gossip-port P] [--gossip-interval S] [--broadcast]
        [--static NODE ...] [--preset local|lan]

Protocol on stdout, one JSON object per line:
    {"up": {"node": name, "incarnation": n, "pids": {label: [node, incarnation, id]}}}
        once the node is up;
    {"event": "NodeUp" | "NodeDown", "node": ..., "detail": ..., "t": wall-clock time}
        for every membership event;
    {"reply": ...} for each command read on stdin: ``nodes`` (the node's view) or
        ``stats`` (membership and transport counters).

Stops gracefully on SIGTERM, SIGINT, the command ``stop``, or when its standard input
closes (so it never outlives a parent that died).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from ..membership import Gossip, MembershipConfig, NodeDown, NodeUp, Static, Strategy
from ..node import Node, run
from ..runtime import Process


def resolve(ref: str) -> Any:
    """Import ``"package.module:attribute"``."""
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


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


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    preset = MembershipConfig.local() if args.preset == "local" else MembershipConfig.lan()
    node = Node(
        args.name,
        host=args.host,
        port=args.port,
        cookie=args.cookie,
        connect=args.connect,
        cluster=_strategies(args),
        membership=preset,
    )
    events = node.events
    async with node:
        stream = events()

        async def report() -> None:
            async for event in stream:
                if isinstance(event, NodeUp | NodeDown):
                    detail = event.incarnation if isinstance(event, NodeUp) else event.reason
                    _emit({"event": type(event).__name__, "node": event.node, "detail": detail, "t": time.time()})

        reporter = asyncio.ensure_future(report())
        pending = b""

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
                                "membership": dataclasses.asdict(stats.membership),
                                "transport": dataclasses.asdict(stats.transport),
                            }
                        }
                    )
                elif command == "stop":
                    stop.set()

        stdin = sys.stdin.fileno()
        loop.add_reader(stdin, on_stdin)
        pids: dict[str, list[Any]] = {}
        for item in args.spawn:
            label, _, ref = item.partition("=")
            cls = resolve(ref)
            if not (isinstance(cls, type) and issubclass(cls, Process)):
                raise TypeError(f"{ref} is not a Process subclass")
            pid = await node.spawn(cls)
            pids[label] = [pid.node, pid.incarnation, pid.id]
        _emit({"up": {"node": node.name, "incarnation": node.incarnation, "pids": pids}})
        await stop.wait()
        loop.remove_reader(stdin)
        reporter.cancel()
        stream.close()


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
    args = parser.parse_args()
    sys.path[:0] = args.path
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format=f"%(asctime)s [{args.name}] %(levelname)s %(name)s: %(message)s",
    )
    run(_main(args))


if __name__ == "__main__":
    main()
