"""Two service instances on one database and one Redis: versions never go backwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.backends import REDIS_URL
from tests.support.tokens import auth

WRITES_PER_INSTANCE = 15


@pytest.fixture
async def instances(make_settings: Callable[..., Settings]) -> AsyncIterator[list[FastAPI]]:
    apps = [create_app(make_settings(redis_url=REDIS_URL)) for _ in range(2)]
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        yield apps


async def test_two_writers_on_two_instances_never_make_anyone_read_backwards(
    instances: list[FastAPI], kit_id: str, user: str
) -> None:
    clients = [await open_client(app) for app in instances]
    settings: Settings = instances[0].state.services.settings
    key = f"{settings.redis_key_prefix}hi:v1:{kit_id}"
    raw = aioredis.Redis.from_url(REDIS_URL)
    acknowledged: list[int] = []
    cached_versions: list[int] = []
    regressions: list[str] = []
    try:
        url = f"/v1/kits/{kit_id}/health-information"
        await clients[0].put(url, json={"answers": {}}, headers=auth(user))
        acknowledged.append(1)

        async def writer(client: httpx.AsyncClient, base: int) -> None:
            for i in range(WRITES_PER_INSTANCE):
                body = {"answers": {"heightCm": base + i}}
                response = await client.patch(url, json=body, headers=auth(user))
                assert response.status_code == 200
                acknowledged.append(response.json()["version"])

        async def reader(client: httpx.AsyncClient) -> None:
            for _ in range(3 * WRITES_PER_INSTANCE):
                floor = max(acknowledged)
                version = (await client.get(url, headers=auth(user))).json()["version"]
                if version < floor:
                    regressions.append(f"read v{version} after v{floor} was acknowledged")
                entry = await raw.hget(key, "v")
                if entry is not None:
                    cached_versions.append(int(entry))

        await asyncio.gather(
            writer(clients[0], 100),
            writer(clients[1], 150),
            reader(clients[0]),
            reader(clients[1]),
        )
        final_entry = await raw.hget(key, "v")
    finally:
        await raw.aclose()
        for client in clients:
            await client.aclose()
    assert regressions == []
    assert sorted(acknowledged) == list(range(1, 2 * WRITES_PER_INSTANCE + 2))
    assert cached_versions == sorted(cached_versions), "the cached version went backwards"
    assert final_entry == str(2 * WRITES_PER_INSTANCE + 1).encode()


def cache_hits(app: FastAPI) -> float:
    return float(app.state.services.metrics.cache_hits._value.get())


async def test_an_instance_serves_a_version_it_holds_without_asking_redis(
    instances: list[FastAPI], kit_id: str, user: str
) -> None:
    """The in-process layer in front of Redis: the version check makes it as safe as Redis."""
    settings: Settings = instances[0].state.services.settings
    raw = aioredis.Redis.from_url(REDIS_URL)
    client = await open_client(instances[0])
    url = f"/v1/kits/{kit_id}/health-information"
    try:
        saved = await client.put(url, json={"answers": {"heightCm": 170}}, headers=auth(user))
        await raw.delete(f"{settings.redis_key_prefix}hi:v1:{kit_id}")  # only the local copy
        hits = cache_hits(instances[0])
        response = await client.get(url, headers=auth(user))
    finally:
        await raw.aclose()
        await client.aclose()
    assert response.json() == saved.json()
    assert cache_hits(instances[0]) == hits + 1


async def test_a_local_copy_of_an_older_version_is_never_served(
    instances: list[FastAPI], kit_id: str, user: str
) -> None:
    first, second = [await open_client(app) for app in instances]
    url = f"/v1/kits/{kit_id}/health-information"
    try:
        await first.put(url, json={"answers": {"heightCm": 170}}, headers=auth(user))
        await first.get(url, headers=auth(user))  # the first instance holds version 1
        changed = await second.patch(url, json={"answers": {"heightCm": 171}}, headers=auth(user))
        response = await first.get(url, headers=auth(user))
    finally:
        await first.aclose()
        await second.aclose()
    assert response.json() == changed.json()
