"""Kibana saved objects (the ndjson `setup_elk` imports): every reference resolves, by id and by the
ref names that searchSourceJSON and panelsJSON point through; every saved query parses as KQL
(kibana-ql's grammar); every field a query, a column, a sort or a data view uses is in the template."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kibana_ql import KqlParser
from parsimonious.exceptions import ParseError
from parsimonious.nodes import Node

from tests.support.checks import shown
from tests.support.checks.elasticsearch import mapped_fields

_KQL = KqlParser()


def load_objects(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def kql_fields(query: str) -> set[str]:
    """The field names a KQL query reads; raises ParseError (with a position) if it is not KQL."""
    if not query.strip():
        return set()
    return {node.text.strip() for node in _walk(_KQL.parse(query)) if node.expr_name == "Field"}


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _exists(field: str, mapped: dict[str, str]) -> bool:
    return any(fnmatch.fnmatchcase(name, field) for name in mapped)


def check_saved_objects(path: Path, template_path: Path) -> list[str]:
    where = shown(path)
    try:
        objects = load_objects(path)
    except json.JSONDecodeError as exc:
        return [f"{where}: not one JSON object per line: {exc}"]
    template = json.loads(template_path.read_text(encoding="utf-8"))
    mapped = dict(mapped_fields(template["template"]["mappings"]["properties"]))
    ids = [(o["type"], o["id"]) for o in objects]
    problems = [f"{where}: {t} {i} is defined twice" for t, i in {x for x in ids if ids.count(x) > 1}]
    for obj in objects:
        label = f"{where}: {obj['type']} {obj['id']}"
        refs = {ref["name"]: ref for ref in obj.get("references", [])}
        for ref in obj.get("references", []):
            if (ref["type"], ref["id"]) not in ids:
                problems.append(f"{label}: reference {ref['name']} points at {ref['type']} {ref['id']}, which is not in the file")
        attrs = obj["attributes"]
        meta = attrs.get("kibanaSavedObjectMeta", {})
        source = json.loads(meta["searchSourceJSON"]) if "searchSourceJSON" in meta else {}
        ref_name = source.get("indexRefName")
        if ref_name is not None and ref_name not in refs:
            problems.append(f"{label}: indexRefName {ref_name} names no entry of its references")
        for panel in json.loads(attrs.get("panelsJSON", "[]")):
            name = panel.get("panelRefName")
            if name is not None and name not in refs:
                problems.append(f"{label}: panelRefName {name} names no entry of its references")
        query = source.get("query", {})
        if query:
            if query.get("language") != "kuery":
                problems.append(f"{label}: query language is {query.get('language')!r}, not kuery")
            try:
                used = kql_fields(query.get("query", ""))
            except ParseError as exc:
                problems.append(f"{label}: query {query.get('query')!r} is not valid KQL: {exc}")
                used = set()
            for field in sorted(used):
                if not _exists(field, mapped):
                    problems.append(f"{label}: query reads {field}, which the index template does not map")
        for field in attrs.get("columns", []):
            if not _exists(field, mapped):
                problems.append(f"{label}: column {field} is not mapped by the index template")
        for field, _ in attrs.get("sort", []):
            if not _exists(field, mapped):
                problems.append(f"{label}: sorts on {field}, which the index template does not map")
        if obj["type"] == "index-pattern":
            title = attrs["title"]
            if not any(fnmatch.fnmatchcase(p, title) or p == title for p in template["index_patterns"]):
                problems.append(f"{label}: title {title} is not one of the template's index_patterns")
            if mapped.get(attrs.get("timeFieldName", "")) not in ("date", "date_nanos"):
                problems.append(f"{label}: timeFieldName {attrs.get('timeFieldName')} is not a date field")
    return problems
