"""The FHIR R4 REST base at ``/v1/fhir``: thin adapters over the same services as every channel.

``metadata`` (generated from the routes, fhir/capability.py), ``Questionnaire`` read, version
read and search, ``QuestionnaireResponse`` read, version read, search and version-aware
update. Each route authenticates, calls a service (access, validation, audit, real-time
events all live there, exactly as for the JSON API) and renders FHIR; errors leave as
``OperationOutcome`` (fhir/outcome.py). The Bulk Data routes sit beside these in their own
router, mounted at the same prefix. See docs/fhir.md, "The FHIR base".

A ``QuestionnaireResponse`` id is the kit id with each ``_`` written as ``.``: kit ids
(``[A-Za-z0-9][A-Za-z0-9_-]{0,63}``) never hold a ``.`` and FHIR ids
(``[A-Za-z0-9-.]{1,64}``) never hold a ``_``, so every kit has exactly one FHIR id, and a
kit id that is already a valid FHIR id is its own.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from starlette.responses import Response

from healthinfo import __version__
from healthinfo.api.deps import JSON, KIT_ID_PATTERN, ActorDep, ServicesDep, read_json_object
from healthinfo.api.idempotent import run_write
from healthinfo.api.methods import route_path
from healthinfo.api.openapi import problems
from healthinfo.common.clock import to_rfc3339, utc_now
from healthinfo.common.context import Channel, RequestContext
from healthinfo.errors import MalformedRequest, NotFound
from healthinfo.fhir import examples
from healthinfo.fhir.capability import SEARCH_TYPE, capability_statement
from healthinfo.fhir.mapping import (
    DEFAULT_BASE_URL,
    answers_from_fhir,
    questionnaire_to_fhir,
    response_to_fhir,
)
from healthinfo.fhir.outcome import FHIR_PREFIX
from healthinfo.fhir.rest import FHIR_JSON, fhir_etag, fhir_if_match, fhir_response
from healthinfo.fhir.search import (
    QUESTIONNAIRE_STATUSES,
    bad_cursor,
    decode_cursor,
    encode_cursor,
    parse_count,
    parse_last_updated,
    parse_questionnaire_refs,
    parse_statuses,
    parse_tokens,
    values_of,
)
from healthinfo.health_information.disclosure import audit_read, read_current, search_and_disclose
from healthinfo.health_information.model import HealthInformationState, WriteResult
from healthinfo.health_information.preconditions import if_none_match_hits
from healthinfo.health_information.search import SearchQuery
from healthinfo.health_information.service import SAVE, SUBMIT
from healthinfo.questionnaires.model import Questionnaire
from healthinfo.questionnaires.store import ACTIVE, VersionInfo
from healthinfo.services import Services

router = APIRouter(tags=["FHIR"])
STARTED: Final = utc_now()
FHIR_ID_PATTERN: Final = r"^[A-Za-z0-9\-.]{1,64}$"
_KIT_ID: Final = re.compile(KIT_ID_PATTERN)
FHIR_ERRORS: Final = (401, 404, 422, 503)
"""Problems these routes answer, rendered as OperationOutcome (docs/fhir.md)."""


def _outcome_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Error responses (api/openapi_docs.py documents them as the OperationOutcome they are
    sent as, for every route under the base)."""
    return problems(*statuses)


def _content(resource_type: str, *, example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {
        "schema": {
            "type": "object",
            "description": f"A FHIR R4 {resource_type} "
            f"(http://hl7.org/fhir/R4/{resource_type.lower()}.html); see docs/fhir.md.",
            "required": ["resourceType"],
            "properties": {"resourceType": {"type": "string", "enum": [resource_type]}},
        }
    }
    if example is not None:
        media["example"] = example
    return {FHIR_JSON: media}


def _ok(resource_type: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": _content(resource_type)}


def _versioned_ok(resource_type: str, description: str, *, created: bool = False) -> dict[str, Any]:
    """A resource with its version headers (and, for a creation, where it lives)."""
    headers: dict[str, Any] = {
        "ETag": {"$ref": "#/components/headers/ETag"},
        "Last-Modified": {
            "description": "When this version was written (an HTTP-date).",
            "required": True,
            "schema": {"type": "string"},
        },
    }
    if created:
        headers["Location"] = {
            "description": "`<base>/QuestionnaireResponse/<id>/_history/<vid>`.",
            "required": True,
            "schema": {"type": "string"},
        }
    return _ok(resource_type, description) | {"headers": headers}


FhirId = Annotated[
    str, Path(alias="id", pattern=FHIR_ID_PATTERN, description="The resource's FHIR id.")
]
VersionId = Annotated[
    str, Path(alias="vid", pattern=FHIR_ID_PATTERN, description="`meta.versionId`.")
]
Count = Annotated[
    list[str] | None,
    Query(alias="_count", description="Page size: 1 to 500 (more is served as 500)."),
]
PageCursor = Annotated[
    list[str] | None,
    Query(alias="_cursor", description="From a `next` link; opaque."),
]


def _search(alias: str, kind: str, description: str) -> Any:
    """A search parameter: its FHIR type is what the CapabilityStatement lists."""
    return Query(alias=alias, description=description, json_schema_extra={SEARCH_TYPE: kind})


StatusParam = Annotated[
    list[str] | None, _search("status", "token", "Comma: any of them; repeated: all.")
]
UrlParam = Annotated[list[str] | None, _search("url", "uri", "The canonical URL, exactly.")]
VersionParam = Annotated[
    list[str] | None, _search("version", "token", "The questionnaire version.")
]
QuestionnaireParam = Annotated[
    list[str] | None,
    _search("questionnaire", "reference", "Canonical `<url>` (any version) or `<url>|<version>`."),
]
LastUpdatedParam = Annotated[
    list[str] | None,
    _search(
        "_lastUpdated",
        "date",
        "FHIR date(Time) with prefix `eq` `ge` `gt` `le` `lt`; repeated: all.",
    ),
]


async def fhir_context(request: Request, actor: ActorDep) -> RequestContext:
    return RequestContext(
        actor=actor,
        channel=Channel.FHIR,
        request_id=request.scope.get("state", {}).get("request_id"),
        client_address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


FhirContext = Annotated[RequestContext, Depends(fhir_context)]


# -- ids and URLs --------------------------------------------------------------------------


def fhir_id(kit_id: str) -> str:
    """A kit's ``QuestionnaireResponse`` id (see the module docstring)."""
    return kit_id.replace("_", ".")


def kit_id_of(resource_id: str) -> str:
    """The kit a ``QuestionnaireResponse`` id names; 404 when it can name none."""
    kit_id = resource_id.replace(".", "_")
    if not _KIT_ID.fullmatch(kit_id):
        raise NotFound(f"No QuestionnaireResponse {resource_id!r}.")
    return kit_id


def base_of(request: Request) -> str:
    """The FHIR base as the client called it: ``next`` links and ``fullUrl`` are absolute."""
    return str(request.base_url).rstrip("/") + FHIR_PREFIX


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


# -- rendering -----------------------------------------------------------------------------


def response_resource(state: HealthInformationState, q: Questionnaire) -> dict[str, Any]:
    """``response_to_fhir`` with the kit's FHIR id first (kits whose id holds ``_`` too)."""
    resource = response_to_fhir(state, q, base_url=DEFAULT_BASE_URL)
    resource.pop("id", None)
    return {"resourceType": resource.pop("resourceType"), "id": fhir_id(state.kit_id), **resource}


def questionnaire_resource(q: Questionnaire, info: VersionInfo) -> dict[str, Any]:
    """``questionnaire_to_fhir`` with the version as ``meta.versionId`` and the publication
    status (``active`` or ``retired``, both R4 PublicationStatus codes)."""
    resource = questionnaire_to_fhir(q, base_url=DEFAULT_BASE_URL)
    resource["status"] = info.status
    meta = {"versionId": q.version, "lastUpdated": to_rfc3339(info.published_at)}
    head = {"resourceType": resource.pop("resourceType"), "id": q.id, "meta": meta}
    resource.pop("id", None)
    return {**head, **resource}


def _versioned(
    resource: dict[str, Any], version: str, updated: datetime, *, status: int = 200
) -> Response:
    return fhir_response(
        resource,
        status=status,
        headers={"ETag": fhir_etag_text(version), "Last-Modified": http_date(updated)},
    )


def fhir_etag_text(version: str) -> str:
    return f'W/"{version}"'


def _bundle(
    request: Request,
    entries: list[dict[str, Any]],
    *,
    understood: tuple[str, ...],
    next_cursor: str | None,
) -> Response:
    """A searchset ``Bundle``: ``self`` with the parameters used (FHIR: the ones the server
    understood, as sent), ``next`` with the same and the cursor when more follow."""
    url = base_of(request) + route_path(request.scope)[len(FHIR_PREFIX) :]
    used = [(k, v) for k, v in request.query_params.multi_items() if k in understood]
    links = [{"relation": "self", "url": _with_query(url, used)}]
    if next_cursor is not None:
        kept = [(k, v) for k, v in used if k != "_cursor"]
        links.append(
            {"relation": "next", "url": _with_query(url, [*kept, ("_cursor", next_cursor)])}
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if entries:
        bundle["entry"] = entries
    return fhir_response(bundle)


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url


def _entry(base: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": "match"},
    }


# -- metadata ------------------------------------------------------------------------------


@router.get(
    "/metadata",
    summary="The CapabilityStatement (no token needed)",
    description="Generated from the routes served under `/v1/fhir`, so it names exactly "
    "what is implemented.",
    responses={200: _ok("CapabilityStatement", "What this FHIR base serves.")},
)
async def get_capability_statement(request: Request) -> Response:
    statement = capability_statement(
        request.app.routes, base_url=base_of(request), software_version=__version__, date=STARTED
    )
    return fhir_response(statement)


# -- Questionnaire -------------------------------------------------------------------------


@router.get(
    "/Questionnaire/{id}",
    summary="Read a Questionnaire: its newest active version (the newest, if all are retired)",
    responses={
        200: _versioned_ok("Questionnaire", "The questionnaire."),
        **_outcome_errors(*FHIR_ERRORS),
    },
)
async def read_questionnaire(resource_id: FhirId, actor: ActorDep, svc: ServicesDep) -> Response:
    async with svc.uows.read() as uow:
        versions = await svc.questionnaires.versions(uow, resource_id)
        active = [info for info in versions if info.status == ACTIVE]
        info = (active or versions)[-1]
        q = await svc.questionnaires.get(uow, resource_id, info.version)
    return _versioned(questionnaire_resource(q, info), q.version, info.published_at)


@router.get(
    "/Questionnaire/{id}/_history/{vid}",
    summary="Read one version of a Questionnaire (`vid` is its version)",
    responses={
        200: _versioned_ok("Questionnaire", "That version."),
        **_outcome_errors(*FHIR_ERRORS),
    },
)
async def vread_questionnaire(
    resource_id: FhirId, version_id: VersionId, actor: ActorDep, svc: ServicesDep
) -> Response:
    async with svc.uows.read() as uow:
        versions = await svc.questionnaires.versions(uow, resource_id)
        info = next((v for v in versions if v.version == version_id), None)
        if info is None:
            raise NotFound(f"No version {version_id!r} of Questionnaire {resource_id!r}.")
        q = await svc.questionnaires.get(uow, resource_id, version_id)
    return _versioned(questionnaire_resource(q, info), q.version, info.published_at)


@router.get(
    "/Questionnaire",
    summary="Search Questionnaires by url, version and status (a searchset Bundle)",
    description="Every published version is an entry (`meta.versionId` is its version).",
    responses={200: _ok("Bundle", "A page of matches."), **_outcome_errors(401, 422, 503)},
)
async def search_questionnaires(
    request: Request,
    actor: ActorDep,
    svc: ServicesDep,
    url: UrlParam = None,
    version: VersionParam = None,
    status: StatusParam = None,
    count: Count = None,
    cursor: PageCursor = None,
) -> Response:
    limit = parse_count(count or [])
    after_text = decode_cursor(cursor or [])
    if after_text is not None and not after_text.isdigit():
        raise bad_cursor()  # a cursor of another search
    after = int(after_text) if after_text is not None else None
    ids = _questionnaire_ids(url or [])
    versions = frozenset(values_of(version)) if version else None
    statuses = parse_tokens("status", status or [], QUESTIONNAIRE_STATUSES)
    async with svc.uows.read() as uow:
        found = await svc.questionnaires.search(
            uow,
            ids=ids,
            versions=versions,
            statuses=frozenset(statuses) if statuses is not None else None,
            after=after,
            limit=limit + 1,
        )
        more = len(found) > limit
        found = found[:limit]
        resources = [
            questionnaire_resource(
                await svc.questionnaires.get(uow, info.questionnaire_id, info.version), info
            )
            for _seq, info in found
        ]
    base = base_of(request)
    entries = [_entry(base, resource) for resource in resources]
    return _bundle(
        request,
        entries,
        understood=("url", "version", "status", "_count", "_cursor"),
        next_cursor=encode_cursor(str(found[-1][0])) if more else None,
    )


def _questionnaire_ids(urls: list[str]) -> frozenset[str] | None:
    """``url`` values → questionnaire ids; a URL outside this base names none (no match)."""
    if not urls:
        return None
    prefix = f"{DEFAULT_BASE_URL}/Questionnaire/"
    return frozenset(value[len(prefix) :] for value in values_of(urls) if value.startswith(prefix))


# -- QuestionnaireResponse -----------------------------------------------------------------


async def _questionnaire_of(svc: Services, state: HealthInformationState) -> Questionnaire:
    return await svc.questionnaires.load(
        svc.uows, state.questionnaire_id, state.questionnaire_version
    )


@router.get(
    "/QuestionnaireResponse/{id}",
    summary="Read a kit's current health information as a QuestionnaireResponse",
    description='`If-None-Match: W/"<vid>"` answers 304 when unchanged. Audited as a read.',
    responses={
        200: _versioned_ok("QuestionnaireResponse", "The current version."),
        304: {"description": "Not modified."},
        **_outcome_errors(*FHIR_ERRORS, 403),
    },
)
async def read_questionnaire_response(
    resource_id: FhirId,
    ctx: FhirContext,
    svc: ServicesDep,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    kit_id = kit_id_of(resource_id)

    def unchanged(version: int) -> bool:
        return if_none_match is not None and if_none_match_hits(if_none_match, version)

    state = await read_current(svc, ctx, kit_id, disclosed=lambda version: not unchanged(version))
    if unchanged(state.version):
        return Response(status_code=304, headers={"ETag": fhir_etag(state.version)})
    q = await _questionnaire_of(svc, state)
    return _versioned(response_resource(state, q), str(state.version), state.updated_at)


@router.get(
    "/QuestionnaireResponse/{id}/_history/{vid}",
    summary="Read one version of a kit's health information (from its history)",
    responses={
        200: _versioned_ok("QuestionnaireResponse", "That version."),
        **_outcome_errors(*FHIR_ERRORS, 403),
    },
)
async def vread_questionnaire_response(
    resource_id: FhirId, version_id: VersionId, ctx: FhirContext, svc: ServicesDep
) -> Response:
    kit_id = kit_id_of(resource_id)
    if not version_id.isdigit() or not 1 <= int(version_id) <= 2**31 - 1:
        raise NotFound(f"No version {version_id!r} of QuestionnaireResponse {resource_id!r}.")
    async with svc.replica_reads.for_kit(kit_id) as uow:
        state = await svc.health_information.get_version(uow, ctx.actor, kit_id, int(version_id))
    await audit_read(svc, ctx, kit_id, state.version)
    q = await _questionnaire_of(svc, state)
    return _versioned(response_resource(state, q), str(state.version), state.updated_at)


SEARCH_NAMES: Final = ("status", "questionnaire", "_lastUpdated", "_count", "_cursor")


@router.get(
    "/QuestionnaireResponse",
    summary="Search the health information of the kits you may read (a searchset Bundle)",
    description="In kit-id order, keyset-paginated: follow `link` `next`. Each kit on a page "
    "is audited as a read.",
    responses={200: _ok("Bundle", "A page of matches."), **_outcome_errors(401, 422, 503)},
)
async def search_questionnaire_responses(
    request: Request,
    ctx: FhirContext,
    svc: ServicesDep,
    status: StatusParam = None,
    questionnaire: QuestionnaireParam = None,
    last_updated: LastUpdatedParam = None,
    count: Count = None,
    cursor: PageCursor = None,
) -> Response:
    query = SearchQuery(
        statuses=parse_statuses(status or []),
        questionnaires=parse_questionnaire_refs(
            questionnaire or [], canonical_base=DEFAULT_BASE_URL
        ),
        updated=parse_last_updated(last_updated or []),
    )
    limit = parse_count(count or [])
    after = decode_cursor(cursor or [])
    if after is not None and not _KIT_ID.fullmatch(after):
        raise bad_cursor()  # a cursor of another search
    page = await search_and_disclose(svc, ctx, query, after=after, limit=limit)
    base = base_of(request)
    entries = [
        _entry(base, response_resource(state, await _questionnaire_of(svc, state)))
        for state in page.items
    ]
    return _bundle(
        request,
        entries,
        understood=SEARCH_NAMES,
        next_cursor=encode_cursor(page.after) if page.after else None,
    )


@router.put(
    "/QuestionnaireResponse/{id}",
    summary="Update (or create) a kit's health information from a QuestionnaireResponse",
    description=(
        "As `PUT /v1/kits/{kitId}/health-information` with a FHIR body: replaces all answers; "
        'status `completed` submits. `If-Match: W/"<vid>"` makes it version-aware (412 on '
        "a mismatch). 201 with `Location` on the first save."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FHIR_JSON: {
                    "schema": _content("QuestionnaireResponse")[FHIR_JSON]["schema"],
                    "examples": examples.PUT_QUESTIONNAIRE_RESPONSE,
                }
            },
        }
    },
    responses={
        200: _versioned_ok("QuestionnaireResponse", "Saved."),
        201: _versioned_ok("QuestionnaireResponse", "First save.", created=True),
        **_outcome_errors(400, 401, 403, 404, 409, 412, 413, 415, 422, 428, 503),
    },
)
async def update_questionnaire_response(
    resource_id: FhirId,
    request: Request,
    ctx: FhirContext,
    svc: ServicesDep,
    if_match: Annotated[
        str | None, Header(alias="If-Match", description='`W/"<vid>"`: update only that version.')
    ] = None,
) -> Response:
    kit_id = kit_id_of(resource_id)
    data = await read_json_object(request, media_types=(FHIR_JSON, JSON))
    if "id" in data and data["id"] != resource_id:
        raise MalformedRequest("The resource's id must be the id in the URL.")
    expected = fhir_if_match(if_match)
    submitting = data.get("status") == "completed"

    async def write(uow: Any) -> WriteResult:
        q = await svc.health_information.questionnaire_for_write(uow, ctx, kit_id)
        answers, submitted = answers_from_fhir(data, q, base_url=DEFAULT_BASE_URL)
        return await svc.health_information.replace(
            uow, ctx, kit_id, answers, submit=submitted, if_match=expected
        )

    def render(result: WriteResult) -> Response:
        state = result.state
        q = svc.questionnaires.require_cached(state.questionnaire_id, state.questionnaire_version)
        response = _versioned(
            response_resource(state, q),
            str(state.version),
            state.updated_at,
            status=201 if result.created else 200,
        )
        if result.created:
            response.headers["Location"] = (
                f"{base_of(request)}/QuestionnaireResponse/{fhir_id(kit_id)}"
                f"/_history/{state.version}"
            )
        return response

    return await run_write(
        request,
        ctx,
        svc,
        action=SUBMIT if submitting else SAVE,
        kit_id=kit_id,
        render=render,
        operation=write,
    )
