"""Everything stored about a kit, as one JSON document (GDPR articles 15 and 20).

The export is itself a disclosure of health data, so it is audited (``kit.export``) and
committed, on the primary, before anything is read; the reading may then happen on a streaming
replica (``replication/``), in a transaction of its own. The document lists its own
``kit.export`` event even when that replica has not replayed it yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, select

from healthinfo.audit.service import AuditEntry, AuditLog
from healthinfo.auth.access import Permission
from healthinfo.common.audit_actions import EXPORT as EXPORT  # re-exported: the action is ours
from healthinfo.common.clock import Clock, to_rfc3339, utc_now
from healthinfo.common.context import RequestContext
from healthinfo.common.uow import UnitOfWork
from healthinfo.db.models import AuditEvent, Kit, KitMember
from healthinfo.health_information.repository import HealthInformationRepository
from healthinfo.kits.service import KitService

KITS = cast(Table, Kit.__table__)
MEMBERS = cast(Table, KitMember.__table__)
FORMAT = "healthinfo.kit-export/1"


@dataclass(frozen=True, slots=True)
class ExportGrant:
    """What the audited decision hands to the read: the owner, and the export's own event."""

    owner_id: str | None
    own_event: dict[str, object] | None


class KitExporter:
    def __init__(
        self,
        *,
        kits: KitService,
        repository: HealthInformationRepository,
        audit: AuditLog,
        clock: Clock = utc_now,
    ) -> None:
        self._kits = kits
        self._repo = repository
        self._audit = audit
        self._clock = clock

    async def authorize(self, uow: UnitOfWork, ctx: RequestContext, kit_id: str) -> ExportGrant:
        """Decide and audit the export, in a writing transaction (on the primary)."""
        access = await self._kits.authorize(uow, ctx.actor, kit_id, Permission.EXPORT)
        await self._audit.record(uow, ctx, AuditEntry(action=EXPORT, kit_id=kit_id))
        # The kit's newest event: ours, since appends to a kit's chain queue until we commit.
        own = await uow.session.scalar(
            select(AuditEvent)
            .where(AuditEvent.kit_id == kit_id)
            .order_by(AuditEvent.id.desc())
            .limit(1)
        )
        described = await self._audit.describe([own]) if own is not None else [None]
        return ExportGrant(access.owner_id, described[0])

    async def document(
        self, uow: UnitOfWork, ctx: RequestContext, kit_id: str, grant: ExportGrant
    ) -> dict[str, Any]:
        """Read the export ``grant`` allows; ``uow`` may be a replica's."""
        kit = (await uow.session.execute(select(KITS).where(KITS.c.kit_id == kit_id))).first()
        current = await self._repo.get(uow, kit_id)
        events = _addresses_for(ctx, await self._audit_events(uow, kit_id))
        own = grant.own_event
        if own is not None and all(event["id"] != own["id"] for event in events):
            events.append(own)  # a replica without it has none of the kit's later events either
        return {
            "format": FORMAT,
            "kitId": kit_id,
            "exportedAt": to_rfc3339(self._clock()),
            "exportedBy": ctx.actor.user_id,
            "kit": {
                "ownerId": grant.owner_id,
                "claimedAt": _time(kit.claimed_at) if kit else None,
                "createdAt": _time(kit.created_at) if kit else None,
            },
            "members": await self._members(uow, kit_id),
            "healthInformation": current.to_representation() if current else None,
            "history": [
                {**revision, "at": to_rfc3339(revision["at"])}
                for revision in await self._repo.all_revisions(uow, kit_id)
            ],
            "auditEvents": events,
        }

    async def _members(self, uow: UnitOfWork, kit_id: str) -> list[dict[str, Any]]:
        rows = await uow.session.execute(
            select(MEMBERS).where(MEMBERS.c.kit_id == kit_id).order_by(MEMBERS.c.user_id)
        )
        return [
            {
                "userId": r.user_id,
                "role": r.role,
                "addedAt": _time(r.added_at),
                "addedBy": r.added_by,
            }
            for r in rows
        ]

    async def _audit_events(self, uow: UnitOfWork, kit_id: str) -> list[dict[str, object]]:
        events = await uow.session.scalars(
            select(AuditEvent).where(AuditEvent.kit_id == kit_id).order_by(AuditEvent.id)
        )
        return await self._audit.describe(events)


def _addresses_for(ctx: RequestContext, events: list[dict[str, object]]) -> list[dict[str, object]]:
    """The owner sees the address and user agent of their own actions only (admins see all).

    Other people's (members', admins', support tools') addresses are their personal data, not
    the owner's: the export is the owner's right of access to *their* data (GDPR article 15).
    """
    if ctx.actor.is_admin:
        return events
    return [
        event
        if event["actor"] == ctx.actor.user_id
        else {**event, "clientAddress": None, "userAgent": None}
        for event in events
    ]


def _time(value: Any) -> str | None:
    return to_rfc3339(value) if value is not None else None
