"""Disclosing answers: the read and its audit event, the same for every channel.

REST reads, history versions and the opening of SSE and WebSocket streams all disclose answers;
each is audited as ``health-information.read`` (with its channel) before the answers leave, as
``HEALTHINFO_AUDIT_READS`` says (``audit.reads``): queued for a batch (``batched``, the
default), written first (``sync``) or not at all (``off``). Kept here, not in an adapter, so
the rule is written once.
"""

from __future__ import annotations

from collections.abc import Callable

from healthinfo.common.context import RequestContext
from healthinfo.common.uow import UnitOfWork
from healthinfo.health_information.model import HealthInformationState
from healthinfo.health_information.service import READ
from healthinfo.services import Services


async def read_current(
    svc: Services, ctx: RequestContext, kit_id: str, *, disclosed: Callable[[int], bool]
) -> HealthInformationState:
    """Read the current state and audit it when it is disclosed (a 304 discloses nothing, so
    ``disclosed`` decides from the version).

    Batched or off: a read transaction only, the event queued. Sync: one write transaction
    for the read and its audit, rather than a read and then an audit write (one pool
    checkout, one access query and one commit instead of two of each).
    """
    if not svc.read_audit.synchronous:
        # One statement (the access query with the current record): no transaction around it
        # (hot path, common/uow.autocommit); the audit event is queued, not written here.
        async with svc.uows.autocommit() as uow:
            state = await svc.health_information.get(uow, ctx.actor, kit_id)
        if disclosed(state.version):
            await svc.read_audit.record(ctx, READ, kit_id, state.version)
        return state

    async def read_and_audit(uow: UnitOfWork) -> HealthInformationState:
        state = await svc.health_information.get(uow, ctx.actor, kit_id)
        if disclosed(state.version):
            await svc.health_information.record_read(uow, ctx, kit_id, version=state.version)
        return state

    return await svc.writes.run(
        ctx,
        action=READ,
        kit_id=kit_id,
        operation=read_and_audit,
        audit_refusals=False,
        read=True,
    )


async def audit_read(svc: Services, ctx: RequestContext, kit_id: str, version: int) -> None:
    """Answers are about to be disclosed: audit it first, as the read-audit mode says."""
    await svc.read_audit.record(ctx, READ, kit_id, version)
