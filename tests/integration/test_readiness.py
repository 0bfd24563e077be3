"""Readiness tells the truth: 200 only when a write would succeed, else a 503 problem whose
``checks`` say which check failed and why (database, schema at head, key store)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from healthinfo.app import create_app
from healthinfo.common.database import create_engines
from healthinfo.config import Settings
from healthinfo.crypto.master_keys import new_key_spec
from healthinfo.db import migrate
from tests.conftest import open_client
from tests.support.backends import create_pg_database, drop_pg_database, sqlite_url
from tests.support.server import free_port
from tests.support.tokens import auth

HEAD = migrate.head_revision()
OLDER = migrate.revisions_oldest_first()[-3]  # two migrations behind the head


@pytest.fixture
async def fresh_database(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of this run's backend, for a test that decides how far it migrates."""
    if database_url.startswith("sqlite"):
        yield sqlite_url(tmp_path)
        return
    name, url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(name)


@pytest.fixture
def unmigrated_settings(
    make_settings: Callable[..., Settings], fresh_database: str, tmp_path: Path
) -> Settings:
    """A fresh database and a fresh key store of their own, neither migrated at start."""
    return make_settings(
        database_url=fresh_database,
        keystore_url=sqlite_url(tmp_path),
        migrate_on_start=False,
    )


async def upgrade(url: str, revision: str = "head", *, keystore: bool = False) -> None:
    engines = create_engines(url, pool_size=1, max_overflow=0, timeout=5)
    try:
        if keystore:
            await migrate.upgrade(engines.write, location=migrate.KEYSTORE_MIGRATIONS_DIR)
        else:
            await migrate.upgrade(engines.write, revision)
    finally:
        await engines.dispose()


async def test_readiness_is_a_503_problem_when_the_database_is_unreachable(
    make_settings: Callable[..., Settings],
) -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none"
    app = create_app(
        make_settings(database_url=nowhere, migrate_on_start=False, db_timeout_seconds=1)
    )
    async with app.router.lifespan_context(app), await open_client(app) as client:
        response = await client.get("/health/ready")
        live = await client.get("/health/live")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "unavailable"
    assert body["checks"]["database"] == "unavailable"
    assert body["requestId"] == response.headers["x-request-id"]
    assert live.status_code == 200


async def test_readiness_reports_the_redis_parts_without_requiring_them(
    make_settings: Callable[..., Settings],
) -> None:
    """PostgreSQL run: cache, events bus and rate limits share Redis; SQLite run: in-process."""
    settings = make_settings()
    app = create_app(settings)
    async with app.router.lifespan_context(app), await open_client(app) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200
    expected = "ok" if settings.redis_url else "in-process"
    assert response.json()["checks"] == {
        "database": "ok",
        "schema": "ok",
        "keystore": "ok",
        "cache": expected,
        "events": expected,
        "rateLimits": expected,
    }


async def test_readiness_is_a_503_naming_both_revisions_when_the_schema_is_behind_head(
    unmigrated_settings: Settings,
) -> None:
    await upgrade(unmigrated_settings.effective_database_url, OLDER)
    await upgrade(unmigrated_settings.effective_keystore_url, keystore=True)
    app = create_app(unmigrated_settings)
    async with app.router.lifespan_context(app), await open_client(app) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["schema"] == f"behind (at {OLDER}, head {HEAD})"
    assert body["checks"]["keystore"] == "ok"
    assert "schema behind" in body["detail"]


async def test_readiness_is_a_503_when_the_database_was_never_migrated(
    unmigrated_settings: Settings,
) -> None:
    await upgrade(unmigrated_settings.effective_keystore_url, keystore=True)
    app = create_app(unmigrated_settings)
    async with app.router.lifespan_context(app), await open_client(app) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["schema"] == f"not migrated (head {HEAD})"


async def test_readiness_is_a_503_when_the_key_store_is_unusable(
    unmigrated_settings: Settings,
) -> None:
    await upgrade(unmigrated_settings.effective_database_url)
    app = create_app(unmigrated_settings)
    async with app.router.lifespan_context(app), await open_client(app) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert (checks["database"], checks["schema"]) == ("ok", "ok")
    assert checks["keystore"].startswith("unusable")


async def test_readiness_is_200_once_database_and_key_store_are_at_head(
    unmigrated_settings: Settings,
) -> None:
    await upgrade(unmigrated_settings.effective_database_url)
    await upgrade(unmigrated_settings.effective_keystore_url, keystore=True)
    app = create_app(unmigrated_settings)
    async with app.router.lifespan_context(app), await open_client(app) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


async def test_a_write_on_an_unmigrated_database_is_a_503_and_the_log_names_the_cause(
    unmigrated_settings: Settings, capsys: pytest.CaptureFixture[str], kit_id: str
) -> None:
    await upgrade(unmigrated_settings.effective_keystore_url, keystore=True)
    app = create_app(unmigrated_settings)
    capsys.readouterr()
    async with app.router.lifespan_context(app), await open_client(app) as client:
        response = await client.put(
            f"/v1/kits/{kit_id}/health-information",
            json={"answers": {"heightCm": 187}},
            headers=auth("alice"),
        )
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "unavailable"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    causes = [line["cause"] for line in lines if line.get("event") == "database.unavailable"]
    assert causes, lines
    # The driver's exception class and message: OperationalError (SQLite) or
    # UndefinedTableError (PostgreSQL), naming the missing table (on PostgreSQL the write's
    # first statement also locks the audit head, so the table named may be that one).
    named = r"[A-Za-z]+Error: (no such table: \w+|relation \"\w+\" does not exist).*"
    assert any(re.fullmatch(named, cause) for cause in causes), causes
    assert all("187" not in cause and "INSERT" not in cause for cause in causes)
    assert not [line for line in lines if line.get("event") == "request.unhandled_exception"]


async def test_readiness_is_a_503_when_the_master_keys_do_not_open_the_stored_keys(
    unmigrated_settings: Settings, kit_id: str
) -> None:
    settings = unmigrated_settings.model_copy(update={"migrate_on_start": True})
    writer = create_app(settings)
    async with writer.router.lifespan_context(writer), await open_client(writer) as client:
        saved = await client.put(
            f"/v1/kits/{kit_id}/health-information",
            json={"answers": {"heightCm": 170}},
            headers=auth("alice"),
        )
        assert saved.status_code == 201, saved.text
    wrong_keys = settings.model_copy(update={"master_keys": SecretStr(new_key_spec("other"))})
    app = create_app(wrong_keys)
    async with app.router.lifespan_context(app), await open_client(app) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["keystore"] == (
        "unusable (the master keys do not open its data keys)"
    )
