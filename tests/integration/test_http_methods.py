"""RFC 9110's method manners: a complete Allow on 405 and OPTIONS, HEAD wherever GET works."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.support.legacy import DEPRECATION
from tests.support.problems import assert_problem
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
# Headers that differ between any two requests, whatever the method.
VOLATILE = {"x-request-id", "ratelimit-remaining", "ratelimit-reset", "date"}


async def openapi_paths(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    document = (await client.get("/openapi.json")).json()
    paths: dict[str, dict[str, Any]] = document["paths"]
    return paths


def concrete(template: str, kit_id: str = "K1") -> str:
    values = {
        "kitId": kit_id,
        "version": "1",
        "vid": "1",  # a FHIR version id (/v1/fhir)
        "userId": "u1",
        "id": str(uuid.uuid4()),
        "questionnaireId": "health-information",
        "code": "version-conflict",
        "jobId": "0" * 32,  # a Bulk Data export (/v1/fhir/bulk-status, bulk-files)
        "fileName": "QuestionnaireResponse.ndjson",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def allowed(response: httpx.Response) -> set[str]:
    return {m.strip() for m in response.headers["allow"].split(",")}


def documented(operations: dict[str, Any]) -> set[str]:
    methods = {m.upper() for m in operations if m in HTTP_METHODS}
    return methods | {"HEAD", "OPTIONS"} if "GET" in methods else methods | {"OPTIONS"}


# --- OPTIONS ------------------------------------------------------------------------------------


async def test_options_answers_204_with_every_method_of_the_path(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options("/v1/kits/K1/health-information")
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["allow"] == "GET, HEAD, PUT, PATCH, DELETE, OPTIONS"


async def test_options_allow_lists_exactly_the_documented_methods_of_every_path(
    client: httpx.AsyncClient,
) -> None:
    paths = await openapi_paths(client)
    assert len(paths) >= 30
    for template, operations in paths.items():
        response = await client.options(concrete(template))
        assert response.status_code == 204, template
        assert allowed(response) == documented(operations), template


async def test_options_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.options("/v1/kits/K1/members/u1")
    assert response.status_code == 204
    assert allowed(response) == {"PUT", "DELETE", "OPTIONS"}


async def test_options_on_a_legacy_path_is_deprecated_like_the_path(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options("/kits/K1/health-information/history")
    assert response.status_code == 204
    assert allowed(response) == {"GET", "HEAD", "OPTIONS"}
    assert response.headers["deprecation"] == DEPRECATION


async def test_options_on_an_unrouted_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.options("/v1/no-such-route")
    assert_problem(response, 404, "not-found")


# Served but not in the OpenAPI document: the pages, and a file of the /docs assets mount.
UNDOCUMENTED_GETS = (
    "/",
    "/docs",
    "/redoc",
    "/demo",
    "/openapi.json",
    "/docs/assets/swagger-init.js",
)


@pytest.mark.parametrize("path", UNDOCUMENTED_GETS)
async def test_options_and_405_outside_the_openapi_document_allow_get_head_and_options(
    client: httpx.AsyncClient, path: str
) -> None:
    options = await client.options(path)
    assert options.status_code == 204, path
    assert allowed(options) == {"GET", "HEAD", "OPTIONS"}, path
    refused = await client.post(path)
    assert refused.status_code == 405, path
    assert allowed(refused) == {"GET", "HEAD", "OPTIONS"}, path


# --- 405 ------------------------------------------------------------------------------------------


async def test_405_allow_names_every_route_of_the_path_not_only_the_first(
    client: httpx.AsyncClient, user: str
) -> None:
    response = await client.post("/v1/kits/K1/health-information", headers=auth(user))
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET, HEAD, PUT, PATCH, DELETE, OPTIONS"


async def test_every_405_allows_exactly_the_documented_methods_of_its_path(
    client: httpx.AsyncClient,
) -> None:
    paths = await openapi_paths(client)
    for template, operations in paths.items():
        path = concrete(template)
        for method in [*sorted(set(HTTP_METHODS) - set(operations)), "trace"]:
            response = await client.request(method.upper(), path)
            assert response.status_code == 405, (method, template)
            assert allowed(response) == documented(operations), (method, template)


async def test_head_where_get_is_not_a_route_is_405_with_allow(
    client: httpx.AsyncClient, user: str
) -> None:
    response = await client.head("/v1/kits/K1/claim", headers=auth(user))
    assert response.status_code == 405
    assert response.content == b""
    assert allowed(response) == {"POST", "OPTIONS"}


# --- HEAD -----------------------------------------------------------------------------------------


async def assert_head_like_get(client: httpx.AsyncClient, path: str, **kwargs: Any) -> None:
    get = await client.get(path, **kwargs)
    head = await client.head(path, **kwargs)
    assert head.status_code == get.status_code, path
    assert head.content == b"", path
    same = {k: v for k, v in get.headers.items() if k not in VOLATILE}
    assert {k: v for k, v in head.headers.items() if k not in VOLATILE} == same, path


async def test_head_of_health_information_has_the_get_status_and_headers(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    saved = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": {"heightCm": 180}},
        headers=auth(user),
    )
    assert saved.status_code == 201
    for path in (
        f"/v1/kits/{kit_id}/health-information",
        f"/kits/{kit_id}/health-information",
        f"/v1/kits/{kit_id}/health-information/history/1",
        f"/v1/kits/{kit_id}/members",
    ):
        await assert_head_like_get(client, path, headers=auth(user))


async def test_head_of_a_compressed_response_has_the_compressed_get_headers(
    client: httpx.AsyncClient, user: str
) -> None:
    headers = {**auth(user), "Accept-Encoding": "gzip"}
    await assert_head_like_get(client, "/v1/questionnaires/health-information", headers=headers)
    head = await client.head("/v1/questionnaires/health-information", headers=headers)
    assert head.headers["content-encoding"] == "gzip"


async def test_head_refuses_like_get(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    await assert_head_like_get(client, f"/v1/kits/{kit_id}/health-information")  # 401
    await assert_head_like_get(client, f"/v1/kits/{kit_id}/health-information", headers=auth(user))
    await assert_head_like_get(client, "/v1/kits/bad%20id/health-information", headers=auth(user))


async def test_head_works_on_every_public_get(client: httpx.AsyncClient) -> None:
    for path in ("/health/live", "/openapi.json", "/docs", "/demo", "/problems/not-found"):
        await assert_head_like_get(client, path)


async def test_head_answers_like_get_on_every_documented_get(client: httpx.AsyncClient) -> None:
    """An admin's view of every GET of the OpenAPI document (streams are tested below). The
    same status and header names: an audited read (the export) grows with every read."""
    gets = [p for p, operations in (await openapi_paths(client)).items() if "get" in operations]
    assert len(gets) >= 25
    admin = auth("root", "admin")
    for path in [concrete(template) for template in gets if not template.endswith("/events")]:
        get, head = await client.get(path, headers=admin), await client.head(path, headers=admin)
        assert (head.status_code, head.content) == (get.status_code, b""), path
        assert set(head.headers) == set(get.headers), path


async def test_head_on_the_event_stream_answers_headers_only(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    saved = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": {"heightCm": 180}},
        headers=auth(user),
    )
    assert saved.status_code == 201
    async with asyncio.timeout(5):  # a GET here would stream until the client leaves
        response = await client.head(
            f"/v1/kits/{kit_id}/health-information/events", headers=auth(user)
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in response.headers
    assert response.content == b""


async def test_head_on_the_event_stream_of_a_strangers_kit_is_404(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": {"heightCm": 180}},
        headers=auth(user),
    )
    async with asyncio.timeout(5):
        response = await client.head(
            f"/v1/kits/{kit_id}/health-information/events", headers=auth("someone-else")
        )
    assert response.status_code == 404
    assert response.content == b""
