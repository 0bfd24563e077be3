"""Recording events in the outbox, inside the transaction of the change they report.

``Outbox.on_change`` is registered with ``HealthInformationService.add_transactional_listener``:
it runs inside the write's transaction, so the submission and its event commit together or not
at all. A crash between "saved" and "forwarded" cannot lose an event, and a rolled-back write
never forwards anything.

The payload is the request body itself, made once by ``encode_payload`` and stored as text
through a ``PayloadCodec`` (the seam where encryption at rest will wrap it). Every retry sends
the same bytes, and nothing stored later (answers, amendments) can change an event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import Table, delete, func, insert, select

from healthinfo.common.clock import Clock, to_rfc3339, utc_now
from healthinfo.common.uow import UnitOfWork
from healthinfo.db.models import OutboxEvent
from healthinfo.health_information.model import Status

if TYPE_CHECKING:  # the worker imports this module; it needs none of the service
    from healthinfo.health_information.service import ChangeEvent

OUTBOX = cast(Table, OutboxEvent.__table__)

SUBMITTED = "health-information.submitted"
AMENDED = "health-information.amended"

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"
STATES = (PENDING, DELIVERED, DEAD)

WakeUp = Callable[[], Awaitable[None]]


class PayloadCodec(Protocol):
    """Stored text ↔ request body text; the kit id is there for associated data and key choice.

    Async like ``AnswerCodec``: an encrypting codec looks the kit's key up.
    """

    async def encode(self, kit_id: str, body: str) -> str: ...

    async def decode(self, kit_id: str, stored: str) -> str: ...


class PlainPayloadCodec:
    """Stores the body as it is (the default until encryption at rest wraps it)."""

    async def encode(self, kit_id: str, body: str) -> str:
        return body

    async def decode(self, kit_id: str, stored: str) -> str:
        return stored


def encode_payload(
    *,
    event_id: str,
    event_type: str,
    occurred_at: datetime,
    kit_id: str,
    version: int,
    representation: Mapping[str, Any],
) -> str:
    """The contract's event body as compact JSON: the one place that makes a payload."""
    body = {
        "eventId": event_id,
        "type": event_type,
        "occurredAt": to_rfc3339(occurred_at),
        "kitId": kit_id,
        "version": version,
        "healthInformation": representation,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def event_type_of(event: ChangeEvent) -> str | None:
    """Which change is forwarded: a submission, or (once they exist) an amendment."""
    if event.state.status is Status.AMENDED:
        return AMENDED
    if event.submitted and event.state.status is Status.SUBMITTED:
        return SUBMITTED
    return None


class WakeUps:
    """Who to tell once an outbox change committed (the in-process relay's wake-up event)."""

    def __init__(self) -> None:
        self._hooks: list[WakeUp] = []

    def subscribe(self, hook: WakeUp) -> None:
        self._hooks.append(hook)

    def after_commit(self, uow: UnitOfWork) -> None:
        for hook in self._hooks:
            uow.after_commit(hook)


class Outbox:
    """Adds events to the outbox in the caller's transaction; never commits."""

    def __init__(
        self,
        *,
        codec: PayloadCodec | None = None,
        wakeups: WakeUps | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._codec = codec or PlainPayloadCodec()
        self.wakeups = wakeups or WakeUps()
        self._clock = clock

    async def on_change(self, uow: UnitOfWork, event: ChangeEvent) -> None:
        """The transactional listener: record submissions (and amendments), ignore saves."""
        event_type = event_type_of(event)
        if event_type is None:
            return
        await self.record(
            uow,
            event_type=event_type,
            kit_id=event.state.kit_id,
            version=event.state.version,
            occurred_at=event.state.updated_at,
            representation=event.state.to_representation(),
        )

    async def record(
        self,
        uow: UnitOfWork,
        *,
        event_type: str,
        kit_id: str,
        version: int,
        occurred_at: datetime,
        representation: Mapping[str, Any],
    ) -> str:
        """Append an event for ``kit_id`` as the kit's next in sequence; returns its event id.

        The kit's sequence is read and extended in the same transaction. Writers of one kit are
        serialised by the conditional update of its row (and on SQLite by the write lock), and
        ``(kit_id, kit_sequence)`` is unique as a second guard.
        """
        event_id = str(uuid.uuid4())
        text = encode_payload(
            event_id=event_id,
            event_type=event_type,
            occurred_at=occurred_at,
            kit_id=kit_id,
            version=version,
            representation=representation,
        )
        last = await uow.session.scalar(
            select(func.coalesce(func.max(OUTBOX.c.kit_sequence), 0)).where(
                OUTBOX.c.kit_id == kit_id
            )
        )
        now = self._clock()
        await uow.session.execute(
            insert(OUTBOX).values(
                event_id=event_id,
                event_type=event_type,
                kit_id=kit_id,
                kit_sequence=int(last or 0) + 1,
                version=version,
                occurred_at=occurred_at,
                payload=await self._codec.encode(kit_id, text),
                state=PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        self.wakeups.after_commit(uow)
        return event_id

    async def forget_kit(self, uow: UnitOfWork, kit_id: str) -> None:
        """The erasure hook: every event of the kit goes, in the erasure's transaction.

        Payloads hold answers, so delivered events go too, and pending ones must never be sent
        after the data was erased. (A request already in flight cannot be called back; its
        outcome then finds no row and is dropped.)
        """
        await uow.session.execute(delete(OUTBOX).where(OUTBOX.c.kit_id == kit_id))
