"""Request ids, route templates and the legacy routes' headers, for the edge middleware.

``api/edge.py`` applies them, in one pure ASGI middleware (not ``BaseHTTPMiddleware``, so
streaming responses pass through untouched and nothing is buffered). The request id itself
lives in ``common/context.py``: the log processors read it there without importing the API.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote

from starlette.types import Scope

from healthinfo.common.context import current_request_id

__all__ = ["current_request_id"]  # re-exported: where it used to live

REQUEST_ID_HEADER = b"x-request-id"
# What a client's X-Request-ID may be to be adopted (else a UUID is minted): it goes into
# every log line and back into a header, so nothing that could break either.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


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
