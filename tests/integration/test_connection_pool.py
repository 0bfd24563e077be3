"""The pool hands requests only live connections, without a round trip per checkout.

``pool_pre_ping`` was replaced (common/database.py) by a free check of what asyncpg already
knows and a ping only after an idle spell; these tests hold the replacement to what pre-ping
gave: a connection that the server closed never reaches a request.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from healthinfo.common.database import check_on_checkout
from tests.support.tokens import auth


def url(kit_id: str) -> str:
    return f"/v1/kits/{kit_id}/health-information"


async def terminate_other_sessions(database_url: str) -> int:
    """What a PostgreSQL restart or an administrator's pg_terminate_backend does to a pool."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return int(result.scalar_one())
    finally:
        await engine.dispose()


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to close connections; the PostgreSQL run covers it")
    return database_url


async def test_a_request_after_the_server_closed_pooled_connections_succeeds(
    app: FastAPI, client: httpx.AsyncClient, postgres_url: str, kit_id: str, user: str
) -> None:
    await client.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    assert await terminate_other_sessions(postgres_url) >= 1
    await asyncio.sleep(0.2)  # the event loop sees the sockets end
    for _ in range(3):  # several checkouts: every pooled connection was closed
        response = await client.get(url(kit_id), headers=auth(user))
        assert response.status_code == 200, response.text


async def test_a_connection_closed_by_the_server_is_replaced_without_a_ping(
    postgres_url: str,
) -> None:
    engine = create_async_engine(postgres_url, pool_size=1, max_overflow=0)
    check_on_checkout(engine, idle_seconds=3600.0)  # never idle long enough to ping
    try:
        async with engine.connect() as conn:
            backend = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await terminate_other_sessions(postgres_url)
        await asyncio.sleep(0.2)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != backend
    finally:
        await engine.dispose()
