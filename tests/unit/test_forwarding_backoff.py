"""Back-off from the stored attempt count: doubling to the cap, jitter within bounds, the
retry period ends in a dead letter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthinfo.forwarding.backoff import BackoffPolicy

DEFAULT = BackoffPolicy()
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_the_ceiling_doubles_from_the_initial_wait_to_the_cap() -> None:
    ceilings = [DEFAULT.ceiling(n) for n in range(1, 10)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_a_huge_attempt_count_stays_at_the_cap() -> None:
    assert DEFAULT.ceiling(100_000) == 60


@given(failures=st.integers(1, 5000), seed=st.integers(0, 2**32))
def test_the_delay_stays_within_the_jitter_band(failures: int, seed: int) -> None:
    delay = DEFAULT.delay(failures, random.Random(seed))
    ceiling = DEFAULT.ceiling(failures)
    assert ceiling * (1 - DEFAULT.jitter) <= delay <= ceiling


def test_the_first_retry_comes_within_a_second_by_default() -> None:
    rng = random.Random(7)
    delays = [DEFAULT.delay(1, rng) for _ in range(1000)]
    assert max(delays) <= 1.0
    assert min(delays) >= 0.5
    assert max(delays) - min(delays) > 0.3  # jittered, not one value for everyone


def test_without_jitter_the_delay_is_the_ceiling() -> None:
    policy = BackoffPolicy(initial=0.01, maximum=0.2, jitter=0)
    delays = [policy.delay(n, random.Random()) for n in range(1, 8)]
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.2, 0.2])


def test_next_attempt_is_now_plus_the_delay() -> None:
    policy = BackoffPolicy(jitter=0)
    retry_at = policy.next_attempt(failures=3, now=NOW, first_attempt=NOW, rng=random.Random())
    assert retry_at == NOW + timedelta(seconds=4)


def test_the_last_retry_is_moved_to_the_end_of_the_retry_period() -> None:
    first = NOW - timedelta(hours=24) + timedelta(seconds=10)
    retry_at = DEFAULT.next_attempt(failures=500, now=NOW, first_attempt=first, rng=random.Random())
    assert retry_at == first + timedelta(hours=24)


def test_after_the_retry_period_there_is_no_next_attempt() -> None:
    first = NOW - timedelta(hours=24)
    assert (
        DEFAULT.next_attempt(failures=9, now=NOW, first_attempt=first, rng=random.Random()) is None
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"initial": 5, "maximum": 1}, {"multiplier": 0.5}, {"jitter": 1.5}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"initial|jitter"):
        BackoffPolicy(**kwargs)


def test_failures_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        DEFAULT.ceiling(0)
