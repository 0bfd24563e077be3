"""Trace and span ids come from a generator of our own, never the process-wide ``random``."""

from __future__ import annotations

import random

from opentelemetry.trace import INVALID_SPAN_ID, INVALID_TRACE_ID

from healthinfo.infra.tracing import PrivateRandomIdGenerator, Tracing


def test_ids_leave_the_shared_random_state_untouched() -> None:
    """Hypothesis fails a run when the shared state moves under it: the app's spans did."""
    generator = PrivateRandomIdGenerator()
    before = random.getstate()
    for _ in range(100):
        generator.generate_trace_id()
        generator.generate_span_id()
    assert random.getstate() == before


def test_seeding_the_shared_random_does_not_repeat_our_ids() -> None:
    generator = PrivateRandomIdGenerator()
    random.seed(7)
    first = generator.generate_trace_id()
    random.seed(7)
    assert generator.generate_trace_id() != first


def test_ids_are_valid_and_of_the_right_width() -> None:
    generator = PrivateRandomIdGenerator()
    traces = {generator.generate_trace_id() for _ in range(1000)}
    spans = {generator.generate_span_id() for _ in range(1000)}
    assert len(traces) == len(spans) == 1000
    assert INVALID_TRACE_ID not in traces
    assert INVALID_SPAN_ID not in spans
    assert max(traces) < 2**128
    assert max(spans) < 2**64


def test_the_service_tracer_uses_it() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracing = Tracing(InMemorySpanExporter(), environment="test", batch=False)
    assert isinstance(tracing.provider.id_generator, PrivateRandomIdGenerator)
