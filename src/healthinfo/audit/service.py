"""The audit log: one event per write or refused write, in the same transaction as the write.

Events hold question ids, versions and outcomes, never answer values, so the trail itself
holds no health data and can be shown to auditors. The one free text, an amendment's reason,
is sealed with the kit's data key (``audit.reasons``) and shredded by an erasure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from healthinfo.audit import chain
from healthinfo.audit.keys import AuditKeyring
from healthinfo.audit.reasons import ReasonCodec, RevealedReason
from healthinfo.common.audit_actions import OK as OK  # re-exported
from healthinfo.common.clock import Clock, to_rfc3339, utc_now
from healthinfo.common.context import RequestContext
from healthinfo.common.identifiers import without_control_characters
from healthinfo.common.pagination import Page, decode_cursor, encode_cursor
from healthinfo.common.uow import UnitOfWork
from healthinfo.db.models import AuditEvent

USER_AGENT_LENGTH = 255


@dataclass(frozen=True, slots=True)
class AuditEntry:
    action: str
    kit_id: str
    outcome: str = OK
    version_before: int | None = None
    version_after: int | None = None
    changed: Sequence[str] = ()
    reason: str | None = None


class AuditLog:
    def __init__(
        self, keys: AuditKeyring, *, clock: Clock = utc_now, reasons: ReasonCodec | None = None
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._reasons = reasons

    @property
    def keys(self) -> AuditKeyring:
        """The audit key ring that links the chains (and signs the checkpoints)."""
        return self._keys

    async def record(self, uow: UnitOfWork, ctx: RequestContext, entry: AuditEntry) -> None:
        """Add the event to the caller's transaction: it commits, or rolls back, with the write."""
        event = await self.prepare(ctx, entry)
        # Chains (keyed) and writes the event: one or two statements on PostgreSQL
        # (audit.chain). Core statements, not session.add + flush: the ORM's unit of work cost
        # more CPU than the statements themselves on every audited request, and nothing reads
        # the event back.
        await chain.append(uow, self._keys, event)

    async def prepare(self, ctx: RequestContext, entry: AuditEntry) -> AuditEvent:
        """The event ``record`` would write, not yet linked nor written: for a write that links
        and inserts it in its own statement (``chain.link``, health_information.repository)."""
        reason = entry.reason
        if reason is not None and self._reasons is not None:
            reason = await self._reasons.seal(entry.kit_id, reason)
        return self.event(ctx, entry, reason=reason)

    def event(
        self, ctx: RequestContext, entry: AuditEntry, *, reason: str | None = None
    ) -> AuditEvent:
        """The unlinked event for ``entry``, stamped now: what ``record`` writes at once and a
        read-audit batch writes a few milliseconds later (``audit.read_batches``). ``reason``:
        already sealed."""
        return AuditEvent(
            event_id=str(uuid.uuid4()),
            at=self._clock(),
            kit_id=entry.kit_id,
            actor=ctx.actor.user_id,
            action=entry.action,
            channel=ctx.channel.value,
            request_id=ctx.request_id,
            version_before=entry.version_before,
            version_after=entry.version_after,
            changed=sorted(entry.changed),
            outcome=entry.outcome,
            client_address=ctx.client_address,
            user_agent=without_control_characters(ctx.user_agent or "")[:USER_AGENT_LENGTH] or None,
            reason=reason,
        )

    async def record_many(
        self, uow: UnitOfWork, ctx: RequestContext, entries: Sequence[AuditEntry]
    ) -> None:
        """``record`` for entries of distinct kits in a few statements (bulk disclosures)."""
        events = [await self.prepare(ctx, entry) for entry in entries]
        await chain.append_many(uow, self._keys, events)

    async def list_for_kit(
        self, uow: UnitOfWork, kit_id: str, *, limit: int, cursor: str | None
    ) -> Page[AuditEvent]:
        query = select(AuditEvent).where(AuditEvent.kit_id == kit_id)
        if cursor is not None:
            query = query.where(AuditEvent.id < decode_cursor(cursor))
        rows = list(
            await uow.session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1))
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, encode_cursor(rows[-1].id) if more and rows else None)

    async def describe(self, events: Iterable[AuditEvent]) -> list[dict[str, object]]:
        """Events in the contract's shape, reasons unsealed (or marked erased)."""
        described = []
        for event in events:
            reason = (
                await self._reasons.reveal(event.kit_id, event.reason)
                if self._reasons is not None
                else RevealedReason(event.reason)
            )
            described.append(audit_event_dict(event, reason))
        return described


def audit_event_dict(event: AuditEvent, reason: RevealedReason) -> dict[str, object]:
    """The contract's shape of an audit event, with its reason as ``AuditLog.describe`` read it."""
    return {
        "id": event.event_id,
        "at": to_rfc3339(event.at),
        "actor": event.actor,
        "action": event.action,
        "channel": event.channel,
        "requestId": event.request_id,
        "versionBefore": event.version_before,
        "versionAfter": event.version_after,
        "changed": list(event.changed),
        "outcome": event.outcome,
        "clientAddress": event.client_address,
        "userAgent": event.user_agent,
        "reason": reason.text,
        "reasonErased": reason.erased,
    }
