"""The rate limiter against real Redis, in both its modes (infra/ratelimit.py).

Exact mode (``sync_seconds=0``): a request's address and user limits in one Lua script; held
to the ``limits`` library's sliding window counter it replaces, one script call per request,
nothing counted past the first full limit, and an outage that costs neither requests nor,
once the breaker is open, time.

Local mode (the default): no Redis call per request; held to the overshoot bound that
docs/operations.md ("Rate limits across processes") states for N processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from healthinfo.infra.metrics import Metrics
from healthinfo.infra.ratelimit import Limits, RateLimiter, RouteClass
from healthinfo.infra.resilient_cache import CircuitBreaker
from tests.support.backends import REDIS_URL, delete_redis_keys
from tests.support.redis_server import PrivateRedis
from tests.support.server import free_port

READ = RouteClass.READ


def limits(*, user: str = "100/minute", address: str = "100/minute") -> Limits:
    return Limits.parse(
        dict.fromkeys(RouteClass, user),
        dict.fromkeys(RouteClass, address),
    )


@contextlib.asynccontextmanager
async def shared_redis_limiter(prefix: str, **per: str) -> AsyncIterator[RateLimiter]:
    """A limiter on the shared Redis, under this test's own key prefix."""
    limiter = RateLimiter(
        limits(**per), metrics=Metrics(), redis_url=REDIS_URL, key_prefix=prefix, sync_seconds=0
    )
    try:
        yield limiter
    finally:
        await limiter.stop()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = f"healthinfo-test-rl-{uuid.uuid4().hex[:8]}:"
    yield value
    await delete_redis_keys(value)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


SCRIPTED = {"get", "pttl", "rename", "set", "exists", "incrby"}  # what the script runs inside


def command_calls(port: int) -> dict[str, int]:
    """Calls per command, by the server's own count (INFO commandstats)."""
    stats = redis.Redis(port=port).info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def test_a_request_costs_one_redis_round_trip_for_both_its_limits(
    private_redis: PrivateRedis,
) -> None:
    limiter = RateLimiter(limits(), metrics=Metrics(), redis_url=private_redis.url, sync_seconds=0)
    try:
        await limiter.check(READ, user_id="ann", address="10.0.0.1")  # loads the script
        before = command_calls(private_redis.port)
        for _ in range(10):
            await limiter.check(READ, user_id="ann", address="10.0.0.1")
        after = command_calls(private_redis.port)
    finally:
        await limiter.stop()
    measuring = {"info", "hello"}  # command_calls' own connection
    ran = {name: after[name] - before.get(name, 0) for name in after if name not in measuring}
    assert ran.pop("evalsha") == 10
    assert {name for name, calls in ran.items() if calls} <= SCRIPTED


async def test_counts_and_reports_as_the_limits_library_does(prefix: str) -> None:
    """The same hits through ``limits``' own Redis sliding window: the same answers."""
    item = parse("5/minute")
    storage = RedisStorage(
        "async+" + REDIS_URL, implementation="redispy", key_prefix=prefix + "reference"
    )
    reference = SlidingWindowCounterRateLimiter(storage)
    async with shared_redis_limiter(prefix, user="5/minute", address="1000/minute") as ours:
        for _ in range(7):
            decision = await ours.check(READ, user_id="ann", address=None)
            allowed = await reference.hit(item, "user", "read", "ann")
            stats = await reference.get_window_stats(item, "user", "read", "ann")
            assert (decision.allowed, decision.remaining) == (allowed, stats.remaining)
            assert decision.limit == 5
            assert 1 <= decision.reset_after <= 60


async def test_the_first_full_limit_refuses_and_later_limits_are_not_counted(
    prefix: str,
) -> None:
    async with shared_redis_limiter(prefix, user="10/minute", address="2/minute") as limiter:
        outcomes = [
            (await limiter.check(READ, user_id="ann", address="10.0.0.9")).allowed for _ in range(3)
        ]
        assert outcomes == [True, True, False]
        by_user_only = await limiter.check(READ, user_id="ann", address=None)
        assert by_user_only.remaining == 10 - 3  # two counted with the address, this one


async def test_the_tighter_limit_is_the_one_reported(prefix: str) -> None:
    async with shared_redis_limiter(prefix, user="3/minute", address="50/minute") as limiter:
        decision = await limiter.check(READ, user_id="ann", address="10.0.0.5")
        assert (decision.limit, decision.remaining) == (3, 2)


async def test_a_full_limit_allows_again_once_its_windows_have_passed(prefix: str) -> None:
    async with shared_redis_limiter(prefix, user="2/second") as limiter:
        outcomes = [(await limiter.check(READ, user_id="ann", address=None)).allowed for _ in "abc"]
        assert outcomes == [True, True, False]
        await asyncio.sleep(2.1)  # the current window's key lives two windows
        assert (await limiter.check(READ, user_id="ann", address=None)).allowed


async def test_with_redis_unreachable_requests_are_counted_in_process_and_the_breaker_opens() -> (
    None
):
    metrics = Metrics()
    limiter = RateLimiter(
        limits(user="5/minute"),
        metrics=metrics,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        breaker=CircuitBreaker(failure_threshold=3, cool_down_seconds=60),
        sync_seconds=0,
    )
    try:
        decisions = [await limiter.check(READ, user_id="ann", address=None) for _ in range(7)]
    finally:
        await limiter.stop()
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    errors = metrics.registry.get_sample_value("healthinfo_ratelimit_errors_total")
    assert errors == 3, "the breaker should stop calling a dead Redis after 3 failures"


# -- local mode: decided in process, reconciled through Redis ------------------------------


class Clock:
    """A settable wall clock, mid-window of a minute limit unless moved."""

    def __init__(self) -> None:
        self.now = 1_000_000 * 60 + 30.0

    def __call__(self) -> float:
        return self.now


def local_limiter(prefix: str, clock: Clock, *, url: str = REDIS_URL, **per: str) -> RateLimiter:
    """One process's limiter; reconciled only when a test says so (``reconcile()``)."""
    return RateLimiter(
        limits(**per),
        metrics=Metrics(),
        redis_url=url,
        key_prefix=prefix,
        sync_seconds=3600,
        clock=clock,
        timeout_seconds=5,  # a loaded machine must not turn a reconciliation into an outage
    )


async def allowed(limiter: RateLimiter, times: int = 1) -> int:
    hits = [await limiter.check(READ, user_id="ann", address=None) for _ in range(times)]
    return sum(decision.allowed for decision in hits)


async def test_local_counting_calls_redis_only_to_reconcile(private_redis: PrivateRedis) -> None:
    limiter = local_limiter("p:", Clock(), url=private_redis.url)
    try:
        await limiter.check(READ, user_id="ann", address="10.0.0.1")
        await limiter.reconcile()  # loads the script
        before = command_calls(private_redis.port)
        for _ in range(10):
            await limiter.check(READ, user_id="ann", address="10.0.0.1")
        during = command_calls(private_redis.port)
        await limiter.reconcile()
        after = command_calls(private_redis.port)
    finally:
        await limiter.stop()
    measuring = {"info", "hello"}  # command_calls' own connection
    on_requests = {n: during[n] - before.get(n, 0) for n in during if n not in measuring}
    assert not any(on_requests.values()), on_requests
    assert after["evalsha"] - during["evalsha"] == 1, "one script call shares both keys"


async def test_one_process_admits_exactly_the_limit(prefix: str) -> None:
    limiter = local_limiter(prefix, Clock(), user="10/minute")
    try:
        admitted = await allowed(limiter, 4)
        await limiter.reconcile()
        admitted += await allowed(limiter, 4)
        await limiter.reconcile()
        admitted += await allowed(limiter, 7)
    finally:
        await limiter.stop()
    assert admitted == 10


async def test_a_process_counts_the_hits_others_shared_at_its_reconciliation(prefix: str) -> None:
    clock = Clock()
    first = local_limiter(prefix, clock, user="10/minute")
    second = local_limiter(prefix, clock, user="10/minute")
    try:
        assert await allowed(second) == 1  # the key is new to it: decided alone
        assert await allowed(first, 8) == 8
        await first.reconcile()
        await second.reconcile()
        assert await allowed(second, 5) == 1
    finally:
        await first.stop()
        await second.stop()


@pytest.mark.parametrize("between", [1, 3, 7])
async def test_processes_exceed_a_limit_by_at_most_what_the_others_admit_between_reconciliations(
    prefix: str, between: int
) -> None:
    """The documented bound L + (N − 1) × min(L, a), with N = 3 processes taking turns and
    each reconciling after every ``between`` requests it admitted (a = between)."""
    clock = Clock()
    limit = 20
    processes = [local_limiter(prefix, clock, user=f"{limit}/minute") for _ in range(3)]
    since_sync = [0] * len(processes)
    admitted = 0
    try:
        for turn in range(10 * limit):
            index = turn % len(processes)
            if await allowed(processes[index]):
                admitted += 1
                since_sync[index] += 1
            if since_sync[index] >= between:
                await processes[index].reconcile()
                since_sync[index] = 0
            clock.now += 0.01  # the whole run stays inside one window
    finally:
        for process in processes:
            await process.stop()
    assert limit <= admitted <= limit + (len(processes) - 1) * between


async def test_a_full_local_limit_allows_again_once_its_windows_have_passed(prefix: str) -> None:
    clock = Clock()
    limiter = local_limiter(prefix, clock, user="2/second")
    try:
        assert await allowed(limiter, 3) == 2
        clock.now += 2.0  # the current window and the one after it
        assert await allowed(limiter) == 1
    finally:
        await limiter.stop()


async def test_local_counting_goes_on_while_redis_is_unreachable() -> None:
    metrics = Metrics()
    limiter = RateLimiter(
        limits(user="5/minute"),
        metrics=metrics,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        sync_seconds=3600,
        clock=Clock(),
    )
    try:
        decisions = [await limiter.check(READ, user_id="ann", address=None) for _ in range(7)]
        await limiter.reconcile()
    finally:
        await limiter.stop()
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert metrics.registry.get_sample_value("healthinfo_ratelimit_errors_total") == 1
