"""The sample nginx configuration for many instances: valid, and right for this service.

``deploy/nginx/healthinfo.conf`` is what an operator copies to put N ``healthinfo serve``
processes behind one address (docs/operations.md, "Running many instances"). A sample that
buffers event streams, drops the WebSocket upgrade, hides client addresses, logs
``?access_token=`` or takes every instance out on a burst of errors would be copied with its
faults, so ``nginx -t`` checks it (``scripts/test`` installs nginx when missing) and the tests
below pin each property against the service's own settings. The file is read with a small
parser and nginx's location-matching rules, so each test asks what a given path gets.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import annotated_types
import pytest
import uvicorn

from healthinfo.api.problems import STATUS
from healthinfo.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "deploy" / "nginx" / "healthinfo.conf"
LOG_DIR = "/var/log/nginx/"
# The headers every proxied request needs, whichever location proxies it.
FORWARDED_HEADERS = {
    "host": "$host",
    "x-forwarded-for": "$proxy_add_x_forwarded_for",
    "x-forwarded-proto": "$scheme",
    "x-request-id": "$healthinfo_request_id",
}
SSE_PATHS = ("/v1/kits/K1/health-information/events", "/kits/K1/health-information/events")
WS_PATHS = ("/v1/kits/K1/health-information/ws", "/kits/K1/health-information/ws")
# Variables that hold the query string, where EventSource and WebSocket clients put the token.
QUERY_VARIABLES = re.compile(r"\$(request|request_uri|args|query_string|arg_\w+)\b")


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None
    parent: Directive | None = field(default=None, repr=False)

    def all(self, name: str) -> list[Directive]:
        return [d for d in self.block or [] if d.name == name]

    def one(self, name: str) -> Directive | None:
        found = self.all(name)
        assert len(found) <= 1, f"{name} appears {len(found)} times in {self.name} {self.args}"
        return found[0] if found else None

    def effective(self, name: str) -> Directive | None:
        """The directive in force here: this level's, else the nearest enclosing level's."""
        level: Directive | None = self
        while level is not None:
            found = level.one(name)
            if found is not None:
                return found
            level = level.parent
        return None


def tokens(text: str) -> list[str]:
    found = []
    for match in re.finditer(
        r"#[^\n]*|'((?:\\.|[^'\\])*)'|\"((?:\\.|[^\"\\])*)\"|[{};]|[^\s{};]+", text
    ):
        word = match.group(0)
        if word.startswith("#"):
            continue
        quoted = match.group(1) if match.group(1) is not None else match.group(2)
        found.append(quoted if quoted is not None else word)
    return found


def parse(text: str) -> Directive:
    root = Directive("root", [], [])
    stack = [root]
    words: list[str] = []
    for token in tokens(text):
        if token in {";", "{"}:
            parent = stack[-1]
            assert words, f"empty directive before {token!r}"
            directive = Directive(words[0], words[1:], [] if token == "{" else None, parent)
            assert parent.block is not None
            parent.block.append(directive)
            if token == "{":
                stack.append(directive)
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        else:
            words.append(token)
    assert len(stack) == 1, "unbalanced braces"
    assert not words, f"unterminated directive {words}"
    return root


def location_for(server: Directive, path: str) -> Directive:
    """nginx's choice: exact match; else the longest prefix if ``^~``; else the first regex
    that matches, in file order; else the longest prefix."""
    prefixes: list[tuple[int, Directive]] = []
    for location in server.all("location"):
        *modifier, pattern = location.args
        if modifier == ["="] and path == pattern:
            return location
        if modifier in ([], ["^~"]) and path.startswith(pattern):
            prefixes.append((len(pattern), location))
    longest = max(prefixes, key=lambda item: item[0])[1] if prefixes else None
    if longest is not None and longest.args[0] == "^~":
        return longest
    for location in server.all("location"):
        if len(location.args) != 2 or location.args[0] not in {"~", "~*"}:
            continue
        flags = re.IGNORECASE if location.args[0] == "~*" else 0
        if re.search(location.args[1], path, flags):
            return location
    assert longest is not None, f"no location serves {path}"
    return longest


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert match, f"not an nginx time: {value}"
    return int(match.group(1)) * units[match.group(2) or "s"]


def size_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgG])?", value)
    assert match, f"not an nginx size: {value}"
    return (
        int(match.group(1))
        * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[(match.group(2) or "").lower()]
    )


def headers_set(location: Directive) -> dict[str, str]:
    """The proxy_set_header lines in force: nginx inherits them only into a level with none."""
    level: Directive | None = location
    while level is not None:
        lines = level.all("proxy_set_header")
        if lines:
            return {d.args[0].lower(): d.args[1] for d in lines}
        level = level.parent
    return {}


def setting(level: Directive, name: str) -> list[str] | None:
    directive = level.effective(name)
    return None if directive is None else directive.args


def read_timeout(location: Directive) -> float:
    timeout = setting(location, "proxy_read_timeout")
    return seconds(timeout[0]) if timeout else 60.0  # nginx's default


def uvicorn_defaults() -> uvicorn.Config:
    """``healthinfo serve`` leaves these uvicorn settings at their defaults (cli.py)."""
    return uvicorn.Config("healthinfo.app:create_app", log_config=None)


def at_most(field_name: str) -> float:
    """The largest value a setting accepts (its ``le`` bound)."""
    for bound in Settings.model_fields[field_name].metadata:
        if isinstance(bound, annotated_types.Le):
            return float(bound.le)  # type: ignore[arg-type]
    raise AssertionError(f"{field_name} has no upper bound")


@pytest.fixture(scope="module")
def config() -> Directive:
    return parse(SAMPLE.read_text())


@pytest.fixture(scope="module")
def server(config: Directive) -> Directive:
    servers = config.all("server")
    assert len(servers) == 1
    return servers[0]


def nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    assert found, "nginx is missing: apt-get install nginx (scripts/test installs it)"
    return found


def nginx_test(sample_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` of the sample as Debian's nginx.conf includes it (inside ``http {}``), with
    every path nginx writes moved into ``tmp_path``, so it runs without root."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    include = tmp_path / "healthinfo.conf"
    include.write_text(sample_text.replace(LOG_DIR, f"{logs}/"))
    main = tmp_path / "nginx.conf"
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main.write_text(
        f"pid {tmp_path / 'nginx.pid'};\n"
        "events {}\n"
        "http {\n"
        f"{temp_paths}\n"
        f"    include {include};\n"
        "}\n"
    )
    command = [nginx(), "-t", "-q", "-p", f"{tmp_path}/", "-e", str(logs / "error.log")]
    return subprocess.run(
        [*command, "-c", str(main)], capture_output=True, text=True, timeout=60, check=False
    )


def test_nginx_accepts_the_sample_configuration(tmp_path: Path) -> None:
    result = nginx_test(SAMPLE.read_text(), tmp_path)
    assert result.returncode == 0, result.stderr


def test_nginx_check_would_catch_a_broken_sample(tmp_path: Path) -> None:
    """The check reads the included file: a typo in it must fail, or the test above proves
    nothing."""
    broken = SAMPLE.read_text().replace("proxy_buffering off;", "proxy_buffering of;", 1)
    result = nginx_test(broken, tmp_path)
    assert result.returncode != 0
    assert "proxy_buffering" in result.stderr


@pytest.mark.parametrize("path", SSE_PATHS)
def test_event_streams_are_passed_on_unbuffered_uncompressed_and_uncached(
    server: Directive, path: str
) -> None:
    location = location_for(server, path)
    assert setting(location, "proxy_pass") is not None
    assert setting(location, "proxy_buffering") == ["off"]
    assert setting(location, "proxy_cache") == ["off"]
    assert setting(location, "gzip") == ["off"]
    assert setting(location, "proxy_http_version") == ["1.1"]


@pytest.mark.parametrize("path", SSE_PATHS)
def test_an_idle_event_stream_outlives_several_missed_pings(server: Directive, path: str) -> None:
    """nginx's read timeout is the silence it allows between two reads, not a lifetime: the
    service pings at most every 15 s and ends streams itself, so the timeout must span several
    pings at the longest interval the settings allow, and no more is needed."""
    ping_at_most = at_most("realtime_ping_seconds")
    assert read_timeout(location_for(server, path)) >= 3 * ping_at_most


@pytest.mark.parametrize("path", WS_PATHS)
def test_websocket_routes_are_upgraded_and_outlive_uvicorns_pings(
    server: Directive, path: str
) -> None:
    location = location_for(server, path)
    headers = headers_set(location)
    assert headers.get("upgrade") == "$http_upgrade"
    assert headers.get("connection", "").lower() == "upgrade"
    assert setting(location, "proxy_http_version") == ["1.1"]
    ping = uvicorn_defaults().ws_ping_interval
    assert ping is not None
    assert read_timeout(location) >= 2 * ping


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "/metrics.txt"])
def test_metrics_are_not_served_through_the_balancer(server: Directive, path: str) -> None:
    location = location_for(server, path)
    assert setting(location, "proxy_pass") is None
    deny = location.one("deny")
    assert deny is not None
    assert deny.args == ["all"]
    assert location.one("allow") is None


@pytest.mark.parametrize(
    "path",
    [
        *SSE_PATHS,
        *WS_PATHS,
        "/v1/kits/K1/health-information",
        "/health/ready",
        "/v1/admin/deliveries",
    ],
)
def test_every_proxied_route_passes_the_client_address_scheme_and_request_id(
    server: Directive, path: str
) -> None:
    """uvicorn (``proxy_headers=True``) takes the client address from X-Forwarded-For and the
    scheme from X-Forwarded-Proto; per-address rate limits and the audit trail depend on it.
    A location with one proxy_set_header of its own would silently lose all of these."""
    location = location_for(server, path)
    assert setting(location, "proxy_pass") is not None
    headers = headers_set(location)
    for name, value in FORWARDED_HEADERS.items():
        assert headers.get(name) == value, f"{path}: {name} is {headers.get(name)!r}"


def test_the_balancer_keeps_every_body_the_service_accepts(server: Directive) -> None:
    limit = setting(server, "client_max_body_size")
    assert limit is not None
    assert size_bytes(limit[0]) >= Settings.model_fields["max_body_bytes"].default


def test_no_burst_of_errors_takes_every_instance_out(config: Directive, server: Directive) -> None:
    """The bench saw nginx mark both instances down after a burst of errors and answer
    54,964 requests with 502 (bench/RESULTS.md): passive checks stay off, and the service's
    own 5xx answers are never a reason to try another instance."""
    upstreams = config.all("upstream")
    assert upstreams
    for upstream in upstreams:
        servers = upstream.all("server")
        assert servers
        for entry in servers:
            assert "max_fails=0" in entry.args, f"{entry.args[0]} has passive health checks"
    next_upstream = setting(server, "proxy_next_upstream")
    assert next_upstream is not None
    assert not [case for case in next_upstream if case.startswith("http_5")]


def test_idle_upstream_connections_are_dropped_by_nginx_before_uvicorn(
    config: Directive,
) -> None:
    """A request sent on a connection uvicorn is closing fails, and nginx does not retry a
    POST or PATCH once sent: nginx must give up idle connections first."""
    uvicorn_idle = uvicorn_defaults().timeout_keep_alive
    for upstream in config.all("upstream"):
        if upstream.one("keepalive") is None:
            continue
        timeout = upstream.one("keepalive_timeout")
        assert timeout is not None, "nginx's default keepalive_timeout (60 s) outlasts uvicorn's"
        assert seconds(timeout.args[0]) < uvicorn_idle


def test_access_logs_never_record_query_strings(config: Directive, server: Directive) -> None:
    """EventSource and browser WebSockets send the bearer token as ``?access_token=``."""
    formats = {d.args[0]: " ".join(d.args[1:]) for d in config.all("log_format")}
    for name, text in formats.items():
        assert not QUERY_VARIABLES.search(text), f"log_format {name} records the query string"
    logs = server.all("access_log")
    assert logs, "without an access_log line nginx writes the combined format, $request included"
    for log in logs:
        assert log.args == ["off"] or (len(log.args) >= 2 and log.args[1] in formats), (
            f"access_log {log.args} does not use one of this file's formats"
        )


def test_nginx_own_errors_are_problem_documents_the_contract_knows(server: Directive) -> None:
    """Clients parse every error as problem+json and act on its ``code`` (api.md); an HTML 502
    from the balancer during a restart would break them."""
    status_of_code = {error.code: status for error, status in STATUS.items()}
    handled: set[int] = set()
    for error_page in server.all("error_page"):
        *statuses, target = error_page.args
        handled.update(int(status) for status in statuses if status.isdigit())
        named = [d for d in server.all("location") if d.args == [target]]
        assert named, f"error_page {error_page.args}: no location {target}"
        assert setting(named[0], "default_type") == ["application/problem+json"]
        returned = named[0].one("return")
        assert returned is not None
        status, body = returned.args
        problem = json.loads(body.removesuffix("\\n").replace("$healthinfo_request_id", "r1"))
        assert status_of_code.get(problem["code"]) == int(status) == problem["status"]
        assert problem["type"] == f"/problems/{problem['code']}"
        assert problem["requestId"] == "r1"
    assert {413, 502, 504} <= handled


def test_the_location_matcher_follows_nginx_precedence() -> None:
    """The tests above rely on it: exact, then ``^~`` prefix, then regex in order, then the
    longest prefix."""
    sample = parse(
        "server { location / {} location ^~ /static {} location ~ \\.json$ {}"
        " location = /exact.json {} location /api {} }"
    ).all("server")[0]

    def chosen(path: str) -> list[str]:
        return location_for(sample, path).args

    assert chosen("/exact.json") == ["=", "/exact.json"]
    assert chosen("/static/a.json") == ["^~", "/static"]
    assert chosen("/api/a.json") == ["~", "\\.json$"]
    assert chosen("/api/a") == ["/api"]
    assert chosen("/other") == ["/"]
