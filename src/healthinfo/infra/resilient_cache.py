"""A cache that can fail without the service noticing: timeouts, a breaker, counted errors.

Every operation is bounded by a timeout; any error (down, slow, full, garbage) becomes a miss
or a skipped write and is counted by kind. After ``failure_threshold`` consecutive failures
the breaker opens: no cache calls for ``cool_down_seconds``, then one probe decides whether
to close it again. A dead Redis therefore costs nothing per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.exceptions

from healthinfo.infra.cache import Cache, CacheCorrupt, CacheEntry
from healthinfo.infra.metrics import Metrics

T = TypeVar("T")
logger = logging.getLogger(__name__)


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | redis.exceptions.TimeoutError):
        return "timeout"
    if isinstance(exc, redis.exceptions.ConnectionError | ConnectionError | OSError):
        return "connection"
    if isinstance(exc, CacheCorrupt):
        return "garbage"
    if isinstance(exc, redis.exceptions.ResponseError) and "OOM" in str(exc):
        return "full"
    return "other"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int,
        cool_down_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._cool_down = cool_down_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._cool_down_over() else "open"

    def allow(self) -> bool:
        """Closed: yes. Open: no, until the cool-down is over; then one probe at a time."""
        if self._opened_at is None:
            return True
        if not self._cool_down_over() or self._probing:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._failures >= self._threshold or self._opened_at is not None:
            self._opened_at = self._clock()

    def _cool_down_over(self) -> bool:
        return self._opened_at is not None and self._clock() - self._opened_at >= self._cool_down


class ResilientCache:
    def __init__(
        self,
        cache: Cache,
        *,
        metrics: Metrics,
        timeout_seconds: float,
        ttl_seconds: int,
        breaker: CircuitBreaker,
    ) -> None:
        self.inner = cache
        self._metrics = metrics
        self._timeout = timeout_seconds
        self._ttl = ttl_seconds
        self.breaker = breaker

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def healthy(self) -> bool:
        return self.breaker.state == "closed"

    async def get(self, key: str) -> CacheEntry | None:
        return await self._call("get", lambda: self.inner.get(key), None)

    async def put_if_newer(self, key: str, entry: CacheEntry) -> bool:
        return await self._call(
            "put", lambda: self.inner.put_if_newer(key, entry, self._ttl), False
        )

    async def delete(self, key: str) -> bool:
        """True when the delete reached the cache."""
        return await self._call("delete", lambda: _true_after(self.inner.delete(key)), False)

    async def probe(self) -> bool:
        """For readiness: ping the cache now, regardless of the breaker."""
        try:
            await asyncio.wait_for(self.inner.ping(), self._timeout)
        except Exception as exc:
            self._metrics.cache_errors.labels(error_kind(exc)).inc()
            return False
        return True

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        if not self.breaker.allow():
            self._metrics.cache_skipped.labels(operation).inc()
            return fallback
        try:
            result = await asyncio.wait_for(call(), self._timeout)
        except Exception as exc:
            self.breaker.record_failure()
            self._metrics.cache_errors.labels(error_kind(exc)).inc()
            logger.warning("cache.error", extra={"operation": operation, "kind": error_kind(exc)})
            return fallback
        self.breaker.record_success()
        return result


async def _true_after(awaitable: Awaitable[None]) -> bool:
    await awaitable
    return True
