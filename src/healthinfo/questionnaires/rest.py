"""REST adapter for questionnaire definitions: list, publish, versions, retire.

Reads are open to any authenticated caller; publishing and retiring are for admins and are
audited. The rules (immutability, the content hash, which version is the newest active)
live in ``questionnaires.store``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel
from starlette.responses import Response

from healthinfo.api.deps import ActorDep, ContextDep, Cursor, Limit, ServicesDep, read_json_object
from healthinfo.api.openapi import problems
from healthinfo.api.responses import json_response
from healthinfo.auth.actor import Actor
from healthinfo.common.identifiers import PRINTABLE_PATTERN
from healthinfo.common.pagination import DEFAULT_LIMIT
from healthinfo.errors import FieldError, Forbidden, ValidationFailed
from healthinfo.fhir.questionnaire_import import questionnaire_from_fhir
from healthinfo.fhir.rest import (
    FHIR_JSON,
    VARY,
    is_fhir,
    openapi_content,
    prefers_fhir,
    render_questionnaire,
)
from healthinfo.health_information import examples
from healthinfo.questionnaires.model import DefinitionError, Questionnaire
from healthinfo.questionnaires.store import AUDIT_SUBJECT, PUBLISH, RETIRE, Published

router = APIRouter(tags=["questionnaires"])
JSON: Final = "application/json"
# FHIR's id type, so that a definition's id is also a valid FHIR Questionnaire.id.
_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_VERSION: Final = re.compile(r"[A-Za-z0-9\-.]{1,16}")
QuestionnaireId = Annotated[
    str, Path(alias="questionnaireId", max_length=64, pattern=PRINTABLE_PATTERN)
]
Version = Annotated[str, Path(alias="version", max_length=16, pattern=PRINTABLE_PATTERN)]


class QuestionnaireSummary(BaseModel):
    id: str
    title: str
    latestVersion: str
    status: str


class QuestionnaireList(BaseModel):
    items: list[QuestionnaireSummary]
    nextCursor: str | None


class VersionDoc(BaseModel):
    id: str
    version: str
    title: str
    status: str
    publishedAt: str
    contentHash: str


class VersionList(BaseModel):
    items: list[VersionDoc]


def _require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("Only an admin publishes or retires questionnaires.")


def _parse_definition(data: Any) -> Questionnaire:
    """A definition, or 422 listing every fault with its path."""
    errors: list[FieldError] = []
    if isinstance(data, dict):
        if isinstance(data.get("id"), str) and not _ID.fullmatch(data["id"]):
            errors.append(FieldError("id", "must be 1 to 64 letters, digits, '-' or '.'"))
        if isinstance(data.get("version"), str) and not _VERSION.fullmatch(data["version"]):
            errors.append(FieldError("version", "must be 1 to 16 letters, digits, '-' or '.'"))
        if isinstance(data.get("title"), str) and len(data["title"]) > 255:
            errors.append(FieldError("title", "must be at most 255 characters"))
    try:
        questionnaire = Questionnaire.from_dict(data)
    except DefinitionError as exc:
        raise ValidationFailed(errors + [FieldError(p, m) for p, m in exc.errors]) from None
    except ValueError as exc:
        raise ValidationFailed([*errors, FieldError("definition", str(exc))]) from None
    if errors:
        raise ValidationFailed(errors)
    return questionnaire


def _encode(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed([FieldError("cursor", "is not a cursor this API gave")]) from None


def _render(
    q: Questionnaire, request: Request, *, status: int = 200, fhir: bool = False, **headers: str
) -> Response:
    """JSON or FHIR by ``Accept``; ``fhir``: what a wildcard ``Accept`` gets (a FHIR body's)."""
    if prefers_fhir(request.headers.get("accept"), default=fhir):
        response = render_questionnaire(q)
        response.status_code = status
        response.headers.update(headers)
        return response
    return json_response(q.to_public_dict(), status=status, headers={"Vary": VARY, **headers})


@router.get(
    "/questionnaires",
    summary="Every questionnaire: title, newest active version, status",
    responses={200: {"model": QuestionnaireList, "description": "By id."}, **problems(401, 422)},
)
async def list_questionnaires(
    actor: ActorDep, svc: ServicesDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Response:
    after = _decode(cursor) if cursor else None
    async with svc.uows.read() as uow:
        items = await svc.questionnaires.summaries(uow, limit=limit + 1, after=after)
    more = len(items) > limit
    items = items[:limit]
    next_cursor = _encode(items[-1]["id"]) if more and items else None
    return json_response({"items": items, "nextCursor": next_cursor})


@router.post(
    "/questionnaires",
    summary="Publish a questionnaire version (admin)",
    description=(
        "201 with `Location` for a new `(id, version)`; the same content again is 200; other "
        "content under a published `(id, version)` is 409 `questionnaire-version-exists`. "
        "Every fault of the definition is a 422 field error naming its path. With "
        "`Content-Type: application/fhir+json` the body is a FHIR R4 Questionnaire (the "
        "supported constructs are in docs/fhir.md; anything else is a 422 naming each linkId "
        "and construct); the response is then FHIR unless `Accept` asks for JSON."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                JSON: {"schema": {"type": "object"}, "examples": examples.PUBLISH_QUESTIONNAIRE},
                FHIR_JSON: openapi_content("Questionnaire")[FHIR_JSON]
                | {"examples": examples.PUBLISH_FHIR_QUESTIONNAIRE},
            },
        }
    },
    responses={
        200: {"description": "Already published with this content."},
        201: {"description": "Published."},
        **problems(400, 401, 403, 409, 413, 415, 422),
    },
)
async def publish_questionnaire(request: Request, ctx: ContextDep, svc: ServicesDep) -> Response:
    _require_admin(ctx.actor)
    data = await read_json_object(request, media_types=(JSON, FHIR_JSON))
    fhir_body = is_fhir(request.headers.get("content-type"))
    questionnaire = questionnaire_from_fhir(data) if fhir_body else _parse_definition(data)
    published: Published = await svc.writes.run(
        ctx,
        action=PUBLISH,
        kit_id=AUDIT_SUBJECT,
        operation=lambda uow: svc.questionnaires.publish(uow, ctx, questionnaire),
    )
    q = published.questionnaire
    location = f"/v1/questionnaires/{q.id}/versions/{q.version}"
    status = 201 if published.created else 200
    return _render(q, request, status=status, fhir=fhir_body, Location=location)


@router.get(
    "/questionnaires/{questionnaireId}",
    summary="The newest active version of a questionnaire",
    description="`Accept: application/fhir+json` returns it as a FHIR R4 Questionnaire.",
    responses={
        200: {"description": "The definition.", "content": openapi_content("Questionnaire")},
        **problems(401, 404, 422),
    },
)
async def get_questionnaire(
    questionnaire_id: QuestionnaireId, request: Request, actor: ActorDep, svc: ServicesDep
) -> Response:
    async with svc.uows.read() as uow:
        questionnaire = await svc.questionnaires.newest_active(uow, questionnaire_id)
    return _render(questionnaire, request)


@router.get(
    "/questionnaires/{questionnaireId}/versions",
    summary="Every version of a questionnaire, with its status",
    responses={
        200: {"model": VersionList, "description": "Oldest first."},
        **problems(401, 404, 422),
    },
)
async def list_versions(
    questionnaire_id: QuestionnaireId, actor: ActorDep, svc: ServicesDep
) -> Response:
    async with svc.uows.read() as uow:
        versions = await svc.questionnaires.versions(uow, questionnaire_id)
    return json_response({"items": [v.to_dict() for v in versions]})


@router.get(
    "/questionnaires/{questionnaireId}/versions/{version}",
    summary="One version of a questionnaire (active or retired)",
    responses={
        200: {"description": "The definition.", "content": openapi_content("Questionnaire")},
        **problems(401, 404, 422),
    },
)
async def get_version(
    questionnaire_id: QuestionnaireId,
    version: Version,
    request: Request,
    actor: ActorDep,
    svc: ServicesDep,
) -> Response:
    questionnaire = await svc.questionnaires.load(svc.uows, questionnaire_id, version)
    return _render(questionnaire, request)


@router.post(
    "/questionnaires/{questionnaireId}/versions/{version}/retire",
    summary="Retire a version (admin): no new kit is bound to it; bound kits keep working",
    responses={
        200: {"model": VersionDoc, "description": "Retired."},
        **problems(401, 403, 404, 422),
    },
)
async def retire_version(
    questionnaire_id: QuestionnaireId, version: Version, ctx: ContextDep, svc: ServicesDep
) -> Response:
    _require_admin(ctx.actor)
    info = await svc.writes.run(
        ctx,
        action=RETIRE,
        kit_id=AUDIT_SUBJECT,
        operation=lambda uow: svc.questionnaires.retire(uow, ctx, questionnaire_id, version),
    )
    return json_response(info.to_dict())
