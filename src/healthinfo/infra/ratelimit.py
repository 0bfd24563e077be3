"""Rate limits per user and per client address, by class of route.

Sliding-window counters, as the ``limits`` library computes them (two keys a limit: the
current window and the previous one, weighted by how much of it is left). With Redis, every
instance shares the counts, and a request's limits (its address and, once verified, its user)
are checked, counted and reported by **one** Lua script: one round trip, where ``limits``
needs two a limit (hit, then window stats), four a request. Measured, those four round trips
were a quarter of a cached read's CPU (bench/RESULTS.md). ``limits`` has no call that takes
several limits at once, hence the script of our own; it is ``limits``' own
``acquire_sliding_window.lua`` run over a list.

Without Redis, or while Redis fails, ``limits``' in-process storage counts instead: a
cache-like dependency must never take the API down. A circuit breaker (the cache's) stops
calling a Redis that keeps failing, so a dead Redis costs nothing per request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from healthinfo.infra.metrics import Metrics
from healthinfo.infra.redis_client import fail_fast_redis
from healthinfo.infra.resilient_cache import CircuitBreaker, error_kind

logger = logging.getLogger(__name__)


class RouteClass(StrEnum):
    READ = "read"
    WRITE = "write"
    STREAM = "stream"
    FOCUS = "focus"  # WebSocket focus messages: per user only (presence, not data)


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


@dataclass(frozen=True, slots=True)
class Window:
    """One limit's sliding window right after a hit (or a refused one)."""

    allowed: bool
    previous_count: int
    previous_ttl_seconds: float
    current_count: int
    current_ttl_seconds: float

    def decision(self, item: RateLimitItem) -> Decision:
        """What ``limits``' ``get_window_stats`` reports, from the same numbers."""
        expiry = item.get_expiry()
        weighted = self.previous_count * self.previous_ttl_seconds / expiry + self.current_count
        remaining = max(0, item.amount - math.floor(weighted))
        resets = []
        if self.previous_count:
            resets.append(self.previous_ttl_seconds % (expiry / self.previous_count))
        if self.current_count:
            resets.append(self.current_ttl_seconds % expiry)
        reset_after = max(1, math.ceil(min(resets))) if resets else 1
        return Decision(self.allowed, item.amount, remaining, reset_after)


@dataclass(frozen=True, slots=True)
class Check:
    """One limit to count a request against: which one, and whose budget."""

    item: RateLimitItem
    kind: str  # "user" or "addr"
    route_class: RouteClass
    who: str

    @property
    def identifiers(self) -> tuple[str, str, str]:
        return (self.kind, self.route_class.value, self.who)


# KEYS: the previous and the current window key of each limit, in order.
# ARGV: each limit's amount and window length in milliseconds, in the same order.
# Counts one hit against each limit in turn and stops at the first that is full (that hit is
# not counted, as with separate calls). Returns, per limit checked: allowed (1/0), previous
# count, previous window's TTL (ms), current count, current window's TTL (ms).
_HIT_ALL = """
local results = {}
for i = 1, #KEYS / 2 do
  local previous, current = KEYS[2 * i - 1], KEYS[2 * i]
  local limit = tonumber(ARGV[2 * i - 1])
  local expiry = tonumber(ARGV[2 * i])
  local current_ttl = tonumber(redis.call('pttl', current))
  if current_ttl > 0 and current_ttl < expiry then
    redis.call('rename', current, previous)
    redis.call('set', current, 0, 'PX', current_ttl + expiry)
  end
  local previous_count = tonumber(redis.call('get', previous)) or 0
  local previous_ttl = math.max(tonumber(redis.call('pttl', previous)), 0)
  local current_count = tonumber(redis.call('get', current)) or 0
  current_ttl = math.max(tonumber(redis.call('pttl', current)), 0)
  local allowed = math.floor(previous_count * previous_ttl / expiry) + current_count + 1 <= limit
  if allowed then
    if redis.call('exists', current) == 1 then
      redis.call('incrby', current, 1)
    else
      redis.call('set', current, 1, 'PX', expiry * 2)
      current_ttl = expiry * 2
    end
    current_count = current_count + 1
  end
  results[i] = {allowed and 1 or 0, previous_count, previous_ttl, current_count, current_ttl}
  if not allowed then
    break
  end
end
return results
"""


class RedisWindows:
    """Every check of a request in one script call; short timeouts, no hidden retries."""

    def __init__(self, url: str, *, prefix: str, timeout_seconds: float) -> None:
        self._prefix = prefix
        self._timeout = timeout_seconds
        self._redis = fail_fast_redis(url, timeout_seconds=timeout_seconds)
        self._hit_all = self._redis.register_script(_HIT_ALL)

    async def hit(self, checks: Sequence[Check]) -> list[Decision]:
        keys: list[str] = []
        args: list[int] = []
        for check in checks:
            key = f"{self._prefix}{check.item.key_for(*check.identifiers)}"
            keys += [f"{key}:previous", f"{key}:current"]
            args += [check.item.amount, check.item.get_expiry() * 1000]
        async with asyncio.timeout(self._timeout):
            rows = await self._hit_all(keys=keys, args=args)
        return [
            Window(bool(allowed), int(p_count), p_ttl / 1000, int(c_count), c_ttl / 1000).decision(
                check.item
            )
            for check, (allowed, p_count, p_ttl, c_count, c_ttl) in zip(checks, rows, strict=False)
        ]

    async def close(self) -> None:
        await self._redis.aclose()


class MemoryWindows:
    """The same counting in this process, through ``limits``' in-memory storage."""

    def __init__(self) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    async def hit(self, checks: Sequence[Check]) -> list[Decision]:
        decisions = []
        for check in checks:
            allowed = await self._limiter.hit(check.item, *check.identifiers)
            stats = await self._limiter.get_window_stats(check.item, *check.identifiers)
            reset_after = max(1, math.ceil(stats.reset_time - time.time()))
            decisions.append(Decision(allowed, check.item.amount, stats.remaining, reset_after))
            if not allowed:
                break
        return decisions


class RateLimiter:
    def __init__(
        self,
        limits: Limits,
        *,
        metrics: Metrics,
        redis_url: str | None = None,
        key_prefix: str = "healthinfo:",
        timeout_seconds: float = 0.05,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._limits = limits
        self._metrics = metrics
        self._memory = MemoryWindows()
        self._redis = (
            None
            if redis_url is None
            else RedisWindows(
                redis_url, prefix=key_prefix + "ratelimit:", timeout_seconds=timeout_seconds
            )
        )
        self._breaker = breaker or CircuitBreaker(failure_threshold=5, cool_down_seconds=5.0)

    @property
    def state(self) -> str:
        """For readiness: ``ok`` (shared in Redis), ``degraded`` (Redis failing: counted per
        process meanwhile) or ``in-process`` (no Redis configured)."""
        if self._redis is None:
            return "in-process"
        return "ok" if self._breaker.state == "closed" else "degraded"

    async def check(
        self, route_class: RouteClass, *, user_id: str | None, address: str | None
    ) -> Decision:
        """Count this request against its address's and its user's limits, in that order.

        The first limit that is full refuses the request (later ones are not counted);
        otherwise the tighter one is reported.
        """
        checks = []
        if address is not None and route_class in self._limits.per_address:
            checks.append(
                Check(self._limits.per_address[route_class], "addr", route_class, address)
            )
        if user_id is not None and route_class in self._limits.per_user:
            checks.append(Check(self._limits.per_user[route_class], "user", route_class, user_id))
        if not checks:
            return Decision(True, 0, 0, 0)
        decisions = await self._count(checks)
        refused = [(c, d) for c, d in zip(checks, decisions, strict=False) if not d.allowed]
        for check, _ in refused:
            self._metrics.ratelimit_refused.labels(route_class.value, check.kind).inc()
        return min([d for _, d in refused] or decisions, key=lambda d: d.remaining)

    async def _count(self, checks: Sequence[Check]) -> list[Decision]:
        if self._redis is None or not self._breaker.allow():
            return await self._memory.hit(checks)
        try:
            decisions = await self._redis.hit(checks)
        except Exception as exc:
            self._breaker.record_failure()
            self._metrics.ratelimit_errors.inc()
            logger.warning("ratelimit.redis_error", extra={"kind": error_kind(exc)})
            return await self._memory.hit(checks)
        self._breaker.record_success()
        return decisions

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """A Lifecycle: its Redis connections close with the app."""
        if self._redis is not None:
            await self._redis.close()
