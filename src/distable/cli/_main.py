"""The ``distable`` command's group and subcommands (click).

Errors are one line on stderr, ``distable: error: ...``, with exit code 1 (a failure:
port in use, unreadable cookie file, unreachable cluster, an extra not installed) or 2
(a usage error: unknown option, malformed address), and never a traceback:
``_OneLineGroup`` turns every click exception, ``MissingExtra`` and any unexpected
exception into such a line (``DISTABLE_TRACEBACK=1`` lets unexpected exceptions through,
for bug reports).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

import distable
from distable import MissingExtra, Node, run

from .._apps import AppError, check_ref, one_line
from .._extras import require
from .._log import configure_logging
from ..store import parse_store_url
from . import _bench, _options, _query
from ._node import WebEndpoint, run_node
from ._options import CliError, apply, option

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ["debug", "info", "warning", "error", "critical"]


class _CliUsageError(CliError):
    """A usage error (exit code 2)."""

    exit_code = 2


class _OneLineGroup(click.Group):
    """A group whose errors, and those of its subcommands, are ``CliError`` s."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CliError, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # click's own handling (BrokenPipeError: `distable registered | head`)
        except click.ClickException as exc:
            raise _one_line(exc) from None
        except MissingExtra as exc:  # names the extra to install
            raise CliError(str(exc)) from None
        except Exception as exc:
            if os.environ.get("DISTABLE_TRACEBACK"):
                raise
            raise CliError(f"unexpected {one_line(exc)} (DISTABLE_TRACEBACK=1 shows where)") from None


def _one_line(exc: click.ClickException) -> CliError:
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return _CliUsageError(exc.format_message(), hint)
    return CliError(exc.format_message())


def _run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on the node's event loop (uvloop when installed); Ctrl-C is exit 130."""
    try:
        result: T = run(main)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    return result


def setup_logging(level: str, fmt: str) -> None:
    """Log lines at ``level`` and above to stderr, as ``fmt`` ("text" or "json")."""
    configure_logging(level, fmt)


def logging_options(default: str) -> Callable[[F], F]:
    return apply(
        [
            option(
                "--log-level",
                type=click.Choice(LOG_LEVELS, case_sensitive=False),
                default=default,
                show_default=True,
                help="Log lines at this level and above go to stderr.",
            ),
            option(
                "--log-format",
                type=click.Choice(["text", "json"]),
                default="text",
                show_default=True,
                help="Log lines as text, or one JSON object each.",
            ),
        ]
    )


@click.group(cls=_OneLineGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(distable.__version__, "-V", "--version", prog_name="distable", message="%(prog)s %(version)s")
def cli() -> None:
    """distable: a distributed process registry for Python.

    Run a node with `distable node`, ask a running cluster with `distable status`,
    `distable whereis NAME` and `distable registered`, watch it live with `distable top`. Every option also reads an
    environment variable, DISTABLE_ + its name (--cookie-file: DISTABLE_COOKIE_FILE), and
    `--config FILE` reads the [node] table of a TOML file; flags win over the
    environment, which wins over the file.
    """


# --- node ------------------------------------------------------------------------------------


@cli.command()
@_options.config_option()
@option(
    "--name",
    default=_options.DEFAULT_BASENAME,
    show_default=True,
    help="The node's short name; its full name is NAME@HOST:PORT.",
)
@option("--host", default="127.0.0.1", show_default=True, help="The IP address to listen on, which peers dial.")
@option(
    "--port",
    type=int,
    default=_options.DEFAULT_PORT,
    show_default=True,
    help="The TCP port to listen on (0: any free port).",
)
@_options.auth_options()
@_options.discovery_options()
@option(
    "--strategy",
    type=click.Choice(["ring", "quorum"]),
    default="ring",
    show_default=True,
    help="How names are placed; the same on every node.",
)
@option("--quorum", type=click.IntRange(min=1), help="With --strategy quorum: the nodes needed to own names.")
@option(
    "--role",
    type=click.Choice(["server", "client"]),
    default="server",
    show_default=True,
    help="A server hosts registered names; a client only uses the cluster.",
)
@option(
    "--membership",
    type=click.Choice(["lan", "local"]),
    default="lan",
    show_default=True,
    help="Failure-detection preset: lan (seconds) or local (one machine, sub-second).",
)
@option(
    "--unix-sockets/--no-unix-sockets",
    envvar="DISTABLE_UNIX_SOCKETS",
    default=True,
    show_default=True,
    help="Also listen on a Unix domain socket, and link with nodes on this host over theirs (faster than "
    "loopback TCP); off: every link uses TCP.",
)
@option(
    "--busy-poll",
    envvar="DISTABLE_BUSY_POLL",
    type=click.FloatRange(0, 0.1),
    default=distable.TransportConfig().busy_poll,
    show_default=True,
    metavar="SECONDS",
    help="How long the node keeps polling its links after traffic before it sleeps (fewer slow wake-ups "
    "on virtual machines, at the price of that much CPU after each burst); 0: sleep at once.",
)
@option("--allow", multiple=True, metavar="GLOB", help="Only link with nodes whose name matches; repeatable.")
@option(
    "--allow-factory",
    multiple=True,
    metavar="GLOB",
    help="Only run factories whose reference ('module:attribute') matches, e.g. 'myapp.*'; repeatable. "
    "Default: any importable one (the cookie is then the only gate).",
)
@option("--deny", multiple=True, metavar="GLOB", help="Never link with nodes whose name matches; repeatable.")
@option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds a graceful leave may take to hand every process off.",
)
@option(
    "--app",
    multiple=True,
    metavar="MODULE[:FUNCTION]",
    help="Import MODULE once the node is up; with :FUNCTION also await FUNCTION(node). Repeatable, in order.",
)
@option(
    "--join-timeout",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="With --app: seconds to wait, at most, for the cluster to settle (see --expect) before the apps' "
    "functions run; registering earlier makes duplicates of names that already run. 0: do not wait.",
)
@option(
    "--expect",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --app: the apps' functions run once N server nodes (this one included) are up and synced. "
    "Default: once every --static node is, or no new node has appeared for a second.",
)
@option(
    "--app-dir",
    default=".",
    show_default=True,
    metavar="DIR",
    help="Folder put first on the module path, so --app finds modules there.",
)
@option(
    "--store",
    metavar="URL",
    help="A durable store (redis://HOST:PORT/DB, rediss://, unix:///PATH?db=N): names registered through a "
    "factory and their last checkpoints are written to it, and a cluster started from nothing starts them "
    "again with their state. Needs distable[redis].",
)
@option(
    "--store-timeout",
    type=click.FloatRange(min=0.001),
    default=2.0,
    show_default=True,
    help="With --store: seconds a store operation may take before registrations and checkpoints fail.",
)
@option("--dashboard", metavar="HOST:PORT", help="Serve the web dashboard (and /metrics) there.")
@option("--metrics", metavar="HOST:PORT", help="Serve Prometheus metrics (/metrics) there.")
@logging_options("info")
@click.pass_context
def node(ctx: click.Context, /, **opts: Any) -> None:
    """Run a node until SIGTERM or SIGINT, then leave gracefully (exit 0).

    The node imports the --app modules and binds its ports (a failure exits 1 before
    any other node sees it), joins the cluster, waits until the cluster it sees has
    settled (--expect, --join-timeout), runs the apps' functions, prints one line when
    it is up and serves until a signal. Leaving hands every registered process off to its new
    owner, with its state, before the node exits; later signals are ignored (SIGKILL
    quits at once, and the other nodes then restart its names).

    \b
    Example:
      distable node --name a --host 10.0.0.5 --cookie-file /etc/distable/cookie \\
          --static b@10.0.0.6:4370 --static c@10.0.0.7:4370 --app myapp.main:start
    """
    settings = _node_settings(ctx, opts)
    setup_logging(opts["log_level"], opts["log_format"])
    app_dir = os.path.abspath(opts["app_dir"])
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    web = [
        _web_endpoint("--dashboard", opts["dashboard"], dashboard=True),
        _web_endpoint("--metrics", opts["metrics"], dashboard=False),
    ]
    kind = settings.pop("kind")
    endpoints = [w for w in web if w is not None]
    _run(run_node(Node(**settings), opts["app"], endpoints, kind, opts["join_timeout"], opts["expect"]))


def _node_settings(ctx: click.Context, opts: dict[str, Any]) -> dict[str, Any]:
    """``Node`` keyword arguments of the ``node`` command's options, and ``kind``: the
    discovery's name (gossip, static, dns or none)."""
    name = _options.check_short_name(opts["name"])
    host = _options.parse_ip(opts["host"], "--host")
    port = _options.parse_port(str(opts["port"]), "--port", zero=True)
    for ref in opts["app"]:
        try:
            check_ref(ref)
        except AppError as exc:
            raise click.UsageError(str(exc)) from None
    kind, cluster, connect = _options.discovery(opts)
    return {
        "kind": kind,
        "name": name,
        "host": host,
        "port": port,
        "cookie": _options.cookie(ctx, opts),
        "tls": _options.tls(opts),
        "role": opts["role"],
        "cluster": cluster,
        "connect": connect,
        "membership": distable.MembershipConfig.local()
        if opts["membership"] == "local"
        else distable.MembershipConfig.lan(),
        "allow": list(opts["allow"]),
        "deny": list(opts["deny"]),
        "strategy": _options.strategy(opts),
        "drain_timeout": opts["drain_timeout"],
        "registry": distable.RegistryConfig(factories=tuple(opts["allow_factory"]) or None),
        "transport": distable.TransportConfig(unix_sockets=opts["unix_sockets"], busy_poll=opts["busy_poll"]),
        **_store(opts),
    }


def _store(opts: dict[str, Any]) -> dict[str, Any]:
    """``store``/``store_timeout`` of ``--store``, checked (a one-line ``CliError``)."""
    url = opts["store"]
    if not url:
        return {}
    try:
        parse_store_url(url)
    except ValueError as exc:
        raise CliError(f"--store: {exc}") from None
    require("redis", "--store")
    return {"store": url, "store_timeout": opts["store_timeout"]}


def _web_endpoint(what: str, text: str | None, *, dashboard: bool) -> WebEndpoint | None:
    if not text:
        return None
    require("web", what)
    host, port = _options.parse_address(text, what)
    return WebEndpoint(what, host, port, dashboard)


_options.NODE_KEYS.update(p.name for p in node.params if p.name and p.name != "config")


# --- queries -----------------------------------------------------------------------------------


def query_options() -> Callable[[F], F]:
    return apply(
        [
            _options.config_option(),
            _options.auth_options(),
            _options.discovery_options(),
            option(
                "--host",
                default="127.0.0.1",
                show_default=True,
                help="The IP address this query's client node listens on (one the cluster can reach).",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=0.1),
                default=5.0,
                show_default=True,
                help="Seconds to wait for the cluster to answer.",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
            logging_options("error"),
        ]
    )


def _client_settings(ctx: click.Context, opts: dict[str, Any]) -> dict[str, Any]:
    _, cluster, connect = _options.discovery(opts)
    return {
        "host": _options.parse_ip(opts["host"], "--host"),
        "cookie": _options.cookie(ctx, opts),
        "tls": _options.tls(opts),
        "cluster": cluster,
        "connect": connect,
    }


@cli.command()
@query_options()
@click.pass_context
def status(ctx: click.Context, /, **opts: Any) -> None:
    """One row per node of a running cluster: role, uptime, processes, names, links.

    The command joins the cluster as a client node (authenticated with the cookie, found
    with the same discovery options as the nodes), waits until its view is complete
    (at most --timeout), answers, and leaves.
    """
    settings = _client_settings(ctx, opts)
    setup_logging(opts["log_level"], opts["log_format"])

    async def main() -> tuple[list[dict[str, Any]], int]:
        async with _query.cluster_view(settings, opts["timeout"]) as view:
            return await _query.status_rows(view), view.node.statistics().registry.names

    rows, names = _run(main())
    _query.print_status(rows, names, opts["as_json"])


@cli.command()
@click.argument("name", required=False)
@click.option(
    "--json-name",
    metavar="JSON",
    help="The name as JSON, for names that are not strings: '[\"worker\", 1]' is the tuple ('worker', 1).",
)
@query_options()
@click.pass_context
def whereis(ctx: click.Context, /, name: str | None, json_name: str | None, **opts: Any) -> None:
    """The pid registered as NAME, and its node (exit code 1 if NAME is not registered).

    NAME on the command line is a string; for another name (an int, a tuple) give it as
    JSON with --json-name, where lists stand for tuples.
    """
    if (name is None) == (json_name is None):
        raise click.UsageError("give a NAME or --json-name JSON (one of them)")
    key: Any = name if json_name is None else _query.name_from_json(json_name)
    settings = _client_settings(ctx, opts)
    setup_logging(opts["log_level"], opts["log_format"])

    async def main() -> distable.Pid | None:
        async with _query.cluster_view(settings, opts["timeout"]) as view:
            return view.node.whereis(key)

    pid = _run(main())
    if opts["as_json"]:
        found = (
            _query.entry(key, pid) if pid is not None else {"name": _query.name_json(key), "pid": None, "node": None}
        )
        _query.print_json(found)
        if pid is None:
            ctx.exit(1)
        return
    if pid is None:
        hint = "" if json_name is not None else " (a NAME given here is a string: use --json-name for other names)"
        raise CliError(f"{key!r} is not registered{hint}")
    _query.print_entries([(key, pid)])


@cli.command()
@click.option("--limit", type=click.IntRange(min=0), help="Show at most this many names (sorted).")
@query_options()
@click.pass_context
def registered(ctx: click.Context, /, limit: int | None, **opts: Any) -> None:
    """Every registered name, its pid and its node, sorted by name."""
    settings = _client_settings(ctx, opts)
    setup_logging(opts["log_level"], opts["log_format"])

    async def main() -> list[tuple[Any, distable.Pid]]:
        async with _query.cluster_view(settings, opts["timeout"]) as view:
            return view.node.registered()

    entries = _query.sort_names(_run(main()))
    shown = entries if limit is None else entries[:limit]
    if opts["as_json"]:
        _query.print_json([_query.entry(name, pid) for name, pid in shown])
        return
    caption = f"{len(entries)} name(s)" + (f", {len(shown)} shown" if len(shown) < len(entries) else "")
    _query.print_entries(shown, caption=caption)


@cli.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between two refreshes (and between the two snapshots of --once).",
)
@click.option("--once", is_flag=True, help="Print one snapshot and exit (rates over --interval).")
@query_options()
@click.pass_context
def top(ctx: click.Context, /, interval: float, once: bool, **opts: Any) -> None:
    """A live view of a running cluster, like top: nodes, names, rates, lag, events.

    One row per server node: its status (up, suspect, unreachable, failed, left), the
    names it hosts, its processes, the handoffs it starts and the names it restarts per
    second, its event-loop lag and uptime; below, the latest events of every node. In a
    terminal, keys sort by a column (n node, s status, m names, p processes, h handoffs,
    r restarts, l lag, u uptime; again: the other way), space or z pauses, q quits.
    When stdout is not a terminal: one table per --interval (--json: one JSON object per
    line). It connects as `distable status` does, with the same options.
    """
    require("cli", "distable top")  # the live view is rich's: say which extra brings it
    from . import _top  # loaded for this command only

    settings = _client_settings(ctx, opts)
    setup_logging(opts["log_level"], opts["log_format"])
    keys = _top.keyboard() if _top.live_output(once, opts["as_json"]) else None
    as_json = opts["as_json"]
    with _top.cbreak(keys):
        _run(_top.main(settings, timeout=opts["timeout"], interval=interval, once=once, as_json=as_json, keys=keys))


# --- demo and bench --------------------------------------------------------------------------


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def demo(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Run the live demo (a cluster on this machine); `distable demo --help` for its options."""
    if importlib.util.find_spec("distable.demo") is None:
        raise CliError("the demo is not part of this installation of distable")
    module = importlib.import_module("distable.demo")
    code = module.main(list(args), prog="distable demo")
    ctx.exit(int(code or 0))


@cli.command()
@click.option("--quick", is_flag=True, help="Smaller workloads (a smoke run).")
@click.option("--repeats", type=click.IntRange(min=1), help="Runs per figure (default: each script's own).")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the JSON figures to this file.")
@click.option(
    "--bench-dir",
    type=click.Path(file_okay=False),
    help="The folder holding run_all.py (default: bench/ above the package or the current directory).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON instead of a table.")
@click.option("-v", "--verbose", is_flag=True, help="Show every benchmark's progress on stderr.")
@click.argument("scripts", nargs=-1)
def bench(
    quick: bool,
    repeats: int | None,
    out: str | None,
    bench_dir: str | None,
    as_json: bool,
    verbose: bool,
    scripts: tuple[str, ...],
) -> None:
    """Run the benchmarks (bench/run_all.py) and show each figure beside its target.

    SCRIPTS are file names in bench/ (runtime.py, registry.py...); default: all of them.
    """
    script = _bench.find_run_all(bench_dir)
    args = ["--quick"] if quick else []
    if repeats is not None:
        args += ["--repeats", str(repeats)]
    if out is not None:
        args += ["--out", os.path.abspath(out)]
    figures = _bench.run(script, [*args, *scripts], verbose)
    _bench.show(_bench.rows(figures, _bench.targets(script)), as_json)


def main(argv: list[str] | None = None) -> None:
    """The ``distable`` console script."""
    cli.main(args=argv, prog_name="distable")


__all__ = ["cli", "main"]
