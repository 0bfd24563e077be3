"""The one pure ASGI middleware every request passes: everything HTTP-ish that is not a route.

It replaces nine stacked middlewares (request id, access log, metrics, security headers,
legacy-route headers, HTTP method manners, body limit, rate-limit headers; issue #16): each
of them wrapped ``send`` in a closure of its own and rewrote the response's header list, so a
request paid nine calls per message and several list copies of its headers. Here the request
headers are scanned once, ``send`` is wrapped once, and the response headers are rewritten in
one pass (:meth:`Edge.finish_headers`), as raw ``(bytes, bytes)`` pairs; no ``Request`` object
is built. What each piece does is unchanged and still lives, as pure functions, next to its
reasons: ``api/headers.py`` (security headers), ``api/methods.py`` (Allow, OPTIONS, HEAD),
``api/middleware.py`` (request ids, legacy headers, route templates), ``api/request_log.py``
(the access log line), ``api/ratelimit.py`` (the limits reported).

The order of effects is the old stack's, outermost first: the request id is set before
anything can log, the access line and the metrics are written after the response (also when
the route raised; the 500 itself is sent by Starlette's ``ServerErrorMiddleware``, outside,
whose handler adds the same headers), OPTIONS is answered before the body limit and before
authentication, HEAD runs the route as GET.

Tracing is not here: OpenTelemetry's middleware is installed only when
``HEALTHINFO_OTEL_ENABLED=true`` (``infra/tracing.py``), outside this one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthinfo.api.headers import HSTS, NO_STORE, NOSNIFF, PAGE_CSP, TLS_SCHEMES
from healthinfo.api.methods import HEAD_STATE, allow_value, declared_methods, route_path
from healthinfo.api.middleware import (
    DEPRECATED_SINCE,
    REQUEST_ID_HEADER,
    SANE_REQUEST_ID,
    deprecation_value,
    route_template,
    successor_link,
    sunset_value,
)
from healthinfo.api.problems import domain_problem, problem_response
from healthinfo.api.ratelimit import STATE_KEY as RATE_LIMIT_STATE
from healthinfo.api.request_log import log_access
from healthinfo.common.context import current_request_id
from healthinfo.errors import PayloadTooLarge
from healthinfo.infra.logging import incoming_trace_id, trace_id_from_traceparent
from healthinfo.infra.metrics import Metrics
from healthinfo.infra.ratelimit import Decision

Headers = list[tuple[bytes, bytes]]

_CONTENT_LENGTH = b"content-length"
_TRACEPARENT = b"traceparent"
_NOSNIFF = (b"x-content-type-options", NOSNIFF.encode())
_NO_STORE = (b"cache-control", NO_STORE.encode())
_HSTS = (b"strict-transport-security", HSTS.encode())
_CSP = (b"content-security-policy", PAGE_CSP.encode("latin-1"))
_ALLOW = b"allow"
_CONTENT_TYPE = b"content-type"
_HTML = b"text/html"


class Edge:
    """Request id, access log, metrics, security and legacy headers, method manners, the body
    limit and the rate-limit headers, around ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        routes: Callable[[], Sequence[BaseRoute]],
        max_body_bytes: int,
        private_prefixes: tuple[str, ...],
        legacy_prefixes: tuple[str, ...],
        sunset: datetime | None = None,
        deprecated_since: datetime = DEPRECATED_SINCE,
        rewrite_problem: Callable[[Scope, Response], Response] | None = None,
    ) -> None:
        self.app = app
        # The edge answers an oversized declared body itself, before the app (and the
        # middlewares inside it, the FHIR OperationOutcome rewrite among them) runs.
        self.rewrite_problem = rewrite_problem
        self.routes = routes
        self.max_body_bytes = max_body_bytes
        self.private_prefixes = private_prefixes
        self.legacy_prefixes = legacy_prefixes
        self.legacy_headers: Headers = [(b"deprecation", deprecation_value(deprecated_since))]
        if sunset is not None:
            self.legacy_headers.append((b"sunset", sunset_value(sunset)))
        self._requests: Counter = metrics.http_requests
        self._latency: Histogram = metrics.http_latency
        # prometheus_client's ``labels()`` validates and locks on every call: children by label.
        self._counted: dict[tuple[str, str, str], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    # -- the request -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        offered = declared_length = traceparent = None
        for name, value in scope.get("headers", ()):  # the first of each, as before
            if name == REQUEST_ID_HEADER:
                offered = value if offered is None else offered
            elif name == _CONTENT_LENGTH:
                declared_length = value if declared_length is None else declared_length
            elif name == _TRACEPARENT:
                traceparent = value if traceparent is None else traceparent
        request_id = _request_id(offered)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        request_token = current_request_id.set(request_id)
        trace_token = incoming_trace_id.set(
            trace_id_from_traceparent(traceparent.decode("latin-1")) if traceparent else None
        )
        started = time.perf_counter()
        status = 500
        method = scope["method"]
        request_id_bytes = request_id.encode()
        # The path as the request named it: routing into a mount (the /docs assets) moves its
        # prefix into the scope's root_path before the response starts.
        path = route_path(scope)

        async def send_finished(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = self.finish_headers(
                    scope, path, message.get("headers", ()), status, request_id_bytes
                )
            await send(message)

        try:
            if method == "OPTIONS" and await self._options(scope, receive, send_finished):
                return
            if method == "HEAD":
                await self._head(scope, receive, send_finished, declared_length)
            else:
                await self._limited(scope, receive, send_finished, declared_length)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            self._record(method, route, status, elapsed)
            log_access(scope["path"], "http.request", method, route, status, elapsed)
            incoming_trace_id.reset(trace_token)
            current_request_id.reset(request_token)

    def finish_headers(
        self,
        scope: Scope,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        status: int,
        request_id: bytes,
    ) -> Headers:
        """The response headers as the old stack left them, in one pass and in its order:
        the route's own (less those replaced), the rate limits, a complete ``Allow`` on 405,
        the legacy headers, the security headers, the request id. ``path``: the routed path
        when the request arrived."""
        private = path.startswith(self.private_prefixes)
        tls = scope.get("scheme") in TLS_SCHEMES
        html = has_csp = False
        kept: Headers = []
        for name, value in headers:
            lower = name.lower()
            if lower == _CONTENT_TYPE:
                html = html or value.lower().startswith(_HTML)
            elif lower == b"content-security-policy":
                has_csp = True
            elif (
                lower == b"x-content-type-options"
                or lower == REQUEST_ID_HEADER
                or (private and lower == b"cache-control")
                or (tls and lower == b"strict-transport-security")
                or (status == 405 and lower == _ALLOW)
            ):
                continue
            kept.append((name, value))
        decision = scope["state"].get(RATE_LIMIT_STATE)
        if isinstance(decision, Decision):
            kept.append((b"ratelimit-limit", str(decision.limit).encode()))
            kept.append((b"ratelimit-remaining", str(decision.remaining).encode()))
            kept.append((b"ratelimit-reset", str(decision.reset_after).encode()))
        if status == 405:
            allow = allow_value(declared_methods(self.routes(), path))
            kept.append((_ALLOW, allow.encode()))
        if scope["path"].startswith(self.legacy_prefixes):
            kept.extend(self.legacy_headers)
            kept.append((b"link", successor_link(scope["path"])))
        kept.append(_NOSNIFF)
        if private:
            kept.append(_NO_STORE)
        if tls:
            kept.append(_HSTS)
        if html and not has_csp:
            kept.append(_CSP)
        kept.append((REQUEST_ID_HEADER, request_id))
        return kept

    async def _options(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """OPTIONS on a routed path: 204 with the complete ``Allow``, before authentication.
        False when the router should answer (an unrouted path: its 404 problem)."""
        declared = declared_methods(self.routes(), route_path(scope))
        if not declared or "OPTIONS" in declared:
            return False
        allow = allow_value(declared).encode()
        await send({"type": "http.response.start", "status": 204, "headers": [(_ALLOW, allow)]})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True

    async def _head(
        self, scope: Scope, receive: Receive, send: Send, declared_length: bytes | None
    ) -> None:
        """Run the route as GET; send its start, then one empty body, then nothing.

        The server keeps the request's HEAD (it must not expect a body), so the route gets a
        copy of the scope; what the router writes into it (the matched route) is copied back
        for the metrics and the access log. A streaming response ends after its headers: the
        route then sees the client leave (``http.disconnect``).
        """
        inner = {**scope, "method": "GET"}
        inner["state"][HEAD_STATE] = True
        done = False

        async def send_headers_only(message: Message) -> None:
            nonlocal done
            if done:
                return
            if message["type"] == "http.response.start":
                await send(message)
            elif message["type"] == "http.response.body":
                done = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def receive_until_done() -> Message:
            if done:
                return {"type": "http.disconnect"}
            return await receive()

        try:
            await self._limited(inner, receive_until_done, send_headers_only, declared_length)
        finally:
            scope.update({k: v for k, v in inner.items() if k != "method"})

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, declared_length: bytes | None
    ) -> None:
        """413 for bodies over the limit, decided while reading: a huge body is never
        buffered."""
        limit = self.max_body_bytes
        if (
            declared_length is not None
            and declared_length.isdigit()
            and int(declared_length) > limit
        ):
            body = domain_problem(
                PayloadTooLarge(limit),
                instance=scope.get("path"),
                request_id=scope["state"].get("request_id"),
            )
            response = problem_response(body, {"Connection": "close"})
            if self.rewrite_problem is not None:
                response = self.rewrite_problem(scope, response)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)

    def _record(self, method: str, route: str, status: int, elapsed: float) -> None:
        counted_key = (method, route, str(status))
        counter = self._counted.get(counted_key)
        if counter is None:
            counter = self._counted[counted_key] = self._requests.labels(*counted_key)
        counter.inc()
        timed_key = (method, route)
        timer = self._timed.get(timed_key)
        if timer is None:
            timer = self._timed[timed_key] = self._latency.labels(*timed_key)
        timer.observe(elapsed)

    # -- WebSocket ---------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket session gets a request id and an access line (``websocket.session``);
        no metrics and no headers (the handshake's are the server's)."""
        offered = traceparent = None
        for name, value in scope.get("headers", ()):
            if name == REQUEST_ID_HEADER:
                offered = value if offered is None else offered
            elif name == _TRACEPARENT:
                traceparent = value if traceparent is None else traceparent
        request_id = _request_id(offered)
        scope.setdefault("state", {})["request_id"] = request_id
        request_token = current_request_id.set(request_id)
        trace_token = incoming_trace_id.set(
            trace_id_from_traceparent(traceparent.decode("latin-1")) if traceparent else None
        )
        started = time.perf_counter()
        status: int | None = None

        async def send_recording(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "websocket.http.response.start":
                status = int(message["status"])
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close" and status is None:
                status = 403
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            elapsed = time.perf_counter() - started
            code = status if status is not None else 500
            log_access(
                scope["path"], "websocket.session", "WS", route_template(scope), code, elapsed
            )
            incoming_trace_id.reset(trace_token)
            current_request_id.reset(request_token)


def _request_id(offered: bytes | None) -> str:
    """The client's ``X-Request-ID`` when it is sane, else a fresh UUID."""
    if offered:
        text = offered.decode("latin-1")
        if SANE_REQUEST_ID.fullmatch(text):
            return text
    return str(uuid.uuid4())
