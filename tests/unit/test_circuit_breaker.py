"""The cache circuit breaker: open after repeated failures, probe after the cool-down."""

from __future__ import annotations

from healthinfo.infra.resilient_cache import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, cool_down_seconds=5, clock=clock)


def test_closed_breaker_allows_calls() -> None:
    assert breaker(FakeClock()).allow()


def test_opens_after_threshold_consecutive_failures() -> None:
    b = breaker(FakeClock())
    for _ in range(3):
        b.record_failure()
    assert b.state == "open"
    assert not b.allow()


def test_a_success_resets_the_failure_count() -> None:
    b = breaker(FakeClock())
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state == "closed"


def test_after_cool_down_exactly_one_probe_is_allowed() -> None:
    clock = FakeClock()
    b = breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.now = 5.0
    assert b.state == "half-open"
    assert b.allow()
    assert not b.allow()


def test_a_failed_probe_reopens_for_another_cool_down() -> None:
    clock = FakeClock()
    b = breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.now = 5.0
    b.allow()
    b.record_failure()
    assert not b.allow()
    clock.now = 9.9
    assert not b.allow()
    clock.now = 10.0
    assert b.allow()


def test_a_successful_probe_closes_the_breaker() -> None:
    clock = FakeClock()
    b = breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.now = 5.0
    b.allow()
    b.record_success()
    assert b.state == "closed"
    assert b.allow()
