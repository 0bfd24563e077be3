"""The export runner: claims export jobs with a lease and writes them page by page.

Runs in ``healthinfo worker`` and, unless ``HEALTHINFO_EXPORT_IN_PROCESS=false``, in the serve
process (the embedded single-command mode), like the forwarding relay. Any number of runners
share the jobs: a claim is a conditional UPDATE on a free or ended lease, and every page renews
the lease. A page is one transaction on the primary: the job's cursor moves (only if the lease
and the cursor are still this runner's), the encrypted part is inserted, and one audit event
per exported kit is appended. So after a SIGKILL the next runner resumes at the last committed
page, and each kit is written, and audited, exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from contextlib import suppress
from datetime import timedelta

from healthinfo.audit.service import AuditEntry, AuditLog
from healthinfo.auth.actor import Actor
from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.context import Channel, RequestContext
from healthinfo.common.tasks import stop_tasks
from healthinfo.common.uow import UnitOfWorkFactory, is_database_unavailable
from healthinfo.errors import Unavailable
from healthinfo.fhir.bulk import BULK_EXPORT
from healthinfo.fhir.bulk.cipher import PartCipher
from healthinfo.fhir.bulk.source import ExportSource
from healthinfo.fhir.bulk.store import ExportStore, Job, Page

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The job was cancelled or taken over: this runner's page must not commit."""


class ExportRunner:
    def __init__(
        self,
        *,
        uows: UnitOfWorkFactory,
        store: ExportStore,
        source: ExportSource,
        cipher: PartCipher,
        audit: AuditLog,
        page_size: int,
        lease_seconds: float,
        poll_seconds: float,
        ttl_seconds: float,
        name: str | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._uows = uows
        self._store = store
        self._source = source
        self._cipher = cipher
        self._audit = audit
        self._page_size = page_size
        self._lease = timedelta(seconds=lease_seconds)
        self._poll = poll_seconds
        self._ttl = timedelta(seconds=ttl_seconds)
        self.name = name or f"export-{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"export-runner-{self.name}")

    async def stop(self) -> None:
        """Stop after the page in flight (its transaction commits or rolls back whole)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=30)
            except TimeoutError:
                await stop_tasks([self._task])
            self._task = None

    def wake(self) -> None:
        """A job was queued (the kick-off's after-commit hook): look now, not at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            worked = False
            try:
                worked = await self.run_once()
            except Exception as exc:  # the loop outlives any failure; the job state is durable
                if isinstance(exc, Unavailable) or is_database_unavailable(exc):
                    logger.warning("export.database_unavailable", extra={"runner": self.name})
                else:
                    logger.exception("export.round_failed", extra={"runner": self.name})
            if worked and not self._stopping:
                continue
            if not self._wake.is_set():
                with suppress(TimeoutError):
                    async with asyncio.timeout(self._poll):
                        await self._wake.wait()
            self._wake.clear()

    async def run_once(self) -> bool:
        """Claim one job and write it until it completes (or this runner stops or loses it)."""
        owner = f"{self.name}:{uuid.uuid4().hex[:12]}"
        job = await self._claim(owner)
        if job is None:
            return False
        logger.info("export.job_claimed", extra={"job_id": job.job_id, "runner": self.name})
        try:
            if job.total is None:
                total = await self._source.count(job)
                async with self._uows.write() as uow:
                    await self._store.set_total(uow, job.job_id, owner=owner, total=total)
            while not self._stopping:
                advanced = await self._page(job, owner)
                if advanced is None:
                    logger.info("export.job_completed", extra={"job_id": job.job_id})
                    break
                job = advanced
        except LeaseLost:
            logger.info("export.lease_lost", extra={"job_id": job.job_id, "runner": self.name})
        except Exception as exc:
            if isinstance(exc, Unavailable) or is_database_unavailable(exc):
                raise  # transient: the lease ends and this or another runner goes on
            logger.exception("export.job_failed", extra={"job_id": job.job_id})
            async with self._uows.write() as uow:
                await self._store.fail(
                    uow,
                    job.job_id,
                    owner=owner,
                    now=self._clock(),
                    ttl=self._ttl,
                    error="The export failed; start a new one.",
                )
            await self._cipher.destroy(job.job_id)
        return True

    async def _claim(self, owner: str) -> Job | None:
        now = self._clock()
        async with self._uows.read() as uow:
            candidates = await self._store.claimable(uow, now=now, limit=5)
        for job_id in candidates:
            async with self._uows.write() as uow:
                job = await self._store.claim(uow, job_id, owner=owner, now=now, lease=self._lease)
            if job is not None:
                return job
        return None

    async def _page(self, job: Job, owner: str) -> Job | None:
        """Write the next page; the job as it now is, or None once it is complete."""
        read = await self._source.page(job, limit=self._page_size)
        exhausted = read.scanned < self._page_size
        phase = job.phase + 1 if exhausted else job.phase
        cursor = None if exhausted else read.last_key
        data = None
        if read.lines:
            data = await self._cipher.seal(job.job_id, job.parts + 1, b"".join(read.lines))
        page = Page(
            phase=phase,
            cursor=cursor,
            resource_type=job.types[job.phase],
            count=len(read.lines),
            data=data,
            done=phase >= len(job.types),
        )
        ctx = RequestContext(
            actor=Actor(user_id=job.requester),
            channel=Channel.WORKER,
            request_id=f"export-{job.job_id}",
        )
        now = self._clock()
        async with self._uows.write() as uow:
            moved = await self._store.advance(
                uow, job, page, owner=owner, now=now, lease=self._lease, ttl=self._ttl
            )
            if not moved:
                raise LeaseLost
            await self._audit.record_many(
                uow,
                ctx,
                [
                    AuditEntry(action=BULK_EXPORT, kit_id=kit_id, version_before=version)
                    for kit_id, version in read.kits
                ],
            )
        if page.done:
            return None
        return dataclasses.replace(
            job,
            phase=phase,
            cursor=cursor,
            parts=job.parts + (1 if data is not None else 0),
            exported=job.exported + page.count,
        )
