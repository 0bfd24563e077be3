"""A Lifecycle that deletes expired idempotency keys periodically, in the background."""

from __future__ import annotations

import asyncio
import logging

from healthinfo.common.tasks import stop_tasks
from healthinfo.idempotency.store import IdempotencyStore

logger = logging.getLogger(__name__)


class IdempotencyPurger:
    def __init__(self, store: IdempotencyStore, *, interval_seconds: float) -> None:
        self._store = store
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await stop_tasks([self._task])

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                purged = await self._store.purge_expired()
            except Exception:
                logger.warning("idempotency.purge_failed")
            else:
                logger.info("idempotency.purged", extra={"rows": purged})
