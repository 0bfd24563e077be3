"""When to try a failed delivery again: exponential back-off with jitter, from the attempt count.

An in-process retry loop (stamina's ``retry``) keeps its state in memory, so a crash would forget
it and a restart would hammer the lab. The relay instead computes the delay from the attempt
count stored in the row and persists ``next_attempt_at``; stamina is used where in-memory state
is right (re-trying a database write for a moment, see ``relay``). The parameters follow
stamina's: an initial wait, doubling (``multiplier``) up to a cap, with jitter so that the
events failed by one outage do not come back in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """``delay(n)`` after the n-th failed attempt is ``min(maximum, initial * multiplier**(n-1))``
    minus up to ``jitter`` of it, at random: with the defaults the first retry comes within
    0.5–1 s, then 1–2 s, 2–4 s, … up to 30–60 s; after ``give_up_after`` seconds since the first
    attempt, the event is dead-lettered."""

    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5
    give_up_after: float = 86_400.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError("need 0 < initial <= maximum and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def ceiling(self, failures: int) -> float:
        """The delay before jitter after ``failures`` failed attempts (1-based)."""
        if failures < 1:
            raise ValueError("failures counts from 1")
        try:
            return min(self.maximum, self.initial * self.multiplier ** (failures - 1))
        except OverflowError:
            return self.maximum

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after ``failures`` failed attempts: the ceiling, less random jitter."""
        return self.ceiling(failures) * (1.0 - self.jitter * rng.random())

    def next_attempt(
        self, *, failures: int, now: datetime, first_attempt: datetime, rng: random.Random
    ) -> datetime | None:
        """When to try again, or None to give up (the retry period since the first try is over).

        The last retry is moved to the deadline itself rather than skipped, so an event is
        retried for the whole period.
        """
        deadline = first_attempt + timedelta(seconds=self.give_up_after)
        if now >= deadline:
            return None
        return min(now + timedelta(seconds=self.delay(failures, rng)), deadline)
