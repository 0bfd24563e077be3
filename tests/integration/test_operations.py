"""What operators and tools rely on: health checks, metrics, the OpenAPI document, legacy routes."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from prometheus_client.parser import text_string_to_metric_families

from healthinfo.audit import rest as audit_rest
from healthinfo.health_information import rest as health_information_rest
from healthinfo.kits import rest as kits_rest
from healthinfo.questionnaires import rest as questionnaires_rest
from tests.support.legacy import DEPRECATION
from tests.support.problems import PROBLEM_JSON, assert_problem
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

HI_ROUTE = "/v1/kits/{kitId}/health-information"
# The routers the app mounts under /v1 (and, deprecated, without a prefix).
API_MODULES = (health_information_rest, kits_rest, audit_rest, questionnaires_rest)
WRITE_METHODS = ("put", "patch", "post", "delete")
# The REST routes of the contract (WebSocket routes are not part of an OpenAPI document).
CONTRACT_ROUTES = [
    ("get", "/v1/kits/{}/health-information"),
    ("put", "/v1/kits/{}/health-information"),
    ("patch", "/v1/kits/{}/health-information"),
    ("delete", "/v1/kits/{}/health-information"),
    ("post", "/v1/kits/{}/health-information/submit"),
    ("post", "/v1/kits/{}/health-information/amendments"),
    ("get", "/v1/kits/{}/health-information/history"),
    ("get", "/v1/kits/{}/health-information/history/{}"),
    ("get", "/v1/kits/{}/health-information/events"),
    ("post", "/v1/kits/{}/claim"),
    ("get", "/v1/kits/{}/members"),
    ("put", "/v1/kits/{}/members/{}"),
    ("delete", "/v1/kits/{}/members/{}"),
    ("get", "/v1/kits/{}/audit-events"),
    ("get", "/v1/kits/{}/export"),
    ("get", "/v1/questionnaires/{}"),
    ("get", "/v1/admin/deliveries"),
    ("post", "/v1/admin/deliveries/{}/retry"),
]
# Writes of health information: concurrency (412), conflicts (409) and validation (422) apply.
HEALTH_INFORMATION_WRITES = [
    ("put", HI_ROUTE),
    ("patch", HI_ROUTE),
    ("post", HI_ROUTE + "/submit"),
]


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


def template(path: str) -> str:
    """A path with its parameter names erased, so ``{id}`` and ``{questionnaireId}`` compare."""
    return re.sub(r"\{[^}]*\}", "{}", path)


async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, template(path)): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "patch", "post", "delete")
    }


def problem_api_operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The operations that answer errors as problems: all but the FHIR base's, whose errors are
    OperationOutcome resources and whose bodies are FHIR (tests/integration/test_fhir_api.py,
    test_openapi_docs.py)."""
    return {
        key: op for key, op in operations(document).items() if not key[1].startswith("/v1/fhir")
    }


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs_in(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs_in(value)]
    return []


async def metrics_text(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


# --- health checks ---------------------------------------------------------------------------


async def test_liveness_is_200(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["x-request-id"]


async def test_readiness_is_200_with_the_database_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert "cache" in body["checks"]


async def test_health_checks_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200


# --- metrics ---------------------------------------------------------------------------------


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert "healthinfo_http_requests" in names
    assert "healthinfo_http_request_duration_seconds" in names


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.put(url(kit_id), json={"answers": {"heightCm": 180}}, headers=auth(user))
    text = await metrics_text(client)
    assert f'route="{HI_ROUTE}"' in text
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        if family.name == "healthinfo_http_requests"
        for sample in family.samples
        if sample.name == "healthinfo_http_requests_total"
    ]
    put_201 = [
        s
        for s in samples
        if s.labels == {"method": "PUT", "route": HI_ROUTE, "status": "201"} and s.value >= 1
    ]
    assert put_201, samples


async def test_metrics_never_contain_a_raw_kit_id(client: httpx.AsyncClient, user: str) -> None:
    kit_id = f"METRICSKIT{uuid.uuid4().hex}"
    headers = auth(user)
    await client.get(url(kit_id), headers=headers)
    await client.put(url(kit_id), json={"answers": {"heightCm": 180}}, headers=headers)
    await client.patch(url(kit_id), json={"answers": {"heightCm": 5000}}, headers=headers)
    await client.get(url(kit_id, "/history/1"), headers=headers)
    await client.get(f"/kits/{kit_id}/health-information", headers=headers)
    await client.get(f"/v1/kits/{kit_id}/no-such-thing", headers=headers)
    await client.delete(url(kit_id, "/submit"), headers=headers)
    text = await metrics_text(client)
    assert "healthinfo_http_requests_total{" in text
    assert kit_id not in text


async def test_metrics_put_unmatched_paths_under_one_label(client: httpx.AsyncClient) -> None:
    path = f"/no-such-route-{uuid.uuid4().hex}"
    assert (await client.get(path)).status_code == 404
    text = await metrics_text(client)
    assert path not in text
    assert 'route="unmatched"' in text


# --- OpenAPI and docs ------------------------------------------------------------------------


async def test_openapi_documents_every_v1_route_the_app_serves(
    client: httpx.AsyncClient,
) -> None:
    documented = operations(await openapi(client))
    served = {
        (method.lower(), template("/v1" + route.path))
        for module in API_MODULES
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
        if method != "HEAD"
    }
    assert len(served) >= 12
    assert served <= documented.keys(), sorted(served - documented.keys())


@pytest.mark.parametrize(("method", "path"), CONTRACT_ROUTES, ids=lambda v: str(v))
async def test_openapi_documents_each_contract_route(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    assert (method, path) in operations(await openapi(client))


@pytest.mark.parametrize(("method", "path"), HEALTH_INFORMATION_WRITES, ids=lambda v: str(v))
@pytest.mark.parametrize("status", ["409", "412", "422"])
async def test_health_information_writes_document_conflict_and_validation_problems(
    client: httpx.AsyncClient, method: str, path: str, status: str
) -> None:
    document = await openapi(client)
    responses = operations(document)[(method, template(path))]["responses"]
    assert status in responses
    content = responses[status]["content"]
    assert list(content) == [PROBLEM_JSON]
    schema = resolve(document, content[PROBLEM_JSON]["schema"]["$ref"])
    assert {"type", "title", "status", "detail", "code", "requestId"} <= schema["properties"].keys()


async def test_every_write_route_documents_422_as_a_problem(client: httpx.AsyncClient) -> None:
    document = await openapi(client)
    writes = {
        key: op for key, op in problem_api_operations(document).items() if key[0] in WRITE_METHODS
    }
    assert writes
    missing = [
        key for key, op in writes.items() if PROBLEM_JSON not in op["responses"]["422"]["content"]
    ]
    assert missing == []


async def test_every_documented_error_response_is_a_problem(client: httpx.AsyncClient) -> None:
    document = await openapi(client)
    wrong = [
        (key, status, sorted(response.get("content", {})))
        for key, operation in problem_api_operations(document).items()
        for status, response in operation["responses"].items()
        if status[0] in "45" and list(response.get("content", {})) != [PROBLEM_JSON]
    ]
    assert wrong == []


@pytest.mark.parametrize("method", ["put", "patch"])
async def test_put_and_patch_bodies_reference_existing_schemas(
    client: httpx.AsyncClient, method: str
) -> None:
    document = await openapi(client)
    bodies = [
        (path, op["requestBody"])
        for (m, path), op in problem_api_operations(document).items()
        if m == method and "requestBody" in op
    ]
    with_body = {path for path, _ in bodies}
    without = [
        p for (m, p) in problem_api_operations(document) if m == method and p not in with_body
    ]
    assert bodies
    assert without == []
    for path, body in bodies:
        assert body.get("required") is True, path
        assert "application/json" in body["content"], path
        for media in body["content"].values():
            schema = resolve(document, media["schema"]["$ref"])
            assert schema.get("properties"), path


async def test_patch_body_accepts_merge_patch_json(client: httpx.AsyncClient) -> None:
    document = await openapi(client)
    content = operations(document)[("patch", template(HI_ROUTE))]["requestBody"]["content"]
    assert "application/merge-patch+json" in content


async def test_put_body_schema_has_the_contract_fields(client: httpx.AsyncClient) -> None:
    document = await openapi(client)
    content = operations(document)[("put", template(HI_ROUTE))]["requestBody"]["content"]
    schema = resolve(document, content["application/json"]["schema"]["$ref"])
    assert {"answers", "submitted", "baseVersion"} <= schema["properties"].keys()
    assert "answers" in schema.get("required", [])


async def test_every_ref_in_the_openapi_document_resolves(client: httpx.AsyncClient) -> None:
    document = await openapi(client)
    refs = refs_in(document)
    assert refs
    for ref in refs:
        resolve(document, ref)


async def test_openapi_marks_legacy_routes_deprecated_and_v1_routes_not(
    client: httpx.AsyncClient,
) -> None:
    document = await openapi(client)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path.startswith("/v1/"):
                assert not operation.get("deprecated", False), (method, path)
            elif path.startswith(("/kits/", "/questionnaires/")):
                assert operation.get("deprecated") is True, (method, path)
                assert (method, "/v1" + template(path)) in operations(document)


async def test_docs_page_is_html(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text


# --- legacy, unversioned routes --------------------------------------------------------------


def assert_deprecated(response: httpx.Response, successor: str) -> None:
    assert response.headers["deprecation"] == DEPRECATION
    assert response.headers["link"] == f'<{successor}>; rel="successor-version"'


async def test_legacy_get_is_identical_to_v1_and_deprecated(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.put(url(kit_id), json={"answers": {"heightCm": 180}}, headers=auth(user))
    current = await client.get(url(kit_id), headers=auth(user))
    legacy = await client.get(f"/kits/{kit_id}/health-information", headers=auth(user))
    assert legacy.status_code == current.status_code == 200
    assert legacy.json() == current.json()
    assert legacy.headers["etag"] == current.headers["etag"]
    assert_deprecated(legacy, f"/v1/kits/{kit_id}/health-information")


async def test_legacy_put_writes_what_v1_reads(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    legacy = await client.put(
        f"/kits/{kit_id}/health-information",
        json={"answers": {"heightCm": 175}},
        headers=auth(user),
    )
    assert legacy.status_code == 201
    assert_deprecated(legacy, f"/v1/kits/{kit_id}/health-information")
    current = await client.get(url(kit_id), headers=auth(user))
    assert current.json() == legacy.json()


async def test_legacy_problem_is_identical_to_v1_and_deprecated(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    legacy = await client.get(f"/kits/{kit_id}/health-information", headers=auth(user))
    current = await client.get(url(kit_id), headers=auth(user))
    legacy_body = assert_problem(legacy, 404, "not-found")
    current_body = assert_problem(current, 404, "not-found")
    ignored = ("instance", "requestId")
    assert {k: v for k, v in legacy_body.items() if k not in ignored} == {
        k: v for k, v in current_body.items() if k not in ignored
    }
    assert_deprecated(legacy, f"/v1/kits/{kit_id}/health-information")


async def test_legacy_history_is_deprecated_with_its_successor(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.put(url(kit_id), json={"answers": {"heightCm": 180}}, headers=auth(user))
    legacy = await client.get(f"/kits/{kit_id}/health-information/history", headers=auth(user))
    current = await client.get(url(kit_id, "/history"), headers=auth(user))
    assert legacy.status_code == 200
    assert legacy.json() == current.json()
    assert_deprecated(legacy, f"/v1/kits/{kit_id}/health-information/history")


async def test_legacy_questionnaire_is_identical_to_v1_and_deprecated(
    client: httpx.AsyncClient, user: str
) -> None:
    legacy = await client.get("/questionnaires/health-information", headers=auth(user))
    current = await client.get("/v1/questionnaires/health-information", headers=auth(user))
    assert legacy.status_code == current.status_code == 200
    assert legacy.json() == current.json()
    assert_deprecated(legacy, "/v1/questionnaires/health-information")


async def test_v1_routes_carry_no_deprecation(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    responses = [
        await client.put(url(kit_id), json={"answers": {"heightCm": 180}}, headers=auth(user)),
        await client.get(url(kit_id), headers=auth(user)),
        await client.get(url("KIT-none-" + uuid.uuid4().hex[:8]), headers=auth(user)),
        await client.get("/v1/questionnaires/health-information", headers=auth(user)),
    ]
    for response in responses:
        assert "deprecation" not in response.headers
        assert "successor-version" not in response.headers.get("link", "")


async def test_operational_routes_carry_no_deprecation(client: httpx.AsyncClient) -> None:
    for path in ("/health/live", "/health/ready", "/metrics", "/openapi.json"):
        response = await client.get(path)
        assert "deprecation" not in response.headers, path
