"""Readiness: 503 as a problem (with the checks) when the database does not answer."""

from __future__ import annotations

from collections.abc import Callable

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.server import free_port


async def test_readiness_is_a_503_problem_when_the_database_is_unreachable(
    make_settings: Callable[..., Settings],
) -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none"
    app = create_app(
        make_settings(database_url=nowhere, migrate_on_start=False, db_timeout_seconds=1)
    )
    async with app.router.lifespan_context(app), await open_client(app) as client:
        response = await client.get("/health/ready")
        live = await client.get("/health/live")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "unavailable"
    assert body["checks"]["database"] == "unavailable"
    assert body["requestId"] == response.headers["x-request-id"]
    assert live.status_code == 200


async def test_readiness_reports_the_redis_parts_without_requiring_them(
    make_settings: Callable[..., Settings],
) -> None:
    """PostgreSQL run: cache, events bus and rate limits share Redis; SQLite run: in-process."""
    settings = make_settings()
    app = create_app(settings)
    async with app.router.lifespan_context(app), await open_client(app) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200
    expected = "ok" if settings.redis_url else "in-process"
    assert response.json()["checks"] == {
        "database": "ok",
        "cache": expected,
        "events": expected,
        "rateLimits": expected,
    }
