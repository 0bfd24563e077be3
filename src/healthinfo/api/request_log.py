"""The access log: one ``http.request`` line per request, written by us, not by uvicorn.

uvicorn's access log writes the raw path and query string (kit ids, ``?access_token=<JWT>``),
so it is off (``infra/logging.py``); the edge middleware (``api/edge.py``) writes, through
:func:`log_access`, the method, the route *template*, the status, the duration and (through
the log processors) the request and trace ids. It also makes the W3C ``traceparent``'s trace
id available to every line of the request when OpenTelemetry is off.

Liveness, readiness and metrics scrapes are logged at DEBUG: they arrive every few seconds
and say nothing about clients.
"""

from __future__ import annotations

import logging

import structlog

QUIET_PATHS = ("/health/", "/metrics")
logger = structlog.get_logger("healthinfo.access")


def log_access(path: str, event: str, method: str, route: str, status: int, elapsed: float) -> None:
    """``event`` is ``http.request`` or ``websocket.session`` (method ``WS``)."""
    level = logging.DEBUG if path.startswith(QUIET_PATHS) else logging.INFO
    logger.log(
        level,
        event,
        method=method,
        route=route,
        status=status,
        duration_ms=round(elapsed * 1000, 2),
    )
