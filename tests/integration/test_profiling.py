"""The profiling switch: a pyinstrument profile for admins, only where the setting allows it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.tokens import auth

QUESTIONNAIRE = "/v1/questionnaires/health-information"
ADMIN = auth("admin-prof", "admin")


@pytest.fixture(scope="module")
async def profiling_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    application = create_app(
        make_settings(
            profiling_enabled=True, rate_limit_enabled=False, db_pool_size=2, db_max_overflow=4
        )
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def profiled(profiling_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with await open_client(profiling_app) as http:
        yield http


async def test_an_admin_gets_an_html_profile_of_the_request(profiled: httpx.AsyncClient) -> None:
    response = await profiled.get(QUESTIONNAIRE, headers={**ADMIN, "X-Profile": "1"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-profile-status"] == "200"
    assert response.headers["cache-control"] == "no-store"
    assert "pyinstrument" in response.text.lower()
    assert response.headers["x-request-id"]


async def test_the_query_switch_and_the_json_profile(profiled: httpx.AsyncClient) -> None:
    html = await profiled.get(f"{QUESTIONNAIRE}?profile=1", headers=ADMIN)
    assert html.headers["content-type"].startswith("text/html")
    as_json = await profiled.get(QUESTIONNAIRE, headers={**ADMIN, "X-Profile": "json"})
    assert as_json.status_code == 200
    profile = as_json.json()
    assert "root_frame" in profile
    assert "duration" in profile


async def test_a_profiled_request_reports_the_status_it_would_have_had(
    profiled: httpx.AsyncClient,
) -> None:
    response = await profiled.get(
        "/v1/kits/KIT-none-here/health-information", headers={**ADMIN, "X-Profile": "1"}
    )
    assert response.status_code == 200
    assert response.headers["x-profile-status"] == "404"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(auth("user-prof"), id="not an admin"),
        pytest.param(auth("auditor-prof", "auditor"), id="auditor"),
        pytest.param({"Authorization": "Bearer not-a-token"}, id="bad token"),
        pytest.param({}, id="no token"),
    ],
)
async def test_anyone_else_gets_the_normal_response(
    profiled: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await profiled.get(QUESTIONNAIRE, headers={**headers, "X-Profile": "1"})
    assert "x-profile-status" not in response.headers
    assert response.headers["content-type"].startswith(("application/json", "application/problem"))
    assert "pyinstrument" not in response.text.lower()


async def test_when_the_setting_is_off_admins_get_the_normal_response(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    assert settings.profiling_enabled is False  # the default
    response = await client.get(QUESTIONNAIRE, headers={**ADMIN, "X-Profile": "1"})
    assert response.status_code == 200
    assert "x-profile-status" not in response.headers
    assert response.json()["id"] == "health-information"
