"""The audit hash chain: each event carries the hash of the kit's previous event.

``hash = sha256(prev_hash + canonical JSON of the event)``. Altering, deleting or inserting an
event anywhere breaks every later link, and ``verify`` names the first broken one. One chain
per kit: appends to a kit serialize on its head row (``FOR UPDATE``), which writes to one kit
already do; different kits never contend.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from healthinfo.common.uow import UnitOfWork
from healthinfo.db.models import AuditChainHead, AuditEvent

HEADS = cast(Table, AuditChainHead.__table__)
GENESIS = "0" * 64


def canonical(event: Any) -> bytes:
    """The fields that the hash covers, in a stable form."""
    document = {
        "eventId": event.event_id,
        "at": event.at.isoformat(timespec="microseconds"),
        "kitId": event.kit_id,
        "actor": event.actor,
        "action": event.action,
        "channel": event.channel,
        "requestId": event.request_id,
        "versionBefore": event.version_before,
        "versionAfter": event.version_after,
        "changed": list(event.changed),
        "outcome": event.outcome,
        "clientAddress": event.client_address,
        "userAgent": event.user_agent,
        "reason": event.reason,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def link_hash(prev_hash: str, event: Any) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()


async def append(uow: UnitOfWork, event: AuditEvent) -> None:
    """Chain ``event`` onto its kit's head, inside the caller's transaction."""
    head = await _lock_head(uow, event.kit_id)
    event.prev_hash = head.last_hash
    event.hash = link_hash(head.last_hash, event)
    await uow.session.execute(
        update(HEADS)
        .where(HEADS.c.kit_id == event.kit_id)
        .values(last_hash=event.hash, length=head.length + 1)
    )


async def _lock_head(uow: UnitOfWork, kit_id: str) -> Any:
    """Create the kit's head if absent, lock it and read it: one statement, not three.

    ``ON CONFLICT DO UPDATE`` with a no-op assignment takes the row lock that ``FOR UPDATE``
    took, and ``RETURNING`` hands back the head as it stands (on SQLite the write transaction
    already holds the database lock).
    """
    dialect = uow.session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(HEADS).values(kit_id=kit_id, last_hash=GENESIS, length=0)
    statement = statement.on_conflict_do_update(
        index_elements=[HEADS.c.kit_id], set_={"length": HEADS.c.length}
    )
    return (await uow.session.execute(statement.returning(HEADS.c.last_hash, HEADS.c.length))).one()


@dataclass(frozen=True, slots=True)
class BrokenLink:
    kit_id: str
    event_id: str
    reason: str


async def verify(uow: UnitOfWork, kit_id: str | None = None) -> tuple[int, BrokenLink | None]:
    """Walk the chains (one kit, or all); returns (events checked, first broken link or None)."""
    checked = 0
    async for kit, events in _chains(uow, kit_id):
        expected_prev = GENESIS
        for event in events:
            checked += 1
            if event.prev_hash != expected_prev:
                return checked, BrokenLink(
                    kit, event.event_id, "does not follow the previous event"
                )
            if event.hash != link_hash(expected_prev, event):
                return checked, BrokenLink(kit, event.event_id, "was altered after it was written")
            expected_prev = event.hash
        head = await uow.session.scalar(select(HEADS.c.last_hash).where(HEADS.c.kit_id == kit))
        if head is not None and head != expected_prev:
            last = events[-1].event_id if events else "-"
            return checked, BrokenLink(kit, last, "is not the newest event: events were removed")
    return checked, None


async def _chains(
    uow: UnitOfWork, kit_id: str | None
) -> AsyncIterator[tuple[str, list[AuditEvent]]]:
    query = select(AuditEvent).order_by(AuditEvent.kit_id, AuditEvent.id)
    if kit_id is not None:
        query = query.where(AuditEvent.kit_id == kit_id)
    current: str | None = None
    batch: list[AuditEvent] = []
    for event in await uow.session.scalars(query):
        if event.kit_id != current and current is not None:
            yield current, batch
            batch = []
        current = event.kit_id
        batch.append(event)
    if current is not None:
        yield current, batch
    heads = select(HEADS.c.kit_id)
    if kit_id is not None:
        heads = heads.where(HEADS.c.kit_id == kit_id)
    seen = {current} if current else set()
    for orphan in await uow.session.scalars(heads):
        if orphan not in seen and kit_id is None:
            yield orphan, []
