"""Starting an export: who may, which kits' data it holds, and the job it queues.

An export may hold only what a read of each kit would disclose to its requester, so its scope
is the access rule's, ``auth.access.scope_of(actor, READ)``, as for a FHIR search: a global
grant (an admin) covers every kit; a researcher's grant covers kits whose data is final
(submitted or amended), never one still in progress. An export is system-level (every kit at
once), so per-kit grants (owning or being a member of a kit) add nothing to it. The REST
adapter only parses the request and answers; the rule lives here, once.
"""

from __future__ import annotations

import uuid

from healthinfo.auth.access import Permission, may_bulk_export, scope_of
from healthinfo.auth.actor import Actor
from healthinfo.common.clock import utc_now
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.errors import ExportInProgress, Forbidden
from healthinfo.fhir.bulk.request import ExportRequest
from healthinfo.fhir.bulk.wiring import Exports
from healthinfo.health_information.model import Status

FINAL_STATUSES = tuple(status.value for status in Status if status.is_final)
COMPLETED_STATUSES = (Status.SUBMITTED.value,)


def exported_statuses(actor: Actor, *, completed_only: bool) -> tuple[str, ...]:
    """The statuses of the data the actor's export holds; empty: every status.

    ``completed_only`` (``_typeFilter=QuestionnaireResponse?status=completed``) narrows it
    to submitted data, whoever asks.
    """
    if not may_bulk_export(actor):
        raise Forbidden("Only admins and researchers may run a bulk export.")
    scope = scope_of(actor, Permission.READ)
    if completed_only:
        return COMPLETED_STATUSES
    if scope.every_kit:
        return ()
    if scope.final_data:
        return FINAL_STATUSES
    raise Forbidden("This role may not read kits' health information in bulk.")


async def kick_off(
    uows: UnitOfWorkFactory,
    exports: Exports,
    actor: Actor,
    wanted: ExportRequest,
    *,
    request_url: str,
) -> str:
    """Queue an export job for ``actor`` (at most one running per requester); its id.

    The job row commits before the answer; the in-process runner, if any, is woken after.
    """
    statuses = exported_statuses(actor, completed_only=wanted.completed_only)
    job_id = uuid.uuid4().hex
    now = utc_now()
    async with uows.write() as uow:
        created = await exports.store.create(
            uow,
            {
                "job_id": job_id,
                "requester": actor.user_id,
                "request_url": request_url,
                "types": list(wanted.types),
                "since": wanted.since,
                "statuses": list(statuses),
                "transaction_time": now,
                "created_at": now,
            },
        )
        if not created:
            raise ExportInProgress(retry_after=exports.retry_after_seconds * 5)
        runner = exports.runner
        if runner is not None:

            async def wake() -> None:
                runner.wake()

            uow.after_commit(wake)
    return job_id
