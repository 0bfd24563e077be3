"""Choose the cache from settings: Redis when configured, an in-process LRU otherwise."""

from __future__ import annotations

from healthinfo.config import Settings
from healthinfo.infra.cache import Cache, MemoryCache, RedisCache
from healthinfo.infra.metrics import Metrics
from healthinfo.infra.resilient_cache import CircuitBreaker, ResilientCache


def build_cache(settings: Settings, metrics: Metrics) -> ResilientCache | None:
    if not settings.cache_enabled.anywhere:
        return None
    inner: Cache = (
        RedisCache(
            settings.redis_url,
            timeout_seconds=settings.cache_timeout_seconds,
            prefix=settings.redis_key_prefix,
        )
        if settings.redis_url
        else MemoryCache(max_entries=settings.cache_max_entries)
    )
    return ResilientCache(
        inner,
        metrics=metrics,
        timeout_seconds=settings.cache_timeout_seconds,
        ttl_seconds=settings.cache_ttl_seconds,
        breaker=CircuitBreaker(
            failure_threshold=settings.cache_breaker_failures,
            cool_down_seconds=settings.cache_breaker_cooldown_seconds,
        ),
    )


class CacheCloser:
    """A Lifecycle that closes the cache's connections on shutdown."""

    def __init__(self, cache: ResilientCache) -> None:
        self._cache = cache

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self._cache.inner.close()
