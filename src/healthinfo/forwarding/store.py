"""SQL for the relay and the admin routes: claim due events, record outcomes, list, re-queue.

Claiming takes a *lease*: ``lease_owner`` and ``leased_until`` are set in a short transaction
that commits before any request is sent, so no transaction stays open across the network. A
worker that dies keeps its claims only until the lease ends; then any relay claims them again.
Every outcome is a conditional ``UPDATE … WHERE lease_owner = :claim`` whose row count says
whether the claim was still ours.

Per-kit order: an event is claimable only when every earlier event of its kit (lower
``kit_sequence``) is delivered. Pending and dead predecessors both hold it back, so the lab
never receives version 5 of a kit before version 4. Delivered is final, so a claimer that reads
a slightly stale snapshot can only be more cautious, never less.

PostgreSQL: ``FOR UPDATE OF outbox_events SKIP LOCKED`` lets any number of relays claim at once
without waiting for each other or claiming the same row. SQLite: write transactions start with
``BEGIN IMMEDIATE``, so a claim holds the database's single write lock from its first read and
claims are serialised by the database itself; several relays stay correct, they just queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, literal, or_, select, update

from healthinfo.common.clock import to_rfc3339
from healthinfo.common.sql import rowcount
from healthinfo.common.uow import UnitOfWork
from healthinfo.db.models import OutboxEvent
from healthinfo.forwarding.outbox import DEAD, DELIVERED, PENDING, PayloadCodec, PlainPayloadCodec

OUTBOX = cast(Table, OutboxEvent.__table__)
ERROR_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Claim:
    """An event this relay may send until its lease ends."""

    id: int
    event_id: str
    kit_id: str
    kit_sequence: int
    version: int
    body: bytes
    attempts: int
    first_attempt_at: datetime | None
    lease_owner: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outbox event as admins see it: its delivery state, never its payload."""

    id: int
    event_id: str
    event_type: str
    kit_id: str
    version: int
    state: str
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "type": self.event_type,
            "kitId": self.kit_id,
            "version": self.version,
            "state": self.state,
            "attempts": self.attempts,
            "createdAt": to_rfc3339(self.created_at),
            "nextAttemptAt": to_rfc3339(self.next_attempt_at) if self.state == PENDING else None,
            "lastAttemptAt": _time(self.last_attempt_at),
            "lastStatus": self.last_status,
            "lastError": self.last_error,
            "deliveredAt": _time(self.delivered_at),
            "deadAt": _time(self.dead_at),
        }


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    oldest_pending_created_at: datetime | None
    dead: int


def _time(moment: datetime | None) -> str | None:
    return to_rfc3339(moment) if moment else None


_DELIVERY_COLUMNS = (
    OUTBOX.c.id,
    OUTBOX.c.event_id,
    OUTBOX.c.event_type,
    OUTBOX.c.kit_id,
    OUTBOX.c.version,
    OUTBOX.c.state,
    OUTBOX.c.attempts,
    OUTBOX.c.next_attempt_at,
    OUTBOX.c.last_attempt_at,
    OUTBOX.c.last_status,
    OUTBOX.c.last_error,
    OUTBOX.c.created_at,
    OUTBOX.c.delivered_at,
    OUTBOX.c.dead_at,
)


class DeliveryStore:
    def __init__(self, *, codec: PayloadCodec | None = None) -> None:
        self._codec = codec or PlainPayloadCodec()

    async def claim(
        self, uow: UnitOfWork, *, owner: str, now: datetime, lease: timedelta, limit: int
    ) -> list[Claim]:
        """Lease up to ``limit`` due events, at most one per kit (the oldest undelivered)."""
        earlier = OUTBOX.alias("earlier")
        held_back = (
            select(earlier.c.id)
            .where(
                earlier.c.kit_id == OUTBOX.c.kit_id,
                earlier.c.kit_sequence < OUTBOX.c.kit_sequence,
                earlier.c.state != DELIVERED,
            )
            .exists()
        )
        query = (
            select(
                OUTBOX.c.id,
                OUTBOX.c.event_id,
                OUTBOX.c.kit_id,
                OUTBOX.c.kit_sequence,
                OUTBOX.c.version,
                OUTBOX.c.payload,
                OUTBOX.c.attempts,
                OUTBOX.c.first_attempt_at,
            )
            .where(
                OUTBOX.c.state == PENDING,
                OUTBOX.c.next_attempt_at <= now,
                or_(OUTBOX.c.leased_until.is_(None), OUTBOX.c.leased_until <= now),
                ~held_back,
            )
            .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
            .limit(limit)
        )
        if uow.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=OUTBOX)
        rows = (await uow.session.execute(query)).all()
        claims: list[Claim] = []
        for row in rows:
            try:
                body = (await self._codec.decode(row.kit_id, row.payload)).encode("utf-8")
            except Exception as exc:
                # One unreadable payload (a lost key) must not stop every other delivery.
                await self._bury(uow, row.id, f"payload unreadable ({type(exc).__name__})", now)
                continue
            claims.append(
                Claim(
                    id=row.id,
                    event_id=row.event_id,
                    kit_id=row.kit_id,
                    kit_sequence=row.kit_sequence,
                    version=row.version,
                    body=body,
                    attempts=row.attempts,
                    first_attempt_at=row.first_attempt_at,
                    lease_owner=owner,
                )
            )
        if claims:
            await uow.session.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id.in_([claim.id for claim in claims]))
                .values(leased_until=now + lease, lease_owner=owner)
            )
        return claims

    async def _bury(self, uow: UnitOfWork, row_id: int, error: str, now: datetime) -> None:
        await uow.session.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id == row_id)
            .values(state=DEAD, dead_at=now, last_error=error[:ERROR_LENGTH])
        )

    async def mark_delivered(
        self, uow: UnitOfWork, claim: Claim, *, status: int, attempted_at: datetime, now: datetime
    ) -> bool:
        """Delivered: final. False when the lease was lost (another relay re-sent it)."""
        return await self._finish(
            uow,
            claim,
            attempted_at,
            state=DELIVERED,
            last_status=status,
            last_error=None,
            delivered_at=now,
        )

    async def mark_failed(
        self,
        uow: UnitOfWork,
        claim: Claim,
        *,
        status: int | None,
        error: str,
        attempted_at: datetime,
        now: datetime,
        retry_at: datetime | None,
    ) -> bool:
        """Schedule the next attempt at ``retry_at``, or dead-letter when it is None."""
        values: dict[str, Any] = {"last_status": status, "last_error": error[:ERROR_LENGTH]}
        if retry_at is None:
            values.update(state=DEAD, dead_at=now)
        else:
            values.update(state=PENDING, next_attempt_at=retry_at)
        return await self._finish(uow, claim, attempted_at, **values)

    async def _finish(
        self, uow: UnitOfWork, claim: Claim, attempted_at: datetime, **values: Any
    ) -> bool:
        result = await uow.session.execute(
            update(OUTBOX)
            .where(
                OUTBOX.c.id == claim.id,
                OUTBOX.c.lease_owner == claim.lease_owner,
                OUTBOX.c.state == PENDING,
            )
            .values(
                attempts=OUTBOX.c.attempts + 1,
                first_attempt_at=func.coalesce(
                    OUTBOX.c.first_attempt_at,
                    literal(attempted_at, type_=OUTBOX.c.first_attempt_at.type),
                ),
                last_attempt_at=attempted_at,
                leased_until=None,
                lease_owner=None,
                **values,
            )
        )
        return rowcount(result) == 1

    async def list(
        self, uow: UnitOfWork, *, state: str | None, limit: int, before_id: int | None
    ) -> list[Delivery]:
        """Newest first, optionally of one state; ``before_id`` continues a page."""
        query = select(*_DELIVERY_COLUMNS)
        if state is not None:
            query = query.where(OUTBOX.c.state == state)
        if before_id is not None:
            query = query.where(OUTBOX.c.id < before_id)
        rows = (await uow.session.execute(query.order_by(OUTBOX.c.id.desc()).limit(limit))).all()
        return [Delivery(**row._asdict()) for row in rows]

    async def get(self, uow: UnitOfWork, event_id: str) -> Delivery | None:
        row = (
            await uow.session.execute(
                select(*_DELIVERY_COLUMNS).where(OUTBOX.c.event_id == event_id)
            )
        ).first()
        return Delivery(**row._asdict()) if row else None

    async def requeue_dead(self, uow: UnitOfWork, event_id: str, *, now: datetime) -> bool:
        """Dead → pending with a fresh retry period; False when it was not dead (row count)."""
        result = await uow.session.execute(
            update(OUTBOX)
            .where(OUTBOX.c.event_id == event_id, OUTBOX.c.state == DEAD)
            .values(
                state=PENDING,
                attempts=0,
                next_attempt_at=now,
                first_attempt_at=None,
                dead_at=None,
                leased_until=None,
                lease_owner=None,
            )
        )
        return rowcount(result) == 1

    async def backlog(self, uow: UnitOfWork) -> Backlog:
        rows = (
            await uow.session.execute(
                select(OUTBOX.c.state, func.count(), func.min(OUTBOX.c.created_at))
                .where(OUTBOX.c.state.in_([PENDING, DEAD]))
                .group_by(OUTBOX.c.state)
            )
        ).all()
        found = {row[0]: (int(row[1]), row[2]) for row in rows}
        pending, oldest = found.get(PENDING, (0, None))
        return Backlog(
            pending=pending, oldest_pending_created_at=oldest, dead=found.get(DEAD, (0,))[0]
        )
