"""Liveness, readiness and metrics: what load balancers and Prometheus ask."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import PlainTextResponse, Response

from healthinfo.api.deps import ServicesDep
from healthinfo.api.problems import domain_problem, problem_response, request_id_of
from healthinfo.api.responses import json_response
from healthinfo.errors import Unavailable
from healthinfo.services import Services

router = APIRouter(tags=["operations"])


@router.get("/health/live", summary="Liveness: the process answers")
async def live() -> Response:
    return json_response({"status": "ok"})


READY_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["status", "checks"],
}


@router.get(
    "/health/ready",
    summary="Readiness: the database answers; cache, events bus and rate limits are reported",
    responses={
        200: {"description": "Ready.", "content": {"application/json": {"schema": READY_SCHEMA}}},
        503: {
            "description": "The database does not answer (a problem with `checks`).",
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        },
    },
)
async def ready(request: Request, svc: ServicesDep) -> Response:
    checks: dict[str, str] = {}
    try:
        async with svc.uows.read() as uow:
            await uow.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except (Unavailable, OSError):
        svc.metrics.db_errors.labels("readiness").inc()
        checks["database"] = "unavailable"
    checks["cache"] = await _cache_state(svc)
    checks["events"] = _events_state(svc)
    if svc.rate_limiter is not None:
        checks["rateLimits"] = svc.rate_limiter.state
    if svc.replica_reads.enabled:  # reported, never required: the primary serves their reads
        checks["replicas"] = await svc.replica_reads.probe()
    if checks["database"] != "ok":  # an error like any other: a problem, with the checks
        body = domain_problem(
            Unavailable(), instance=request.url.path, request_id=request_id_of(request)
        )
        return problem_response({**body, "checks": checks})
    return json_response({"status": "ok", "checks": checks})


async def _cache_state(svc: Services) -> str:
    """Reported, never required: with the cache down the service serves from the database."""
    if svc.cache is None:
        return "disabled"
    if svc.cache.kind == "in-process":
        return "in-process"
    return "ok" if await svc.cache.probe() else "degraded"


def _events_state(svc: Services) -> str:
    """Reported, never required: without the shared bus, writes still commit and every stream
    catches up from the database when it reconnects; only other instances' events are late."""
    bus = svc.hub.bus
    if bus.kind == "in-process":
        return "in-process"
    return "ok" if bus.connected else "degraded"


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "The Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(svc: ServicesDep) -> Response:
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
