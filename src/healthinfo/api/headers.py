"""Security headers on every response (docs/security.md, "Response headers").

* ``X-Content-Type-Options: nosniff`` on every response: a browser must never guess that a
  JSON body (which can hold a user's free text) is HTML or script.
* ``Cache-Control: no-store`` on every API response, ``/v1/…`` and the legacy unversioned
  routes, whatever the status: they carry health data or something kit-specific (a version in
  an ETag, members, audit events, a 404 that says a kit is not yours), and no browser, proxy or
  CDN may keep a copy. One rule by path rather than a list of routes, so a new route is covered
  before anyone thinks about it. The public pages (``/docs``, ``/demo``, ``/problems/…``,
  health, metrics, the OpenAPI document) keep their own caching.
* ``Strict-Transport-Security`` when the request came over TLS: the ASGI scope's scheme is
  ``https`` (directly, or behind a proxy whose ``X-Forwarded-Proto`` uvicorn trusts). Sent over
  plain HTTP it would be ignored by browsers and wrong for local development.
* A strict ``Content-Security-Policy`` (:data:`PAGE_CSP`) on any HTML response that has none of
  its own, so a new page is covered before anyone writes its policy.

Pure functions of (scope, response headers), applied by one small pure ASGI middleware; the
500 handler, which runs outside every middleware, applies the same function.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthinfo.api.methods import route_path

Headers = list[tuple[bytes, bytes]]

NOSNIFF = "nosniff"
NO_STORE = "no-store"
HSTS = "max-age=31536000"  # one year; no includeSubDomains: other hosts are not ours to decide
TLS_SCHEMES = ("https", "wss")

# Any HTML page that sets no policy of its own: no script, no style sheet, nothing fetched. The
# pages that need more (``/docs``, ``/redoc`` and ``/`` in api/docs.py, ``/demo`` in
# realtime/demo.py, the problem pages in api/problem_pages.py) set their own, which is kept.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def security_headers(
    scope: Scope, headers: Sequence[tuple[bytes, bytes]], *, private_prefixes: tuple[str, ...]
) -> Headers:
    """``headers`` with the security headers this response must carry, set (never doubled)."""
    path = route_path(scope)
    present = {name.lower() for name, _ in headers}
    wanted: dict[bytes, str] = {b"x-content-type-options": NOSNIFF}
    if path.startswith(private_prefixes):
        wanted[b"cache-control"] = NO_STORE
    if scope.get("scheme") in TLS_SCHEMES:
        wanted[b"strict-transport-security"] = HSTS
    if b"content-security-policy" not in present and _is_html(headers):
        wanted[b"content-security-policy"] = PAGE_CSP
    kept = [(name, value) for name, value in headers if name.lower() not in wanted]
    return kept + [(name, value.encode("latin-1")) for name, value in wanted.items()]


def _is_html(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"content-type" and value.lower().startswith(b"text/html")
        for name, value in headers
    )


def error_headers(scope: Scope) -> dict[str, str]:
    """For the 500 handler, which runs outside every middleware: an error is never cached."""
    headers = {"X-Content-Type-Options": NOSNIFF, "Cache-Control": NO_STORE}
    if scope.get("scheme") in TLS_SCHEMES:
        headers["Strict-Transport-Security"] = HSTS
    return headers


class SecurityHeadersMiddleware:
    """Applies :func:`security_headers` to every HTTP response."""

    def __init__(self, app: ASGIApp, *, private_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.private_prefixes = private_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = security_headers(
                    scope, message.get("headers", []), private_prefixes=self.private_prefixes
                )
            await send(message)

        await self.app(scope, receive, send_secured)
