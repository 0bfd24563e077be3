"""The FHIR R4 base at /v1/fhir (docs/fhir.md, "The FHIR base"), through the public API.

Every resource a test receives is validated with the ``fhir.resources`` R4B models and the R4
checks of tests/support/fhir_validity.py; every error must be an ``OperationOutcome`` with the
status and the problem code the rest of the API gives.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from starlette.responses import Response

from healthinfo.config import Settings
from healthinfo.fhir.mapping import questionnaire_to_fhir
from healthinfo.fhir.outcome import PROBLEM_SYSTEM
from healthinfo.questionnaires.registry import QuestionnaireRegistry
from tests.support.answers import COMPLETE
from tests.support.fhir_validity import (
    assert_parses_unchanged,
    assert_valid_questionnaire,
    assert_valid_response,
)
from tests.support.live import sse
from tests.support.problems import running_app, server_like_client
from tests.support.server import ServerProcess
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

BASE = "/v1/fhir"
FHIR = "application/fhir+json"
SHIPPED = QuestionnaireRegistry.builtin().default
SHIPPED_FHIR = questionnaire_to_fhir(SHIPPED)
SHIPPED_CANONICAL = "urn:healthinfo/Questionnaire/health-information"
CODES = "urn:healthinfo/CodeSystem/health-information"


# --- helpers -----------------------------------------------------------------------------------


def new_user(role: str = "user") -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


def new_kit() -> str:
    return f"KIT-{uuid.uuid4().hex[:12]}"


def assert_fhir(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/fhir+json; fhirVersion=4.0"
    body: dict[str, Any] = response.json()
    return body


def assert_outcome(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An OperationOutcome whose first issue carries the problem ``code`` (valid R4)."""
    body = assert_fhir(response, status)
    assert body["resourceType"] == "OperationOutcome"
    assert_parses_unchanged(OperationOutcome, body)
    first = body["issue"][0]
    assert first["severity"] in ("error", "fatal")
    assert first["details"]["coding"] == [
        {
            "system": PROBLEM_SYSTEM,
            "code": code,
            "display": first["details"]["coding"][0]["display"],
        }
    ]
    assert first["diagnostics"] == f"requestId {response.headers['x-request-id']}" or first[
        "diagnostics"
    ].startswith(f"requestId {response.headers['x-request-id']};")
    return body


def assert_bundle(response: httpx.Response) -> dict[str, Any]:
    body = assert_fhir(response)
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    assert_parses_unchanged(Bundle, body)
    for entry in body.get("entry", []):
        resource = entry["resource"]
        assert (
            entry["fullUrl"]
            == f"http://testserver{BASE}/{resource['resourceType']}/{resource['id']}"
        )
        assert entry["search"] == {"mode": "match"}
    return body


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((item["url"] for item in bundle["link"] if item["relation"] == relation), None)


def ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


async def save(
    client: httpx.AsyncClient, kit_id: str, user: str, answers: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": answers, **extra},
        headers=auth(user),
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def add_member(
    client: httpx.AsyncClient, kit_id: str, owner: str, member: str, role: str
) -> None:
    response = await client.put(
        f"/v1/kits/{kit_id}/members/{member}", json={"role": role}, headers=auth(owner)
    )
    assert response.status_code in (200, 201), response.text


def qr(status: str = "in-progress", **answers: Any) -> dict[str, Any]:
    """A QuestionnaireResponse for the shipped questionnaire, as a FHIR client builds it."""
    items = []
    for question_id, value in answers.items():
        question = SHIPPED.item(question_id)
        assert question is not None
        if question.type == "single-choice":
            answer = [{"valueCoding": {"system": f"{CODES}-{question_id}", "code": value}}]
        else:
            key = {"boolean": "valueBoolean", "integer": "valueInteger", "decimal": "valueDecimal"}
            answer = [{key.get(question.type, "valueString"): value}]
        items.append({"linkId": question_id, "answer": answer})
    return {"resourceType": "QuestionnaireResponse", "status": status, "item": items}


async def put_qr(
    client: httpx.AsyncClient, resource_id: str, user: str, resource: Any, **headers: str
) -> httpx.Response:
    return await client.put(
        f"{BASE}/QuestionnaireResponse/{resource_id}",
        json=resource,
        headers={**auth(user), "Content-Type": FHIR, **headers},
    )


async def audit_events(client: httpx.AsyncClient, kit_id: str) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/kits/{kit_id}/audit-events", headers=auth(new_user("auditor"), "auditor")
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def flat_definition(version: str = "1", questionnaire_id: str | None = None) -> dict[str, Any]:
    return {
        "id": questionnaire_id or f"fhir-{uuid.uuid4().hex[:8]}",
        "version": version,
        "title": "FHIR test",
        "items": [
            {
                "id": "smoker",
                "text": "Do you smoke?",
                "type": "boolean",
                "required": True,
                "section": "s",
            },
            {
                "id": "perDay",
                "text": "How many a day?",
                "type": "integer",
                "required": False,
                "section": "s",
            },
        ],
    }


async def publish(client: httpx.AsyncClient, definition: dict[str, Any]) -> None:
    response = await client.post(
        "/v1/questionnaires", json=definition, headers=auth(new_user("admin"), "admin")
    )
    assert response.status_code == 201, response.text


# --- metadata ----------------------------------------------------------------------------------


async def test_metadata_needs_no_token_and_is_a_valid_r4_capability_statement(
    client: httpx.AsyncClient,
) -> None:
    statement = assert_fhir(await client.get(f"{BASE}/metadata"))
    assert_parses_unchanged(CapabilityStatement, statement)
    assert (statement["resourceType"], statement["kind"], statement["fhirVersion"]) == (
        "CapabilityStatement",
        "instance",
        "4.0.1",
    )
    assert statement["implementation"]["url"] == f"http://testserver{BASE}"
    assert "application/fhir+json" in statement["format"]


async def test_metadata_names_exactly_the_routed_interactions_and_search_parameters(
    client: httpx.AsyncClient,
) -> None:
    rest = assert_fhir(await client.get(f"{BASE}/metadata"))["rest"][0]
    resources = {entry["type"]: entry for entry in rest["resource"]}
    assert {
        name: [i["code"] for i in entry["interaction"]] for name, entry in resources.items()
    } == {
        "Questionnaire": ["read", "vread", "search-type"],
        "QuestionnaireResponse": ["read", "vread", "update", "search-type"],
    }
    assert [(p["name"], p["type"]) for p in resources["QuestionnaireResponse"]["searchParam"]] == [
        ("_lastUpdated", "date"),
        ("questionnaire", "reference"),
        ("status", "token"),
    ]
    assert [(p["name"], p["type"]) for p in resources["Questionnaire"]["searchParam"]] == [
        ("status", "token"),
        ("url", "uri"),
        ("version", "token"),
    ]
    assert resources["QuestionnaireResponse"]["versioning"] == "versioned-update"
    assert resources["QuestionnaireResponse"]["updateCreate"] is True


async def test_metadata_picks_up_routes_another_router_adds_later(settings: Settings) -> None:
    """A Bulk Data router mounted beside the base later shows up, as an operation."""
    extra = APIRouter()

    @extra.get("/$export")
    async def export() -> Response:
        return Response(status_code=202)

    @extra.get("/Group/{id}/$export")
    async def group_export(id: str) -> Response:
        return Response(status_code=202)

    def configure(application: FastAPI) -> None:
        application.include_router(extra, prefix=BASE)

    async with (
        running_app(settings, configure) as application,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://testserver"
        ) as http,
    ):
        statement = assert_fhir(await http.get(f"{BASE}/metadata"))
    assert_parses_unchanged(CapabilityStatement, statement)
    rest = statement["rest"][0]
    assert rest["operation"] == [
        {
            "name": "export",
            "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
        }
    ]
    group = next(entry for entry in rest["resource"] if entry["type"] == "Group")
    assert [op["name"] for op in group["operation"]] == ["export"]


# --- Questionnaire -----------------------------------------------------------------------------


async def test_questionnaire_read_is_the_newest_active_version_with_its_version_headers(
    client: httpx.AsyncClient,
) -> None:
    definition = flat_definition("1")
    await publish(client, definition)
    await publish(client, {**definition, "version": "2", "title": "FHIR test, second"})
    response = await client.get(
        f"{BASE}/Questionnaire/{definition['id']}", headers=auth(new_user())
    )
    resource = assert_fhir(response)
    assert_valid_questionnaire(resource)
    assert (resource["id"], resource["version"], resource["meta"]["versionId"]) == (
        definition["id"],
        "2",
        "2",
    )
    assert response.headers["etag"] == 'W/"2"'
    assert response.headers["last-modified"].endswith(" GMT")


async def test_questionnaire_vread_serves_an_older_version(client: httpx.AsyncClient) -> None:
    definition = flat_definition("1")
    await publish(client, definition)
    await publish(client, {**definition, "version": "2"})
    response = await client.get(
        f"{BASE}/Questionnaire/{definition['id']}/_history/1", headers=auth(new_user())
    )
    resource = assert_fhir(response)
    assert_valid_questionnaire(resource)
    assert resource["version"] == resource["meta"]["versionId"] == "1"
    missing = await client.get(
        f"{BASE}/Questionnaire/{definition['id']}/_history/9", headers=auth(new_user())
    )
    assert_outcome(missing, 404, "not-found")


async def test_questionnaire_search_by_url_version_and_status(client: httpx.AsyncClient) -> None:
    definition = flat_definition("1")
    await publish(client, definition)
    await publish(client, {**definition, "version": "2"})
    admin = auth(new_user("admin"), "admin")
    retired = await client.post(
        f"/v1/questionnaires/{definition['id']}/versions/1/retire", headers=admin
    )
    assert retired.status_code == 200
    url = f"urn:healthinfo/Questionnaire/{definition['id']}"
    user = auth(new_user())

    every = assert_bundle(
        await client.get(f"{BASE}/Questionnaire", params={"url": url}, headers=user)
    )
    assert [(e["resource"]["version"], e["resource"]["status"]) for e in every["entry"]] == [
        ("1", "retired"),
        ("2", "active"),
    ]
    for entry in every["entry"]:
        assert_valid_questionnaire(entry["resource"])
    active = assert_bundle(
        await client.get(
            f"{BASE}/Questionnaire", params={"url": url, "status": "active"}, headers=user
        )
    )
    assert [e["resource"]["version"] for e in active["entry"]] == ["2"]
    one = assert_bundle(
        await client.get(f"{BASE}/Questionnaire", params={"url": url, "version": "1"}, headers=user)
    )
    assert [e["resource"]["version"] for e in one["entry"]] == ["1"]
    foreign = assert_bundle(
        await client.get(
            f"{BASE}/Questionnaire",
            params={"url": "http://elsewhere/Questionnaire/x"},
            headers=user,
        )
    )
    assert "entry" not in foreign


async def test_questionnaire_errors_are_operation_outcomes(client: httpx.AsyncClient) -> None:
    assert_outcome(
        await client.get(f"{BASE}/Questionnaire/no-such-thing", headers=auth(new_user())),
        404,
        "not-found",
    )
    unauthenticated = await client.get(f"{BASE}/Questionnaire/health-information")
    assert_outcome(unauthenticated, 401, "unauthenticated")
    assert unauthenticated.headers["www-authenticate"].startswith("Bearer")
    bad = await client.get(
        f"{BASE}/Questionnaire", params={"status": "bogus"}, headers=auth(new_user())
    )
    body = assert_outcome(bad, 422, "validation-failed")
    assert body["issue"][1]["expression"] == ["status"]


# --- QuestionnaireResponse read and version read -----------------------------------------------


async def test_read_is_the_kits_current_questionnaire_response(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    saved = await save(client, kit_id, user, {**COMPLETE, "conditions": ["asthma"]})
    response = await client.get(f"{BASE}/QuestionnaireResponse/{kit_id}", headers=auth(user))
    resource = assert_fhir(response)
    assert_valid_response(resource, SHIPPED_FHIR)
    assert resource["id"] == kit_id
    assert resource["meta"]["versionId"] == "1"
    assert resource["meta"]["lastUpdated"] == saved["updatedAt"]
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith(" GMT")


async def test_another_users_kit_is_a_404_operation_outcome(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    response = await client.get(f"{BASE}/QuestionnaireResponse/{kit_id}", headers=auth(new_user()))
    assert_outcome(response, 404, "not-found")
    plain = await client.get(f"/v1/kits/{kit_id}/health-information", headers=auth(new_user()))
    assert plain.status_code == 404
    assert plain.json()["code"] == "not-found"


async def test_a_kit_id_with_an_underscore_is_read_with_a_dot(
    client: httpx.AsyncClient, user: str
) -> None:
    kit_id = f"KIT_{uuid.uuid4().hex[:12]}"
    await save(client, kit_id, user, {"heightCm": 180})
    fhir_id = kit_id.replace("_", ".")
    resource = assert_fhir(
        await client.get(f"{BASE}/QuestionnaireResponse/{fhir_id}", headers=auth(user))
    )
    assert_valid_response(resource, SHIPPED_FHIR)
    assert resource["id"] == fhir_id
    assert resource["identifier"]["value"] == kit_id


async def test_ids_that_name_no_kit_are_404_and_invalid_fhir_ids_422(
    client: httpx.AsyncClient, user: str
) -> None:
    assert_outcome(
        await client.get(f"{BASE}/QuestionnaireResponse/.K1", headers=auth(user)), 404, "not-found"
    )
    assert_outcome(
        await client.get(f"{BASE}/QuestionnaireResponse/K_1", headers=auth(user)),
        422,
        "validation-failed",
    )


async def test_read_answers_304_when_the_version_is_unchanged(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    response = await client.get(
        f"{BASE}/QuestionnaireResponse/{kit_id}", headers={**auth(user), "If-None-Match": 'W/"1"'}
    )
    assert response.status_code == 304
    assert response.headers["etag"] == 'W/"1"'


async def test_version_read_serves_an_earlier_version_from_the_history(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    await save(client, kit_id, user, {"heightCm": 181})
    response = await client.get(
        f"{BASE}/QuestionnaireResponse/{kit_id}/_history/1", headers=auth(user)
    )
    resource = assert_fhir(response)
    assert_valid_response(resource, SHIPPED_FHIR)
    assert resource["meta"]["versionId"] == "1"
    assert resource["item"][0]["answer"] == [{"valueInteger": 180}]
    assert response.headers["etag"] == 'W/"1"'
    for missing in ("3", "0", "x"):
        assert_outcome(
            await client.get(
                f"{BASE}/QuestionnaireResponse/{kit_id}/_history/{missing}", headers=auth(user)
            ),
            404,
            "not-found",
        )


async def test_reads_and_version_reads_are_audited_as_disclosures_on_the_fhir_channel(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    viewer = new_user("viewer")
    await add_member(client, kit_id, user, viewer, "viewer")
    assert (
        await client.get(f"{BASE}/QuestionnaireResponse/{kit_id}", headers=auth(viewer))
    ).status_code == 200
    history = await client.get(
        f"{BASE}/QuestionnaireResponse/{kit_id}/_history/1", headers=auth(viewer)
    )
    assert history.status_code == 200
    reads = [
        e for e in await audit_events(client, kit_id) if e["action"] == "health-information.read"
    ]
    assert [(e["actor"], e["channel"], e["versionAfter"]) for e in reads] == [
        (viewer, "fhir", 1),
        (viewer, "fhir", 1),
    ]


# --- QuestionnaireResponse search --------------------------------------------------------------


async def owned_kits(client: httpx.AsyncClient, owner: str, count: int) -> list[str]:
    kits = sorted(new_kit() for _ in range(count))
    for kit_id in kits:
        await save(client, kit_id, owner, {"heightCm": 170})
    return kits


async def search_all(
    client: httpx.AsyncClient, user: str, *roles: str, **params: str
) -> tuple[list[str], int]:
    """Every id over every page, following ``next``; and the number of pages."""
    found: list[str] = []
    url: str | None = f"{BASE}/QuestionnaireResponse"
    pages = 0
    while url is not None:
        response = await client.get(
            url, params=params if pages == 0 else None, headers=auth(user, *roles)
        )
        bundle = assert_bundle(response)
        for entry in bundle.get("entry", []):
            if entry["resource"]["questionnaire"] == f"{SHIPPED_CANONICAL}|1":
                assert_valid_response(entry["resource"], SHIPPED_FHIR)
        found += ids(bundle)
        pages += 1
        url = link(bundle, "next")
    return found, pages


async def test_search_returns_only_the_kits_the_caller_may_read(
    client: httpx.AsyncClient,
) -> None:
    owner, other_owner = new_user(), new_user()
    viewer, editor, stranger = new_user("viewer"), new_user("editor"), new_user()
    mine = await owned_kits(client, owner, 2)
    theirs = await owned_kits(client, other_owner, 2)
    await add_member(client, theirs[0], other_owner, viewer, "viewer")
    await add_member(client, theirs[1], other_owner, editor, "editor")
    await add_member(client, mine[0], owner, viewer, "viewer")

    assert (await search_all(client, owner))[0] == mine
    assert (await search_all(client, viewer))[0] == sorted([theirs[0], mine[0]])
    assert (await search_all(client, editor))[0] == [theirs[1]]
    assert (await search_all(client, stranger))[0] == []
    # An auditor reads audit trails, not answers: the same 404 as a read of each kit.
    assert (await search_all(client, new_user("auditor"), "auditor"))[0] == []


async def test_a_researcher_searches_submitted_kits_only(client: httpx.AsyncClient) -> None:
    """A researcher reads final data only: a search lists the submitted kits (anybody's) and
    never an in-progress one, as a read of each kit would."""
    owner, researcher = new_user(), new_user("researcher")
    draft, submitted = sorted([new_kit(), new_kit()])
    await save(client, draft, owner, {"heightCm": 170})
    await save(client, submitted, owner, COMPLETE, submitted=True)
    found, _ = await search_all(client, researcher, "researcher", _count="500")
    assert submitted in found
    assert draft not in found
    assert (await search_all(client, researcher, "researcher", status="in-progress"))[0] == []


async def test_an_admin_searches_every_kit(client: httpx.AsyncClient) -> None:
    start = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds")
    kits = await owned_kits(client, new_user(), 1) + await owned_kits(client, new_user(), 1)
    found, _ = await search_all(
        client, new_user("admin"), "admin", _lastUpdated=f"ge{start}", _count="500"
    )
    assert set(kits) <= set(found)


async def test_search_pages_follow_next_links_in_kit_id_order(client: httpx.AsyncClient) -> None:
    owner = new_user()
    kits = await owned_kits(client, owner, 5)
    first = assert_bundle(
        await client.get(
            f"{BASE}/QuestionnaireResponse",
            params={"_count": "2", "status": "in-progress", "unknown-parameter": "ignored"},
            headers=auth(owner),
        )
    )
    assert ids(first) == kits[:2]
    assert (
        link(first, "self")
        == f"http://testserver{BASE}/QuestionnaireResponse?_count=2&status=in-progress"
    )
    following = link(first, "next")
    assert following is not None
    assert following.startswith(f"http://testserver{BASE}/QuestionnaireResponse?")
    kept = parse_qs(urlsplit(following).query)
    assert (kept["status"], kept["_count"]) == (["in-progress"], ["2"])
    assert "unknown-parameter" not in kept  # ignored, so not among the parameters used
    found, pages = await search_all(client, owner, _count="2")
    assert (found, pages) == (kits, 3)


async def test_search_pages_past_a_kit_whose_key_is_destroyed(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """A kit whose data key is gone (erasure shreds the key) has nothing left to disclose: it
    is left out, and the pages go on past it instead of the search failing with a 500."""
    owner = new_user()
    first, shredded, last = await owned_kits(client, owner, 3)
    assert await app.state.services.keystore.destroy(shredded)
    found, pages = await search_all(client, owner, _count="1")
    assert (found, pages) == ([first, last], 3)


async def test_pagination_is_stable_under_concurrent_writes(client: httpx.AsyncClient) -> None:
    """Kits changed or created while a client pages are neither repeated nor skipped."""
    owner = new_user()
    kits = await owned_kits(client, owner, 4)
    first = assert_bundle(
        await client.get(
            f"{BASE}/QuestionnaireResponse", params={"_count": "2"}, headers=auth(owner)
        )
    )
    assert ids(first) == kits[:2]
    await save(client, kits[0], owner, {"heightCm": 171})  # already seen, now the newest
    await save(client, kits[3], owner, {"heightCm": 172})  # not yet seen
    before, after = f"A{new_kit()}", f"Z{new_kit()}"  # created before and after the cursor
    await save(client, before, owner, {"heightCm": 173})
    await save(client, after, owner, {"heightCm": 174})
    following = link(first, "next")
    assert following is not None
    rest: list[str] = []
    while following is not None:
        page = assert_bundle(await client.get(following, headers=auth(owner)))
        rest += ids(page)
        following = link(page, "next")
    assert rest == [*kits[2:], after]


async def test_search_by_status(client: httpx.AsyncClient) -> None:
    owner = new_user()
    draft, submitted = sorted([new_kit(), new_kit()])
    await save(client, draft, owner, {"heightCm": 170})
    await save(client, submitted, owner, COMPLETE, submitted=True)
    completed, _ = await search_all(client, owner, status="completed")
    in_progress, _ = await search_all(client, owner, status="in-progress")
    either, _ = await search_all(client, owner, status="completed,in-progress")
    never, _ = await search_all(client, owner, status="stopped")
    assert (completed, in_progress, either, never) == ([submitted], [draft], [draft, submitted], [])


async def test_search_by_questionnaire_canonical_with_or_without_version(
    client: httpx.AsyncClient,
) -> None:
    owner = new_user()
    shipped = (await owned_kits(client, owner, 1))[0]
    definition = flat_definition("1")
    await publish(client, definition)
    other = new_kit()
    await save(
        client,
        other,
        owner,
        {"smoker": False},
        questionnaire={"id": definition["id"], "version": "1"},
    )
    canonical = f"urn:healthinfo/Questionnaire/{definition['id']}"
    assert (await search_all(client, owner, questionnaire=canonical))[0] == [other]
    assert (await search_all(client, owner, questionnaire=f"{canonical}|1"))[0] == [other]
    assert (await search_all(client, owner, questionnaire=f"{canonical}|2"))[0] == []
    assert (await search_all(client, owner, questionnaire=f"{SHIPPED_CANONICAL}|1"))[0] == [shipped]
    assert (await search_all(client, owner, questionnaire="http://x/Questionnaire/a"))[0] == []
    resource = assert_fhir(
        await client.get(f"{BASE}/QuestionnaireResponse/{other}", headers=auth(owner))
    )
    assert resource["questionnaire"] == f"{canonical}|1"


async def test_search_by_last_updated_with_prefixes(client: httpx.AsyncClient) -> None:
    owner = new_user()
    older, newer = sorted([new_kit(), new_kit()])
    first = await save(client, older, owner, {"heightCm": 170})
    await asyncio.sleep(0.01)
    second = await save(client, newer, owner, {"heightCm": 171})
    t1, t2 = first["updatedAt"], second["updatedAt"]  # millisecond precision, UTC
    assert t1 < t2

    async def matching(value: str) -> list[str]:
        return (await search_all(client, owner, _lastUpdated=value))[0]

    assert await matching(f"eq{t1}") == [older]
    assert await matching(t1) == [older]  # no prefix: eq
    assert await matching(f"ge{t2}") == [newer]
    assert await matching(f"gt{t1}") == [newer]
    assert await matching(f"le{t1}") == [older]
    assert await matching(f"lt{t2}") == [older]
    assert await matching(f"ge{t1[:10]}") == [older, newer]  # a date: from its start, in UTC
    both = await search_all(client, owner, _lastUpdated=f"ge{t1}")
    assert both[0] == [older, newer]
    day_after = (datetime.fromisoformat(t2.replace("Z", "+00:00")) + timedelta(days=1)).date()
    assert await matching(f"ge{day_after.isoformat()}") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"_lastUpdated": "ne2026-01-01"}, "_lastUpdated"),
        ({"_lastUpdated": "ge2026-01-01T10:00"}, "_lastUpdated"),  # a time without a zone
        ({"_lastUpdated": "ge2026-13-01"}, "_lastUpdated"),
        ({"_count": "0"}, "_count"),
        ({"_count": "many"}, "_count"),
        ({"status": "finished"}, "status"),
        ({"_cursor": "not-a-cursor"}, "_cursor"),
    ],
)
async def test_malformed_search_parameters_are_422_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get(
        f"{BASE}/QuestionnaireResponse", params=params, headers=auth(new_user())
    )
    body = assert_outcome(response, 422, "validation-failed")
    assert [issue["expression"] for issue in body["issue"][1:]] == [[field]]


async def test_more_than_500_is_served_as_500(client: httpx.AsyncClient) -> None:
    response = await client.get(
        f"{BASE}/QuestionnaireResponse", params={"_count": "100000"}, headers=auth(new_user())
    )
    assert_bundle(response)


async def test_each_kit_a_search_shows_is_audited_as_a_read(client: httpx.AsyncClient) -> None:
    owner = new_user()
    kits = await owned_kits(client, owner, 3)
    page = assert_bundle(
        await client.get(
            f"{BASE}/QuestionnaireResponse", params={"_count": "2"}, headers=auth(owner)
        )
    )
    assert ids(page) == kits[:2]
    for kit_id, audited in zip(kits, (1, 1, 0), strict=True):
        reads = [
            (e["actor"], e["channel"], e["versionAfter"])
            for e in await audit_events(client, kit_id)
            if e["action"] == "health-information.read"
        ]
        assert reads == [(owner, "fhir", 1)] * audited


# --- QuestionnaireResponse update --------------------------------------------------------------


async def test_put_creates_with_location_and_etag(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put_qr(client, kit_id, user, {**qr(heightCm=180), "id": kit_id})
    resource = assert_fhir(response, 201)
    assert_valid_response(resource, SHIPPED_FHIR)
    assert response.headers["location"] == (
        f"http://testserver{BASE}/QuestionnaireResponse/{kit_id}/_history/1"
    )
    assert response.headers["etag"] == 'W/"1"'
    assert "last-modified" in response.headers
    plain = await client.get(f"/v1/kits/{kit_id}/health-information", headers=auth(user))
    assert plain.json()["answers"] == {"heightCm": 180}


async def test_put_with_if_match_is_version_aware(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    updated = await put_qr(client, kit_id, user, qr(heightCm=181), **{"If-Match": 'W/"1"'})
    resource = assert_fhir(updated, 200)
    assert resource["meta"]["versionId"] == "2"
    assert "location" not in updated.headers
    stale = await put_qr(client, kit_id, user, qr(heightCm=182), **{"If-Match": 'W/"1"'})
    assert_outcome(stale, 412, "version-conflict")
    assert stale.headers["etag"] == 'W/"2"'
    plain = await client.get(f"/v1/kits/{kit_id}/health-information", headers=auth(user))
    assert (plain.json()["version"], plain.json()["answers"]) == (2, {"heightCm": 181})


async def test_put_completed_submits_and_submitted_data_is_read_only(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = qr(
        "completed",
        **{k: v for k, v in COMPLETE.items() if k != "dateOfBirth"},
    )
    body["item"].append(
        {"linkId": "dateOfBirth", "answer": [{"valueDate": COMPLETE["dateOfBirth"]}]}
    )
    submitted = assert_fhir(await put_qr(client, kit_id, user, body), 201)
    assert submitted["status"] == "completed"
    again = await put_qr(client, kit_id, user, qr(heightCm=181))
    assert_outcome(again, 409, "already-submitted")


async def test_put_access_is_the_same_as_every_channel(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    viewer = new_user("viewer")
    await add_member(client, kit_id, user, viewer, "viewer")
    assert_outcome(await put_qr(client, kit_id, new_user(), qr(heightCm=181)), 404, "not-found")
    assert_outcome(await put_qr(client, kit_id, viewer, qr(heightCm=181)), 403, "forbidden")


async def test_put_validates_like_every_write(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    out_of_bounds = await put_qr(client, kit_id, user, qr(heightCm=5000))
    body = assert_outcome(out_of_bounds, 422, "validation-failed")
    assert [issue["expression"] for issue in body["issue"][1:]] == [["answers.heightCm"]]
    unknown = await put_qr(
        client,
        kit_id,
        user,
        {**qr(), "item": [{"linkId": "nope", "answer": [{"valueBoolean": True}]}]},
    )
    body = assert_outcome(unknown, 422, "validation-failed")
    assert [issue["expression"] for issue in body["issue"][1:]] == [["item[0].linkId"]]
    assert (
        await client.get(f"/v1/kits/{kit_id}/health-information", headers=auth(user))
    ).status_code == 404


async def test_put_refuses_another_id_a_non_json_body_and_other_media_types(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    assert_outcome(
        await put_qr(client, kit_id, user, {**qr(heightCm=180), "id": "other"}),
        400,
        "malformed-request",
    )
    not_json = await client.put(
        f"{BASE}/QuestionnaireResponse/{kit_id}",
        content=b"{not json",
        headers={**auth(user), "Content-Type": FHIR},
    )
    assert_outcome(not_json, 400, "malformed-request")
    xml = await client.put(
        f"{BASE}/QuestionnaireResponse/{kit_id}",
        content=b"<QuestionnaireResponse/>",
        headers={**auth(user), "Content-Type": "application/fhir+xml"},
    )
    assert_outcome(xml, 415, "unsupported-media-type")


async def test_put_is_audited_and_recorded_in_the_history_as_the_fhir_channel(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    assert (await put_qr(client, kit_id, user, qr(heightCm=180))).status_code == 201
    assert (await put_qr(client, kit_id, user, qr(heightCm=9999))).status_code == 422
    events = await audit_events(client, kit_id)
    saves = [(e["action"], e["channel"], e["outcome"], e["changed"]) for e in events]
    assert ("health-information.save", "fhir", "ok", ["heightCm"]) in saves
    assert ("health-information.save", "fhir", "refused:validation-failed", []) in saves
    history = await client.get(f"/v1/kits/{kit_id}/health-information/history", headers=auth(user))
    assert [(r["version"], r["channel"]) for r in history.json()["items"]] == [(1, "fhir")]


async def test_put_parses_against_the_kits_own_questionnaire(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    definition = flat_definition("1")
    await publish(client, definition)
    await save(client, kit_id, user, {"smoker": True}, questionnaire={"id": definition["id"]})
    body = {
        "resourceType": "QuestionnaireResponse",
        "status": "in-progress",
        "item": [
            {"linkId": "smoker", "answer": [{"valueBoolean": True}]},
            {"linkId": "perDay", "answer": [{"valueInteger": 12}]},
        ],
    }
    resource = assert_fhir(await put_qr(client, kit_id, user, body))
    assert resource["questionnaire"] == f"urn:healthinfo/Questionnaire/{definition['id']}|1"
    fhir_q = assert_fhir(
        await client.get(f"{BASE}/Questionnaire/{definition['id']}", headers=auth(user))
    )
    assert_valid_response(resource, fhir_q)


# --- errors of the base itself -----------------------------------------------------------------


async def test_unknown_routes_and_methods_under_the_base_are_operation_outcomes(
    client: httpx.AsyncClient,
) -> None:
    assert_outcome(
        await client.get(f"{BASE}/Patient/1", headers=auth(new_user())), 404, "not-found"
    )
    assert_outcome(await client.get(f"{BASE}"), 404, "not-found")
    refused = await client.post(f"{BASE}/metadata")
    assert_outcome(refused, 405, "method-not-allowed")
    assert refused.headers["allow"] == "GET, HEAD, OPTIONS"


async def test_the_rest_of_the_api_keeps_its_problem_documents(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/kits/K1/health-information")
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_oversized_body_is_a_413_operation_outcome(
    client: httpx.AsyncClient, kit_id: str, user: str, settings: Settings
) -> None:
    big = b'{"resourceType":"QuestionnaireResponse","x":"' + b"a" * settings.max_body_bytes + b'"}'
    response = await client.put(
        f"{BASE}/QuestionnaireResponse/{kit_id}",
        content=big,
        headers={**auth(user), "Content-Type": FHIR},
    )
    assert_outcome(response, 413, "payload-too-large")


async def test_rate_limits_are_a_429_operation_outcome_with_retry_after(
    make_settings: Any,
) -> None:
    settings = make_settings(rate_limit_read_per_user="2/minute", redis_url=None)
    async with (
        running_app(settings) as application,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://testserver"
        ) as http,
    ):
        user = auth(new_user())
        statuses = [
            (await http.get(f"{BASE}/Questionnaire/health-information", headers=user))
            for _ in range(3)
        ]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    assert_outcome(statuses[2], 429, "rate-limited")
    assert int(statuses[2].headers["retry-after"]) > 0


async def test_an_unexpected_failure_is_a_500_operation_outcome(settings: Settings) -> None:
    failing = APIRouter()

    @failing.get("/Broken/{id}")
    async def broken(id: str) -> Response:
        raise RuntimeError("a stored value that must not leak")

    def configure(application: FastAPI) -> None:
        application.include_router(failing, prefix=BASE)

    async with (
        running_app(settings, configure) as application,
        server_like_client(application) as http,
    ):
        response = await http.get(f"{BASE}/Broken/1")
    body = assert_outcome(response, 500, "internal-error")
    assert "must not leak" not in response.text
    assert body["issue"][0]["severity"] == "fatal"


# --- real time -----------------------------------------------------------------------------------


@pytest.fixture
async def live(live_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10) as http:
        yield http


@pytest.mark.slow
async def test_a_fhir_put_emits_the_real_time_event_like_every_channel(
    live_server: ServerProcess, live: httpx.AsyncClient
) -> None:
    owner, kit_id = new_user(), new_kit()
    assert (await live.post(f"/v1/kits/{kit_id}/claim", headers=auth(owner))).status_code == 201
    await save(live, kit_id, owner, {"heightCm": 180})
    async with sse(live_server.base_url, kit_id, owner) as stream:
        assert (await stream.event("snapshot")).id == "1"
        response = await live.put(
            f"{BASE}/QuestionnaireResponse/{kit_id}",
            json=qr(heightCm=181, smokingStatus="never"),
            headers={**auth(owner), "Content-Type": FHIR, "If-Match": 'W/"1"'},
        )
        assert response.status_code == 200, response.text
        updated = await stream.event("updated")
    assert updated.id == "2"
    assert updated.data == {
        "version": 2,
        "by": owner,
        "channel": "fhir",
        "changed": ["heightCm", "smokingStatus"],
        "answers": {"heightCm": 181, "smokingStatus": "never"},
        "status": "in-progress",
    }
