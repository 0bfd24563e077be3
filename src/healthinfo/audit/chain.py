"""The audit hash chain: each event carries the hash of the kit's previous event.

``hash = sha256(prev_hash + canonical JSON of the event)``. Altering, deleting or inserting an
event anywhere breaks every later link, and ``verify`` names the first broken one. One chain
per kit: appends to a kit serialize on its head row (``audit_chain_heads``: the kit's newest
hash, the one before it and the chain's length), which writes to one kit already do; different
kits never contend.

Every audited request appends (every write, and every read of answers), so on PostgreSQL the
append is one statement, built once: an upsert of the head that computes the new link in SQL
(``encode(sha256(convert_to(prev, 'UTF8') || canonical), 'hex')``, byte for byte
``link_hash``, since ``canonical`` does not depend on the previous hash), feeding the event's
INSERT through a ``WITH``. ``RETURNING`` shows no old values before PostgreSQL 18, so the head
keeps ``prev_hash``, its hash before the last append, for the event to carry. On SQLite the
append stays three statements (read the head, advance it, insert the event), also built once.
``verify`` recomputes every link in Python, whichever path wrote it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    LargeBinary,
    String,
    Table,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    update,
)
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


def _link_sql(prev_hash: ColumnElement[Any]) -> ColumnElement[str]:
    """``link_hash`` in SQL: hex of sha256(UTF-8 bytes of ``prev_hash`` || canonical bytes)."""
    utf8 = func.convert_to(prev_hash, literal_column("'UTF8'"))
    digest = func.sha256(utf8.op("||", return_type=LargeBinary)(_CANONICAL))
    return func.encode(digest, literal_column("'hex'"), type_=String)


# Built once, not on every append: every audited request appends, reads included.
EVENTS = cast(Table, AuditEvent.__table__)
_INSERTED = [column for column in EVENTS.columns if column.key != "id"]  # id: the sequence's
_WRITTEN = [column for column in _INSERTED if column.key not in ("prev_hash", "hash")]
_CANONICAL = bindparam("canonical", type_=LargeBinary)
_GENESIS_SQL = literal_column(f"'{GENESIS}'", String)

# PostgreSQL. The upsert creates the head (genesis) or, on conflict, advances it; ON CONFLICT
# DO UPDATE locks the head row and reads its newest committed version, so appends to one kit
# serialize exactly as SELECT … FOR UPDATE did, and different kits never contend. RETURNING
# shows only new values (before PostgreSQL 18), hence ``prev_hash`` on the head: the hash it
# had before this append, which the event needs.
_HEAD = (
    postgresql.insert(HEADS)
    .values(
        kit_id=bindparam("kit_id", type_=HEADS.c.kit_id.type),
        prev_hash=_GENESIS_SQL,
        last_hash=_link_sql(_GENESIS_SQL),
        length=literal_column("1", Integer),
    )
    .on_conflict_do_update(
        index_elements=[HEADS.c.kit_id],
        set_={
            "prev_hash": HEADS.c.last_hash,
            "last_hash": _link_sql(HEADS.c.last_hash),
            "length": HEADS.c.length + literal_column("1", Integer),
        },
    )
    .returning(HEADS.c.prev_hash, HEADS.c.last_hash)
    .cte("head")
)
_APPEND_POSTGRESQL = insert(EVENTS).from_select(
    [*_WRITTEN, EVENTS.c.prev_hash, EVENTS.c.hash],
    select(
        *(bindparam(column.key, type_=column.type) for column in _WRITTEN),
        _HEAD.c.prev_hash,
        _HEAD.c.last_hash,
    ),
)

# SQLite (no sha256 in SQL, no INSERT in a WITH): the no-op upsert creates the head if absent
# and returns its hash; the UPDATE's right-hand sides read the row as it was.
_LOCK_HEAD_SQLITE = (
    sqlite.insert(HEADS)
    .values(kit_id=bindparam("kit_id"), last_hash=GENESIS, length=0)
    .on_conflict_do_update(index_elements=[HEADS.c.kit_id], set_={"length": HEADS.c.length})
    .returning(HEADS.c.last_hash)
)
_ADVANCE_HEAD_SQLITE = (
    update(HEADS)
    .where(HEADS.c.kit_id == bindparam("head_kit_id"))
    .values(
        prev_hash=HEADS.c.last_hash,
        last_hash=bindparam("new_hash"),
        length=HEADS.c.length + 1,
    )
)
_INSERT_EVENT = insert(EVENTS)


async def append(uow: UnitOfWork, event: AuditEvent) -> None:
    """Write ``event`` chained onto its kit's head, inside the caller's transaction.

    PostgreSQL: one statement (``_APPEND_POSTGRESQL``), which computes the link in SQL; the
    event's ``prev_hash`` and ``hash`` are written but not read back (no caller needs them).
    SQLite: the head is read (the write transaction already holds the database lock), the link
    computed here and set on ``event``, the head advanced and the event inserted.
    """
    session = uow.session
    if session.get_bind().dialect.name == "postgresql":
        values = {column.key: getattr(event, column.key) for column in _WRITTEN}
        values[_CANONICAL.key] = canonical(event)
        await session.execute(_APPEND_POSTGRESQL, values)
        return
    prev_hash = (await session.execute(_LOCK_HEAD_SQLITE, {"kit_id": event.kit_id})).scalar_one()
    event.prev_hash = prev_hash
    event.hash = link_hash(prev_hash, event)
    advance = {"head_kit_id": event.kit_id, "new_hash": event.hash}
    await session.execute(_ADVANCE_HEAD_SQLITE, advance)
    await session.execute(
        _INSERT_EVENT, {column.key: getattr(event, column.key) for column in _INSERTED}
    )


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
