"""Rate limits per user and per client address, by class of route.

Sliding-window counters, as the ``limits`` library computes them (two windows a limit: the
current one and the previous one, weighted by how much of it is left).

**Local counting, shared through Redis in the background** (the default): a request is decided
in this process, from its own exact count of the key's hits plus what the other processes had
counted at the last reconciliation; every ``sync_seconds`` one Lua script call adds this
process's new hits to the shared window in Redis and reads back everyone's total. No Redis
call is on the request path. The price is a bounded overshoot, documented with its proof in
docs/security.md ("Rate limits across processes"): with N processes reconciling every T, a
client gets at most ``(N − 1) × min(L, a)`` requests past a limit of L per window, where ``a``
is what one process admits for that key in one interval T (plus the script's round trip).
One process alone is exact.

``sync_seconds=0`` keeps the exact shared counting: one script call a request (the request's
address and user limits counted and reported together, ``limits``' own
``acquire_sliding_window.lua`` run over a list), for deployments that prefer a round trip
to any overshoot.

Without Redis, or while Redis fails, each process counts alone: a cache-like dependency must
never take the API down. A circuit breaker (the cache's) stops calling a Redis that keeps
failing, so a dead Redis costs nothing per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
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
        self._add_all = self._redis.register_script(_ADD_ALL)

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

    async def add(self, counts: Sequence[Sync]) -> list[tuple[int, int]]:
        """Add each key's hits to its two clock-aligned windows; everyone's counts back."""
        keys: list[str] = []
        args: list[int] = []
        for sync in counts:
            base = f"{self._prefix}{sync.key}:"
            keys += [f"{base}{sync.window - 1}", f"{base}{sync.window}"]
            args += [sync.ttl_ms, sync.previous_hits, sync.current_hits]
        async with asyncio.timeout(self._timeout):
            rows = await self._add_all(keys=keys, args=args)
        return [(int(previous), int(current)) for previous, current in rows]

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


# KEYS: each limit's previous and current window (clock-aligned: the window's number is in
# the key, so every process names the same windows). ARGV: per limit, how long a window key
# must live (ms, two windows) and the hits to add to the previous and the current window.
# Returns per limit everyone's count in the previous and the current window.
_ADD_ALL = """
local results = {}
for i = 1, #KEYS / 2 do
  local ttl = tonumber(ARGV[3 * i - 2])
  local counts = {}
  for j = 1, 2 do
    local key, hits = KEYS[2 * i - 2 + j], tonumber(ARGV[3 * i - 2 + j])
    if hits > 0 then
      counts[j] = redis.call('incrby', key, hits)
      redis.call('pexpire', key, ttl)
    else
      counts[j] = tonumber(redis.call('get', key)) or 0
    end
  end
  results[i] = counts
end
return results
"""
SYNC_BATCH = 200  # limits per script call: a reconciliation of many keys stays short


@dataclass(frozen=True, slots=True)
class Sync:
    """One key's hits to add to the shared windows ``window - 1`` and ``window``."""

    key: str
    window: int
    ttl_ms: int
    previous_hits: int
    current_hits: int


class LocalCount:
    """One key's sliding window in this process, and the other processes' share of it.

    Windows are aligned to the clock (number ``floor(now / expiry)``), so every process and
    Redis name the same windows without asking. ``others_*`` is what Redis counted in each
    window beyond this process's own hits at the last reconciliation; it is trusted for one
    window at most, then this process counts alone (Redis unreachable for that long).
    """

    __slots__ = (
        "current",
        "expiry",
        "limit",
        "others_current",
        "others_previous",
        "pending_current",
        "pending_previous",
        "previous",
        "synced_at",
        "touched",
        "window",
    )

    def __init__(self, limit: int, expiry: float) -> None:
        self.limit = limit
        self.expiry = expiry
        self.window = 0
        self.previous = self.current = 0  # this process's hits per window
        self.pending_previous = self.pending_current = 0  # of those, not yet added to Redis
        self.others_previous = self.others_current = 0  # everyone else's, as last seen
        self.synced_at = -math.inf
        self.touched = True  # asked since the last reconciliation

    def _roll(self, now: float) -> None:
        window = int(now // self.expiry)
        if window == self.window:
            return
        if window == self.window + 1:
            self.previous, self.pending_previous = self.current, self.pending_current
            self.others_previous = self.others_current
        else:  # two windows or more went by: nothing left of them
            self.previous = self.pending_previous = self.others_previous = 0
        self.current = self.pending_current = self.others_current = 0
        self.window = window

    def count(self, now: float) -> float:
        """Everyone's weighted count at ``now`` as this process knows it."""
        self._roll(now)
        previous, current = self.previous, self.current
        if now - self.synced_at <= self.expiry:
            previous += self.others_previous
            current += self.others_current
        weight = 1 - (now - self.window * self.expiry) / self.expiry
        return previous * weight + current

    def hit(self, now: float) -> Decision:
        """Admit and count one hit if the window has room; report the window either way."""
        self.touched = True
        allowed = math.floor(self.count(now)) + 1 <= self.limit
        if allowed:
            self.current += 1
            self.pending_current += 1
        remaining = max(0, self.limit - math.floor(self.count(now)))
        reset_after = max(1, math.ceil((self.window + 1) * self.expiry - now))
        return Decision(allowed, self.limit, remaining, reset_after)

    def take_pending(self, key: str, now: float) -> Sync:
        """The hits to add to Redis now (they count as sent; ``give_back`` on a failure)."""
        self._roll(now)
        sync = Sync(
            key,
            self.window,
            int(self.expiry * 2000),
            self.pending_previous,
            self.pending_current,
        )
        self.pending_previous = self.pending_current = 0
        self.touched = False
        return sync

    def give_back(self, sync: Sync) -> None:
        if sync.window == self.window:
            self.pending_previous += sync.previous_hits
            self.pending_current += sync.current_hits
        elif sync.window == self.window - 1:
            self.pending_previous += sync.current_hits
        self.touched = True

    def reconciled(self, sync: Sync, previous: int, current: int, now: float) -> None:
        """Redis counted ``previous`` and ``current``: everyone's hits, and of this process's
        those sent so far (not the ones admitted while the script ran: still pending)."""
        self._roll(now)
        sent_previous = self.previous - self.pending_previous
        sent_current = self.current - self.pending_current
        if sync.window == self.window:
            self.others_previous = max(0, previous - sent_previous)
            self.others_current = max(0, current - sent_current)
        elif sync.window == self.window - 1:  # a window began while the script ran
            self.others_previous = max(0, current - sent_previous)
            self.others_current = 0
        self.synced_at = now

    def idle(self, now: float) -> bool:
        """Nothing to add and nothing of it left in any window: the key can be forgotten."""
        self._roll(now)
        pending = self.pending_previous or self.pending_current
        return not pending and not self.touched and not self.previous and not self.current


class LocalWindows:
    """Decides in process; ``reconcile`` shares the counts through Redis (or does nothing)."""

    def __init__(self, redis: RedisWindows | None, *, clock: Callable[[], float]) -> None:
        self._redis = redis
        self._clock = clock
        self._counts: dict[str, LocalCount] = {}

    def hit(self, checks: Sequence[Check]) -> list[Decision]:
        now = self._clock()
        decisions = []
        for check in checks:
            key = check.item.key_for(*check.identifiers)
            count = self._counts.get(key)
            if count is None:
                count = LocalCount(check.item.amount, check.item.get_expiry())
                self._counts[key] = count
            decision = count.hit(now)
            decisions.append(decision)
            if not decision.allowed:
                break
        return decisions

    async def reconcile(self) -> int:
        """Add every key's new hits to Redis and learn the totals; returns the keys synced.

        On a Redis error the hits stay pending (added at the next success) and it raises.
        """
        if self._redis is None:
            return 0
        now = self._clock()
        for key in [key for key, count in self._counts.items() if count.idle(now)]:
            del self._counts[key]
        due = [
            (key, count) for key, count in self._counts.items() if count.touched or _pending(count)
        ]
        for start in range(0, len(due), SYNC_BATCH):
            batch = [
                (count, count.take_pending(key, now))
                for key, count in due[start : start + SYNC_BATCH]
            ]
            try:
                totals = await self._redis.add([sync for _, sync in batch])
            except BaseException:
                for count, sync in batch:
                    count.give_back(sync)
                raise
            synced_at = self._clock()
            for (count, sync), (previous, current) in zip(batch, totals, strict=True):
                count.reconciled(sync, previous, current, synced_at)
        return len(due)


def _pending(count: LocalCount) -> bool:
    return bool(count.pending_previous or count.pending_current)


class RateLimiter:
    """A Lifecycle: ``start`` runs the reconciliation with Redis (local counting mode)."""

    def __init__(
        self,
        limits: Limits,
        *,
        metrics: Metrics,
        redis_url: str | None = None,
        key_prefix: str = "healthinfo:",
        timeout_seconds: float = 0.05,
        breaker: CircuitBreaker | None = None,
        sync_seconds: float = 0.1,
        clock: Callable[[], float] = time.time,
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
        self._sync_seconds = sync_seconds
        # Wall-clock time: the windows are aligned to it, the same in every process.
        self._local = LocalWindows(self._redis, clock=clock) if sync_seconds > 0 else None
        self._reconciler: asyncio.Task[None] | None = None

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
        otherwise the tighter one is reported. In local counting mode this awaits nothing.
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
        if self._local is not None:
            decisions = self._local.hit(checks)
        else:
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
            self._redis_failed(exc)
            return await self._memory.hit(checks)
        self._breaker.record_success()
        return decisions

    def _redis_failed(self, exc: BaseException) -> None:
        self._breaker.record_failure()
        self._metrics.ratelimit_errors.inc()
        logger.warning("ratelimit.redis_error", extra={"kind": error_kind(exc)})

    async def reconcile(self) -> None:
        """Share this process's new hits and learn everyone's (local mode; else nothing).

        Best effort: while Redis fails, each process counts alone, and the hits it could not
        add are added at the next success.
        """
        if self._local is None or self._redis is None or not self._breaker.allow():
            return
        try:
            await self._local.reconcile()
        except Exception as exc:
            self._redis_failed(exc)
            return
        self._breaker.record_success()

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sync_seconds)
            await self.reconcile()

    async def start(self) -> None:
        if self._local is not None and self._redis is not None and self._reconciler is None:
            self._reconciler = asyncio.create_task(
                self._reconcile_forever(), name="ratelimit-reconcile"
            )

    async def stop(self) -> None:
        """A Lifecycle: the last hits are shared, then its Redis connections close."""
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
            self._reconciler = None
            await self.reconcile()
        if self._redis is not None:
            await self._redis.close()
