"""The cache port: versioned entries, compare-and-set writes, and two adapters.

An entry is ``(version, payload)``. ``put_if_newer`` never replaces an entry with an older
version, even when two server instances race (Redis: one Lua script, atomic on the server).
The service validates every cached entry against the version it reads from the database, so
the cache only ever saves work; it never decides what a client sees.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from healthinfo.infra.redis_client import fail_fast_redis


@dataclass(frozen=True, slots=True)
class CacheEntry:
    version: int
    payload: bytes


class Cache(Protocol):
    kind: str

    async def get(self, key: str) -> CacheEntry | None: ...

    async def put_if_newer(self, key: str, entry: CacheEntry, ttl_seconds: int) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class MemoryCache:
    """A bounded LRU in this process, for the embedded default (no Redis configured)."""

    kind = "in-process"

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._max = max_entries

    async def get(self, key: str) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    async def put_if_newer(self, key: str, entry: CacheEntry, ttl_seconds: int) -> bool:
        current = self._entries.get(key)
        if current is not None and current.version >= entry.version:
            return False
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return True

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()


# KEYS[1] = key; ARGV = version, payload, ttl in ms. Returns 1 when written, 0 when not newer.
_PUT_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'v')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


class CacheCorrupt(Exception):
    """An entry that is not what we write: treated as a miss and counted as garbage."""


class RedisCache:
    """Redis with short timeouts and no hidden retries.

    redis-py retries failing commands with back-off by default; here a 0.2 s timeout once
    became a 3.7 s stall. One attempt per command: the circuit breaker above decides what
    to do about failures, and the database answers meanwhile.
    """

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float,
        prefix: str = "healthinfo:",
        max_connections: int = 64,
    ) -> None:
        self._prefix = prefix
        self._redis = fail_fast_redis(
            url, timeout_seconds=timeout_seconds, max_connections=max_connections
        )
        self._put = self._redis.register_script(_PUT_IF_NEWER)

    async def get(self, key: str) -> CacheEntry | None:
        version, payload = await self._redis.hmget(self._prefix + key, ["v", "d"])
        if version is None and payload is None:
            return None
        if not isinstance(version, bytes) or not isinstance(payload, bytes):
            raise CacheCorrupt(key)
        try:
            return CacheEntry(int(version), payload)
        except ValueError as exc:
            raise CacheCorrupt(key) from exc

    async def put_if_newer(self, key: str, entry: CacheEntry, ttl_seconds: int) -> bool:
        written = await self._put(
            keys=[self._prefix + key], args=[entry.version, entry.payload, ttl_seconds * 1000]
        )
        return bool(written)

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
