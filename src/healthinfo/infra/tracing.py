"""OpenTelemetry tracing, on when ``HEALTHINFO_OTEL_ENABLED=true`` (docs/operations.md).

Spans: the server span of every request (FastAPI instrumentation, which continues the trace of
an incoming W3C ``traceparent``), database statements (SQLAlchemy, on our engines, replicas too),
Redis commands and outgoing HTTP (httpx: forwarding, JWKS). Exported over OTLP/HTTP to
``HEALTHINFO_OTEL_EXPORTER_ENDPOINT``, else to where the standard ``OTEL_EXPORTER_OTLP_*``
variables say; sampling and resource attributes follow the standard ``OTEL_*`` variables too.

**No health data in spans.** Every finished span passes through ``RedactingSpanProcessor``
before any exporter sees it: attributes are kept only if their key is on an allow-list
(method, route template, status, server address, the database system and its parameterised
statement, …); URLs lose their query strings (``?access_token=<JWT>``); exception events keep
the exception's type only, never its message or stack text; status descriptions are dropped.
The instrumentations themselves record no statement parameters (SQLAlchemy records the
statement text with placeholders, Redis ``SET ? ?``), and request and response bodies are
never captured. We never set the global tracer provider: each instrumentation is handed ours,
so FastAPI's native telemetry (which would follow a global provider) stays off.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import FastAPI
from opentelemetry.context import Context
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import INVALID_SPAN_ID, INVALID_TRACE_ID, Link, Status, StatusCode
from opentelemetry.util.types import Attributes

from healthinfo import __version__
from healthinfo.common.database import Engines
from healthinfo.infra.redaction import scrub_text

SERVICE_NAME = "healthinfo"
EXCLUDED_URLS = "/health/live,/health/ready,/metrics"
OTLP_TRACES_PATH = "/v1/traces"

# Attribute keys that describe a request, never its contents.
SAFE_ATTRIBUTES = frozenset(
    {
        "http.method",
        "http.request.method",
        "http.request.method_original",
        "http.status_code",
        "http.response.status_code",
        "http.route",
        "http.scheme",
        "http.flavor",
        "http.host",
        "http.server_name",
        "http.request_content_length",
        "http.response_content_length",
        "http.request.body.size",
        "http.response.body.size",
        "url.scheme",
        "network.protocol.name",
        "network.protocol.version",
        "network.transport",
        "net.transport",
        "server.address",
        "server.port",
        "net.host.name",
        "net.host.port",
        "net.peer.name",
        "net.peer.port",
        "error.type",
        "exception.type",
        "exception.escaped",
        "db.system",
        "db.system.name",
        "db.name",
        "db.namespace",
        "db.user",
        "db.operation",
        "db.operation.name",
        "db.statement",
        "db.query.text",
        "db.redis.database_index",
        "db.redis.args_length",
        "db.redis.pipeline_length",
        "db.operation.batch.size",
        "asgi.event.type",
        "code.function.name",
    }
)
# Attribute keys holding URLs or paths: kept without their query strings.
URL_ATTRIBUTES = frozenset({"url.full", "http.url", "http.target", "url.path"})


def _keep_netloc(value: str) -> str:
    """``_without_query`` keeps the host but drops user info; add the port back."""
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "[redacted]"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact_attributes(attributes: Attributes) -> dict[str, Any]:
    """Keep allow-listed keys; URLs without query strings or credentials; drop the rest."""
    kept: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if key in URL_ATTRIBUTES and isinstance(value, str):
            kept[key] = _keep_netloc(value)
        elif key in SAFE_ATTRIBUTES:
            kept[key] = scrub_text(value) if isinstance(value, str) else value
    return kept


def _redact_event(event: Event) -> Event:
    return Event(
        name=event.name,
        attributes=redact_attributes(event.attributes),
        timestamp=event.timestamp,
    )


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` fit to leave the process."""
    status = span.status
    return ReadableSpan(
        name=scrub_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=redact_attributes(span.attributes),
        events=[_redact_event(event) for event in span.events],
        links=[Link(link.context, redact_attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=Status(status.status_code) if status.status_code != StatusCode.UNSET else status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanProcessor(SpanProcessor):
    """Hands the wrapped processor (and so the exporter) only redacted copies of spans."""

    def __init__(self, delegate: SpanProcessor) -> None:
        self._delegate = delegate

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._delegate.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._delegate.on_end(redact_span(span))

    def shutdown(self) -> None:
        self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._delegate.force_flush(timeout_millis)


def otlp_exporter(endpoint: str | None) -> SpanExporter:
    """OTLP over HTTP; ``endpoint`` is the collector's base URL (``http://collector:4318``)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if endpoint is None:
        return OTLPSpanExporter()  # the standard OTEL_EXPORTER_OTLP_* variables decide
    traces = endpoint.rstrip("/")
    if not traces.endswith(OTLP_TRACES_PATH):
        traces += OTLP_TRACES_PATH
    return OTLPSpanExporter(endpoint=traces)


class PrivateRandomIdGenerator(IdGenerator):
    """Trace and span ids from a ``random.Random`` of our own, not the process-wide one.

    OpenTelemetry's default draws from the ``random`` module's shared state, on every span.
    Anything else that seeds or checks that state then meets our ids: a library calling
    ``random.seed(n)`` would make every process repeat the same trace ids, and Hypothesis
    (the model-based and schema-fuzzing tests) fails a run when the shared state moves under
    it, which the app's background spans did. Seeded from the OS; not a secret, only unique.
    """

    def __init__(self) -> None:
        self._random = random.Random()

    def generate_span_id(self) -> int:
        span_id = self._random.getrandbits(64)
        while span_id == INVALID_SPAN_ID:
            span_id = self._random.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = self._random.getrandbits(128)
        while trace_id == INVALID_TRACE_ID:
            trace_id = self._random.getrandbits(128)
        return trace_id


class Tracing:
    """The tracer provider and the instrumentation of one app; a Lifecycle component."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        environment: str,
        batch: bool = True,
    ) -> None:
        resource = Resource.create(
            {
                "service.name": SERVICE_NAME,
                "service.version": __version__,
                "deployment.environment.name": environment,
            }
        )
        self.provider = TracerProvider(resource=resource, id_generator=PrivateRandomIdGenerator())
        inner = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(RedactingSpanProcessor(inner))
        self._app: FastAPI | None = None

    def instrument(self, app: FastAPI, engines: Engines) -> None:
        """Server spans for ``app``; database spans for ``engines``; Redis and httpx spans."""
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            excluded_urls=EXCLUDED_URLS,
            exclude_spans=["receive", "send"],
            http_capture_headers_server_request=[],
            http_capture_headers_server_response=[],
        )
        self._app = app
        sync_engines = _unique(
            [engine.sync_engine for engine in (engines.write, engines.read, *engines.replicas)]
        )
        # Process-wide instrumentors: re-instrument so the newest app's provider is used.
        sqlalchemy, redis, httpx = _instrumentors()
        for instrumentor in (sqlalchemy, redis, httpx):
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
        # The contrib package declares SQLAlchemy < 2.1; it only listens to the engine's
        # before/after_cursor_execute events, which 2.1 keeps (tests/integration/test_tracing.py
        # proves the spans), so its version check is skipped.
        sqlalchemy.instrument(
            engines=sync_engines,
            tracer_provider=self.provider,
            enable_commenter=False,
            skip_dep_check=True,
        )
        redis.instrument(tracer_provider=self.provider)
        httpx.instrument(tracer_provider=self.provider)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """Export what is buffered, then remove the instrumentation (tests build many apps)."""
        for instrumentor in _instrumentors():
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
        if self._app is not None:
            FastAPIInstrumentor.uninstrument_app(self._app)
        self.provider.shutdown()


def _instrumentors() -> tuple[SQLAlchemyInstrumentor, RedisInstrumentor, HTTPXClientInstrumentor]:
    return SQLAlchemyInstrumentor(), RedisInstrumentor(), HTTPXClientInstrumentor()


def _unique(items: Sequence[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if not any(item is other for other in seen):
            seen.append(item)
    return seen


def build_tracing(
    *, enabled: bool, endpoint: str | None, environment: str, exporter: SpanExporter | None
) -> Tracing | None:
    """A ``Tracing`` when enabled (or when a test hands in its exporter), else None."""
    if exporter is not None:
        return Tracing(exporter, environment=environment, batch=False)
    if not enabled:
        return None
    return Tracing(otlp_exporter(endpoint), environment=environment)
