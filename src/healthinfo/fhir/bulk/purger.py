"""Deletes expired exports (``HEALTHINFO_EXPORT_TTL`` after they ended) and shreds their keys."""

from __future__ import annotations

import asyncio
import logging

from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.tasks import stop_tasks
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.fhir.bulk.cipher import PartCipher
from healthinfo.fhir.bulk.store import ExportStore

logger = logging.getLogger(__name__)
BATCH = 100


class ExportPurger:
    def __init__(
        self,
        *,
        uows: UnitOfWorkFactory,
        store: ExportStore,
        cipher: PartCipher,
        interval_seconds: float,
        clock: Clock = utc_now,
    ) -> None:
        self._uows = uows
        self._store = store
        self._cipher = cipher
        self._interval = interval_seconds
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await stop_tasks([self._task])

    async def purge_once(self) -> int:
        """Delete every export that has expired; returns how many."""
        purged = 0
        while True:
            async with self._uows.write() as uow:
                expired = await self._store.expired(uow, now=self._clock(), limit=BATCH)
                for job_id in expired:
                    await self._store.delete(uow, job_id)
            # After the commit: a key destroyed for a row that rolled back would lose output.
            for job_id in expired:
                await self._cipher.destroy(job_id)
            purged += len(expired)
            if len(expired) < BATCH:
                return purged

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                purged = await self.purge_once()
            except Exception:
                logger.warning("export.purge_failed")
            else:
                if purged:
                    logger.info("export.purged", extra={"jobs": purged})
