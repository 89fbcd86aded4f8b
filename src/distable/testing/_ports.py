"""Choosing a gossip port for a test, a demo or a benchmark run."""

from __future__ import annotations

import random
import socket


def free_gossip_port(ports: range = range(46000, 48000), rng: random.Random | None = None) -> int:
    """A UDP port in ``ports`` that no socket on this host has bound, picked at random (by
    ``rng``, for a replayable run), so that concurrent runs do not hear each other's gossip.

    Each candidate is only bound and released: nothing is sent.

    Raises:
        RuntimeError: no free port after 200 tries.
    """
    pick = rng or random.SystemRandom()
    for _ in range(200):
        port = pick.randrange(ports.start, ports.stop)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free UDP port in {ports.start}-{ports.stop - 1}")


def free_tcp_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports on ``host`` that nothing listens on right now (each
    bound to port 0 at once, then released), for nodes that must keep their port, and so
    their name, across a restart."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
