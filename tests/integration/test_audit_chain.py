"""The audit trail is tamper-evident: verify walks the hash chains and names the first break."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from healthinfo.audit import chain
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
        return await chain.verify(uow, kit_id)


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
