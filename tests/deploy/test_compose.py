"""docker-compose.yml and the Dockerfile. No Docker engine runs here: Debian's docker-compose
validates the file, and the rest is checked statically against the files it names."""

from __future__ import annotations

import re
import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from monitoring.slo import load_slo
from tests.support.processes import ROOT
from tests.support.services import require_binary

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
ONE_SHOT = {"elk-setup"}
EXPECTED = {
    "bot", "sidecar", "redis", "prometheus", "alertmanager", "grafana", "elasticsearch", "logstash",
    "filebeat", "kibana", "jaeger", "elk-setup", "locust",
}


def dotenv() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def test_docker_compose_validates_the_file() -> None:
    result = subprocess.run(
        [require_binary("docker-compose"), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
         "config", "--quiet"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_a_broken_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The validation above can fail: an unknown key under a service is refused."""
    broken = dict(COMPOSE, services={**SERVICES, "bot": {**SERVICES["bot"], "memory_limitt": "1g"}})
    (tmp_path / ".env").write_text((ROOT / ".env").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = subprocess.run(
        [require_binary("docker-compose"), "config", "--quiet"], capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "memory_limitt" in result.stderr


def test_the_whole_stack_is_there() -> None:
    assert set(SERVICES) == EXPECTED
    assert SERVICES["locust"]["profiles"] == ["load"]
    assert all("profiles" not in spec for name, spec in SERVICES.items() if name != "locust")


@pytest.mark.parametrize("name", sorted(EXPECTED - ONE_SHOT))
def test_each_service_has_a_healthcheck_and_a_memory_limit(name: str) -> None:
    spec = SERVICES[name]
    assert spec["healthcheck"]["test"], name
    assert not spec["healthcheck"].get("disable"), name
    assert spec["mem_limit"], name


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
