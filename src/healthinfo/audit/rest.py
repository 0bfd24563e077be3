"""REST adapter for reading a kit's audit trail (admin, auditor)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from healthinfo.api.deps import ActorDep, Cursor, KitId, Limit, ServicesDep
from healthinfo.api.openapi import READ_ERRORS, ok, problems
from healthinfo.api.responses import json_response
from healthinfo.audit.schemas import AuditEventList
from healthinfo.auth.access import Permission
from healthinfo.common.pagination import DEFAULT_LIMIT

router = APIRouter(tags=["compliance"])


@router.get(
    "/kits/{kitId}/audit-events",
    summary="The kit's audit events, newest first",
    responses={**ok(AuditEventList, "A page of audit events."), **problems(*READ_ERRORS, 403)},
)
async def list_audit_events(
    kit_id: KitId,
    actor: ActorDep,
    svc: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    # Read events still queued by this process (audit.read_batches) are committed first, so
    # the trail shown includes every read this instance has answered (within a short wait).
    await svc.read_audit.flush()
    async with svc.replica_reads.for_kit(kit_id) as uow:
        await svc.kits.authorize(uow, actor, kit_id, Permission.READ_AUDIT)
        page = await svc.audit.list_for_kit(uow, kit_id, limit=limit, cursor=cursor)
        items = await svc.audit.describe(page.items)
    return json_response({"items": items, "nextCursor": page.next_cursor})
