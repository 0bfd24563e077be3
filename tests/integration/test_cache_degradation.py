"""The cache is only a cache: Redis down, hung, poisoned or stale never changes an answer.

Each test runs the app against a private redis-server it can stop, pause and restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.redis_server import PrivateRedis
from tests.support.tokens import auth


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.resume() if server.process and server.process.poll() is None else None
    server.stop()


@pytest.fixture
async def cached_app(
    make_settings: Callable[..., Settings], private_redis: PrivateRedis
) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        redis_url=private_redis.url,
        cache_timeout_seconds=0.05,
        cache_breaker_failures=3,
        cache_breaker_cooldown_seconds=0.3,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(cached_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with await open_client(cached_app) as client:
        yield client


def url(kit_id: str) -> str:
    return f"/v1/kits/{kit_id}/health-information"


def metric(app: FastAPI, name: str, **labels: str) -> float:
    value = app.state.services.metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


async def test_second_read_is_a_cache_hit(
    cached_app: FastAPI, http: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await http.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    await cached_app.state.services.uows.background.drain()  # the write-through, after the 200
    hits = metric(cached_app, "healthinfo_cache_hits_total")
    response = await http.get(url(kit_id), headers=auth(user))
    assert response.json()["answers"] == {"heightCm": 170}
    assert metric(cached_app, "healthinfo_cache_hits_total") == hits + 1


async def test_with_redis_stopped_reads_and_writes_succeed_with_correct_data(
    cached_app: FastAPI,
    http: httpx.AsyncClient,
    private_redis: PrivateRedis,
    kit_id: str,
    user: str,
) -> None:
    await http.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    await http.get(url(kit_id), headers=auth(user))
    private_redis.stop()
    for height in range(171, 181):
        written = await http.put(
            url(kit_id), json={"answers": {"heightCm": height}}, headers=auth(user)
        )
        assert written.status_code == 200
        read = await http.get(url(kit_id), headers=auth(user))
        assert read.status_code == 200
        assert read.json()["answers"] == {"heightCm": height}
        assert read.json()["version"] == written.json()["version"]
    assert metric(cached_app, "healthinfo_cache_errors_total", kind="connection") > 0


async def test_readiness_reports_a_dead_redis_as_degraded_but_stays_ready(
    http: httpx.AsyncClient, private_redis: PrivateRedis, kit_id: str, user: str
) -> None:
    """Cache, events bus and rate limits all use Redis; none of them is required."""
    healthy = (await http.get("/health/ready")).json()["checks"]
    assert healthy == {
        "database": "ok",
        "schema": "ok",
        "keystore": "ok",
        "cache": "ok",
        "events": "ok",
        "rateLimits": "ok",
    }
    private_redis.stop()
    for _ in range(3):  # requests are counted, reconciliation meets the dead Redis
        assert (await http.get(url(kit_id), headers=auth(user))).status_code == 404
    deadline = time.monotonic() + 10
    while True:  # the bus notices its lost subscription on its own, within its ping interval,
        # and the rate limiter's breaker opens after its reconciliations failed (every 100 ms)
        response = await http.get("/health/ready")
        checks = response.json()["checks"]
        degraded = checks["events"] == checks["rateLimits"] == "degraded"
        if degraded or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert response.status_code == 200
    assert response.json()["checks"] == {
        "database": "ok",
        "schema": "ok",
        "keystore": "ok",
        "cache": "degraded",
        "events": "degraded",
        "rateLimits": "degraded",
    }


async def test_a_hung_redis_trips_the_breaker_and_requests_still_succeed(
    cached_app: FastAPI,
    http: httpx.AsyncClient,
    private_redis: PrivateRedis,
    kit_id: str,
    user: str,
) -> None:
    await http.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    private_redis.pause()
    for height in range(171, 186):
        assert (
            await http.patch(
                url(kit_id), json={"answers": {"heightCm": height}}, headers=auth(user)
            )
        ).status_code == 200
        read = await http.get(url(kit_id), headers=auth(user))
        assert read.json()["answers"]["heightCm"] == height
    assert metric(cached_app, "healthinfo_cache_errors_total", kind="timeout") >= 3
    skipped = sum(
        metric(cached_app, "healthinfo_cache_skipped_total", operation=op) for op in ("get", "put")
    )
    assert skipped > 0, "the breaker never opened: a hung Redis was called on every request"


async def test_after_redis_comes_back_the_hit_ratio_recovers(
    cached_app: FastAPI,
    http: httpx.AsyncClient,
    private_redis: PrivateRedis,
    kit_id: str,
    user: str,
) -> None:
    await http.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    private_redis.stop()
    for _ in range(5):
        await http.get(url(kit_id), headers=auth(user))
    private_redis.start()
    await asyncio.sleep(0.4)  # the breaker's cool-down
    for _ in range(3):
        await http.get(url(kit_id), headers=auth(user))
    hits_before = metric(cached_app, "healthinfo_cache_hits_total")
    for _ in range(10):
        assert (await http.get(url(kit_id), headers=auth(user))).status_code == 200
    assert metric(cached_app, "healthinfo_cache_hits_total") - hits_before == 10


async def test_a_stale_entry_is_never_served(
    cached_app: FastAPI,
    http: httpx.AsyncClient,
    private_redis: PrivateRedis,
    kit_id: str,
    user: str,
) -> None:
    """A write-through that never reached Redis leaves the old entry behind: reads skip it.

    The old entry is planted back byte for byte after version 2 is committed, which is what a
    lost write-through leaves in Redis.
    """
    settings: Settings = cached_app.state.services.settings
    key = f"{settings.redis_key_prefix}hi:v1:{kit_id}"
    await http.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    await http.get(url(kit_id), headers=auth(user))
    raw = aioredis.Redis.from_url(private_redis.url)
    try:
        version_1 = await raw.hgetall(key)
        assert version_1[b"v"] == b"1"
        await http.put(url(kit_id), json={"answers": {"heightCm": 199}}, headers=auth(user))
        await raw.delete(key)
        await raw.hset(key, mapping=version_1)
    finally:
        await raw.aclose()
    for _ in range(3):
        read = await http.get(url(kit_id), headers=auth(user))
        assert read.json()["answers"] == {"heightCm": 199}
        assert read.json()["version"] == 2


async def test_garbage_in_redis_is_a_counted_miss(
    cached_app: FastAPI,
    http: httpx.AsyncClient,
    private_redis: PrivateRedis,
    kit_id: str,
    user: str,
) -> None:
    await http.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    settings: Settings = cached_app.state.services.settings
    raw = aioredis.Redis.from_url(private_redis.url)
    try:
        await raw.hset(
            f"{settings.redis_key_prefix}hi:v1:{kit_id}", mapping={"v": "1", "d": "{not json"}
        )
    finally:
        await raw.aclose()
    # The instance's own in-process copy would be served first (and rightly): drop it, so the
    # read has to go to Redis and meet the garbage.
    near = cached_app.state.services.health_information._cache._near
    if near is not None:
        await near.delete(f"hi:v1:{kit_id}")
    read = await http.get(url(kit_id), headers=auth(user))
    assert read.json()["answers"] == {"heightCm": 170}
    assert metric(cached_app, "healthinfo_cache_errors_total", kind="garbage") >= 1
