"""The sidecar's metric names, labels and buckets are the contract docs/observability.md names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from servicekit.latency import LATENCY_BUCKETS
from sidecar.metrics import SidecarMetrics


def test_a_request_is_counted_with_route_status_upstream_and_timed_in_the_bots_buckets() -> None:
    registry = CollectorRegistry()
    metrics = SidecarMetrics(registry, upstreams=("stable", "canary"), default_collectors=False)
    metrics.observe_request("/api/v1/chat", 200, "canary", 0.3, None)
    metrics.observe_request("/api/v1/chat", 200, "canary", 0.6, None)
    metrics.observe_request("/api/v1/chat", 429, "stable", 0.001, None)
    value = registry.get_sample_value
    assert value("sidecar_requests_total", {"route": "/api/v1/chat", "status": "200", "upstream": "canary"}) == 2
    assert value("sidecar_requests_total", {"route": "/api/v1/chat", "status": "429", "upstream": "stable"}) == 1
    assert value("sidecar_request_duration_seconds_bucket", {"route": "/api/v1/chat", "upstream": "canary", "le": "0.5"}) == 1
    assert value("sidecar_request_duration_seconds_count", {"route": "/api/v1/chat", "upstream": "canary"}) == 2
    buckets = sorted(
        float(s.labels["le"]) for family in registry.collect() for s in family.samples
        if s.name == "sidecar_request_duration_seconds_bucket" and s.labels["upstream"] == "canary"
    )
    assert buckets == [*LATENCY_BUCKETS, float("inf")]


def test_series_exist_at_zero_before_the_first_event_for_every_upstream() -> None:
    registry = CollectorRegistry()
    SidecarMetrics(registry, upstreams=("stable", "canary"), rules=("chat_client",), default_collectors=False)
    value = registry.get_sample_value
    for upstream in ("stable", "canary"):
        for reason in ("max_in_flight", "upstream_down", "draining"):
            assert value("sidecar_shed_total", {"reason": reason, "upstream": upstream}) == 0
        assert value("sidecar_upstream_up", {"upstream": upstream}) == 0
        assert value("sidecar_probes_total", {"upstream": upstream, "result": "ok"}) == 0
        assert value("sidecar_probe_duration_seconds_count", {"upstream": upstream}) == 0
        assert value("sidecar_ratelimited_total", {"rule": "chat_client", "upstream": upstream}) == 0
        assert value("sidecar_ratelimit_shadow_total", {"rule": "chat_client", "upstream": upstream}) == 0
        assert value("sidecar_ratelimit_errors_total", {"upstream": upstream}) == 0
        for kind in ("connect_timeout", "connect_refused", "reset", "read_timeout"):
            assert value("sidecar_upstream_errors_total", {"upstream": upstream, "kind": kind}) == 0
    assert value("sidecar_build_info", {"version": "0.1.0"}) == 1
    for reason in ("per_client", "max_connections"):
        assert value("sidecar_connections_refused_total", {"reason": reason}) == 0
    for phase in ("head", "body"):
        assert value("sidecar_client_timeouts_total", {"phase": phase}) == 0


# Connection-level series are decided before a request is read (or, for the body buffer, before it is
# routed), so before there is an upstream to name.
CONNECTION_LEVEL = {
    "sidecar_build", "sidecar_client_connections", "sidecar_connections_refused", "sidecar_client_timeouts",
    "sidecar_buffered_body_bytes",
}


def test_every_request_series_carries_the_upstream() -> None:
    registry = CollectorRegistry()
    SidecarMetrics(registry, upstreams=("stable", "canary"), rules=("r",), default_collectors=False)
    names = [f.name for f in registry.collect() if f.name.startswith("sidecar_") and f.name not in CONNECTION_LEVEL]
    assert names
    for family in registry.collect():
        if family.name in names:
            assert all("upstream" in sample.labels for sample in family.samples), family.name
