"""W3C trace context for each proxied request: continue the caller's trace or start one."""

from __future__ import annotations

import random
import re

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


class RequestTrace:
    """The ids one request carries: its trace, the sidecar's own span, and whether it is sampled."""

    __slots__ = ("trace_id", "span_id", "sampled", "span")

    def __init__(self, trace_id: str, span_id: str, sampled: bool, span: Span | None = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.span = span

    def traceparent(self) -> bytes:
        """The header that makes the sidecar's span the parent of the upstream's."""
        return b"00-%s-%s-%s" % (self.trace_id.encode(), self.span_id.encode(), b"01" if self.sampled else b"00")

    def exemplar(self) -> dict[str, str] | None:
        return {"trace_id": self.trace_id} if self.span is not None else None

    def end(self, status: int, route: str, upstream: str) -> None:
        """Finish the recorded span, if this request has one."""
        span = self.span
        if span is not None:
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            span.set_attribute("botwatch.upstream", upstream)
            span.end()


class Tracing:
    """Mint or continue trace ids cheaply; record spans only when an exporter is configured.

    Without an exporter no OpenTelemetry span is created per request: ids are plain random
    numbers, which costs a fraction of a span and still correlates the logs of the sidecar
    and the bot. New traces are marked sampled at `ratio`, so the edge makes the head-based
    sampling decision the bot's parent-based sampler then follows.
    """

    def __init__(self, ratio: float, provider: TracerProvider | None = None) -> None:
        self.ratio = ratio
        self._sample_below = round(ratio * 2**32)
        self._tracer = provider.get_tracer("sidecar") if provider is not None else None

    def start(self, traceparent: bytes | None, name: str) -> RequestTrace:
        parent = _parse(traceparent) if traceparent else None
        if self._tracer is not None:
            return self._start_span(parent, name)
        # One draw gives the trace id, the span id and the sampling decision (os.urandom would
        # cost a system call per request).
        ids = "%056x" % random.getrandbits(224)
        if parent is not None:
            return RequestTrace(parent[0], ids[32:48], parent[2])
        return RequestTrace(ids[:32], ids[32:48], int(ids[48:], 16) < self._sample_below)

    def _start_span(self, parent: tuple[str, str, bool] | None, name: str) -> RequestTrace:
        assert self._tracer is not None
        context = None
        if parent is not None:
            remote = SpanContext(
                int(parent[0], 16), int(parent[1], 16), is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if parent[2] else TraceFlags.DEFAULT),
            )
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        span = self._tracer.start_span(name, context=context, kind=SpanKind.SERVER)
        ctx = span.get_span_context()
        recorded = span if span.is_recording() else None
        return RequestTrace(format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), ctx.trace_flags.sampled, recorded)


def _parse(header: bytes) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) from a traceparent header, or None if it is invalid."""
    match = _TRACEPARENT.fullmatch(header.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags = match.group(1, 2, 3, 4)
    if version == b"ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == b"00" and len(header.strip()) != 55:
        return None
    return trace_id.decode(), span_id.decode(), bool(int(flags, 16) & 1)
