"""Security headers: nosniff everywhere, no-store on the API, HSTS behind TLS, CSP on pages."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.problems import assert_problem, running_app, server_like_client
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

PUBLIC = ["/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs", "/demo"]


async def seeded(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": {"heightCm": 180}},
        headers=auth(user),
    )
    assert response.status_code == 201, response.text


async def api_responses(client: httpx.AsyncClient, kit_id: str, user: str) -> list[httpx.Response]:
    """One of each kind an API route gives: data, a write, problems, 304, 405, OPTIONS, HEAD."""
    hi = f"/v1/kits/{kit_id}/health-information"
    written = await client.put(hi, json={"answers": {"heightCm": 181}}, headers=auth(user))
    return [
        written,
        await client.get(hi, headers=auth(user)),
        await client.get(hi, headers={**auth(user), "If-None-Match": written.headers["etag"]}),
        await client.get(f"/kits/{kit_id}/health-information", headers=auth(user)),
        await client.get(f"{hi}/history", headers=auth(user)),
        await client.get(f"/v1/kits/{kit_id}/members", headers=auth(user)),
        await client.get(f"/v1/kits/{kit_id}/export", headers=auth(user)),
        await client.get(f"/v1/kits/{kit_id}/audit-events", headers=auth(user, "auditor")),
        await client.get("/v1/questionnaires/health-information", headers=auth(user)),
        await client.get(f"/v1/kits/{kit_id}-other/health-information", headers=auth(user)),
        await client.get(hi),
        await client.post(hi, headers=auth(user)),
        await client.options(hi),
        await client.head(f"{hi}/events", headers=auth(user)),
        await client.get("/v1/no-such-route"),
    ]


# --- X-Content-Type-Options ------------------------------------------------------------------


async def test_every_api_response_is_nosniff(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await seeded(client, kit_id, user)
    for response in await api_responses(client, kit_id, user):
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url


@pytest.mark.parametrize("path", [*PUBLIC, "/problems/not-found", "/nothing/here"])
async def test_every_public_response_is_nosniff(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_page_that_sets_nosniff_itself_sends_it_once(client: httpx.AsyncClient) -> None:
    response = await client.get("/demo")
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]


def add_failing_route(application: FastAPI) -> None:
    async def explode() -> None:
        raise RuntimeError("boom")

    application.add_api_route("/v1/test-only/explode", explode, methods=["GET"])


@pytest.fixture(scope="module")
async def failing_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async with running_app(make_settings(), configure=add_failing_route) as application:
        yield application


async def test_a_500_is_nosniff_and_no_store(failing_app: FastAPI) -> None:
    async with server_like_client(failing_app) as http:
        response = await http.get("/v1/test-only/explode")
    assert_problem(response, 500, "internal-error")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


async def test_a_413_from_the_body_limit_is_nosniff_and_no_store(
    make_settings: Callable[..., Settings], kit_id: str, user: str
) -> None:
    async with (
        running_app(make_settings(max_body_bytes=2048)) as application,
        await open_client(application) as http,
    ):
        response = await http.put(
            f"/v1/kits/{kit_id}/health-information",
            content=b"{" + b" " * 4096 + b"}",
            headers={**auth(user), "Content-Type": "application/json"},
        )
    assert_problem(response, 413, "payload-too-large")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


# --- Cache-Control -----------------------------------------------------------------------------


async def test_every_api_response_is_no_store(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await seeded(client, kit_id, user)
    for response in await api_responses(client, kit_id, user):
        assert response.headers.get_list("cache-control") == ["no-store"], response.request.url


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/demo", "/problems/not-found"])
async def test_public_pages_keep_their_own_caching(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("cache-control", "")


# --- Strict-Transport-Security -----------------------------------------------------------------


async def test_hsts_on_every_response_over_tls(app: FastAPI, kit_id: str, user: str) -> None:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as https:
        await seeded(https, kit_id, user)
        responses = [
            *await api_responses(https, kit_id, user),
            *[await https.get(path) for path in PUBLIC],
        ]
    for response in responses:
        assert response.headers["strict-transport-security"] == "max-age=31536000"


async def test_no_hsts_over_plain_http(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    await seeded(client, kit_id, user)
    for response in await api_responses(client, kit_id, user):
        assert "strict-transport-security" not in response.headers


# --- Content-Security-Policy -------------------------------------------------------------------

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)
SCRIPT_SRC = re.compile(r"<script[^>]*\bsrc=\"([^\"]+)\"")
STYLESHEET = re.compile(r"<link[^>]*rel=\"stylesheet\"[^>]*>|<link[^>]*type=\"text/css\"[^>]*>")
HREF = re.compile(r"\bhref=\"([^\"]+)\"")


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def sources(policy: dict[str, list[str]], directive: str) -> list[str]:
    return policy.get(directive, policy.get("default-src", []))


def allows_url(allowed: list[str], url: str) -> bool:
    parts = urlsplit(url)
    if not parts.scheme:  # same origin
        return "'self'" in allowed
    return f"{parts.scheme}://{parts.netloc}" in allowed


def allows_inline(allowed: list[str], script: str) -> bool:
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return "'unsafe-inline'" in allowed or f"'sha256-{digest}'" in allowed


@pytest.mark.parametrize("path", ["/docs", "/demo"])
async def test_page_has_a_csp_that_allows_what_the_page_loads_and_runs(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    policy = directives(response.headers["content-security-policy"])
    page = response.text
    for script in INLINE_SCRIPT.findall(page):
        assert allows_inline(sources(policy, "script-src"), script), "inline script blocked"
    for url in SCRIPT_SRC.findall(page):
        assert allows_url(sources(policy, "script-src"), url), url
    for link in STYLESHEET.findall(page):
        (url,) = HREF.findall(link)
        assert allows_url(sources(policy, "style-src"), url), url
    if "<style" in page:
        assert "'unsafe-inline'" in sources(policy, "style-src")
    assert sources(policy, "connect-src") == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize("path", ["/docs", "/demo"])
async def test_page_csp_allows_no_script_from_anywhere_else(
    client: httpx.AsyncClient, path: str
) -> None:
    policy = directives((await client.get(path)).headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert "*" not in sources(policy, "script-src")
    assert not any(s in ("https:", "http:", "data:") for s in sources(policy, "script-src"))
