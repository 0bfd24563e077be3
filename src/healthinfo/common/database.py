"""Async engines for SQLite and PostgreSQL, with the settings each needs to be correct.

SQLite: WAL so readers never block the writer; ``busy_timeout`` so writers queue instead of
failing; and write transactions start with ``BEGIN IMMEDIATE``. Without it a transaction that
read under a shared lock and then writes after another writer committed fails with
SQLITE_BUSY_SNAPSHOT: SQLite would refuse the write rather than wait. Reads use a separate
engine with plain deferred ``BEGIN`` so they never queue behind writers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True, slots=True)
class Engines:
    """The engine writes go through and the one reads go through (the same on PostgreSQL).

    ``replicas``: PostgreSQL streaming replicas, which may lag; only reads that check their
    freshness use them (``replication/``).
    """

    write: AsyncEngine
    read: AsyncEngine
    replicas: tuple[AsyncEngine, ...] = ()

    async def dispose(self) -> None:
        await self.write.dispose()
        if self.read is not self.write:
            await self.read.dispose()
        for replica in self.replicas:
            await replica.dispose()


def create_engines(url: str, *, pool_size: int, max_overflow: int, timeout: float) -> Engines:
    if url.startswith("sqlite"):
        return Engines(
            write=_sqlite_engine(url, begin="BEGIN IMMEDIATE", timeout=timeout),
            read=_sqlite_engine(url, begin="BEGIN", timeout=timeout),
        )
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=timeout,
        pool_pre_ping=True,
        connect_args={"timeout": timeout, "command_timeout": max(timeout, 30.0)},
    )
    return Engines(write=engine, read=engine)


def _sqlite_engine(url: str, *, begin: str, timeout: float) -> AsyncEngine:
    engine = create_async_engine(url, pool_timeout=timeout, connect_args={"timeout": timeout})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the driver so our BEGIN is the one issued.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine
