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


def test_config_scrapes_bot_sidecar_admin_alertmanager_redis_and_itself() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "bot": ["bot:18789"], "sidecar": ["sidecar:9901"], "alertmanager": ["alertmanager:9093"],
        "redis": ["redis-exporter:9121"], "prometheus": ["localhost:9090"],
    }
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


def burn_rate_alert_names() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "rules" / "alerts.rules.yml").read_text(encoding="utf-8"))
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "long_window" in r.get("labels", {})]


def test_every_burn_rate_alert_has_cases_just_above_and_below_its_threshold_for_both_windows() -> None:
    generated = yaml.safe_load((PROMETHEUS / "tests" / "burn_rate_thresholds.test.yml").read_text(encoding="utf-8"))
    kinds: dict[str, set[str]] = defaultdict(set)
    for case in generated["tests"]:
        (check,) = case["alert_rule_test"]
        long_value, short_value = (float(s["values"].split("x")[0]) for s in case["input_series"])
        if check["exp_alerts"]:
            kinds[check["alertname"]].add("fires above")
        elif long_value < short_value:
            kinds[check["alertname"]].add("long below")
        else:
            kinds[check["alertname"]].add("short below")
    names = burn_rate_alert_names()
    assert len(names) >= 8
    assert {name: kinds[name] for name in names} == {name: {"fires above", "long below", "short below"} for name in names}


def test_a_threshold_that_drifts_from_slo_yaml_fails_its_cases(tmp_path: Path) -> None:
    """The 6 h page doubled (6x -> 12x) in the rules but not in slo.yaml: promtool refuses it."""
    alerts = yaml.safe_load((PROMETHEUS / "rules" / "alerts.rules.yml").read_text(encoding="utf-8"))
    for rule in alerts["groups"][0]["rules"]:
        if rule["alert"] == "AvailabilityBudgetBurn6h":
            threshold = rule["expr"].rsplit("> ", 1)[1]
            rule["expr"] = rule["expr"].replace(f"> {threshold}", f"> {float(threshold) * 2:g}")
    (tmp_path / "alerts.rules.yml").write_text(yaml.safe_dump(alerts), encoding="utf-8")
    cases = yaml.safe_load((PROMETHEUS / "tests" / "burn_rate_thresholds.test.yml").read_text(encoding="utf-8"))
    cases["rule_files"] = [str(PROMETHEUS / "rules" / "recording.rules.yml"), str(tmp_path / "alerts.rules.yml")]
    (tmp_path / "cases.test.yml").write_text(yaml.safe_dump(cases), encoding="utf-8")
    result = promtool("test", "rules", tmp_path / "cases.test.yml")
    assert result.returncode != 0
    assert "AvailabilityBudgetBurn6h" in result.stdout + result.stderr


def test_slo_yaml_burn_rates_are_the_documented_workbook_windows() -> None:
    """slo.yaml drives the cases, so it is itself pinned to the contract in docs/observability.md."""
    import re

    from monitoring.slo import load_slo

    doc = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    documented = {(long, short, float(rate)) for rate, long, short in re.findall(r"([\d.]+)x over (\w+)/(\w+)", doc)}
    configured = {(a.long_window, a.short_window, a.burn_rate) for a in load_slo().burn_rate_alerts}
    assert len(documented) == 4 and configured == documented
