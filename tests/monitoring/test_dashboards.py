"""The dashboards: each generates from its grafanalib source, offers the variables, draws slo.yaml's
thresholds and shows exemplars on latency. Grafana cannot run here; its provisioning files are
checked for what Grafana reads from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.dashboard_json import dashboard_sources, render_dashboard
from monitoring.generate import generated_files
from monitoring.slo import SLO_FILE, load_slo
from tests.support.processes import ROOT

SOURCES = dashboard_sources()
PROVISIONING = ROOT / "dashboards" / "provisioning"


def board(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "dashboards" / "json" / f"{name}.json").read_text(encoding="utf-8"))


def panels(name: str) -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for panel in board(name)["panels"]}


def threshold_values(panel: dict[str, Any]) -> list[float]:
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["value"] is not None]


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_every_source_generates_a_dashboard(source: Path) -> None:
    data = json.loads(render_dashboard(source))
    assert data["uid"].startswith("botwatch-")
    assert data["panels"], source
    assert len({p["id"] for p in data["panels"]}) == len(data["panels"])


def test_the_dashboards_of_the_contract_exist() -> None:
    assert {p.name for p in SOURCES} == {
        "bot-red.dashboard.py", "sidecar.dashboard.py", "slo.dashboard.py", "resources.dashboard.py",
        "replies.dashboard.py",
    }


@pytest.mark.parametrize("name", ["bot-red", "sidecar", "slo", "resources", "replies"])
def test_variables_and_every_query_use_the_datasource_variable(name: str) -> None:
    data = board(name)
    variables = [v["name"] for v in data["templating"]["list"]]
    assert variables[0] == "datasource" and "instance" in variables
    for panel in data["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_bot_dashboard_filters_by_platform_and_instance() -> None:
    variables = {v["name"]: v for v in board("bot-red")["templating"]["list"]}
    assert variables["platform"]["query"] == "label_values(bot_requests_total, platform)"
    assert variables["platform"]["includeAll"] and variables["platform"]["allValue"] == ".*"
    qps = panels("bot-red")["QPS by platform"]["targets"][0]["expr"]
    assert 'platform=~"$platform"' in qps and 'instance=~"$instance"' in qps


def test_thresholds_come_from_slo_yaml() -> None:
    slo = load_slo()
    bot = panels("bot-red")
    assert threshold_values(bot["P99 latency"]) == [slo.latency.threshold_seconds]
    assert threshold_values(bot["Requests per second"]) == [slo.throughput.min_rps]
    assert threshold_values(bot["Error ratio (5xx)"]) == [slo.error_rate.max_ratio]
    res = panels("resources")
    assert threshold_values(res["CPU (share of one core)"]) == [slo.resources.cpu_max_ratio]
    assert threshold_values(res["Memory (share of the limit)"]) == [slo.resources.memory_max_ratio]
    burn = panels("slo")["Availability burn rate per window"]
    assert threshold_values(burn) == sorted(a.burn_rate for a in slo.burn_rate_alerts)


def test_a_changed_target_moves_the_dashboard_threshold(tmp_path: Path) -> None:
    data = yaml.safe_load(SLO_FILE.read_text(encoding="utf-8"))
    data["latency"]["threshold_seconds"] = 1.0
    changed = tmp_path / "slo.yaml"
    changed.write_text(yaml.safe_dump(data), encoding="utf-8")
    files = generated_files(changed)
    red = json.loads(next(text for path, text in files.items() if path.name == "bot-red.json"))
    p99 = next(p for p in red["panels"] if p["title"] == "P99 latency")
    assert threshold_values(p99) == [1.0]


def test_latency_panels_show_exemplars() -> None:
    for name in ("bot-red", "sidecar"):
        for panel in board(name)["panels"]:
            for target in panel["targets"]:
                if "bot_request_duration_seconds_bucket" in target["expr"]:
                    assert target["exemplar"] is True, (name, panel["title"])


def test_provisioning_points_grafana_at_prometheus_and_the_generated_json() -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    (prometheus,) = sources["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["url"] == "http://prometheus:9090"
    variable = next(v for v in board("slo")["templating"]["list"] if v["name"] == "datasource")
    assert variable["current"]["value"] == prometheus["name"]
    assert prometheus["jsonData"]["exemplarTraceIdDestinations"][0]["name"] == "trace_id"
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "botwatch.yml").read_text(encoding="utf-8"))
    (provider,) = providers["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards/json:{provider['options']['path']}:ro" in mounts
    assert "./dashboards/provisioning:/etc/grafana/provisioning:ro" in mounts
