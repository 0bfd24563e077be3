"""Liveness, readiness and metrics: what load balancers and Prometheus ask."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import PlainTextResponse, Response

from healthinfo.api.deps import ServicesDep
from healthinfo.api.problems import domain_problem, problem_response, request_id_of
from healthinfo.api.readiness import OK, REQUIRED, ReadinessChecks, is_ready
from healthinfo.api.responses import json_response
from healthinfo.errors import Unavailable
from healthinfo.services import Services

router = APIRouter(tags=["operations"])


@router.get("/health/live", summary="Liveness: the process answers")
async def live() -> Response:
    return json_response({"status": "ok"})


CHECKS_SCHEMA = {
    "type": "object",
    "description": "Each check's state. `database`, `schema` and `keystore` decide readiness "
    "(`ok`, or why a write would fail: `unavailable`, `behind (at 0005, head 0007)`, "
    "`not migrated (head 0007)`, `unusable (unreachable)`…); `cache`, `events`, `rateLimits` "
    "and `replicas` are reported only (`ok`, `degraded`, `in-process`, `disabled`).",
    "properties": {
        name: {"type": "string"}
        for name in ("database", "schema", "keystore", "cache", "events", "rateLimits", "replicas")
    },
    "required": ["database", "schema", "keystore"],
    "additionalProperties": {"type": "string"},
}
READY_SCHEMA = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ok"]}, "checks": CHECKS_SCHEMA},
    "required": ["status", "checks"],
}
NOT_READY_SCHEMA = {
    "allOf": [
        {"$ref": "#/components/schemas/Problem"},
        {
            "type": "object",
            "properties": {
                "code": {"type": "string", "enum": ["unavailable"]},
                "checks": CHECKS_SCHEMA,
            },
            "required": ["code", "checks"],
        },
    ]
}


@router.get(
    "/health/ready",
    summary="Readiness: a write would succeed (database, schema at head, key store); "
    "cache, events bus and rate limits are reported",
    responses={
        200: {"description": "Ready.", "content": {"application/json": {"schema": READY_SCHEMA}}},
        503: {
            "description": "Not ready: an `unavailable` problem whose `checks` say which required "
            "check failed and why (docs/operations.md).",
            "content": {"application/problem+json": {"schema": NOT_READY_SCHEMA}},
        },
    },
)
async def ready(request: Request, svc: ServicesDep) -> Response:
    checks = await _readiness(request, svc).required()
    checks["cache"] = await _cache_state(svc)
    checks["events"] = _events_state(svc)
    if svc.rate_limiter is not None:
        checks["rateLimits"] = svc.rate_limiter.state
    if svc.replica_reads.enabled:  # reported, never required: the primary serves their reads
        checks["replicas"] = await svc.replica_reads.probe()
    if not is_ready(checks):  # an error like any other: a problem, with the checks
        failed = ", ".join(f"{name} {checks[name]}" for name in REQUIRED if checks[name] != OK)
        body = domain_problem(
            Unavailable(f"Not ready: {failed}."),
            instance=request.url.path,
            request_id=request_id_of(request),
        )
        return problem_response({**body, "checks": checks})
    return json_response({"status": "ok", "checks": checks})


def _readiness(request: Request, svc: Services) -> ReadinessChecks:
    """One per app, made on the first probe: it remembers the schema checks between probes."""
    checks = getattr(request.app.state, "readiness", None)
    if not isinstance(checks, ReadinessChecks):
        checks = ReadinessChecks(svc)
        request.app.state.readiness = checks
    return checks


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
