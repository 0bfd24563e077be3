"""The OpenAPI document as clients read it: short operation ids, the headers each operation
uses, bearer auth, and the legacy routes under a deprecated tag of their own.

FastAPI builds the document from the routes; this module adds what the routes cannot say
(headers set by middleware, bodies parsed by the handlers) once, after the build, so every
operation is described alike. ``/docs`` renders it (api/docs.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from healthinfo.api.openapi import Problem, problems
from healthinfo.fhir.outcome import FHIR_PREFIX
from healthinfo.fhir.rest import openapi_content
from healthinfo.health_information.schemas import (
    Amendment,
    MoveQuestionnaire,
    PatchAnswers,
    ReplaceAnswers,
)
from healthinfo.kits.schemas import ClaimRequest, MemberRole, OwnerRequest

BODY_SCHEMAS: Final = (
    Problem,
    ReplaceAnswers,
    PatchAnswers,
    Amendment,
    MemberRole,
    ClaimRequest,
    OwnerRequest,
    MoveQuestionnaire,
)
LEGACY_TAG: Final = "legacy (deprecated)"
TAGS: Final = (
    ("health information", "A kit's questionnaire answers: read, save, submit, amend, history."),
    ("real-time", "Follow a kit's answers live (Server-Sent Events; WebSocket: docs/realtime.md)."),
    ("kits", "Claim a kit and manage who may read or edit it."),
    ("questionnaires", "The questionnaire definitions answers are checked against."),
    ("compliance", "Audit trail and export."),
    (
        "FHIR",
        "A FHIR R4 REST base at `/v1/fhir` for FHIR client libraries: `application/fhir+json`, "
        "errors as `OperationOutcome` (docs/fhir.md).",
    ),
    ("forwarding", "Deliveries of submissions to the lab's API (admin)."),
    (
        "fhir-bulk",
        "FHIR Bulk Data export of every kit as NDJSON (admin, researcher; docs/fhir.md).",
    ),
    ("operations", "Health checks and metrics (no token)."),
    ("problems", "What each problem `type` means and what a client should do (no token)."),
    (
        LEGACY_TAG,
        "The unversioned twins of the `/v1` routes: identical behaviour, plus `Deprecation` "
        '(RFC 9745), `Sunset` when configured and `Link: </v1/…>; rel="successor-version"`. '
        "Use `/v1`.",
    ),
)
PUBLIC_PATHS: Final = ("/health/", "/metrics", "/openapi.json", "/docs", "/demo", "/problems/")
# API operations that need no token (still rate limited): FHIR clients read this first.
NO_TOKEN_PATHS: Final = (f"{FHIR_PREFIX}/metadata",)
WRITE_METHODS: Final = ("put", "patch", "post")
# Route function names whose camelCase alone would not say what the operation does.
OPERATION_IDS: Final = {"live": "getLiveness", "ready": "getReadiness", "metrics": "getMetrics"}

IDEMPOTENCY_KEY: Final = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "The same key and request replays the stored response "
    "(`Idempotent-Replayed: true`); a different request is 422; while running, 409.",
}
REQUEST_ID: Final = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    # Any value is accepted: one api/middleware.py would not adopt is replaced by a new id, never
    # refused, so the schema must not promise a refusal (Schemathesis' negative checks hold us
    # to what it says).
    "schema": {"type": "string"},
    "description": "Your id for this request (logs, traces, problem `requestId`); echoed in the "
    "response when it matches `^[A-Za-z0-9._:-]{1,128}$`. Without one, or with any other value, "
    "the service makes one (the request is not refused).",
}


def _integer(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "integer", "minimum": 0}}


HEADERS: Final[dict[str, dict[str, Any]]] = {
    "X-Request-ID": {
        "description": "The request's id: yours when you sent a valid one, else a new one.",
        "required": True,
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": 'The version as a strong tag, `"<version>"` (`W/"<version>"` for a FHIR '
        "representation): send it back in `If-Match` or `If-None-Match`.",
        "required": True,
        "schema": {"type": "string"},
    },
    "ETag-Current": {
        "description": "The current version's tag, when anything is saved.",
        "schema": {"type": "string"},
    },
    "Retry-After": _integer("Seconds to wait before trying again, when the service can tell."),
    "Idempotent-Replayed": {
        "description": "`true`: the stored response to an earlier request with this "
        "`Idempotency-Key`; the write did not run again.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "RateLimit-Limit": _integer("Requests allowed in the window (the tighter of your limits)."),
    "RateLimit-Remaining": _integer("Requests left in the window."),
    "RateLimit-Reset": _integer("Seconds until the window resets."),
    "Deprecation": {
        "description": "RFC 9745: `@<unix time>` of when the unversioned route was deprecated "
        "(2026-11-25); use its successor. A `Sunset` (RFC 8594) follows when one is configured.",
        "required": True,
        "schema": {"type": "string", "pattern": "^@[0-9]+$"},
    },
    "Sunset": {
        "description": "RFC 8594: when the unversioned route stops (HEALTHINFO_LEGACY_SUNSET).",
        "schema": {"type": "string"},
    },
    "Link": {
        "description": 'The `/v1` successor: `</v1/…>; rel="successor-version"`.',
        "required": True,
        "schema": {"type": "string"},
    },
}
# The component each response header name refers to (ETag on refusals is optional).
_HEADER_NAMES: Final = {"ETag-Current": "ETag"}
# Refusals of the write itself, stored and replayed under an Idempotency-Key like a success.
_REPLAYED_REFUSALS: Final = frozenset({"403", "404", "409", "412", "422", "428"})
_REPRESENTATION: Final = "#/components/schemas/HealthInformationDoc"


def operation_id(route: APIRoute) -> str:
    """``get_health_information`` → ``getHealthInformation``: short, what generators name
    methods after (FastAPI's default appends the path and method)."""
    if route.name in OPERATION_IDS:
        return OPERATION_IDS[route.name]
    first, *rest = route.name.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


def legacy_operation_id(route: APIRoute) -> str:
    """The deprecated unversioned twin: ``legacyGetHealthInformation``."""
    camel = operation_id(route)
    return "legacy" + camel[:1].upper() + camel[1:]


def install_openapi(app: FastAPI) -> None:
    """Serve the document built here at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    _add_body_schemas(components.setdefault("schemas", {}), BODY_SCHEMAS)
    components["headers"] = dict(HEADERS)
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    schema["tags"] = [{"name": name, "description": text} for name, text in TAGS]
    for path, method, operation in _operations(schema):
        _document(path, method, operation)
    return schema


def _add_body_schemas(schemas: dict[str, Any], models: tuple[type[BaseModel], ...]) -> None:
    """Bodies the handlers parse themselves (to map errors exactly) are not in FastAPI's view."""
    for model in models:
        definition = model.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        )
        schemas.update(definition.pop("$defs", {}))
        schemas[model.__name__] = definition


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            yield path, method, operation


def _document(path: str, method: str, operation: dict[str, Any]) -> None:
    api = not path.startswith(PUBLIC_PATHS)
    legacy = api and not path.startswith("/v1/")
    if legacy:
        operation["tags"] = [LEGACY_TAG]
        operation["deprecated"] = True
    parameters = operation.setdefault("parameters", [])
    if api:
        operation["security"] = [] if path in NO_TOKEN_PATHS else [{"bearerAuth": []}]
        responses = operation["responses"]
        if "429" not in responses:  # every API route is rate limited (api/ratelimit.py)
            responses["429"] = problems(429)[429]
        if path.startswith(FHIR_PREFIX + "/"):
            _as_operation_outcomes(responses)
        if method in WRITE_METHODS:
            _add_parameter(parameters, IDEMPOTENCY_KEY)
    _add_parameter(parameters, REQUEST_ID)
    responses = operation["responses"]
    represents = any(s.startswith("2") and _is_representation(r) for s, r in responses.items())
    for status, response in responses.items():
        headers = response.setdefault("headers", {})
        names = _response_headers(
            status, response, method=method, api=api, legacy=legacy, represents=represents
        )
        for name in names:
            headers[_HEADER_NAMES.get(name, name)] = {"$ref": f"#/components/headers/{name}"}


def _as_operation_outcomes(responses: dict[str, Any]) -> None:
    """Errors of the FHIR base are sent as OperationOutcome, not problems (fhir/outcome.py)."""
    for status, response in responses.items():
        if status[:1] in ("4", "5"):
            response["content"] = openapi_content("OperationOutcome")


def _add_parameter(parameters: list[dict[str, Any]], parameter: dict[str, Any]) -> None:
    if not any(p.get("name", "").lower() == parameter["name"].lower() for p in parameters):
        parameters.append(dict(parameter))


def _response_headers(
    status: str,
    response: dict[str, Any],
    *,
    method: str,
    api: bool,
    legacy: bool,
    represents: bool,
) -> list[str]:
    """The headers a response carries, by what sets them (middleware, handlers, problems)."""
    names = ["X-Request-ID"]
    if status == "304" or (status.startswith("2") and _is_representation(response)):
        names.append("ETag")
    elif status in ("409", "412") and represents:  # version and edit conflicts (api/problems.py)
        names.append("ETag-Current")
    if status in ("429", "503"):
        names.append("Retry-After")
    if api and method in WRITE_METHODS and (status.startswith("2") or status in _REPLAYED_REFUSALS):
        names.append("Idempotent-Replayed")
    if api:
        names += ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
    if legacy:
        names += ["Deprecation", "Sunset", "Link"]
    return names


def _is_representation(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == _REPRESENTATION)
