"""The audit trail is tamper-evident: verify walks the hash chains and names the first break."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Row, event, select, text

from healthinfo.audit import chain
from healthinfo.audit.service import AuditEntry
from healthinfo.auth.actor import Actor
from healthinfo.common.context import Channel, RequestContext
from healthinfo.db.models import AuditEvent
from tests.support.tokens import TEST_SECRET, auth


async def make_history(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    for height in (150, 151, 152):
        await client.patch(
            f"/v1/kits/{kit_id}/health-information",
            json={"answers": {"heightCm": height}},
            headers=auth(user),
        )
    await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": {"heightCm": 999}},
        headers=auth(user),
    )


async def verify(app: FastAPI, kit_id: str) -> tuple[int, chain.BrokenLink | None]:
    async with app.state.services.uows.read() as uow:
        return await chain.verify(uow, app.state.services.audit.keys, kit_id)


async def event_ids(app: FastAPI, kit_id: str) -> list[str]:
    async with app.state.services.uows.read() as uow:
        rows = await uow.session.execute(
            text("SELECT event_id FROM audit_events WHERE kit_id = :k ORDER BY id"), {"k": kit_id}
        )
        return [r.event_id for r in rows]


async def tamper(app: FastAPI, statement: str, **params: object) -> None:
    async with app.state.services.uows.write() as uow:
        await uow.session.execute(text(statement), params)


async def test_an_untouched_chain_verifies(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await make_history(client, kit_id, user)
    checked, broken = await verify(app, kit_id)
    assert broken is None
    assert checked == len(await event_ids(app, kit_id)) >= 5


async def test_an_altered_event_is_named(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await make_history(client, kit_id, user)
    ids = await event_ids(app, kit_id)
    await tamper(app, "UPDATE audit_events SET outcome = 'ok' WHERE event_id = :e", e=ids[-1])
    _, broken = await verify(app, kit_id)
    assert broken is not None
    assert broken.event_id == ids[-1]
    assert "altered" in broken.reason


async def test_a_deleted_event_breaks_the_next_link(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await make_history(client, kit_id, user)
    ids = await event_ids(app, kit_id)
    await tamper(app, "DELETE FROM audit_events WHERE event_id = :e", e=ids[1])
    _, broken = await verify(app, kit_id)
    assert broken is not None
    assert broken.event_id == ids[2]


async def test_removing_the_newest_event_is_detected(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await make_history(client, kit_id, user)
    ids = await event_ids(app, kit_id)
    await tamper(app, "DELETE FROM audit_events WHERE event_id = :e", e=ids[-1])
    _, broken = await verify(app, kit_id)
    assert broken is not None
    assert "removed" in broken.reason


async def test_concurrent_writes_to_one_kit_keep_one_unbroken_chain(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.put(
        f"/v1/kits/{kit_id}/health-information", json={"answers": {}}, headers=auth(user)
    )
    await asyncio.gather(
        *(
            client.patch(
                f"/v1/kits/{kit_id}/health-information",
                json={"answers": {"heightCm": 100 + i}},
                headers=auth(user),
            )
            for i in range(16)
        ),
        *(client.get(f"/v1/kits/{kit_id}/members", headers=auth("stranger")) for _ in range(4)),
    )
    _, broken = await verify(app, kit_id)
    assert broken is None


async def head_of(app: FastAPI, kit_id: str) -> Row[Any]:
    async with app.state.services.uows.read() as uow:
        rows = await uow.session.execute(
            text("SELECT prev_hash, last_hash, length FROM audit_chain_heads WHERE kit_id = :k"),
            {"k": kit_id},
        )
        return rows.one()


async def stored_events(app: FastAPI, kit_id: str) -> list[AuditEvent]:
    async with app.state.services.uows.read() as uow:
        query = select(AuditEvent).where(AuditEvent.kit_id == kit_id).order_by(AuditEvent.id)
        return list(await uow.session.scalars(query))


NON_ASCII = "née ü 東京"


async def test_each_event_is_linked_with_the_active_audit_key(app: FastAPI, kit_id: str) -> None:
    """The link is ``chain.link_hash`` (an HMAC with the active audit key, whose id the event
    records), for the genesis link and later ones, with non-ASCII text in the hashed fields."""
    services = app.state.services
    ctx = RequestContext(
        actor=Actor(f"usér-{NON_ASCII}"),
        channel=Channel.REST,
        request_id=f"req-{NON_ASCII}",
        client_address="127.0.0.1",
        user_agent=f"agent/1.0 ({NON_ASCII})",
    )
    for i in range(3):
        async with services.uows.write() as uow:
            entry = AuditEntry(
                action="kit.test", kit_id=kit_id, changed=[f"q-{NON_ASCII}"], reason=NON_ASCII * i
            )
            await services.audit.record(uow, ctx, entry)
    events = await stored_events(app, kit_id)
    assert [e.user_agent for e in events] == [f"agent/1.0 ({NON_ASCII})"] * 3
    keys = services.audit.keys
    previous = chain.GENESIS
    for stored in events:
        assert stored.prev_hash == previous
        assert stored.key_id == keys.active_id
        assert stored.hash == chain.link_hash(keys, previous, stored)
        previous = stored.hash
    head = await head_of(app, kit_id)
    assert (head.prev_hash, head.last_hash, head.length) == (events[-2].hash, previous, 3)


async def test_an_append_is_two_statements_on_postgresql(app: FastAPI, kit_id: str) -> None:
    """The link is computed in Python (the key never reaches the database), so the head is
    locked and read first, then advanced with the event's insert in one statement."""
    services = app.state.services
    ctx = RequestContext(actor=Actor("counter"), channel=Channel.REST)
    statements: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    for _ in range(2):  # the head's creation, then its advance
        async with services.uows.write() as uow:
            connection = (await uow.session.connection()).sync_connection
            assert connection is not None
            dialect = connection.dialect.name
            event.listen(connection, "before_cursor_execute", note)
            try:
                await services.audit.record(uow, ctx, AuditEntry("kit.test", kit_id))
            finally:
                event.remove(connection, "before_cursor_execute", note)
    # SQLite: read the head, advance it, insert the event.
    assert len(statements) == (4 if dialect == "postgresql" else 6), statements
    assert (await verify(app, kit_id)) == (2, None)


async def test_concurrent_patches_to_one_kit_leave_a_chain_as_long_as_the_writes(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    writers = 20
    await client.put(
        f"/v1/kits/{kit_id}/health-information", json={"answers": {}}, headers=auth(user)
    )
    before = len(await event_ids(app, kit_id))
    responses = await asyncio.gather(
        *(
            client.patch(
                f"/v1/kits/{kit_id}/health-information",
                json={"answers": {"heightCm": 100 + i}},
                headers=auth(user),
            )
            for i in range(writers)
        )
    )
    assert [r.status_code for r in responses] == [200] * writers
    events = await stored_events(app, kit_id)
    assert len(events) == before + writers
    assert await verify(app, kit_id) == (len(events), None)
    head = await head_of(app, kit_id)
    assert (head.prev_hash, head.last_hash, head.length) == (
        events[-2].hash,
        events[-1].hash,
        len(events),
    )


def test_the_verify_command_exits_1_naming_the_broken_event(
    database_url: str, tmp_path: Path
) -> None:
    from healthinfo.app import create_app
    from healthinfo.config import Settings
    from tests.conftest import open_client

    url = database_url
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        data_dir=tmp_path,
        jwt_secret=TEST_SECRET,
        migrate_on_start=True,
    )
    kit = f"CHAIN-{os.getpid()}-{tmp_path.name[-6:]}"

    async def prepare() -> str:
        app = create_app(settings)
        async with app.router.lifespan_context(app), await open_client(app) as client:
            await make_history(client, kit, "chain-user")
            ids = await event_ids(app, kit)
            await tamper(
                app, "UPDATE audit_events SET actor = 'mallory' WHERE event_id = :e", e=ids[2]
            )
            return ids[2]

    broken_id = asyncio.run(prepare())
    env = {
        **os.environ,
        "HEALTHINFO_DATABASE_URL": url,
        "HEALTHINFO_DATA_DIR": str(tmp_path),
        "HEALTHINFO_JWT_SECRET": TEST_SECRET,
    }
    result = subprocess.run(
        [sys.executable, "-m", "healthinfo", "audit", "verify", "--kit", kit],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken_id in result.stdout
