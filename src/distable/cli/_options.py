"""Options shared by the commands, and turning them into ``Node`` arguments.

Where a setting comes from, highest precedence first: the command line, an environment
variable (``DISTABLE_`` + the option's name: ``--cookie-file`` is ``DISTABLE_COOKIE_FILE``;
a repeatable option takes a space-separated list), the ``[node]`` table of the TOML file
given with ``--config`` (keys spelled like the options: ``cookie_file`` or
``cookie-file``), then the default. click implements the first three: the TOML table
becomes the command's ``default_map``, which click consults after the command line and
the environment.

Every error here is a ``CliError`` (or a click ``UsageError``) whose message is one line;
``distable.cli`` prints it as ``distable: error: ...``.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tomllib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from distable import DNSPoll, Gossip, Ring, Static, StaticQuorumRing
from distable.transport import format_node_name

from .._extras import require

F = TypeVar("F", bound=Callable[..., Any])

ENV_PREFIX = "DISTABLE_"
DEFAULT_BASENAME = "distable"
DEFAULT_PORT = 4370

#: Option names whose TOML values are paths: relative ones are read from the file's folder.
PATH_KEYS = frozenset({"cookie_file", "tls_cert", "tls_key", "tls_ca", "app_dir"})


class CliError(click.ClickException):
    """A failure the user can act on: ``distable: error: <message>`` on one line, exit
    code 1; ``hint`` is appended as is (a usage error's "see --help")."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(" ".join(message.split()))
        self.hint = hint

    def show(self, file: Any = None) -> None:
        click.echo(f"distable: error: {self.format_message()}{self.hint}", err=True)


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` that also reads ``DISTABLE_<NAME>`` from the environment."""
    name = next(d for d in decls if d.startswith("--"))[2:].replace("-", "_")
    attrs.setdefault("envvar", ENV_PREFIX + name.upper())
    attrs.setdefault("show_envvar", True)
    return click.option(*decls, **attrs)


def apply(decorators: Iterable[Callable[[F], F]]) -> Callable[[F], F]:
    """One decorator applying several, the first one outermost (as if written in order)."""
    chain = list(decorators)

    def decorate(function: F) -> F:
        for decorator in reversed(chain):
            function = decorator(function)
        return function

    return decorate


# --- addresses ------------------------------------------------------------------------------


def parse_ip(text: str, what: str, *, unspecified: bool = False) -> str:
    """``text`` as an IP address (``[v6]`` brackets allowed), normalized.

    Node names carry the address peers dial (``name@10.0.0.5:4370``), and every node must
    spell a peer's name the way the peer spells it: so distable names nodes by IP address,
    not host name (DNSPoll does the same with the addresses it resolves).

    Raises:
        click.UsageError: not an IP address, or (unless ``unspecified``) 0.0.0.0 or ::.
    """
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        raise click.UsageError(f"{what} {text!r} is not an IP address") from None
    if address.is_unspecified and not unspecified:
        raise click.UsageError(
            f"{what} {text!r} is the unspecified address: a node's address is part of its name, "
            "and peers dial it, so give the address they can reach"
        )
    return str(address)


def parse_port(text: str, what: str, *, zero: bool = False) -> int:
    """A TCP or UDP port number (``zero``: 0 too, meaning "pick a free one").

    Raises:
        click.UsageError: not a number in range.
    """
    low = 0 if zero else 1
    if not text.isdigit() or not low <= int(text) <= 65535:
        raise click.UsageError(f"{what}: {text!r} is not a port number ({low}-65535)")
    return int(text)


def parse_address(
    text: str, what: str, *, default_host: str = "127.0.0.1", unspecified: bool = True
) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) or a bare ``PORT`` (on ``default_host``).

    Raises:
        click.UsageError: not of that form.
    """
    if text.isdigit():
        return default_host, parse_port(text, what, zero=True)
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        raise click.UsageError(f"{what} {text!r} is not HOST:PORT")
    return parse_ip(host, what, unspecified=unspecified), parse_port(port, what, zero=True)


def parse_node(text: str, what: str, basename: str) -> str:
    """A peer given as ``NAME@HOST:PORT``, or ``HOST:PORT`` meaning ``BASENAME@HOST:PORT``.

    Raises:
        click.UsageError: neither form, or not an IP address.
    """
    short, at, address = text.rpartition("@")
    if at and not short:
        raise click.UsageError(f"{what} {text!r} has an empty node name")
    if at and ("@" in short or "," in short or any(c.isspace() for c in short)):
        raise click.UsageError(f"{what} {text!r} is not one NAME@HOST:PORT (repeat {what} for each node)")
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port:
        raise click.UsageError(f"{what} {text!r} is not NAME@HOST:PORT or HOST:PORT")
    return format_node_name(short or basename, parse_ip(host, what), parse_port(port, what))


def _items(text: str) -> list[str]:
    """A comma-separated list of nodes (blank entries dropped)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def check_short_name(value: str) -> str:
    """``value`` if it can be a node's short name.

    Raises:
        click.UsageError: empty, or holds an '@' or a space.
    """
    if not value or "@" in value or any(c.isspace() for c in value):
        raise click.UsageError(f"node name {value!r} must be non-empty, without '@' or spaces")
    return value


# --- the TOML file ---------------------------------------------------------------------------

#: The keys the ``[node]`` table may hold: the ``node`` command's options (set by cli._main).
NODE_KEYS: set[str] = set()


def load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--config`` callback (eager): the ``[node]`` table becomes the command's defaults.

    Keys that the running command does not take (``name`` for ``distable status``) are
    ignored there; keys no command takes are an error, so a typo does not pass silently.
    """
    if not value:
        return value
    try:
        with open(value, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value}: {exc.strerror or exc}", ctx, param) from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{value} is not valid TOML: {exc}", ctx, param) from None
    extra = sorted(set(data) - {"node"})
    if extra:
        raise click.BadParameter(f"{value}: unknown table or key {extra[0]!r} (settings go in [node])", ctx, param)
    table = data.get("node", {})
    if not isinstance(table, dict):
        raise click.BadParameter(f"{value}: 'node' must be a table ([node])", ctx, param)
    folder = os.path.dirname(os.path.abspath(value))
    params = {p.name: p for p in ctx.command.params if p.name}
    defaults: dict[str, Any] = {}
    for raw_key, item in table.items():
        key = raw_key.replace("-", "_")
        if key not in NODE_KEYS:
            raise click.BadParameter(f"{value}: unknown key {raw_key!r} in [node]", ctx, param)
        target = params.get(key)
        if target is None:
            continue
        if key in PATH_KEYS and isinstance(item, str):
            item = os.path.join(folder, os.path.expanduser(item))
        if getattr(target, "multiple", False) and not isinstance(item, list):
            item = [item]
        defaults[key] = item
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def config_option() -> Callable[[F], F]:
    return option(
        "--config",
        type=click.Path(dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=load_config,
        help="TOML file whose [node] table holds defaults for these options (flags and environment win).",
    )


# --- the cookie --------------------------------------------------------------------------------

_RANK = {
    ParameterSource.COMMANDLINE: 3,
    ParameterSource.ENVIRONMENT: 2,
    ParameterSource.DEFAULT_MAP: 1,
}


def cookie(ctx: click.Context, opts: dict[str, Any]) -> bytes:
    """The cluster cookie, from ``--cookie`` or ``--cookie-file`` (whichever comes from the
    higher-precedence source: a flag beats the environment, which beats the TOML file).

    Raises:
        click.UsageError: neither is given, or both from the same source.
        CliError: the cookie file cannot be read, or is empty.
    """
    text: str | None = opts.get("cookie")
    path: str | None = opts.get("cookie_file")
    if text and path:
        rank_text = _RANK.get(ctx.get_parameter_source("cookie") or ParameterSource.DEFAULT, 0)
        rank_path = _RANK.get(ctx.get_parameter_source("cookie_file") or ParameterSource.DEFAULT, 0)
        if rank_text == rank_path:
            raise click.UsageError("give --cookie or --cookie-file, not both")
        if rank_text > rank_path:
            path = None
        else:
            text = None
    if text:
        return text.encode()
    if not path:
        raise click.UsageError(
            "no cookie: give --cookie-file PATH (or DISTABLE_COOKIE_FILE, or DISTABLE_COOKIE, "
            "or cookie_file in the --config file); every node of a cluster shares it"
        )
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
    except OSError as exc:
        raise CliError(f"cannot read the cookie file {path}: {exc.strerror or exc}") from None
    if not secret:
        raise CliError(f"the cookie file {path} is empty")
    return secret


def auth_options() -> Callable[[F], F]:
    return apply(
        [
            option("--cookie", metavar="SECRET", help="The cluster's shared secret (prefer --cookie-file)."),
            option(
                "--cookie-file",
                metavar="PATH",
                help="A file holding the cookie (surrounding whitespace ignored).",
            ),
            option("--tls-cert", metavar="PEM", help="This node's TLS certificate (chain); enables TLS."),
            option("--tls-key", metavar="PEM", help="The private key of --tls-cert."),
            option(
                "--tls-ca",
                metavar="PEM",
                help="CA certificates that sign every node's certificate; peers must then present one "
                "(default: the system's CAs, and peers need no certificate).",
            ),
        ]
    )


# --- TLS -----------------------------------------------------------------------------------------


def tls(opts: dict[str, Any]) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """The ``(server, client)`` TLS contexts of ``--tls-cert/--tls-key/--tls-ca``, or None.

    Both directions use this node's certificate; a peer's certificate must name the IP
    address in its node name (hostname checking stays on).

    Raises:
        click.UsageError: a certificate without its key, or the reverse, or a CA alone.
        CliError: a file cannot be read or does not hold what it should.
    """
    cert, key, ca = opts.get("tls_cert"), opts.get("tls_key"), opts.get("tls_ca")
    if not (cert or key or ca):
        return None
    if not (cert and key):
        raise click.UsageError("TLS needs both --tls-cert and --tls-key (and usually --tls-ca)")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        server.load_cert_chain(cert, key)
        client.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot load the TLS certificate {cert} with key {key}: {_ssl_text(exc)}") from None
    try:
        if ca:
            server.load_verify_locations(ca)
            server.verify_mode = ssl.CERT_REQUIRED
            client.load_verify_locations(ca)
        else:
            client.load_default_certs()
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot load the TLS CA certificates {ca}: {_ssl_text(exc)}") from None
    return server, client


def _ssl_text(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)


# --- discovery -----------------------------------------------------------------------------------


def discovery_options() -> Callable[[F], F]:
    return apply(
        [
            option(
                "--cluster",
                type=click.Choice(["gossip", "static", "dns", "none"]),
                help="How to find the other nodes. Default: static with --static, dns with --dns-query, "
                "none with only --connect, else gossip.",
            ),
            option(
                "--static",
                multiple=True,
                metavar="NODE",
                help="A node of a static cluster: NAME@HOST:PORT, or HOST:PORT for BASENAME@HOST:PORT; repeatable, "
                "or several separated by commas.",
            ),
            option(
                "--connect",
                multiple=True,
                metavar="NODE",
                help="A node to keep a link with from the start (as --static); repeatable.",
            ),
            option(
                "--basename",
                default=DEFAULT_BASENAME,
                show_default=True,
                help="The node name that a bare HOST:PORT in --static or --connect stands for.",
            ),
            option("--gossip-if", default="127.0.0.1", show_default=True, help="Interface address for gossip."),
            option("--gossip-group", default="239.255.43.92", show_default=True, help="Multicast group of the gossip."),
            option("--gossip-port", type=int, default=45892, show_default=True, help="UDP port of the gossip."),
            option("--gossip-broadcast", is_flag=True, help="Broadcast instead of multicast (networks without it)."),
            option("--dns-query", metavar="NAME", help="DNS name resolving to every node (a headless service)."),
            option(
                "--dns-port",
                type=int,
                default=DEFAULT_PORT,
                show_default=True,
                help="The TCP port of the nodes --dns-query finds.",
            ),
            option(
                "--dns-basename",
                default=DEFAULT_BASENAME,
                show_default=True,
                help="The name of the nodes --dns-query finds (NAME@ADDRESS:PORT).",
            ),
            option(
                "--dns-server",
                multiple=True,
                metavar="IP[:PORT]",
                help="A nameserver to ask instead of the system's; repeatable.",
            ),
        ]
    )


def discovery(opts: dict[str, Any]) -> tuple[str, list[Any], list[str]]:
    """The kind of discovery, the ``cluster=`` strategies and the ``connect=`` node names.

    Raises:
        click.UsageError: a malformed node or address.
        click.UsageError: options that do not go together.
        MissingExtra: DNS discovery without the dns extra (dnspython).
    """
    basename = check_short_name(opts["basename"])
    # "a@h:1,b@h:2" is a list: people write one (each node on its own is the other way).
    static = [parse_node(t, "--static", basename) for text in opts["static"] for t in _items(text)]
    connect = [parse_node(t, "--connect", basename) for text in opts["connect"] for t in _items(text)]
    kind = opts["cluster"]
    if kind is None:
        kind = "static" if static else "dns" if opts["dns_query"] else "none" if connect else "gossip"
    if static and kind != "static":
        raise click.UsageError(f"--static goes with --cluster static, not --cluster {kind}")
    if opts["dns_query"] and kind != "dns":
        raise click.UsageError(f"--dns-query goes with --cluster dns, not --cluster {kind}")
    if kind == "static":
        if not static:
            raise click.UsageError("--cluster static needs at least one --static NODE")
        return kind, [Static(static)], connect
    if kind == "gossip":
        gossip = Gossip(
            multicast_addr=parse_ip(opts["gossip_group"], "--gossip-group"),
            port=parse_port(str(opts["gossip_port"]), "--gossip-port"),
            if_addr=parse_ip(opts["gossip_if"], "--gossip-if"),
            broadcast_only=opts["gossip_broadcast"],
        )
        return kind, [gossip], connect
    if kind == "dns":
        return kind, [_dns(opts)], connect
    return kind, [], connect


def _dns(opts: dict[str, Any]) -> DNSPoll:
    if not opts["dns_query"]:
        raise click.UsageError("--cluster dns needs --dns-query NAME")
    require("dns", "--cluster dns")
    servers = [_nameserver(text) for text in opts["dns_server"]]
    ports = {port for _, port in servers if port is not None}
    if len(ports) > 1:
        raise click.UsageError("every --dns-server must use the same port")
    return DNSPoll(
        opts["dns_query"],
        port=parse_port(str(opts["dns_port"]), "--dns-port"),
        basename=check_short_name(opts["dns_basename"]),
        nameservers=[host for host, _ in servers],
        dns_port=ports.pop() if ports else 53,
    )


def _nameserver(text: str) -> tuple[str, int | None]:
    try:
        return parse_ip(text, "--dns-server"), None
    except click.UsageError:
        return parse_address(text, "--dns-server", unspecified=False)


def strategy(opts: dict[str, Any]) -> Ring | StaticQuorumRing:
    """The ``strategy=`` of ``--strategy`` and ``--quorum``.

    Raises:
        click.UsageError: a quorum without ``--strategy quorum``, or the reverse.
    """
    quorum: int | None = opts["quorum"]
    if opts["strategy"] == "quorum":
        if quorum is None:
            raise click.UsageError("--strategy quorum needs --quorum N (a strict majority of the cluster's size)")
        return StaticQuorumRing(quorum)
    if quorum is not None:
        raise click.UsageError("--quorum goes with --strategy quorum")
    return Ring()
