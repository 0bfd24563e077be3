"""REST adapter of the Bulk Data export: kick-off, status (poll, cancel) and output files.

Mounted at ``/v1/fhir`` beside the FHIR base. Errors are raised as everywhere else and leave
as ``OperationOutcome`` resources through the FHIR base's middleware (``fhir/outcome.py``), so
their status, headers and codes are those of the rest of the API.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response, StreamingResponse

from healthinfo.api.deps import IdentityDep, ServicesDep
from healthinfo.api.openapi import problems
from healthinfo.auth.access import may_bulk_export
from healthinfo.auth.actor import Actor
from healthinfo.common.clock import to_rfc3339
from healthinfo.crypto.keystore import KeyDestroyed
from healthinfo.errors import Forbidden, NotFound, Unauthenticated
from healthinfo.fhir.bulk.kickoff import kick_off
from healthinfo.fhir.bulk.request import parse_kickoff
from healthinfo.fhir.bulk.store import ACTIVE_STATES, FAILED, Job
from healthinfo.fhir.bulk.wiring import Exports
from healthinfo.fhir.outcome import FHIR_CONTENT_TYPE, operation_outcome
from healthinfo.services import Services

logger = logging.getLogger(__name__)
router = APIRouter(tags=["fhir-bulk"])

NDJSON = "application/fhir+ndjson"
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
FILE_SUFFIX = ".ndjson"

# Plain strings, checked by the routes: a pattern here would answer 422 as a problem.
JobId = Annotated[str, Path(alias="jobId", description="The export's id.")]
FileName = Annotated[str, Path(alias="fileName", description="<resource type>.ndjson")]


def _exports(svc: Services) -> Exports:
    if svc.exports is None:
        raise NotFound("Bulk export is not available here.")
    return svc.exports


def _exporter(identity: Actor | Unauthenticated) -> Actor:
    if isinstance(identity, Unauthenticated):
        raise identity
    if not may_bulk_export(identity):
        raise Forbidden("Only admins and researchers may run a bulk export.")
    return identity


async def _own_job(svc: Services, actor: Actor, job_id: str) -> Job:
    """The caller's job; anybody else's is 404, as if it did not exist."""
    job = None
    if JOB_ID.fullmatch(job_id):
        async with svc.uows.read() as uow:
            job = await _exports(svc).store.get(uow, job_id)
    if job is None or job.requester != actor.user_id:
        raise NotFound("No such export, or not yours.")
    return job


@router.get(
    "/$export",
    name="fhir_bulk_kickoff",
    summary="FHIR Bulk Data system-level export kick-off (admin, researcher)",
    status_code=202,
    responses={
        202: {"description": "Accepted; poll the Content-Location."},
        **problems(400, 401, 403, 503),
    },
)
async def kickoff(request: Request, identity: IdentityDep, svc: ServicesDep) -> Response:
    actor = _exporter(identity)
    wanted = parse_kickoff(request.query_params.multi_items(), prefer=request.headers.get("prefer"))
    job_id = await kick_off(svc.uows, _exports(svc), actor, wanted, request_url=str(request.url))
    logger.info("export.queued", extra={"job_id": job_id})
    location = str(request.url_for("fhir_bulk_status", jobId=job_id))
    return Response(status_code=202, headers={"Content-Location": location})


@router.get(
    "/bulk-status/{jobId}",
    name="fhir_bulk_status",
    summary="An export's status: 202 while running, 200 with the manifest when complete",
    responses={
        200: {"description": "The manifest.", "content": {"application/json": {}}},
        202: {"description": "Still running: X-Progress and Retry-After say how far."},
        500: {"description": "The export failed (an OperationOutcome says why)."},
        **problems(401, 403, 404, 503),
    },
)
async def export_status(
    job_id: JobId, request: Request, identity: IdentityDep, svc: ServicesDep
) -> Response:
    actor = _exporter(identity)
    job = await _own_job(svc, actor, job_id)
    exports = _exports(svc)
    if job.state in ACTIVE_STATES:
        progress = (
            "queued"
            if job.state not in ("running",) or job.total is None
            else f"{job.exported} of about {job.total} resources"
        )
        return Response(
            status_code=202,
            headers={"X-Progress": progress, "Retry-After": str(exports.retry_after_seconds)},
        )
    if job.state == FAILED:
        failure = {"status": 500, "code": "export-failed", "title": "Export failed"}
        body = operation_outcome({**failure, "detail": job.error or "The export failed."})
        return Response(json.dumps(body), status_code=500, media_type=FHIR_CONTENT_TYPE)
    async with svc.uows.read() as uow:
        counts = await exports.store.counts(uow, job.job_id)
    output = [
        {
            "type": kind,
            "url": str(
                request.url_for("fhir_bulk_file", jobId=job.job_id, fileName=kind + FILE_SUFFIX)
            ),
            "count": counts[kind],
        }
        for kind in job.types
        if counts.get(kind)
    ]
    manifest = {
        "transactionTime": to_rfc3339(job.transaction_time),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": output,
        "error": [],
    }
    headers = {}
    if job.expires_at is not None:
        headers["Expires"] = job.expires_at.strftime("%a, %d %b %Y %H:%M:%S GMT")
    return Response(
        json.dumps(manifest), status_code=200, media_type="application/json", headers=headers
    )


@router.delete(
    "/bulk-status/{jobId}",
    name="fhir_bulk_cancel",
    summary="Cancel an export, or delete a finished one's files",
    status_code=202,
    responses={202: {"description": "Cancelled or deleted."}, **problems(401, 403, 404, 503)},
)
async def cancel_export(job_id: JobId, identity: IdentityDep, svc: ServicesDep) -> Response:
    actor = _exporter(identity)
    job = await _own_job(svc, actor, job_id)
    exports = _exports(svc)
    async with svc.uows.write() as uow:
        await exports.store.delete(uow, job.job_id)
    # After the commit, so a rolled-back delete keeps readable files; the runner of a job
    # cancelled mid-page fails its next page's conditional update and rolls that page back.
    await exports.cipher.destroy(job.job_id)
    logger.info("export.cancelled", extra={"job_id": job.job_id})
    return Response(status_code=202)


@router.get(
    "/bulk-files/{jobId}/{fileName}",
    name="fhir_bulk_file",
    summary="An export's output file: NDJSON, one resource a line (only to its requester)",
    responses={200: {"content": {NDJSON: {}}}, **problems(401, 403, 404, 503)},
)
async def export_file(
    job_id: JobId, file_name: FileName, identity: IdentityDep, svc: ServicesDep
) -> Response:
    actor = _exporter(identity)
    job = await _own_job(svc, actor, job_id)
    kind = file_name.removesuffix(FILE_SUFFIX)
    if job.state != "completed" or not file_name.endswith(FILE_SUFFIX) or kind not in job.types:
        raise NotFound("No such file in this export.")
    exports = _exports(svc)
    async with svc.uows.read() as uow:
        seqs = await exports.store.part_seqs(uow, job.job_id, kind)

    async def body() -> AsyncIterator[bytes]:
        # One page in memory at a time, each read in a transaction of its own.
        for seq in seqs:
            async with svc.uows.read() as uow:
                stored = await exports.store.part(uow, job.job_id, seq)
            if stored is None:
                return  # cancelled or expired while being read
            try:
                yield await exports.cipher.open(job.job_id, seq, stored)
            except KeyDestroyed:
                return

    return StreamingResponse(body(), media_type=NDJSON)
