"""A batch of read events (``audit.chain.append_many``) links onto the kits' chains exactly as
single appends do, also with writes appended between batches, in three statements."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event, select

from healthinfo.audit import chain
from healthinfo.audit.service import AuditEntry
from healthinfo.auth.actor import Actor
from healthinfo.common.context import Channel, RequestContext
from healthinfo.db.models import AuditChainHead, AuditEvent

READ = "health-information.read"
CTX = RequestContext(actor=Actor("reader"), channel=Channel.REST, request_id="req-1")


def read_events(app: FastAPI, *kits: str) -> list[AuditEvent]:
    audit = app.state.services.audit
    return [audit.event(CTX, AuditEntry(action=READ, kit_id=kit, version_after=1)) for kit in kits]


async def write_batch(app: FastAPI, events: list[AuditEvent]) -> None:
    services = app.state.services
    async with services.uows.write() as uow:
        await chain.append_many(uow, services.audit.keys, events)


async def write_one(app: FastAPI, kit_id: str) -> None:
    services = app.state.services
    async with services.uows.write() as uow:
        await services.audit.record(uow, CTX, AuditEntry("health-information.save", kit_id))


async def verify(app: FastAPI, kit_id: str) -> tuple[int, chain.BrokenLink | None]:
    async with app.state.services.uows.read() as uow:
        return await chain.verify(uow, app.state.services.audit.keys, kit_id)


def new_kit() -> str:
    return f"KIT-{uuid.uuid4().hex[:12]}"


async def test_batches_and_writes_interleaved_on_several_kits_leave_verifiable_chains(
    app: FastAPI,
) -> None:
    first, second, third = new_kit(), new_kit(), new_kit()
    await write_one(app, first)  # a chain that exists before the batch
    await write_batch(app, read_events(app, second, first, second, third, first))
    await write_one(app, first)  # a write between two batches
    await write_one(app, third)
    await write_batch(app, read_events(app, first, third, third))
    assert await verify(app, first) == (5, None)
    assert await verify(app, second) == (2, None)
    assert await verify(app, third) == (4, None)


async def test_a_batch_advances_each_head_to_its_newest_event_by_its_count(app: FastAPI) -> None:
    kit = new_kit()
    await write_one(app, kit)
    events = read_events(app, kit, kit, kit)
    await write_batch(app, events)
    async with app.state.services.uows.read() as uow:
        head = await uow.session.get(AuditChainHead, kit)
        stored = list(
            await uow.session.scalars(
                select(AuditEvent).where(AuditEvent.kit_id == kit).order_by(AuditEvent.id)
            )
        )
    assert head is not None
    assert (head.length, head.last_hash, head.prev_hash) == (4, stored[-1].hash, stored[-2].hash)
    assert [e.event_id for e in stored[1:]] == [e.event_id for e in events]  # in batch order


async def test_a_batch_is_three_statements_whatever_its_size(app: FastAPI) -> None:
    statements: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    services = app.state.services
    events = read_events(app, *(new_kit() for _ in range(40)), *(new_kit() for _ in range(40)))
    async with services.uows.write() as uow:
        connection = (await uow.session.connection()).sync_connection
        assert connection is not None
        event.listen(connection, "before_cursor_execute", note)
        try:
            await chain.append_many(uow, services.audit.keys, events)
        finally:
            event.remove(connection, "before_cursor_execute", note)
    assert len(statements) == 3, statements
