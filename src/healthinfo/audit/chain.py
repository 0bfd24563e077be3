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
advance it and insert the event through a ``WITH``) and three on SQLite, all built once. A
write locks and reads the head in its access query already (``head_locked``): its append is
then the one statement that advances the head and inserts the event.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Table,
    and_,
    bindparam,
    exists,
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


# The head's lock and read as a CTE, for a statement that reads something else in the same
# round trip (a write's access query, kits.service): PostgreSQL runs a data-modifying WITH
# exactly once, whether or not the rest of the statement reads it.
HEAD_LOCK_POSTGRESQL = _LOCK_HEAD["postgresql"].cte("audit_head")


def head_locked(uow: UnitOfWork, kit_id: str, last_hash: str) -> None:
    """Note that this transaction holds ``kit_id``'s head locked, at ``last_hash``.

    Whoever locked the head with ``HEAD_LOCK_POSTGRESQL`` says so here; ``append`` then needs
    no statement to lock and read it. Sound because nobody else can move a head this
    transaction holds locked (SQLite: its ``BEGIN IMMEDIATE`` locks the whole database).
    """
    uow.locked_heads[kit_id] = last_hash


def advance_and_insert_after(gate: Any) -> Any:
    """PostgreSQL: the statement ``append`` sends, made to depend on the CTE ``gate``: the head
    advances and the event is inserted exactly when ``gate`` returns a row (a write's UPDATE
    that won). Its parameters: ``link``'s; build it once."""
    gated = _ADVANCE_HEAD.where(exists(select(literal_column("1")).select_from(gate)))
    advanced = gated.returning(HEADS.c.kit_id).cte("advanced")
    return insert(EVENTS).from_select(
        list(_INSERTED),
        select(*(bindparam(f"event_{c.key}", type_=c.type) for c in _INSERTED)).select_from(
            advanced
        ),
    )


def link(uow: UnitOfWork, keys: AuditKeyring, event: AuditEvent) -> dict[str, Any] | None:
    """Link ``event`` onto its kit's head, which this transaction holds locked (``head_locked``):
    the parameters of an ``advance_and_insert_after`` statement. None when the head is not
    locked by this transaction (then ``append``)."""
    prev_hash = uow.locked_heads.get(event.kit_id)
    if prev_hash is None:
        return None
    event.prev_hash = prev_hash
    event.key_id = keys.active_id
    event.hash = link_hash(keys, prev_hash, event)
    parameters = {f"event_{column.key}": getattr(event, column.key) for column in _INSERTED}
    return {**parameters, "head_kit_id": event.kit_id, "new_hash": event.hash}


def linked(uow: UnitOfWork, event: AuditEvent) -> None:
    """The ``link``-ed event was written: the head this transaction holds moved to it."""
    assert event.hash is not None
    uow.locked_heads[event.kit_id] = event.hash


async def append(uow: UnitOfWork, keys: AuditKeyring, event: AuditEvent) -> None:
    """Write ``event`` chained onto its kit's head with the active audit key, in the caller's
    transaction.

    The link is an HMAC computed here, so the key never reaches the database (not even as a
    statement parameter, which a database insider could log). That needs the previous hash
    before the write: the head is locked and read first, unless this transaction holds it
    already (``head_locked``, or an earlier append). PostgreSQL: one statement then (advance
    the head and insert the event), two otherwise. SQLite (no INSERT in a WITH): two or three.
    """
    session = uow.session
    dialect = session.get_bind().dialect.name
    prev_hash = uow.locked_heads.get(event.kit_id)
    if prev_hash is None:
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
    else:
        await session.execute(_ADVANCE_HEAD, advance)
        await session.execute(_INSERT_EVENT, values)
    uow.locked_heads[event.kit_id] = event.hash  # locked by this transaction until it ends


@functools.lru_cache(maxsize=256)
def _lock_heads(dialect: Any, count: int) -> Any:
    """``_lock_head`` for ``count`` kits in one multi-row statement (a read-audit batch); built
    once per (dialect, count), so SQLAlchemy's compiled cache is hit without rebuilding it."""
    rows = [
        {"kit_id": bindparam(f"kit_{i}"), "last_hash": GENESIS, "length": 0} for i in range(count)
    ]
    return (
        dialect.insert(HEADS)
        .values(rows)
        .on_conflict_do_update(index_elements=[HEADS.c.kit_id], set_={"length": HEADS.c.length})
        .returning(HEADS.c.kit_id, HEADS.c.last_hash)
    )


_ADVANCE_HEAD_BY = (
    update(HEADS)
    .where(HEADS.c.kit_id == bindparam("head_kit_id"))
    .values(
        prev_hash=bindparam("new_prev"),
        last_hash=bindparam("new_hash"),
        length=HEADS.c.length + bindparam("added", type_=Integer),
    )
)


async def append_many(uow: UnitOfWork, keys: AuditKeyring, events: Sequence[AuditEvent]) -> None:
    """Write ``events`` chained onto their kits' heads, in the caller's transaction: a batch of
    read events (``audit.read_batches``) in three statements whatever its size.

    The same links as ``append``, written in bulk: lock every kit's head in one statement
    (kits in sorted order, so two batches, or a batch and a write, lock in one order and never
    deadlock), compute each kit's links in the batch's order onto the head it read, insert the
    events in one multi-row ``INSERT`` (ids in that order, which is the chains' order), and
    advance each head by the number of its events. A write's own append to one of these kits
    waits on the head lock until the batch commits, or the batch waits for it: either way the
    chain is linear.
    """
    if not events:
        return
    if len(events) == 1:  # a quiet moment's batch: the single append is a statement shorter
        await append(uow, keys, events[0])
        return
    session = uow.session
    dialect = session.get_bind().dialect.name
    kits = sorted({event.kit_id for event in events})
    lock = _lock_heads(postgresql if dialect == "postgresql" else sqlite, len(kits))
    rows = await session.execute(lock, {f"kit_{i}": kit for i, kit in enumerate(kits)})
    heads: dict[str, str] = {row.kit_id: row.last_hash for row in rows}
    previous: dict[str, str] = {}
    added: dict[str, int] = dict.fromkeys(kits, 0)
    ordered = sorted(events, key=lambda event: event.kit_id)  # stable: a kit's order is kept
    for event in ordered:
        event.prev_hash = heads[event.kit_id]
        event.key_id = keys.active_id
        event.hash = link_hash(keys, event.prev_hash, event)
        previous[event.kit_id] = event.prev_hash
        heads[event.kit_id] = event.hash
        added[event.kit_id] += 1
    await session.execute(
        _INSERT_EVENT, [{c.key: getattr(event, c.key) for c in _INSERTED} for event in ordered]
    )
    await session.execute(
        _ADVANCE_HEAD_BY,
        [
            {
                "head_kit_id": kit,
                "new_prev": previous[kit],
                "new_hash": heads[kit],
                "added": added[kit],
            }
            for kit in kits
        ],
    )
    # This transaction holds these heads locked now: a later ``append`` in it links onto them
    # without reading them again (and must not link onto a hash it noted before this batch).
    uow.locked_heads.update(heads)


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
