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
* A ``Content-Security-Policy`` on the HTML pages that have none of their own: the policies
  are per path, in :data:`PAGE_POLICIES`, to adjust when a page changes.

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

# FastAPI's Swagger UI page (``/docs``): its bundle and stylesheet from jsDelivr, one inline
# script that starts it (allowed by its hash, which changes only when FastAPI's page does),
# icons from data: URIs, inline styles, requests to this origin only. A page that sets a
# policy of its own (api/docs.py, once Swagger UI is served locally) keeps it.
SWAGGER_INIT_SHA256 = "'sha256-QOOQu4W1oxGqd2nbXbxiA1Di6OHQOLQD+o+G9oWL8YY='"
DOCS_CSP = (
    f"default-src 'none'; script-src 'self' https://cdn.jsdelivr.net {SWAGGER_INIT_SHA256}; "
    "style-src 'self' https://cdn.jsdelivr.net 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The OAuth2 redirect page Swagger UI opens: one inline script (by its hash), nothing else.
OAUTH2_REDIRECT_CSP = (
    "default-src 'none'; script-src 'sha256-Q8NLdUrRI6i0tSYa9s7b5KZd7Adbpcz558UgROi6Hy8='; "
    "base-uri 'none'; form-action 'none'"
)
# FastAPI's ReDoc page: its bundle from jsDelivr, Google's fonts, a search worker from blob:.
REDOC_CSP = (
    "default-src 'none'; script-src https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://fonts.googleapis.com; font-src https://fonts.gstatic.com; "
    "img-src 'self' data:; connect-src 'self'; worker-src blob:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# Pages served as text: no script, no style sheet, nothing fetched.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# ``/demo`` (realtime/demo.py) and the problem pages (api/problem_pages.py, PAGE_CSP) set
# their own.
PAGE_POLICIES: dict[str, str] = {
    "/docs": DOCS_CSP,
    "/docs/oauth2-redirect": OAUTH2_REDIRECT_CSP,
    "/redoc": REDOC_CSP,
}


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
    policy = PAGE_POLICIES.get(path)
    if policy is not None and b"content-security-policy" not in present:
        wanted[b"content-security-policy"] = policy
    kept = [(name, value) for name, value in headers if name.lower() not in wanted]
    return kept + [(name, value.encode("latin-1")) for name, value in wanted.items()]


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
