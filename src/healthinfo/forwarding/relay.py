"""The relay: claims due outbox events, delivers them, records each outcome in the row.

A ``Lifecycle`` component. In the serve process it wakes the moment a submission commits (the
outbox registers an after-commit hook that sets an ``asyncio.Event``), so delivery starts
within milliseconds; it also polls every ``poll_seconds``, which is how it finds retries that
came due, events recorded by other processes, and work left by a crashed relay. ``healthinfo
worker`` runs the same relay on its own.

Each round claims a batch (at most one event per kit, see ``store``), sends the batch
concurrently and records every outcome in its own short transaction. A send starts only while
the claim's lease has at least one request timeout left, so a request never outlives the lease
and another relay can never send a kit's next event while this one is still in flight.

Failures of the database while recording an outcome are retried in process with stamina (its
state may live in memory: if this process dies, the lease ends and the event is sent again).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from contextlib import suppress
from datetime import datetime, timedelta

import stamina
from prometheus_client import CollectorRegistry

from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.tasks import stop_tasks
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.config import Settings
from healthinfo.errors import Unavailable
from healthinfo.forwarding.backoff import BackoffPolicy
from healthinfo.forwarding.delivery import AttemptResult, Outcome, Sender
from healthinfo.forwarding.metrics import ForwardingMetrics
from healthinfo.forwarding.outbox import WakeUps
from healthinfo.forwarding.store import Claim, DeliveryStore

logger = logging.getLogger(__name__)


def default_relay_name() -> str:
    """Host and process, so an operator can tell from a lease which process holds it."""
    return f"{socket.gethostname()[:32]}-{os.getpid()}"


class Relay:
    def __init__(
        self,
        *,
        uows: UnitOfWorkFactory,
        store: DeliveryStore,
        sender: Sender,
        policy: BackoffPolicy,
        metrics: ForwardingMetrics,
        lease_seconds: float,
        timeout_seconds: float,
        poll_seconds: float = 1.0,
        batch_size: int = 20,
        backlog_interval_seconds: float = 1.0,
        name: str | None = None,
        wakeups: WakeUps | None = None,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        if lease_seconds <= timeout_seconds:
            raise ValueError("the lease must outlast a request")
        self._uows = uows
        self._store = store
        self._sender = sender
        self._policy = policy
        self._metrics = metrics
        self._lease = lease_seconds
        self._timeout = timeout_seconds
        self._poll = poll_seconds
        self._batch = batch_size
        self._backlog_interval = backlog_interval_seconds
        self.name = (name or default_relay_name())[:48]
        self._clock = clock
        self._rng = rng or random.Random()  # jitter, not secrecy
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._next_due: datetime | None = None
        self._backlog_refreshed = float("-inf")
        self._db_retry = stamina.AsyncRetryingCaller(
            attempts=None, timeout=lease_seconds, wait_initial=0.05, wait_max=2.0
        ).on(Unavailable)
        if wakeups is not None:
            wakeups.subscribe(self.notify)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"forwarding-relay-{self.name}")
        logger.info("forwarding.relay_started", extra={"relay": self.name})

    async def stop(self) -> None:
        """Finish the batch in flight (bounded by the request timeout), then close the client."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=self._timeout + 5)
            except TimeoutError:
                await stop_tasks([self._task])
            self._task = None
        await self._sender.aclose()
        logger.info("forwarding.relay_stopped", extra={"relay": self.name})

    async def notify(self) -> None:
        """The after-commit hook: an event was recorded or re-queued; look now."""
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            handled = 0
            try:
                handled = await self.run_once()
                await self._refresh_backlog_if_due()
            except Exception as exc:  # the loop must outlive any failure; the rows are durable
                if isinstance(exc, Unavailable):
                    logger.warning("forwarding.database_unavailable", extra={"relay": self.name})
                else:
                    logger.exception("forwarding.relay_round_failed", extra={"relay": self.name})
            if handled and not self._stopping:
                continue
            await self._idle()

    async def _idle(self) -> None:
        delay = self._poll
        if self._next_due is not None:
            until_due = (self._next_due - self._clock()).total_seconds()
            if until_due <= self._poll:  # a retry this relay scheduled comes due first
                delay = max(0.0, until_due)
                self._next_due = None
        if not self._wake.is_set():
            with suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
        self._wake.clear()

    async def run_once(self) -> int:
        """Claim one batch and deliver it; returns how many events were claimed."""
        owner = f"{self.name}:{uuid.uuid4().hex[:12]}"
        # The lease counts from ``now``, before the claim possibly waited for a lock: so does
        # this relay's own deadline, which keeps it on the safe side.
        lease_started = time.monotonic()
        now = self._clock()
        async with self._uows.write() as uow:
            claims = await self._store.claim(
                uow, owner=owner, now=now, lease=timedelta(seconds=self._lease), limit=self._batch
            )
        if claims:
            await asyncio.gather(*(self._deliver(claim, lease_started) for claim in claims))
        return len(claims)

    async def _deliver(self, claim: Claim, lease_started: float) -> None:
        if time.monotonic() - lease_started > self._lease - self._timeout:
            # The lease could end before the request does; the next claim sends it instead.
            logger.warning("forwarding.claim_too_slow_for_lease", extra={"relay": self.name})
            return
        attempted_at = self._clock()
        started = time.perf_counter()
        try:
            result = await self._sender.send(claim.event_id, claim.body)
        except Exception as exc:
            logger.exception("forwarding.send_failed", extra={"event_id": claim.event_id})
            result = AttemptResult(Outcome.RETRY, error=f"unexpected ({type(exc).__name__})")
        self._metrics.attempt_latency.observe(time.perf_counter() - started)
        try:
            await self._db_retry(self._record, claim, result, attempted_at)
        except Exception:
            # Unrecorded: the lease ends and the event is sent again (at least once).
            logger.exception("forwarding.record_failed", extra={"event_id": claim.event_id})

    async def _record(self, claim: Claim, result: AttemptResult, attempted_at: datetime) -> None:
        now = self._clock()
        retry_at: datetime | None = None
        if result.outcome is Outcome.RETRY:
            retry_at = self._policy.next_attempt(
                failures=claim.attempts + 1,
                now=now,
                first_attempt=claim.first_attempt_at or attempted_at,
                rng=self._rng,
            )
        async with self._uows.write() as uow:
            if result.outcome is Outcome.DELIVERED:
                assert result.status is not None
                recorded = await self._store.mark_delivered(
                    uow, claim, status=result.status, attempted_at=attempted_at, now=now
                )
            else:
                recorded = await self._store.mark_failed(
                    uow,
                    claim,
                    status=result.status,
                    error=result.error or "failed",
                    attempted_at=attempted_at,
                    now=now,
                    retry_at=retry_at,
                )
        if not recorded:
            self._metrics.lease_lost.inc()
            logger.warning("forwarding.lease_lost", extra={"event_id": claim.event_id})
            return
        outcome = result.outcome.value
        if result.outcome is Outcome.RETRY and retry_at is None:
            outcome = Outcome.DEAD.value
        self._metrics.deliveries.labels(outcome).inc()
        if outcome == Outcome.DEAD.value:
            logger.warning(
                "forwarding.dead_lettered",
                extra={"event_id": claim.event_id, "status": result.status, "error": result.error},
            )
        elif retry_at is not None and (self._next_due is None or retry_at < self._next_due):
            self._next_due = retry_at

    # -- metrics ---------------------------------------------------------------------------

    async def refresh_backlog(self) -> None:
        """Set the backlog gauges from the table."""
        async with self._uows.read() as uow:
            backlog = await self._store.backlog(uow)
        self._metrics.pending.set(backlog.pending)
        self._metrics.dead.set(backlog.dead)
        oldest = backlog.oldest_pending_created_at
        age = (self._clock() - oldest).total_seconds() if oldest else 0.0
        self._metrics.oldest_pending_age.set(max(0.0, age))
        self._backlog_refreshed = time.monotonic()

    async def _refresh_backlog_if_due(self) -> None:
        if time.monotonic() - self._backlog_refreshed >= self._backlog_interval:
            await self.refresh_backlog()


def backoff_policy(settings: Settings) -> BackoffPolicy:
    return BackoffPolicy(
        initial=settings.forward_retry_initial_seconds,
        maximum=settings.forward_retry_max_seconds,
        give_up_after=settings.forward_give_up_after_seconds,
    )


def build_relay(
    settings: Settings,
    *,
    uows: UnitOfWorkFactory,
    store: DeliveryStore,
    registry: CollectorRegistry,
    wakeups: WakeUps | None = None,
    name: str | None = None,
) -> Relay:
    """A relay as the settings describe it, its metrics on ``registry``."""
    if settings.forward_url is None or settings.forward_secret is None:
        raise ValueError("forwarding needs HEALTHINFO_FORWARD_URL and HEALTHINFO_FORWARD_SECRET")
    sender = Sender(
        url=settings.forward_url,
        secret=settings.forward_secret.get_secret_value().encode(),
        timeout_seconds=settings.forward_timeout_seconds,
    )
    return Relay(
        uows=uows,
        store=store,
        sender=sender,
        policy=backoff_policy(settings),
        metrics=ForwardingMetrics(registry),
        lease_seconds=settings.forward_lease_seconds,
        timeout_seconds=settings.forward_timeout_seconds,
        poll_seconds=settings.forward_poll_seconds,
        batch_size=settings.forward_batch_size,
        name=name,
        wakeups=wakeups,
    )
