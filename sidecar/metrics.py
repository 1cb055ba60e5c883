"""Every Prometheus metric the sidecar exports, declared in one place."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    gc_collector,
    platform_collector,
    process_collector,
)

from servicekit.latency import LATENCY_BUCKETS
from sidecar import __version__
from sidecar.routes import BLOCKED, KNOWN_ROUTES, OTHER

# A health probe on loopback answers in about a millisecond; the top buckets catch a struggling bot.
PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SHED_REASONS = ("max_in_flight", "upstream_down", "draining", "body_buffer")
CONNECTION_REFUSALS = ("per_client", "max_connections")
CLIENT_TIMEOUT_PHASES = ("head", "body")
UPSTREAM_ERROR_KINDS = ("connect_timeout", "connect_refused", "reset", "read_timeout")
PROBE_RESULTS = ("ok", "bad_status", "timeout", "refused")
ROUTE_LABELS = (*KNOWN_ROUTES, OTHER.label, BLOCKED.label)


class SidecarMetrics:
    """The sidecar's metrics, bound to one registry, with label children bound once and reused.

    Looking up a child through `.labels()` costs more than the increment itself, so the
    hot path goes through `observe_request`, which caches children by their label tuple.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        upstreams: tuple[str, ...] = ("stable",),
        rules: tuple[str, ...] = (),
        default_collectors: bool = True,
    ) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        for collector in (process_collector.ProcessCollector, platform_collector.PlatformCollector, gc_collector.GCCollector):
            if default_collectors:
                collector(registry=r)
        self.requests = Counter(
            "sidecar_requests", "Requests answered by the sidecar, rejections included.",
            ("route", "status", "upstream"), registry=r,
        )
        self.request_duration = Histogram(
            "sidecar_request_duration_seconds", "Time from request head received to response sent.",
            ("route", "upstream"), buckets=LATENCY_BUCKETS, registry=r,
        )
        # Every series carries `upstream` (the side a request was routed to), so stable and canary compare.
        self.in_flight = Gauge(
            "sidecar_requests_in_flight", "Requests admitted and not yet answered.", ("upstream",), registry=r,
        )
        self.ratelimited = Counter(
            "sidecar_ratelimited", "Requests refused with 429 by a rate-limit rule.", ("rule", "upstream"), registry=r,
        )
        self.ratelimit_shadow = Counter(
            "sidecar_ratelimit_shadow", "Requests a shadow-mode rule would have refused (let through).",
            ("rule", "upstream"), registry=r,
        )
        self.ratelimit_errors = Counter(
            "sidecar_ratelimit_errors", "Rate-limit checks skipped because the shared storage failed (fail open).",
            ("upstream",), registry=r,
        )
        self.shed = Counter(
            "sidecar_shed", "Requests refused with 503 before reaching an upstream.", ("reason", "upstream"), registry=r,
        )
        self.upstream_up = Gauge("sidecar_upstream_up", "1 while the probe considers the upstream healthy.", ("upstream",), registry=r)
        self.probe_duration = Histogram(
            "sidecar_probe_duration_seconds", "Active health probe latency.", ("upstream",),
            buckets=PROBE_BUCKETS, registry=r,
        )
        self.probes = Counter("sidecar_probes", "Active health probes by result.", ("upstream", "result"), registry=r)
        self.upstream_errors = Counter(
            "sidecar_upstream_errors", "Proxied requests that failed at the upstream, by kind.",
            ("upstream", "kind"), registry=r,
        )
        # Connections are refused before any request is read, so these carry no route or upstream.
        self.buffered_body_bytes = Gauge(
            "sidecar_buffered_body_bytes", "Request body bytes held while their requests are read whole.", registry=r,
        )
        self.client_connections = Gauge(
            "sidecar_client_connections", "Open client connections on the public port.", registry=r,
        )
        self.connections_refused = Counter(
            "sidecar_connections_refused", "Client connections answered 503 and closed at once because a connection cap was reached.",
            ("reason",), registry=r,
        )
        self.client_timeouts = Counter(
            "sidecar_client_timeouts", "Requests cut off because the client did not send the head or the body within its deadline.",
            ("phase",), registry=r,
        )
        self.build_info = Info("sidecar_build", "Version of the running sidecar.", registry=r)
        self.build_info.info({"version": __version__})

        # Series that exist from the start, at zero, so dashboards and rules see them before the first event.
        for reason in CONNECTION_REFUSALS:
            self.connections_refused.labels(reason)
        for phase in CLIENT_TIMEOUT_PHASES:
            self.client_timeouts.labels(phase)
        for upstream in upstreams:
            self.upstream_up.labels(upstream)
            for kind in UPSTREAM_ERROR_KINDS:
                self.upstream_errors.labels(upstream, kind)
            for result in PROBE_RESULTS:
                self.probes.labels(upstream, result)
            self.probe_duration.labels(upstream)
            self.ratelimit_errors.labels(upstream)
            for reason in SHED_REASONS:
                self.shed.labels(reason, upstream)
            for rule in rules:
                self.ratelimited.labels(rule, upstream)
                self.ratelimit_shadow.labels(rule, upstream)
        self._counts: dict[tuple[str, int, str], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}
        self._children: dict[tuple[object, ...], Any] = {}

    def bound(self, metric: Counter, *labels: str) -> Any:
        """The child of `metric` for these label values, bound once and then reused."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, route: str, status: int, upstream: str, elapsed: float, exemplar: dict[str, str] | None) -> None:
        """Count one answered request and its latency."""
        key = (route, status, upstream)
        counter = self._counts.get(key)
        if counter is None:
            counter = self._counts[key] = self.requests.labels(route, str(status), upstream)
        counter.inc()
        duration = self._durations.get((route, upstream))
        if duration is None:
            duration = self._durations[(route, upstream)] = self.request_duration.labels(route, upstream)
        duration.observe(elapsed, exemplar)
