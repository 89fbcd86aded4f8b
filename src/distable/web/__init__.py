"""Prometheus metrics and a live dashboard for a node, over HTTP (aiohttp).

    server = await start_web(node, "127.0.0.1", 8080)   # /metrics, / and /api/...
    print(server.url)
    ...
    await server.close()

Only the public API and ``statistics()`` snapshots are used (docs/design.md, "Architecture":
the dashboard and metrics sit on top of every layer). Imported on demand: ``import distable`` does
not load aiohttp or prometheus_client.
"""

from ._server import WebServer, start_web

__all__ = ["WebServer", "start_web"]
