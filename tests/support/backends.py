"""Test databases: SQLite files and fresh PostgreSQL databases, created per run and dropped.

PostgreSQL and Redis are required, not optional: if they cannot be reached the run fails
loudly instead of quietly testing less.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as aioredis

PG_ADMIN_DSN = os.environ.get(
    "HEALTHINFO_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("HEALTHINFO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_REDIS = urlsplit(REDIS_URL)
REDIS_HOST = _REDIS.hostname or "127.0.0.1"
REDIS_PORT = _REDIS.port or 6379
BACKENDS = tuple(
    b.strip()
    for b in os.environ.get("HEALTHINFO_TEST_BACKENDS", "sqlite,postgres").split(",")
    if b.strip()
)


class BackendUnavailable(RuntimeError):
    pass


def require_reachable(host: str, port: int, what: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as exc:
        raise BackendUnavailable(
            f"{what} at {host}:{port} is unreachable ({exc}). The test suite needs it; start it "
            "(see README, 'Testing') rather than skipping."
        ) from exc


async def create_pg_database() -> tuple[str, str]:
    """Create an empty database; returns (its name, its SQLAlchemy asyncpg URL)."""
    name = f"healthinfo_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


async def drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / f'test-{uuid.uuid4().hex[:8]}.db'}"


async def delete_redis_keys(prefix: str, url: str = REDIS_URL) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=500):
            await client.delete(key)
    finally:
        await client.aclose()
