"""Conflicts after a heal, at scale: two nodes in this process, cut apart, each running its
own copy of N names, then healed (tests/registry/test_conflict_exchange.py's setting).

    .venv/bin/python bench/conflicts.py [--n 5000] [--checkpoints] [--preset local|lan]
                                        [--late 0] [--timeout 120]

Figures (JSON lines, see _common.py): ``conflicts_settle`` (seconds from the heal until
every name has one copy and every replica agrees, or the timeout), ``conflicts_states``
(the losers' states the winners' ``resolve_conflict`` received, per name: 1.0 when each
was taken once) and ``conflicts_verdicts`` (NodeDown events after the heal: each one
restarts the other node's names, which are new conflicts). ``--late S`` makes each node
take every ``ConflictState`` S seconds late (a winner's node behind a backlog): with S
above the loser's old fixed 5 s wait, the exchange never settled before the fix.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import emit, note

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the registry tests' cluster in one process, and its cut

from tests.registry import apps  # noqa: E402
from tests.registry.conftest import Cluster  # noqa: E402
from tests.registry.test_conflict_exchange import survivors, two_sides  # noqa: E402

from distable import MembershipConfig, NodeDown  # noqa: E402
from distable.testing import intercept  # noqa: E402
from distable.wire._messages import ConflictState  # noqa: E402


async def run(n: int, checkpoints: bool, preset: str, late: float, timeout: float) -> None:
    membership = MembershipConfig.lan() if preset == "lan" else MembershipConfig.local()
    cluster = Cluster()
    try:
        a, b, cut, names, _ = await two_sides(cluster, n, checkpoints=checkpoints, membership=membership)
        downs_before = sum(isinstance(e, NodeDown) for node in (a, b) for e in cluster.events(node))
        loop = asyncio.get_running_loop()

        def held(sender: str, msg: Any, deliver: Callable[[str, Any], None]) -> None:
            loop.call_later(late, deliver, sender, msg)

        note(f"{n} names per side registered; healing")
        start = time.monotonic()
        settled = None
        if late:
            with intercept(a, ConflictState, held), intercept(b, ConflictState, held):
                await cut.heal(timeout=60)
                settled = await _settle(cluster, names, start, timeout)
        else:
            await cut.heal(timeout=60)
            settled = await _settle(cluster, names, start, timeout)
        took = time.monotonic() - start
        await asyncio.sleep(1.0)  # the last resolve_conflict jobs run
        states = sum(
            len(p.conflicts) for node in (a, b) for p in node.runtime.processes() if isinstance(p, apps.Counter)
        )
        downs = sum(isinstance(e, NodeDown) for node in (a, b) for e in cluster.events(node)) - downs_before
        config = {"n": n, "checkpoints": checkpoints, "preset": preset, "late": late, "settled": settled is not None}
        emit("conflicts_settle", round(took, 2), "s", **config)
        emit("conflicts_states", round(states / n, 3), "states/name", **config)
        emit("conflicts_verdicts", downs, "NodeDown", **config)
    finally:
        await cluster.close()


async def _settle(cluster: Cluster, names: list[str], start: float, timeout: float) -> dict[str, Any] | None:
    last = start
    while time.monotonic() - start < timeout:
        won = survivors(cluster, names)
        if won is not None:
            return won
        if time.monotonic() - last >= 5.0:
            last = time.monotonic()
            waiting = {n.name: len(n.registry.conflict_outbox) for n in cluster.nodes}
            note(f"{last - start:.0f} s: states waiting for an answer {waiting}")
        await asyncio.sleep(0.25)
    note(f"not settled within {timeout} s")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="names per side")
    parser.add_argument("--checkpoints", action="store_true", help="each copy checkpoints once before the heal")
    parser.add_argument("--preset", choices=["local", "lan"], default="local", help="membership preset")
    parser.add_argument("--late", type=float, default=0.0, help="seconds each ConflictState is taken late")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(run(args.n, args.checkpoints, args.preset, args.late, args.timeout))


if __name__ == "__main__":
    main()
