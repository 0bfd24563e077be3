"""``healthinfo worker``: the relay on its own, for deployments that deliver outside serve.

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

from healthinfo.common.database import create_engines
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.config import Settings
from healthinfo.crypto.factory import build_keystore, payload_codec
from healthinfo.forwarding.relay import build_relay
from healthinfo.forwarding.store import DeliveryStore
from healthinfo.infra.metrics import register_standard_collectors

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
        relay = build_relay(
            settings,
            uows=UnitOfWorkFactory(engines),
            store=DeliveryStore(codec=payload_codec(keystore)),
            registry=registry,
        )
        if metrics_address is not None:
            # After the relay registered its metrics: a first scrape sees them all.
            host, port = metrics_address
            start_http_server(port, addr=host, registry=registry)
        await relay.start()
        logger.info("forwarding.worker_started", extra={"relay": relay.name})
        try:
            await stop.wait()
        finally:
            await relay.stop()
    finally:
        await engines.dispose()
        await keystore.engines.dispose()
