"""The Logstash pipeline, read by a real Logstash-config parser (lscl) and checked against what a
stock Logstash ships (plugins, grok patterns), `ruby -c`, and the fields that a real bot and a real
sidecar write. Logstash itself cannot run here. Each mutation below once passed a brace counter;
now each fails with the file, the line and the problem."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from lscl.lang import LsclConditions, LsclMatch
from lscl.parser import parse_lscl

from tests.monitoring.conftest import ServiceLogs
from tests.support.checks.logstash import check_pipeline, fields_read, parse_pipeline
from tests.support.processes import ROOT
from tests.support.services import require_binary

PIPELINE_DIR = ROOT / "logstash" / "pipeline"
BOT_CONF = PIPELINE_DIR / "bot.conf"
CONTAINER_DIR = "/usr/share/logstash/pipeline/"
# What Filebeat adds to every event it ships: its own metadata, the ndjson parser's error key, and
# add_host_metadata's host.* (filebeat.yml's `fields` are read from the file below).
FILEBEAT_ADDS = {"agent.*", "input.type", "log.file.path", "log.offset", "error.message", "error.type", "host.*"}


def filebeat_fields() -> set[str]:
    config = yaml.safe_load((ROOT / "filebeat" / "filebeat.yml").read_text(encoding="utf-8"))
    return FILEBEAT_ADDS | {name for i in config["filebeat.inputs"] for name in i.get("fields", {})}


@pytest.fixture(scope="module")
def ruby() -> str:
    return require_binary("ruby")


@pytest.fixture(scope="module")
def available(service_logs: ServiceLogs) -> set[str]:
    return service_logs.fields | filebeat_fields()


def test_pipelines_yml_names_each_pipeline_file_once() -> None:
    pipelines = yaml.safe_load((ROOT / "logstash" / "pipelines.yml").read_text(encoding="utf-8"))
    configs = [p["path.config"] for p in pipelines]
    assert [p["pipeline.id"] for p in pipelines] == ["botwatch"]
    assert all(c.startswith(CONTAINER_DIR) for c in configs), configs
    assert sorted(PIPELINE_DIR / c.removeprefix(CONTAINER_DIR) for c in configs) == sorted(PIPELINE_DIR.glob("*.conf"))


@pytest.mark.parametrize("path", sorted(PIPELINE_DIR.glob("*.conf")), ids=lambda p: p.name)
def test_every_pipeline_passes_every_check(path: Path, available: set[str], ruby: str) -> None:
    assert check_pipeline(path, available, ruby) == []


def test_the_pipeline_reads_the_fields_the_guides_rules_need() -> None:
    read = fields_read(parse_pipeline(BOT_CONF))
    assert {"log.level", "url.path", "http.response.status_code", "labels.platform"} <= set(read)


def test_the_guides_error_rule_marks_error_lines_high_whatever_their_case() -> None:
    """Read from the parsed tree: the first branch on log.level matches error in any case and adds alert_level: high."""
    filters = next(block for block in parse_lscl(BOT_CONF.read_text(encoding="utf-8")) if block.name == "filter")
    rules = [
        (condition, branch) for item in filters.content if isinstance(item, LsclConditions)
        for condition, branch in item.conditions
        if isinstance(condition, LsclMatch) and condition.value.names == ["log", "level"]
    ]
    condition, branch = rules[0]
    assert [b.name for b in branch] == ["mutate"] and branch[0].content[0].content == {"alert_level": "high"}
    pattern = re.compile(condition.pattern.pattern)
    assert pattern.match("error") and pattern.match("ERROR") and pattern.match("critical")
    assert not pattern.match("info") and not pattern.match("warning") and not pattern.match("errors")


def mutated(tmp_path: Path, change: Callable[[str], str]) -> Path:
    target = tmp_path / "bot.conf"
    shutil.copyfile(BOT_CONF, target)
    text = target.read_text(encoding="utf-8")
    changed = change(text)
    assert changed != text, "the mutation must change the file"
    target.write_text(changed, encoding="utf-8")
    return target


def add_filter(block: str) -> Callable[[str], str]:
    return lambda text: text.replace("filter {\n", "filter {\n" + block + "\n", 1)


MUTATIONS: dict[str, tuple[Callable[[str], str], str]] = {
    "misspelled plugin": (lambda t: t.replace("mutate {", "mutatee {", 1), "unknown filter plugin `mutatee`"),
    "unknown input": (lambda t: t.replace("beats {", "beets {", 1), "unknown input plugin `beets`"),
    "unknown codec": (lambda t: t.replace("port => 5044", 'port => 5044\n    codec => "jsonn"', 1), "unknown codec `jsonn`"),
    "unknown grok pattern": (
        add_filter('  grok { match => { "message" => "%{IPV5:[client][ip]} %{GREEDYDATA:rest}" } }'),
        "grok pattern %{IPV5} is not one Logstash ships",
    ),
    "grok regex that does not compile": (
        add_filter('  grok { match => { "message" => "^(?<word>[a-z+) %{GREEDYDATA:rest}" } }'),
        "does not compile: unterminated character set",
    ),
    "broken ruby": (
        add_filter("  ruby { code => \"event.set('[labels][seen]', \" }"),
        "ruby `code` does not compile (ruby -c)",
    ),
    "syntax error": (lambda t: t.replace("drop { }", "drop {", 1), "does not parse as a Logstash pipeline: At line"),
    "field no log line carries": (
        lambda t: t.replace("if [labels][platform] {", "if [labels][platfrom] {", 1),
        "reads field `labels.platfrom`, which no bot or sidecar log line carries",
    ),
    "sprintf of a missing field": (
        lambda t: t.replace("platform_%{[labels][platform]}", "platform_%{[label][platform]}", 1),
        "reads field `label.platform`",
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_mutation_is_rejected_naming_the_file_and_the_problem(
    mutation: str, tmp_path: Path, available: set[str], ruby: str
) -> None:
    change, expected = MUTATIONS[mutation]
    problems = check_pipeline(mutated(tmp_path, change), available, ruby)
    assert problems, f"{mutation}: accepted"
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(f"{tmp_path / 'bot.conf'}") for p in problems), problems


def test_the_line_named_is_the_line_of_the_problem(tmp_path: Path, available: set[str], ruby: str) -> None:
    path = mutated(tmp_path, MUTATIONS["misspelled plugin"][0])
    (problem,) = check_pipeline(path, available, ruby)
    line = int(problem.split(":")[1])
    assert "mutatee {" in path.read_text(encoding="utf-8").splitlines()[line - 1]


def test_valid_grok_and_ruby_pass_and_their_fields_count_as_written(
    tmp_path: Path, available: set[str], ruby: str
) -> None:
    """The checks accept what Logstash accepts: shipped patterns, inline named groups, working ruby."""
    path = mutated(tmp_path, add_filter(
        '  grok { match => { "message" => "^%{WORD:[http][verb]} (?<route>/\\S*) %{INT:[http][code]:int}$" } }\n'
        "  ruby { code => \"event.set('[labels][seen]', event.get('[http][verb]').to_s.downcase)\" }\n"
        '  if [http][verb] and [route] and [labels][seen] { mutate { add_tag => ["%{[http][code]}"] } }'
    ))
    assert check_pipeline(path, available, ruby) == []
