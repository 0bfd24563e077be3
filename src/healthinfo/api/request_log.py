"""The access log: one ``http.request`` line per request, written by us, not by uvicorn.

uvicorn's access log writes the raw path and query string (kit ids, ``?access_token=<JWT>``),
so it is off (``infra/logging.py``); this pure ASGI middleware writes the method, the route
*template*, the status, the duration and (through the log processors) the request and trace
ids. It also makes the W3C ``traceparent``'s trace id available to every line of the request
when OpenTelemetry is off.

Liveness, readiness and metrics scrapes are logged at DEBUG: they arrive every few seconds
and say nothing about clients.
"""

from __future__ import annotations

import logging
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthinfo.api.middleware import route_template
from healthinfo.infra.logging import incoming_trace_id, trace_id_from_traceparent, traceparent_of

QUIET_PATHS = ("/health/", "/metrics")
logger = structlog.get_logger("healthinfo.access")


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = incoming_trace_id.set(trace_id_from_traceparent(traceparent_of(scope)))
        started = time.perf_counter()
        status: int | None = None

        async def send_recording(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = int(message["status"])
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close" and status is None:
                status = 403
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            self._log(scope, status, time.perf_counter() - started)
            incoming_trace_id.reset(token)

    @staticmethod
    def _log(scope: Scope, status: int | None, elapsed: float) -> None:
        path = str(scope.get("path", ""))
        websocket = scope["type"] == "websocket"
        level = logging.DEBUG if path.startswith(QUIET_PATHS) else logging.INFO
        logger.log(
            level,
            "websocket.session" if websocket else "http.request",
            method="WS" if websocket else scope.get("method", "GET"),
            route=route_template(scope),
            status=status if status is not None else 500,
            duration_ms=round(elapsed * 1000, 2),
        )
