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
from healthinfo.health_information.search import SearchPage, SearchQuery
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


async def search_and_disclose(
    svc: Services,
    ctx: RequestContext,
    query: SearchQuery,
    *,
    after: str | None,
    limit: int,
) -> SearchPage:
    """Search, and audit a disclosure for every kit on the page, in the search's transaction.

    Each kit's trail gets its own ``health-information.read`` (with the version shown), as if
    it had been read alone: a search is as much a disclosure as a read.
    """

    async def search(uow: UnitOfWork) -> SearchPage:
        page = await svc.health_information.search(uow, ctx.actor, query, after=after, limit=limit)
        for state in page.items:
            await svc.health_information.record_read(uow, ctx, state.kit_id, version=state.version)
        return page

    if not svc.health_information.audits_reads_anywhere():
        async with svc.uows.read() as uow:
            return await svc.health_information.search(
                uow, ctx.actor, query, after=after, limit=limit
            )
    return await svc.writes.run(
        # No kit id of its own: refusals are not audited (audit_refusals=False), reads are, each
        # under its kit, by record_read.
        ctx,
        action=READ,
        kit_id="",
        operation=search,
        audit_refusals=False,
        read=True,
    )
