"""Prometheus where the docs say it runs: the compose config (service names) and the host config in
deploy/ (loopback, beside systemd or Supervisor), each checked by promtool and by a real scrape."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import yaml

from tests.support.ports import free_port
from tests.support.processes import ROOT, Process, python_module
from tests.support.services import require_binary

COMPOSE = ROOT / "prometheus" / "prometheus.yml"
HOST = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def load(path: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def targets(config: dict) -> dict[str, list[str]]:  # type: ignore[type-arg]
    return {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}


def test_promtool_accepts_the_host_config_and_finds_every_rule_file() -> None:
    result = subprocess.run([require_binary("promtool"), "check", "config", str(HOST)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = sorted(p.name for p in (ROOT / "prometheus" / "rules").glob("*.rules.yml"))
    assert f"{len(rule_files)} rule files found" in result.stdout + result.stderr, result.stdout + result.stderr


def test_the_host_config_is_the_compose_one_with_loopback_addresses() -> None:
    host, compose = load(HOST), load(COMPOSE)
    assert targets(host) == {"bot": ["127.0.0.1:18789"], "sidecar": ["127.0.0.1:9901"], "prometheus": ["127.0.0.1:9090"],
                             "alertmanager": ["127.0.0.1:9093"], "redis": ["127.0.0.1:9121"]}
    assert host["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    for config in (host, compose):
        for job in config["scrape_configs"]:
            job.pop("static_configs")
        config.pop("alerting")
        config.pop("rule_files")
    assert host == compose


def test_the_compose_config_names_services_that_compose_runs_on_those_ports() -> None:
    services = load(ROOT / "docker-compose.yml")["services"]
    for job, addresses in targets(load(COMPOSE)).items():
        for address in addresses:
            name, port = address.rsplit(":", 1)
            if name == "localhost":
                continue
            assert name in services, f"{job}: {name} is not a compose service"
            command = " ".join(map(str, services[name].get("command", []) or []))
            environment = str(services[name].get("environment", ""))
            assert port in command + environment + str(services[name].get("ports", "")) + str(
                services[name].get("healthcheck", "")), f"{job}: nothing in compose puts {name} on port {port}"


def test_the_host_config_scrapes_a_bot_and_sidecar_running_beside_it(tmp_path: Path) -> None:
    """The host config as shipped, with only its port numbers moved to free ones."""
    ports = {"18789": free_port(), "9901": free_port(), "9090": free_port(), "9093": free_port(), "9121": free_port()}
    text = HOST.read_text(encoding="utf-8")
    for fixed, free in ports.items():
        text = text.replace(f":{fixed}", f":{free}")
    workdir = tmp_path / "deploy" / "prometheus"
    workdir.mkdir(parents=True)
    (workdir / "prometheus.yml").write_text(text, encoding="utf-8")
    # The config finds its rules relative to itself, as in a checkout under /opt/botwatch.
    (tmp_path / "prometheus").symlink_to(ROOT / "prometheus")
    bot = Process("bot", python_module("bot"), {"BOT_PORT": str(ports["18789"]), "BOT_DATA_DIR": str(tmp_path)},
                  tmp_path)
    sidecar = Process("sidecar", python_module("sidecar"), {
        "SIDECAR_PORT": str(free_port()), "SIDECAR_ADMIN_PORT": str(ports["9901"]),
        "SIDECAR_UPSTREAM": f"http://127.0.0.1:{ports['18789']}",
    }, tmp_path)
    prometheus = Process("prometheus", [
        require_binary("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{ports['9090']}",
        "--log.level=warn",
    ], {}, tmp_path)
    try:
        bot.wait_http(f"http://127.0.0.1:{ports['18789']}/health")
        sidecar.wait_http(f"http://127.0.0.1:{ports['9901']}/sidecar/health")
        prometheus.wait_http(f"http://127.0.0.1:{ports['9090']}/-/ready", timeout=30)
        import json
        import urllib.request

        def health() -> dict[str, str]:
            url = f"http://127.0.0.1:{ports['9090']}/api/v1/targets?state=active"
            with urllib.request.urlopen(url, timeout=5) as resp:
                active = json.load(resp)["data"]["activeTargets"]
            return {t["labels"]["job"]: t["health"] for t in active}

        deadline = time.monotonic() + 60  # the shipped 15 s scrape interval
        # Alertmanager and the Redis exporter are not run here (tests/integration/test_prometheus_scrape.py
        # scrapes real ones); their jobs must exist all the same.
        wanted = {"bot": "up", "sidecar": "up", "prometheus": "up"}
        while (seen := health()).keys() != {*wanted, "alertmanager", "redis"} or any(
                seen[job] != state for job, state in wanted.items()):
            assert time.monotonic() < deadline, seen
            time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['9090']}/api/v1/rules", timeout=5) as resp:
            groups = json.load(resp)["data"]["groups"]
        assert {"botwatch-sli", "botwatch-alerts"} <= {group["name"] for group in groups}
    finally:
        prometheus.stop()
        sidecar.stop()
        bot.stop()
