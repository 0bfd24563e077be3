"""The cache adapters keep one contract: versioned entries, compare-and-set, delete.

The same tests run against a real Redis (the shared one, under a key prefix of this run)
and the in-process LRU.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from healthinfo.infra.cache import Cache, CacheCorrupt, CacheEntry, MemoryCache, RedisCache
from tests.support.backends import REDIS_URL


@pytest.fixture(params=["in-process", "redis"])
async def cache(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[Cache]:
    adapter: Cache = (
        MemoryCache(max_entries=3)
        if request.param == "in-process"
        else RedisCache(REDIS_URL, timeout_seconds=1.0, prefix=redis_prefix)
    )
    yield adapter
    await adapter.close()


@pytest.fixture
def key() -> str:
    return f"k-{uuid.uuid4().hex[:8]}"


async def test_missing_key_is_none(cache: Cache, key: str) -> None:
    assert await cache.get(key) is None


async def test_put_then_get_returns_the_entry(cache: Cache, key: str) -> None:
    assert await cache.put_if_newer(key, CacheEntry(3, b"three"), 60)
    assert await cache.get(key) == CacheEntry(3, b"three")


async def test_an_older_version_never_replaces_a_newer_one(cache: Cache, key: str) -> None:
    await cache.put_if_newer(key, CacheEntry(5, b"five"), 60)
    assert not await cache.put_if_newer(key, CacheEntry(4, b"four"), 60)
    assert not await cache.put_if_newer(key, CacheEntry(5, b"other five"), 60)
    assert await cache.get(key) == CacheEntry(5, b"five")


async def test_a_newer_version_replaces_an_older_one(cache: Cache, key: str) -> None:
    await cache.put_if_newer(key, CacheEntry(5, b"five"), 60)
    assert await cache.put_if_newer(key, CacheEntry(6, b"six"), 60)
    assert await cache.get(key) == CacheEntry(6, b"six")


async def test_delete_removes_the_entry(cache: Cache, key: str) -> None:
    await cache.put_if_newer(key, CacheEntry(1, b"one"), 60)
    await cache.delete(key)
    assert await cache.get(key) is None


async def test_concurrent_puts_leave_the_highest_version(cache: Cache, key: str) -> None:
    versions = list(range(1, 60))
    order = versions[::2] + versions[1::2][::-1]
    await asyncio.gather(
        *(cache.put_if_newer(key, CacheEntry(v, str(v).encode()), 60) for v in order)
    )
    assert await cache.get(key) == CacheEntry(59, b"59")


async def test_memory_cache_evicts_the_least_recently_used() -> None:
    memory = MemoryCache(max_entries=2)
    await memory.put_if_newer("a", CacheEntry(1, b"a"), 60)
    await memory.put_if_newer("b", CacheEntry(1, b"b"), 60)
    await memory.get("a")
    await memory.put_if_newer("c", CacheEntry(1, b"c"), 60)
    assert await memory.get("b") is None
    assert await memory.get("a") is not None


async def test_redis_entries_expire_after_the_ttl(redis_prefix: str, key: str) -> None:
    redis_cache = RedisCache(REDIS_URL, timeout_seconds=1.0, prefix=redis_prefix)
    try:
        await redis_cache.put_if_newer(key, CacheEntry(1, b"one"), 1)
        await asyncio.sleep(1.2)
        assert await redis_cache.get(key) is None
    finally:
        await redis_cache.close()


async def test_two_redis_clients_racing_never_move_a_version_backwards(
    redis_prefix: str, key: str
) -> None:
    """Two server instances = two clients; the Lua compare-and-set is atomic on the server."""
    first = RedisCache(REDIS_URL, timeout_seconds=1.0, prefix=redis_prefix)
    second = RedisCache(REDIS_URL, timeout_seconds=1.0, prefix=redis_prefix)
    observed: list[int] = []

    async def writer(client: RedisCache, versions: range) -> None:
        for version in versions:
            await client.put_if_newer(key, CacheEntry(version, b"x"), 60)

    async def reader() -> None:
        for _ in range(200):
            entry = await first.get(key)
            if entry is not None:
                observed.append(entry.version)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(
            writer(first, range(1, 200, 2)), writer(second, range(200, 0, -1)), reader()
        )
        assert observed == sorted(observed), "a reader saw a version go backwards"
        assert (await second.get(key)) == CacheEntry(200, b"x")
    finally:
        await first.close()
        await second.close()


async def test_redis_garbage_is_reported_as_corrupt(redis_prefix: str, key: str) -> None:
    import redis.asyncio as aioredis

    raw = aioredis.Redis.from_url(REDIS_URL)
    redis_cache = RedisCache(REDIS_URL, timeout_seconds=1.0, prefix=redis_prefix)
    try:
        await raw.hset(redis_prefix + key, mapping={"v": "not-a-number", "d": "x"})
        with pytest.raises(CacheCorrupt):
            await redis_cache.get(key)
    finally:
        await raw.aclose()
        await redis_cache.close()
