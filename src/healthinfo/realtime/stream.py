"""What one live connection sends, in order: shared by the SSE and WebSocket adapters.

The order of operations is Prefect's: **subscribe first** (the hub queues events from the moment
``join`` returns), **then read the database** (snapshot, or the changes after ``Last-Event-ID``),
**then de-duplicate by version**. Versions are contiguous, so the stream also notices a gap
(an event lost or reordered between instances) and fills it from the revision history before
going on. Bus messages are therefore never trusted for state: they only say that something
happened, and every version a client receives is the next one after the last it received.

Each database read is its own short read transaction through the service (which checks access
again: a member removed meanwhile is dropped at the next read).

**Re-authorization.** Nothing is delivered on a stream that has lost its access:

* Before a batch of queued items is delivered (events, presence, an access change), the
  stream re-authorizes: ``KitRoster.authorize`` (the same decision as
  ``KitService.authorize``) on the kit's roster, read in a short read transaction begun after
  those items were queued. The items were queued after their changes committed, so that read
  sees every access change committed before them: an ``updated`` event of a write that
  committed after the member's removal is never delivered to that member, whichever instance
  made either change. The kit's connections on this instance share the read in flight
  (``RoomHub.roster``): one query per wave of deliveries to a kit, not one per connection.
* An :class:`AccessChanged` item (a member removed, a role changed, a claim; announced after
  the commit, on every instance through the bus) wakes the stream for that check at once. An
  erasure ends the stream, and so does a change of the answers' creation time (an erasure
  whose announcement was lost): what the client holds no longer exists.
* At the token's expiry (``Actor.expires_at``: ``exp`` plus the verifier's leeway) the stream
  ends, revoked as unauthenticated.
* While the event bus is down (announcements from other instances may be lost) the stream
  re-checks on its own every ``HEALTHINFO_REALTIME_ACCESS_RECHECK_SECONDS`` (jittered, at most
  that long apart).

A stream that lost access is closed with the reason ``revoked`` and the problem to send
(``Subscription.revoked_by``): SSE ends after ``event: revoked``, WebSocket closes with 4000 +
its status (4401, 4403, 4404).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from datetime import datetime

from healthinfo.auth.access import Permission
from healthinfo.auth.actor import Actor
from healthinfo.auth.tokens import EXPIRED
from healthinfo.errors import Forbidden, NotFound, Unauthenticated, Unavailable
from healthinfo.realtime import events
from healthinfo.realtime.events import AccessChanged, LiveEvent
from healthinfo.realtime.hub import UNAVAILABLE, Resync, Subscription
from healthinfo.services import Services

ACCESS_ENDED = "Your access to this kit ended; this stream is closed."
ERASED = "The kit's health information was erased; reconnect to follow the kit afresh."
_JITTER = random.Random()  # our own: never the process-wide state (infra/tracing.py says why)


def access_ended() -> Forbidden:
    return Forbidden(ACCESS_ENDED)


class LiveStream:
    def __init__(
        self,
        *,
        svc: Services,
        actor: Actor,
        kit_id: str,
        subscription: Subscription,
        data_created_at: datetime | None = None,
    ) -> None:
        self._svc = svc
        self._actor = actor
        self._kit_id = kit_id
        self.subscription = subscription
        self.last_version = 0
        # When the kit's answers were created, as the access check saw it: a different value
        # later means they were erased (and maybe saved anew) since.
        self._data_created_at = data_created_at
        self._loop = asyncio.get_running_loop()
        self._recheck_seconds = svc.settings.realtime_access_recheck_seconds
        self._next_check = self._loop.time() + self._recheck_interval()
        self._expires = (
            None
            if actor.expires_at is None
            else self._loop.time() + (actor.expires_at - time.time())
        )

    def _recheck_interval(self) -> float:
        return self._recheck_seconds * _JITTER.uniform(0.5, 1.0)

    def wake_at(self) -> float:
        """The loop time by which ``take`` must run even if nothing arrives (token expiry;
        the periodic access check while the bus is down); ``inf`` when nothing is due."""
        due = [self._expires] if self._expires is not None else []
        if not self._svc.hub.bus_connected:
            due.append(self._next_check)
        return min(due, default=math.inf)

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
        """Everything queued, de-duplicated, gaps filled, once access was re-checked; may
        close the subscription (then nothing is returned)."""
        items = self.subscription.take()
        after = self._svc.hub.deliveries(self._kit_id)  # counts every item just taken
        if self.subscription.close_reason is not None:
            return []
        now = self._loop.time()
        if self._expires is not None and now >= self._expires:
            self.subscription.revoke(Unauthenticated(EXPIRED))
            return []
        if any(isinstance(item, AccessChanged) and item.erased for item in items):
            self.subscription.revoke(NotFound(ERASED))
            return []
        due = now >= self._next_check and not self._svc.hub.bus_connected
        if (items or due) and not await self._still_authorized(after):
            return []
        out: list[LiveEvent] = []
        for item in items:
            if isinstance(item, AccessChanged):
                continue  # re-checked above
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

    async def _still_authorized(self, after: int) -> bool:
        """READ access now, through the one access decision (on a roster the kit's
        connections share, read after the items at hand); revokes the stream otherwise."""
        try:
            roster = await self._svc.hub.roster(self._kit_id, after=after)
            roster.authorize(self._actor, Permission.READ)
        except (NotFound, Forbidden):
            self.subscription.revoke(access_ended())
            return False
        except Unavailable:
            self.subscription.close(UNAVAILABLE)
            return False
        self._next_check = self._loop.time() + self._recheck_interval()
        known = self._data_created_at
        if known is not None and roster.data_created_at != known:
            self.subscription.revoke(NotFound(ERASED))
            return False
        self._data_created_at = roster.data_created_at
        return True

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
            self.subscription.revoke(access_ended())
            return []
        except Unavailable:
            self.subscription.close(UNAVAILABLE)
            return []
        return self._accept([events.change(change) for change in changes])
