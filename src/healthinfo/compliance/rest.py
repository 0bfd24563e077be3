"""REST adapter for the kit export."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from healthinfo.api.deps import ContextDep, KitId, ServicesDep
from healthinfo.api.openapi import problems
from healthinfo.api.responses import json_response
from healthinfo.compliance.export import EXPORT, KitExporter

router = APIRouter(tags=["compliance"])


@router.get(
    "/kits/{kitId}/export",
    summary="Everything stored about the kit as one JSON document (owner or admin)",
    responses={200: {"description": "The export."}, **problems(401, 403, 404, 422, 503)},
)
async def export_kit(kit_id: KitId, ctx: ContextDep, svc: ServicesDep) -> Response:
    exporter = KitExporter(
        kits=svc.kits, repository=svc.health_information.repository, audit=svc.audit
    )
    await svc.read_audit.flush()  # the export's trail includes the reads already answered
    grant = await svc.writes.run(
        ctx,
        action=EXPORT,
        kit_id=kit_id,
        operation=lambda uow: exporter.authorize(uow, ctx, kit_id),
        read=True,
    )
    async with svc.replica_reads.for_kit(kit_id) as uow:
        document = await exporter.document(uow, ctx, kit_id, grant)
    return json_response(
        document,
        headers={"Content-Disposition": f'attachment; filename="kit-{kit_id}-export.json"'},
    )
