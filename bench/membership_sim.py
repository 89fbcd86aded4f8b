"""Membership convergence in simulation: gossip rounds until N nodes see each other.

    .venv/bin/python bench/membership_sim.py [--repeats 3] [--large-repeats 1] [--quick] [--sizes 10,30,100]

Slow at N=1000: with the core as it is (a full member table both ways, twice, on every
new link: about 1.3 N^2 rumors applied per node, N^3 in all, in one process) one run
took 23 CPU minutes and 2.2 GB here, against 50 s for N=300. So N >= 1000 runs
``--large-repeats`` seeds (default 1); ``--quick`` stops at N=100.

Scenario: N membership cores (``MembershipConfig.lan()``, 1 s protocol period) in one
``distable.testing.SimCluster``, with no multicast: node 0 starts first and every other
node starts at a random moment within the first protocol period, knowing only node 0
(like ``Static([seed])``). Whatever a node learns beyond that comes from the protocol:
the table exchanged on every new link, piggybacked rumors and push-pull. Links carry
messages with a one-way latency of 1-10 ms.

A *round* is one protocol period. The figure is the number of rounds from the last
node's start until every node's view is complete (each lists all N-1 others as up),
the median over ``--repeats`` seeds (0, 1, ...). Beside it: rounds / log2(N), to show
the shape, and the cost of getting there (messages and rumors delivered per node, and
the simulator's wall-clock seconds). Then one node crashes, and the script counts the
rounds until every other node has reported it down: that is failure detection, whose
suspicion timeout grows with log10(N) by design.

Figures (JSON lines, see _common.py):
    membership_convergence_rounds            rounds to a full view, per N
    membership_convergence_rounds_per_log2n  the same divided by log2(N)
    membership_messages_per_node             link messages delivered per node until then
    membership_rumors_per_node               rumors those messages carried, per node
    membership_failure_rounds                rounds from one crash until every survivor reported it
    membership_sim_seconds                   wall-clock seconds one simulation took
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Timer, emit, median, note

from distable.membership import MembershipConfig, NodeDown
from distable.testing import SimCluster

SIZES = (10, 30, 100, 300, 1000)
LATENCY = (0.001, 0.010)
TIMEOUT_ROUNDS = 200


def simulate(n: int, seed: int) -> dict[str, float]:
    """One run: N nodes join through one seed; return rounds, cost and wall time."""
    config = MembershipConfig.lan()
    period = config.protocol_period
    names = [f"n{i:04d}@10.0.{i // 256}.{i % 256}:4370" for i in range(n)]
    with Timer() as timer:
        cluster = SimCluster(seed, config=config, latency=LATENCY, heartbeat=None, seeds=[names[0]])
        cluster.start(names[0])
        last_start = 0.0
        for name in names[1:]:
            at = cluster.rng.uniform(0.0, period)
            last_start = max(last_start, at)
            cluster.start(name, at=at)
        cluster.run_until(last_start)
        if not cluster.run_until_true(cluster.converged, TIMEOUT_ROUNDS * period, poll=period / 100):
            raise RuntimeError(f"N={n} seed={seed}: no full view within {TIMEOUT_ROUNDS} rounds")
        # The view became complete with the last NodeUp (nobody went down so far).
        done = max(o.at for o in cluster.log)
        messages, rumors = sum(cluster.delivered.values()), sum(cluster.rumors.values())
        victim = cluster.rng.choice(names[1:])
        crashed = cluster.now + cluster.rng.uniform(0.0, period)
        cluster.crash(victim, at=crashed)
        cluster.run_until(crashed)
        reported = set()
        mark = len(cluster.log)

        def everyone_reported() -> bool:
            nonlocal mark
            for o in cluster.log[mark:]:
                if o.event == NodeDown(victim, "failed"):
                    reported.add(o.observer)
            mark = len(cluster.log)
            return len(reported) == n - 1

        if not cluster.run_until_true(everyone_reported, TIMEOUT_ROUNDS * period, poll=period / 100):
            raise RuntimeError(f"N={n} seed={seed}: the crash was not reported everywhere in {TIMEOUT_ROUNDS} rounds")
    detected = max(o.at for o in cluster.log if o.event == NodeDown(victim, "failed"))
    return {
        "rounds": max(0.0, done - last_start) / period,
        "messages": messages / n,
        "rumors": rumors / n,
        "failure_rounds": (detected - crashed) / period,
        "wall": timer.elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="seeds per N; the median is reported")
    parser.add_argument("--large-repeats", type=int, default=1, help="seeds for N >= 1000 (each takes minutes)")
    parser.add_argument("--quick", action="store_true", help="only N <= 100 (a smoke run)")
    parser.add_argument("--sizes", default="", help="comma-separated N to run (default: 10,30,100,300,1000)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(SIZES)
    if args.quick:
        sizes = [n for n in sizes if n <= 100]
    rows: list[tuple[int, float, float, float, float, float, float]] = []
    for n in sizes:
        repeats = args.large_repeats if n >= 1000 else args.repeats
        runs = [simulate(n, seed) for seed in range(repeats)]
        for seed, run in enumerate(runs):
            note(
                f"N={n} seed={seed}: full view in {run['rounds']:.3f} rounds, crash reported everywhere"
                f" in {run['failure_rounds']:.2f} rounds, {run['wall']:.1f} s wall"
            )
        rounds = median([r["rounds"] for r in runs])
        config: dict[str, Any] = {
            "nodes": n,
            "seeds": list(range(repeats)),
            "samples": [round(r["rounds"], 4) for r in runs],
            "preset": "lan",
            "protocol_period": MembershipConfig.lan().protocol_period,
            "latency": list(LATENCY),
            "discovery": "one seed node",
        }
        emit("membership_convergence_rounds", round(rounds, 4), "rounds", **config)
        emit("membership_convergence_rounds_per_log2n", round(rounds / math.log2(n), 4), "rounds", **config)
        messages = median([r["messages"] for r in runs])
        rumors = median([r["rumors"] for r in runs])
        wall = median([r["wall"] for r in runs])
        emit("membership_messages_per_node", round(messages, 1), "messages", **config)
        emit("membership_rumors_per_node", round(rumors, 1), "rumors", **config)
        failure = median([r["failure_rounds"] for r in runs])
        emit("membership_failure_rounds", round(failure, 3), "rounds", **config)
        emit("membership_sim_seconds", round(wall, 2), "s", **config)
        rows.append((n, rounds, rounds / math.log2(n), messages, rumors, failure, wall))
    note(
        f"{'N':>6} {'rounds':>8} {'/log2 N':>8} {'msgs/node':>10} {'rumors/node':>12}"
        f" {'crash rounds':>13} {'/log2 N':>8} {'wall s':>8}"
    )
    for n, rounds, per_log, messages, rumors, failure, wall in rows:
        note(
            f"{n:>6} {rounds:>8.3f} {per_log:>8.4f} {messages:>10.0f} {rumors:>12.0f}"
            f" {failure:>13.2f} {failure / math.log2(n):>8.3f} {wall:>8.1f}"
        )


if __name__ == "__main__":
    main()
