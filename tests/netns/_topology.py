"""Throwaway multi-host networks built from Linux network namespaces (root, iproute2, nftables).

Layout of one network (every name starts with the run's prefix ``dt-<pid>-<hex>``)::

    <prefix>-sw        the switch: bridge br0 (multicast snooping off, so multicast
                       floods to every port), ports p1 .. pN, no address at all
    <prefix>-h1 ..     one namespace per host: lo, and eth0 (a veth whose other end is
                       the switch port p<i>) holding 10.251.X.<i>/24

Rules (the test suite's network rules, docs/design.md):
    * Addresses live only inside these namespaces: the root namespace has no interface,
      address or route in 10.251.X.0/24, so nothing a test sends can leave the machine.
      Veth pairs are created directly inside their namespaces (``ip link add ... netns``),
      so not even an interface name appears in the root namespace.
    * Every namespace is deleted by ``close()``; ``delete_stale()`` removes namespaces
      left behind by a run whose process is gone (the pid is part of the prefix, so a run
      going on at the same time is never touched).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass

PREFIX = "dt-"
_STALE = re.compile(r"^dt-(\d+)-[0-9a-f]+-")
_COMMAND_TIMEOUT = 15.0


BLOCK_RULES = """
table inet dtblock {{
    chain in {{ type filter hook input priority 0; policy accept; iifname "{iface}" drop; }}
    chain out {{ type filter hook output priority 0; policy accept; oifname "{iface}" drop; }}
}}
"""


class TopologyError(RuntimeError):
    """An ``ip`` or ``nft`` command failed."""


def missing_requirements() -> str | None:
    """Why netns tests cannot run here (not root, a tool missing), or None if they can."""
    if os.name != "posix" or os.geteuid() != 0:
        return "netns tests need root (network namespaces, veth pairs, nftables)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"netns tests need '{tool}' (Debian package {package}; 'python3 tasks.py test' installs it as root)"
    return None


def _check(cmd: list[str], result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        raise TopologyError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")


def run(*cmd: str, stdin: str | None = None, check: bool = True) -> str:
    """Run one command (blocking; for fixtures). Returns its stdout."""
    argv = list(cmd)
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False)
    if check:
        _check(argv, result)
    return result.stdout


async def arun(*cmd: str, stdin: str | None = None) -> str:
    """Run one command from a test's event loop. Returns its stdout."""
    argv = list(cmd)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), _COMMAND_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise TopologyError(f"{' '.join(argv)} did not finish within {_COMMAND_TIMEOUT} s") from None
    assert proc.returncode is not None
    _check(argv, subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode()))
    return out.decode()


def list_namespaces() -> list[str]:
    """Names of every network namespace (``ip netns list`` prints ``name (id: n)``)."""
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def delete_stale() -> list[str]:
    """Delete ``dt-<pid>-...`` namespaces whose creating process is gone; return their names."""
    stale = []
    for name in list_namespaces():
        m = _STALE.match(name)
        if m and not pid_alive(int(m.group(1))):
            run("ip", "netns", "del", name, check=False)
            stale.append(name)
    return stale


def new_prefix() -> str:
    """A namespace-name prefix unique to this process and call: ``dt-<pid>-<hex>``."""
    return f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Host:
    """One host: a namespace with one address on the switch."""

    index: int
    netns: str
    addr: str
    port: str  # the switch port this host is plugged into
    iface: str = "eth0"


class Namespaces:
    """Namespaces created under one prefix; ``close()`` deletes every one of them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.created: list[str] = []

    def add(self, suffix: str) -> str:
        name = f"{self.prefix}-{suffix}"
        run("ip", "netns", "add", name)
        self.created.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def close(self) -> None:
        errors = []
        for name in reversed(self.created):
            try:
                run("ip", "netns", "del", name)
            except (TopologyError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        self.created.clear()
        left = [n for n in list_namespaces() if n.startswith(self.prefix + "-")]
        for name in left:
            run("ip", "netns", "del", name, check=False)
        if errors or left:
            raise TopologyError(f"cleanup of {self.prefix}-*: {errors or ''} left over: {left}")


class Lan(Namespaces):
    """Hosts on one switch: see the module docstring. Build with ``Lan(prefix, subnet)``."""

    def __init__(self, prefix: str, subnet: int) -> None:
        super().__init__(prefix)
        if not 1 <= subnet <= 254:
            raise ValueError("subnet is the X of 10.251.X.0/24")
        self.subnet = subnet
        self.hosts: list[Host] = []
        self.switch = ""

    def build(self, hosts: int) -> list[Host]:
        """Create the switch and ``hosts`` hosts plugged into it (all links up)."""
        self.switch = self.add("sw")
        sw = self.switch
        run("ip", "-n", sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        run("ip", "-n", sw, "link", "set", "br0", "up")
        for i in range(1, hosts + 1):
            ns = self.add(f"h{i}")
            host = Host(i, ns, f"10.251.{self.subnet}.{i}", f"p{i}")
            veth = f"ip link add name {host.iface} netns {ns} type veth peer name {host.port} netns {sw}"
            run(*veth.split())
            run("ip", "-n", sw, "link", "set", host.port, "master", "br0")
            run("ip", "-n", sw, "link", "set", host.port, "up")
            run("ip", "-n", ns, "addr", "add", f"{host.addr}/24", "dev", host.iface)
            run("ip", "-n", ns, "link", "set", host.iface, "up")
            self.hosts.append(host)
        return self.hosts

    async def unplug(self, host: Host) -> None:
        """Pull the host's cable: its switch port goes down (its own config is untouched)."""
        await arun("ip", "-n", self.switch, "link", "set", host.port, "down")

    async def plug(self, host: Host) -> None:
        """Put the cable back."""
        await arun("ip", "-n", self.switch, "link", "set", host.port, "up")

    async def block(self, host: Host) -> None:
        """Cut the host off with nftables, inside its namespace: drop all in and out of its link."""
        await self.nft(host, BLOCK_RULES.format(iface=host.iface))

    async def unblock(self, host: Host) -> None:
        """Remove what ``block`` added."""
        await self.nft(host, "delete table inet dtblock")

    async def nft(self, host: Host, script: str) -> None:
        """Load an nftables script inside the host's namespace (``nft -f -``)."""
        await arun("ip", "netns", "exec", host.netns, "nft", "-f", "-", stdin=script)

    async def nft_flush(self, host: Host) -> None:
        """Remove every nftables rule inside the host's namespace."""
        await arun("ip", "netns", "exec", host.netns, "nft", "flush", "ruleset")

    async def nft_list(self, host: Host) -> str:
        """The nftables ruleset inside the host's namespace, with its counters."""
        return await arun("ip", "netns", "exec", host.netns, "nft", "list", "ruleset")
