"""Pure ASGI middleware: request ids, body limits, metrics, legacy-route headers.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses pass through untouched and
nothing is buffered; each middleware does one thing.
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthinfo.api.problems import domain_problem, problem_response
from healthinfo.errors import PayloadTooLarge
from healthinfo.infra.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestIdMiddleware:
    """Adopt the client's sane ``X-Request-ID`` or mint one; echo it on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        offered = _header(scope, REQUEST_ID_HEADER)
        request_id = (
            offered if offered and _SANE_REQUEST_ID.fullmatch(offered) else str(uuid.uuid4())
        )
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)


class BodyLimitMiddleware:
    """413 for bodies over the limit, decided while reading: a huge body is never buffered."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = domain_problem(
                PayloadTooLarge(self.max_bytes),
                instance=scope.get("path"),
                request_id=scope.get("state", {}).get("request_id"),
            )
            await problem_response(body, {"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


VERSION_PREFIX = "/v1"
# Where routers are mounted, the longest first: the FHIR base (fhir/api.py), then /v1.
MOUNT_PREFIXES = ("/v1/fhir", VERSION_PREFIX)


def route_template(scope: Scope) -> str:
    """The matched route's template with the version prefix the request came through.

    FastAPI (0.16x) leaves the router-relative template in ``scope["route"]`` for included
    routers, so ``/v1/kits/…`` and the legacy ``/kits/…`` would otherwise share one label.
    """
    template = getattr(scope.get("route"), "path", None)
    if not isinstance(template, str):
        return "unmatched"
    path = str(scope.get("path", ""))
    for prefix in MOUNT_PREFIXES:
        if path.startswith(prefix + "/") and not template.startswith(prefix + "/"):
            return prefix + template
    return template


class MetricsMiddleware:
    """Count and time requests by route template; unmatched paths share one label."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            route = route_template(scope)
            method = scope.get("method", "GET")
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_latency.labels(method, route).observe(time.perf_counter() - started)


# When the unversioned API was deprecated: the day /v1 shipped beside it (RFC 9745 wants the
# moment deprecation took effect; docs/api-notes.md, "Legacy routes").
DEPRECATED_SINCE = datetime(2026, 11, 25, tzinfo=UTC)
# What a path keeps unencoded in the successor Link: RFC 3986's pchar and "/". Everything
# else, control characters, spaces, quotes, "<" and ">" and non-ASCII included, is
# percent-encoded, so no request path can break out of the header or of the <…> reference.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def deprecation_value(since: datetime) -> bytes:
    """RFC 9745: ``@`` and the Unix time at which the resource was deprecated."""
    return f"@{int(since.timestamp())}".encode()


def sunset_value(sunset: datetime) -> bytes:
    """RFC 8594: an HTTP-date (IMF-fixdate, RFC 9110 §5.6.7)."""
    return format_datetime(sunset.astimezone(UTC), usegmt=True).encode()


def successor_link(path: str) -> bytes:
    """The ``Link`` to the /v1 twin of a legacy path, the path percent-encoded (ASCII only)."""
    return f'<{quote(VERSION_PREFIX + path, safe=_PATH_SAFE)}>; rel="successor-version"'.encode()


class LegacyRouteMiddleware:
    """The unversioned legacy API: same behaviour, plus Deprecation, Sunset (when configured)
    and successor Link headers."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        legacy_prefixes: tuple[str, ...],
        sunset: datetime | None = None,
        deprecated_since: datetime = DEPRECATED_SINCE,
    ) -> None:
        self.app = app
        self.legacy_prefixes = legacy_prefixes
        self.headers = [(b"deprecation", deprecation_value(deprecated_since))]
        if sunset is not None:
            self.headers.append((b"sunset", sunset_value(sunset)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.legacy_prefixes):
            await self.app(scope, receive, send)
            return
        added = [*self.headers, (b"link", successor_link(path))]

        async def send_deprecated(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        await self.app(scope, receive, send_deprecated)
