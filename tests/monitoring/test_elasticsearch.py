"""The index template and ILM policy, type-checked by tsc against @elastic/elasticsearch's request
types (pinned in package.json, installed by `npm ci`), and the mapping types the searches rely on,
compared with the values a real bot and sidecar write. Elasticsearch itself cannot run here."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.conftest import ServiceLogs
from tests.support.checks.elasticsearch import check_mappings, typecheck_elasticsearch
from tests.support.processes import ROOT

ES_DIR = ROOT / "elasticsearch"
TEMPLATE, POLICY = ES_DIR / "index-template.json", ES_DIR / "ilm-policy.json"


@pytest.fixture(scope="module")
def log_values(service_logs: ServiceLogs) -> dict[str, Any]:
    """One value of each field the services write."""
    return {name: value for line in service_logs.bot + service_logs.sidecar for name, value in line.items()}


def test_the_template_and_policy_satisfy_elasticsearchs_own_types(tmp_path: Path) -> None:
    assert typecheck_elasticsearch(TEMPLATE, POLICY, tmp_path) == []


def test_every_field_the_services_write_is_mapped_with_a_type_that_fits(log_values: dict[str, Any]) -> None:
    assert {"client.ip", "event.duration", "trace.id", "labels.upstream"} <= set(log_values)
    assert check_mappings(TEMPLATE, log_values) == []


def mutate_json(path: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    target = tmp_path / path.name
    shutil.copyfile(path, target)
    data = json.loads(target.read_text(encoding="utf-8"))
    change(data)
    target.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return target


def prop(template: dict[str, Any], dotted: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"properties": template["template"]["mappings"]["properties"]}
    for part in dotted.split("."):
        spec = spec["properties"][part]
    return spec


def test_an_invalid_mapping_type_fails_the_type_check_naming_the_file(tmp_path: Path) -> None:
    template = mutate_json(TEMPLATE, tmp_path, lambda t: prop(t, "http.response.status_code").update(type="shrot"))
    problems = typecheck_elasticsearch(template, POLICY, tmp_path / "ts")
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{template}: TS")
    assert "'\"shrot\"' is not assignable" in problems[0] and "Did you mean '\"short\"'" in problems[0]


def test_an_unknown_mapping_option_and_an_unknown_ilm_action_fail_the_type_check(tmp_path: Path) -> None:
    template = mutate_json(TEMPLATE, tmp_path, lambda t: prop(t, "trace.id").update(ignore_abov=256))
    policy = mutate_json(POLICY, tmp_path, lambda p: p["policy"]["phases"]["hot"]["actions"].update(rollovr={}))
    problems = typecheck_elasticsearch(template, policy, tmp_path / "ts")
    assert any(p.startswith(f"{template}: ") and "'\"ignore_abov\"' does not exist" in p for p in problems), problems
    assert any(p.startswith(f"{policy}: ") and "'\"rollovr\"' does not exist" in p for p in problems), problems


@pytest.mark.parametrize(("field", "wrong", "expected"), [
    ("client.ip", "long", "client.ip is mapped as long; it must be ip"),
    ("event.duration", "keyword", "event.duration is mapped as keyword; it must be"),
    ("trace.id", "text", "trace.id is mapped as text; it must be keyword"),
])
def test_a_wrong_type_for_a_field_that_matters_is_named(
    field: str, wrong: str, expected: str, tmp_path: Path, log_values: dict[str, Any]
) -> None:
    template = mutate_json(TEMPLATE, tmp_path, lambda t: prop(t, field).update(type=wrong))
    problems = check_mappings(template, log_values)
    assert any(p == f"{template}: {expected}" or p.startswith(f"{template}: {expected}") for p in problems), problems


def test_a_field_the_services_write_without_a_mapping_is_named(tmp_path: Path, log_values: dict[str, Any]) -> None:
    template = mutate_json(TEMPLATE, tmp_path, lambda t: prop(t, "labels")["properties"].pop("upstream"))
    assert check_mappings(template, log_values) == [
        f"{template}: labels.upstream (written by the services, e.g. 'stable') has no explicit mapping"
    ]


def test_ilm_rolls_over_and_deletes_after_30_days() -> None:
    phases = json.loads(POLICY.read_text(encoding="utf-8"))["policy"]["phases"]
    assert set(phases["hot"]["actions"]["rollover"]) == {"max_age", "max_primary_shard_size"}
    assert phases["delete"]["min_age"] == "30d" and phases["delete"]["actions"] == {"delete": {}}
