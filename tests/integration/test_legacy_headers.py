"""The legacy routes' Deprecation (RFC 9745) and Sunset (RFC 8594) headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime

import httpx
import pytest

from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.legacy import DEPRECATION
from tests.support.problems import running_app
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
async def sunset_client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    sunset = datetime.fromisoformat("2027-06-30T12:00:00+02:00")
    async with (
        running_app(make_settings(legacy_sunset=sunset)) as application,
        await open_client(application) as http,
    ):
        yield http


async def test_legacy_deprecation_is_the_unix_time_of_the_deprecation(
    client: httpx.AsyncClient, user: str
) -> None:
    response = await client.get("/questionnaires/health-information", headers=auth(user))
    assert response.headers["deprecation"] == DEPRECATION == "@1795564800"


async def test_no_sunset_unless_configured(client: httpx.AsyncClient, user: str) -> None:
    response = await client.get("/questionnaires/health-information", headers=auth(user))
    assert "sunset" not in response.headers


async def test_configured_sunset_is_an_http_date_on_every_legacy_response(
    sunset_client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    responses = [
        await sunset_client.get("/questionnaires/health-information", headers=auth(user)),
        await sunset_client.get(f"/kits/{kit_id}/health-information", headers=auth(user)),
        await sunset_client.options(f"/kits/{kit_id}/members"),
    ]
    for response in responses:
        assert response.headers["sunset"] == "Wed, 30 Jun 2027 10:00:00 GMT"
        assert response.headers["deprecation"] == DEPRECATION


async def test_v1_routes_have_no_sunset(sunset_client: httpx.AsyncClient, user: str) -> None:
    response = await sunset_client.get("/v1/questionnaires/health-information", headers=auth(user))
    assert response.status_code == 200
    assert "sunset" not in response.headers
    assert "deprecation" not in response.headers
