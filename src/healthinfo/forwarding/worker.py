"""``healthinfo worker``: the background jobs on their own, for deployments that run them
outside serve: the forwarding relay (when ``HEALTHINFO_FORWARD_URL`` is set) and the FHIR Bulk
Data export runner and purger (``fhir/bulk``), always.

Any number of workers (and in-process relays) share the outbox on PostgreSQL; each claims with
``SKIP LOCKED``. SIGTERM or SIGINT stops it after the batch in flight; SIGKILL loses nothing
but time: its leases end and another relay sends those events again.

The worker never migrates the schema: ``serve`` does on SQLite, ``healthinfo migrate`` does in
production (data migrations need the key store, which is not the worker's business). Until the
outbox table exists, each round fails, is logged, and is tried again at the next poll.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import CollectorRegistry, start_http_server

from healthinfo.audit.reasons import ReasonCodec
from healthinfo.audit.service import AuditLog
from healthinfo.common.database import create_engines
from healthinfo.common.lifecycle import Lifecycle, stop_all
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.config import Settings
from healthinfo.crypto.codec import EncryptedAnswerCodec
from healthinfo.crypto.factory import build_keystore, payload_codec
from healthinfo.crypto.keystore import KeyStore
from healthinfo.fhir.bulk.wiring import Exports, build_exports
from healthinfo.forwarding.relay import build_relay
from healthinfo.forwarding.store import DeliveryStore
from healthinfo.infra.metrics import register_standard_collectors
from healthinfo.questionnaires.registry import QuestionnaireRegistry
from healthinfo.questionnaires.store import QuestionnaireStore

logger = logging.getLogger(__name__)


async def run_worker(
    settings: Settings,
    *,
    metrics_address: tuple[str, int] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Deliver until ``stop`` is set (or SIGTERM/SIGINT arrives); metrics on ``(host, port)``."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Not ``app.build_engines``: importing the web app would double the worker's start-up time.
    engines = create_engines(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        timeout=settings.db_timeout_seconds,
    )
    keystore = build_keystore(settings)
    try:
        registry = CollectorRegistry()
        register_standard_collectors(registry)
        uows = UnitOfWorkFactory(engines)
        components: list[Lifecycle] = []
        if settings.forward_url is not None:
            relay = build_relay(
                settings,
                uows=uows,
                store=DeliveryStore(codec=payload_codec(keystore)),
                registry=registry,
            )
            components.append(relay)
            logger.info("forwarding.worker_relay", extra={"relay": relay.name})
        else:
            # Not an error since the worker also runs exports, but an operator who meant to
            # forward must see why nothing reaches the lab.
            logger.info(
                "forwarding.worker_forwarding_off",
                extra={"unset_setting": "HEALTHINFO_FORWARD_URL", "running": "exports only"},
            )
        components.extend(_exports(settings, uows, keystore).components)
        if metrics_address is not None:
            # After the relay registered its metrics: a first scrape sees them all.
            host, port = metrics_address
            start_http_server(port, addr=host, registry=registry)
        started: list[Lifecycle] = []
        try:
            for component in components:
                await component.start()
                started.append(component)
            logger.info("forwarding.worker_started")
            await stop.wait()
        finally:
            await stop_all(started)
    finally:
        await engines.dispose()
        await keystore.engines.dispose()


def _exports(settings: Settings, uows: UnitOfWorkFactory, keystore: KeyStore) -> Exports:
    """The export runner as serve builds it, from the parts the worker has."""
    audit = AuditLog(settings.audit_keyring(), reasons=ReasonCodec(EncryptedAnswerCodec(keystore)))
    questionnaires = QuestionnaireStore(
        QuestionnaireRegistry.builtin(),
        audit=audit,
        default_id=settings.effective_default_questionnaire,
    )
    return build_exports(
        settings,
        uows=uows,
        keystore=keystore,
        codec=EncryptedAnswerCodec(keystore),
        questionnaires=questionnaires,
        audit=audit,
        run_jobs=True,
    )
