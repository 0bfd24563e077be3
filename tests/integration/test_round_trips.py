"""What one read and one write send to the database (issue #16): the statements counted at
the driver, on the engines the app really uses.

A cached read (read auditing off: its events are not written in the read's transaction) is
the access query alone, outside any transaction; a PATCH on PostgreSQL is two statements in
its transaction: the access query (which also reads the record and locks the audit head) and
the write (update, revision and audit event). Access stays in that one statement: a removed
member's next read is refused, cache or not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from healthinfo.app import create_app
from healthinfo.audit.chain import verify
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.tokens import auth


@pytest.fixture
async def unaudited_reads(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(audit_reads=False))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(unaudited_reads: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with await open_client(unaudited_reads) as client:
        yield client


def url(kit_id: str) -> str:
    return f"/v1/kits/{kit_id}/health-information"


# Set around the request under test: statements of the app's own background tasks (the audit
# checkpointer, the idempotency purger) run in contexts made before it and are not counted.
_COUNTING: ContextVar[bool] = ContextVar("counting", default=False)


class Sent:
    """Statements the request sent on any of the app's data engines, and the isolation each
    ran under."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.full: list[str] = []
        self.isolation: list[str | None] = []

    def note(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not _COUNTING.get():
            return
        self.statements.append(statement.split(None, 3)[0].upper())
        self.full.append(statement[:200])
        self.isolation.append(conn.get_execution_options().get("isolation_level"))


@contextmanager
def counting(app: FastAPI) -> Iterator[Sent]:
    engines = app.state.services.uows.engines
    distinct: dict[int, Any] = {}
    for engine in (engines.write, engines.read, engines.autocommit):
        # PostgreSQL's autocommit engine is the write engine with options: its events too
        distinct.setdefault(id(engine.sync_engine.pool), engine.sync_engine)
    sent = Sent()
    for engine in distinct.values():
        event.listen(engine, "before_cursor_execute", sent.note)
    token = _COUNTING.set(True)
    try:
        yield sent
    finally:
        _COUNTING.reset(token)
        for engine in distinct.values():
            event.remove(engine, "before_cursor_execute", sent.note)


def dialect(app: FastAPI) -> str:
    return str(app.state.services.uows.engines.write.dialect.name)


async def test_a_cached_read_is_one_statement_outside_any_transaction(
    unaudited_reads: FastAPI, http: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await http.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    await unaudited_reads.state.services.uows.background.drain()
    with counting(unaudited_reads) as sent:
        response = await http.get(url(kit_id), headers=auth(user))
    assert response.json()["answers"] == {"heightCm": 170}
    assert sent.statements == ["SELECT"], sent.full
    if dialect(unaudited_reads) == "postgresql":
        assert sent.isolation == ["AUTOCOMMIT"]


async def test_a_patch_is_two_statements_in_its_transaction_on_postgresql(
    unaudited_reads: FastAPI, http: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await http.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    with counting(unaudited_reads) as sent:
        response = await http.patch(
            url(kit_id),
            json={"answers": {"weightKg": 70}},
            headers={**auth(user), "Content-Type": "application/merge-patch+json"},
        )
    assert response.status_code == 200
    if dialect(unaudited_reads) == "postgresql":
        assert sent.statements == ["WITH", "WITH"], "access+record+head, then the write"
    else:  # BEGIN IMMEDIATE, access+record, update, revision, head, head advance, event
        sqlite = ["BEGIN", "SELECT", "UPDATE", "INSERT", "INSERT", "UPDATE", "INSERT"]
        assert sent.statements == sqlite


async def test_a_removed_member_s_next_read_is_refused_though_the_answers_are_cached(
    http: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    member = f"member-{kit_id}"
    await http.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    membership = f"/v1/kits/{kit_id}/members/{member}"
    assert (
        await http.put(membership, json={"role": "viewer"}, headers=auth(user))
    ).status_code in (200, 201)
    for _ in range(2):  # the second is a cache hit
        assert (await http.get(url(kit_id), headers=auth(member))).status_code == 200
    assert (await http.delete(membership, headers=auth(user))).status_code == 204
    refused = await http.get(url(kit_id), headers=auth(member))
    assert refused.status_code == 404
    assert refused.json()["code"] == "not-found"


async def test_patches_audit_events_are_chained_and_verify(
    unaudited_reads: FastAPI, http: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    """The one-statement write links its event onto the head its access query locked."""
    headers = {**auth(user), "Content-Type": "application/merge-patch+json"}
    await http.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    services = unaudited_reads.state.services
    async with services.uows.read() as uow:
        before, _ = await verify(uow, services.audit.keys, kit_id)  # the claim, the first save
    for weight in range(60, 65):
        patched = await http.patch(
            url(kit_id), json={"answers": {"weightKg": weight}}, headers=headers
        )
        assert patched.status_code == 200
    async with services.uows.read() as uow:
        checked, broken = await verify(uow, services.audit.keys, kit_id)
    assert (checked, broken) == (before + 5, None)
