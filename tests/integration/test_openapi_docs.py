"""A newcomer's first ten minutes: ``/``, ``/docs`` offline, and an OpenAPI document whose
operation ids, headers, examples and tags a client author can use as they are."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from healthinfo.questionnaires.registry import QuestionnaireRegistry
from healthinfo.questionnaires.validation import missing_required, validate_answers
from tests.support.answers import COMPLETE
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

METHODS = ("get", "put", "patch", "post", "delete")
LEGACY_TAG = "legacy (deprecated)"
HI = "/v1/kits/{kitId}/health-information"
CAMEL_CASE = re.compile(r"[a-z]+(?:[A-Z][a-z0-9]*)*")
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}
ROOT_LINKS = ("/docs", "/demo", "/health/ready", "/openapi.json", "/metrics")


class _Assets(HTMLParser):
    """Every URL a page loads or links (``src`` and ``href``), and its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        self._in_script_without_src = tag == "script" and not values.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script_without_src = False


def assets_of(page: str) -> _Assets:
    parser = _Assets()
    parser.feed(page)
    return parser


async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def by_id(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {op["operationId"]: (method, path, op) for method, path, op in operations(document)}


def url(kit_id: str) -> str:
    return f"/v1/kits/{kit_id}/health-information"


def header(document: dict[str, Any], response: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The response's header definition, its ``$ref`` resolved."""
    definition = response.get("headers", {}).get(name)
    if definition is None:
        return None
    ref = definition.get("$ref")
    if ref is None:
        return dict(definition)
    resolved: dict[str, Any] = document["components"]["headers"][ref.rsplit("/", 1)[1]]
    return resolved


def parameter_names(operation: dict[str, Any]) -> set[str]:
    return {p["name"] for p in operation.get("parameters", []) if p.get("in") == "header"}


# --- /docs and /redoc: offline --------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_name_no_external_host(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert not re.search(r"(https?:)?//[a-z0-9]", response.text, re.IGNORECASE), response.text
    urls = assets_of(response.text).urls
    assert urls
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_every_asset_a_docs_page_names_is_served_with_its_content_type(
    client: httpx.AsyncClient, page: str
) -> None:
    urls = assets_of((await client.get(page)).text).urls
    assert any(url.endswith(".js") for url in urls)
    for url in urls:
        response = await client.get(url)
        assert response.status_code == 200, url
        media = response.headers["content-type"].split(";")[0]
        assert media in CONTENT_TYPES[url[url.rindex(".") :]], (url, media)
        assert response.content, url


async def test_docs_page_loads_swagger_ui_5_from_the_service(client: httpx.AsyncClient) -> None:
    urls = assets_of((await client.get("/docs")).text).urls
    bundle = await client.get(next(u for u in urls if u.endswith("swagger-ui-bundle.js")))
    # Swagger UI 5 is the first to render OpenAPI 3.1, the version FastAPI writes.
    assert re.search(r'PACKAGE_VERSION:"5\.', bundle.text)


async def test_docs_page_runs_no_inline_script(client: httpx.AsyncClient) -> None:
    """So the page works under ``script-src 'self'``: Swagger UI starts from a file of ours."""
    page = assets_of((await client.get("/docs")).text)
    assert page.inline_scripts == 0
    assert "/docs/assets/swagger-init.js" in page.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_allow_scripts_from_the_service_only(
    client: httpx.AsyncClient, page: str
) -> None:
    policy = (await client.get(page)).headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'none'"


async def test_swagger_init_script_reads_the_document_from_the_service(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/docs")).text
    assert 'data-openapi-url="/openapi.json"' in page
    script = await client.get("/docs/assets/swagger-init.js")
    assert "SwaggerUIBundle(" in script.text
    assert "dataset.openapiUrl" in script.text


# --- / ----------------------------------------------------------------------------------------


async def test_root_page_links_the_docs_demo_health_document_and_metrics(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    links = assets_of(response.text).urls
    assert set(ROOT_LINKS) <= set(links)


async def test_root_answers_json_links_when_asked_for_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["service"] == "Health Information Service"
    assert set(ROOT_LINKS) <= set(body["links"].values())


async def test_every_page_the_root_links_answers_without_a_token(
    client: httpx.AsyncClient,
) -> None:
    links = (await client.get("/", headers={"Accept": "application/json"})).json()["links"]
    for link in links.values():
        assert (await client.get(link)).status_code == 200, link


# --- operation ids ----------------------------------------------------------------------------


async def test_operation_ids_are_unique(client: httpx.AsyncClient) -> None:
    ids = [op["operationId"] for _, _, op in operations(await openapi(client))]
    assert len(ids) >= 30
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


async def test_operation_ids_are_short_camel_case(client: httpx.AsyncClient) -> None:
    ids = [op["operationId"] for _, _, op in operations(await openapi(client))]
    wrong = [i for i in ids if not CAMEL_CASE.fullmatch(i) or len(i) > 40]
    assert wrong == []


@pytest.mark.parametrize(
    ("operation_id", "method", "path"),
    [
        ("getHealthInformation", "get", HI),
        ("putHealthInformation", "put", HI),
        ("patchHealthInformation", "patch", HI),
        ("submitHealthInformation", "post", HI + "/submit"),
        ("amendHealthInformation", "post", HI + "/amendments"),
        ("eraseHealthInformation", "delete", HI),
        ("claimKit", "post", "/v1/kits/{kitId}/claim"),
        ("getQuestionnaire", "get", "/v1/questionnaires/{questionnaireId}"),
        ("getReadiness", "get", "/health/ready"),
    ],
)
async def test_an_operation_is_named_by_what_it_does(
    client: httpx.AsyncClient, operation_id: str, method: str, path: str
) -> None:
    assert by_id(await openapi(client))[operation_id][:2] == (method, path)


async def test_a_legacy_operation_id_is_its_successors_prefixed_with_legacy(
    client: httpx.AsyncClient,
) -> None:
    document = await openapi(client)
    v1 = {(m, p): op["operationId"] for m, p, op in operations(document) if p.startswith("/v1/")}
    legacy = [(m, p, op) for m, p, op in operations(document) if op.get("deprecated")]
    assert legacy
    for method, path, operation in legacy:
        successor = v1[(method, "/v1" + path)]
        assert operation["operationId"] == "legacy" + successor[0].upper() + successor[1:]


# --- legacy routes: deprecated, under their own tag --------------------------------------------


async def test_legacy_operations_are_deprecated_under_the_legacy_tag_alone(
    client: httpx.AsyncClient,
) -> None:
    legacy = [
        (method, path, operation)
        for method, path, operation in operations(await openapi(client))
        if path.startswith(("/kits/", "/questionnaires/", "/admin/"))
    ]
    assert len(legacy) >= 15
    for method, path, operation in legacy:
        assert operation["tags"] == [LEGACY_TAG], (method, path)
        assert operation["deprecated"] is True, (method, path)


async def test_no_current_operation_carries_the_legacy_tag(client: httpx.AsyncClient) -> None:
    current = [
        (method, path, operation)
        for method, path, operation in operations(await openapi(client))
        if not operation.get("deprecated")
    ]
    assert current
    assert all(LEGACY_TAG not in operation["tags"] for _, _, operation in current)


async def test_the_legacy_tag_is_declared_last_and_says_what_replaces_it(
    client: httpx.AsyncClient,
) -> None:
    tags = (await openapi(client))["tags"]
    assert tags[-1]["name"] == LEGACY_TAG
    assert "/v1" in tags[-1]["description"]
    used = {t for _, _, op in operations(await openapi(client)) for t in op["tags"]}
    assert used <= {t["name"] for t in tags}


# --- headers, per operation -------------------------------------------------------------------


async def test_every_operation_takes_x_request_id(client: httpx.AsyncClient) -> None:
    missing = [
        op["operationId"]
        for _, _, op in operations(await openapi(client))
        if "X-Request-ID" not in parameter_names(op)
    ]
    assert missing == []


async def test_every_response_documents_x_request_id_as_always_sent(
    client: httpx.AsyncClient,
) -> None:
    document = await openapi(client)
    missing = [
        (op["operationId"], status)
        for _, _, op in operations(document)
        for status, response in op["responses"].items()
        if not (header(document, response, "X-Request-ID") or {}).get("required")
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("operation_id", "status"),
    [
        ("getHealthInformation", "200"),
        ("getHealthInformation", "304"),
        ("putHealthInformation", "200"),
        ("putHealthInformation", "201"),
        ("patchHealthInformation", "200"),
        ("submitHealthInformation", "200"),
        ("amendHealthInformation", "200"),
        ("getHistoryVersion", "200"),
    ],
)
async def test_representation_responses_document_their_etag(
    client: httpx.AsyncClient, operation_id: str, status: str
) -> None:
    document = await openapi(client)
    response = by_id(document)[operation_id][2]["responses"][status]
    assert (header(document, response, "ETag") or {}).get("required") is True


@pytest.mark.parametrize("status", ["409", "412"])
async def test_conflicts_on_health_information_writes_document_the_current_etag(
    client: httpx.AsyncClient, status: str
) -> None:
    document = await openapi(client)
    for operation_id in ("putHealthInformation", "patchHealthInformation"):
        response = by_id(document)[operation_id][2]["responses"][status]
        assert header(document, response, "ETag") is not None, operation_id


async def test_responses_without_a_representation_document_no_etag(
    client: httpx.AsyncClient,
) -> None:
    document = await openapi(client)
    for operation_id in ("listMembers", "claimKit", "getReadiness"):
        for response in by_id(document)[operation_id][2]["responses"].values():
            assert header(document, response, "ETag") is None, operation_id


async def test_every_api_operation_documents_429_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    document = await openapi(client)
    api = [
        (p, op)
        for _, p, op in operations(document)
        if not p.startswith(("/health/", "/metrics", "/problems/"))
    ]
    assert api
    for path, operation in api:
        response = operation["responses"].get("429")
        assert response is not None, (operation["operationId"], path)
        assert header(document, response, "Retry-After") is not None, operation["operationId"]


async def test_every_503_documents_retry_after(client: httpx.AsyncClient) -> None:
    document = await openapi(client)
    unavailable = [
        (op["operationId"], op["responses"]["503"])
        for _, _, op in operations(document)
        if "503" in op["responses"]
    ]
    assert unavailable
    assert [i for i, r in unavailable if header(document, r, "Retry-After") is None] == []


async def test_writes_take_an_idempotency_key_and_document_replays(
    client: httpx.AsyncClient,
) -> None:
    document = await openapi(client)
    writes = [op for method, _, op in operations(document) if method in ("put", "patch", "post")]
    assert len(writes) >= 8
    for operation in writes:
        assert "Idempotency-Key" in parameter_names(operation), operation["operationId"]
        successes = [r for s, r in operation["responses"].items() if s.startswith("2")]
        assert successes, operation["operationId"]
        for response in successes:
            assert header(document, response, "Idempotent-Replayed") is not None


@pytest.mark.parametrize(
    "operation_id",
    [
        "putHealthInformation",
        "patchHealthInformation",
        "submitHealthInformation",
        "amendHealthInformation",
    ],
)
async def test_health_information_writes_take_if_match(
    client: httpx.AsyncClient, operation_id: str
) -> None:
    operation = by_id(await openapi(client))[operation_id][2]
    assert "If-Match" in parameter_names(operation)


async def test_the_read_takes_if_none_match(client: httpx.AsyncClient) -> None:
    operation = by_id(await openapi(client))["getHealthInformation"][2]
    assert "If-None-Match" in parameter_names(operation)
    assert "304" in operation["responses"]


async def test_legacy_responses_document_deprecation_and_successor_link(
    client: httpx.AsyncClient,
) -> None:
    document = await openapi(client)
    legacy = [op for _, _, op in operations(document) if op.get("deprecated")]
    assert legacy
    for operation in legacy:
        for status, response in operation["responses"].items():
            for name in ("Deprecation", "Link"):
                assert (header(document, response, name) or {}).get("required"), (
                    operation["operationId"],
                    status,
                    name,
                )


async def test_documented_headers_are_the_ones_sent(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    """The names in the document are those on the wire (a spot check; Schemathesis checks every
    required header on every generated response)."""
    headers = {**auth(user), "Idempotency-Key": uuid.uuid4().hex, "X-Request-ID": "req-42"}
    body = {"answers": {"heightCm": 180}}
    first = await client.put(f"/kits/{kit_id}/health-information", json=body, headers=headers)
    again = await client.put(f"/kits/{kit_id}/health-information", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    for name in ("ETag", "X-Request-ID", "Deprecation", "Link"):
        assert name in first.headers, name
    assert first.headers["X-Request-ID"] == "req-42"
    assert again.headers["Idempotent-Replayed"] == "true"


# --- request body examples: real requests -----------------------------------------------------

Prepare = Callable[[httpx.AsyncClient, str, str], Awaitable[None]]


async def _nothing(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    return None


async def _saved(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    body = {"answers": {"heightCm": 180, "waistCm": 80}}
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information", json=body, headers=auth(user)
    )
    assert response.status_code == 201, response.text


async def _submitted(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    body = {"answers": COMPLETE, "submitted": True}
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information", json=body, headers=auth(user)
    )
    assert response.status_code == 201, response.text


async def _claimed(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    response = await client.post(f"/v1/kits/{kit_id}/claim", headers=auth(user))
    assert response.status_code == 201, response.text


# What each operation with body examples needs first, and which roles send the example.
PREPARATIONS: dict[str, tuple[Prepare, tuple[str, ...]]] = {
    "putHealthInformation": (_nothing, ()),
    "patchHealthInformation": (_saved, ()),
    "amendHealthInformation": (_submitted, ("admin",)),
    "putMember": (_claimed, ()),
    "claimKit": (_nothing, ()),
    "putOwner": (_saved, ("admin",)),
    "publishQuestionnaire": (_nothing, ("admin",)),
    "moveQuestionnaire": (_saved, ()),
    "updateQuestionnaireResponse": (_nothing, ()),
}


def body_examples(document: dict[str, Any]) -> list[tuple[str, str, str, str, Any]]:
    """(operationId, method, path, media type, example) for every /v1 request-body example."""
    return [
        (op["operationId"], method, path, media, example["value"])
        for method, path, op in operations(document)
        if path.startswith("/v1/")
        for media, content in op.get("requestBody", {}).get("content", {}).items()
        for example in content.get("examples", {}).values()
    ]


async def test_every_write_with_a_body_offers_examples(client: httpx.AsyncClient) -> None:
    document = await openapi(client)
    with_examples = {operation_id for operation_id, *_ in body_examples(document)}
    with_body = {
        op["operationId"]
        for _, path, op in operations(document)
        if path.startswith("/v1/") and "requestBody" in op
    }
    assert with_body == with_examples == set(PREPARATIONS)


async def test_every_request_body_example_is_accepted_by_the_api(
    client: httpx.AsyncClient, user: str
) -> None:
    examples = body_examples(await openapi(client))
    assert len(examples) >= 8
    refused = []
    for operation_id, method, path, media, example in examples:
        prepare, roles = PREPARATIONS[operation_id]
        kit_id = f"KIT-{uuid.uuid4().hex[:12]}"
        await prepare(client, kit_id, user)
        url = (
            path.replace("{kitId}", kit_id)
            .replace("{userId}", f"member-{user}")
            .replace("{id}", kit_id)  # the FHIR base: a QuestionnaireResponse id is the kit id
        )
        response = await client.request(
            method,
            url,
            json=example,
            headers={**auth(user if not roles else f"admin-{user}", *roles), "Content-Type": media},
        )
        if not 200 <= response.status_code < 300:
            refused.append((operation_id, media, example, response.status_code, response.text))
    assert refused == []


async def test_every_answer_in_the_examples_is_valid_for_the_shipped_questionnaire(
    client: httpx.AsyncClient,
) -> None:
    """The service's own validator, on every example's answers (null removes: not an answer)."""
    questionnaire = QuestionnaireRegistry.builtin().default
    answered = [
        (operation_id, {k: v for k, v in example["answers"].items() if v is not None}, example)
        for operation_id, _, _, _, example in body_examples(await openapi(client))
        if "answers" in example
    ]
    assert answered
    for operation_id, answers, example in answered:
        assert validate_answers(questionnaire, answers) == [], operation_id
        if example.get("submitted"):
            assert missing_required(questionnaire, answers) == [], operation_id
