"""The unit of work: one database transaction, plus what must happen only if it commits.

Services receive a ``UnitOfWork`` and never commit; the adapter that opened it does, before it
answers the client, so a failed commit can never hide behind a 200. Side effects (cache writes,
published events, worker wake-ups) are registered with ``after_commit`` and dropped on rollback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Self

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from healthinfo.common.database import Engines
from healthinfo.errors import Unavailable

AfterCommit = Callable[[], Awaitable[None]]

# SQLSTATE classes that mean "the database cannot serve us now", not "this request is wrong":
# 08 connection exception, 53 insufficient resources (too many connections), 57P operator
# intervention (shutdown, cannot connect now), and 42P01 / 42703 (undefined table / column):
# a schema behind the code's (not migrated), which no retry of the request can fix either.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "42P01", "42703")


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether an exception means the database (or key store) is unreachable or overloaded."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError | OSError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    return False


logger = logging.getLogger(__name__)


def innermost_cause(exc: BaseException) -> BaseException:
    """The driver's or the OS's own exception under SQLAlchemy's wrappers."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        orig = getattr(current, "orig", None)
        following = orig if isinstance(orig, BaseException) else current.__cause__
        if following is None:
            break
        current = following
    return current


def database_error_cause(exc: BaseException) -> str:
    """``UndefinedTableError: relation "kits" does not exist``: class and the driver's message.

    Only the driver's first line: SQLAlchemy's own message appends the statement and its
    parameters, which can hold stored values. The errors classed as unavailable (connection,
    resources, undefined table or column) name servers and schema objects, never values.
    """
    inner = innermost_cause(exc)
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__


def unavailable_from(exc: BaseException) -> Unavailable:
    """The 503 for a database error, after one log line naming its cause."""
    logger.warning("database.unavailable", extra={"cause": database_error_cause(exc)})
    return Unavailable()


class UnitOfWork:
    """A session in a transaction, and the hooks to run once it is durable."""

    def __init__(self, session: AsyncSession, *, writable: bool) -> None:
        self.session = session
        self.writable = writable
        self._after_commit: list[AfterCommit] = []

    def after_commit(self, hook: AfterCommit) -> None:
        self._after_commit.append(hook)

    async def run_after_commit(self) -> None:
        """Hooks are best effort: the write is already durable, so a hook failure is logged only."""
        hooks, self._after_commit = self._after_commit, []
        for hook in hooks:
            try:
                await hook()
            except Exception:
                logger.exception("unit_of_work.after_commit_failed")

    def discard(self) -> Self:
        self._after_commit.clear()
        return self


class UnitOfWorkFactory:
    """Opens units of work on the write or the read engine, or on a streaming replica."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines  # for checks that are not transactions (readiness: the schema)
        self._write = async_sessionmaker(engines.write, expire_on_commit=False, autoflush=False)
        self._read = async_sessionmaker(engines.read, expire_on_commit=False, autoflush=False)
        self._replicas = [
            async_sessionmaker(replica, expire_on_commit=False, autoflush=False)
            for replica in engines.replicas
        ]

    @asynccontextmanager
    async def write(self) -> AsyncIterator[UnitOfWork]:
        """Commit on a clean exit, roll back on an exception; hooks only after the commit."""
        uow: UnitOfWork | None = None
        try:
            async with self._write() as session, session.begin():
                uow = UnitOfWork(session, writable=True)
                yield uow
        except BaseException as exc:
            if uow is not None:
                uow.discard()
            if is_database_unavailable(exc):
                raise unavailable_from(exc) from exc
            raise
        await uow.run_after_commit()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[UnitOfWork]:
        try:
            async with self._read() as session, session.begin():
                yield UnitOfWork(session, writable=False)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise unavailable_from(exc) from exc
            raise

    @property
    def replica_count(self) -> int:
        return len(self._replicas)

    @asynccontextmanager
    async def replica(self, index: int) -> AsyncIterator[UnitOfWork]:
        """A read on streaming replica ``index``, which may lag the primary.

        Only for callers that check the replica is fresh enough for them
        (``replication.ReplicaReads``); everyone else reads through ``read()``.
        """
        try:
            async with self._replicas[index]() as session, session.begin():
                yield UnitOfWork(session, writable=False)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise unavailable_from(exc) from exc
            raise
