"""REST adapter for a kit's health information: translate HTTP to service calls and back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from starlette.responses import Response

from healthinfo.api.deps import (
    JSON,
    MERGE_PATCH,
    ActorDep,
    ContextDep,
    Cursor,
    KitId,
    Limit,
    ServicesDep,
    read_json_object,
)
from healthinfo.api.idempotent import run_write
from healthinfo.api.openapi import READ_ERRORS, WRITE_ERRORS, json_body, ok, problems
from healthinfo.api.responses import json_response, representation
from healthinfo.auth.access import Permission
from healthinfo.common.pagination import DEFAULT_LIMIT
from healthinfo.common.uow import UnitOfWork
from healthinfo.fhir.mapping import answers_from_fhir
from healthinfo.fhir.rest import (
    FHIR_JSON,
    VARY,
    fhir_if_match,
    is_fhir,
    not_modified,
    openapi_content,
    prefers_fhir,
    render_health_information,
)
from healthinfo.health_information import examples
from healthinfo.health_information.disclosure import audit_read, read_current
from healthinfo.health_information.model import WriteResult
from healthinfo.health_information.preconditions import if_none_match_hits
from healthinfo.health_information.schemas import (
    Amendment,
    HealthInformationDoc,
    MoveQuestionnaire,
    PatchAnswers,
    QuestionnaireRef,
    ReplaceAnswers,
    RevisionList,
)
from healthinfo.health_information.service import (
    AMEND,
    ERASE,
    MOVE,
    SAVE,
    SUBMIT,
    QuestionnaireChoice,
)

router = APIRouter(tags=["health information"])
PATH = "/kits/{kitId}/health-information"

IfMatch = Annotated[
    str | None, Header(alias="If-Match", description='Strict precondition: `"<version>"`.')
]
IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        description='GET: `"<version>"` (weak comparison) answers 304 when unchanged. PUT: `*` '
        "saves only when nothing is saved yet (412 otherwise).",
    ),
]


FHIR_RESPONSE = openapi_content("QuestionnaireResponse")


@router.get(
    PATH,
    summary="Read a kit's health information",
    description=(
        "`Accept: application/fhir+json` returns a FHIR R4 QuestionnaireResponse "
        '(ETag `W/"<version>"`) instead of the JSON representation.'
    ),
    responses={
        200: ok(HealthInformationDoc, "The current representation.")[200]
        | {"content": FHIR_RESPONSE},
        304: {"description": "Not modified."},
        **problems(*READ_ERRORS, 403),
    },
)
async def get_health_information(
    kit_id: KitId,
    request: Request,
    ctx: ContextDep,
    svc: ServicesDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    as_fhir = prefers_fhir(request.headers.get("accept"))

    def unchanged(version: int) -> bool:
        return if_none_match is not None and if_none_match_hits(if_none_match, version)

    state = await read_current(svc, ctx, kit_id, disclosed=lambda version: not unchanged(version))
    if unchanged(state.version):
        return not_modified(state.version, fhir=as_fhir)
    if as_fhir:
        q = await svc.questionnaires.load(
            svc.uows, state.questionnaire_id, state.questionnaire_version
        )
        return render_health_information(state, q)
    response = representation(state)
    response.headers["Vary"] = VARY
    return response


@router.put(
    PATH,
    summary="Replace all answers (and optionally submit)",
    description=(
        "Also takes a FHIR R4 QuestionnaireResponse as `application/fhir+json` (status "
        "`completed` submits); the response is FHIR when `Accept` asks for it, or when the body "
        "was FHIR and `Accept` names neither format."
    ),
    openapi_extra=json_body(ReplaceAnswers, JSON, examples=examples.REPLACE),
    responses={
        200: ok(HealthInformationDoc, "Saved.")[200] | {"content": FHIR_RESPONSE},
        201: ok(HealthInformationDoc, "First save.", 201)[201] | {"content": FHIR_RESPONSE},
        **problems(*WRITE_ERRORS),
    },
)
async def put_health_information(
    kit_id: KitId,
    request: Request,
    ctx: ContextDep,
    svc: ServicesDep,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    data = await read_json_object(request, media_types=(JSON, FHIR_JSON))
    fhir_body = is_fhir(request.headers.get("content-type"))
    base_version: int | None = None
    choice: QuestionnaireChoice | None = None
    answers: dict[str, Any] = {}
    if fhir_body:
        # The answers are read against the kit's own questionnaire version, known only in
        # the write's transaction (after the access check); the action follows the status.
        submitted = data.get("status") == "completed"
        if_match = fhir_if_match(if_match)  # FHIR's version-aware update: If-Match: W/"<n>"
    else:
        body = ReplaceAnswers.parse(data)
        answers, submitted, base_version = body.answers, body.submitted, body.base_version
        choice = body.questionnaire.choice() if body.questionnaire else None
    as_fhir = prefers_fhir(request.headers.get("accept"), default=fhir_body)

    async def replace(uow: UnitOfWork) -> WriteResult:
        written = answers
        if fhir_body:
            await svc.kits.authorize_write(uow, ctx, kit_id)
            q = await svc.health_information.questionnaire_of(uow, kit_id)
            written = answers_from_fhir(data, q).answers
        return await svc.health_information.replace(
            uow,
            ctx,
            kit_id,
            written,
            submit=submitted,
            if_match=if_match,
            if_none_match=if_none_match,
            base_version=base_version,
            questionnaire=choice,
        )

    def render(result: WriteResult) -> Response:
        status = 201 if result.created else 200
        if as_fhir:
            state = result.state
            q = svc.questionnaires.require_cached(
                state.questionnaire_id, state.questionnaire_version
            )
            return render_health_information(state, q, status=status)
        return representation(result.state, status=status)

    return await run_write(
        request,
        ctx,
        svc,
        action=SUBMIT if submitted else SAVE,
        kit_id=kit_id,
        render=render,
        operation=replace,
    )


@router.patch(
    PATH,
    summary="Merge-patch answers (RFC 7396)",
    openapi_extra=json_body(PatchAnswers, MERGE_PATCH, JSON, examples=examples.PATCH),
    responses={**ok(HealthInformationDoc, "Saved."), **problems(*WRITE_ERRORS)},
)
async def patch_health_information(
    kit_id: KitId, request: Request, ctx: ContextDep, svc: ServicesDep, if_match: IfMatch = None
) -> Response:
    body = PatchAnswers.parse(await read_json_object(request, media_types=(MERGE_PATCH, JSON)))
    return await run_write(
        request,
        ctx,
        svc,
        action=SAVE,
        kit_id=kit_id,
        render=lambda result: representation(result.state),
        operation=lambda uow: svc.health_information.patch(
            uow,
            ctx,
            kit_id,
            body.answers,
            if_match=if_match,
            base_version=body.base_version,
            questionnaire=body.questionnaire.choice() if body.questionnaire else None,
        ),
    )


@router.get(
    PATH + "/questionnaire",
    summary="The questionnaire version the kit is bound to",
    description=(
        '`{"id", "version"}`: the version its answers are saved under, or before the first '
        "save the one the claim bound it to, or else the one a first write without "
        "`questionnaire` would get (the newest active default). Readable by whoever may read "
        "the kit's health information; it discloses no answers, so it is not audited as a read. "
        "Clients such as `/demo` use it to render the right version before anything is saved."
    ),
    responses={
        **ok(QuestionnaireRef, "The kit's questionnaire version."),
        **problems(*READ_ERRORS, 403),
    },
)
async def get_kit_questionnaire(kit_id: KitId, actor: ActorDep, svc: ServicesDep) -> Response:
    async with svc.uows.read() as uow:
        await svc.kits.authorize(uow, actor, kit_id, Permission.READ)
        q = await svc.health_information.questionnaire_of(uow, kit_id)
    return json_response({"id": q.id, "version": q.version})


@router.post(
    PATH + "/questionnaire",
    summary="Move the kit to another version of its questionnaire",
    description=(
        "In progress only: a new version of the health information, bound to `version`. "
        "Answers the new version rejects are a 422 listing them, or with `dropInvalid: true` "
        "are removed and listed in the history's `changed`."
    ),
    openapi_extra=json_body(MoveQuestionnaire, JSON, examples=examples.MOVE_QUESTIONNAIRE),
    responses={**ok(HealthInformationDoc, "Moved (or already there)."), **problems(*WRITE_ERRORS)},
)
async def move_questionnaire(
    kit_id: KitId, request: Request, ctx: ContextDep, svc: ServicesDep
) -> Response:
    body = MoveQuestionnaire.parse(await read_json_object(request, media_types=(JSON,)))
    return await run_write(
        request,
        ctx,
        svc,
        action=MOVE,
        kit_id=kit_id,
        render=lambda result: representation(result.state),
        operation=lambda uow: svc.health_information.move_questionnaire(
            uow, ctx, kit_id, body.version, drop_invalid=body.drop_invalid
        ),
    )


@router.post(
    PATH + "/submit",
    summary="Submit: required answers checked, then read-only",
    responses={**ok(HealthInformationDoc, "Submitted."), **problems(*WRITE_ERRORS)},
)
async def submit_health_information(
    kit_id: KitId, request: Request, ctx: ContextDep, svc: ServicesDep, if_match: IfMatch = None
) -> Response:
    return await run_write(
        request,
        ctx,
        svc,
        action=SUBMIT,
        kit_id=kit_id,
        render=lambda result: representation(result.state),
        operation=lambda uow: svc.health_information.submit(uow, ctx, kit_id, if_match=if_match),
    )


@router.get(
    PATH + "/history",
    summary="Revisions, newest first",
    responses={**ok(RevisionList, "A page of revisions."), **problems(*READ_ERRORS, 403)},
)
async def list_history(
    kit_id: KitId,
    actor: ActorDep,
    svc: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    async with svc.replica_reads.for_kit(kit_id) as uow:
        page = await svc.health_information.history(uow, actor, kit_id, limit=limit, cursor=cursor)
    return json_response(
        {"items": [r.to_dict() for r in page.items], "nextCursor": page.next_cursor}
    )


@router.get(
    PATH + "/history/{version}",
    summary="The representation as it was at one version",
    responses={**ok(HealthInformationDoc, "That version."), **problems(*READ_ERRORS, 403)},
)
async def get_history_version(
    kit_id: KitId,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    ctx: ContextDep,
    svc: ServicesDep,
) -> Response:
    async with svc.replica_reads.for_kit(kit_id) as uow:
        state = await svc.health_information.get_version(uow, ctx.actor, kit_id, version)
    await audit_read(svc, ctx, kit_id, state.version)
    return representation(state)


@router.post(
    PATH + "/amendments",
    summary="Amend submitted answers (admin): a new `amended` version, the reason audited",
    openapi_extra=json_body(Amendment, examples=examples.AMENDMENT),
    responses={**ok(HealthInformationDoc, "Amended."), **problems(*WRITE_ERRORS)},
)
async def amend_health_information(
    kit_id: KitId, request: Request, ctx: ContextDep, svc: ServicesDep, if_match: IfMatch = None
) -> Response:
    body = Amendment.parse(await read_json_object(request))
    return await run_write(
        request,
        ctx,
        svc,
        action=AMEND,
        kit_id=kit_id,
        render=lambda result: representation(result.state),
        operation=lambda uow: svc.health_information.amend(
            uow, ctx, kit_id, body.answers, reason=body.reason, if_match=if_match
        ),
    )


@router.delete(
    PATH,
    summary="Erase the answers and their history (owner or admin); the erasure stays audited",
    status_code=204,
    responses=problems(401, 403, 404, 422, 503),
)
async def erase_health_information(kit_id: KitId, ctx: ContextDep, svc: ServicesDep) -> Response:
    await svc.writes.run(
        ctx,
        action=ERASE,
        kit_id=kit_id,
        operation=lambda uow: svc.health_information.erase(uow, ctx, kit_id),
    )
    return Response(status_code=204)
