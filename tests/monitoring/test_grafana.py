"""The generated dashboards against Grafana's own published schema (@grafana/schema, tsc), at the
schema version Grafana writes today so it loads them without migrating; and the provisioned data
sources that join metrics, traces and logs. Grafana itself cannot run here; the numbers the panels
show are proven against a real Prometheus in test_panels_and_rules_on_live_prometheus.py and test_truth_numbers.py."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.dashboard_json import SCHEMA_VERSION
from tests.deploy.test_compose import dotenv
from tests.support.checks.elasticsearch import mapped_fields
from tests.support.checks.grafana import (
    check_schema_versions,
    current_schema_version,
    schema_package_version,
    typecheck_dashboards,
)
from tests.support.processes import ROOT

DASHBOARDS = sorted((ROOT / "dashboards" / "json").glob("*.json"))
DATASOURCES_DIR = ROOT / "dashboards" / "provisioning" / "datasources"
TEMPLATE = json.loads((ROOT / "elasticsearch" / "index-template.json").read_text(encoding="utf-8"))
MAPPED = dict(mapped_fields(TEMPLATE["template"]["mappings"]["properties"]))


def datasources() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(DATASOURCES_DIR.glob("*.yml")):
        for source in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]:
            assert source["uid"] not in found, f"{path}: uid {source['uid']} provisioned twice"
            found[source["uid"]] = source
    return found


def test_dashboards_are_at_the_schema_version_grafana_writes_today() -> None:
    assert SCHEMA_VERSION == current_schema_version()
    assert check_schema_versions(DASHBOARDS, current_schema_version()) == []


def test_dashboards_satisfy_grafanas_published_dashboard_type(tmp_path: Path) -> None:
    # One generated JSON per grafanalib source: none is left out of the check.
    assert len(DASHBOARDS) == len(list((ROOT / "dashboards").glob("*.dashboard.py")))
    assert typecheck_dashboards(DASHBOARDS, tmp_path) == []


def test_the_grafana_image_is_the_version_whose_schema_the_dashboards_are_checked_against() -> None:
    assert dotenv()["GRAFANA_VERSION"] == schema_package_version()


def mutate_board(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    target = tmp_path / "bot-red.json"
    shutil.copyfile(ROOT / "dashboards" / "json" / "bot-red.json", target)
    board = json.loads(target.read_text(encoding="utf-8"))
    change(board)
    target.write_text(json.dumps(board, indent=2), encoding="utf-8")
    return target


MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "a legacy row layout key": (lambda b: b.update(rows=[]), "'\"rows\"' does not exist"),
    "an unknown threshold mode": (
        lambda b: b["panels"][0]["fieldConfig"]["defaults"]["thresholds"].update(mode="absolut"),
        "Type '\"absolut\"' is not assignable",
    ),
    "a grid width as text": (lambda b: b["panels"][0]["gridPos"].update(w="6"), "Type 'string' is not assignable to type 'number'"),
    "a cursor sync grafana does not have": (lambda b: b.update(graphTooltip=7), "Type '7' is not assignable"),
    "a panel type grafana does not ship": (lambda b: b["panels"][4].update(type="timeserise"), "'\"timeserise\"'"),
    "a stat color mode grafana does not have": (
        lambda b: next(p for p in b["panels"] if p["type"] == "stat")["options"].update(colorMode="valeu"),
        "'\"valeu\"' is not assignable",
    ),
    "a legend placement grafana does not have": (
        lambda b: next(p for p in b["panels"] if p["type"] == "timeseries")["options"]["legend"].update(placement="bottum"),
        "'\"bottum\"' is not assignable",
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_mutation_fails_the_type_check_naming_the_file(mutation: str, tmp_path: Path) -> None:
    change, expected = MUTATIONS[mutation]
    board = mutate_board(tmp_path, change)
    problems = typecheck_dashboards([board], tmp_path / "ts")
    assert problems and all(p.startswith(f"{board}: TS") for p in problems), problems
    assert any(expected in p for p in problems), problems


def test_an_old_schema_version_is_named(tmp_path: Path) -> None:
    board = mutate_board(tmp_path, lambda b: b.update(schemaVersion=12))
    assert check_schema_versions([board], current_schema_version()) == [
        f"{board}: schemaVersion 12, not the current {current_schema_version()}: Grafana would migrate it on every load"
    ]


def test_prometheus_jaeger_and_elasticsearch_are_provisioned_and_every_link_resolves() -> None:
    sources = datasources()
    assert {uid: s["type"] for uid, s in sources.items()} == {
        "prometheus": "prometheus", "jaeger": "jaeger", "elasticsearch": "elasticsearch",
    }
    linked = re.findall(r"'datasourceUid': '([^']+)'", str(sources))
    assert set(linked) == {"jaeger", "elasticsearch", "prometheus"}
    assert set(linked) <= set(sources)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    for source in sources.values():
        host = re.fullmatch(r"http://([\w-]+):\d+", source["url"])
        assert host and host.group(1) in compose, source["url"]


def test_an_exemplar_opens_its_trace_and_its_logs() -> None:
    """The bot's exemplars carry trace_id; Grafana opens it in Jaeger, or the lines in Kibana's trace search."""
    destinations = datasources()["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert {d["name"] for d in destinations} == {"trace_id"}
    bot_exemplar = (ROOT / "servicekit" / "tracing.py").read_text(encoding="utf-8")
    assert '{"trace_id": format(ctx.trace_id, "032x")}' in bot_exemplar
    internal, kibana = destinations
    assert internal["datasourceUid"] == "jaeger"
    assert kibana["url"].startswith("http://localhost:5601/app/discover#/view/botwatch-by-trace?")
    assert "trace.id:\"$${__value.raw}\"" in kibana["url"]


def test_a_trace_opens_its_log_lines_and_a_log_line_opens_its_trace() -> None:
    sources = datasources()
    to_logs = sources["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "elasticsearch" and to_logs["customQuery"] is True
    field = re.fullmatch(r'([\w.]+):"\$\$\{__trace\.traceId\}"', to_logs["query"])
    assert field and MAPPED[field.group(1)] == "keyword"
    elastic = sources["elasticsearch"]["jsonData"]
    assert elastic["index"] in TEMPLATE["index_patterns"]
    assert MAPPED[elastic["timeField"]] == "date"
    assert elastic["logLevelField"] in MAPPED and elastic["logMessageField"] in MAPPED
    (link,) = elastic["dataLinks"]
    assert MAPPED[link["field"]] == "keyword" and link["datasourceUid"] == "jaeger" and link["url"] == "$${__value.raw}"


def test_grafana_macros_in_provisioning_are_escaped_from_env_expansion() -> None:
    """Grafana expands $VAR and ${VAR} in provisioning files; an unescaped ${__value.raw} would become ''."""
    for path in DATASOURCES_DIR.glob("*.yml"):
        text = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"(?<!\$)\$\{__", text), path
