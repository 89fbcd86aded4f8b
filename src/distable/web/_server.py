"""The HTTP server of one node: Prometheus metrics, and a live dashboard of the cluster.

Routes (GET only; every other method gets 405):

``/metrics``
    Prometheus text format, from this node's own registry (see ``_metrics``).
``/``
    The dashboard page (``static/``: plain HTML, CSS and JS, no build step).
``/api/cluster``
    JSON: every node's statistics and the ring (``cluster_snapshot``); ``?timeout=``
    seconds each node has to answer (default 2).
``/api/events``
    JSON: the events of every node after ``?since=`` (a JSON cursor; ``poll_events``).
``/api/events/stream``
    The same as Server-Sent Events: the server polls every node every 0.5 s and sends
    what is new; ``?since=`` or the ``Last-Event-ID`` header resumes.
``/api/history``
    JSON: the charts' series over the last 10 minutes, one sample a second (``History``
    in ``_history``); ``?since=`` a sample time returns only the samples after it.

The dashboard routes exist only with ``dashboard=True``. A bad query parameter gets a
400 with a JSON ``{"error": ...}`` saying what is expected; a node that does not answer
is listed with its error. Nothing here can change the cluster.

Tasks: aiohttp runs each request in its own task on the node's event loop. The server
owns one task of its own, which counts the node's events for the metrics, and with the
dashboard a second one, which samples the cluster into the charts' history once a
second (whether a page is open or not: a page opened late still shows the last 10
minutes); it also keeps track of the open event streams. ``close()`` ends the streams,
cancels and awaits its tasks, and closes the listening socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.resources
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ._cluster import BadRequest, cluster_snapshot, parse_cursor, poll_events
from ._history import SAMPLE_INTERVAL, History, parse_since
from ._metrics import EventMetrics, NodeCollector

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger("distable.web")

#: How often an event stream asks every node for its new events.
POLL_INTERVAL = 0.5
#: How long each node has to answer a poll of an event stream.
STREAM_TIMEOUT = 1.0
#: A comment line goes out after this many quiet polls, so a dead client is noticed.
KEEPALIVE_POLLS = 20
#: Open event streams at most (each polls every node twice a second).
MAX_STREAMS = 16
#: Bounds of ``/api/cluster?timeout=``.
MAX_TIMEOUT = 30.0
DEFAULT_TIMEOUT = 2.0
#: How long each node has to answer a sample of the charts' history.
SAMPLE_TIMEOUT = 1.0

_STATIC = {
    "/": ("index.html", "text/html"),
    "/static/app.js": ("app.js", "text/javascript"),
    "/static/style.css": ("style.css", "text/css"),
    "/static/uPlot.iife.min.js": ("uPlot.iife.min.js", "text/javascript"),
    "/static/uPlot.min.css": ("uPlot.min.css", "text/css"),
}
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}

_json_dumps = functools.partial(json.dumps, default=str)


def _only(request: web.Request, *allowed: str) -> None:
    """Refuse query parameters other than ``allowed``, and any given twice."""
    for key in request.query:
        if key not in allowed:
            takes = ", ".join(allowed) if allowed else "no parameters"
            raise BadRequest(f"unknown query parameter {key!r}: {request.path} takes {takes}")
        if len(request.query.getall(key)) > 1:
            raise BadRequest(f"query parameter {key!r} given more than once")


def _timeout(request: web.Request) -> float:
    text = request.query.get("timeout")
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= MAX_TIMEOUT:  # also refuses nan and inf
        raise BadRequest(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}], not {text!r}")
    return value


def _format_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class WebServer:
    """One node's metrics and dashboard server; made by ``start_web``.

    Attributes:
        url: ``http://host:port`` with the port actually bound (no trailing slash).
        node: the node it serves.
        registry: its own prometheus_client ``CollectorRegistry``.
        history: the charts' samples of the cluster (filled only with the dashboard).

    Use ``await server.close()`` (or ``async with await start_web(...)``) to stop it;
    closing twice is harmless. It must be closed on the node's event loop.
    """

    def __init__(self, node: Node, *, dashboard: bool) -> None:
        self.node = node
        self.dashboard = dashboard
        self.url = ""
        self.registry = CollectorRegistry()
        self._events = node.events(maxsize=10_000)
        self._event_metrics = EventMetrics(self.registry, node.name)
        self.registry.register(NodeCollector(node, self._events))
        self._pages: dict[str, tuple[bytes, str]] = {}
        self._runner: web.AppRunner | None = None
        self.history = History()
        self._task: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self._closing = asyncio.Event()
        self._closed = False

    async def _start(self, host: str, port: int) -> None:
        app = web.Application(middlewares=[self._bad_requests])
        app.on_response_prepare.append(self._add_headers)
        app.router.add_get("/metrics", self._metrics)
        if self.dashboard:
            static = importlib.resources.files(__package__) / "static"
            for path, (filename, content_type) in _STATIC.items():
                self._pages[path] = ((static / filename).read_bytes(), content_type)
                app.router.add_get(path, self._page)
            app.router.add_get("/api/cluster", self._cluster)
            app.router.add_get("/api/events", self._poll_events)
            app.router.add_get("/api/events/stream", self._event_stream)
            app.router.add_get("/api/history", self._history)
        # No access log: the page polls every second. Streams end on close (see
        # _event_stream); shutdown_timeout bounds a request still waiting on a node.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                raise OSError(exc.errno, f"cannot serve HTTP on {host}:{port}: {exc.strerror}") from exc
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0][1] if runner.addresses else port
        self.url = _format_url(host, bound)
        self._task = asyncio.get_running_loop().create_task(
            self._count_events(), name=f"distable-web-events {self.url}"
        )
        if self.dashboard:
            self._sampler = asyncio.get_running_loop().create_task(
                self._sample(), name=f"distable-web-history {self.url}"
            )
        what = "dashboard at " + self.url + "/ and metrics at " if self.dashboard else "metrics at "
        log.info("%s: %s%s/metrics", self.node.name, what, self.url)

    async def close(self) -> None:
        """Stop serving: end the event streams, cancel the event task, close the socket."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        tasks = [t for t in (self._task, self._sampler) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._events.close()
        if self._streams:  # each ends within one poll once it sees _closing
            await asyncio.wait(set(self._streams), timeout=STREAM_TIMEOUT + POLL_INTERVAL + 1.0)
        if self._runner is not None:
            await self._runner.cleanup()
            log.info("%s: stopped serving %s", self.node.name, self.url)

    async def __aenter__(self) -> WebServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<WebServer {self.url or 'not started'} of {self.node.name}>"

    # --- tasks --------------------------------------------------------------------------------

    async def _count_events(self) -> None:
        """The server's own task: feeds every node event to the event metrics until closed."""
        async for event in self._events:
            self._event_metrics.observe(event)

    async def _sample(self) -> None:
        """The dashboard's second task: one ``cluster_snapshot`` into ``history`` every
        ``SAMPLE_INTERVAL`` (no catching up after a slow round) until closed."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        failing = False
        while True:
            try:
                self.history.record(await cluster_snapshot(self.node, SAMPLE_TIMEOUT))
                failing = False
            except Exception:  # a bug: say so once, keep the charts going
                if not failing:
                    log.exception("%s: cannot sample the cluster for the dashboard's charts", self.node.name)
                failing = True
            due = max(due + SAMPLE_INTERVAL, loop.time())
            await asyncio.sleep(due - loop.time())

    # --- request handling (each in its request's task) ----------------------------------------

    @web.middleware
    async def _bad_requests(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return response

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        for key, value in _HEADERS.items():
            response.headers.setdefault(key, value)

    async def _metrics(self, request: web.Request) -> web.Response:
        # Query parameters (Prometheus may send some) are ignored: there is one exposition.
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _page(self, request: web.Request) -> web.Response:
        body, content_type = self._pages[request.path]
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    async def _cluster(self, request: web.Request) -> web.Response:
        _only(request, "timeout")
        snapshot = await cluster_snapshot(self.node, _timeout(request))
        return web.json_response(snapshot, dumps=_json_dumps)

    async def _poll_events(self, request: web.Request) -> web.Response:
        _only(request, "since")
        since = parse_cursor(request.query.get("since"))
        batch = await poll_events(self.node, since, DEFAULT_TIMEOUT)
        return web.json_response(batch, dumps=_json_dumps)

    async def _history(self, request: web.Request) -> web.Response:
        _only(request, "since")
        since = parse_since(request.query.get("since"))
        return web.json_response(self.history.as_json(since), dumps=_json_dumps)

    async def _event_stream(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: one ``data:`` line of ``poll_events`` output per batch with
        something new, its cursor as the event ``id`` (so a reconnecting ``EventSource``
        resumes where it was). Ends when the client goes away or the server closes."""
        _only(request, "since")
        since = parse_cursor(request.query.get("since") or request.headers.get("Last-Event-ID"))
        if len(self._streams) >= MAX_STREAMS or self._closing.is_set():
            return web.json_response({"error": f"too many event streams (at most {MAX_STREAMS})"}, status=503)
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            errors: dict[str, str] = {}
            quiet = 0
            while not self._closing.is_set():
                transport = request.transport
                if transport is None or transport.is_closing():
                    break  # the client went away
                batch = await poll_events(self.node, since, STREAM_TIMEOUT)
                since = batch["since"]
                if batch["events"] or batch["skipped"] or batch["errors"] != errors:
                    errors = batch["errors"]
                    cursor = json.dumps(since, separators=(",", ":"))
                    await response.write(f"id: {cursor}\ndata: {_json_dumps(batch)}\n\n".encode())
                    quiet = 0
                elif quiet >= KEEPALIVE_POLLS:
                    await response.write(b": keep-alive\n\n")
                    quiet = 0
                else:
                    quiet += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), POLL_INTERVAL)
        except ConnectionError:
            pass  # the client went away mid-write
        finally:
            self._streams.discard(task)
        return response


async def start_web(node: Node, host: str = "127.0.0.1", port: int = 8080, *, dashboard: bool = True) -> WebServer:
    """Serve ``node``'s Prometheus metrics (``/metrics``) and, with ``dashboard``, a live
    page of the whole cluster (``/``) and its JSON API (``/api/...``), on ``host:port``.

    Call it on the node's event loop once the node is started. ``port=0`` picks a free
    port: ``server.url`` has the real one. Loopback by default: the dashboard lists
    every node's name, so expose it to a network only on purpose. Logs one line with
    the URL.

    Raises:
        RuntimeError: the node is not started.
        ValueError: ``port`` is not in 0..65535.
        OSError: the address cannot be bound (in use, not local...).
    """
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535, not {port!r}")
    node.registry  # noqa: B018 -- raises RuntimeError if the node is not started
    server = WebServer(node, dashboard=dashboard)
    try:
        await server._start(host, port)
    except BaseException:
        await server.close()
        raise
    return server
