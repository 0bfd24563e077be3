"""The audit log, also telling replication (after each commit) which kits this process changed.

Every change to a kit is audited in the change's own transaction, from every channel, so the
record is complete without the services knowing about replicas. The chain length is read in
that transaction, right after the append (one primary-key lookup on a row the transaction has
locked anyway). Used only when replicas are configured (``app.build_services``).

It lives here, not in ``replication/``, so that replication depends on a protocol
(``common.audit_actions.ChangeSink``) rather than on the audit package: the dependency points
from the domain to the infrastructure-ish reader, not back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, select

from healthinfo.audit.keys import AuditKeyring
from healthinfo.audit.reasons import ReasonCodec
from healthinfo.audit.service import AuditEntry, AuditLog
from healthinfo.common.audit_actions import ChangeSink, is_change
from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.context import RequestContext
from healthinfo.common.uow import UnitOfWork
from healthinfo.db.models import AuditChainHead

HEADS = cast(Table, AuditChainHead.__table__)


class ChangeTrackingAuditLog(AuditLog):
    def __init__(
        self,
        changes: ChangeSink,
        keys: AuditKeyring,
        *,
        clock: Clock = utc_now,
        reasons: ReasonCodec | None = None,
    ) -> None:
        super().__init__(keys, clock=clock, reasons=reasons)
        self._changes = changes

    async def record_many(
        self, uow: UnitOfWork, ctx: RequestContext, entries: Sequence[AuditEntry]
    ) -> None:
        """Changes are tracked one by one; disclosures (the bulk export's) go in one batch."""
        if any(is_change(entry) for entry in entries):
            for entry in entries:
                await self.record(uow, ctx, entry)
            return
        await super().record_many(uow, ctx, entries)

    async def record(self, uow: UnitOfWork, ctx: RequestContext, entry: AuditEntry) -> None:
        await super().record(uow, ctx, entry)
        if is_change(entry):
            changes, kit_id = self._changes, entry.kit_id
            length = await _audit_length(uow, kit_id)

            async def note() -> None:
                changes.changed(kit_id, length)

            uow.after_commit(note)


async def _audit_length(uow: UnitOfWork, kit_id: str) -> int:
    length = await uow.session.scalar(select(HEADS.c.length).where(HEADS.c.kit_id == kit_id))
    return int(length or 0)
