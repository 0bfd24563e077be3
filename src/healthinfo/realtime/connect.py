"""Opening a live connection, the same way for SSE and WebSocket.

Authenticate (``Authorization: Bearer`` or, because browsers' EventSource and WebSocket cannot
set headers, ``?access_token=``) and count the connection against the stream rate limits,
check READ access through the service in a short read
transaction, take a place in the room (subscribe first), then read the snapshot or the replay
in a second short transaction. No transaction stays open while streaming.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from healthinfo.auth.access import Permission
from healthinfo.auth.actor import Actor
from healthinfo.common.context import RequestContext
from healthinfo.errors import FieldError, RateLimited, Unauthenticated, ValidationFailed
from healthinfo.health_information.disclosure import audit_read
from healthinfo.infra.ratelimit import RouteClass
from healthinfo.realtime.events import LiveEvent
from healthinfo.realtime.hub import RoomHub
from healthinfo.realtime.stream import LiveStream
from healthinfo.services import Services

_VERSION = re.compile(r"[0-9]{1,10}")
KIT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


async def admit(
    svc: Services,
    *,
    authorization: str | None,
    access_token: str | None,
    address: str | None,
) -> Actor:
    """Authenticate a stream's opening and count it against the stream-connect rate limits.

    Counted like a REST request (infra/ratelimit.py): by address always, by user once the token
    verified, before a bad token is refused, so reconnect storms and token guessing over
    streams meet the same limits as REST. Raises Unauthenticated or RateLimited.
    """
    try:
        actor: Actor | Unauthenticated = await authenticate(
            svc, authorization=authorization, access_token=access_token
        )
    except Unauthenticated as exc:
        actor = exc
    if svc.rate_limiter is not None:
        decision = await svc.rate_limiter.check(
            RouteClass.STREAM,
            user_id=actor.user_id if isinstance(actor, Actor) else None,
            address=address or "unknown",
        )
        if not decision.allowed:
            raise RateLimited(decision.reset_after)
    if isinstance(actor, Unauthenticated):
        raise actor
    return actor


async def authenticate(
    svc: Services, *, authorization: str | None, access_token: str | None
) -> Actor:
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("The Authorization header must be 'Bearer <token>'.")
        return await svc.tokens.verify(token.strip())
    if access_token:
        return await svc.tokens.verify(access_token)
    raise Unauthenticated(
        "A bearer token is required (Authorization: Bearer … or the access_token parameter)."
    )


def last_event_id(header: str | None, query: str | None) -> int | None:
    """The version to resume after: the header (what EventSource resends) wins over the query."""
    raw = header if header is not None and header.strip() else query
    if raw is None or not raw.strip():
        return None
    if not _VERSION.fullmatch(raw.strip()):
        raise ValidationFailed([FieldError("lastEventId", "must be a version number")])
    return int(raw.strip())


def check_kit_id(kit_id: str) -> None:
    if not KIT_ID.fullmatch(kit_id):
        raise ValidationFailed([FieldError("kitId", "must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")])


@dataclass(slots=True)
class Opened:
    stream: LiveStream
    opening: list[LiveEvent]


async def open_stream(
    svc: Services, hub: RoomHub, *, ctx: RequestContext, kit_id: str, resume_after: int | None
) -> Opened:
    """Raises NotFound/Forbidden (no access), RoomFull, Unavailable; never leaves a place taken.

    The opening (a snapshot or a replay) discloses answers, so it is audited as a read, with
    the channel, before it is sent, as a REST GET is. Live events after it are not audited one
    by one: the audit trail records who opened the stream and from which version.
    """
    actor = ctx.actor
    async with svc.uows.read() as uow:
        access = await svc.kits.authorize(uow, actor, kit_id, Permission.READ)
    sub = await hub.join(kit_id, actor.user_id)
    try:
        stream = LiveStream(
            svc=svc,
            actor=actor,
            kit_id=kit_id,
            subscription=sub,
            data_created_at=access.data_created_at,
        )
        opening = await stream.open(resume_after)
        if opening:
            await audit_read(svc, ctx, kit_id, stream.last_version)
        return Opened(stream, opening)
    except BaseException:
        await hub.leave(sub)
        raise
