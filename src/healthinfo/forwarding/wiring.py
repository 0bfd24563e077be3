"""Builds the forwarding parts from settings for the composition root (``app.build_services``).

The worker needs only a relay (``relay.build_relay``) and keeps its imports that small.

Recording is on whenever ``HEALTHINFO_FORWARD_URL`` is set, in every process that writes
(a serve process with ``HEALTHINFO_FORWARD_IN_PROCESS=false`` still records; workers deliver).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from healthinfo.audit.service import AuditLog
from healthinfo.common.lifecycle import Lifecycle
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.config import Settings
from healthinfo.forwarding.outbox import Outbox, PayloadCodec, PlainPayloadCodec, WakeUps
from healthinfo.forwarding.relay import Relay, build_relay
from healthinfo.forwarding.service import DeliveryAdmin
from healthinfo.forwarding.store import DeliveryStore


@dataclass(frozen=True, slots=True)
class Forwarding:
    """The outbox recorder, the admin service, and the in-process relay (when there is one)."""

    enabled: bool
    outbox: Outbox
    store: DeliveryStore
    deliveries: DeliveryAdmin
    relay: Relay | None = None
    components: list[Lifecycle] = field(default_factory=list)


def build_forwarding(
    settings: Settings,
    *,
    uows: UnitOfWorkFactory,
    audit: AuditLog,
    registry: CollectorRegistry,
    codec: PayloadCodec | None = None,
) -> Forwarding:
    """``codec`` stores payloads (plain text by default); the recorder and every relay reading
    the same table must use the same one."""
    codec = codec or PlainPayloadCodec()
    wakeups = WakeUps()
    outbox = Outbox(codec=codec, wakeups=wakeups)
    store = DeliveryStore(codec=codec)
    deliveries = DeliveryAdmin(store=store, audit=audit, wakeups=wakeups)
    enabled = settings.forward_url is not None
    relay = None
    if enabled and settings.forward_in_process:
        relay = build_relay(settings, uows=uows, store=store, registry=registry, wakeups=wakeups)
    return Forwarding(
        enabled=enabled,
        outbox=outbox,
        store=store,
        deliveries=deliveries,
        relay=relay,
        components=[relay] if relay is not None else [],
    )
