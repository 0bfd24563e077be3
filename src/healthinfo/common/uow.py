"""The unit of work: one database transaction, plus what must happen only if it commits.

Services receive a ``UnitOfWork`` and never commit; the adapter that opened it does, before it
answers the client, so a failed commit can never hide behind a 200. Side effects (cache writes,
published events, worker wake-ups) are registered with ``after_commit`` and dropped on rollback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Self

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from healthinfo.common.database import Engines
from healthinfo.errors import Unavailable

AfterCommit = Callable[[], Awaitable[None]]
logger = logging.getLogger(__name__)

# A write transaction held this long is logged (``db.write_transaction_slow``): on SQLite it
# holds the one write lock, so every other writer, in any process, waited behind it.
SLOW_WRITE_SECONDS = 2.0

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


async def _run_hook(hook: AfterCommit) -> None:
    """Hooks are best effort: the write is already durable, so a hook failure is logged only."""
    try:
        await hook()
    except Exception:
        logger.exception("unit_of_work.after_commit_failed")


class BackgroundHooks:
    """Runs after-commit hooks off the response path, one at a time, in commit order.

    For what a committed write tells others (the cache's write-through, the live event's
    publish): the client's answer need not wait for them. One worker, first in first out, so
    one kit's changes reach the cache and the streams in the order they committed. When
    ``max_pending`` hooks wait already (Redis stalling), the committer waits for the queue to
    drain: nothing is dropped or reordered, the requests slow down instead. A Lifecycle:
    ``stop`` runs what is queued (graceful shutdown) before the cache and the bus close.
    """

    def __init__(self, *, max_pending: int = 10_000) -> None:
        self._queue: deque[AfterCommit] = deque()
        self._max = max_pending
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, hooks: list[AfterCommit]) -> None:
        if len(self._queue) + len(hooks) > self._max:
            await self.drain()  # the queue is full: the committer waits, the order stays
        self._queue.extend(hooks)
        self._idle.clear()
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="after-commit-hooks")

    async def _work(self) -> None:
        while True:
            while self._queue:
                await _run_hook(self._queue[0])  # counted as pending until it has run
                self._queue.popleft()
            self._idle.set()
            self._wake.clear()
            await self._wake.wait()

    async def drain(self) -> None:
        """Wait until every hook submitted so far has run (tests, shutdown)."""
        await self._idle.wait()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._worker is None:
            return
        try:
            await asyncio.wait_for(self.drain(), timeout=5.0)
        except TimeoutError:
            logger.warning("unit_of_work.background_hooks_not_drained", extra={"left": len(self)})
        self._worker.cancel()
        with suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    def __len__(self) -> int:
        return len(self._queue)


class UnitOfWork:
    """A session in a transaction, and the hooks to run once it is durable."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        writable: bool,
        background: BackgroundHooks | None = None,
    ) -> None:
        self.session = session
        self.writable = writable
        self._after_commit: list[AfterCommit] = []
        self._in_background: list[AfterCommit] = []
        self._background = background
        # Audit chain heads this transaction holds locked, and their hash (audit.chain).
        self.locked_heads: dict[str, str] = {}
        self._dialect: str | None = None

    @property
    def dialect(self) -> str:
        """``postgresql`` or ``sqlite``: which statements the database takes."""
        if self._dialect is None:
            self._dialect = self.session.get_bind().dialect.name
        return self._dialect

    def after_commit(self, hook: AfterCommit, *, background: bool = False) -> None:
        """``background=True``: after the response too, in commit order (``BackgroundHooks``);
        only for hooks whose effect nobody needs before the client hears the write succeeded."""
        if background and self._background is not None:
            self._in_background.append(hook)
        else:
            self._after_commit.append(hook)

    async def run_after_commit(self) -> None:
        """The inline hooks now, in order; the background ones handed to the worker."""
        hooks, self._after_commit = self._after_commit, []
        for hook in hooks:
            await _run_hook(hook)
        later, self._in_background = self._in_background, []
        if later and self._background is not None:
            await self._background.submit(later)

    def discard(self) -> Self:
        self._after_commit.clear()
        self._in_background.clear()
        return self


def _note_if_slow(started: float, outcome: str) -> None:
    """Log a write transaction that held its connection (SQLite: the write lock) too long; the
    log line's request id names the request, the task name a background loop."""
    seconds = time.monotonic() - started
    if seconds >= SLOW_WRITE_SECONDS:
        task = asyncio.current_task()
        logger.warning(
            "db.write_transaction_slow",
            extra={
                "seconds": round(seconds, 3),
                "outcome": outcome,
                "task": task.get_name() if task is not None else None,
            },
        )


class UnitOfWorkFactory:
    """Opens units of work on the write or the read engine, or on a streaming replica."""

    def __init__(self, engines: Engines, *, background: BackgroundHooks | None = None) -> None:
        self.engines = engines  # for checks that are not transactions (readiness: the schema)
        self.background = background or BackgroundHooks()
        self._write = async_sessionmaker(engines.write, expire_on_commit=False, autoflush=False)
        self._read = async_sessionmaker(engines.read, expire_on_commit=False, autoflush=False)
        self._autocommit = async_sessionmaker(
            engines.autocommit, expire_on_commit=False, autoflush=False
        )
        self._replicas = [
            async_sessionmaker(replica, expire_on_commit=False, autoflush=False)
            for replica in engines.replicas
        ]

    @asynccontextmanager
    async def write(self) -> AsyncIterator[UnitOfWork]:
        """Commit on a clean exit, roll back on an exception; hooks only after the commit."""
        uow: UnitOfWork | None = None
        started = time.monotonic()
        try:
            async with self._write() as session, session.begin():
                uow = UnitOfWork(session, writable=True, background=self.background)
                yield uow
        except BaseException as exc:
            _note_if_slow(started, "rolled back")
            if uow is not None:
                uow.discard()
            if is_database_unavailable(exc):
                raise unavailable_from(exc) from exc
            raise
        _note_if_slow(started, "committed")
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

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[UnitOfWork]:
        """A read whose statements each run on their own, without ``BEGIN`` and ``COMMIT``.

        For the hot path (a read's access query, a stream's roster): one statement, one round
        trip. Two statements in it may see different committed states, as two statements of a
        READ COMMITTED transaction on PostgreSQL do anyway; a caller needing one snapshot of
        several statements uses ``read()``.
        """
        try:
            async with self._autocommit() as session:
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
