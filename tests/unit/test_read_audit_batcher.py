"""The read-audit batcher: what triggers a batch, what a stop writes, what a failure keeps.

The batch writer here records what it is given (the database side, the chained multi-row
append, is tested on both backends in tests/integration/test_read_audit_batches.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from healthinfo.audit.read_batches import ReadAuditBatcher, ReadBatchMetrics
from healthinfo.db.models import AuditEvent


def read_event() -> AuditEvent:
    return AuditEvent(
        event_id=str(uuid.uuid4()),
        at=datetime.now(UTC),
        kit_id="KIT-1",
        action="health-information.read",
        channel="rest",
        changed=[],
        outcome="ok",
    )


class RecordingWriter:
    """Keeps each batch it commits; fails the first ``failures`` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.calls = 0
        self._failures = failures

    async def __call__(self, events: Sequence[AuditEvent]) -> None:
        self.calls += 1
        if self.calls <= self._failures:
            raise ConnectionError("database went away")
        self.batches.append([event.event_id for event in events])

    @property
    def written(self) -> list[str]:
        return [event_id for batch in self.batches for event_id in batch]


async def until(condition: object, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def sample(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    return 0.0 if value is None else value


async def started(
    writer: RecordingWriter,
    registry: CollectorRegistry,
    *,
    batch_ms: int = 10_000,
    batch_size: int = 100,
    max_pending: int = 1000,
) -> ReadAuditBatcher:
    batcher = ReadAuditBatcher(
        writer,
        batch_ms=batch_ms,
        batch_size=batch_size,
        max_pending=max_pending,
        metrics=ReadBatchMetrics(registry),
    )
    await batcher.start()
    return batcher


@pytest.fixture
def writer() -> RecordingWriter:
    return RecordingWriter()


async def test_a_full_batch_is_written_at_once_without_waiting_for_the_window(
    writer: RecordingWriter, registry: CollectorRegistry
) -> None:
    batcher = await started(writer, registry, batch_ms=10_000, batch_size=3)
    events = [read_event() for _ in range(3)]
    assert all(batcher.offer(event) for event in events)
    await until(lambda: writer.batches, seconds=1.0)
    assert writer.batches == [[event.event_id for event in events]]
    await batcher.stop()


async def test_a_lone_event_is_written_after_the_window(
    writer: RecordingWriter, registry: CollectorRegistry
) -> None:
    batcher = await started(writer, registry, batch_ms=50, batch_size=100)
    offered = time.monotonic()
    batcher.offer(read_event())
    await asyncio.sleep(0.02)
    assert writer.batches == []  # not before the window
    await until(lambda: writer.batches, seconds=1.0)
    assert time.monotonic() - offered >= 0.05
    await batcher.stop()


async def test_events_arriving_within_one_window_share_one_batch(
    writer: RecordingWriter, registry: CollectorRegistry
) -> None:
    batcher = await started(writer, registry, batch_ms=100, batch_size=100)
    for _ in range(5):
        batcher.offer(read_event())
        await asyncio.sleep(0.005)
    await until(lambda: writer.batches, seconds=1.0)
    assert [len(batch) for batch in writer.batches] == [5]
    assert sample(registry, "healthinfo_audit_read_batch_events_count") == 1
    assert sample(registry, "healthinfo_audit_read_batch_events_sum") == 5
    await batcher.stop()


async def test_stop_writes_everything_still_queued(
    writer: RecordingWriter, registry: CollectorRegistry
) -> None:
    batcher = await started(writer, registry, batch_ms=10_000, batch_size=4)
    events = [read_event() for _ in range(10)]
    for event in events:
        batcher.offer(event)
    await batcher.stop()
    assert writer.written == [event.event_id for event in events]
    assert sample(registry, "healthinfo_audit_read_queued_events") == 0
    assert sample(registry, "healthinfo_audit_read_events_written_total") == 10


async def test_a_failed_batch_is_retried_in_order_and_nothing_is_lost(
    registry: CollectorRegistry,
) -> None:
    writer = RecordingWriter(failures=2)
    batcher = await started(writer, registry, batch_ms=1, batch_size=100)
    events = [read_event() for _ in range(3)]
    for event in events:
        batcher.offer(event)
    await until(lambda: writer.batches, seconds=3.0)
    await batcher.stop()
    assert writer.written == [event.event_id for event in events]
    assert sample(registry, "healthinfo_audit_read_batch_failures_total") == 2


async def test_a_full_queue_refuses_so_that_the_read_audits_synchronously(
    writer: RecordingWriter, registry: CollectorRegistry
) -> None:
    batcher = await started(writer, registry, batch_ms=10_000, batch_size=2, max_pending=2)
    assert batcher.offer(read_event())
    # The size trigger starts writing; until that commits, both events count as pending.
    assert batcher.offer(read_event())
    assert not batcher.offer(read_event())
    assert sample(registry, "healthinfo_audit_read_sync_fallbacks_total") == 1
    await batcher.stop()


async def test_a_batcher_that_is_not_running_refuses(
    writer: RecordingWriter, registry: CollectorRegistry
) -> None:
    batcher = ReadAuditBatcher(
        writer, batch_ms=10, batch_size=10, max_pending=10, metrics=ReadBatchMetrics(registry)
    )
    assert not batcher.offer(read_event())
    await batcher.start()
    await batcher.stop()
    assert not batcher.offer(read_event())


async def test_flush_returns_once_everything_offered_before_it_is_written(
    writer: RecordingWriter, registry: CollectorRegistry
) -> None:
    batcher = await started(writer, registry, batch_ms=10_000, batch_size=100)
    events = [read_event() for _ in range(3)]
    for event in events:
        batcher.offer(event)
    assert await batcher.flush()
    assert writer.written == [event.event_id for event in events]
    await batcher.stop()


async def test_a_stop_while_the_database_fails_counts_the_events_it_gives_up(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("healthinfo.audit.read_batches.STOP_TIMEOUT_SECONDS", 0.3)
    writer = RecordingWriter(failures=10_000)
    batcher = await started(writer, registry, batch_ms=1, batch_size=100)
    batcher.offer(read_event())
    batcher.offer(read_event())
    await batcher.stop()
    assert writer.written == []
    assert sample(registry, "healthinfo_audit_read_events_lost_total") == 2


class RefusingWriter(RecordingWriter):
    """A database that is up but refuses any batch holding ``poison`` (say, a bad value)."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self._poison = poison

    async def __call__(self, events: Sequence[AuditEvent]) -> None:
        self.calls += 1
        if any(event.event_id == self._poison for event in events):
            raise ValueError("value too long for type character varying(64)")
        self.batches.append([event.event_id for event in events])


async def test_an_event_the_database_refuses_is_given_up_loudly_and_the_rest_are_written(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("healthinfo.audit.read_batches.RETRY_INITIAL_SECONDS", 0.001)
    events = [read_event() for _ in range(4)]
    writer = RefusingWriter(poison=events[1].event_id)
    batcher = await started(writer, registry, batch_ms=1, batch_size=100)
    for event in events:
        batcher.offer(event)
    await until(lambda: len(writer.written) == 3, seconds=5.0)
    await batcher.stop()
    assert writer.written == [events[0].event_id, events[2].event_id, events[3].event_id]
    assert sample(registry, "healthinfo_audit_read_events_lost_total") == 1
