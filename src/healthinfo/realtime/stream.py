"""What one live connection sends, in order: shared by the SSE and WebSocket adapters.

The order of operations is Prefect's: **subscribe first** (the hub queues events from the moment
``join`` returns), **then read the database** (snapshot, or the changes after ``Last-Event-ID``),
**then de-duplicate by version**. Versions are contiguous, so the stream also notices a gap
(an event lost or reordered between instances) and fills it from the revision history before
going on. Bus messages are therefore never trusted for state: they only say that something
happened, and every version a client receives is the next one after the last it received.

Each database read is its own short read transaction through the service (which checks access
again: a member removed meanwhile is dropped at the next read).
"""

from __future__ import annotations

from healthinfo.auth.access import Permission
from healthinfo.auth.actor import Actor
from healthinfo.errors import Forbidden, NotFound, Unavailable
from healthinfo.realtime import events
from healthinfo.realtime.events import LiveEvent
from healthinfo.realtime.hub import ACCESS_LOST, UNAVAILABLE, Resync, Subscription
from healthinfo.services import Services


class LiveStream:
    def __init__(
        self, *, svc: Services, actor: Actor, kit_id: str, subscription: Subscription
    ) -> None:
        self._svc = svc
        self._actor = actor
        self._kit_id = kit_id
        self.subscription = subscription
        self.last_version = 0

    async def open(self, last_event_id: int | None) -> list[LiveEvent]:
        """The snapshot, or the replay after ``last_event_id``; raises domain errors.

        A ``last_event_id`` beyond the current version (a client of an erased kit, or one that
        invented it) gets a snapshot instead: the client's idea of the data cannot be trusted.
        """
        hi = self._svc.health_information
        async with self._svc.uows.read() as uow:
            try:
                current = await hi.get(uow, self._actor, self._kit_id)
            except NotFound:
                # Access was checked just before joining, so this means nothing is saved yet.
                return []
            if last_event_id is None or last_event_id > current.version:
                self.last_version = current.version
                return [events.snapshot(current)]
            changes = await hi.changes_after(uow, self._actor, self._kit_id, last_event_id)
        self.last_version = last_event_id
        return self._accept([events.change(change) for change in changes])

    async def take(self) -> list[LiveEvent]:
        """Everything queued, de-duplicated, gaps filled; may close the subscription."""
        out: list[LiveEvent] = []
        for item in self.subscription.take():
            if isinstance(item, Resync):
                out += await self._backfill()
            elif item.version is None:
                out.append(item)
            elif item.version == self.last_version + 1:
                out += self._accept([item])
            elif item.version > self.last_version + 1:
                out += await self._backfill()
            # else: a duplicate of a version already sent
        return out

    def _accept(self, candidates: list[LiveEvent]) -> list[LiveEvent]:
        accepted = []
        for event in candidates:
            if event.version is not None and event.version == self.last_version + 1:
                accepted.append(event)
                self.last_version = event.version
        return accepted

    async def _backfill(self) -> list[LiveEvent]:
        if self.subscription.close_reason is not None:
            return []
        try:
            async with self._svc.uows.read() as uow:
                await self._svc.kits.authorize(uow, self._actor, self._kit_id, Permission.READ)
                try:
                    changes = await self._svc.health_information.changes_after(
                        uow, self._actor, self._kit_id, self.last_version
                    )
                except NotFound:  # access holds (checked above): nothing is saved (any more)
                    changes = []
        except (NotFound, Forbidden):
            self.subscription.close(ACCESS_LOST)
            return []
        except Unavailable:
            self.subscription.close(UNAVAILABLE)
            return []
        return self._accept([events.change(change) for change in changes])
