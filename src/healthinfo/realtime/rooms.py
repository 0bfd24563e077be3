"""Who is in each kit's room, on every instance: the room limit and presence read from here.

A member is one live connection (SSE or WebSocket): its id, user and focused question.

* :class:`InMemoryRoomStore`: one process; exact, since a connection leaves when it closes.
* :class:`RedisRoomStore`: all instances. Per kit, a sorted set (connection id → expiry in ms,
  Redis server time, so instance clocks do not matter) and a hash (connection id → member JSON).
  Every change is one Lua script, atomic on the server, so two instances admitting the last
  free place cannot both win. Each instance re-stamps its own connections every third of the
  TTL (``refresh``); the members of an instance that died without leaving expire after the
  TTL, and whoever prunes them announces the presence change. Keys expire when a room is idle.

Store errors surface as :class:`RoomStoreUnavailable`; the hub then falls back to what it
knows locally (see ``hub.py``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from redis.exceptions import RedisError

from healthinfo.infra.redis_client import fail_fast_redis


class RoomStoreUnavailable(Exception):
    """The shared room store cannot answer now."""


class Admission(IntEnum):
    """What ``join`` decided; the numbers are what the Lua script returns."""

    ROOM_FULL = 0
    ADMITTED = 1
    USER_FULL = 2  # the user already holds ``per_user_limit`` connections in the room


@dataclass(frozen=True, slots=True)
class Member:
    connection_id: str
    user_id: str
    field: str | None = None
    focused_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {"userId": self.user_id, "field": self.field, "at": self.focused_at},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, connection_id: str, raw: str | bytes) -> Member | None:
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("userId"), str):
            return None
        field = body.get("field")
        at = body.get("at")
        return cls(
            connection_id,
            body["userId"],
            field if isinstance(field, str) else None,
            float(at) if isinstance(at, int | float) else 0.0,
        )


class RoomStore(Protocol):
    kind: str

    async def join(
        self, kit_id: str, member: Member, *, limit: int, per_user_limit: int
    ) -> Admission:
        """Admit ``member`` unless the room already holds ``limit`` members, or its user
        already holds ``per_user_limit`` of them (one user must not fill a room alone)."""
        ...

    async def update(self, kit_id: str, member: Member) -> None: ...

    async def leave(self, kit_id: str, connection_id: str) -> None: ...

    async def members(self, kit_id: str) -> list[Member]: ...

    async def refresh(self, rooms: Mapping[str, Sequence[Member]]) -> set[str]:
        """Re-stamp this instance's members; returns the kits where expired members went."""
        ...

    async def close(self) -> None: ...


class InMemoryRoomStore:
    kind = "in-process"

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, Member]] = {}

    async def join(
        self, kit_id: str, member: Member, *, limit: int, per_user_limit: int
    ) -> Admission:
        room = self._rooms.setdefault(kit_id, {})
        if member.connection_id not in room:
            if len(room) >= limit:
                return Admission.ROOM_FULL
            if sum(m.user_id == member.user_id for m in room.values()) >= per_user_limit:
                return Admission.USER_FULL
        room[member.connection_id] = member
        return Admission.ADMITTED

    async def update(self, kit_id: str, member: Member) -> None:
        room = self._rooms.get(kit_id)
        if room is not None and member.connection_id in room:
            room[member.connection_id] = member

    async def leave(self, kit_id: str, connection_id: str) -> None:
        room = self._rooms.get(kit_id)
        if room is not None:
            room.pop(connection_id, None)
            if not room:
                del self._rooms[kit_id]

    async def members(self, kit_id: str) -> list[Member]:
        return list(self._rooms.get(kit_id, {}).values())

    async def refresh(self, rooms: Mapping[str, Sequence[Member]]) -> set[str]:
        return set()

    async def close(self) -> None:
        self._rooms.clear()


# Shared by the scripts: now in ms from the server's clock; drop expired members of a room.
_PRUNE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(stale) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
"""

# KEYS: zset, hash. ARGV: connection id, member JSON, ttl ms, limit, user id, per-user limit.
# Returns {admission (0 room full, 1 admitted, 2 user full), pruned}.
_JOIN = (
    _PRUNE
    + """
local ttl = tonumber(ARGV[3])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
    return {0, #stale}
  end
  local mine = 0
  for _, raw in ipairs(redis.call('HVALS', KEYS[2])) do
    local ok, body = pcall(cjson.decode, raw)
    if ok and type(body) == 'table' and body['userId'] == ARGV[5] then
      mine = mine + 1
    end
  end
  if mine >= tonumber(ARGV[6]) then
    return {2, #stale}
  end
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
return {1, #stale}
"""
)

# KEYS: zset, hash. ARGV: connection id, member JSON. Only a current member is updated.
_UPDATE = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 0
"""

# KEYS: zset, hash. ARGV: connection id.
_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 0
"""

# KEYS: zset, hash. Returns the flat list id, JSON, id, JSON… of live members.
_MEMBERS = (
    _PRUNE
    + """
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(live) do
  local json = redis.call('HGET', KEYS[2], id)
  if json then
    table.insert(out, id)
    table.insert(out, json)
  end
end
return out
"""
)

# KEYS: zset, hash. ARGV: ttl ms, then id, JSON pairs. Re-adds members a Redis restart lost.
_REFRESH = (
    _PRUNE
    + """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
return #stale
"""
)


class RedisRoomStore:
    kind = "redis"

    def __init__(
        self, url: str, *, prefix: str, ttl_seconds: float, timeout_seconds: float = 1.0
    ) -> None:
        self._prefix = f"{prefix}room:"
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._timeout = timeout_seconds
        # One immediate retry (a pooled connection Redis closed while idle), then fail fast:
        # a connection attempt must not wait out redis-py's default back-off.
        self._client = fail_fast_redis(
            url, timeout_seconds=timeout_seconds, retries=1, client_name="healthinfo-rooms"
        )
        self._join = self._client.register_script(_JOIN)
        self._update = self._client.register_script(_UPDATE)
        self._leave = self._client.register_script(_LEAVE)
        self._members = self._client.register_script(_MEMBERS)
        self._refresh = self._client.register_script(_REFRESH)

    def _keys(self, kit_id: str) -> list[str]:
        return [self._prefix + kit_id, self._prefix + kit_id + ":who"]

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout * 2):
                return await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise RoomStoreUnavailable(type(exc).__name__) from exc

    async def join(
        self, kit_id: str, member: Member, *, limit: int, per_user_limit: int
    ) -> Admission:
        admission, _pruned = await self._call(
            self._join,
            self._keys(kit_id),
            [
                member.connection_id,
                member.to_json(),
                self._ttl_ms,
                limit,
                member.user_id,
                per_user_limit,
            ],
        )
        return Admission(int(admission))

    async def update(self, kit_id: str, member: Member) -> None:
        await self._call(self._update, self._keys(kit_id), [member.connection_id, member.to_json()])

    async def leave(self, kit_id: str, connection_id: str) -> None:
        await self._call(self._leave, self._keys(kit_id), [connection_id])

    async def members(self, kit_id: str) -> list[Member]:
        flat = await self._call(self._members, self._keys(kit_id), [])
        found = []
        for i in range(0, len(flat) - 1, 2):
            raw_id = flat[i]
            connection_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            member = Member.from_json(connection_id, flat[i + 1])
            if member is not None:
                found.append(member)
        return found

    async def refresh(self, rooms: Mapping[str, Sequence[Member]]) -> set[str]:
        pruned = set()
        for kit_id, members in rooms.items():
            args: list[Any] = [self._ttl_ms]
            for member in members:
                args += [member.connection_id, member.to_json()]
            if await self._call(self._refresh, self._keys(kit_id), args):
                pruned.add(kit_id)
        return pruned

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except (RedisError, OSError):
            return
