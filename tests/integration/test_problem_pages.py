"""Problem ``type`` URIs resolve: ``GET /problems/{code}`` is a short page for every code."""

from __future__ import annotations

import html

import httpx
import pytest

from healthinfo.api.problems import emitted_codes
from healthinfo.errors import DomainError
from tests.support.problems import assert_problem
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

# The table of codes in the contract (api.md, "Errors: RFC 9457 problem details").
CONTRACT_CODES = {
    400: "malformed-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    409: ("already-submitted", "edit-conflict", "kit-already-claimed", "idempotency-key-in-use"),
    412: "version-conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: ("validation-failed", "idempotency-key-reused"),
    428: "precondition-required",
    429: ("rate-limited", "room-full"),
    503: "unavailable",
}


def contract_codes() -> list[tuple[int, str]]:
    return sorted(
        (status, code)
        for status, codes in CONTRACT_CODES.items()
        for code in ((codes,) if isinstance(codes, str) else codes)
    )


def every_domain_error() -> set[type[DomainError]]:
    found: set[type[DomainError]] = set()
    pending = [DomainError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.add(sub)
            pending.append(sub)
    return found


async def page(client: httpx.AsyncClient, code: str) -> httpx.Response:
    response = await client.get(f"/problems/{code}")
    assert response.status_code == 200, (code, response.text)
    assert response.headers["content-type"].startswith("text/html")
    return response


@pytest.mark.parametrize(("status", "code"), contract_codes())
async def test_every_code_of_the_contract_has_a_page_naming_its_status(
    client: httpx.AsyncClient, status: int, code: str
) -> None:
    response = await page(client, code)
    assert f"HTTP {status}" in response.text
    assert f"<code>{code}</code>" in response.text


async def test_every_code_the_service_can_send_has_a_page(client: httpx.AsyncClient) -> None:
    codes = emitted_codes()
    assert {error.code for error in every_domain_error()} <= codes
    assert {"method-not-allowed", "internal-error"} <= codes
    for code in sorted(codes):
        await page(client, code)


async def test_a_domain_errors_page_has_the_title_its_problems_carry(
    client: httpx.AsyncClient,
) -> None:
    for error in every_domain_error():
        response = await page(client, error.code)
        assert f"<h1>{html.escape(error.title)}</h1>" in response.text, error.code


async def test_the_type_of_a_real_problem_resolves(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    problem = await client.get(f"/v1/kits/{kit_id}/health-information", headers=auth(user))
    body = assert_problem(problem, 404, "not-found")
    response = await page(client, body["type"].removeprefix("/problems/"))
    assert "When it happens" in response.text
    assert "What to do" in response.text


async def test_the_type_of_a_405_resolves(client: httpx.AsyncClient) -> None:
    problem = await client.delete("/v1/questionnaires/health-information")
    body = assert_problem(problem, 405, "method-not-allowed")
    await page(client, body["type"].removeprefix("/problems/"))


async def test_an_unknown_code_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/problems/no-such-code")
    assert_problem(response, 404, "not-found")


async def test_a_string_that_cannot_be_a_code_is_a_422_problem(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/problems/Not%20A%20Code")
    assert_problem(response, 422, "validation-failed")


async def test_problem_pages_are_public_and_cacheable(client: httpx.AsyncClient) -> None:
    response = await page(client, "version-conflict")
    assert response.headers["cache-control"] == "public, max-age=86400"
    assert "script" not in response.headers["content-security-policy"]


async def test_problem_pages_are_in_the_openapi_document_without_a_token(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/problems/{code}"]["get"]
    assert "text/html" in operation["responses"]["200"]["content"]
    assert not operation.get("security")
