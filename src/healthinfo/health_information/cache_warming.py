"""Fill the cache at start-up for kits active in the last N hours (bounded), in the background."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import cast

from sqlalchemy import Table, select

from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.tasks import stop_tasks
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.db.models import HealthInformation
from healthinfo.health_information.service import HealthInformationService

CURRENT = cast(Table, HealthInformation.__table__)
logger = logging.getLogger(__name__)


class CacheWarmer:
    """A Lifecycle: start-up is never delayed; warming runs as a task and is cancelled on stop."""

    def __init__(
        self,
        *,
        uows: UnitOfWorkFactory,
        service: HealthInformationService,
        hours: float,
        max_kits: int,
        clock: Clock = utc_now,
    ) -> None:
        self._uows = uows
        self._service = service
        self._hours = hours
        self._max_kits = max_kits
        self._clock = clock
        self._task: asyncio.Task[int] | None = None

    async def start(self) -> None:
        if self._max_kits > 0 and self._hours > 0:
            self._task = asyncio.create_task(self.warm_recent())

    async def stop(self) -> None:
        await stop_tasks([self._task])

    async def warm_recent(self) -> int:
        """Returns how many kits were warmed (for tests and the log line)."""
        since = self._clock() - timedelta(hours=self._hours)
        try:
            async with self._uows.read() as uow:
                kit_ids = list(
                    await uow.session.scalars(
                        select(CURRENT.c.kit_id)
                        .where(CURRENT.c.updated_at >= since)
                        .order_by(CURRENT.c.updated_at.desc())
                        .limit(self._max_kits)
                    )
                )
                for kit_id in kit_ids:
                    await self._service.warm(uow, kit_id)
        except Exception:
            logger.warning("cache.warming_failed")
            return 0
        logger.info("cache.warmed", extra={"kits": len(kit_ids)})
        return len(kit_ids)
