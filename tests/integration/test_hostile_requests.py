"""Request data never breaks a response header, tested on the wire of a real ``healthinfo serve``.

uvicorn drops the connection when a response header holds a control character, which an
in-process ASGI client would not show; so these tests speak raw HTTP/1.1 over a socket to the
live server and parse exactly what comes back. Every header the service builds from request data
is covered: the legacy routes' ``Link`` (from the path), ``X-Request-ID`` (echoed when sane),
``Content-Disposition`` of an export (from the kit id), the ``ETag`` of a 412 (never the
client's ``If-Match``) and the ``Location`` of a published questionnaire (from the id and
version in its body, JSON or FHIR). The service sends no ``Content-Location``; ``Retry-After``
and ``RateLimit-*`` are numbers the limiter computes.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from tests.support.legacy import DEPRECATION
from tests.support.live import LIVE_ENV, STARTUP_SECONDS
from tests.support.server import ServerProcess
from tests.support.tokens import token

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [\x20-\x7e]*")
# RFC 9110 §5: a token, a colon, then visible ASCII, spaces and tabs only.
HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\t\x20-\x7e]*)")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LEGACY_PREFIXES = ("/kits/", "/questionnaires/", "/admin/")


@dataclass
class Raw:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name]
        assert len(values) <= 1, (name, values)
        return values[0] if values else None

    def problem(self) -> dict[str, object]:
        assert self.header("content-type") == "application/problem+json"
        body: dict[str, object] = json.loads(self.body)
        assert body["status"] == self.status
        return body


def exchange(port: int, lines: list[bytes], body: bytes = b"") -> Raw:
    """Send one request (``Connection: close``) and parse the whole answer strictly."""
    if body:
        lines = [*lines, f"Content-Length: {len(body)}".encode()]
    head = b"\r\n".join([*lines, b"Host: 127.0.0.1", b"Connection: close"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received, "the server closed the connection without a response"
    top, _, rest = received.partition(b"\r\n\r\n")
    status_line, *header_lines = top.split(b"\r\n")
    matched = STATUS_LINE.fullmatch(status_line)
    assert matched, status_line
    headers = []
    for line in header_lines:
        header = HEADER_LINE.fullmatch(line)
        assert header, f"malformed header line {line!r}"
        headers.append((header[1].decode(), header[2].decode().rstrip(" \t")))
    raw = Raw(int(matched[1]), headers, rest)
    length = raw.header("content-length")
    assert length is None or int(length) == len(rest)
    return raw


def bearer(user: str) -> bytes:
    return f"Authorization: Bearer {token(user)}".encode()


def get(server: ServerProcess, target: str, *extra: bytes, user: str = "hostile-user") -> Raw:
    return exchange(server.port, [f"GET {target} HTTP/1.1".encode(), bearer(user), *extra])


@pytest.fixture
def server(live_server: ServerProcess) -> ServerProcess:
    return live_server


HOSTILE_PATHS = [
    ("/kits/K%1F1/health-information", 422),
    ("/kits/K%0d%0a1/health-information", 422),
    ("/kits/K%0d%0aSet-Cookie:%20a=b/health-information", 422),
    ("/kits/K%001/health-information/history", 422),
    ("/kits/K%7F/members", 422),
    ("/kits/K%3E%3B%20rel%3D%22evil%22/health-information", 422),
    ("/kits/%E2%80%A8%C3%BC/export", 422),
    ("/kits/%0d%0a", 404),
    ("/questionnaires/%0d%0a", 422),
    ("/admin/%1F%1F", 404),
    ("/v1/kits/K%0d%0a1/health-information", 422),
    ("/v1/kits/K%0d%0a1/export", 422),
    ("/v1/kits/%1F/health-information/events", 422),
    ("/problems/%0d%0a", 422),
    ("/nothing/%0d%0a%1F", 404),
]


@pytest.mark.parametrize(("target", "status"), HOSTILE_PATHS)
def test_a_path_with_control_characters_gets_a_well_formed_problem(
    server: ServerProcess, target: str, status: int
) -> None:
    response = get(server, target)
    assert response.status == status
    code = {404: "not-found", 422: "validation-failed"}[status]
    assert response.problem()["code"] == code
    assert response.header("set-cookie") is None
    assert response.header("content-disposition") is None


@pytest.mark.parametrize(
    "target", [target for target, _ in HOSTILE_PATHS if target.startswith(LEGACY_PREFIXES)]
)
def test_a_legacy_successor_link_is_the_path_percent_encoded(
    server: ServerProcess, target: str
) -> None:
    response = get(server, target)
    link = response.header("link")
    assert link is not None
    reference = quote("/v1" + unquote(target), safe="/:@!$&'()*+,;=-._~")
    assert link == f'<{reference}>; rel="successor-version"'
    assert response.header("deprecation") == DEPRECATION


def test_a_legacy_success_links_its_successor_unchanged(server: ServerProcess) -> None:
    response = get(server, "/questionnaires/health-information")
    assert response.status == 200
    assert (
        response.header("link")
        == '</v1/questionnaires/health-information>; rel="successor-version"'
    )


@pytest.mark.parametrize(
    "offered",
    [b"<script>alert(1)</script>", b'a", b=c', b"\xff\xfe", b"x" * 129],
    ids=["markup", "quote-comma", "obs-text", "too-long"],
)
def test_an_insane_request_id_is_replaced_never_echoed(
    server: ServerProcess, offered: bytes
) -> None:
    response = get(server, "/v1/questionnaires/health-information", b"X-Request-ID: " + offered)
    assert response.status == 200
    assert UUID.fullmatch(response.header("x-request-id") or "")


def test_a_sane_request_id_is_echoed_exactly(server: ServerProcess) -> None:
    response = get(server, "/v1/no-such-route", b"X-Request-ID: req.1:a_B-2")
    assert response.status == 404
    assert response.header("x-request-id") == "req.1:a_B-2"
    assert response.problem()["requestId"] == "req.1:a_B-2"


def put_answers(server: ServerProcess, kit_id: str, user: str) -> Raw:
    return exchange(
        server.port,
        [
            f"PUT /v1/kits/{kit_id}/health-information HTTP/1.1".encode(),
            bearer(user),
            b"Content-Type: application/json",
        ],
        b'{"answers": {"heightCm": 180}}',
    )


def test_an_export_names_its_file_after_the_validated_kit_id(server: ServerProcess) -> None:
    kit_id, user = f"KIT-{uuid.uuid4().hex[:12]}", f"user-{uuid.uuid4().hex[:8]}"
    assert put_answers(server, kit_id, user).status == 201
    response = get(server, f"/v1/kits/{kit_id}/export", user=user)
    assert response.status == 200
    assert response.header("content-disposition") == (
        f'attachment; filename="kit-{kit_id}-export.json"'
    )


def test_a_412_sends_the_current_etag_not_the_clients_if_match(server: ServerProcess) -> None:
    kit_id, user = f"KIT-{uuid.uuid4().hex[:12]}", f"user-{uuid.uuid4().hex[:8]}"
    assert put_answers(server, kit_id, user).status == 201
    response = exchange(
        server.port,
        [
            f"PATCH /v1/kits/{kit_id}/health-information HTTP/1.1".encode(),
            bearer(user),
            b'If-Match: "7">; evil="1\xff"',
            b"Content-Type: application/merge-patch+json",
        ],
        b'{"answers": {"heightCm": 181}}',
    )
    assert response.problem()["code"] == "version-conflict"
    assert response.header("etag") == '"1"'


def publish(server: ServerProcess, content_type: str, body: dict[str, object]) -> Raw:
    return exchange(
        server.port,
        [
            b"POST /v1/questionnaires HTTP/1.1",
            f"Authorization: Bearer {token('admin-hostile', ['admin'])}".encode(),
            f"Content-Type: {content_type}".encode(),
        ],
        json.dumps(body).encode(),
    )


def json_definition(questionnaire_id: str, version: str) -> dict[str, object]:
    question = {"id": "q", "text": "Q", "type": "boolean", "required": False, "section": "s"}
    return {"id": questionnaire_id, "version": version, "title": "T", "items": [question]}


def fhir_definition(questionnaire_id: str, version: str) -> dict[str, object]:
    return {
        "resourceType": "Questionnaire",
        "id": questionnaire_id,
        "version": version,
        "title": "T",
        "status": "active",
        "item": [{"linkId": "q", "text": "Q", "type": "boolean"}],
    }


Definition = Callable[[str, str], dict[str, object]]
PUBLISHED_AS = pytest.mark.parametrize(
    ("content_type", "make"),
    [("application/json", json_definition), ("application/fhir+json", fhir_definition)],
    ids=["json", "fhir"],
)


@PUBLISHED_AS
@pytest.mark.parametrize(
    ("questionnaire_id", "version"),
    [("q\r\nSet-Cookie: a=b", "1"), ("q-ok", "1\r\nSet-Cookie: a=b"), ("q\x00", "1")],
    ids=["crlf-id", "crlf-version", "nul-id"],
)
def test_a_published_questionnaire_id_never_reaches_the_location_header_unvalidated(
    server: ServerProcess, content_type: str, make: Definition, questionnaire_id: str, version: str
) -> None:
    response = publish(server, content_type, make(questionnaire_id, version))
    assert response.status == 422
    assert response.problem()["code"] == "validation-failed"
    assert response.header("location") is None
    assert response.header("set-cookie") is None


@PUBLISHED_AS
def test_a_published_questionnaire_s_location_is_its_id_and_version(
    server: ServerProcess, content_type: str, make: Definition
) -> None:
    questionnaire_id = f"q-{uuid.uuid4().hex[:8]}"
    response = publish(server, content_type, make(questionnaire_id, "1.0"))
    assert response.status == 201, response.body
    assert response.header("location") == f"/v1/questionnaires/{questionnaire_id}/versions/1.0"


# --- headers that depend on how the request arrived ----------------------------------------------


@pytest.fixture
def proxied_server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server behind a trusted proxy on loopback (HEALTHINFO_TRUSTED_PROXIES)."""
    process = ServerProcess(
        database_url=database_url,
        data_dir=tmp_path,
        extra_env={**LIVE_ENV, "HEALTHINFO_TRUSTED_PROXIES": "127.0.0.1"},
    )
    process.start(timeout=STARTUP_SECONDS)
    try:
        yield process
    finally:
        process.stop()


def test_hsts_when_a_trusted_proxy_says_the_request_came_over_tls(
    proxied_server: ServerProcess,
) -> None:
    response = get(proxied_server, "/health/live", b"X-Forwarded-Proto: https")
    assert response.header("strict-transport-security") == "max-age=31536000"


def test_no_hsts_when_an_untrusted_client_claims_tls(server: ServerProcess) -> None:
    """Proxy headers are believed only from HEALTHINFO_TRUSTED_PROXIES (default: nobody)."""
    response = get(server, "/health/live", b"X-Forwarded-Proto: https")
    assert response.header("strict-transport-security") is None


def test_no_hsts_over_plain_http(server: ServerProcess) -> None:
    assert get(server, "/health/live").header("strict-transport-security") is None


def test_the_event_stream_is_no_store(server: ServerProcess) -> None:
    kit_id, user = f"KIT-{uuid.uuid4().hex[:12]}", f"user-{uuid.uuid4().hex[:8]}"
    assert put_answers(server, kit_id, user).status == 201
    target = f"/v1/kits/{kit_id}/health-information/events"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token(user)}\r\n\r\n".encode()
        )
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
    top = received.split(b"\r\n\r\n")[0].decode().lower()
    assert top.startswith("http/1.1 200")
    assert "\r\ncache-control: no-store\r\n" in top + "\r\n"
    assert "\r\nx-content-type-options: nosniff\r\n" in top + "\r\n"
