"""The admin port: liveness, readiness and metrics; JSON errors for anything else."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.sidecar.conftest import Running, fetch

REQUIRED = {
    "sidecar_requests": {"route", "status", "upstream"},
    "sidecar_request_duration_seconds": {"route", "upstream"},
    "sidecar_ratelimited": {"rule", "upstream"},
    "sidecar_ratelimit_shadow": {"rule", "upstream"},
    "sidecar_shed": {"reason", "upstream"},
    "sidecar_requests_in_flight": {"upstream"},
    "sidecar_upstream_up": {"upstream"},
    "sidecar_probe_duration_seconds": {"upstream"},
    "sidecar_probes": {"upstream", "result"},
}


def test_admin_endpoints_answer_and_metrics_carry_the_contracted_labels(
    start_upstream: Callable[..., Running], start_sidecar: Callable[..., Running]
) -> None:
    upstream = start_upstream()
    sidecar = start_sidecar(upstream.url, rules="rules: [{name: any, key: route, limits: [100/second]}]")
    assert fetch(sidecar.url + "/echo").status == 200

    health = fetch(sidecar.admin + "/sidecar/health")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    ready = fetch(sidecar.admin + "/sidecar/ready")
    assert (ready.status, ready.json()) == (200, {"status": "ready", "upstreams": {"stable": "up"}})

    families = {f.name: f for f in text_string_to_metric_families(fetch(sidecar.admin + "/metrics").body.decode())}
    for name, labels in REQUIRED.items():
        assert name in families, name
        samples = [s for s in families[name].samples if not s.name.endswith("_created")]
        assert samples, name
        assert all(labels <= set(s.labels) for s in samples), (name, samples[0].labels)
    assert "process_cpu_seconds" in families and "process_resident_memory_bytes" in families
    answered = [s for s in families["sidecar_requests"].samples if s.name == "sidecar_requests_total"]
    assert [(s.labels, s.value) for s in answered] == [({"route": "other", "status": "200", "upstream": "stable"}, 1.0)]

    openmetrics = fetch(sidecar.admin + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")


def test_unknown_admin_paths_and_methods_get_json_errors(
    start_upstream: Callable[..., Running], start_sidecar: Callable[..., Running]
) -> None:
    sidecar = start_sidecar(start_upstream().url)
    missing = fetch(sidecar.admin + "/nope")
    assert missing.status == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = fetch(sidecar.admin + "/sidecar/health", method="DELETE")
    assert wrong.status == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
