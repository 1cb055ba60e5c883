"""promtool checks the committed Prometheus config and rules, and runs every rule unit test."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.support.processes import ROOT
from tests.support.services import require_binary

PROMETHEUS = ROOT / "prometheus"
TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_files_are_valid() -> None:
    result = promtool("check", "rules", *sorted((PROMETHEUS / "rules").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_scrapes_bot_sidecar_admin_and_itself() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {"bot": ["bot:18789"], "sidecar": ["sidecar:9901"], "prometheus": ["localhost:9090"]}
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


@pytest.mark.parametrize("test_file", TESTS, ids=[p.name for p in TESTS])
def test_rule_unit_tests_pass(test_file: Path) -> None:
    result = promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_stays_silent() -> None:
    cases: dict[str, set[str]] = defaultdict(set)
    for test_file in TESTS:
        for test in yaml.safe_load(test_file.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                cases[case["alertname"]].add("fires" if case.get("exp_alerts") else "silent")
    alerts = [
        rule["alert"] for path in sorted((PROMETHEUS / "rules").glob("*.rules.yml"))
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]
        if "alert" in rule
    ]
    missing = {alert: {"fires", "silent"} - cases[alert] for alert in alerts if cases[alert] != {"fires", "silent"}}
    assert not missing, f"alerts without both cases: {missing}"


def test_a_wrong_expectation_fails_promtool(tmp_path: Path) -> None:
    """The rule tests can fail: the same input with the opposite expectation is refused."""
    source = yaml.safe_load((PROMETHEUS / "tests" / "alerts.test.yml").read_text(encoding="utf-8"))
    first = source["tests"][0]
    first["alert_rule_test"] = [{"eval_time": "5m", "alertname": "BotDown", "exp_alerts": []}]
    source["tests"] = [first]
    source["rule_files"] = [str(PROMETHEUS / "rules" / name) for name in ("recording.rules.yml", "alerts.rules.yml")]
    broken = tmp_path / "inverted.test.yml"
    broken.write_text(yaml.safe_dump(source), encoding="utf-8")
    result = promtool("test", "rules", broken)
    assert result.returncode != 0
    assert "BotDown" in result.stdout + result.stderr
