"""Trace context: a valid traceparent is continued under a new span; anything else starts a trace."""

from __future__ import annotations

import re

import pytest

from sidecar.tracing import Tracing

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
HEADER = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]")


def test_a_valid_traceparent_keeps_its_trace_and_sampling_with_a_new_span() -> None:
    trace = Tracing(0.0).start(PARENT, "/health")
    assert trace.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert trace.span_id != "b7ad6b7169203331"
    assert trace.sampled
    assert trace.traceparent() == b"00-0af7651916cd43dd8448eb211c80319c-" + trace.span_id.encode() + b"-01"


def test_an_unsampled_parent_stays_unsampled() -> None:
    trace = Tracing(1.0).start(PARENT[:-2] + b"00", "/health")
    assert not trace.sampled


@pytest.mark.parametrize(
    "header",
    [
        None, b"", b"garbage", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    ],
)
def test_anything_else_starts_a_new_trace(header: bytes | None) -> None:
    trace = Tracing(0.0).start(header, "/health")
    assert trace.trace_id != "0af7651916cd43dd8448eb211c80319c"
    assert HEADER.fullmatch(trace.traceparent())


def test_a_future_version_with_extra_fields_is_continued() -> None:
    trace = Tracing(0.0).start(b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-more", "/health")
    assert trace.trace_id == "0af7651916cd43dd8448eb211c80319c"


def test_new_traces_are_sampled_at_the_configured_ratio() -> None:
    assert all(Tracing(1.0).start(None, "/").sampled for _ in range(50))
    assert not any(Tracing(0.0).start(None, "/").sampled for _ in range(50))
    ids = {Tracing(0.0).start(None, "/").trace_id for _ in range(200)}
    assert len(ids) == 200


def test_with_an_exporter_sampled_requests_are_recorded_as_server_spans_under_the_callers_parent() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace = Tracing(1.0, provider).start(PARENT, "/api/v1/chat")
    assert trace.exemplar() == {"trace_id": "0af7651916cd43dd8448eb211c80319c"}
    trace.end(200, "/api/v1/chat", "canary")
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(span.context.span_id, "016x") == trace.span_id
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"  # type: ignore[union-attr]
    assert span.attributes == {"http.route": "/api/v1/chat", "http.response.status_code": 200, "botwatch.upstream": "canary"}
    provider.shutdown()


def test_with_an_exporter_unsampled_parents_record_nothing() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace = Tracing(1.0, provider).start(PARENT[:-2] + b"00", "/health")
    assert not trace.sampled and trace.exemplar() is None
    trace.end(200, "/health", "stable")
    assert exporter.get_finished_spans() == ()
    provider.shutdown()
