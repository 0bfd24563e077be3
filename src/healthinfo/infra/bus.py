"""The event bus port: tell every server instance what just happened on a kit.

A bus message says *that* something happened (a committed version, a presence change); it is
never the source of truth. Receivers de-duplicate by version and fill any gap from the
database's revision history, so a message that is lost, late, duplicated or reordered costs
latency, never correctness. That is why publishing is fire-and-forget: a write never waits
for, or fails because of, the bus.

Two adapters behind one small protocol:

* :class:`InProcessBus`: one process (the embedded default, no Redis). Buses attached to the
  same :class:`InProcessBroker` see each other's messages, which lets a test run two hubs
  ("instances") in one process.
* :class:`RedisBus`: Redis pub/sub, for any number of instances. One pub/sub connection per
  process with one pattern subscription (``<prefix>events:*``; the channel names the kit), a
  publisher task draining a bounded queue, short socket timeouts, retries chosen here rather
  than redis-py's defaults (which retry a failing command several times with back-off), a
  PING watchdog for half-open connections, and reconnects with capped, jittered back-off.
  After a reconnect ``on_reconnect`` fires: messages may have been missed, so the hub makes
  every local stream re-read what it missed from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from healthinfo.common.tasks import stop_tasks
from healthinfo.infra.redis_client import fail_fast_redis

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]
"""Called with (kit id, payload) for every message; must not block (it only enqueues)."""
ReconnectHandler = Callable[[], None]
"""Called when the subscription was re-established after a drop: messages may be missing."""

BACKOFF_START_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 5.0
MAX_PENDING = 10_000
FLUSH_ON_STOP_SECONDS = 1.0


class EventBus(Protocol):
    kind: str

    @property
    def connected(self) -> bool:
        """Subscribed now: events of other instances arrive."""
        ...

    async def start(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        """Subscribe (one subscription for the process); returns once subscribed or failing."""
        ...

    def publish(self, kit_id: str, payload: bytes) -> None:
        """Best effort and non-blocking: queue ``payload`` for every instance (this one too)."""
        ...

    async def stop(self) -> None: ...


class InProcessBroker:
    """What links in-process buses: every attached bus receives every published message."""

    def __init__(self) -> None:
        self.buses: list[InProcessBus] = []


class InProcessBus:
    """The bus of a single process; delivery is scheduled on the loop, never re-entrant."""

    kind = "in-process"

    def __init__(self, broker: InProcessBroker | None = None) -> None:
        self._broker = broker or InProcessBroker()
        self._handler: MessageHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def connected(self) -> bool:
        return self._handler is not None

    async def start(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        self._handler = on_message
        self._loop = asyncio.get_running_loop()
        self._broker.buses.append(self)

    def publish(self, kit_id: str, payload: bytes) -> None:
        for bus in list(self._broker.buses):
            if bus._handler is not None and bus._loop is not None:
                bus._loop.call_soon(bus._handler, kit_id, payload)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self._broker.buses.remove(self)
        self._handler = None


class RedisBus:
    """Redis pub/sub with one subscription per process and a bounded publish queue."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        timeout_seconds: float = 1.0,
        ping_seconds: float = 5.0,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._url = url
        self._channel_prefix = f"{prefix}events:"
        self._pattern = _escape_glob(self._channel_prefix) + "*"
        self._timeout = timeout_seconds
        self._ping = ping_seconds
        self._pending: deque[tuple[str, bytes]] = deque()
        self._max_pending = max_pending
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher: aioredis.Redis | None = None
        self._listener: aioredis.Redis | None = None
        self.connected = False
        self.dropped = 0
        self.reconnects = 0

    def channel(self, kit_id: str) -> str:
        return self._channel_prefix + kit_id

    async def start(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        # One immediate retry for commands: it covers a pooled connection that Redis closed
        # while idle. Anything longer is the publisher loop's business, not a write's.
        self._publisher = self._client(retries=1)
        # The subscriber never retries inside redis-py: the listen loop reconnects, re-subscribes
        # and then tells the hub to resynchronise, which redis-py's silent retry would not.
        self._listener = self._client(retries=0)
        self._tasks = [
            asyncio.create_task(self._listen(on_message, on_reconnect), name="bus-listen"),
            asyncio.create_task(self._publish_loop(), name="bus-publish"),
        ]
        # Serve only once subscribed when Redis is healthy; when it is not, start anyway (the
        # listen loop keeps trying) because a bus outage must not take the API down.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout * 3):
                await self._subscribed.wait()

    def publish(self, kit_id: str, payload: bytes) -> None:
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append((self.channel(kit_id), payload))
        self._wake.set()

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks = []
        # Give queued messages a moment to leave, so other instances hear about the last writes.
        if self._publisher is not None:
            with contextlib.suppress(TimeoutError, RedisError, OSError):
                async with asyncio.timeout(FLUSH_ON_STOP_SECONDS):
                    while self._pending:
                        await self._publisher.publish(*self._pending.popleft())
        for client in (self._publisher, self._listener):
            if client is not None:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()

    def _client(self, *, retries: int) -> aioredis.Redis:
        return fail_fast_redis(
            self._url, timeout_seconds=self._timeout, retries=retries, client_name="healthinfo-bus"
        )

    async def _publish_loop(self) -> None:
        assert self._publisher is not None
        delay = BACKOFF_START_SECONDS
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                channel, payload = self._pending.popleft()
                try:
                    await self._publisher.publish(channel, payload)
                    delay = BACKOFF_START_SECONDS
                except (RedisError, OSError) as exc:
                    # Dropped, not retried: receivers recover from the database at the next
                    # version they see or when their own subscription reconnects.
                    self.dropped += 1
                    logger.warning("bus.publish_failed", extra={"error": type(exc).__name__})
                    await asyncio.sleep(_jitter(delay))
                    delay = min(delay * 2, BACKOFF_CAP_SECONDS)

    async def _listen(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        delay = BACKOFF_START_SECONDS
        first = True
        while True:
            pubsub: Any = self._listener.pubsub()
            try:
                await pubsub.psubscribe(self._pattern)
                await self._await_confirmation(pubsub)
                self.connected = True
                self._subscribed.set()
                if not first:
                    self.reconnects += 1
                    logger.info("bus.resubscribed")
                    on_reconnect()
                first = False
                delay = BACKOFF_START_SECONDS
                await self._receive(pubsub, on_message, loop)
            except (RedisError, OSError) as exc:
                first = False
                logger.warning("bus.subscription_lost", extra={"error": type(exc).__name__})
            finally:
                self.connected = False
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(_jitter(delay))
            delay = min(delay * 2, BACKOFF_CAP_SECONDS)

    async def _await_confirmation(self, pubsub: Any) -> None:
        async with asyncio.timeout(self._timeout * 2):
            while True:
                message = await pubsub.get_message(timeout=self._timeout)
                if message is not None and message.get("type") == "psubscribe":
                    return

    async def _receive(
        self, pubsub: Any, on_message: MessageHandler, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Deliver messages; PING when quiet, and give up on a connection that stops answering."""
        last_seen = loop.time()
        next_ping = last_seen + self._ping
        while True:
            message = await pubsub.get_message(timeout=min(1.0, self._ping))
            now = loop.time()
            if message is not None:
                last_seen = now
                if message.get("type") == "pmessage":
                    self._dispatch(message, on_message)
            if now >= next_ping:
                await pubsub.ping()
                next_ping = now + self._ping
            if now - last_seen > 2 * self._ping + self._timeout:
                raise RedisConnectionError("no answer to PING on the pub/sub connection")

    def _dispatch(self, message: dict[str, Any], on_message: MessageHandler) -> None:
        channel = message.get("channel")
        data = message.get("data")
        if isinstance(channel, bytes):
            channel = channel.decode("utf-8", "replace")
        if not isinstance(channel, str) or not isinstance(data, bytes):
            return
        if not channel.startswith(self._channel_prefix):
            return
        try:
            on_message(channel[len(self._channel_prefix) :], data)
        except Exception:
            logger.exception("bus.handler_failed")


def _escape_glob(text: str) -> str:
    """Escape Redis glob characters so a key prefix is matched literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


_JITTER = random.Random()  # our own: never the process-wide state (infra/tracing.py says why)


def _jitter(seconds: float) -> float:
    return seconds * _JITTER.uniform(0.5, 1.5)
