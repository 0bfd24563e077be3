"""How a disclosure (a read of answers) is audited: ``sync``, ``batched`` or ``off``.

``HEALTHINFO_AUDIT_READS`` chooses. ``sync`` writes the event in a transaction of its own (or
the read's) before the answers leave: nothing disclosed is ever unaudited, at the price of a
write transaction per read. ``batched`` (the default) queues it for ``audit.read_batches``:
the read does no database write, and a crash can lose the events of the last batch window
(docs/security.md). ``off`` audits no reads. Writes are audited in their own transaction
whatever this says.
"""

from __future__ import annotations

from healthinfo.audit.read_batches import ReadAuditBatcher
from healthinfo.audit.runner import WriteRunner
from healthinfo.audit.service import AuditEntry, AuditLog
from healthinfo.common.context import RequestContext
from healthinfo.config import ReadAuditMode
from healthinfo.infra.metrics import Metrics


class ReadAuditor:
    """Audits disclosures the configured way; a ``Lifecycle`` (it runs the batcher)."""

    def __init__(
        self,
        mode: ReadAuditMode,
        *,
        audit: AuditLog,
        writes: WriteRunner,
        metrics: Metrics,
        batcher: ReadAuditBatcher | None = None,
    ) -> None:
        if mode == "batched" and batcher is None:
            raise ValueError("batched read auditing needs a batcher")
        self.mode = mode
        self._audit = audit
        self._writes = writes
        self._metrics = metrics
        self.batcher = batcher if mode == "batched" else None

    @property
    def synchronous(self) -> bool:
        """Whether reads are audited in a transaction before they answer (``sync``)."""
        return self.mode == "sync"

    async def record(self, ctx: RequestContext, action: str, kit_id: str, version: int) -> None:
        """Audit that ``version`` of the kit's answers is being disclosed.

        Batched: the event is stamped now and queued; when the queue is full it is written
        synchronously instead (backpressure, never a drop). A refusal is not audited here: the
        caller has already checked access.
        """
        if self.mode == "off":
            return
        entry = AuditEntry(action=action, kit_id=kit_id, version_after=version)
        if self.batcher is not None and self.batcher.offer(self._audit.event(ctx, entry)):
            self._metrics.audited_reads.labels(action, "ok").inc()
            return
        await self._writes.run(
            ctx,
            action=action,
            kit_id=kit_id,
            operation=lambda uow: self._audit.record(uow, ctx, entry),
            audit_refusals=False,
            read=True,
        )

    async def settle(self, kit_id: str) -> None:
        """Before a write to the kit: commit its queued read events first, so that its chain
        lists a read before a write that came after it (a flush only when this kit has events
        waiting: a write after a read within the batch window waits for that batch).
        """
        if self.batcher is not None and self.batcher.holds(kit_id):
            await self.batcher.flush()

    async def flush(self) -> None:
        """Commit the queued read events (before the trail is shown), within a short wait."""
        if self.batcher is not None:
            await self.batcher.flush()

    async def start(self) -> None:
        if self.batcher is not None:
            await self.batcher.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()
