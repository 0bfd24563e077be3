"""Run one write in one transaction, and audit it even when it is refused.

A refused write rolls its transaction back, taking any audit event written inside it along.
So the refusal is recorded in a transaction of its own, after the rollback. Every channel
(REST, WebSocket, worker) runs its writes through here: that is how "refused write attempts
are audited" holds identically everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from healthinfo.audit.service import AuditEntry, AuditLog
from healthinfo.common.context import RequestContext
from healthinfo.common.uow import UnitOfWork, UnitOfWorkFactory
from healthinfo.crypto.keystore import shared_key_reads
from healthinfo.errors import DomainError, Unavailable
from healthinfo.infra.metrics import Metrics

T = TypeVar("T")
logger = logging.getLogger(__name__)

REFUSED_PREFIX = "refused:"


class WriteRunner:
    def __init__(
        self, *, uows: UnitOfWorkFactory, audit: AuditLog, metrics: Metrics | None = None
    ) -> None:
        self._uows = uows
        self._audit = audit
        self._metrics = metrics
        self._settle: Callable[[str], Awaitable[None]] | None = None

    def settle_reads_with(self, settle: Callable[[str], Awaitable[None]]) -> None:
        """Before each write to a kit, ``settle(kit_id)`` (``ReadAuditor.settle``: the kit's
        batched read events are committed first, so its chain keeps the order of events)."""
        self._settle = settle

    async def run(
        self,
        ctx: RequestContext,
        *,
        action: str,
        kit_id: str,
        operation: Callable[[UnitOfWork], Awaitable[T]],
        audit_refusals: bool = True,
        read: bool = False,
    ) -> T:
        """Commit ``operation``'s work; on a domain refusal, audit it and re-raise.

        ``audit_refusals=False`` is for reads: a refused read is an ordinary 404/403 that
        discloses nothing and was never written to the trail.

        ``read=True`` says the operation discloses rather than changes (an audited read of
        answers, an export): it commits only its audit event, and is counted in
        ``healthinfo_audited_reads_total``, so that ``healthinfo_writes_total`` (and the write
        success-rate alert) counts writes only.
        """
        count = self._count_read if read else self._count_write
        if not read and kit_id and self._settle is not None:
            await self._settle(kit_id)
        try:
            with shared_key_reads():
                async with self._uows.write() as uow:
                    result = await operation(uow)
        except Unavailable:
            count(action, "unavailable")
            raise
        except DomainError as exc:
            count(action, exc.code)
            if audit_refusals:
                await self._record_refusal(ctx, action, kit_id, exc)
            raise
        except Exception:
            count(action, "error")
            raise
        count(action, "ok")
        return result

    def _count_write(self, action: str, outcome: str) -> None:
        """``healthinfo_writes_total``: ok, a refusal's code, unavailable or error."""
        if self._metrics is not None:
            self._metrics.writes.labels(action, outcome).inc()

    def _count_read(self, action: str, outcome: str) -> None:
        """``healthinfo_audited_reads_total``, with the same outcomes as the writes."""
        if self._metrics is not None:
            self._metrics.audited_reads.labels(action, outcome).inc()

    async def _record_refusal(
        self, ctx: RequestContext, action: str, kit_id: str, exc: DomainError
    ) -> None:
        entry = AuditEntry(action=action, kit_id=kit_id, outcome=REFUSED_PREFIX + exc.code)
        try:
            async with self._uows.write() as uow:
                await self._audit.record(uow, ctx, entry)
        except Exception:
            # The client gets the original refusal either way; an operator gets an alert.
            logger.exception("audit.refusal_write_failed")
            if self._metrics is not None:
                self._metrics.audit_failures.inc()
