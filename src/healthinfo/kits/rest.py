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
from healthinfo.common.identifiers import PRINTABLE_PATTERN
from healthinfo.common.pagination import DEFAULT_LIMIT
from healthinfo.kits.schemas import (
    ClaimCodeDoc,
    ClaimDoc,
    ClaimRequest,
    MemberDoc,
    MemberList,
    MemberRole,
    OwnerRequest,
)
from healthinfo.kits.service import ClaimResult, Member

router = APIRouter(tags=["kits"])
CLAIM_EXAMPLES = {
    "unclaimed": {
        "summary": "Claim a kit nobody owns yet (a body is optional)",
        "value": {},
    },
    "bind": {
        "summary": "Claim, bound to the newest active health questionnaire",
        "value": {"questionnaire": {"id": "health-information"}},
    },
}
OWNER_EXAMPLES = {
    "owner": {"summary": "Make this user the kit's owner", "value": {"userId": "user-2"}},
}
MEMBER_EXAMPLES = {
    "editor": {"summary": "Let them edit and submit", "value": {"role": "editor"}},
    "viewer": {"summary": "Let them read and follow", "value": {"role": "viewer"}},
}
UserId = Annotated[
    str, Path(alias="userId", min_length=1, max_length=255, pattern=PRINTABLE_PATTERN)
]


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
        "No body is needed for a kit that holds no answers yet. An ownerless kit that already "
        "holds answers (written by an admin, imported from the legacy system) is claimed only "
        'with its one-time claim code, `{"claimCode": "…"}`; without a valid code it is 404. '
        'An optional `"questionnaire": {"id", "version"}` binds the kit to that questionnaire '
        "version (`version` optional: the newest active one) before anything is saved; naming "
        "another questionnaire than the kit's is 409 `questionnaire-mismatch`."
    ),
    openapi_extra={
        "requestBody": {
            **json_body(ClaimRequest, examples=CLAIM_EXAMPLES)["requestBody"],
            "required": False,
        }
    },
    responses={
        **ok(ClaimDoc, "Already the caller's."),
        **ok(ClaimDoc, "Claimed now.", 201),
        **problems(400, 401, 404, 409, 413, 415, 422, 503),
    },
)
async def claim_kit(kit_id: KitId, request: Request, ctx: ContextDep, svc: ServicesDep) -> Response:
    body = await _claim_body(request)
    choice = body.questionnaire.choice() if body.questionnaire else None
    return await run_write(
        request,
        ctx,
        svc,
        action="kit.claim",
        kit_id=kit_id,
        render=_claim_response,
        operation=lambda uow: svc.health_information.claim(
            uow, ctx, kit_id, choice, claim_code=body.claim_code
        ),
    )


async def _claim_body(request: Request) -> ClaimRequest:
    """The body is optional: clients that never send one keep working."""
    if not await request.body():
        return ClaimRequest()
    return ClaimRequest.parse(await read_json_object(request))


@router.post(
    "/kits/{kitId}/claim-codes",
    summary="Hand out a one-time claim code for an ownerless kit (admin)",
    description=(
        "The code lets its holder claim the kit once (`POST …/claim` with `claimCode`) until "
        "`expiresAt`; a new code replaces the previous one. Only a hash is stored; audited "
        "(`kit.claim-code.issue`), the code itself never is. 409 when the kit has an owner."
    ),
    status_code=201,
    responses={**ok(ClaimCodeDoc, "The code, shown this once.", 201), **problems(*WRITE_ERRORS)},
)
async def issue_claim_code(
    kit_id: KitId, request: Request, ctx: ContextDep, svc: ServicesDep
) -> Response:
    return await run_write(
        request,
        ctx,
        svc,
        action="kit.claim-code.issue",
        kit_id=kit_id,
        render=lambda issued: json_response(
            {
                "kitId": issued.kit_id,
                "claimCode": issued.code,
                "expiresAt": to_rfc3339(issued.expires_at),
            },
            status=201,
            headers={"Cache-Control": "no-store"},
        ),
        operation=lambda uow: svc.kits.issue_claim_code(uow, ctx, kit_id),
    )


@router.put(
    "/kits/{kitId}/owner",
    summary="Set the kit's owner (admin)",
    description=(
        "The way an ownerless kit that holds answers gets its owner without a claim code, and "
        "how an admin corrects a wrong claim. Audited (`kit.owner.put`); the new owner stops "
        "being a member, and the kit's claim code stops working."
    ),
    openapi_extra=json_body(OwnerRequest, examples=OWNER_EXAMPLES),
    responses={**ok(ClaimDoc, "The kit's owner now."), **problems(*WRITE_ERRORS)},
)
async def put_owner(kit_id: KitId, request: Request, ctx: ContextDep, svc: ServicesDep) -> Response:
    body = OwnerRequest.parse(await read_json_object(request))
    return await run_write(
        request,
        ctx,
        svc,
        action="kit.owner.put",
        kit_id=kit_id,
        render=lambda result: _claim_response(result, status=200),
        operation=lambda uow: svc.kits.set_owner(uow, ctx, kit_id, body.user_id),
    )


def _claim_response(result: ClaimResult, status: int | None = None) -> Response:
    body = {
        "kitId": result.kit_id,
        "ownerId": result.owner_id,
        "claimedAt": to_rfc3339(result.claimed_at),
    }
    return json_response(body, status=status or (201 if result.created else 200))


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
