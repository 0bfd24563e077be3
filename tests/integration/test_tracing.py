"""Tracing: spans for requests, statements and Redis; the caller's trace continues; no health data.

The app exports to an in-memory exporter through the same ``RedactingSpanProcessor`` that
guards the OTLP exporter in production. A second, raw exporter sees the spans as the
instrumentations made them, which shows what the redaction is for (``?access_token=`` in the
server span's URL) and what the instrumentations never record (statement parameters).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from healthinfo.app import create_app
from healthinfo.config import Settings
from healthinfo.infra.logging import configure_logging
from tests.conftest import open_client
from tests.support.answers import COMPLETE
from tests.support.tokens import auth, token

TEXT = "MARKER-t7r4"
EMAIL = "marker.t7r4@example.org"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@dataclass
class Traced:
    app: FastAPI
    exported: InMemorySpanExporter
    raw: InMemorySpanExporter


@pytest.fixture(scope="module")
async def traced(make_settings: Callable[..., Settings]) -> AsyncIterator[Traced]:
    exported, raw = InMemorySpanExporter(), InMemorySpanExporter()
    app = create_app(
        make_settings(rate_limit_enabled=False, db_pool_size=2, db_max_overflow=4),
        span_exporter=exported,
    )
    app.state.tracing.provider.add_span_processor(SimpleSpanProcessor(raw))
    async with app.router.lifespan_context(app):
        yield Traced(app, exported, raw)


def span_text(span: ReadableSpan) -> str:
    """Everything a span carries that an exporter would send, as one string."""
    return json.dumps(
        {
            "name": span.name,
            "attributes": dict(span.attributes or {}),
            "events": [(e.name, dict(e.attributes or {})) for e in span.events],
            "links": [dict(link.attributes or {}) for link in span.links],
            "status": span.status.description,
        },
        default=str,
    )


def of_trace(spans: Iterable[ReadableSpan], trace_id: str) -> list[ReadableSpan]:
    return [s for s in spans if s.context and format(s.context.trace_id, "032x") == trace_id]


async def test_a_request_continues_the_callers_trace_with_server_and_database_spans(
    traced: Traced, capsys: pytest.CaptureFixture[str]
) -> None:
    kit, owner = f"KIT-{uuid.uuid4().hex[:12]}", f"owner-{uuid.uuid4().hex[:8]}"
    owner_token = token(owner)
    answers = {**COMPLETE, "medications": TEXT, "additionalNotes": f"mail {EMAIL}"}
    traced.exported.clear()
    traced.raw.clear()
    configure_logging(level="INFO", json=True)
    capsys.readouterr()
    async with await open_client(traced.app) as client:
        url = f"/v1/kits/{kit}/health-information"
        headers = {**auth(owner), "traceparent": TRACEPARENT}
        assert (
            await client.put(url, json={"answers": answers}, headers=headers)
        ).status_code == 201
        read = await client.get(f"{url}?access_token={owner_token}", headers=headers)
        assert read.status_code == 200
        wrong = await client.patch(url, json={"answers": {"heightCm": TEXT}}, headers=headers)
        assert wrong.status_code == 422

    spans = of_trace(traced.exported.get_finished_spans(), TRACE_ID)
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(servers) == 3, [s.name for s in spans]
    assert {s.attributes["http.route"] for s in servers if s.attributes} == {
        "/v1/kits/{kitId}/health-information"
    }
    assert all(s.parent and format(s.parent.span_id, "016x") == "00f067aa0ba902b7" for s in servers)
    statements = [s for s in spans if s.attributes and "db.statement" in s.attributes]
    assert any(
        "health_information" in str(s.attributes["db.statement"])  # type: ignore[index]
        for s in statements
    ), "no database span"
    if traced.app.state.services.settings.redis_url:
        assert any(s.attributes.get("db.system") == "redis" for s in spans if s.attributes)

    for span in traced.exported.get_finished_spans():
        text = span_text(span)
        for marker in (TEXT, EMAIL, owner_token, "access_token="):
            assert marker not in text, f"{marker!r} in exported span {span.name}: {text}"

    # What the redaction removed was there: the raw server span has the token in its URL.
    raw_text = " ".join(span_text(s) for s in of_trace(traced.raw.get_finished_spans(), TRACE_ID))
    assert owner_token in raw_text
    # The instrumentations never record statement parameters: not even the raw spans hold
    # the answers, although the statements that stored them were traced.
    assert TEXT not in raw_text
    assert EMAIL not in raw_text

    # Log lines written inside the request carry the trace and span ids.
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    access = [line for line in lines if line.get("event") == "http.request"]
    assert access
    assert {line["trace_id"] for line in access} == {TRACE_ID}
    server_span_ids = {format(s.context.span_id, "016x") for s in servers if s.context}
    assert {line["span_id"] for line in access} <= server_span_ids


async def test_without_a_traceparent_a_new_trace_starts(traced: Traced) -> None:
    traced.exported.clear()
    async with await open_client(traced.app) as client:
        response = await client.get("/v1/questionnaires/health-information", headers=auth("u-1"))
        assert response.status_code == 200
    servers = [s for s in traced.exported.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(servers) == 1
    assert servers[0].parent is None
    attributes = dict(servers[0].attributes or {})
    assert attributes.get("http.response.status_code", attributes.get("http.status_code")) == 200


async def test_outgoing_http_is_traced_without_its_query_string(traced: Traced) -> None:
    """httpx spans (forwarding, JWKS) keep the host and path, never the query."""

    async def lab(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(lab, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    traced.exported.clear()
    try:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{port}/intake?key=secret-{TEXT}")
            assert response.status_code == 204
    finally:
        server.close()
        await server.wait_closed()
    # Background work (the presence heartbeat, the bus) may add Redis client spans meanwhile:
    # only the httpx span is under test.
    clients = [
        s
        for s in traced.exported.get_finished_spans()
        if s.kind == SpanKind.CLIENT
        and any(key.startswith(("http.", "url.")) for key in (s.attributes or {}))
    ]
    assert clients, "no HTTP client span"
    text = span_text(clients[0])
    assert f"http://127.0.0.1:{port}/intake" in text
    assert TEXT not in text
    assert "secret" not in text
