"""The long fault campaign: ``python -m tests.chaos [--minutes M] [--runs N] [--seed S]
[--checkpoints [--replicas K]] [--no-partitions]`` (``python3 tasks.py chaos ...`` runs this
in the project's venv).

Runs ``tests.chaos.harness`` again and again, each run with its own seed (``--seed`` is the
first; the next ones follow), until ``--runs`` runs are done or ``--minutes`` have passed
(a run in progress finishes), with a longer schedule than the CI test's: 800 counters,
25-35 faults over 120 s, up to 7 nodes, network partitions among them where the machine
allows (root, nftables, cgroup v2; otherwise it says why not). Prints a line per run as it ends, then a table of
runs, faults and violations and the time to quiescence (median, worst). With
``--checkpoints`` the counters checkpoint before they answer and the checker holds them to
the checkpoint guarantee (see ``tests.chaos.harness``). Every run's files
stay under the printed folder (``run-<seed>/``: harness.log, acks.jsonl, node logs,
ledgers), so that each violation can be explained afterwards.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from distable import run as run_node_loop

from ._partition import missing_requirements
from .harness import Config, Result, run, summary, table


async def campaign(args: argparse.Namespace) -> list[Result]:
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="distable-chaos-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"chaos campaign: logs in {base}", flush=True)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    deadline = time.monotonic() + args.minutes * 60.0
    results: list[Result] = []
    rng = random.Random(seed)
    while len(results) < args.runs and time.monotonic() < deadline:
        run_seed = seed + len(results)
        config = Config(
            seed=run_seed,
            run_dir=base / f"run-{run_seed}",
            names=args.names,
            faults=rng.randint(args.faults_min, args.faults_max),
            window=args.window,
            quiesce_timeout=90.0,
            checkpoints=args.checkpoints,
            replicas=args.replicas,
            partitions=args.partitions,
        )
        print(f"run {len(results) + 1}: seed {run_seed}, {config.faults} faults over {config.window:.0f} s", flush=True)
        try:
            result = await run(config)
        except Exception as exc:  # a run that could not even start: say so, keep going
            print(f"  run failed: {exc!r}", flush=True)
            continue
        results.append(result)
        print(summary(result), flush=True)
    print()
    print(table(results))
    print(f"logs in {base}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python3 tasks.py chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="stop starting runs after this long")
    parser.add_argument("--runs", type=int, default=1000, help="at most this many runs")
    parser.add_argument("--seed", type=int, default=None, help="the first run's seed (the next ones follow)")
    parser.add_argument("--names", type=int, default=800, help="counters per run")
    parser.add_argument("--window", type=float, default=120.0, help="seconds over which a run's faults start")
    parser.add_argument("--faults-min", type=int, default=25)
    parser.add_argument("--faults-max", type=int, default=35)
    parser.add_argument(
        "--checkpoints",
        action="store_true",
        help="the counters checkpoint before they answer (no loss allowed to one crash)",
    )
    parser.add_argument("--replicas", type=int, default=1, help="with --checkpoints: standbys per counter")
    parser.add_argument("--dir", default=None, help="folder for the runs' files (default: a new temporary one)")
    parser.add_argument(
        "--partitions",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the nemesis also cuts the network (default: where root, nftables and cgroup v2 allow it)",
    )
    args = parser.parse_args()
    missing = missing_requirements()
    if args.partitions is None:
        args.partitions = missing is None
        if missing is not None:
            print(f"no partitions in this campaign: {missing}", flush=True)
    elif args.partitions and missing is not None:
        parser.error(missing)
    results = run_node_loop(campaign(args))
    sys.exit(1 if any(r.violations for r in results) else 0)


if __name__ == "__main__":
    main()
