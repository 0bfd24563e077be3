"""WebSocket adapter: ``GET /v1/kits/{kitId}/health-information/ws``.

Messages are translated to the same service calls as REST, through ``WriteRunner.run`` (so a
refused write is audited, with channel ``websocket``), **one transaction per message**; the
connection itself holds no transaction. Errors are the REST problem documents
(``domain_problem``) inside ``{"type": "error", "requestId", "problem"}``; the connection stays
open after them.

Refusing a connection: the handshake is accepted, then an ``error`` message (``requestId``
null) carries the problem and the socket closes with 4000 + its HTTP status: 4401
unauthenticated, 4403 forbidden, 4404 no such kit or no access, 4422 invalid kit id or
``lastEventId``, 4429 room full, 4503 unavailable. (A rejected handshake would show a browser
only a generic failure.) Closing a live connection: 1012 on server shutdown, 1013 when the
client could not keep up (``slow-consumer``), 1000 when the connection reached its maximum
lifetime; the client reconnects with ``lastEventId``. A connection that lost its access is sent
an ``error`` message with the problem and closed with 4000 + its status: 4403 removed from the
kit, 4401 the token expired, 4404 the kit's answers were erased (realtime/stream.py).

Every message is checked against the token's expiry when it arrives, and ``update``/``submit``
count against the user's write rate limit and ``focus`` against the focus limit, as REST
requests do (``infra/ratelimit.py``); the role is the service's business, per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

from healthinfo.api.problems import close_code, domain_problem, problem_body
from healthinfo.auth.actor import Actor
from healthinfo.auth.tokens import EXPIRED
from healthinfo.common.context import Channel, RequestContext
from healthinfo.common.tasks import stop_tasks
from healthinfo.errors import (
    DomainError,
    FieldError,
    MalformedRequest,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)
from healthinfo.health_information.schemas import PatchAnswers
from healthinfo.health_information.service import SAVE, SUBMIT
from healthinfo.infra.ratelimit import RouteClass
from healthinfo.questionnaires.model import Questionnaire
from healthinfo.realtime.connect import admit, check_kit_id, last_event_id, open_stream
from healthinfo.realtime.hub import LIFETIME, REVOKED, SHUTDOWN, SLOW_CONSUMER, UNAVAILABLE
from healthinfo.realtime.stream import LiveStream
from healthinfo.services import Services

router = APIRouter(tags=["real-time"])
PATH = "/kits/{kitId}/health-information/ws"
logger = logging.getLogger(__name__)

# Close codes for a live connection, by the subscription's close reason.
CLOSE_CODES = {
    SHUTDOWN: 1012,
    SLOW_CONSUMER: 1013,
    LIFETIME: 1000,
    UNAVAILABLE: 4503,
}
# The client went away: an ordinary end of a connection, logged at INFO.
_GONE = (WebSocketDisconnect, WebSocketDisconnected)
# How long an in-flight message may take to finish (and be acknowledged) once the connection
# is being closed, and how long a stuck send may block before the connection is dropped.
IN_FLIGHT_SECONDS = 5.0
FINAL_SEND_SECONDS = 2.0
_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
MESSAGE_TYPES = ("update", "submit", "focus")


@router.websocket(PATH)
async def health_information_socket(
    websocket: WebSocket, kit_id: Annotated[str, Path(alias="kitId")]
) -> None:
    svc: Services = websocket.app.state.services
    await Session(websocket, svc, kit_id).run()


class Session:
    def __init__(self, websocket: WebSocket, svc: Services, kit_id: str) -> None:
        self.ws = websocket
        self.svc = svc
        self.kit_id = kit_id
        self.path = websocket.url.path
        self.connection_id = websocket.scope.get("state", {}).get("request_id") or str(uuid.uuid4())
        self.actor: Actor | None = None  # set once authenticated
        self._send_lock = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()
        self._questionnaire: Questionnaire | None = None  # the kit's, as last looked up

    async def run(self) -> None:
        await self.ws.accept()
        try:
            check_kit_id(self.kit_id)
            actor = await admit(
                self.svc,
                authorization=self.ws.headers.get("authorization"),
                access_token=self.ws.query_params.get("access_token"),
                address=self.ws.client.host if self.ws.client else None,
            )
            resume_after = last_event_id(
                self.ws.headers.get("last-event-id"), self.ws.query_params.get("lastEventId")
            )
            self.actor = actor
            opened = await open_stream(
                self.svc,
                self.svc.hub,
                ctx=self._context(None),
                kit_id=self.kit_id,
                resume_after=resume_after,
            )
        except DomainError as exc:
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                await self._send_error(None, exc)
            await self._close(close_code(exc), exc.code)
            return
        stream = opened.stream
        try:
            for event in opened.opening:
                await self._send(event.message())
            await self._serve(stream)
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the client went away while we were sending
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.svc.hub.leave(stream.subscription))

    async def _serve(self, stream: LiveStream) -> None:
        sub = stream.subscription
        reader = asyncio.create_task(self._read(stream))
        writer = asyncio.create_task(self._write(stream))
        stuck = asyncio.create_task(self._stuck(stream))
        tasks = {reader, writer, stuck}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if writer in done and writer.exception() is None:
                # The server ends the connection: let a message in flight finish and be acked.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IN_FLIGHT_SECONDS):
                        await self._idle.wait()
                reason = writer.result()
                revoked_by = sub.revoked_by
                if reason == REVOKED and revoked_by is not None:
                    with contextlib.suppress(*_GONE, OSError):
                        async with asyncio.timeout(FINAL_SEND_SECONDS):
                            await self._send_error(None, revoked_by)
                    await self._close(close_code(revoked_by), revoked_by.code)
                else:
                    await self._close(CLOSE_CODES.get(reason, 1000), reason)
            elif stuck in done:
                logger.info("realtime.websocket_dropped", extra={"reason": sub.close_reason})
        finally:
            await stop_tasks(tasks)
            self._note_disconnects(tasks)

    @staticmethod
    def _note_disconnects(tasks: set[asyncio.Task[Any]]) -> None:
        """Retrieve what ended the tasks: a client that went away is INFO, never an ERROR
        (an unretrieved task exception is logged by asyncio as one)."""
        for task in tasks:
            if not task.done() or task.cancelled() or task.exception() is None:
                continue
            error = task.exception()
            if isinstance(error, (*_GONE, OSError)):
                logger.info("realtime.websocket_client_disconnected")
            else:
                logger.warning(
                    "realtime.websocket_task_failed", extra={"error": type(error).__name__}
                )

    async def _write(self, stream: LiveStream) -> str:
        """Forward events until the subscription ends or the connection's lifetime is up."""
        sub = stream.subscription
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.svc.settings.realtime_max_connection_seconds
        while True:
            await sub.wait(min(deadline, stream.wake_at()) - loop.time())
            for event in await stream.take():
                await self._send(event.message())
            if sub.close_reason is not None:
                return sub.close_reason
            if loop.time() >= deadline:
                sub.close(LIFETIME)
                return LIFETIME

    async def _stuck(self, stream: LiveStream) -> None:
        await stream.subscription.closed.wait()
        await asyncio.sleep(IN_FLIGHT_SECONDS + FINAL_SEND_SECONDS)

    async def _read(self, stream: LiveStream) -> None:
        limit = self.svc.settings.max_body_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            self._idle.clear()
            try:
                text = message.get("text")
                if text is None:
                    await self._send_error(None, MalformedRequest("Send JSON text messages."))
                elif len(text) > limit:
                    await self._send_error(
                        None, MalformedRequest(f"Messages are limited to {limit} characters.")
                    )
                else:
                    await self._handle(stream, text)
            finally:
                self._idle.set()

    async def _handle(self, stream: LiveStream, text: str) -> None:
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            await self._send_error(None, MalformedRequest("The message is not valid JSON."))
            return
        if not isinstance(data, dict):
            await self._send_error(None, MalformedRequest("A message must be a JSON object."))
            return
        if _has_lone_surrogate(data):
            # JSON can escape one (\ud800) though no UTF-8 text can carry it: it could be
            # neither stored nor echoed back (as the requestId) to the client.
            await self._send_error(
                None, MalformedRequest("The message contains an unpaired UTF-16 surrogate.")
            )
            return
        raw_id = data.get("requestId")
        request_id = raw_id if isinstance(raw_id, str) else None
        ctx = self._context(request_id)
        try:
            await self._dispatch(stream, data, request_id, ctx)
        except DomainError as exc:
            await self._send_error(request_id, exc, ctx.request_id)
        except _GONE:
            raise  # the client went away while we answered: the reader ends
        except Exception:
            logger.exception("realtime.websocket_message_failed")
            await self._send(
                {
                    "type": "error",
                    "requestId": request_id,
                    "problem": _internal_error(self.path, ctx.request_id),
                }
            )

    async def _dispatch(
        self,
        stream: LiveStream,
        data: dict[str, Any],
        request_id: str | None,
        ctx: RequestContext,
    ) -> None:
        kind = data.get("type")
        if kind not in MESSAGE_TYPES:
            raise ValidationFailed([FieldError("type", "must be update, submit or focus")])
        self._check_token(stream)
        await self._limit(RouteClass.FOCUS if kind == "focus" else RouteClass.WRITE)
        if kind == "focus":
            await self._focus(stream, data)
            return
        if not isinstance(raw_id := data.get("requestId"), str) or not raw_id:
            raise ValidationFailed([FieldError("requestId", "is required: a non-empty string")])
        hi = self.svc.health_information
        if kind == "update":
            body = PatchAnswers.parse({k: v for k, v in data.items() if k not in _ENVELOPE})
            result = await self.svc.writes.run(
                ctx,
                action=SAVE,
                kit_id=self.kit_id,
                operation=lambda uow: hi.patch(
                    uow, ctx, self.kit_id, body.answers, base_version=body.base_version
                ),
            )
        else:
            extra = sorted(set(data) - _ENVELOPE)
            if extra:
                raise ValidationFailed([FieldError(key, "unknown field") for key in extra])
            result = await self.svc.writes.run(
                ctx,
                action=SUBMIT,
                kit_id=self.kit_id,
                operation=lambda uow: hi.submit(uow, ctx, self.kit_id),
            )
        await self._send({"type": "ack", "requestId": request_id, "version": result.state.version})

    async def _focus(self, stream: LiveStream, data: dict[str, Any]) -> None:
        extra = sorted(set(data) - {"type", "requestId", "field"})
        if extra:
            raise ValidationFailed([FieldError(key, "unknown field") for key in extra])
        field = data.get("field")
        if field is not None and (not isinstance(field, str) or not await self._is_question(field)):
            raise ValidationFailed([FieldError("field", "must be a question id or null")])
        await self.svc.hub.focus(stream.subscription, field)

    def _check_token(self, stream: LiveStream) -> None:
        """The token is checked at each message, not only at connect: once it expired, the
        message is refused and the connection ends (4401)."""
        assert self.actor is not None
        if self.actor.expired(time.time()):
            error = Unauthenticated(EXPIRED)
            stream.subscription.revoke(error)
            raise error

    async def _limit(self, route_class: RouteClass) -> None:
        """The same limiter and budgets as REST: a socket is not a way around them."""
        limiter = self.svc.rate_limiter
        if limiter is None:
            return
        assert self.actor is not None
        client = self.ws.client
        decision = await limiter.check(
            route_class,
            user_id=self.actor.user_id,
            address=client.host if client else "unknown",
        )
        if not decision.allowed:
            raise RateLimited(decision.reset_after)

    async def _is_question(self, field: str) -> bool:
        """A question of the kit's questionnaire version: looked up again only on a miss (the
        kit may have been bound or moved since), so focus messages cost no query as a rule."""
        if self._questionnaire is not None and self._questionnaire.item(field) is not None:
            return True
        async with self.svc.uows.read() as uow:
            self._questionnaire = await self.svc.health_information.questionnaire_of(
                uow, self.kit_id
            )
        return self._questionnaire.item(field) is not None

    def _context(self, request_id: str | None) -> RequestContext:
        """Audit rows carry the client's requestId when it is sane, so both sides can match."""
        assert self.actor is not None
        audit_id = request_id if request_id and _SANE_ID.fullmatch(request_id) else None
        client = self.ws.client
        return RequestContext(
            actor=self.actor,
            channel=Channel.WEBSOCKET,
            request_id=audit_id or str(uuid.uuid4()),
            client_address=client.host if client else None,
            user_agent=self.ws.headers.get("user-agent"),
        )

    async def _send_error(
        self, request_id: str | None, error: DomainError, problem_request_id: str | None = None
    ) -> None:
        problem = domain_problem(
            error, instance=self.path, request_id=problem_request_id or self.connection_id
        )
        await self._send({"type": "error", "requestId": request_id, "problem": problem})

    async def _send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        async with self._send_lock:
            await self.ws.send_text(text)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            async with asyncio.timeout(FINAL_SEND_SECONDS):
                await self.ws.close(code, reason[:120])


_ENVELOPE = frozenset({"type", "requestId"})


def _has_lone_surrogate(value: Any, depth: int = 0) -> bool:
    """True when any string in ``value`` (keys too) holds an unpaired UTF-16 surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if depth > 64:  # json.loads already bounded the depth (RecursionError); stay cheap
        return False
    if isinstance(value, dict):
        return any(
            _has_lone_surrogate(k, depth + 1) or _has_lone_surrogate(v, depth + 1)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_has_lone_surrogate(v, depth + 1) for v in value)
    return False


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _internal_error(instance: str, request_id: str | None) -> dict[str, Any]:
    return problem_body(
        status=500,
        code="internal-error",
        title="Internal server error",
        detail="Something failed on our side. Quote the request id when you report it.",
        instance=instance,
        request_id=request_id,
    )
