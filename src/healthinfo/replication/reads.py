"""Reads a streaming replica may answer: a kit's history, audit events and export.

``ReplicaReads.for_kit(kit_id)`` opens a read-only unit of work on a replica (the replicas take
turns) when that replica shows the kit at least as new as the newest state known to be
committed (``freshness``), and on the primary otherwise: when no replica is configured, when
the replica lags (``lagging``), or when it cannot be reached (``unavailable``; it is then left
alone for a cool-down, so a dead replica does not cost every read a connect timeout). The
check is one query on the replica, in the same transaction as the read; the primary is not
asked anything unless the read falls back to it.

Replication knows no domain package: which audit events are changes comes from
``common.audit_actions`` (``is_change``), the change record is fed by the audit log
(``audit/change_tracking.py``) through a protocol, and the newest committed version of a
kit's answers by whatever has it (``cached_answers`` over the answers cache, passed in by the
composition root).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Protocol, cast

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Table, select, text
from sqlalchemy.exc import DBAPIError

from healthinfo.common.audit_actions import DISCLOSURES, is_change
from healthinfo.common.uow import UnitOfWork
from healthinfo.db.models import AuditChainHead, HealthInformation
from healthinfo.errors import Unavailable
from healthinfo.replication.freshness import (
    AnswersMark,
    ChangeRecord,
    KitMark,
    Requirement,
    is_fresh,
)

logger = logging.getLogger(__name__)

HEADS = cast(Table, AuditChainHead.__table__)
ANSWERS = cast(Table, HealthInformation.__table__)
REPLICA_COOL_DOWN_SECONDS = 5.0
LAGGING = "lagging"
UNAVAILABLE = "unavailable"
__all__ = ["DISCLOSURES", "LAGGING", "UNAVAILABLE", "ReplicaReads", "cached_answers", "is_change"]


class ReadSources(Protocol):
    """The primary and the replicas (``UnitOfWorkFactory``)."""

    @property
    def replica_count(self) -> int: ...

    def read(self) -> AbstractAsyncContextManager[UnitOfWork]: ...

    def replica(self, index: int) -> AbstractAsyncContextManager[UnitOfWork]: ...


class KitMarks(Protocol):
    """What a database shows of a kit (``SqlKitMarks``)."""

    async def shown(self, uow: UnitOfWork, kit_id: str) -> KitMark: ...


KnownAnswers = Callable[[str], Awaitable[AnswersMark | None]]


class SqlKitMarks:
    """Primary-key lookups of the kit's audit chain head and answers, in one round trip."""

    async def shown(self, uow: UnitOfWork, kit_id: str) -> KitMark:
        length = select(HEADS.c.length).where(HEADS.c.kit_id == kit_id).scalar_subquery()
        version = select(ANSWERS.c.version).where(ANSWERS.c.kit_id == kit_id).scalar_subquery()
        created = select(ANSWERS.c.created_at).where(ANSWERS.c.kit_id == kit_id).scalar_subquery()
        row = (await uow.session.execute(select(length, version, created))).one()
        answers = AnswersMark(row[2], row[1]) if row[1] is not None else None
        return KitMark(audit_length=row[0] or 0, answers=answers)


class ReplicaReads:
    """Opens a kit's reads on a fresh-enough replica, or on the primary."""

    def __init__(
        self,
        sources: ReadSources,
        *,
        changes: ChangeRecord,
        registry: CollectorRegistry,
        known_answers: KnownAnswers | None = None,
        marks: KitMarks | None = None,
        cool_down_seconds: float = REPLICA_COOL_DOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sources = sources
        self._changes = changes
        self._known_answers = known_answers
        self._marks: KitMarks = marks or SqlKitMarks()
        self._cool_down = cool_down_seconds
        self._clock = clock
        self._next = 0
        self._down_until = [0.0] * sources.replica_count
        self.served = Counter(
            "healthinfo_replica_reads_total",
            "Reads (history, audit events, exports) served by a streaming replica.",
            registry=registry,
        )
        self.fallbacks = Counter(
            "healthinfo_replica_fallbacks_total",
            "Reads a replica could have served that the primary served, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in (LAGGING, UNAVAILABLE):
            self.fallbacks.labels(reason)

    @property
    def enabled(self) -> bool:
        return self._sources.replica_count > 0

    @asynccontextmanager
    async def for_kit(self, kit_id: str) -> AsyncIterator[UnitOfWork]:
        """A read-only unit of work that shows every change to ``kit_id`` known to be committed.

        Once a replica has been chosen, a failure of the read itself is not retried on the
        primary (the block may have run in part): it fails as it would have on the primary
        (503 when the database is unreachable), and the client retries.
        """
        if not self.enabled:
            async with self._sources.read() as uow:
                yield uow
            return
        required = await self._requirement(kit_id)
        reason = UNAVAILABLE
        for index in self._candidates():
            chosen = False
            try:
                async with self._sources.replica(index) as uow:
                    if is_fresh(await self._marks.shown(uow, kit_id), required):
                        chosen = True
                        self.served.inc()
                        yield uow
            except (Unavailable, DBAPIError):
                if chosen:
                    raise
                self._rest(index)
                continue
            if chosen:
                return
            reason = LAGGING
            break
        self.fallbacks.labels(reason).inc()
        async with self._sources.read() as uow:
            yield uow

    async def probe(self) -> str:
        """For readiness, never required: ``ok``, ``degraded`` (some answer) or ``unavailable``."""
        answering = 0
        for index in range(self._sources.replica_count):
            try:
                async with self._sources.replica(index) as uow:
                    await uow.session.execute(text("SELECT 1"))
                answering += 1
            except (Unavailable, DBAPIError, OSError):
                pass
        if answering == self._sources.replica_count:
            return "ok"
        return "degraded" if answering else "unavailable"

    async def _requirement(self, kit_id: str) -> Requirement:
        answers = await self._known_answers(kit_id) if self._known_answers else None
        return Requirement(audit_length=self._changes.known(kit_id), answers=answers)

    def _candidates(self) -> list[int]:
        """The replicas not cooling down, starting with the one whose turn it is."""
        count = self._sources.replica_count
        start, self._next = self._next, (self._next + 1) % count
        now = self._clock()
        turns = ((start + offset) % count for offset in range(count))
        return [index for index in turns if self._down_until[index] <= now]

    def _rest(self, index: int) -> None:
        self._down_until[index] = self._clock() + self._cool_down
        logger.warning("replica.unavailable", extra={"replica": index})


class CommittedVersions(Protocol):
    """The newest committed (version, created at) of a kit's answers, when known
    (``health_information.cache.HealthInformationCache``)."""

    async def committed_version(self, kit_id: str) -> tuple[int, datetime] | None: ...


def cached_answers(cache: CommittedVersions) -> KnownAnswers:
    """The shared cache's committed version of a kit's answers, as a freshness requirement."""

    async def known(kit_id: str) -> AnswersMark | None:
        committed = await cache.committed_version(kit_id)
        return AnswersMark(created_at=committed[1], version=committed[0]) if committed else None

    return known
