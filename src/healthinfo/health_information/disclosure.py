"""Disclosing answers: the read and its audit event, the same for every channel.

REST reads, history versions and the opening of SSE and WebSocket streams all disclose answers;
each is audited as ``health-information.read`` (with its channel) before the answers leave, when
read auditing is on. Kept here, not in an adapter, so the rule is written once.
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
    """Read the current state and, when it is disclosed, audit that in the same transaction.

    One transaction rather than a read and then an audit write: a read costs one pool checkout,
    one access query and one commit instead of two of each (bench/RESULTS.md). A 304 discloses
    nothing, so ``disclosed`` decides from the version whether to audit.
    """
    if not svc.health_information.audits_reads(kit_id):
        async with svc.uows.read() as uow:
            return await svc.health_information.get(uow, ctx.actor, kit_id)

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
    """Answers are about to be disclosed: audit it first (when read auditing is on)."""
    if svc.health_information.audits_reads(kit_id):
        await svc.writes.run(
            ctx,
            action=READ,
            kit_id=kit_id,
            operation=lambda uow: svc.health_information.record_read(
                uow, ctx, kit_id, version=version
            ),
            audit_refusals=False,
            read=True,
        )
