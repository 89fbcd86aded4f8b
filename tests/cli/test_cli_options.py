"""The ``distable`` command in-process (click's CliRunner): parsing, where settings come
from (flag > environment > TOML file), and errors, each one line with no traceback.

Commands that would run a node get a fake ``Node`` and ``run_node`` (see ``captured``),
except the few error tests that need a real listening socket or a real app import; those
run a real node on loopback with ``--cluster none``.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import textwrap
from pathlib import Path
from typing import Any

import click
import pytest
import trustme
from click.testing import CliRunner, Result

import distable
from distable import Gossip, Static, StaticQuorumRing
from distable.cli import _bench, _main, _options, cli

ROOT = Path(__file__).resolve().parents[2]


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def assert_error(result: Result, text: str, code: int = 1) -> str:
    """The command failed with ``code`` and exactly one line on stderr, holding ``text``."""
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("distable: error: "), lines[0]
    assert text in lines[0], lines[0]
    assert result.exit_code == code, (result.exit_code, lines[0])
    return lines[0]


class Captured:
    """What the ``node`` command would have run: the ``Node`` keyword arguments and more."""

    def __init__(self) -> None:
        self.node: dict[str, Any] = {}
        self.apps: list[str] = []
        self.web: list[Any] = []
        self.join_timeout: float | None = None
        self.expect: int | None = None
        self.logging: tuple[str, str] | None = None


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Captured:
    """Replace the node (and logging setup) of the ``node`` command with recorders."""
    seen = Captured()

    def fake_node(**kwargs: Any) -> dict[str, Any]:
        seen.node = kwargs
        return kwargs

    async def fake_run(
        node: Any, apps: list[str], web: list[Any], cluster: str, join_timeout: float, expect: int | None
    ) -> None:
        seen.apps = list(apps)
        seen.web = list(web)
        seen.join_timeout = join_timeout
        seen.expect = expect

    def fake_logging(level: str, fmt: str) -> None:
        seen.logging = (level, fmt)

    monkeypatch.setattr(_main, "Node", fake_node)
    monkeypatch.setattr(_main, "run_node", fake_run)
    monkeypatch.setattr(_main, "configure_logging", fake_logging)
    monkeypatch.setattr(sys, "path", list(sys.path))  # --app-dir inserts into it
    for name in [n for n in os.environ if n.startswith("DISTABLE_")]:
        monkeypatch.delenv(name)
    return seen


@pytest.fixture
def quiet_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """No log handler pointing at CliRunner's (soon closed) stderr."""
    monkeypatch.setattr(_main, "configure_logging", lambda level, fmt: None)
    monkeypatch.setattr(sys, "path", list(sys.path))


# --- basics -------------------------------------------------------------------------------------


def test_version() -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"distable {distable.__version__}"


def test_help_lists_the_commands() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    for command in ("node", "status", "whereis", "registered", "top", "demo", "bench"):
        assert command in result.stdout


def test_node_defaults(captured: Captured) -> None:
    result = invoke(["node", "--cookie", "c"])
    assert result.exit_code == 0, result.output
    node = captured.node
    assert (node["name"], node["host"], node["port"], node["role"]) == ("distable", "127.0.0.1", 4370, "server")
    assert node["cookie"] == b"c"
    assert node["tls"] is None
    assert node["cluster"] == [Gossip()]  # loopback multicast unless told otherwise
    assert node["connect"] == []
    assert captured.logging == ("info", "text")
    assert captured.apps == []
    assert captured.web == []
    assert captured.join_timeout == 3.0
    assert captured.expect is None  # settled by a quiet moment, or the whole --static list
    assert node["registry"].factories is None  # any importable factory: the cookie is the gate
    assert node["transport"].unix_sockets  # nodes on one host link over Unix domain sockets


def test_node_options(captured: Captured, tmp_path: Path) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("  s3cret\n")
    args = ["node", "--name", "a", "--host", "10.0.0.5", "--port", "5000", "--cookie-file", str(cookie)]
    args += ["--static", "10.0.0.6:4370", "--static", "b@[fd00::1]:4371", "--strategy", "quorum", "--quorum", "2"]
    args += ["--role", "client", "--app", "pkg.mod", "--app", "pkg.mod:start", "--app-dir", str(tmp_path)]
    args += ["--dashboard", "0.0.0.0:8080", "--metrics", "9100", "--log-level", "DEBUG", "--log-format", "json"]
    args += ["--join-timeout", "0.5", "--expect", "3", "--allow-factory", "pkg.*", "--allow-factory", "other:Worker"]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    node = captured.node
    assert (node["name"], node["host"], node["port"], node["role"]) == ("a", "10.0.0.5", 5000, "client")
    assert node["cookie"] == b"s3cret"
    assert node["cluster"] == [Static(["distable@10.0.0.6:4370", "b@[fd00::1]:4371"])]
    assert node["strategy"] == StaticQuorumRing(2)
    assert captured.apps == ["pkg.mod", "pkg.mod:start"]
    assert captured.join_timeout == 0.5
    assert captured.expect == 3
    assert node["registry"].factories == ("pkg.*", "other:Worker")
    web = [(w.host, w.port, w.dashboard) for w in captured.web]
    assert web == [("0.0.0.0", 8080, True), ("127.0.0.1", 9100, False)]
    assert captured.logging == ("debug", "json")
    assert sys.path[0] == str(tmp_path)


def test_store_by_flag_or_environment(captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(["node", "--cookie", "c"])
    assert result.exit_code == 0, result.output
    assert "store" not in captured.node  # none by default
    result = invoke(["node", "--cookie", "c", "--store", "redis://127.0.0.1:6400/2", "--store-timeout", "0.5"])
    assert result.exit_code == 0, result.output
    assert (captured.node["store"], captured.node["store_timeout"]) == ("redis://127.0.0.1:6400/2", 0.5)
    monkeypatch.setenv("DISTABLE_STORE", "unix:///run/redis.sock?db=1")
    result = invoke(["node", "--cookie", "c"])
    assert result.exit_code == 0, result.output
    assert (captured.node["store"], captured.node["store_timeout"]) == ("unix:///run/redis.sock?db=1", 2.0)


def test_precedence_flag_over_environment_over_toml(captured: Captured, tmp_path: Path) -> None:
    config = tmp_path / "distable.toml"
    config.write_text(
        textwrap.dedent(
            """
            [node]
            name = "from-toml"
            port = 1111
            host = "127.0.0.3"
            cookie-file = "cookie"
            static = "10.0.0.9:4370"
            log_level = "warning"
            """
        )
    )
    (tmp_path / "cookie").write_text("toml-cookie")
    env = {"DISTABLE_PORT": "2222", "DISTABLE_HOST": "127.0.0.2"}

    result = invoke(["node", "--config", str(config)])
    assert result.exit_code == 0, result.output
    node = captured.node
    assert (node["name"], node["port"], node["host"]) == ("from-toml", 1111, "127.0.0.3")
    assert node["cookie"] == b"toml-cookie"  # cookie_file relative to the TOML file's folder
    assert node["cluster"] == [Static(["distable@10.0.0.9:4370"])]
    assert captured.logging == ("warning", "text")

    result = invoke(["node", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    assert (captured.node["name"], captured.node["port"], captured.node["host"]) == ("from-toml", 2222, "127.0.0.2")

    result = invoke(["node", "--config", str(config), "--port", "3333"], env=env)
    assert result.exit_code == 0, result.output
    assert (captured.node["port"], captured.node["host"]) == (3333, "127.0.0.2")

    # The config file itself can come from the environment.
    result = invoke(["node"], env={"DISTABLE_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert captured.node["name"] == "from-toml"


def test_unix_sockets_off_by_flag_environment_or_toml(captured: Captured, tmp_path: Path) -> None:
    config = tmp_path / "distable.toml"
    config.write_text("[node]\nunix_sockets = false\n")
    for args, env in [
        (["--no-unix-sockets"], {}),
        ([], {"DISTABLE_UNIX_SOCKETS": "0"}),
        ([], {"DISTABLE_UNIX_SOCKETS": "false"}),
        (["--config", str(config)], {}),
    ]:
        result = invoke(["node", "--cookie", "c", *args], env=env)
        assert result.exit_code == 0, result.output
        assert not captured.node["transport"].unix_sockets, (args, env)
    result = invoke(["node", "--cookie", "c", "--config", str(config), "--unix-sockets"])
    assert result.exit_code == 0, result.output
    assert captured.node["transport"].unix_sockets  # the flag wins over the file


def test_cookie_sources(captured: Captured, tmp_path: Path) -> None:
    path = tmp_path / "cookie"
    path.write_text("from-file")
    result = invoke(["node"], env={"DISTABLE_COOKIE": "from-env"})
    assert result.exit_code == 0, result.output
    assert captured.node["cookie"] == b"from-env"
    # A flag beats the environment, even for the other one of --cookie / --cookie-file.
    result = invoke(["node", "--cookie-file", str(path)], env={"DISTABLE_COOKIE": "from-env"})
    assert result.exit_code == 0, result.output
    assert captured.node["cookie"] == b"from-file"
    result = invoke(["node", "--cookie", "from-flag"], env={"DISTABLE_COOKIE_FILE": str(path)})
    assert result.exit_code == 0, result.output
    assert captured.node["cookie"] == b"from-flag"


def test_environment_lists_and_discovery(captured: Captured) -> None:
    env = {"DISTABLE_COOKIE": "c", "DISTABLE_STATIC": "127.0.0.1:1 n@127.0.0.1:2", "DISTABLE_BASENAME": "x"}
    result = invoke(["node"], env=env)
    assert result.exit_code == 0, result.output
    assert captured.node["cluster"] == [Static(["x@127.0.0.1:1", "n@127.0.0.1:2"])]
    result = invoke(["node", "--cookie", "c", "--connect", "127.0.0.1:7"])
    assert result.exit_code == 0, result.output
    assert captured.node["cluster"] == []
    assert captured.node["connect"] == ["distable@127.0.0.1:7"]
    args = ["node", "--cookie", "c", "--gossip-if", "127.0.0.1", "--gossip-group", "239.1.2.3", "--gossip-port", "5000"]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert captured.node["cluster"] == [Gossip(multicast_addr="239.1.2.3", port=5000, if_addr="127.0.0.1")]


def test_dns_discovery(captured: Captured) -> None:
    args = ["node", "--cookie", "c", "--dns-query", "nodes.example", "--dns-port", "4444", "--dns-basename", "n"]
    result = invoke([*args, "--dns-server", "127.0.0.1:5353"])
    assert result.exit_code == 0, result.output
    (dns,) = captured.node["cluster"]
    assert (dns.query, dns.port, dns.basename, list(dns.nameservers), dns.dns_port) == (
        "nodes.example",
        4444,
        "n",
        ["127.0.0.1"],
        5353,
    )


# --- errors: one line, no traceback ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "text", "code"),
    [
        (["node", "--cookie", "c", "--host", "nonsense"], "--host 'nonsense' is not an IP address", 2),
        (["node", "--cookie", "c", "--host", "0.0.0.0"], "unspecified address", 2),
        (["node", "--cookie", "c", "--port", "70000"], "is not a port number", 2),
        (["node", "--cookie", "c", "--static", "foo"], "--static 'foo' is not NAME@HOST:PORT or HOST:PORT", 2),
        (["node", "--cookie", "c", "--static", "a@nowhere:1"], "is not an IP address", 2),
        (["node", "--cookie", "c", "--static", "a@127.0.0.1:1 b@127.0.0.1:2"], "is not one NAME@HOST:PORT", 2),
        (["node", "--cookie", "c", "--cluster", "static"], "--cluster static needs at least one --static", 2),
        (["node", "--cookie", "c", "--cluster", "gossip", "--static", "127.0.0.1:1"], "--static goes with", 2),
        (["node", "--cookie", "c", "--quorum", "2"], "--quorum goes with --strategy quorum", 2),
        (["node", "--cookie", "c", "--strategy", "quorum"], "--strategy quorum needs --quorum", 2),
        (["node", "--cookie", "c", "--name", "a@b"], "node name 'a@b'", 2),
        (["node", "--cookie", "c", "--app", "not a module"], "is not of the form", 2),
        (["node", "--cookie", "c", "--dashboard", "here"], "--dashboard 'here' is not HOST:PORT", 2),
        (["node", "--cookie", "c", "--expect", "0"], "Invalid value for '--expect'", 2),
        (["node", "--cookie", "c", "--store", "bogus://x"], "--store: store 'bogus://x': unknown kind of store", 1),
        (["node", "--cookie", "c", "--store", "redis://h:x/0"], "the port is not a number", 1),
        (["node", "--cookie", "c", "--tls-cert", "x.pem"], "TLS needs both --tls-cert and --tls-key", 2),
        (["node", "--cookie", "c", "--no-such-option"], "No such option", 2),
        (["node"], "no cookie", 2),
        (["node", "--cookie", "c", "--cookie-file", "f"], "give --cookie or --cookie-file, not both", 2),
        (["node", "--cookie-file", "/nonexistent/cookie"], "cannot read the cookie file /nonexistent/cookie", 1),
        (["node", "--cookie", "c", "--config", "/nonexistent.toml"], "cannot read /nonexistent.toml", 2),
        (["whereis", "--cookie", "c"], "give a NAME or --json-name", 2),
        (["whereis", "x", "--json-name", "1", "--cookie", "c"], "give a NAME or --json-name", 2),
        (["whereis", "--json-name", "[1,", "--cookie", "c"], "is not JSON", 2),
        (["bench", "--bench-dir", "/nonexistent"], "no run_all.py in --bench-dir", 1),
    ],
)
def test_usage_errors(captured: Captured, args: list[str], text: str, code: int) -> None:
    assert_error(invoke(args), text, code)
    assert captured.node == {}


def test_empty_cookie_file(captured: Captured, tmp_path: Path) -> None:
    (tmp_path / "cookie").write_text("\n")
    assert_error(invoke(["node", "--cookie-file", str(tmp_path / "cookie")]), "is empty")


def test_bad_toml(captured: Captured, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[node\nname = 1\n")
    assert_error(invoke(["node", "--config", str(config)]), "is not valid TOML", 2)
    config.write_text('[node]\nnmae = "a"\n')
    assert_error(invoke(["node", "--config", str(config)]), "unknown key 'nmae' in [node]", 2)
    config.write_text('name = "a"\n')
    assert_error(invoke(["node", "--config", str(config)]), "unknown table or key 'name'", 2)
    config.write_text("[node]\nport = 'many'\n")
    assert_error(invoke(["node", "--config", str(config), "--cookie", "c"]), "'many' is not a valid integer", 2)


def test_query_commands_take_the_toml_discovery_keys(tmp_path: Path, quiet_logging: None) -> None:
    """A node's config file serves the queries too: they take its cookie and discovery
    keys, and ignore the node-only ones (name, port, app...)."""
    config = tmp_path / "distable.toml"
    config.write_text('[node]\nname = "a"\nport = 1\ncookie = "c"\nconnect = ["127.0.0.1:1"]\napp = ["x"]\n')
    result = invoke(["status", "--config", str(config), "--timeout", "0.2"])
    # the file's cookie and connect list were taken: the query dialed 127.0.0.1:1
    assert_error(result, "cannot reach distable@127.0.0.1:1: connection refused at 127.0.0.1:1 (nothing listens there)")


def test_unreachable_cluster(quiet_logging: None) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    for command in (["status"], ["whereis", "x"], ["registered"]):
        result = invoke([*command, "--cookie", "c", "--connect", f"127.0.0.1:{port}", "--timeout", "0.3"])
        # said at once, and which: nothing listens at that address (not a bare time-out)
        assert_error(result, f"connection refused at 127.0.0.1:{port} (nothing listens there)")


def test_port_in_use(quiet_logging: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke(["node", "--cookie", "c", "--port", str(port), "--cluster", "none"])
    assert_error(result, f"cannot listen on 127.0.0.1:{port}: Address already in use")


@pytest.mark.parametrize(
    ("app", "text"),
    [
        ("no_such_module_here", "cannot import app module 'no_such_module_here': ModuleNotFoundError"),
        ("tests.cli.broken_app", "cannot import app module 'tests.cli.broken_app': RuntimeError: this app is broken"),
        ("tests.cli.cliapp:nothing", "app module 'tests.cli.cliapp' has no 'nothing'"),
        ("tests.cli.cliapp:fail", "app 'tests.cli.cliapp:fail' failed: RuntimeError: cannot start on distable@"),
        ("tests.cli.cliapp:COUNT", "app 'tests.cli.cliapp:COUNT' is not callable"),
        # the same app on every node, each registering the same names: which name, and the fix
        ("tests.cli.cliapp:twice", "AlreadyRegistered: 'once' already registered to <pid distable@"),
        ("tests.cli.cliapp:twice", "every node runs its --app functions: to start a name once from all of them"),
    ],
)
def test_app_that_fails(quiet_logging: None, app: str, text: str) -> None:
    args = ["node", "--cookie", "c", "--port", "0", "--cluster", "none", "--app", app, "--app-dir", str(ROOT)]
    assert_error(invoke(args), text)


def test_unexpected_exception_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(_bench, "find_run_all", broken)
    monkeypatch.delenv("DISTABLE_TRACEBACK", raising=False)
    assert_error(invoke(["bench"]), "unexpected ZeroDivisionError: oops")


# --- TLS ------------------------------------------------------------------------------------------


def test_tls_contexts(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "node.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    pem, ca_pem = str(tmp_path / "node.pem"), str(tmp_path / "ca.pem")
    contexts = _options.tls({"tls_cert": pem, "tls_key": pem, "tls_ca": ca_pem})
    assert contexts is not None
    server, client = contexts
    assert server.verify_mode == ssl.CERT_REQUIRED  # with a CA, peers must show a certificate
    assert client.check_hostname
    assert _options.tls({}) is None
    with pytest.raises(_options.CliError, match="cannot load the TLS certificate"):
        _options.tls({"tls_cert": ca_pem, "tls_key": ca_pem})  # a CA certificate, no key
    with pytest.raises(_options.CliError, match="cannot load the TLS CA certificates /nonexistent"):
        _options.tls({"tls_cert": pem, "tls_key": pem, "tls_ca": "/nonexistent"})
    with pytest.raises(click.UsageError):
        _options.tls({"tls_ca": ca_pem})


# --- demo and bench -----------------------------------------------------------------------------------


def test_demo_forwards_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    import distable.demo

    seen: list[tuple[list[str] | None, str]] = []

    def fake_main(argv: list[str] | None = None, prog: str = "") -> int:
        seen.append((argv, prog))
        return 3

    monkeypatch.setattr(distable.demo, "main", fake_main)
    result = invoke(["demo", "--workers", "10", "--help", "extra"])
    assert seen == [(["--workers", "10", "--help", "extra"], "distable demo")]
    assert result.exit_code == 3


FAKE_RUN_ALL = """
import json
import sys

TARGETS = {"fast": (10.0, "min"), "slow": (1.0, "max")}


def main():
    print("# fake.py", file=sys.stderr)
    print("progress noise", file=sys.stderr)
    if "--fail" in sys.argv:
        print("fake.py failed with exit code 3", file=sys.stderr)
        raise SystemExit(3)
    for name, value, unit in (("fast", 12.5, "op/s"), ("slow", 2.0, "s"), ("other", 7.0, "us")):
        print(json.dumps({"name": name, "value": value, "unit": unit, "config": {"argv": sys.argv[1:]}}))


if __name__ == "__main__":
    main()
"""


def test_bench_table_and_json(tmp_path: Path) -> None:
    (tmp_path / "run_all.py").write_text(FAKE_RUN_ALL)
    result = invoke(["bench", "--bench-dir", str(tmp_path), "--json", "--quick", "--repeats", "2", "a.py"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert [(f["name"], f["target"], f["met"]) for f in figures] == [
        ("fast", ">= 10.0", True),
        ("slow", "<= 1.0", False),
        ("other", "", None),
    ]
    assert figures[0]["config"]["argv"] == ["--quick", "--repeats", "2", "a.py"]
    assert "# fake.py" in result.stderr  # run_all's progress lines are shown...
    assert "progress noise" not in result.stderr  # ...the scripts' chatter only with -v

    result = invoke(["bench", "--bench-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "fast" in line or "slow" in line]
    assert "yes" in lines[0]
    assert "NO" in lines[1]


def test_bench_failure(tmp_path: Path) -> None:
    (tmp_path / "run_all.py").write_text(FAKE_RUN_ALL)
    result = invoke(["bench", "--bench-dir", str(tmp_path), "--fail"])
    # "--fail" is not an option of bench: a usage error, before anything runs
    assert_error(result, "No such option", 2)
    result = invoke(["bench", "--bench-dir", str(tmp_path), "--", "--fail"])
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "distable: error: the benchmarks failed (exit code 3): fake.py failed with exit code 3"
    assert result.exit_code == 1


def test_bench_finds_the_repository_bench_folder() -> None:
    assert _bench.find_run_all(None) == ROOT / "bench" / "run_all.py"


def test_a_comma_separated_static_list_is_several_nodes() -> None:
    """'a@h:1,b@h:2,c@h:3' was taken as one node named 'a@h:1,b@h:2,c' (a new user's run:
    three nodes each formed a cluster of their own, every name registered three times)."""
    opts = {"basename": "distable", "cluster": None, "connect": (), "dns_query": None}
    kind, strategies, _ = _options.discovery({**opts, "static": ("a@127.0.0.1:1,b@127.0.0.1:2", "c@127.0.0.1:3,")})
    assert kind == "static"
    assert strategies[0].nodes == ["a@127.0.0.1:1", "b@127.0.0.1:2", "c@127.0.0.1:3"]
