"""Deliveries for admins: list them by state, and send a dead letter again.

Adapters call these with the caller's unit of work, as for every other service; the rule
"admins only" lives here, not in the REST layer.
"""

from __future__ import annotations

from healthinfo.audit.service import AuditEntry, AuditLog
from healthinfo.auth.actor import Actor
from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.context import RequestContext
from healthinfo.common.pagination import Page, decode_cursor, encode_cursor
from healthinfo.common.uow import UnitOfWork
from healthinfo.errors import DeliveryNotDead, Forbidden, NotFound
from healthinfo.forwarding.outbox import WakeUps
from healthinfo.forwarding.store import Delivery, DeliveryStore

RETRY = "delivery.retry"


class DeliveryAdmin:
    def __init__(
        self,
        *,
        store: DeliveryStore,
        audit: AuditLog,
        wakeups: WakeUps,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._audit = audit
        self._wakeups = wakeups
        self._clock = clock

    async def list(
        self,
        uow: UnitOfWork,
        actor: Actor,
        *,
        state: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page[Delivery]:
        _require_admin(actor)
        before = decode_cursor(cursor) if cursor else None
        items = await self._store.list(uow, state=state, limit=limit + 1, before_id=before)
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id) if more and items else None)

    async def kit_of(self, uow: UnitOfWork, actor: Actor, delivery_id: str) -> str:
        """The kit a delivery belongs to (admins only; 404 when there is no such delivery).

        A retry is a write on that kit: its audit event, its refusal and its stored
        idempotent response all belong to the kit.
        """
        _require_admin(actor)
        found = await self._store.get(uow, delivery_id)
        if found is None:
            raise NotFound(f"No delivery {delivery_id!r}.")
        return found.kit_id

    async def retry(self, uow: UnitOfWork, ctx: RequestContext, delivery_id: str) -> Delivery:
        """Dead → pending, attempts and retry period reset; audited; the relay is woken.

        Later events of the same kit, held back behind this one, follow once it is delivered.
        """
        _require_admin(ctx.actor)
        found = await self._store.get(uow, delivery_id)
        if found is None:
            raise NotFound(f"No delivery {delivery_id!r}.")
        if not await self._store.requeue_dead(uow, delivery_id, now=self._clock()):
            current = await self._store.get(uow, delivery_id)
            raise DeliveryNotDead(current.state if current else found.state)
        await self._audit.record(
            uow, ctx, AuditEntry(action=RETRY, kit_id=found.kit_id, version_after=found.version)
        )
        self._wakeups.after_commit(uow)
        requeued = await self._store.get(uow, delivery_id)
        assert requeued is not None
        return requeued


def _require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("Only admins manage deliveries.")
