"""REST adapter for claiming kits and managing their members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from healthinfo.api.deps import (
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
from healthinfo.api.responses import json_response
from healthinfo.common.clock import to_rfc3339
from healthinfo.common.pagination import DEFAULT_LIMIT
from healthinfo.kits.schemas import ClaimBody, ClaimDoc, MemberDoc, MemberList, MemberRole
from healthinfo.kits.service import ClaimResult, Member

router = APIRouter(tags=["kits"])


MEMBER_EXAMPLES = {
    "editor": {"summary": "Let them edit and submit", "value": {"role": "editor"}},
    "viewer": {"summary": "Let them read and follow", "value": {"role": "viewer"}},
}
CLAIM_EXAMPLES = {
    "bind": {
        "summary": "Claim, bound to the newest active health questionnaire",
        "value": {"questionnaire": {"id": "health-information"}},
    }
}
UserId = Annotated[str, Path(alias="userId", min_length=1, max_length=255)]


def _member(member: Member) -> dict[str, object]:
    return {
        "userId": member.user_id,
        "role": member.role,
        "addedAt": to_rfc3339(member.added_at) if member.added_at else None,
        "addedBy": member.added_by,
    }


@router.post(
    "/kits/{kitId}/claim",
    summary="Claim a kit: the caller becomes its owner",
    description=(
        'An optional body `{"questionnaire": {"id", "version"}}` binds the kit to that '
        "questionnaire version (`version` optional: the newest active one) before anything is "
        "saved; naming another questionnaire than the kit's is 409 `questionnaire-mismatch`."
    ),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/ClaimBody"},
                    "examples": CLAIM_EXAMPLES,
                }
            },
        }
    },
    responses={
        **ok(ClaimDoc, "Already the caller's."),
        **ok(ClaimDoc, "Claimed now.", 201),
        **problems(400, 401, 409, 413, 415, 422, 503),
    },
)
async def claim_kit(kit_id: KitId, request: Request, ctx: ContextDep, svc: ServicesDep) -> Response:
    choice = None
    if await request.body():
        body = ClaimBody.parse(await read_json_object(request))
        choice = body.questionnaire.choice() if body.questionnaire else None
    return await run_write(
        request,
        ctx,
        svc,
        action="kit.claim",
        kit_id=kit_id,
        render=_claim_response,
        operation=lambda uow: svc.health_information.claim(uow, ctx, kit_id, choice),
    )


def _claim_response(result: ClaimResult) -> Response:
    body = {
        "kitId": result.kit_id,
        "ownerId": result.owner_id,
        "claimedAt": to_rfc3339(result.claimed_at),
    }
    return json_response(body, status=201 if result.created else 200)


@router.get(
    "/kits/{kitId}/members",
    summary="The kit's owner and members",
    responses={**ok(MemberList, "Owner first, then members."), **problems(*READ_ERRORS, 403)},
)
async def list_members(
    kit_id: KitId,
    actor: ActorDep,
    svc: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    async with svc.uows.read() as uow:
        page = await svc.kits.list_members(uow, actor, kit_id, limit=limit, cursor=cursor)
    return json_response(
        {"items": [_member(m) for m in page.items], "nextCursor": page.next_cursor}
    )


@router.put(
    "/kits/{kitId}/members/{userId}",
    summary="Add a member or change their role (owner or admin)",
    openapi_extra=json_body(MemberRole, examples=MEMBER_EXAMPLES),
    responses={
        **ok(MemberDoc, "Role changed."),
        **ok(MemberDoc, "Member added.", 201),
        **problems(*WRITE_ERRORS),
    },
)
async def put_member(
    kit_id: KitId, user_id: UserId, request: Request, ctx: ContextDep, svc: ServicesDep
) -> Response:
    body = MemberRole.parse(await read_json_object(request))
    return await run_write(
        request,
        ctx,
        svc,
        action="kit.member.put",
        kit_id=kit_id,
        render=lambda result: json_response(_member(result[0]), status=201 if result[1] else 200),
        operation=lambda uow: svc.kits.put_member(uow, ctx, kit_id, user_id, body.role),
    )


@router.delete(
    "/kits/{kitId}/members/{userId}",
    summary="Remove a member (owner or admin)",
    status_code=204,
    responses=problems(401, 403, 404, 422, 503),
)
async def delete_member(
    kit_id: KitId, user_id: UserId, ctx: ContextDep, svc: ServicesDep
) -> Response:
    await svc.writes.run(
        ctx,
        action="kit.member.delete",
        kit_id=kit_id,
        operation=lambda uow: svc.kits.delete_member(uow, ctx, kit_id, user_id),
    )
    return Response(status_code=204)
