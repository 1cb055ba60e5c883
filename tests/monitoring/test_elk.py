"""The ELK pipeline, checked without ELK: Elasticsearch, Logstash, Filebeat and Kibana cannot be
installed here, so these tests check what can be checked from their files alone (every file
parses; ports, hosts, index and data-stream names agree across Filebeat, Logstash, the template,
the data view and compose) and that every field a Logstash conditional or a Kibana search uses is
present in the log lines a real bot writes."""

from __future__ import annotations

import fnmatch
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.setup_elk import NAME, Payloads
from tests.support.ports import free_port
from tests.support.processes import ROOT

BOT_CONF = (ROOT / "logstash" / "pipeline" / "bot.conf").read_text(encoding="utf-8")
# Fields the pipeline or Filebeat adds; every other field must come from the services' own lines.
ADDED_DOWNSTREAM = {"alert_level", "tags", "data_stream.type", "data_stream.dataset", "data_stream.namespace"}


def load_yaml(*parts: str) -> Any:
    return yaml.safe_load(ROOT.joinpath(*parts).read_text(encoding="utf-8"))


def saved_objects() -> list[dict[str, Any]]:
    lines = (ROOT / "kibana" / "saved-objects.ndjson").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def logstash_blocks(text: str) -> list[str]:
    """Top-level section names, checking braces balance outside strings, regexes and comments."""
    depth, names, word, quote = 0, [], "", ""
    for line in text.splitlines():
        code = line.split("#", 1)[0] if not quote else line
        for ch in code:
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "\"'/":
                quote = ch
            elif ch == "{":
                if depth == 0:
                    names.append(word.strip().split()[-1])
                depth += 1
                word = ""
            elif ch == "}":
                depth -= 1
                assert depth >= 0, "unbalanced }"
            elif depth == 0:
                word += ch
    assert depth == 0 and not quote, "unbalanced braces or quotes"
    return names


def logstash_fields(text: str) -> set[str]:
    """Fields read by the pipeline's `if` conditionals, as dotted names (`[log][level]` -> log.level)."""
    fields = set()
    for condition in re.findall(r"\bif\s+(.+?)\{", text, flags=re.S):
        for ref in re.findall(r"((?:\[[\w@.]+\])+)", condition):
            fields.add(".".join(re.findall(r"\[([\w@.]+)\]", ref)))
    return fields


def kibana_fields(objects: list[dict[str, Any]]) -> set[str]:
    """Fields in the saved searches' KQL queries, columns and sort orders."""
    fields: set[str] = set()
    for obj in objects:
        if obj["type"] != "search":
            continue
        attrs = obj["attributes"]
        query = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
        fields |= set(re.findall(r"([A-Za-z_@][\w.@]*)\s*(?::|>=|<=|>|<)", query))
        fields |= set(attrs["columns"]) | {field for field, _ in attrs["sort"]}
    return fields


def flatten(obj: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) pairs: ECS lines mix `"log.level": ...` with `"log": {"level": ...}`,
    which Filebeat's `expand_keys` turns into the same field."""
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from flatten(value, name + ".")
        else:
            yield name, value


def test_every_file_parses() -> None:
    assert load_yaml("filebeat", "filebeat.yml")["filebeat.inputs"]
    assert load_yaml("logstash", "pipelines.yml")[0]["pipeline.id"] == "botwatch"
    assert logstash_blocks(BOT_CONF) == ["input", "filter", "output"]
    payloads = Payloads.load()
    assert payloads.ilm_policy["phases"]
    assert payloads.index_template["index_patterns"]
    objects = saved_objects()
    ids = {(o["type"], o["id"]) for o in objects}
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in ids, f"{obj['id']} refers to a missing {ref}"
        for key in ("panelsJSON", "optionsJSON"):
            if key in obj["attributes"]:
                json.loads(obj["attributes"][key])


def test_filebeat_reads_each_log_once_as_ndjson_and_ships_to_logstash() -> None:
    config = load_yaml("filebeat", "filebeat.yml")
    inputs = config["filebeat.inputs"]
    assert all(i["type"] == "filestream" for i in inputs)
    ids = [i["id"] for i in inputs]
    assert len(ids) == len(set(ids)), "filestream ids must be unique"
    assert all("ndjson" in parser for i in inputs for parser in i["parsers"])
    beats_port = re.search(r"beats\s*\{\s*port\s*=>\s*(\d+)", BOT_CONF)
    assert beats_port
    assert config["output.logstash"]["hosts"] == [f"logstash:{beats_port.group(1)}"]


def test_names_agree_from_logstash_to_kibana() -> None:
    stream = "-".join(
        re.search(rf'data_stream_{part}\s*=>\s*"([^"]+)"', BOT_CONF).group(1)  # type: ignore[union-attr]
        for part in ("type", "dataset", "namespace")
    )
    template = Payloads.load().index_template
    assert any(fnmatch.fnmatch(stream, pattern) for pattern in template["index_patterns"])
    assert "data_stream" in template
    assert template["priority"] > 100, "must win over Elasticsearch's built-in logs-*-* template"
    assert template["template"]["settings"]["index.lifecycle.name"] == NAME
    (view,) = [o for o in saved_objects() if o["type"] == "index-pattern"]
    assert fnmatch.fnmatch(stream, view["attributes"]["title"])
    assert view["attributes"]["timeFieldName"] == "@timestamp"


def test_ilm_rolls_over_and_deletes_after_30_days() -> None:
    phases = Payloads.load().ilm_policy["phases"]
    assert "rollover" in phases["hot"]["actions"]
    assert phases["delete"]["min_age"] == "30d" and "delete" in phases["delete"]["actions"]


def test_compose_wires_the_same_hosts_ports_and_paths() -> None:
    compose = load_yaml("docker-compose.yml")["services"]
    hosts = re.search(r'hosts\s*=>\s*\["\$\{ELASTICSEARCH_HOSTS:([^}]+)\}"\]', BOT_CONF)
    assert hosts and hosts.group(1) == "http://elasticsearch:9200"
    assert compose["logstash"]["environment"]["ELASTICSEARCH_HOSTS"] == hosts.group(1)
    logs_dir = "/var/log/botwatch"
    assert compose["bot"]["environment"]["BOT_LOG_FILE"] == f"{logs_dir}/bot.log"
    assert compose["sidecar"]["environment"]["SIDECAR_LOG_FILE"] == f"{logs_dir}/sidecar.log"
    paths = [p for i in load_yaml("filebeat", "filebeat.yml")["filebeat.inputs"] for p in i["paths"]]
    assert paths == [f"{logs_dir}/bot.log*", f"{logs_dir}/sidecar.log*"]
    assert any(v.endswith(f":{logs_dir}:ro") for v in compose["filebeat"]["volumes"])
    assert compose["elk-setup"]["environment"]["ELASTICSEARCH_URL"] == "http://elasticsearch:9200"
    assert compose["elk-setup"]["environment"]["KIBANA_URL"] == "http://kibana:5601"
    mounted = compose["logstash"]["volumes"]
    assert "./logstash/pipeline:/usr/share/logstash/pipeline:ro" in mounted
    assert "./logstash/pipelines.yml:/usr/share/logstash/config/pipelines.yml:ro" in mounted


def test_the_guides_error_rule_is_there_and_ignores_case() -> None:
    rule = re.search(r'if \[log\]\[level\] =~ /\(\?i\)([^/]+)/\s*\{\s*mutate \{ add_field => \{ "alert_level" => "high" \}', BOT_CONF)
    assert rule, "ERROR lines must get alert_level: high"
    pattern = re.compile("(?i)" + rule.group(1))
    assert pattern.match("error") and pattern.match("ERROR") and not pattern.match("info")


def status_of(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


@pytest.fixture
def real_log_lines(start_bot, tmp_path: Path) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Lines a real bot wrote to BOT_LOG_FILE: a chat that fails (model down), health checks, a 404."""
    log_file = tmp_path / "bot.log"
    proc, base = start_bot({"BOT_LOG_FILE": str(log_file), "MODEL_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1",
                            "MODEL_MAX_RETRIES": "0"})
    request = urllib.request.Request(
        f"{base}/api/v1/chat", data=b'{"message": "hello"}', headers={"Content-Type": "application/json"}
    )
    assert status_of(request) == 503
    assert status_of(urllib.request.Request(f"{base}/no/such/route")) == 404
    assert status_of(urllib.request.Request(f"{base}/api/health")) == 200
    assert proc.stop() == 0
    return [dict(flatten(json.loads(line))) for line in log_file.read_text(encoding="utf-8").splitlines()]


def test_every_field_logstash_and_kibana_use_is_in_the_bots_real_log_lines(
    real_log_lines: list[dict[str, Any]],
) -> None:
    present = {field for line in real_log_lines for field in line}
    used = logstash_fields(BOT_CONF) | kibana_fields(saved_objects())
    assert {"log.level", "url.path", "http.response.status_code", "labels.platform", "trace.id"} <= used
    missing = used - ADDED_DOWNSTREAM - present
    assert not missing, f"fields used by the pipeline or Kibana but never written by the bot: {sorted(missing)}"
    assert "alert_level" in logstash_fields(BOT_CONF) | set(re.findall(r'"(alert_level)" =>', BOT_CONF))


def test_an_error_line_carries_what_the_error_search_and_the_alert_rule_match(
    real_log_lines: list[dict[str, Any]],
) -> None:
    errors = [line for line in real_log_lines if line["log.level"].lower() == "error"]
    assert errors, "a 5xx must be logged at error level"
    assert all(line.get("trace.id") for line in errors)
    failed = [line for line in real_log_lines if line.get("http.response.status_code") == 503]
    assert failed and failed[0]["labels.platform"] == "api"
    assert failed[0]["trace.id"] == errors[0]["trace.id"], "the error and its access line share a trace"
