"""REST adapter for a kit's health information: translate HTTP to service calls and back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from starlette.responses import Response

from healthinfo.api.deps import (
    JSON,
    MERGE_PATCH,
    ActorDep,
    ContextDep,
    Cursor,
    KitId,
    Limit,
    ServicesDep,
    read_json_object,
)
from healthinfo.api.idempotent import run_write
from healthinfo.api.openapi import READ_ERRORS, WRITE_ERRORS, json_body, ok, problems
from healthinfo.api.responses import json_response, representation
from healthinfo.common.context import RequestContext
from healthinfo.common.pagination import DEFAULT_LIMIT
from healthinfo.health_information.preconditions import etag, if_none_match_hits
from healthinfo.health_information.schemas import (
    Amendment,
    HealthInformationDoc,
    PatchAnswers,
    ReplaceAnswers,
    RevisionList,
)
from healthinfo.health_information.service import AMEND, ERASE, READ, SAVE, SUBMIT
from healthinfo.services import Services

router = APIRouter(tags=["health information"])
PATH = "/kits/{kitId}/health-information"

IfMatch = Annotated[
    str | None, Header(alias="If-Match", description='Strict precondition: `"<version>"`.')
]
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match")]


@router.get(
    PATH,
    summary="Read a kit's health information",
    responses={
        **ok(HealthInformationDoc, "The current representation."),
        304: {"description": "Not modified."},
        **problems(*READ_ERRORS, 403),
    },
)
async def get_health_information(
    kit_id: KitId, ctx: ContextDep, svc: ServicesDep, if_none_match: IfNoneMatch = None
) -> Response:
    async with svc.uows.read() as uow:
        state = await svc.health_information.get(uow, ctx.actor, kit_id)
    if if_none_match is not None and if_none_match_hits(if_none_match, state.version):
        return Response(status_code=304, headers={"ETag": etag(state.version)})
    await audit_read(svc, ctx, kit_id, state.version)
    return representation(state)


async def audit_read(svc: Services, ctx: RequestContext, kit_id: str, version: int) -> None:
    """Answers are about to be disclosed: audit it first (when read auditing is on)."""
    if svc.health_information.audits_reads(kit_id):
        await svc.writes.run(
            ctx,
            action=READ,
            kit_id=kit_id,
            operation=lambda uow: svc.health_information.record_read(
                uow, ctx, kit_id, version=version
            ),
        )


@router.put(
    PATH,
    summary="Replace all answers (and optionally submit)",
    openapi_extra=json_body(ReplaceAnswers, JSON),
    responses={
        **ok(HealthInformationDoc, "Saved."),
        **ok(HealthInformationDoc, "First save.", 201),
        **problems(*WRITE_ERRORS),
    },
)
async def put_health_information(
    kit_id: KitId,
    request: Request,
    ctx: ContextDep,
    svc: ServicesDep,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    body = ReplaceAnswers.parse(await read_json_object(request))
    return await run_write(
        request,
        ctx,
        svc,
        action=SUBMIT if body.submitted else SAVE,
        kit_id=kit_id,
        render=lambda result: representation(result.state, status=201 if result.created else 200),
        operation=lambda uow: svc.health_information.replace(
            uow,
            ctx,
            kit_id,
            body.answers,
            submit=body.submitted,
            if_match=if_match,
            if_none_match=if_none_match,
            base_version=body.base_version,
        ),
    )


@router.patch(
    PATH,
    summary="Merge-patch answers (RFC 7396)",
    openapi_extra=json_body(PatchAnswers, MERGE_PATCH, JSON),
    responses={**ok(HealthInformationDoc, "Saved."), **problems(*WRITE_ERRORS)},
)
async def patch_health_information(
    kit_id: KitId, request: Request, ctx: ContextDep, svc: ServicesDep, if_match: IfMatch = None
) -> Response:
    body = PatchAnswers.parse(await read_json_object(request, media_types=(MERGE_PATCH, JSON)))
    return await run_write(
        request,
        ctx,
        svc,
        action=SAVE,
        kit_id=kit_id,
        render=lambda result: representation(result.state),
        operation=lambda uow: svc.health_information.patch(
            uow, ctx, kit_id, body.answers, if_match=if_match, base_version=body.base_version
        ),
    )


@router.post(
    PATH + "/submit",
    summary="Submit: required answers checked, then read-only",
    responses={**ok(HealthInformationDoc, "Submitted."), **problems(*WRITE_ERRORS)},
)
async def submit_health_information(
    kit_id: KitId, request: Request, ctx: ContextDep, svc: ServicesDep, if_match: IfMatch = None
) -> Response:
    return await run_write(
        request,
        ctx,
        svc,
        action=SUBMIT,
        kit_id=kit_id,
        render=lambda result: representation(result.state),
        operation=lambda uow: svc.health_information.submit(uow, ctx, kit_id, if_match=if_match),
    )


@router.get(
    PATH + "/history",
    summary="Revisions, newest first",
    responses={**ok(RevisionList, "A page of revisions."), **problems(*READ_ERRORS, 403)},
)
async def list_history(
    kit_id: KitId,
    actor: ActorDep,
    svc: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    async with svc.uows.read() as uow:
        page = await svc.health_information.history(uow, actor, kit_id, limit=limit, cursor=cursor)
    return json_response(
        {"items": [r.to_dict() for r in page.items], "nextCursor": page.next_cursor}
    )


@router.get(
    PATH + "/history/{version}",
    summary="The representation as it was at one version",
    responses={**ok(HealthInformationDoc, "That version."), **problems(*READ_ERRORS, 403)},
)
async def get_history_version(
    kit_id: KitId,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    ctx: ContextDep,
    svc: ServicesDep,
) -> Response:
    async with svc.uows.read() as uow:
        state = await svc.health_information.get_version(uow, ctx.actor, kit_id, version)
    await audit_read(svc, ctx, kit_id, state.version)
    return representation(state)


@router.post(
    PATH + "/amendments",
    summary="Amend submitted answers (admin): a new `amended` version, the reason audited",
    openapi_extra=json_body(Amendment),
    responses={**ok(HealthInformationDoc, "Amended."), **problems(*WRITE_ERRORS)},
)
async def amend_health_information(
    kit_id: KitId, request: Request, ctx: ContextDep, svc: ServicesDep, if_match: IfMatch = None
) -> Response:
    body = Amendment.parse(await read_json_object(request))
    return await run_write(
        request,
        ctx,
        svc,
        action=AMEND,
        kit_id=kit_id,
        render=lambda result: representation(result.state),
        operation=lambda uow: svc.health_information.amend(
            uow, ctx, kit_id, body.answers, reason=body.reason, if_match=if_match
        ),
    )


@router.delete(
    PATH,
    summary="Erase the answers and their history (owner or admin); the erasure stays audited",
    status_code=204,
    responses=problems(401, 403, 404, 422, 503),
)
async def erase_health_information(kit_id: KitId, ctx: ContextDep, svc: ServicesDep) -> Response:
    await svc.writes.run(
        ctx,
        action=ERASE,
        kit_id=kit_id,
        operation=lambda uow: svc.health_information.erase(uow, ctx, kit_id),
    )
    return Response(status_code=204)
