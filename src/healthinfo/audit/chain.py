"""The audit hash chain: each event carries the keyed hash of the kit's previous event.

``hash = HMAC-SHA256(audit key, key id + prev_hash + canonical JSON of the event)``, the key
held outside the database (``audit.keys``) and its id recorded on the event, so rotation keeps
old links verifiable. Altering, deleting or inserting an event anywhere breaks every later link,
and someone with only the database cannot recompute them; ``verify`` names the first broken one.
Events written before revision 0009 keep their unkeyed links (``sha256(prev_hash +
canonical)``, null key id): a legacy prefix, allowed only before a chain's first keyed link.

One chain per kit: appends to a kit serialize on its head row (``audit_chain_heads``: the
kit's newest hash, the one before it and the chain's length); different kits never contend.
The head can be rewound by whoever writes the database, together with the events after it:
signed checkpoints of the heads, written outside the database (``audit.checkpoints``), pin
each kit's head, and ``verify`` fails a chain shorter than a checkpoint saw it.

The link is computed here, not in SQL, so the key never reaches the database; the previous
hash must be read first, so an append is two statements on PostgreSQL (lock and read the head;
advance it and insert the event through a ``WITH``) and three on SQLite, all built once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Table,
    and_,
    bindparam,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from healthinfo.audit.keys import AuditKeyring
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


LINK_DOMAIN = b"healthinfo-audit-link/1\n"


def keyed_message(key_id: str, prev_hash: str, event: Any) -> bytes:
    """What a keyed link's HMAC covers: the key id, the previous link and the event."""
    return b"%s%s\n%s\n%s" % (LINK_DOMAIN, key_id.encode(), prev_hash.encode(), canonical(event))


def link_hash(keys: AuditKeyring, prev_hash: str, event: Any, key_id: str | None = None) -> str:
    """The keyed link: HMAC-SHA256 with audit key ``key_id`` (default: the active one)."""
    key_id = key_id or keys.active_id
    return keys.mac(key_id, keyed_message(key_id, prev_hash, event))


def legacy_link_hash(prev_hash: str, event: Any) -> str:
    """The unkeyed link of revisions 0005-0007, which anyone with the database can compute."""
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()


# Built once, not on every append: every audited request appends, reads included.
EVENTS = cast(Table, AuditEvent.__table__)
_INSERTED = [column for column in EVENTS.columns if column.key != "id"]  # id: the sequence's


def _lock_head(dialect: Any) -> Any:
    """Create the head (genesis) if absent, lock it and return its hash, in one statement.

    The no-op ``ON CONFLICT DO UPDATE`` locks the head row and reads its newest committed
    version (PostgreSQL, READ COMMITTED), so appends to one kit serialize on it, first appends
    included, and different kits never contend.
    """
    return (
        dialect.insert(HEADS)
        .values(kit_id=bindparam("kit_id"), last_hash=GENESIS, length=0)
        .on_conflict_do_update(index_elements=[HEADS.c.kit_id], set_={"length": HEADS.c.length})
        .returning(HEADS.c.last_hash)
    )


_LOCK_HEAD = {"postgresql": _lock_head(postgresql), "sqlite": _lock_head(sqlite)}
_ADVANCE_HEAD = (
    update(HEADS)
    .where(HEADS.c.kit_id == bindparam("head_kit_id"))
    .values(
        prev_hash=HEADS.c.last_hash,
        last_hash=bindparam("new_hash"),
        length=HEADS.c.length + literal_column("1", Integer),
    )
)
# PostgreSQL: advance the head and insert the event in one statement (the event rows come
# from the head's RETURNING, so the event exists exactly when the head moved). The event's
# parameters are prefixed: one named like a head column would become a SET of the UPDATE.
_ADVANCED = _ADVANCE_HEAD.returning(HEADS.c.kit_id).cte("advanced")
_ADVANCE_AND_INSERT_POSTGRESQL = insert(EVENTS).from_select(
    list(_INSERTED),
    select(*(bindparam(f"event_{c.key}", type_=c.type) for c in _INSERTED)).select_from(_ADVANCED),
)
_INSERT_EVENT = insert(EVENTS)


async def append(uow: UnitOfWork, keys: AuditKeyring, event: AuditEvent) -> None:
    """Write ``event`` chained onto its kit's head with the active audit key, in the caller's
    transaction.

    The link is an HMAC computed here, so the key never reaches the database (not even as a
    statement parameter, which a database insider could log). That needs the previous hash
    before the write: the head is locked and read first. PostgreSQL: two statements (lock the
    head; advance it and insert the event). SQLite (no INSERT in a WITH): three.
    """
    session = uow.session
    dialect = session.get_bind().dialect.name
    lock = _LOCK_HEAD["postgresql" if dialect == "postgresql" else "sqlite"]
    prev_hash = (await session.execute(lock, {"kit_id": event.kit_id})).scalar_one()
    event.prev_hash = prev_hash
    event.key_id = keys.active_id
    event.hash = link_hash(keys, prev_hash, event)
    values = {column.key: getattr(event, column.key) for column in _INSERTED}
    advance = {"head_kit_id": event.kit_id, "new_hash": event.hash}
    if dialect == "postgresql":
        prefixed = {f"event_{key}": value for key, value in values.items()}
        await session.execute(_ADVANCE_AND_INSERT_POSTGRESQL, {**prefixed, **advance})
        return
    await session.execute(_ADVANCE_HEAD, advance)
    await session.execute(_INSERT_EVENT, values)


def _lock_heads(dialect: Any, count: int) -> Any:
    """``_lock_head`` for ``count`` kits in one statement, returning each kit's hash."""
    rows = [
        {"kit_id": bindparam(f"kit_id_{i}"), "last_hash": GENESIS, "length": 0}
        for i in range(count)
    ]
    return (
        dialect.insert(HEADS)
        .values(rows)
        .on_conflict_do_update(index_elements=[HEADS.c.kit_id], set_={"length": HEADS.c.length})
        .returning(HEADS.c.kit_id, HEADS.c.last_hash)
    )


async def append_many(uow: UnitOfWork, keys: AuditKeyring, events: list[AuditEvent]) -> None:
    """``append`` for events of distinct kits, in three statements however many there are.

    For bulk disclosures (one event per exported kit, ``fhir/bulk``): one multi-row head lock,
    one batched head advance, one batched insert, instead of two or three round trips a kit.
    The heads are locked in kit id order, the order any other multi-kit appender uses, so two
    of them cannot deadlock; single-kit appends lock one head and cannot close a cycle.
    """
    if not events:
        return
    kit_ids = [event.kit_id for event in events]
    if len(set(kit_ids)) != len(kit_ids):
        raise ValueError("append_many takes at most one event per kit")
    events = sorted(events, key=lambda event: event.kit_id)
    session = uow.session
    dialect: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = _lock_heads(dialect, len(events))
    params = {f"kit_id_{i}": event.kit_id for i, event in enumerate(events)}
    rows = (await session.execute(statement, params)).all()
    previous: dict[str, str] = {row[0]: row[1] for row in rows}
    advances = []
    for event in events:
        event.prev_hash = previous[event.kit_id]
        event.key_id = keys.active_id
        event.hash = link_hash(keys, event.prev_hash, event)
        advances.append({"head_kit_id": event.kit_id, "new_hash": event.hash})
    await session.execute(_ADVANCE_HEAD, advances)
    await session.execute(
        _INSERT_EVENT,
        [{column.key: getattr(event, column.key) for column in _INSERTED} for event in events],
    )


@dataclass(frozen=True, slots=True)
class BrokenLink:
    kit_id: str
    event_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Pin:
    """A kit's head as a signed checkpoint saw it: its ``seq``-th event had hash ``hash``."""

    seq: int
    hash: str
    checkpoint: int


@dataclass(frozen=True, slots=True)
class Pins:
    """What the checkpoints vouch for: each kit's newest pinned head, and the id of the newest
    unkeyed (legacy) event when the first checkpoint was made (None: not known)."""

    heads: Mapping[str, Pin]
    legacy_up_to: int | None = None


NO_PINS = Pins({})
PAGE = 2000  # events per query, and kits per head lookup, so memory stays flat


async def verify(
    uow: UnitOfWork, keys: AuditKeyring, kit_id: str | None = None, pins: Pins = NO_PINS
) -> tuple[int, BrokenLink | None]:
    """Walk the chains (one kit, or all) against the checkpoints' pins; returns (events
    checked, first broken link or None).

    Each link must be the HMAC of its predecessor and itself with a configured audit key
    (unkeyed links only as a legacy prefix), each head must match its newest event, and each
    pinned head must still be in its chain: fewer events than a checkpoint saw means events
    were deleted or the head rewound, even when the database was made consistent again.
    """
    checked = 0
    unseen = set(pins.heads) if kit_id is None else {kit_id} & set(pins.heads)
    pending: list[tuple[str, str, str, int]] = []  # kit, newest event id, newest hash, length
    async for kit, events in _chains(uow, kit_id):
        unseen.discard(kit)
        checked += len(events)
        broken, summary = _walk(keys, kit, events, pins)
        if broken is not None:
            return checked, broken
        pending.append(summary)
        if len(pending) >= PAGE:
            if (broken := await _check_heads(uow, pending)) is not None:
                return checked, broken
            pending = []
    if (broken := await _check_heads(uow, pending)) is not None:
        return checked, broken
    for kit in sorted(unseen):
        pin = pins.heads[kit]
        return checked, BrokenLink(
            kit,
            "-",
            f"has no events, but checkpoint {pin.checkpoint} saw {pin.seq}: events were deleted",
        )
    if kit_id is None and (orphan := await _orphan_head(uow)) is not None:
        return checked, BrokenLink(orphan, "-", "has a head but no events: events were removed")
    return checked, None


def _walk(
    keys: AuditKeyring, kit: str, events: list[AuditEvent], pins: Pins
) -> tuple[BrokenLink | None, tuple[str, str, str, int]]:
    expected_prev = GENESIS
    keyed = False
    pin = pins.heads.get(kit)
    for position, event in enumerate(events, start=1):
        reason = None
        if event.prev_hash != expected_prev:
            reason = "does not follow the previous event"
        elif event.key_id is None:
            if keyed:
                reason = "is unkeyed after keyed events: the chain was rewritten"
            elif pins.legacy_up_to is not None and event.id > pins.legacy_up_to:
                reason = "is unkeyed but newer than the keyed chains: the chain was rewritten"
            elif event.hash != legacy_link_hash(expected_prev, event):
                reason = "was altered after it was written"
        else:
            keyed = True
            if not keys.has(event.key_id):
                reason = f"was linked with audit key {event.key_id!r}, which is not configured"
            elif not keys.matches(
                event.key_id, keyed_message(event.key_id, expected_prev, event), event.hash
            ):
                reason = "was altered after it was written"
        if reason is None and pin is not None and position == pin.seq and event.hash != pin.hash:
            reason = f"differs from checkpoint {pin.checkpoint}: events were rewritten"
        if reason is not None:
            return BrokenLink(kit, event.event_id, reason), ("", "", "", 0)
        expected_prev = event.hash or ""
    last = events[-1].event_id if events else "-"
    if pin is not None and len(events) < pin.seq:
        reason = (
            f"is the newest of {len(events)} events, but checkpoint {pin.checkpoint} saw "
            f"{pin.seq}: events were deleted or the head rewound"
        )
        return BrokenLink(kit, last, reason), ("", "", "", 0)
    return None, (kit, last, expected_prev, len(events))


async def _check_heads(
    uow: UnitOfWork, chains: list[tuple[str, str, str, int]]
) -> BrokenLink | None:
    """Each kit's head must be its newest event (one query per ``PAGE`` kits)."""
    if not chains:
        return None
    query = select(HEADS.c.kit_id, HEADS.c.last_hash, HEADS.c.length).where(
        HEADS.c.kit_id.in_([kit for kit, *_ in chains])
    )
    heads = {row.kit_id: row for row in await uow.session.execute(query)}
    for kit, last_event, last_hash, length in chains:
        head = heads.get(kit)
        if head is not None and (head.last_hash != last_hash or head.length != length):
            return BrokenLink(kit, last_event, "is not the newest event: events were removed")
    return None


async def _orphan_head(uow: UnitOfWork) -> str | None:
    has_events = select(EVENTS.c.id).where(EVENTS.c.kit_id == HEADS.c.kit_id).exists()
    query = select(HEADS.c.kit_id).where(~has_events).order_by(HEADS.c.kit_id).limit(1)
    orphan: str | None = await uow.session.scalar(query)
    return orphan


async def _chains(
    uow: UnitOfWork, kit_id: str | None
) -> AsyncIterator[tuple[str, list[AuditEvent]]]:
    """Each kit's events in chain order, read in pages by (kit_id, id), the index's order."""
    current: str | None = None
    batch: list[AuditEvent] = []
    after: tuple[str, int] | None = None
    while True:
        query = select(AuditEvent).order_by(AuditEvent.kit_id, AuditEvent.id).limit(PAGE)
        if kit_id is not None:
            query = query.where(AuditEvent.kit_id == kit_id)
        if after is not None:
            query = query.where(
                or_(
                    AuditEvent.kit_id > after[0],
                    and_(AuditEvent.kit_id == after[0], AuditEvent.id > after[1]),
                )
            )
        page = list(await uow.session.scalars(query))
        for event in page:
            if event.kit_id != current and current is not None:
                yield current, batch
                batch = []
            current = event.kit_id
            batch.append(event)
        if len(page) < PAGE:
            break
        after = (page[-1].kit_id, page[-1].id)
        uow.session.expunge_all()
    if current is not None:
        yield current, batch
