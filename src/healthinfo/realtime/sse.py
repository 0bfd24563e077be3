"""SSE adapter: ``GET /v1/kits/{kitId}/health-information/events``.

Why a small response class of our own rather than sse-starlette: what matters here is the
coordination with the room hub (subscribe, backfill, de-duplicate; the room place released on
every way out; shutdown driven by the hub when SIGTERM arrives) and a ping on a fixed
schedule. sse-starlette would add its own disconnect and shutdown machinery (it patches
uvicorn's signal handling through process-wide state) next to ours, and its per-event
generator protocol fits the batch-per-wakeup loop below less well. What we need from it is
about forty lines: the frame format (``events.LiveEvent.sse``), ``: ping`` comments, a
``retry:`` hint and disconnect detection.

Never compress this response: ``text/event-stream`` is excluded by Starlette's GZip middleware,
and ``X-Accel-Buffering: no`` tells nginx not to buffer it either.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from healthinfo.api.deps import KitId, ServicesDep
from healthinfo.api.methods import is_head
from healthinfo.api.openapi import problems
from healthinfo.api.problems import domain_problem
from healthinfo.auth.access import Permission
from healthinfo.auth.actor import Actor
from healthinfo.common.context import Channel, RequestContext
from healthinfo.realtime.connect import admit, last_event_id, open_stream
from healthinfo.realtime.events import LiveEvent
from healthinfo.realtime.hub import LIFETIME, REVOKED, SHUTDOWN, SLOW_CONSUMER, RoomHub
from healthinfo.realtime.stream import LiveStream
from healthinfo.services import Services

router = APIRouter(tags=["real-time"])
PATH = "/kits/{kitId}/health-information/events"
EVENT_STREAM = "text/event-stream"
# How long a stream whose subscription closed may take to send its last words (a slow client
# blocks the send) before the connection is dropped without them.
FINAL_SEND_SECONDS = 2.0
STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # health data
_JITTER = random.Random()  # our own: never the process-wide state (infra/tracing.py says why)
logger = logging.getLogger(__name__)


@router.get(
    PATH,
    summary="Follow a kit's health information live (Server-Sent Events)",
    description=(
        "`snapshot`, `updated`, `submitted` (id = version) and `presence` events; `: ping` "
        "comments; `Last-Event-ID` (or `lastEventId`) replays every later version from the "
        "history instead of a snapshot. A stream that loses its access (member removed, "
        "token expired, kit erased) ends after `event: revoked` whose data is the problem. "
        "See docs/realtime.md."
    ),
    responses={
        200: {"description": "The event stream.", "content": {EVENT_STREAM: {}}},
        **problems(401, 403, 404, 422, 429, 503),
    },
)
async def follow_health_information(
    kit_id: KitId,
    request: Request,
    svc: ServicesDep,
    access_token: Annotated[
        str | None,
        Query(description="The bearer token, for EventSource (which cannot set headers)."),
    ] = None,
    last_event_id_query: Annotated[
        str | None, Query(alias="lastEventId", description="Resume after this version.")
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    actor = await admit(
        svc,
        authorization=request.headers.get("authorization"),
        access_token=access_token,
        address=request.client.host if request.client else None,
    )
    resume_after = last_event_id(last_event_id_header, last_event_id_query)
    if is_head(request.scope):
        return await _head(svc, actor, kit_id)
    ctx = RequestContext(
        actor=actor,
        channel=Channel.SSE,
        request_id=request.scope.get("state", {}).get("request_id"),
        client_address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
    opened = await open_stream(svc, svc.hub, ctx=ctx, kit_id=kit_id, resume_after=resume_after)
    settings = svc.settings
    return EventStreamResponse(
        hub=svc.hub,
        stream=opened.stream,
        opening=opened.opening,
        ping_seconds=settings.realtime_ping_seconds,
        lifetime_seconds=settings.realtime_max_connection_seconds,
        retry_ms=settings.realtime_retry_ms,
        instance=request.url.path,
        request_id=ctx.request_id,
    )


async def _head(svc: Services, actor: Actor, kit_id: str) -> Response:
    """HEAD: the same access check and headers as GET, but no place in the room, no snapshot
    read and no audited disclosure, since nothing is sent (so no 429 ``room-full`` either)."""
    async with svc.uows.read() as uow:
        await svc.kits.authorize(uow, actor, kit_id, Permission.READ)
    response = Response(media_type=EVENT_STREAM, headers=STREAM_HEADERS)
    del response.headers["content-length"]  # a stream has none
    return response


class EventStreamResponse(Response):
    media_type = EVENT_STREAM

    def __init__(
        self,
        *,
        hub: RoomHub,
        stream: LiveStream,
        opening: list[LiveEvent],
        ping_seconds: float,
        lifetime_seconds: float,
        retry_ms: int,
        instance: str | None = None,
        request_id: str | None = None,
    ) -> None:
        # Like StreamingResponse: no ``body`` attribute, so no Content-Length header.
        self.status_code = 200
        self.background = None
        self.init_headers(STREAM_HEADERS)
        self._hub = hub
        self._stream = stream
        self._opening = opening
        self._ping = ping_seconds
        self._lifetime = lifetime_seconds
        self._retry_ms = retry_ms
        self._instance = instance
        self._request_id = request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self._stream.subscription
        finished = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as group:

                async def pump() -> None:
                    nonlocal finished
                    await self._pump(send)
                    finished = True
                    group.cancel_scope.cancel()

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                async def watch_stuck() -> None:
                    await sub.closed.wait()
                    await anyio.sleep(FINAL_SEND_SECONDS)
                    group.cancel_scope.cancel()

                group.start_soon(pump)
                group.start_soon(watch_disconnect)
                group.start_soon(watch_stuck)
            if finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except* OSError:
            # The client went away while we were sending (uvicorn's ClientDisconnected): an
            # ordinary end of a stream, not a server error.
            logger.info("realtime.sse_client_disconnected")
        finally:
            with anyio.CancelScope(shield=True):
                await self._hub.leave(sub)

    async def _pump(self, send: Send) -> None:
        sub = self._stream.subscription
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lifetime
        next_ping = loop.time() + self._ping
        first = f"retry: {self._retry_ms}\n\n".encode() + b"".join(e.sse() for e in self._opening)
        await self._send(send, first)
        while True:
            wake = min(next_ping, deadline, self._stream.wake_at())
            await sub.wait(wake - loop.time())
            chunks = [event.sse() for event in await self._stream.take()]
            now = loop.time()
            if now >= deadline:
                sub.close(LIFETIME)
            reason = sub.close_reason
            if reason is not None:
                chunks.append(self._farewell(reason))
                await self._send(send, b"".join(chunks))
                return
            if now >= next_ping:
                chunks.append(b": ping\n\n")
                next_ping = now + self._ping
            if chunks:
                await self._send(send, b"".join(chunks))

    def _farewell(self, reason: str) -> bytes:
        """A comment naming the reason, and when to come back (spread out after a restart);
        for a revoked stream, ``event: revoked`` with the problem (no point coming back with
        the same token or membership: the reconnect would be refused)."""
        revoked_by = self._stream.subscription.revoked_by
        if reason == REVOKED and revoked_by is not None:
            problem = domain_problem(
                revoked_by, instance=self._instance, request_id=self._request_id
            )
            data = json.dumps(problem, separators=(",", ":"), ensure_ascii=False)
            return f"event: revoked\ndata: {data}\n\n".encode()
        retry = self._retry_ms
        if reason in (SHUTDOWN, SLOW_CONSUMER):
            retry += _JITTER.randint(0, self._retry_ms)
        return f": closing {reason}\nretry: {retry}\n\n".encode()

    @staticmethod
    async def _send(send: Send, body: bytes) -> None:
        await send({"type": "http.response.body", "body": body, "more_body": True})
