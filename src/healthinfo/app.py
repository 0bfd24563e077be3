"""Composition root: build adapters and services from settings, and the ASGI app around them.

No work happens at import time; ``create_app(settings)`` is called by the CLI and by tests,
and resources (engines, migrations) are opened in the app's lifespan.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter

from healthinfo import __version__
from healthinfo.api import health, problem_pages
from healthinfo.api.compression import add_compression
from healthinfo.api.docs import install_docs
from healthinfo.api.edge import Edge
from healthinfo.api.openapi_docs import install_openapi, legacy_operation_id, operation_id
from healthinfo.api.problems import install_problem_handlers
from healthinfo.api.profiling import ProfilingMiddleware
from healthinfo.api.ratelimit import RATE_LIMITS
from healthinfo.audit import rest as audit_rest
from healthinfo.audit.change_tracking import ChangeTrackingAuditLog
from healthinfo.audit.checkpoints import AuditCheckpointer, CheckpointStore
from healthinfo.audit.read_batches import ReadAuditBatcher, ReadBatchMetrics, batch_writer
from healthinfo.audit.reads import ReadAuditor
from healthinfo.audit.reasons import ReasonCodec
from healthinfo.audit.runner import WriteRunner
from healthinfo.audit.service import AuditLog
from healthinfo.auth.tokens import TokenVerifier
from healthinfo.common.database import Engines, create_engines
from healthinfo.common.flags import OFF, ON
from healthinfo.common.lifecycle import Lifecycle, stop_all
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.compliance import rest as compliance_rest
from healthinfo.config import Settings
from healthinfo.crypto.codec import EncryptedAnswerCodec
from healthinfo.crypto.factory import build_keystore, payload_codec
from healthinfo.crypto.keystore import KeyStore
from healthinfo.db import migrate
from healthinfo.fhir import api as fhir_api
from healthinfo.fhir.bulk import rest as fhir_bulk_rest
from healthinfo.fhir.bulk.wiring import build_exports
from healthinfo.fhir.outcome import FHIR_PREFIX, OperationOutcomeMiddleware, rewrite_unexpected
from healthinfo.forwarding import rest as forwarding_rest
from healthinfo.forwarding.wiring import build_forwarding
from healthinfo.health_information import rest as health_information_rest
from healthinfo.health_information.cache import HealthInformationCache
from healthinfo.health_information.cache_warming import CacheWarmer
from healthinfo.health_information.repository import HealthInformationRepository
from healthinfo.health_information.service import (
    ChangeEvent,
    HealthInformationService,
    ServiceFlags,
)
from healthinfo.idempotency.purger import IdempotencyPurger
from healthinfo.idempotency.store import IdempotencyStore
from healthinfo.infra.access_log import install_token_redaction
from healthinfo.infra.cache import MemoryCache
from healthinfo.infra.cache_factory import CacheCloser, build_cache
from healthinfo.infra.error_tracking import configure_error_tracking
from healthinfo.infra.logging import configure_logging
from healthinfo.infra.metrics import Metrics
from healthinfo.infra.ratelimit import Limits, RateLimiter, RouteClass
from healthinfo.infra.resilient_cache import CircuitBreaker
from healthinfo.infra.tracing import build_tracing
from healthinfo.kits import rest as kits_rest
from healthinfo.kits.service import KitRoster, KitService
from healthinfo.questionnaires import rest as questionnaires_rest
from healthinfo.questionnaires.registry import QuestionnaireRegistry
from healthinfo.questionnaires.store import QuestionnaireStore, ShippedPublisher
from healthinfo.realtime import demo as realtime_demo
from healthinfo.realtime import sse as realtime_sse
from healthinfo.realtime import websocket as realtime_websocket
from healthinfo.realtime.wiring import build_hub
from healthinfo.replication.freshness import ChangeRecord
from healthinfo.replication.reads import ReplicaReads, cached_answers
from healthinfo.services import Services

logger = logging.getLogger(__name__)

# "/questionnaires" without a slash: the list and publish routes (and their unprefixed aliases).
LEGACY_PREFIXES = ("/kits/", "/questionnaires", "/admin/")


def build_engines(settings: Settings) -> Engines:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engines = create_engines(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        timeout=settings.db_timeout_seconds,
    )
    replicas = tuple(
        create_engines(
            url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            timeout=settings.db_timeout_seconds,
        ).write
        for url in settings.database_replica_urls
    )
    return dataclasses.replace(engines, replicas=replicas)


def build_rate_limiter(settings: Settings, metrics: Metrics) -> RateLimiter | None:
    if not settings.rate_limit_enabled:
        return None
    return RateLimiter(
        Limits.parse(
            {
                RouteClass.READ: settings.rate_limit_read_per_user,
                RouteClass.WRITE: settings.rate_limit_write_per_user,
                RouteClass.STREAM: settings.rate_limit_stream_per_user,
                RouteClass.FOCUS: settings.rate_limit_focus_per_user,
            },
            {
                RouteClass.READ: settings.rate_limit_read_per_address,
                RouteClass.WRITE: settings.rate_limit_write_per_address,
                RouteClass.STREAM: settings.rate_limit_stream_per_address,
            },
        ),
        metrics=metrics,
        redis_url=settings.redis_url,
        key_prefix=settings.redis_key_prefix,
        timeout_seconds=settings.cache_timeout_seconds,
        breaker=CircuitBreaker(
            failure_threshold=settings.cache_breaker_failures,
            cool_down_seconds=settings.cache_breaker_cooldown_seconds,
        ),
        sync_seconds=settings.rate_limit_sync_ms / 1000,
    )


def build_read_auditor(
    settings: Settings,
    uows: UnitOfWorkFactory,
    audit: AuditLog,
    writes: WriteRunner,
    metrics: Metrics,
) -> ReadAuditor:
    """``HEALTHINFO_AUDIT_READS``: batched (with its batcher), sync or off (audit.reads)."""
    batcher = None
    if settings.audit_reads == "batched":
        batcher = ReadAuditBatcher(
            batch_writer(uows, audit.keys),
            batch_ms=settings.audit_read_batch_ms,
            batch_size=settings.audit_read_batch_size,
            max_pending=settings.audit_read_max_pending,
            metrics=ReadBatchMetrics(metrics.registry, write_failures=metrics.audit_failures),
        )
    return ReadAuditor(
        settings.audit_reads, audit=audit, writes=writes, metrics=metrics, batcher=batcher
    )


def build_token_verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(
        hs_secret=settings.hs_secret(),
        public_keys_pem=settings.jwt_public_keys,
        jwks_url=settings.jwt_jwks_url,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
    )


async def migrate_all(settings: Settings, engines: Engines, keystore: KeyStore) -> None:
    """The key store first: encrypting data migrations need it."""
    await migrate.upgrade(keystore.engine, location=migrate.KEYSTORE_MIGRATIONS_DIR)
    await migrate.upgrade(engines.write, codec=EncryptedAnswerCodec(keystore))


def build_services(
    settings: Settings, engines: Engines, keystore: KeyStore | None = None
) -> Services:
    uows = UnitOfWorkFactory(engines)
    metrics = Metrics()
    keystore = keystore or build_keystore(settings)
    codec = EncryptedAnswerCodec(keystore)
    cache = build_cache(settings, metrics)
    near = MemoryCache(max_entries=settings.cache_max_entries) if settings.redis_url else None
    hi_cache = HealthInformationCache(
        cache, codec=codec, metrics=metrics, rollout=settings.cache_enabled, near=near
    )
    changes = ChangeRecord()
    reasons = ReasonCodec(codec)  # amendment reasons under the kit's key, like its answers
    audit_keys = settings.audit_keyring()
    audit = (
        ChangeTrackingAuditLog(changes, audit_keys, reasons=reasons)
        if engines.replicas
        else AuditLog(audit_keys, reasons=reasons)
    )
    kits = KitService(audit=audit, auto_claim=settings.auto_claim)
    questionnaires = QuestionnaireStore(
        QuestionnaireRegistry.builtin(),
        audit=audit,
        default_id=settings.effective_default_questionnaire,
    )
    health_information = HealthInformationService(
        kits=kits,
        repository=HealthInformationRepository(codec=codec),
        cache=hi_cache,
        questionnaires=questionnaires,
        audit=audit,
        flags=ServiceFlags(
            strict_preconditions=settings.strict_preconditions,
            audit_reads=OFF if settings.audit_reads == "off" else ON,
            amendments=settings.amendments_enabled,
        ),
        max_answers=settings.max_answers,
        retry_attempts=settings.write_retry_attempts,
    )
    forwarding = build_forwarding(
        settings,
        uows=uows,
        audit=audit,
        registry=metrics.registry,
        codec=payload_codec(keystore),
    )
    health_information.add_erasure_hook(forwarding.outbox.forget_kit)
    if forwarding.enabled:
        health_information.add_transactional_listener(forwarding.outbox.on_change)
    hub = build_hub(settings, metrics.registry)
    rate_limiter = build_rate_limiter(settings, metrics)
    idempotency = IdempotencyStore(
        uows=uows,
        codec=codec,
        retention=timedelta(hours=settings.idempotency_retention_hours),
        lease=timedelta(seconds=settings.idempotency_lease_seconds),
    )
    writes = WriteRunner(uows=uows, audit=audit, metrics=metrics)
    read_audit = build_read_auditor(settings, uows, audit, writes, metrics)
    writes.settle_reads_with(read_audit.settle)
    exports = build_exports(
        settings,
        uows=uows,
        keystore=keystore,
        codec=codec,
        questionnaires=questionnaires,
        audit=audit,
        run_jobs=settings.export_in_process,
    )
    services = Services(
        settings=settings,
        uows=uows,
        writes=writes,
        read_audit=read_audit,
        audit=audit,
        kits=kits,
        health_information=health_information,
        questionnaires=questionnaires,
        tokens=build_token_verifier(settings),
        metrics=metrics,
        forwarding=forwarding,
        hub=hub,
        cache=cache,
        idempotency=idempotency,
        rate_limiter=rate_limiter,
        keystore=keystore,
        exports=exports,
        replica_reads=ReplicaReads(
            uows, changes=changes, registry=metrics.registry, known_answers=cached_answers(hi_cache)
        ),
    )
    health_information.add_erasure_hook(lambda _uow, kit_id: _shred(keystore, kit_id))
    services.components.append(ShippedPublisher(questionnaires, uows))
    services.components.append(
        IdempotencyPurger(idempotency, interval_seconds=settings.idempotency_purge_interval_seconds)
    )
    services.components.append(
        AuditCheckpointer(
            uows,
            CheckpointStore(settings.effective_audit_checkpoint_dir, audit_keys),
            interval_seconds=settings.audit_checkpoint_interval,
        )
    )
    # After the checkpointer, so it stops before it (its final checkpoint pins the flushed read
    # events), and before the hub, so it stops after it (no stream opens any more).
    services.components.append(read_audit)
    services.components.extend(forwarding.components)
    services.components.extend(exports.components)
    services.components.append(hub)
    if rate_limiter is not None:
        services.components.append(rate_limiter)
    health_information.add_listener(hub.publish_change)
    kits.add_access_listener(lambda kit_id, erased: hub.access_changed(kit_id, erased=erased))

    async def read_roster(kit_id: str) -> KitRoster:
        # One statement, so no transaction around it: one round trip per wave of deliveries.
        async with uows.autocommit() as uow:
            return await kits.roster(uow, kit_id)

    hub.use_roster_reader(read_roster)
    if cache is not None:

        async def write_through(event: ChangeEvent) -> None:
            await hi_cache.remember(event.state, stored_answers=event.stored_answers)

        # Off the response path, unless replicas are read: then an instance that did not make
        # the write learns it committed from the shared entry (replication/), and a client's
        # next read, through any instance, must find it there (read-your-writes).
        health_information.add_listener(write_through, background=not engines.replicas)
        services.components.append(CacheCloser(cache))
        services.components.append(
            CacheWarmer(
                uows=uows,
                service=health_information,
                hours=settings.cache_warm_hours,
                max_kits=settings.cache_warm_max_kits,
            )
        )
    # Last, so stopped first: what writes queued for after their response still reaches the
    # cache and the bus before those close.
    services.components.append(uows.background)
    return services


async def _shred(keystore: KeyStore, kit_id: str) -> None:
    """Erasure destroys the kit's data key first: every copy of its ciphertext becomes noise."""
    await keystore.destroy(kit_id)


REST_MODULES = (
    health_information_rest,
    kits_rest,
    audit_rest,
    questionnaires_rest,
    compliance_rest,
    forwarding_rest,
)
STREAM_MODULES = (realtime_sse, realtime_websocket)


def include_api(app: FastAPI, **include: Any) -> None:
    """Every versioned route, each module's router included into the app itself.

    Not through one intermediate router: FastAPI (0.16x) resolves included routers lazily and,
    on every request, re-checks each inclusion level's routes for changes (walking every
    route below it), so a level less is less framework per request (issue #16).
    """
    for module in REST_MODULES:
        app.include_router(module.router, dependencies=RATE_LIMITS, **include)
    for stream_module in STREAM_MODULES:
        app.include_router(stream_module.router, **include)


def create_app(settings: Settings, *, span_exporter: SpanExporter | None = None) -> FastAPI:
    """``span_exporter``: where spans go instead of OTLP (tests pass an in-memory exporter)."""
    configure_logging(level=settings.log_level, json=settings.log_json)
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None
    configure_error_tracking(dsn, environment=settings.environment)
    engines = build_engines(settings)
    keystore = build_keystore(settings)
    services = build_services(settings, engines, keystore)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.should_migrate_on_start:
            await migrate_all(settings, engines, keystore)
        started: list[Lifecycle] = []
        try:
            for component in services.components:
                await component.start()
                started.append(component)
            yield
        finally:
            await stop_all(started)
            await engines.dispose()
            await keystore.engines.dispose()

    app = FastAPI(
        title="Health Information Service",
        version=__version__,
        description="Durable, audited, access-checked health questionnaire answers for test kits.",
        lifespan=lifespan,
        docs_url=None,  # served offline by api/docs.py
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.services = services
    include_api(app, prefix="/v1")  # mounted under /v1 and again, deprecated, without a prefix
    include_api(
        app,
        deprecated=True,
        include_in_schema=True,
        generate_unique_id_function=legacy_operation_id,
    )
    # FHIR only under /v1 (there is no legacy twin); other FHIR routers (Bulk Data) sit beside.
    app.include_router(fhir_api.router, prefix=FHIR_PREFIX, dependencies=RATE_LIMITS)
    app.include_router(fhir_bulk_rest.router, prefix=FHIR_PREFIX, dependencies=RATE_LIMITS)
    app.include_router(health.router)
    app.include_router(realtime_demo.router)
    install_docs(app)
    app.include_router(problem_pages.router)
    # Run when SIGTERM arrives, before uvicorn waits for connections (see infra/serving.py).
    app.state.exit_hooks = [services.hub.begin_shutdown]
    install_token_redaction()
    install_problem_handlers(app, rewrite_unexpected=rewrite_unexpected)
    if settings.profiling_enabled:
        app.add_middleware(ProfilingMiddleware, tokens=services.tokens)
    # Outside every route and dependency that answers with a problem, inside compression, so
    # the problems it rewrites are never compressed yet. The edge's own early 413 (before the
    # app runs) goes through the same rewrite (``rewrite_problem``).
    app.add_middleware(OperationOutcomeMiddleware)
    add_compression(app)
    # One pure ASGI middleware for everything around the routes (api/edge.py): outside
    # compression, so a HEAD gets the compressed GET's headers.
    app.add_middleware(
        Edge,
        metrics=services.metrics,
        routes=lambda: app.routes,
        max_body_bytes=settings.max_body_bytes,
        private_prefixes=("/v1/", *LEGACY_PREFIXES),
        legacy_prefixes=LEGACY_PREFIXES,
        sunset=settings.legacy_sunset,
        rewrite_problem=rewrite_unexpected,
    )
    tracing = build_tracing(
        enabled=settings.otel_enabled,
        endpoint=settings.otel_exporter_endpoint,
        environment=settings.environment,
        exporter=span_exporter,
    )
    if tracing is not None:
        tracing.instrument(app, engines)  # outermost: spans cover every middleware
        services.components.insert(0, tracing)  # stopped last: flushes what the rest sent
    app.state.tracing = tracing
    install_openapi(app)
    return app
