"""Profile one request with pyinstrument: an admin-only switch (docs/operations.md).

Installed only when ``HEALTHINFO_PROFILING_ENABLED=true``. A request with ``X-Profile: 1``
(or ``?profile=1``) whose bearer token carries the ``admin`` role is run under pyinstrument,
its normal response is discarded, and the profile is returned instead: HTML
(``X-Profile: 1`` / ``html``) or pyinstrument's JSON (``X-Profile: json``). Every other request
passes through untouched; a non-admin or unauthenticated caller asking for a profile gets the
normal response, so the switch reveals nothing. The profiled request itself runs in full
(a profiled PUT writes). ``X-Profile-Status`` tells the status the request would have had.

An event stream cannot end, so when the profiled response turns out to be
``text/event-stream`` profiling stops and the stream goes to the client as usual.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from pyinstrument import Profiler
from pyinstrument.renderers import JSONRenderer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthinfo.auth.tokens import TokenVerifier
from healthinfo.errors import DomainError

PROFILE_HEADER = b"x-profile"
EVENT_STREAM = b"text/event-stream"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def requested_format(scope: Scope) -> str | None:
    """'html' or 'json' when the request asks for a profile, else None."""
    wanted = _header(scope, PROFILE_HEADER)
    if wanted is None:
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        wanted = query.get("profile")
    if wanted is None:
        return None
    wanted = wanted.strip().lower()
    if wanted in {"1", "true", "html"}:
        return "html"
    if wanted == "json":
        return "json"
    return None


class ProfilingMiddleware:
    def __init__(self, app: ASGIApp, *, tokens: TokenVerifier) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        output = requested_format(scope)
        if output is None or not await self._is_admin(scope):
            await self.app(scope, receive, send)
            return
        await self._profile(scope, receive, send, output)

    async def _is_admin(self, scope: Scope) -> bool:
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        try:
            actor = await self.tokens.verify(token.strip())
        except DomainError:
            return False
        return actor.is_admin

    async def _profile(self, scope: Scope, receive: Receive, send: Send, output: str) -> None:
        profiler = Profiler(async_mode="enabled")
        status = 500
        streaming = False

        async def capture(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(EVENT_STREAM):
                    streaming = True
                    if profiler.is_running:
                        profiler.stop()
            if streaming:
                await send(message)

        path = scope.get("path", "")
        profiler.start(target_description=f"{scope.get('method', 'GET')} {path}")
        try:
            await self.app(scope, receive, capture)
        finally:
            if profiler.is_running:
                profiler.stop()
        if streaming:
            return
        if output == "json":
            body = profiler.output(renderer=JSONRenderer()).encode()
            media_type = b"application/json"
        else:
            body = profiler.output_html().encode()
            media_type = b"text/html; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", media_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"x-profile-status", str(status).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
