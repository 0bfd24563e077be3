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
from healthinfo.health_information.search import SearchPage, SearchQuery
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


async def search_and_disclose(
    svc: Services,
    ctx: RequestContext,
    query: SearchQuery,
    *,
    after: str | None,
    limit: int,
) -> SearchPage:
    """Search, and audit a disclosure for every kit on the page.

    Each kit's trail gets its own ``health-information.read`` (with the version shown), as if
    it had been read alone: a search is as much a disclosure as a read. Batched or off: one
    read statement (no transaction around it, as for a single read), the page's events queued
    for the batch writer (a page of 50 is one batch insert, not 50 write transactions). Sync:
    the events in the search's own transaction.
    """
    if not svc.read_audit.synchronous:
        async with svc.uows.autocommit() as uow:
            page = await svc.health_information.search(
                uow, ctx.actor, query, after=after, limit=limit
            )
        for state in page.items:
            await svc.read_audit.record(ctx, READ, state.kit_id, state.version)
        return page

    async def search(uow: UnitOfWork) -> SearchPage:
        page = await svc.health_information.search(uow, ctx.actor, query, after=after, limit=limit)
        for state in page.items:
            await svc.health_information.record_read(uow, ctx, state.kit_id, version=state.version)
        return page

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
