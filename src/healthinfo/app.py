"""Composition root: build adapters and services from settings, and the ASGI app around them.

No work happens at import time; ``create_app(settings)`` is called by the CLI and by tests,
and resources (engines, migrations) are opened in the app's lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from healthinfo import __version__
from healthinfo.api import health
from healthinfo.api.middleware import (
    BodyLimitMiddleware,
    LegacyRouteMiddleware,
    MetricsMiddleware,
    RequestIdMiddleware,
)
from healthinfo.api.openapi import Problem
from healthinfo.api.problems import install_problem_handlers
from healthinfo.audit import rest as audit_rest
from healthinfo.audit.runner import WriteRunner
from healthinfo.audit.service import AuditLog
from healthinfo.auth.tokens import TokenVerifier
from healthinfo.common.database import Engines, create_engines
from healthinfo.common.lifecycle import Lifecycle
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.config import Settings
from healthinfo.db import migrate
from healthinfo.health_information import rest as health_information_rest
from healthinfo.health_information.cache import HealthInformationCache
from healthinfo.health_information.cache_warming import CacheWarmer
from healthinfo.health_information.codec import JsonAnswerCodec
from healthinfo.health_information.repository import HealthInformationRepository
from healthinfo.health_information.schemas import PatchAnswers, ReplaceAnswers
from healthinfo.health_information.service import ChangeEvent, HealthInformationService
from healthinfo.infra.cache_factory import CacheCloser, build_cache
from healthinfo.infra.metrics import Metrics
from healthinfo.kits import rest as kits_rest
from healthinfo.kits.schemas import MemberRole
from healthinfo.kits.service import KitService
from healthinfo.questionnaires import rest as questionnaires_rest
from healthinfo.questionnaires.registry import QuestionnaireRegistry
from healthinfo.services import Services

logger = logging.getLogger(__name__)

LEGACY_PREFIXES = ("/kits/", "/questionnaires/")
BODY_SCHEMAS = (Problem, ReplaceAnswers, PatchAnswers, MemberRole)


def build_engines(settings: Settings) -> Engines:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return create_engines(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        timeout=settings.db_timeout_seconds,
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


def build_services(settings: Settings, engines: Engines) -> Services:
    uows = UnitOfWorkFactory(engines)
    metrics = Metrics()
    codec = JsonAnswerCodec()
    cache = build_cache(settings, metrics)
    hi_cache = HealthInformationCache(cache, codec=codec, metrics=metrics)
    audit = AuditLog()
    kits = KitService(audit=audit, auto_claim=settings.auto_claim)
    questionnaires = QuestionnaireRegistry.builtin()
    health_information = HealthInformationService(
        kits=kits,
        repository=HealthInformationRepository(codec=codec),
        cache=hi_cache,
        questionnaire=questionnaires.get(settings.questionnaire_id),
        audit=audit,
        strict_preconditions=settings.strict_preconditions,
        retry_attempts=settings.write_retry_attempts,
    )
    services = Services(
        settings=settings,
        uows=uows,
        writes=WriteRunner(uows=uows, audit=audit),
        audit=audit,
        kits=kits,
        health_information=health_information,
        questionnaires=questionnaires,
        tokens=build_token_verifier(settings),
        metrics=metrics,
        cache=cache,
    )
    if cache is not None:

        async def write_through(event: ChangeEvent) -> None:
            await hi_cache.remember(event.state)

        health_information.add_listener(write_through)
        services.components.append(CacheCloser(cache))
        services.components.append(
            CacheWarmer(
                uows=uows,
                service=health_information,
                hours=settings.cache_warm_hours,
                max_kits=settings.cache_warm_max_kits,
            )
        )
    return services


def api_router() -> APIRouter:
    """Every versioned route; mounted under /v1 and again, deprecated, without a prefix."""
    router = APIRouter()
    for module in (health_information_rest, kits_rest, audit_rest, questionnaires_rest):
        router.include_router(module.router)
    return router


def create_app(settings: Settings) -> FastAPI:
    engines = build_engines(settings)
    services = build_services(settings, engines)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.should_migrate_on_start:
            await migrate.upgrade(engines.write)
        started: list[Lifecycle] = []
        try:
            for component in services.components:
                await component.start()
                started.append(component)
            yield
        finally:
            for component in reversed(started):
                await component.stop()
            await engines.dispose()

    app = FastAPI(
        title="Health Information Service",
        version=__version__,
        description="Durable, audited, access-checked health questionnaire answers for test kits.",
        lifespan=lifespan,
    )
    app.state.services = services
    routes = api_router()
    app.include_router(routes, prefix="/v1")
    app.include_router(
        routes, deprecated=True, include_in_schema=True, generate_unique_id_function=_legacy_id
    )
    app.include_router(health.router)
    install_problem_handlers(app)
    app.add_middleware(LegacyRouteMiddleware, legacy_prefixes=LEGACY_PREFIXES)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    app.add_middleware(RequestIdMiddleware)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _legacy_id(route: Any) -> str:
    return f"legacy_{route.name}"


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in BODY_SCHEMAS:
            definition = model.model_json_schema(
                by_alias=True, ref_template="#/components/schemas/{model}"
            )
            components.update(definition.pop("$defs", {}))
            components[model.__name__] = definition
        app.openapi_schema = schema
    return app.openapi_schema
