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

Applied to every HTTP response by the edge middleware (``Edge.finish_headers`` in
``api/edge.py``, in its one pass over the response headers); the 500 handler, which runs
outside every middleware, applies :func:`error_headers`.
"""

from __future__ import annotations

from starlette.types import Scope

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


def error_headers(scope: Scope) -> dict[str, str]:
    """For the 500 handler, which runs outside every middleware: an error is never cached."""
    headers = {"X-Content-Type-Options": NOSNIFF, "Cache-Control": NO_STORE}
    if scope.get("scheme") in TLS_SCHEMES:
        headers["Strict-Transport-Security"] = HSTS
    return headers
