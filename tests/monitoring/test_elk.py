"""The ELK pipeline across its files: Elasticsearch, Logstash, Filebeat and Kibana cannot run here,
so this checks that names agree from one file to the next (ports, hosts, index and data-stream names,
paths in compose) and what a real bot's error lines carry. Each file on its own is checked by its
vendor's grammar or types: test_logstash.py, test_elasticsearch.py, test_kibana.py."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import yaml

from monitoring.setup_elk import NAME, Payloads
from tests.monitoring.conftest import ServiceLogs
from tests.support.checks.logstash import parse_pipeline
from tests.support.processes import ROOT

BOT_CONF = ROOT / "logstash" / "pipeline" / "bot.conf"


def plugin(name: str) -> dict[str, Any]:
    (found,) = [p.attributes for p in parse_pipeline(BOT_CONF).plugins if p.name == name]
    return found


def load_yaml(*parts: str) -> Any:
    return yaml.safe_load(ROOT.joinpath(*parts).read_text(encoding="utf-8"))


def saved_objects() -> list[dict[str, Any]]:
    lines = (ROOT / "kibana" / "saved-objects.ndjson").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_filebeat_and_pipelines_yml_parse() -> None:
    assert load_yaml("filebeat", "filebeat.yml")["filebeat.inputs"]
    assert load_yaml("logstash", "pipelines.yml")[0]["pipeline.id"] == "botwatch"


def test_filebeat_reads_each_log_once_as_ndjson_and_ships_to_logstash() -> None:
    config = load_yaml("filebeat", "filebeat.yml")
    inputs = config["filebeat.inputs"]
    assert all(i["type"] == "filestream" for i in inputs)
    ids = [i["id"] for i in inputs]
    assert len(ids) == len(set(ids)), "filestream ids must be unique"
    assert all("ndjson" in parser for i in inputs for parser in i["parsers"])
    assert config["output.logstash"]["hosts"] == [f"logstash:{plugin('beats')['port']}"]


def test_names_agree_from_logstash_to_kibana() -> None:
    output = plugin("elasticsearch")
    assert output["data_stream"] == "true" and output["manage_template"] == "false"
    stream = "-".join(output[f"data_stream_{part}"] for part in ("type", "dataset", "namespace"))
    template = Payloads.load().index_template
    assert any(fnmatch.fnmatch(stream, pattern) for pattern in template["index_patterns"])
    assert "data_stream" in template
    assert template["priority"] > 100, "must win over Elasticsearch's built-in logs-*-* template"
    assert template["template"]["settings"]["index.lifecycle.name"] == NAME
    (view,) = [o for o in saved_objects() if o["type"] == "index-pattern"]
    assert fnmatch.fnmatch(stream, view["attributes"]["title"])
    assert view["attributes"]["timeFieldName"] == "@timestamp"


def test_compose_wires_the_same_hosts_ports_and_paths() -> None:
    compose = load_yaml("docker-compose.yml")["services"]
    assert plugin("elasticsearch")["hosts"] == ["${ELASTICSEARCH_HOSTS:http://elasticsearch:9200}"]
    assert compose["logstash"]["environment"]["ELASTICSEARCH_HOSTS"] == "http://elasticsearch:9200"
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


def test_an_error_line_carries_what_the_error_search_and_the_alert_rule_match(service_logs: ServiceLogs) -> None:
    real_log_lines = service_logs.bot
    errors = [line for line in real_log_lines if line["log.level"].lower() == "error"]
    assert errors, "a 5xx must be logged at error level"
    assert all(line.get("trace.id") for line in errors)
    failed = [line for line in real_log_lines if line.get("http.response.status_code") == 503]
    assert failed and failed[0]["labels.platform"] == "api"
    assert failed[0]["trace.id"] == errors[0]["trace.id"], "the error and its access line share a trace"
