"""Async engines for SQLite and PostgreSQL, with the settings each needs to be correct.

SQLite: WAL so readers never block the writer; ``busy_timeout`` so writers queue instead of
failing; and write transactions start with ``BEGIN IMMEDIATE``. Without it a transaction that
read under a shared lock and then writes after another writer committed fails with
SQLITE_BUSY_SNAPSHOT: SQLite would refuse the write rather than wait. Reads use a separate
engine with plain deferred ``BEGIN`` so they never queue behind writers.

PostgreSQL: no ``pool_pre_ping``. It costs three round trips (BEGIN, ``;``, ROLLBACK) on every
pool checkout, which measured as 0.59x the throughput of the bare transaction and 6 of a
read's 15 round trips (bench/RESULTS.md). Instead a checkout is checked for free (asyncpg
already knows when the server closed the socket) and pinged only when the connection sat idle
long enough for a firewall or a server restart to have dropped it unnoticed. A connection that
dies under a request is reported by the driver as a disconnect: SQLAlchemy then invalidates the
whole pool and the unit of work answers 503, as it did when pre-ping met a database that was
down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 30_000
PING_AFTER_IDLE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Engines:
    """The engine writes go through and the one reads go through (the same on PostgreSQL).

    ``replicas``: PostgreSQL streaming replicas, which may lag; only reads that check their
    freshness use them (``replication/``).
    """

    write: AsyncEngine
    read: AsyncEngine
    replicas: tuple[AsyncEngine, ...] = ()
    single_statement: AsyncEngine | None = None

    @property
    def autocommit(self) -> AsyncEngine:
        """The engine for reads of one statement each, sent without ``BEGIN``/``COMMIT``.

        PostgreSQL: the read engine in ``AUTOCOMMIT`` (its own pool, shared; asyncpg then sends
        no ``BEGIN``, and READ COMMITTED gives a statement nothing a transaction around it
        would). SQLite: an engine of its own whose connections issue no ``BEGIN`` at all (the
        driver's transaction control is off, so each statement is its own transaction).
        """
        if self.single_statement is not None:
            return self.single_statement
        if self.read.dialect.name == "sqlite":
            return self.read
        return self.read.execution_options(isolation_level="AUTOCOMMIT")

    async def dispose(self) -> None:
        """Each pool once (on PostgreSQL the single-statement engine shares the write's)."""
        distinct: dict[int, AsyncEngine] = {}
        for engine in (self.write, self.read, self.single_statement, *self.replicas):
            if engine is not None:
                distinct.setdefault(id(engine.sync_engine.pool), engine)
        for engine in distinct.values():
            await engine.dispose()


def create_engines(url: str, *, pool_size: int, max_overflow: int, timeout: float) -> Engines:
    if url.startswith("sqlite"):
        return Engines(
            write=_sqlite_engine(url, begin="BEGIN IMMEDIATE", timeout=timeout),
            read=_sqlite_engine(url, begin="BEGIN", timeout=timeout),
            single_statement=_sqlite_engine(url, begin=None, timeout=timeout),
        )
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=timeout,
        connect_args={"timeout": timeout, "command_timeout": max(timeout, 30.0)},
    )
    check_on_checkout(engine)
    return Engines(
        write=engine,
        read=engine,
        single_statement=engine.execution_options(isolation_level="AUTOCOMMIT"),
    )


def check_on_checkout(
    engine: AsyncEngine, *, idle_seconds: float = PING_AFTER_IDLE_SECONDS
) -> None:
    """Hand out only live connections, without a round trip for the ones in steady use.

    Raising ``DisconnectionError`` from a checkout listener makes the pool drop the connection
    and try another (a new one if needed): the request never sees the dead one.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _idle_from(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _check(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if _closed_by_server(dbapi_connection):
            raise DisconnectionError("the server closed this connection")
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError("the connection failed its ping after sitting idle") from exc


def _closed_by_server(dbapi_connection: DBAPIConnection) -> bool:
    """asyncpg marks its connection closed as soon as the event loop sees the socket end."""
    driver_connection = getattr(dbapi_connection, "_connection", None)
    is_closed = getattr(driver_connection, "is_closed", None)
    return bool(is_closed()) if callable(is_closed) else False


def _sqlite_engine(url: str, *, begin: str | None, timeout: float) -> AsyncEngine:
    """``begin=None``: no ``BEGIN`` is ever issued, each statement commits on its own."""
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

    if begin is not None:
        statement = begin

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(statement)

    return engine
