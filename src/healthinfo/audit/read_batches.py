"""Read audit events written in batches (group commit), off the read's request path.

A read that wrote its own audit event was a write transaction: BEGIN, the access query, the
chained append and a durable COMMIT on every GET. Here the read only stamps its event and
queues it (no I/O); one background task writes whatever is queued in one transaction, its
events in one multi-row ``INSERT`` (``audit.chain.append_many``), when ``batch_size`` events
are waiting or the oldest has waited ``batch_ms``, whichever comes first.

The price is a loss window (docs/security.md, "Reads and the loss window"): a crash (SIGKILL,
power) loses the read events queued or in flight, never more than ``max_pending``; a graceful
stop (lifespan exit, SIGTERM) writes them all first. Nothing is dropped silently otherwise:
when ``max_pending`` events are waiting, ``offer`` refuses and the read audits synchronously
(``audit.reads``), and a batch that fails to write stays queued, first in line, and is retried
with backoff (its links computed again on the head as it then is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from healthinfo.audit import chain
from healthinfo.audit.keys import AuditKeyring
from healthinfo.common.uow import (
    UnitOfWorkFactory,
    database_error_cause,
    is_database_unavailable,
)
from healthinfo.db.models import AuditEvent
from healthinfo.infra.metrics import LATENCY_BUCKETS

logger = logging.getLogger(__name__)

BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
RETRY_INITIAL_SECONDS = 0.05
RETRY_MAX_SECONDS = 5.0
ISOLATE_AFTER_REFUSALS = 5  # a batch refused this often (database up) is written one by one
ISOLATE_ATTEMPTS = 3
STOP_TIMEOUT_SECONDS = 10.0  # how long a graceful stop keeps retrying a failing database

BatchWriter = Callable[[Sequence[AuditEvent]], Awaitable[None]]


class ReadBatchMetrics:
    """What an operator watches: the queue, the batches, their latency, failures and loss."""

    def __init__(
        self, registry: CollectorRegistry | None, *, write_failures: Counter | None = None
    ) -> None:
        """``write_failures``: ``healthinfo_audit_write_failures_total``, which pages; an event
        given up at shutdown is counted there too."""
        r = registry if registry is not None else CollectorRegistry()
        self.write_failures = write_failures
        self.queued = Gauge(
            "healthinfo_audit_read_queued_events",
            "Read audit events waiting to be written (queued or in the batch being written).",
            registry=r,
        )
        self.batch_events = Histogram(
            "healthinfo_audit_read_batch_events",
            "Read audit events per written batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.flush_latency = Histogram(
            "healthinfo_audit_read_flush_duration_seconds",
            "Time to write one batch of read audit events (one transaction), retries excluded.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.written = Counter(
            "healthinfo_audit_read_events_written_total",
            "Read audit events written by batches.",
            registry=r,
        )
        self.failures = Counter(
            "healthinfo_audit_read_batch_failures_total",
            "Batch writes that failed (the batch stays queued and is retried).",
            registry=r,
        )
        self.overflows = Counter(
            "healthinfo_audit_read_sync_fallbacks_total",
            "Reads audited synchronously because max_pending events were already waiting.",
            registry=r,
        )
        self.lost = Counter(
            "healthinfo_audit_read_events_lost_total",
            "Read audit events given up (logged): at a shutdown while the database kept failing, "
            "or refused by a database that accepts the others.",
            registry=r,
        )


class ReadAuditBatcher:
    """Queue of read audit events and the task that writes them in batches."""

    def __init__(
        self,
        write: BatchWriter,
        *,
        batch_ms: int,
        batch_size: int,
        max_pending: int,
        metrics: ReadBatchMetrics | None = None,
    ) -> None:
        self._write = write
        self._window = batch_ms / 1000
        self._batch_size = batch_size
        self._max_pending = max(max_pending, batch_size)
        self._metrics = metrics or ReadBatchMetrics(None)
        self._pending: deque[tuple[float, AuditEvent]] = deque()  # (queued at, event)
        self._wake = asyncio.Event()  # an event arrived, a batch is full, a flush or a stop
        self._stop_requested = asyncio.Event()  # ends a retry's backoff early
        self._progress = asyncio.Event()  # set (and replaced) after each committed batch
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._flushing = False
        self._offered = 0  # events accepted so far (a flush waits for the count it saw)
        self._written = 0
        self._kits: Tally[str] = Tally()  # pending events per kit (``holds``)

    @property
    def pending(self) -> int:
        """Events accepted and not yet committed (the batch being written included)."""
        return len(self._pending)

    def holds(self, kit_id: str) -> bool:
        """Whether an event of this kit is queued or being written (a write to the kit settles
        it first, so the kit's chain keeps the order things happened: ``audit.reads``)."""
        return self._kits[kit_id] > 0

    @property
    def accepting(self) -> bool:
        return self._task is not None and not self._stopping

    def offer(self, event: AuditEvent) -> bool:
        """Queue ``event`` without waiting; False when not running or ``max_pending`` are
        waiting, and then the caller must audit synchronously (never drop)."""
        if not self.accepting or self.pending >= self._max_pending:
            if self.accepting:
                self._metrics.overflows.inc()
            return False
        self._pending.append((time.monotonic(), event))
        self._kits[event.kit_id] += 1
        self._offered += 1
        self._metrics.queued.inc()
        if len(self._pending) == 1 or len(self._pending) >= self._batch_size:
            self._wake.set()
        return True

    async def flush(self, wait_seconds: float = 2.0) -> bool:
        """Wait (at most ``wait_seconds``) until every event offered before this call is committed;
        True when they are. The audit events API calls it, so that an auditor does not miss a
        read this process has already answered; a failing database makes it give up, not hang.
        """
        target = self._offered
        deadline = time.monotonic() + wait_seconds
        while self._written < target and self._task is not None and not self._task.done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._flushing = True
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), left)
        return self._written >= target

    async def start(self) -> None:
        self._stopping = False
        self._stop_requested.clear()
        self._task = asyncio.create_task(self._run(), name="audit-read-batches")

    async def stop(self) -> None:
        """Write everything queued, then end (lifespan exit: SIGTERM, a test's app)."""
        if self._task is None:
            return
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            self._task = None
        if self._pending:
            lost = len(self._pending)
            self._metrics.lost.inc(lost)
            if self._metrics.write_failures is not None:
                self._metrics.write_failures.inc(lost)
            self._metrics.queued.dec(lost)
            self._pending.clear()
            self._kits.clear()
            logger.error("audit.read_batch_lost_at_shutdown", extra={"events": lost})

    async def _run(self) -> None:
        delay = RETRY_INITIAL_SECONDS
        refusals = 0  # consecutive failures that were not "the database is unavailable"
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._wait_for_batch()
            count = min(len(self._pending), self._batch_size)
            batch = [self._pending[i][1] for i in range(count)]
            started = time.monotonic()
            try:
                await self._write(batch)
            except Exception as exc:
                self._metrics.failures.inc()
                # The cause's class and first line only: never the statement's parameters.
                logger.warning(
                    "audit.read_batch_failed",
                    extra={"events": count, "cause": database_error_cause(exc)},
                )
                refusals = 0 if is_database_unavailable(exc) else refusals + 1
                if refusals >= ISOLATE_AFTER_REFUSALS:
                    # The database answers but refuses this batch: write its events one by
                    # one, so that one unwritable event cannot hold every later one back.
                    await self._write_one_by_one(count)
                    refusals = 0
                    continue
                await self._sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay, refusals = RETRY_INITIAL_SECONDS, 0
            self._committed(count)
            self._metrics.flush_latency.observe(time.monotonic() - started)
            self._metrics.batch_events.observe(count)

    def _committed(self, count: int, *, written: bool = True) -> None:
        """The first ``count`` pending events are done (written, or given up loudly)."""
        for _ in range(count):
            kit_id = self._pending.popleft()[1].kit_id
            self._kits[kit_id] -= 1
            if not self._kits[kit_id]:
                del self._kits[kit_id]
        self._written += count
        if written:
            self._metrics.written.inc(count)
        self._metrics.queued.dec(count)
        self._progress.set()
        self._progress = asyncio.Event()

    async def _write_one_by_one(self, count: int) -> None:
        """Each of the first ``count`` events alone, ``ISOLATE_ATTEMPTS`` tries each; one that
        is still refused is given up: counted (``healthinfo_audit_write_failures_total``, which
        pages) and logged with its event id, never dropped silently."""
        for _ in range(count):
            event = self._pending[0][1]
            for attempt in range(ISOLATE_ATTEMPTS):
                try:
                    await self._write([event])
                except Exception as exc:
                    if attempt + 1 < ISOLATE_ATTEMPTS:
                        await self._sleep(RETRY_INITIAL_SECONDS)
                        continue
                    self._metrics.lost.inc()
                    if self._metrics.write_failures is not None:
                        self._metrics.write_failures.inc()
                    logger.error(
                        "audit.read_event_unwritable",
                        extra={"event_id": event.event_id, "cause": database_error_cause(exc)},
                    )
                    self._committed(1, written=False)
                else:
                    self._committed(1)
                break

    async def _wait_for_batch(self) -> None:
        """Until ``batch_size`` are waiting or the oldest has waited the window (or a flush or
        a stop wants them now)."""
        while len(self._pending) < self._batch_size and not self._stopping and not self._flushing:
            left = self._pending[0][0] + self._window - time.monotonic()
            if left <= 0:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
        self._flushing = False

    async def _sleep(self, seconds: float) -> None:
        """Back off before a retry; a stop cuts it short (and then retries every 0.2 s)."""
        if self._stopping:
            await asyncio.sleep(min(seconds, 0.2))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), seconds)


def batch_writer(uows: UnitOfWorkFactory, keys: AuditKeyring) -> BatchWriter:
    """One write transaction per batch: lock the heads, insert the events, advance the heads."""

    async def write(events: Sequence[AuditEvent]) -> None:
        async with uows.write() as uow:
            await chain.append_many(uow, keys, events)

    return write
