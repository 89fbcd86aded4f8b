"""Network partitions between node processes on loopback, for the fault test's nemesis
(root, nftables, a cgroup v2 hierarchy under /sys/fs/cgroup).

Every node of a run starts in a cgroup of its own (``wrap``), and the nftables table of the
run tells their packets apart by it (nftables' ``socket cgroupv2``): the ``out`` chain
marks each packet a node sends with that node's bit; during a cut, the ``in`` chain drops
each packet for a node's sockets that carries the bit of a node on the other side. TCP
links between the two sides are cut, a side's own links are not, and processes outside
the run (the client node in the harness) reach both sides. So the nodes need links over
TCP (``--no-unix-sockets``): nftables does not see Unix domain sockets. A multicast
heartbeat may still cross (the socket its lookup finds is any one of those bound to the
group's port): it only makes a node dial the sender, and that dial is cut.

Rules:
    * Nothing but the run's own processes is matched: every rule names one of the run's
      cgroups, so the table, though in the machine's network namespace, touches no other
      traffic; it only drops packets, it sends none.
    * The table and the cgroups are named ``dtchaos-<pid>-<hex>``: ``close`` deletes both,
      and each new run first deletes (``delete_stale``) those of a harness process that
      is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.netns._topology import pid_alive

SYSFS = Path("/sys/fs/cgroup")  # where nftables resolves a cgroupv2 path from
_STALE = re.compile(r"^dtchaos-(\d+)-[0-9a-f]+$")
_TIMEOUT = 15.0


class PartitionError(RuntimeError):
    """An ``nft`` command failed, or a cgroup could not be made."""


def cgroup2_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted, if under /sys/fs/cgroup."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            root = Path(parts[1])
            if root == SYSFS or SYSFS in root.parents:
                return root
    return None


def missing_requirements() -> str | None:
    """Why partitions cannot be made here, or None if they can."""
    if os.name != "posix" or os.geteuid() != 0:
        return "partitions need root (nftables rules, cgroups)"
    if shutil.which("nft") is None:
        return "partitions need 'nft' (Debian package nftables; 'python3 tasks.py test' installs it as root)"
    root = cgroup2_root()
    if root is None:
        return "partitions need a cgroup v2 hierarchy mounted under /sys/fs/cgroup"
    if not os.access(root, os.W_OK):
        return f"partitions need to make cgroups in {root}"
    try:  # the kernel may lack nftables' socket expression, or the rights may fall short
        Partitions(["probe"]).close()
    except (OSError, PartitionError, subprocess.SubprocessError) as exc:
        return f"partitions cannot be set up here: {exc}"
    return None


def _nft(script: str) -> None:
    result = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=_TIMEOUT)
    if result.returncode != 0:
        raise PartitionError(f"nft failed ({result.returncode}): {result.stderr.strip()}\n{script}")


def delete_stale() -> list[str]:
    """Delete the tables and cgroups of harness processes that are gone; their names."""
    gone: list[str] = []
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=_TIMEOUT)
    for line in listed.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "inet" and (m := _STALE.match(parts[2])) and not pid_alive(int(m[1])):
            subprocess.run(["nft", "delete", "table", "inet", parts[2]], capture_output=True, timeout=_TIMEOUT)
            gone.append(parts[2])
    root = cgroup2_root()
    if root is not None:
        for group in root.glob("dtchaos-*"):
            if (m := _STALE.match(group.name)) and not pid_alive(int(m[1])):
                for child in group.iterdir():
                    if child.is_dir():
                        child.rmdir()  # fails (and says so) if a process is still in it
                group.rmdir()
                gone.append(group.name)
    return gone


class Partitions:
    """The cgroups and the nftables table of one run (see the module's docstring)."""

    def __init__(self, nodes: Iterable[str]) -> None:
        root = cgroup2_root()
        if root is None:
            raise PartitionError("no cgroup v2 hierarchy under /sys/fs/cgroup")
        delete_stale()  # of a harness killed before its cleanup
        self.name = f"dtchaos-{os.getpid()}-{secrets.token_hex(4)}"
        self.group = root / self.name
        self.bits: dict[str, int] = {}
        self.cut_now: tuple[frozenset[str], frozenset[str]] | None = None
        self.group.mkdir()
        marks = []
        for i, node in enumerate(nodes):
            (self.group / node).mkdir()
            self.bits[node] = 1 << (8 + i)
            marks.append(f"{self._match(node)} meta mark set {self.bits[node]:#x}")
        body = "\n        ".join(marks)
        _nft(
            f"""
table inet {self.name} {{
    chain out {{
        type filter hook output priority 0; policy accept;
        {body}
    }}
    chain in {{
        type filter hook input priority 0; policy accept;
    }}
}}
"""
        )

    def _match(self, node: str) -> str:
        # The path as nftables resolves it (from /sys/fs/cgroup), the level in the hierarchy.
        return f'socket cgroupv2 level 2 "{(self.group / node).relative_to(SYSFS)}"'

    def wrap(self, node: str, args: list[str]) -> list[str]:
        """``args`` run in ``node``'s cgroup (it moves there, then execs them)."""
        procs = self.group / node / "cgroup.procs"
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(procs), *args]

    def cut(self, side: Iterable[str]) -> None:
        """Cut ``side``'s nodes off from the run's other nodes (both ways) until ``heal``."""
        a = frozenset(side)
        b = frozenset(self.bits) - a
        rules = []
        for mine, theirs in ((a, b), (b, a)):
            mask = sum(self.bits[n] for n in theirs)
            rules += [f"add rule inet {self.name} in meta mark & {mask:#x} != 0 {self._match(n)} drop" for n in mine]
        _nft("\n".join(rules) + "\n")
        self.cut_now = (a, b)

    def heal(self) -> None:
        _nft(f"flush chain inet {self.name} in\n")
        self.cut_now = None

    def close(self) -> None:
        """Delete the table and the cgroups (once the run's processes are gone)."""
        subprocess.run(["nft", "delete", "table", "inet", self.name], capture_output=True, timeout=_TIMEOUT)
        for group in [*(self.group / node for node in self.bits), self.group]:
            with contextlib.suppress(OSError):  # a process still in it: delete_stale gets it later
                group.rmdir()
