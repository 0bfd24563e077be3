"""Rate limits per user and per client address, by class of route, with the ``limits`` library.

Redis-backed when Redis is configured, so all instances share the counts; when Redis fails,
the call falls back to an in-process counter rather than failing the request (a cache-like
dependency must never take the API down). Sliding-window counters: smooth, two keys a limit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from healthinfo.infra.metrics import Metrics

logger = logging.getLogger(__name__)


class RouteClass(StrEnum):
    READ = "read"
    WRITE = "write"
    STREAM = "stream"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int


@dataclass(frozen=True, slots=True)
class Limits:
    """Per class: (per user, per client address)."""

    per_user: dict[RouteClass, RateLimitItem]
    per_address: dict[RouteClass, RateLimitItem]

    @classmethod
    def parse(cls, per_user: dict[RouteClass, str], per_address: dict[RouteClass, str]) -> Limits:
        return cls(
            {k: parse(v) for k, v in per_user.items()},
            {k: parse(v) for k, v in per_address.items()},
        )


class RateLimiter:
    def __init__(
        self,
        limits: Limits,
        *,
        metrics: Metrics,
        redis_url: str | None = None,
        key_prefix: str = "healthinfo:",
        timeout_seconds: float = 0.05,
    ) -> None:
        self._limits = limits
        self._metrics = metrics
        self._fallback = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._primary = self._fallback
        self._storage: Storage | None = None
        if redis_url:
            self._storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix=key_prefix + "ratelimit",
                wrap_exceptions=True,
                socket_timeout=timeout_seconds,
                socket_connect_timeout=timeout_seconds,
            )
            self._primary = SlidingWindowCounterRateLimiter(self._storage)

    async def check(
        self, route_class: RouteClass, *, user_id: str | None, address: str | None
    ) -> Decision:
        """Count this request against the user's and the address's limits; the tighter decides."""
        decisions = []
        if user_id is not None:
            decisions.append(
                await self._hit(self._limits.per_user[route_class], "user", user_id, route_class)
            )
        if address is not None:
            decisions.append(
                await self._hit(self._limits.per_address[route_class], "addr", address, route_class)
            )
        if not decisions:
            return Decision(True, 0, 0, 0)
        refused = [d for d in decisions if not d.allowed]
        return min(refused or decisions, key=lambda d: d.remaining)

    async def _hit(
        self, item: RateLimitItem, kind: str, who: str, route_class: RouteClass
    ) -> Decision:
        identifiers = (kind, route_class.value, who)
        try:
            allowed = await self._primary.hit(item, *identifiers)
            stats = await self._primary.get_window_stats(item, *identifiers)
        except Exception:
            self._metrics.ratelimit_errors.inc()
            allowed = await self._fallback.hit(item, *identifiers)
            stats = await self._fallback.get_window_stats(item, *identifiers)
        if not allowed:
            self._metrics.ratelimit_refused.labels(route_class.value, kind).inc()
        reset_after = max(1, int(stats.reset_time - time.time() + 0.999))
        return Decision(allowed, item.amount, max(0, stats.remaining), reset_after)

    async def close(self) -> None:
        return None
