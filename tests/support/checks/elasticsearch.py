"""The index template and ILM policy: typed by @elastic/elasticsearch's own request types (tsc), and the
mapping types that queries, dashboards and Kibana depend on."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.support.checks import shown
from tests.support.checks.typescript import TypedFile, typecheck

ES_TYPES = 'import type * as es from "@elastic/elasticsearch/lib/api/types";'
NUMERIC = frozenset({"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"})
STRINGY = frozenset({"keyword", "constant_keyword", "wildcard", "text", "match_only_text", "ip", "date", "date_nanos"})
# What each field must be for the searches, range filters and joins that use it.
REQUIRED: dict[str, frozenset[str]] = {
    "@timestamp": frozenset({"date", "date_nanos"}),
    "client.ip": frozenset({"ip"}),  # CIDR and range queries on addresses
    "event.duration": NUMERIC,  # nanoseconds: range queries and averages
    "http.response.status_code": NUMERIC,  # `>= 500` in searches
    "process.pid": NUMERIC,
    "trace.id": frozenset({"keyword"}),  # exact match from a trace link
    "span.id": frozenset({"keyword"}),
    "http.request.id": frozenset({"keyword"}),
    "log.level": frozenset({"keyword"}),
    "labels.platform": frozenset({"keyword"}),
    "service.name": frozenset({"keyword"}),
}


def typed_files(template_path: Path, policy_path: Path) -> list[TypedFile]:
    return [
        TypedFile(template_path, json.loads(template_path.read_text(encoding="utf-8")), ES_TYPES,
                  'Omit<es.IndicesPutIndexTemplateRequest, "name">'),
        TypedFile(policy_path, json.loads(policy_path.read_text(encoding="utf-8")), ES_TYPES, "{ policy: es.IlmPolicy }"),
    ]


def typecheck_elasticsearch(template_path: Path, policy_path: Path, workdir: Path) -> list[str]:
    return typecheck(typed_files(template_path, policy_path), workdir)


def mapped_fields(properties: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted field, mapping type) for every leaf of a mapping's properties."""
    for name, spec in properties.items():
        if "properties" in spec:
            yield from mapped_fields(spec["properties"], f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", spec.get("type", "object")


def check_mappings(template_path: Path, log_values: Mapping[str, Any]) -> list[str]:
    """The required types, and a mapping for every field the services write whose type fits its values."""
    template = json.loads(template_path.read_text(encoding="utf-8"))
    mapped = dict(mapped_fields(template["template"]["mappings"]["properties"]))
    where = shown(template_path)
    problems = []
    for name, allowed in REQUIRED.items():
        if name not in mapped:
            problems.append(f"{where}: {name} has no mapping; it must be {' or '.join(sorted(allowed))}")
        elif mapped[name] not in allowed:
            problems.append(f"{where}: {name} is mapped as {mapped[name]}; it must be {' or '.join(sorted(allowed))}")
    for name, value in sorted(log_values.items()):
        if name not in mapped:
            problems.append(f"{where}: {name} (written by the services, e.g. {value!r}) has no explicit mapping")
        elif isinstance(value, bool) and mapped[name] != "boolean":
            problems.append(f"{where}: {name} holds booleans but is mapped as {mapped[name]}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and mapped[name] not in NUMERIC:
            problems.append(f"{where}: {name} holds numbers (e.g. {value!r}) but is mapped as {mapped[name]}")
        elif isinstance(value, str) and mapped[name] not in STRINGY:
            problems.append(f"{where}: {name} holds strings (e.g. {value!r}) but is mapped as {mapped[name]}")
    return problems
