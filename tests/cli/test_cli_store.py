"""``distable node --store``: real ``distable node`` processes with a real redis-server on
127.0.0.1. Both nodes of a cluster are SIGKILLed and started again from nothing with the
same store: every name is back, with its last acknowledged checkpoint delivered to
``end_handoff`` first."""

from __future__ import annotations

from pathlib import Path

from distable import MembershipConfig, Node, Static
from distable.testing import eventually
from tests._redis import redis_server

from .conftest import COOKIE, TIMEOUT, Processes, free_ports

FACTORY = "tests.registry.apps:Counter"


async def test_a_whole_cluster_sigkilled_comes_back_with_every_name_and_its_state(
    processes: Processes, tmp_path: Path
) -> None:
    with redis_server(tmp_path / "redis", persistent=True) as redis:
        port_a, port_b = free_ports(2)
        static = ["--static", f"a@127.0.0.1:{port_a}", "--static", f"b@127.0.0.1:{port_b}"]
        common = ["--cookie", COOKIE, *static, "--membership", "local", "--log-level", "warning"]
        common += ["--store", redis.url, "--store-timeout", "1"]
        nodes = [
            await processes.start("a", "--port", str(port_a), *common),
            await processes.start("b", "--port", str(port_b), *common),
        ]
        servers = sorted(n.name for n in nodes)
        async with Node(
            "probe", cookie=COOKIE, role="client", cluster=Static(servers), membership=MembershipConfig.local()
        ) as client:
            await eventually(lambda: client.placement().nodes == servers, timeout=TIMEOUT)
            counts = {}
            for i in range(4):
                name = ("room", i)
                await client.register(name, FACTORY, key=name)
                for _ in range(i + 2):
                    await client.call(name, "incr")
                counts[name] = await client.call(name, ("checkpoint", True))

            for node in nodes:
                node.proc.kill()
            for node in nodes:
                await node.wait()
            await eventually(lambda: not client.nodes(), timeout=TIMEOUT)

            await processes.start("a", "--port", str(port_a), *common)
            await processes.start("b", "--port", str(port_b), *common)

            async def back() -> bool:
                for name, count in counts.items():
                    if client.whereis(name) is None:
                        return False
                    if (await client.call(name, "get"))[0] != count:
                        return False
                    if (await client.call(name, "handled"))[0] != ("end_handoff", count):
                        return False
                return True

            await eventually(back, timeout=TIMEOUT, interval=0.2, message="the names did not come back")
