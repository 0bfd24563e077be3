"""Rate limits: per user and per address, per class of route, with RateLimit-* headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.asgi import http_status, websocket_answer
from tests.support.tokens import auth


@pytest.fixture
async def limited(
    make_settings: Callable[..., Settings], redis_prefix: str
) -> AsyncIterator[FastAPI]:
    import uuid

    settings = make_settings(
        redis_key_prefix=f"{redis_prefix}{uuid.uuid4().hex[:6]}:",
        rate_limit_read_per_user="5/minute",
        rate_limit_write_per_user="3/minute",
        rate_limit_read_per_address="8/minute",
        rate_limit_write_per_address="100/minute",
        rate_limit_stream_per_user="2/minute",
        rate_limit_stream_per_address="3/minute",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(limited: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with await open_client(limited) as client:
        yield client


def url(kit_id: str) -> str:
    return f"/v1/kits/{kit_id}/health-information"


async def test_responses_carry_rate_limit_headers(
    http: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await http.get(url(kit_id), headers=auth(user))
    assert response.headers["ratelimit-limit"] == "5"
    assert response.headers["ratelimit-remaining"] == "4"
    assert int(response.headers["ratelimit-reset"]) >= 1


async def test_a_user_over_the_read_limit_gets_429_with_retry_after(
    http: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    statuses = [(await http.get(url(kit_id), headers=auth(user))).status_code for _ in range(6)]
    assert statuses == [404] * 5 + [429]
    response = await http.get(url(kit_id), headers=auth(user))
    assert response.json()["code"] == "rate-limited"
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1


async def test_write_limits_are_counted_apart_from_reads(
    http: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    for _ in range(3):
        assert (
            await http.patch(url(kit_id), json={"answers": {}}, headers=auth(user))
        ).status_code == 200
    assert (
        await http.patch(url(kit_id), json={"answers": {}}, headers=auth(user))
    ).status_code == 429
    assert (await http.get(url(kit_id), headers=auth(user))).status_code == 200


async def test_another_user_has_a_budget_of_their_own(
    http: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    for _ in range(5):
        await http.get(url(kit_id), headers=auth(user))
    assert (await http.get(url(kit_id), headers=auth(user))).status_code == 429
    assert (await http.get(url(kit_id), headers=auth("someone-else"))).status_code == 404


async def test_the_address_limit_covers_many_users_and_bad_tokens(
    http: httpx.AsyncClient, kit_id: str
) -> None:
    statuses = [
        (await http.get(url(kit_id), headers={"Authorization": f"Bearer bad-{i}"})).status_code
        for i in range(9)
    ]
    assert statuses == [401] * 8 + [429]


async def test_a_refused_request_changes_nothing(
    http: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    for height in (150, 151, 152):
        await http.patch(url(kit_id), json={"answers": {"heightCm": height}}, headers=auth(user))
    refused = await http.patch(url(kit_id), json={"answers": {"heightCm": 199}}, headers=auth(user))
    assert refused.status_code == 429
    assert (await http.get(url(kit_id), headers=auth(user))).json()["answers"] == {"heightCm": 152}


async def test_normal_use_is_never_limited_by_the_defaults(
    make_settings: Callable[..., Settings], kit_id: str, user: str
) -> None:
    """A person autosaving every second with a burst of a few dozen requests stays well under."""
    defaults = Settings.model_fields
    app = create_app(
        make_settings(
            **{name: defaults[name].default for name in defaults if name.startswith("rate_limit_")}
        )
    )
    async with app.router.lifespan_context(app), await open_client(app) as client:
        for i in range(60):
            response = await client.patch(
                url(kit_id), json={"answers": {"heightCm": 100 + i}}, headers=auth(user)
            )
            assert response.status_code == 200
        for _ in range(60):
            assert (await client.get(url(kit_id), headers=auth(user))).status_code == 200


async def test_sse_and_websocket_connects_share_the_stream_limit(
    limited: FastAPI, kit_id: str, user: str
) -> None:
    """Reconnect storms are limited like REST calls: 429 on SSE, close 4429 on WebSocket."""
    events = f"/v1/kits/{kit_id}/health-information/events"
    statuses = [await http_status(limited, "GET", events, auth(user)) for _ in range(2)]
    assert statuses == [404, 404]  # a stranger to the kit: counted all the same
    socket = f"/v1/kits/{kit_id}/health-information/ws"
    assert await websocket_answer(limited, socket, auth(user)) == 4429
    assert await http_status(limited, "GET", events, auth(user)) == 429


async def test_stream_connects_with_bad_tokens_meet_the_address_limit(
    limited: FastAPI, kit_id: str
) -> None:
    events = f"/v1/kits/{kit_id}/health-information/events"
    statuses = [
        await http_status(limited, "GET", f"{events}?access_token=bad-{i}", {}) for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
