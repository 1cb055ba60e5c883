"""Kibana's saved objects, checked without Kibana: references resolve by id and by ref name, saved
queries parse as KQL, and every field used is mapped by the index template. Each mutation once
passed; now each fails naming the file, the object and the problem."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.checks.kibana import check_saved_objects, kql_fields, load_objects
from tests.support.processes import ROOT

SAVED_OBJECTS = ROOT / "kibana" / "saved-objects.ndjson"
TEMPLATE = ROOT / "elasticsearch" / "index-template.json"
Objects = list[dict[str, Any]]


def test_the_saved_objects_pass_every_check() -> None:
    assert check_saved_objects(SAVED_OBJECTS, TEMPLATE) == []


def test_there_is_a_data_view_three_searches_and_a_dashboard_showing_them() -> None:
    objects = {(o["type"], o["id"]): o for o in load_objects(SAVED_OBJECTS)}
    assert sorted(t for t, _ in objects) == ["dashboard", "index-pattern", "search", "search", "search"]
    dashboard = objects[("dashboard", "botwatch-logs-dashboard")]
    assert {r["id"] for r in dashboard["references"]} == {i for t, i in objects if t == "search"}


def test_the_error_search_reads_the_level_and_the_pipelines_alert_level() -> None:
    (errors,) = [o for o in load_objects(SAVED_OBJECTS) if o["id"] == "botwatch-errors"]
    query = json.loads(errors["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
    assert kql_fields(query) == {"log.level", "alert_level"}


def search_source(obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])


def set_search_source(obj: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
    source = search_source(obj)
    change(source)
    obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"] = json.dumps(source)


def by_id(objects: Objects, id_: str) -> dict[str, Any]:
    return next(o for o in objects if o["id"] == id_)


def rename_panel_ref(objects: Objects) -> None:
    dashboard = by_id(objects, "botwatch-logs-dashboard")
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    panels[0]["panelRefName"] = "panel_9"
    dashboard["attributes"]["panelsJSON"] = json.dumps(panels)


MUTATIONS: dict[str, tuple[Callable[[Objects], None], str]] = {
    "indexRefName pointing at nothing": (
        lambda objs: set_search_source(by_id(objs, "botwatch-errors"), lambda s: s.update(indexRefName="nowhere")),
        "search botwatch-errors: indexRefName nowhere names no entry of its references",
    ),
    "panelRefName pointing at nothing": (
        rename_panel_ref, "dashboard botwatch-logs-dashboard: panelRefName panel_9 names no entry of its references",
    ),
    "reference to a missing object": (
        lambda objs: by_id(objs, "botwatch-by-trace")["references"][0].update(id="botwatch-logz"),
        "search botwatch-by-trace: reference kibanaSavedObjectMeta.searchSourceJSON.index points at "
        "index-pattern botwatch-logz, which is not in the file",
    ),
    "query that is not KQL": (
        lambda objs: set_search_source(by_id(objs, "botwatch-errors"), lambda s: s["query"].update(query="log.level: (error or")),
        "search botwatch-errors: query 'log.level: (error or' is not valid KQL",
    ),
    "query on an unmapped field": (
        lambda objs: set_search_source(by_id(objs, "botwatch-by-platform"), lambda s: s["query"].update(query="labels.platfrom: qq")),
        "search botwatch-by-platform: query reads labels.platfrom, which the index template does not map",
    ),
    "column of an unmapped field": (
        lambda objs: by_id(objs, "botwatch-by-trace")["attributes"]["columns"].append("trace_id"),
        "search botwatch-by-trace: column trace_id is not mapped by the index template",
    ),
    "data view on another index": (
        lambda objs: by_id(objs, "botwatch-logs")["attributes"].update(title="logs-bot-*"),
        "index-pattern botwatch-logs: title logs-bot-* is not one of the template's index_patterns",
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_mutation_is_rejected_naming_the_file_and_the_problem(mutation: str, tmp_path: Path) -> None:
    change, expected = MUTATIONS[mutation]
    objects = load_objects(SAVED_OBJECTS)
    change(objects)
    target = tmp_path / "saved-objects.ndjson"
    target.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    problems = check_saved_objects(target, TEMPLATE)
    assert any(p.startswith(f"{target}: {expected}") for p in problems), problems
