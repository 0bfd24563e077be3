"""The export tables: jobs (request, cursor, lease) and their encrypted output pages.

Every state change of a running job is one conditional UPDATE naming the lease owner and the
cursor it expects, so a runner whose lease ended (another runner took the job over) or whose
job was cancelled changes nothing: its page rolls back with the failed UPDATE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, func, or_, select, update

from healthinfo.common.sql import insert_if_absent, rowcount
from healthinfo.common.uow import UnitOfWork
from healthinfo.db.models import ExportJob, ExportPart

JOBS = cast(Table, ExportJob.__table__)
PARTS = cast(Table, ExportPart.__table__)
QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
ACTIVE_STATES = (QUEUED, RUNNING)


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    requester: str
    state: str
    request_url: str
    types: tuple[str, ...]
    since: datetime | None
    statuses: tuple[str, ...]  # the health-information statuses exported; empty: every one
    transaction_time: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    phase: int  # index into ``types`` of the type being written
    cursor: str | None  # the last key written in that type (a kit id, a definition's seq)
    parts: int
    exported: int
    total: int | None
    error: str | None

    @staticmethod
    def of(row: Any) -> Job:
        return Job(
            job_id=row.job_id,
            requester=row.requester,
            state=row.state,
            request_url=row.request_url,
            types=tuple(row.types),
            since=row.since,
            statuses=tuple(row.statuses),
            transaction_time=row.transaction_time,
            completed_at=row.completed_at,
            expires_at=row.expires_at,
            phase=row.phase,
            cursor=row.cursor,
            parts=row.parts,
            exported=row.exported,
            total=row.total,
            error=row.error,
        )


@dataclass(frozen=True, slots=True)
class Page:
    """What one page transaction moves a job to: its next cursor and, if any, the part."""

    phase: int
    cursor: str | None
    resource_type: str | None = None
    count: int = 0
    data: str | None = None
    done: bool = False


class ExportStore:
    async def create(self, uow: UnitOfWork, values: dict[str, Any]) -> bool:
        """False when the requester has an active job: the unique (requester, active) index."""
        row = {
            **values,
            "active": 1,
            "state": QUEUED,
            "phase": 0,
            "cursor": None,
            "parts": 0,
            "exported": 0,
            "total": None,
            "completed_at": None,
            "expires_at": None,
            "lease_owner": None,
            "leased_until": None,
            "error": None,
        }
        return await insert_if_absent(uow, JOBS, row)

    async def get(self, uow: UnitOfWork, job_id: str) -> Job | None:
        row = (await uow.session.execute(select(JOBS).where(JOBS.c.job_id == job_id))).first()
        return Job.of(row) if row is not None else None

    async def delete(self, uow: UnitOfWork, job_id: str) -> bool:
        await uow.session.execute(delete(PARTS).where(PARTS.c.job_id == job_id))
        result = await uow.session.execute(delete(JOBS).where(JOBS.c.job_id == job_id))
        return rowcount(result) == 1

    async def claimable(self, uow: UnitOfWork, *, now: datetime, limit: int) -> list[str]:
        """Active jobs nobody holds a lease on (new, or their runner died), oldest first."""
        statement = (
            select(JOBS.c.job_id)
            .where(
                JOBS.c.state.in_(ACTIVE_STATES),
                or_(JOBS.c.leased_until.is_(None), JOBS.c.leased_until < now),
            )
            .order_by(JOBS.c.created_at)
            .limit(limit)
        )
        return list((await uow.session.scalars(statement)).all())

    async def claim(
        self, uow: UnitOfWork, job_id: str, *, owner: str, now: datetime, lease: timedelta
    ) -> Job | None:
        """Take the lease if it is still free; None when another runner was first."""
        result = await uow.session.execute(
            update(JOBS)
            .where(
                JOBS.c.job_id == job_id,
                JOBS.c.state.in_(ACTIVE_STATES),
                or_(JOBS.c.leased_until.is_(None), JOBS.c.leased_until < now),
            )
            .values(state=RUNNING, lease_owner=owner, leased_until=now + lease)
        )
        if rowcount(result) != 1:
            return None
        return await self.get(uow, job_id)

    async def set_total(self, uow: UnitOfWork, job_id: str, *, owner: str, total: int) -> None:
        await uow.session.execute(
            update(JOBS)
            .where(JOBS.c.job_id == job_id, JOBS.c.lease_owner == owner)
            .values(total=total)
        )

    async def advance(
        self,
        uow: UnitOfWork,
        job: Job,
        page: Page,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
        ttl: timedelta,
    ) -> bool:
        """Move the job from ``job``'s cursor to ``page``'s and store the page's part, or do
        nothing (False) when the lease or the cursor is no longer ``job``'s: run it first in
        the page's transaction, so the part and the audit events roll back with it."""
        expected = JOBS.c.cursor.is_(None) if job.cursor is None else JOBS.c.cursor == job.cursor
        values: dict[str, Any] = {
            "phase": page.phase,
            "cursor": page.cursor,
            "exported": JOBS.c.exported + page.count,
            "leased_until": now + lease,
        }
        if page.data is not None:
            values["parts"] = JOBS.c.parts + 1
        if page.done:
            values.update(
                state=COMPLETED,
                active=None,
                completed_at=now,
                expires_at=now + ttl,
                lease_owner=None,
                leased_until=None,
            )
        result = await uow.session.execute(
            update(JOBS)
            .where(
                JOBS.c.job_id == job.job_id,
                JOBS.c.state == RUNNING,
                JOBS.c.lease_owner == owner,
                JOBS.c.phase == job.phase,
                expected,
            )
            .values(**values)
        )
        if rowcount(result) != 1:
            return False
        if page.data is not None:
            assert page.resource_type is not None
            await uow.session.execute(
                PARTS.insert(),
                {
                    "job_id": job.job_id,
                    "seq": job.parts + 1,
                    "resource_type": page.resource_type,
                    "count": page.count,
                    "data": page.data,
                },
            )
        return True

    async def fail(
        self, uow: UnitOfWork, job_id: str, *, owner: str, now: datetime, ttl: timedelta, error: str
    ) -> None:
        """A job that cannot finish: the status URL answers with an error from now on."""
        await uow.session.execute(
            update(JOBS)
            .where(JOBS.c.job_id == job_id, JOBS.c.lease_owner == owner)
            .values(
                state=FAILED,
                active=None,
                completed_at=now,
                expires_at=now + ttl,
                lease_owner=None,
                leased_until=None,
                error=error[:255],
            )
        )
        await uow.session.execute(delete(PARTS).where(PARTS.c.job_id == job_id))

    async def counts(self, uow: UnitOfWork, job_id: str) -> dict[str, int]:
        """Resources written per type (the manifest's ``count``)."""
        rows = await uow.session.execute(
            select(PARTS.c.resource_type, func.sum(PARTS.c.count))
            .where(PARTS.c.job_id == job_id)
            .group_by(PARTS.c.resource_type)
        )
        return {row[0]: int(row[1]) for row in rows}

    async def part_seqs(self, uow: UnitOfWork, job_id: str, resource_type: str) -> list[int]:
        statement = (
            select(PARTS.c.seq)
            .where(PARTS.c.job_id == job_id, PARTS.c.resource_type == resource_type)
            .order_by(PARTS.c.seq)
        )
        return list((await uow.session.scalars(statement)).all())

    async def part(self, uow: UnitOfWork, job_id: str, seq: int) -> str | None:
        data: str | None = await uow.session.scalar(
            select(PARTS.c.data).where(PARTS.c.job_id == job_id, PARTS.c.seq == seq)
        )
        return data

    async def expired(self, uow: UnitOfWork, *, now: datetime, limit: int) -> list[str]:
        statement = (
            select(JOBS.c.job_id)
            .where(JOBS.c.expires_at.is_not(None), JOBS.c.expires_at < now)
            .order_by(JOBS.c.expires_at)
            .limit(limit)
        )
        return list((await uow.session.scalars(statement)).all())
