"""Prometheus metrics and a live dashboard for a node, over HTTP (aiohttp).

    server = await start_web(node, "127.0.0.1", 8080)   # /metrics, / and /api/...
    print(server.url)
    ...
    await server.close()

Only the public API and ``statistics()`` snapshots are used (docs/design.md, "Architecture":
the dashboard and metrics sit on top of every layer). Imported on demand: ``import distable`` does
not load aiohttp or prometheus_client, the ``web`` extra (``pip install 'distable[web]'``);
importing this package without them raises ``MissingExtra``, which says so.
"""

from .._extras import require

require("web", "distable.web (the dashboard and /metrics)")

from ._server import WebServer, start_web  # noqa: E402 (after the check that names the extra)

__all__ = ["WebServer", "start_web"]
