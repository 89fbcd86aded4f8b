"""``python -m distable.demo``: the command line of the demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path

from distable import run

from ._driver import Demo, Options

DESCRIPTION = """\
A local cluster of real node processes on loopback: 3 server nodes and this driver find
each other by multicast; the driver registers a few thousand workers, each a counter
that lives on the node owning its name. Then (1) a 4th node joins: a quarter of the
workers move to it, with their counts; (2) a node stops gracefully: its workers move,
with their counts; (3) a node is killed: its workers restart on the survivors, from the
last checkpoint of their counts. A verdict at the end checks every worker: alive exactly once, on its ring
owner, with the count the driver expects. Exit code 0 if it is OK, 1 if not.
"""


def parse(argv: list[str] | None, prog: str = "python -m distable.demo") -> argparse.Namespace:
    """The options in ``argv``; exits with a usage message (code 2) when they are wrong."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.add_argument("--workers", type=int, default=3000, metavar="N", help="workers to register (default 3000)")
    parser.add_argument(
        "--plain", action="store_true", help="plain lines, not the live view (always when stdout is not a terminal)"
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the verdict, keep the cluster up with the web dashboard until Ctrl-C",
    )
    parser.add_argument(
        "--dashboard-port", type=int, default=0, metavar="PORT", help="with --keep-running (default: any free port)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the casts (default: random, printed)")
    parser.add_argument(
        "--pause", type=float, default=None, metavar="S", help="seconds between steps (default 2, or 0 with --plain)"
    )
    parser.add_argument(
        "--timeout", type=float, default=45.0, metavar="S", help="seconds a step may take to settle (default 45)"
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def main(argv: list[str] | None = None, prog: str = "python -m distable.demo") -> int:
    """Run the demo with the command-line arguments ``argv`` (``sys.argv[1:]`` if None);
    ``prog`` is how its usage line names the command.

    Returns:
        The exit code: 0 if the verdict is OK, 1 if not (or the demo failed to run), 130 if
        it was interrupted before the verdict.
    """
    args = parse(argv, prog)
    plain = args.plain or not sys.stdout.isatty()
    log_dir = Path(tempfile.mkdtemp(prefix="distable-demo-"))
    options = Options(
        workers=args.workers,
        seed=args.seed if args.seed is not None else random.SystemRandom().randrange(2**32),
        plain=plain,
        keep_running=args.keep_running,
        pause=args.pause if args.pause is not None else (0.0 if plain else 2.0),
        timeout=args.timeout,
        dashboard_port=args.dashboard_port,
        log_dir=log_dir,
    )
    # The driver's own log goes beside the nodes' (stderr would tear the live view apart).
    handler = logging.FileHandler(log_dir / "driver.log")
    handler.setFormatter(logging.Formatter("%(asctime)s [driver] %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("distable")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    code = 1
    try:
        code = run(_run(options))
    except KeyboardInterrupt:
        code = 130
    except Exception:
        traceback.print_exc()
        print("verdict: FAILED (the demo itself failed: see the error above)", flush=True)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        handler.close()
    if code == 0 and not options.keep_running:
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        print(f"node logs: {log_dir}", flush=True)
    return code


async def _run(options: Options) -> int:
    """Run the demo; on SIGINT or SIGTERM, stop it (gracefully; a second signal kills)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    demo = Demo(options)

    def interrupt() -> None:
        if demo.interrupted:
            demo.kill_all()  # asked twice: no more waiting for graceful stops
            return
        demo.interrupted = True
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    try:
        return await demo.run()
    except asyncio.CancelledError:
        if not demo.interrupted:
            raise
        task.uncancel()
        print("interrupted: every node was stopped", flush=True)
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
