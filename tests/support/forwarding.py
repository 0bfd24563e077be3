"""Helpers for the forwarding tests: a fresh database per test, fast retry settings, the outbox.

Each forwarding test gets its own database: a relay delivers every due event it finds, so
events left pending by one test must not reach the next test's lab.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Row, select

from healthinfo.config import Settings
from healthinfo.forwarding.store import OUTBOX
from healthinfo.services import Services
from tests.support.answers import COMPLETE
from tests.support.backends import create_pg_database, drop_pg_database, sqlite_url
from tests.support.tokens import TEST_SECRET, auth

FORWARD_SECRET = "lab-shared-secret-for-the-tests-0123456789"
FULL = os.environ.get("HEALTHINFO_TEST_FULL") == "1"

# Retries in milliseconds instead of seconds, so a test sees dozens of them.
FAST: dict[str, Any] = {
    "forward_timeout_seconds": 0.3,
    "forward_lease_seconds": 1.0,
    "forward_retry_initial_seconds": 0.01,
    "forward_retry_max_seconds": 0.2,
    "forward_poll_seconds": 0.05,
}


@asynccontextmanager
async def fresh_database(backend: str, directory: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield sqlite_url(directory)
        return
    name, url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(name)


def forwarding_settings(
    database_url: str, data_dir: Path, lab_url: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "data_dir": data_dir,
        "jwt_secret": TEST_SECRET,
        "migrate_on_start": True,
        "forward_url": lab_url,
        "forward_secret": FORWARD_SECRET,
        **FAST,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def services_of(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


async def outbox_rows(app: FastAPI) -> list[Row[Any]]:
    async with services_of(app).uows.read() as uow:
        return list((await uow.session.execute(select(OUTBOX).order_by(OUTBOX.c.id))).all())


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float = 10.0, interval: float = 0.02
) -> None:
    """Wait until ``check()`` is true (it reads the database, so it is polled); else fail."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - the database has no event to wait on
            await asyncio.sleep(interval)


async def submit(client: httpx.AsyncClient, kit_id: str, user: str = "lab-user") -> dict[str, Any]:
    """Save complete answers and submit them in one PUT; returns the representation."""
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": COMPLETE, "submitted": True},
        headers=auth(user),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def held_back(rows: list[Row[Any]]) -> set[str]:
    """Event ids waiting behind an undelivered earlier event of their kit."""
    blocking: dict[str, int] = {}
    for row in rows:
        if row.state != "delivered":
            blocking[row.kit_id] = min(blocking.get(row.kit_id, row.kit_sequence), row.kit_sequence)
    return {
        row.event_id
        for row in rows
        if row.kit_id in blocking and row.kit_sequence > blocking[row.kit_id]
    }
