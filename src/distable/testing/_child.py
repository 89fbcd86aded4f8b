"""Entry point of a node run in its own OS process by ``NodeProcess``.

    python -m distable.testing._child --name b --cookie c [--port 0] \
        [--spawn label=module:Class ...] [--path DIR ...] [--connect NODE ...]

Prints one JSON line on stdout once the node is up: {"node": name, "incarnation": n,
"pids": {label: [node, incarnation, id]}}. Stops gracefully on SIGTERM, SIGINT or when
its standard input closes (so it never outlives a parent that died).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from typing import Any

from ..node import Node, run
from ..runtime import Process


def resolve(ref: str) -> Any:
    """Import ``"package.module:attribute"``."""
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: None if os.read(stdin, 4096) else stop.set())
    async with Node(args.name, host=args.host, port=args.port, cookie=args.cookie, connect=args.connect) as node:
        pids: dict[str, list[Any]] = {}
        for item in args.spawn:
            label, _, ref = item.partition("=")
            cls = resolve(ref)
            assert isinstance(cls, type)
            assert issubclass(cls, Process)
            pid = await node.spawn(cls)
            pids[label] = [pid.node, pid.incarnation, pid.id]
        print(json.dumps({"node": node.name, "incarnation": node.incarnation, "pids": pids}), flush=True)
        await stop.wait()
    loop.remove_reader(sys.stdin.fileno())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--spawn", action="append", default=[])
    parser.add_argument("--path", action="append", default=[])
    parser.add_argument("--connect", action="append", default=[])
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    sys.path[:0] = args.path
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s [{args.name}] %(levelname)s %(name)s: %(message)s")
    run(_main(args))


if __name__ == "__main__":
    main()
