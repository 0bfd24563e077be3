"""REST adapter for the admin routes of forwarding: list deliveries, retry a dead letter."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from healthinfo.api.deps import ActorDep, ContextDep, Cursor, Limit, ServicesDep
from healthinfo.api.idempotent import run_write
from healthinfo.api.openapi import ok, problems
from healthinfo.api.responses import json_response
from healthinfo.common.identifiers import PRINTABLE_PATTERN
from healthinfo.common.pagination import DEFAULT_LIMIT
from healthinfo.forwarding.schemas import DeliveryDoc, DeliveryList, DeliveryState
from healthinfo.forwarding.service import RETRY

router = APIRouter(tags=["forwarding"])

StateQuery = Annotated[DeliveryState | None, Query(description="Only deliveries in this state.")]
DeliveryId = Annotated[
    str,
    Path(
        alias="id",
        min_length=1,
        max_length=64,
        pattern=PRINTABLE_PATTERN,
        description="The delivery's event id.",
    ),
]


@router.get(
    "/admin/deliveries",
    summary="Deliveries to the lab's API, newest first (admin)",
    responses={**ok(DeliveryList, "A page of deliveries."), **problems(401, 403, 422, 503)},
)
async def list_deliveries(
    actor: ActorDep,
    svc: ServicesDep,
    state: StateQuery = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    async with svc.uows.read() as uow:
        page = await svc.forwarding.deliveries.list(
            uow, actor, state=state, limit=limit, cursor=cursor
        )
    return json_response(
        {"items": [d.to_dict() for d in page.items], "nextCursor": page.next_cursor}
    )


@router.post(
    "/admin/deliveries/{id}/retry",
    summary="Send a dead-lettered delivery again (admin)",
    description=(
        "A dead delivery becomes pending again, attempts and retry period reset. Audited, "
        "refusals too; takes `Idempotency-Key` like every POST."
    ),
    status_code=202,
    responses={
        **ok(DeliveryDoc, "Queued again: pending, attempts reset.", 202),
        **problems(401, 403, 404, 409, 422, 503),
    },
)
async def retry_delivery(
    delivery_id: DeliveryId, request: Request, ctx: ContextDep, svc: ServicesDep
) -> Response:
    # A write like any other (run_write): under Idempotency-Key, audited when refused.
    deliveries = svc.forwarding.deliveries
    async with svc.uows.read() as uow:
        kit_id = await deliveries.kit_of(uow, ctx.actor, delivery_id)
    return await run_write(
        request,
        ctx,
        svc,
        action=RETRY,
        kit_id=kit_id,
        operation=lambda uow: deliveries.retry(uow, ctx, delivery_id),
        render=lambda delivery: json_response(delivery.to_dict(), status=202),
    )
