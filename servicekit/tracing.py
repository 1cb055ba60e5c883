"""OpenTelemetry set-up: a tracer per process, OTLP export only when configured."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

propagator = TraceContextTextMapPropagator()


def create_tracer_provider(
    service_name: str, version: str, otlp_endpoint: str | None, sample_ratio: float
) -> TracerProvider:
    """Build a provider whose spans always carry ids, recorded and exported only when sampled.

    Without an exporter nothing is recorded (ALWAYS_OFF), but the SDK still mints or
    inherits trace ids, so every log line stays correlated at almost no cost.
    """
    resource = Resource.create({"service.name": service_name, "service.version": version})
    if not otlp_endpoint:
        return TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    exporter = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def extract_context(headers: Mapping[str, str]) -> Context | None:
    """Read a W3C traceparent from incoming headers; None when absent (the common case)."""
    if "traceparent" not in headers:
        return None
    return propagator.extract(headers)


def exemplar() -> dict[str, str] | None:
    """An exemplar for a latency observation, only for spans that are kept (sampled)."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.trace_flags.sampled and ctx.trace_id:
        return {"trace_id": format(ctx.trace_id, "032x")}
    return None


def traceparent() -> str | None:
    """The header value that continues the current trace in an outgoing request."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.trace_id:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
