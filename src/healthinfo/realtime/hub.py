"""The room hub: one per process, between the event bus and every live connection.

* **One bus subscription per process.** A committed change is delivered at once to this
  instance's connections and published on the bus for the others; messages from this instance
  coming back over the bus are ignored (``origin``).
* **Bounded per-connection queues.** A connection whose queue is full is closed with the reason
  ``slow-consumer``: it reconnects and resumes from the database, and memory never grows.
* **Room limit** across instances (SSE and WebSocket together) through the room store; the
  connection over the limit is refused (``RoomFull``), the members already in are unaffected.
* **Presence** changes are announced on the bus with no state in the message; each instance
  re-reads the room from the store and sends ``presence`` to each local connection whose view
  differs (so a new connection always gets one).
* **Access changes** (a member removed or re-roled, a kit claimed or erased) are announced
  after their commit, here and on the bus (``access_changed``): every connection of the kit
  gets an :class:`AccessChanged` item, and ``stream.py`` re-authorizes it against the database
  before it delivers anything else (an erasure ends every connection of the kit).
* **Per-user cap**: one user holds at most ``user_limit`` of a room's places.
* **Shutdown**: ``begin_shutdown`` (safe from a signal handler) closes every subscription with
  the reason ``shutdown``; SSE streams then send a retry hint, WebSockets close with 1012.

Subscriptions only carry what happened; what a connection sends is decided in ``stream.py``,
which de-duplicates by version and fills gaps from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from healthinfo.common.tasks import stop_tasks
from healthinfo.errors import DomainError, RoomFull, Unavailable
from healthinfo.health_information.service import ChangeEvent
from healthinfo.infra.bus import EventBus
from healthinfo.kits.service import KitRoster
from healthinfo.realtime import events
from healthinfo.realtime.events import AccessChanged, LiveEvent
from healthinfo.realtime.presence import presence_users
from healthinfo.realtime.rooms import Admission, Member, RoomStore, RoomStoreUnavailable

logger = logging.getLogger(__name__)

SHUTDOWN = "shutdown"
LIFETIME = "lifetime"
SLOW_CONSUMER = "slow-consumer"
UNAVAILABLE = "unavailable"
# The connection lost its access (its problem says why: removed, token expired, kit erased).
REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Resync:
    """Messages may have been missed (the bus reconnected): re-read from the database."""


RosterReader = Callable[[str], Coroutine[None, None, KitRoster]]
"""Reads a kit's roster in a short read transaction of its own (wired in app.py)."""

RESYNC = Resync()
QueueItem = LiveEvent | Resync | AccessChanged


class Subscription:
    """One live connection's place in a room: a bounded queue and, at the end, a reason."""

    def __init__(self, kit_id: str, user_id: str, *, max_items: int) -> None:
        self.id = uuid.uuid4().hex
        self.kit_id = kit_id
        self.user_id = user_id
        self.field: str | None = None
        self.focused_at = 0.0
        self.presence_seen: list[dict[str, str]] | None = None
        self.close_reason: str | None = None
        self.revoked_by: DomainError | None = None  # the problem, when closed as REVOKED
        self.closed = asyncio.Event()
        self._items: deque[QueueItem] = deque()
        self._max = max_items
        self._ready = asyncio.Event()

    def member(self) -> Member:
        return Member(self.id, self.user_id, self.field, self.focused_at)

    def offer(self, item: QueueItem) -> None:
        if self.close_reason is not None:
            return
        if len(self._items) >= self._max:
            self.close(SLOW_CONSUMER)
            return
        self._items.append(item)
        self._ready.set()

    def revoke(self, error: DomainError) -> None:
        """Close because access ended; the adapters send ``error`` as the last word."""
        if self.close_reason is None:
            self.revoked_by = error
        self.close(REVOKED)

    def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self._items.clear()
            self._ready.set()
            self.closed.set()

    async def wait(self, within: float) -> bool:
        """True when something is queued or the subscription closed; False after ``within`` s."""
        if self._items or self.close_reason is not None:
            return True
        try:
            async with asyncio.timeout(max(within, 0.0)):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def take(self) -> list[QueueItem]:
        items = list(self._items)
        self._items.clear()
        self._ready.clear()
        return items


class HubMetrics:
    """Live connections, why they ended, and bus health; unregistered when ``registry`` is None."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.connections = Gauge(
            "healthinfo_realtime_connections",
            "Live SSE and WebSocket connections here.",
            registry=registry,
        )
        self.closed = Counter(
            "healthinfo_realtime_closed_total",
            "Live connections the server ended, by reason (shutdown, slow-consumer, …).",
            ["reason"],
            registry=registry,
        )
        self.refused = Counter(
            "healthinfo_realtime_room_full_total",
            "Connections refused by the room limit.",
            registry=registry,
        )
        self.bus_dropped = Counter(
            "healthinfo_realtime_bus_messages_dropped_total",
            "Malformed or misaddressed bus messages that were ignored.",
            registry=registry,
        )
        self.store_errors = Counter(
            "healthinfo_realtime_room_store_errors_total",
            "Room store (Redis) calls that failed; the hub fell back to local knowledge.",
            registry=registry,
        )


class RoomHub:
    """A Lifecycle: started and stopped with the app."""

    def __init__(
        self,
        *,
        bus: EventBus,
        rooms: RoomStore,
        room_limit: int,
        queue_size: int,
        presence_ttl_seconds: float,
        user_limit: int | None = None,
        retry_after_seconds: int = 3,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.instance_id = uuid.uuid4().hex
        self.metrics = HubMetrics(registry)
        self.bus = bus
        self.rooms = rooms
        self._limit = room_limit
        self._user_limit = room_limit if user_limit is None else user_limit
        self._retry_after = retry_after_seconds
        self._queue_size = queue_size
        self._heartbeat_seconds = presence_ttl_seconds / 3
        self._local: dict[str, dict[str, Subscription]] = {}
        self._presence_dirty: set[str] = set()
        self._presence_tasks: dict[str, asyncio.Task[None]] = {}
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        # Per kit with local connections: deliveries so far, and the roster read in flight
        # (with the delivery count when it began), shared by the kit's connections.
        self._deliveries: dict[str, int] = {}
        self._roster_reads: dict[str, tuple[int, asyncio.Task[KitRoster]]] = {}
        self._read_roster: RosterReader | None = None

    def use_roster_reader(self, reader: RosterReader) -> None:
        self._read_roster = reader

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.bus.start(self._on_bus_message, self._on_bus_reconnect)
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="room-heartbeat")

    async def stop(self) -> None:
        self._drain(SHUTDOWN)
        tasks = [
            t
            for t in (self._heartbeat_task, *self._presence_tasks.values(), *self._background)
            if t
        ]
        await stop_tasks(tasks)
        for kit_id, room in list(self._local.items()):
            for sub in list(room.values()):
                with contextlib.suppress(RoomStoreUnavailable):
                    await self.rooms.leave(kit_id, sub.id)
        self._local.clear()
        await self.bus.stop()
        await self.rooms.close()

    def begin_shutdown(self) -> None:
        """Close every stream now (SIGTERM arrived); safe to call from a signal handler."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._drain, SHUTDOWN)

    def _drain(self, reason: str) -> None:
        self._draining = True
        for room in self._local.values():
            for sub in list(room.values()):
                sub.close(reason)

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- connections ---------------------------------------------------------------------

    def connections(self, kit_id: str) -> int:
        """Live connections to the kit on this instance."""
        return len(self._local.get(kit_id, {}))

    async def join(self, kit_id: str, user_id: str) -> Subscription:
        """Subscribe first (events from now on are queued), then take a place in the room."""
        if self._draining:
            raise Unavailable("The server is restarting; reconnect in a moment.")
        sub = Subscription(kit_id, user_id, max_items=self._queue_size)
        self._local.setdefault(kit_id, {})[sub.id] = sub
        try:
            admission = await self._admit(sub)
        except BaseException:
            self._forget(sub)
            raise
        if admission is not Admission.ADMITTED:
            self._forget(sub)
            self.metrics.refused.inc()
            per_user = admission is Admission.USER_FULL
            raise RoomFull(
                self._user_limit if per_user else self._limit,
                retry_after=self._retry_after,
                per_user=per_user,
            )
        self.metrics.connections.inc()
        self._presence_changed(kit_id, announce=True)
        return sub

    async def leave(self, sub: Subscription) -> None:
        """Idempotent; the room's count goes down and presence is announced."""
        if not self._forget(sub):
            return
        self.metrics.connections.dec()
        if sub.close_reason is not None:
            self.metrics.closed.labels(sub.close_reason).inc()
        try:
            await self.rooms.leave(sub.kit_id, sub.id)
        except RoomStoreUnavailable:
            self.metrics.store_errors.inc()  # the entry expires with the TTL
        self._presence_changed(sub.kit_id, announce=True)

    async def focus(self, sub: Subscription, field: str | None) -> None:
        sub.field = field
        sub.focused_at = time.time()
        try:
            await self.rooms.update(sub.kit_id, sub.member())
        except RoomStoreUnavailable:
            self.metrics.store_errors.inc()
        self._presence_changed(sub.kit_id, announce=True)

    async def _admit(self, sub: Subscription) -> Admission:
        try:
            return await self.rooms.join(
                sub.kit_id, sub.member(), limit=self._limit, per_user_limit=self._user_limit
            )
        except RoomStoreUnavailable:
            # The shared count is unreachable: enforce the limits on this instance's
            # connections (the heartbeat re-registers them when the store is back).
            self.metrics.store_errors.inc()
            logger.warning("realtime.room_store_unavailable")
            room = self._local.get(sub.kit_id, {}).values()
            if len(room) > self._limit:
                return Admission.ROOM_FULL
            if sum(s.user_id == sub.user_id for s in room) > self._user_limit:
                return Admission.USER_FULL
            return Admission.ADMITTED

    def _forget(self, sub: Subscription) -> bool:
        room = self._local.get(sub.kit_id)
        if room is None or room.pop(sub.id, None) is None:
            return False
        if not room:
            del self._local[sub.kit_id]
            self._deliveries.pop(sub.kit_id, None)
        return True

    # -- events --------------------------------------------------------------------------

    async def publish_change(self, event: ChangeEvent) -> None:
        """The after-commit listener: local connections at once, other instances via the bus."""
        kit_id = event.state.kit_id
        live = events.change(event)
        self._deliver(kit_id, live)
        self.bus.publish(kit_id, events.encode_change(self.instance_id, kit_id, live))

    async def access_changed(self, kit_id: str, *, erased: bool = False) -> None:
        """The after-commit listener of access changes: local connections at once (each
        re-authorizes before its next delivery), other instances via the bus."""
        self._deliver(kit_id, AccessChanged(erased))
        self.bus.publish(kit_id, events.encode_access_changed(self.instance_id, kit_id, erased))

    @property
    def bus_connected(self) -> bool:
        """False while other instances' messages (access changes too) may not arrive."""
        return bool(self.bus.connected)

    def _deliver(self, kit_id: str, item: QueueItem) -> None:
        room = self._local.get(kit_id)
        if not room:
            return
        self._deliveries[kit_id] = self._deliveries.get(kit_id, 0) + 1
        for sub in list(room.values()):
            sub.offer(item)

    # -- re-authorization ----------------------------------------------------------------

    def deliveries(self, kit_id: str) -> int:
        """How many items were delivered to the kit's connections so far (a sequence)."""
        return self._deliveries.get(kit_id, 0)

    async def roster(self, kit_id: str, *, after: int) -> KitRoster:
        """The kit's roster, read after delivery number ``after`` was queued.

        A read still in flight that began at or after it is shared, so the connections of a
        kit re-authorize with one query per wave of deliveries, not one each. Every item is
        delivered after its change committed, so such a read sees every change committed
        before the items a connection is about to send. Raises what the read raises.
        """
        if self._read_roster is None:
            raise RuntimeError("no roster reader wired (app.py)")
        shared = self._roster_reads.get(kit_id)
        if shared is None or shared[0] < after or shared[1].done():
            task: asyncio.Task[KitRoster] = asyncio.create_task(
                self._read_roster(kit_id), name="room-roster"
            )
            task.add_done_callback(functools.partial(self._roster_read_done, kit_id))
            shared = (self.deliveries(kit_id), task)
            self._roster_reads[kit_id] = shared
        return await asyncio.shield(shared[1])

    def _roster_read_done(self, kit_id: str, task: asyncio.Task[KitRoster]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone
        current = self._roster_reads.get(kit_id)
        if current is not None and current[1] is task:
            del self._roster_reads[kit_id]

    def _on_bus_message(self, kit_id: str, payload: bytes) -> None:
        message = events.decode(kit_id, payload)
        if message is None:
            self.metrics.bus_dropped.inc()
            logger.warning("realtime.bus_message_dropped")
            return
        if message.origin == self.instance_id or kit_id not in self._local:
            return
        if message.access is not None:
            self._deliver(kit_id, message.access)
        elif message.event is None:
            self._presence_changed(kit_id, announce=False)
        else:
            self._deliver(kit_id, message.event)

    def _on_bus_reconnect(self) -> None:
        """Messages may have been lost: every stream re-reads from the database, and this
        instance re-registers its members (Redis may have restarted empty) and re-announces."""
        for room in self._local.values():
            for sub in list(room.values()):
                sub.offer(RESYNC)
        self._spawn(self._after_reconnect())

    async def _after_reconnect(self) -> None:
        await self.heartbeat()
        for kit_id in list(self._local):
            self._presence_changed(kit_id, announce=True)

    # -- presence ------------------------------------------------------------------------

    def _presence_changed(self, kit_id: str, *, announce: bool) -> None:
        if announce:
            self.bus.publish(kit_id, events.encode_presence_changed(self.instance_id, kit_id))
        if kit_id not in self._local:
            return
        self._presence_dirty.add(kit_id)
        task = self._presence_tasks.get(kit_id)
        if task is None or task.done():
            self._presence_tasks[kit_id] = asyncio.create_task(self._refresh_presence(kit_id))

    async def _refresh_presence(self, kit_id: str) -> None:
        try:
            while kit_id in self._presence_dirty:
                self._presence_dirty.discard(kit_id)
                if kit_id not in self._local:
                    return
                try:
                    members = await self.rooms.members(kit_id)
                except RoomStoreUnavailable:
                    self.metrics.store_errors.inc()
                    members = [s.member() for s in self._local.get(kit_id, {}).values()]
                users = presence_users(members)
                event = events.presence(users)
                for sub in list(self._local.get(kit_id, {}).values()):
                    if sub.presence_seen != users:
                        sub.presence_seen = users
                        sub.offer(event)
        finally:
            self._presence_tasks.pop(kit_id, None)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            await self.heartbeat()

    async def heartbeat(self) -> None:
        """Re-stamp this instance's members; announce rooms where expired members were dropped."""
        rooms = {kit: [s.member() for s in subs.values()] for kit, subs in self._local.items()}
        if not rooms:
            return
        try:
            pruned = await self.rooms.refresh(rooms)
        except RoomStoreUnavailable:
            self.metrics.store_errors.inc()
            return
        # A connection that left while the refresh ran was re-added by it: remove it again.
        for kit_id, members in rooms.items():
            still_here = self._local.get(kit_id, {})
            for member in members:
                if member.connection_id not in still_here:
                    with contextlib.suppress(RoomStoreUnavailable):
                        await self.rooms.leave(kit_id, member.connection_id)
        for kit_id in pruned:
            self._presence_changed(kit_id, announce=True)
