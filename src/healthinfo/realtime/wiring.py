"""Build the room hub from settings: Redis bus and rooms when configured, in-process otherwise."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from healthinfo.config import Settings
from healthinfo.infra.bus import EventBus, InProcessBus, RedisBus
from healthinfo.infra.bus_sealing import SealedBus
from healthinfo.realtime.hub import RoomHub
from healthinfo.realtime.rooms import InMemoryRoomStore, RedisRoomStore, RoomStore


def build_hub(settings: Settings, registry: CollectorRegistry | None = None) -> RoomHub:
    bus: EventBus
    rooms: RoomStore
    if settings.redis_url:
        redis_bus = RedisBus(
            settings.redis_url,
            prefix=settings.redis_key_prefix,
            timeout_seconds=settings.bus_timeout_seconds,
        )
        # Sealed: change events carry answers, and Redis is no place to read them in clear.
        bus = SealedBus(redis_bus, settings.keyring(), namespace=settings.redis_key_prefix)
        rooms = RedisRoomStore(
            settings.redis_url,
            prefix=settings.redis_key_prefix,
            ttl_seconds=settings.realtime_presence_ttl_seconds,
            timeout_seconds=settings.bus_timeout_seconds,
        )
    else:
        bus, rooms = InProcessBus(), InMemoryRoomStore()
    return RoomHub(
        bus=bus,
        rooms=rooms,
        room_limit=settings.room_limit,
        user_limit=settings.room_user_limit,
        retry_after_seconds=max(1, -(-settings.realtime_retry_ms // 1000)),
        queue_size=settings.realtime_queue_size,
        presence_ttl_seconds=settings.realtime_presence_ttl_seconds,
        registry=registry,
    )
