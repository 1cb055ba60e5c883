"""Logstash pipelines read by lscl, a parser of the Logstash configuration language, then checked:
every plugin is one a stock Logstash ships, every grok pattern names shipped patterns and compiles,
every `ruby` block passes `ruby -c`, and every field the pipeline reads is carried by the services'
log lines (or added earlier by Filebeat or by the pipeline itself)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import regex
import yaml
from lscl.errors import DecodeError
from lscl.lang import LsclAttribute, LsclBlock, LsclConditions, LsclSelector
from lscl.parser import parse_lscl
from pydantic import BaseModel

from tests.support.checks import DATA, shown

SECTIONS = ("input", "filter", "output")
_SPRINTF = re.compile(r"%\{([^}+][^}]*)\}")
_GROK_REF = re.compile(r"%\{(\w+)(?::([^}:]+))?(?::\w+)?\}")
_NAMED_GROUP = re.compile(r"\(\?<(?![=!])([^>]+)>")
_RUBY_SET = re.compile(r"""event\.set\(\s*['"]([^'"]+)['"]""")


@cache
def shipped_plugins() -> dict[str, frozenset[str]]:
    listed = yaml.safe_load((DATA / "logstash-plugins.yaml").read_text(encoding="utf-8"))
    return {section: frozenset(names) for section, names in listed.items()}


@cache
def shipped_grok_patterns() -> frozenset[str]:
    lines = (DATA / "grok-pattern-names.txt").read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def dotted(ref: str) -> str:
    """`[log][level]` -> `log.level`; a bare name stays as written."""
    parts = re.findall(r"\[([^\]]+)\]", ref)
    return ".".join(parts) if parts else ref.strip()


@dataclass
class Plugin:
    section: str
    name: str
    line: int
    attributes: dict[str, Any]


@dataclass
class Pipeline:
    """A parsed pipeline: its plugins in source order and the fields its conditionals read."""

    path: Path
    text: str
    plugins: list[Plugin] = field(default_factory=list)
    condition_fields: set[str] = field(default_factory=set)

    def line_of(self, needle: str, start: int = 0) -> tuple[int, int]:
        """1-based line of the first `needle` (a regex) at or after offset `start`, and its offset."""
        code = re.sub(r"#[^\n]*", lambda m: " " * len(m.group(0)), self.text)
        found = re.compile(needle).search(code, start)
        if not found:
            return 0, start
        return self.text.count("\n", 0, found.start()) + 1, found.end()

    def where(self, line: int) -> str:
        return f"{shown(self.path)}:{line}" if line else shown(self.path)


class PipelineError(Exception):
    pass


def parse_pipeline(path: Path) -> Pipeline:
    text = path.read_text(encoding="utf-8")
    try:
        tree = parse_lscl(text)
    except (DecodeError, ValueError) as exc:
        raise PipelineError(f"{shown(path)}: does not parse as a Logstash pipeline: {exc}") from None
    pipeline = Pipeline(path, text)
    cursor = 0
    for section in tree:
        if not isinstance(section, LsclBlock) or section.name not in SECTIONS:
            name = getattr(section, "name", type(section).__name__)
            raise PipelineError(f"{shown(path)}: top-level `{name}` is not one of {', '.join(SECTIONS)}")
        cursor = _collect(pipeline, section.name, section.content, cursor)
    return pipeline


def _collect(pipeline: Pipeline, section: str, content: Iterable[Any], cursor: int) -> int:
    for item in content:
        if isinstance(item, LsclBlock):
            line, cursor = pipeline.line_of(rf"(?<![\w-]){re.escape(item.name)}\s*\{{", cursor)
            attributes = {a.name: a.content for a in item.content if isinstance(a, LsclAttribute)}
            pipeline.plugins.append(Plugin(section, item.name, line, attributes))
        elif isinstance(item, LsclConditions):
            for condition, branch in item.conditions:
                pipeline.condition_fields |= {".".join(s.names) for s in _selectors(condition)}
                cursor = _collect(pipeline, section, branch, cursor)
            cursor = _collect(pipeline, section, item.default or [], cursor)
    return cursor


def _selectors(node: Any) -> Iterator[LsclSelector]:
    if isinstance(node, LsclSelector):
        yield node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _selectors(getattr(node, name))
    elif isinstance(node, (list, tuple)):
        for child in node:
            yield from _selectors(child)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(key)
            yield from _strings(child)
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child)
    elif isinstance(value, BaseModel) and hasattr(value, "content"):
        yield from _strings(value.content)


def _grok_patterns(plugin: Plugin) -> Iterator[str]:
    match = plugin.attributes.get("match", {})
    for patterns in (match.values() if isinstance(match, dict) else [match]):
        yield from _strings(patterns)


def check_grok(pipeline: Pipeline, plugin: Plugin) -> list[str]:
    problems = []
    custom = plugin.attributes.get("pattern_definitions", {})
    known = shipped_grok_patterns() | set(custom if isinstance(custom, dict) else {})
    for pattern in [*_grok_patterns(plugin), *(custom.values() if isinstance(custom, dict) else [])]:
        for name in (m.group(1) for m in _GROK_REF.finditer(pattern)):
            if name not in known:
                problems.append(
                    f"{pipeline.where(plugin.line)}: grok pattern %{{{name}}} is not one Logstash ships "
                    f"(nor defined in pattern_definitions), in {pattern!r}"
                )
        # Each %{NAME} is a shipped, tested regex: stand in an opaque group and compile what is left.
        bare = _NAMED_GROUP.sub("(?:", _GROK_REF.sub("(?:x)", pattern))
        try:
            regex.compile(bare)
        except regex.error as exc:
            problems.append(f"{pipeline.where(plugin.line)}: grok pattern {pattern!r} does not compile: {exc}")
    return problems


def check_ruby(pipeline: Pipeline, plugin: Plugin, ruby: str) -> list[str]:
    problems = []
    for option in ("init", "code"):
        code = plugin.attributes.get(option)
        if not isinstance(code, str):
            continue
        result = subprocess.run([ruby, "-c"], input=code, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            reason = " ".join(result.stderr.split())[:300]
            problems.append(f"{pipeline.where(plugin.line)}: ruby `{option}` does not compile (ruby -c): {reason}")
    return problems


def fields_written(pipeline: Pipeline) -> set[str]:
    """Fields the pipeline adds itself: add_field/add_tag, grok captures, ruby event.set, rename/copy targets."""
    written: set[str] = set()
    for plugin in pipeline.plugins:
        attrs = plugin.attributes
        if isinstance(attrs.get("add_field"), dict):
            written |= {dotted(k) for k in attrs["add_field"]}
        if "add_tag" in attrs:
            written.add("tags")
        for option in ("rename", "copy"):
            if isinstance(attrs.get(option), dict):
                written |= {dotted(v) for v in attrs[option].values() if isinstance(v, str)}
        if isinstance(attrs.get("target"), str):
            written.add(dotted(attrs["target"]))
        if plugin.name == "grok":
            for pattern in _grok_patterns(plugin):
                written |= {dotted(m.group(2)) for m in _GROK_REF.finditer(pattern) if m.group(2)}
                written |= {dotted(m.group(1)) for m in _NAMED_GROUP.finditer(pattern)}
        if plugin.name == "ruby":
            written |= {dotted(m) for code in _strings(attrs.get("code", "")) for m in _RUBY_SET.findall(code)}
    return written


def fields_read(pipeline: Pipeline) -> dict[str, int]:
    """Each field a conditional or a %{sprintf} reference reads, with the line it is first read on."""
    read: dict[str, int] = {}
    for name in sorted(pipeline.condition_fields):
        brackets = "".join(rf"\[{re.escape(part)}\]" for part in name.split("."))
        read[name] = pipeline.line_of(rf"{brackets}|\[{re.escape(name)}\]")[0]
    for plugin in pipeline.plugins:
        for option, value in plugin.attributes.items():
            if plugin.name == "grok" and option in ("match", "pattern_definitions"):
                continue
            for text in _strings(value):
                for ref in _SPRINTF.findall(text):
                    read.setdefault(dotted(ref), plugin.line)
    return read


def _provided(name: str, available: set[str]) -> bool:
    if name.startswith("@metadata"):
        return True
    return any(f == name or f.startswith(name + ".") or (f.endswith(".*") and name.startswith(f[:-1])) for f in available)


def check_pipeline(path: Path, available_fields: set[str], ruby: str | None) -> list[str]:
    """Every problem found in one pipeline file; `available_fields` may end in `.*` for a whole object."""
    try:
        pipeline = parse_pipeline(path)
    except PipelineError as exc:
        return [str(exc)]
    problems = []
    shipped = shipped_plugins()
    for plugin in pipeline.plugins:
        if plugin.name not in shipped[plugin.section]:
            problems.append(
                f"{pipeline.where(plugin.line)}: unknown {plugin.section} plugin `{plugin.name}` "
                f"(not among the {plugin.section} plugins Logstash ships)"
            )
        codec = plugin.attributes.get("codec")
        if isinstance(codec, str) and codec not in shipped["codec"]:
            problems.append(f"{pipeline.where(plugin.line)}: unknown codec `{codec}` in {plugin.name}")
        if plugin.name == "grok":
            problems += check_grok(pipeline, plugin)
        if plugin.name == "ruby":
            if ruby is None:
                problems.append(f"{pipeline.where(plugin.line)}: ruby filter present but no `ruby` to check it with")
            else:
                problems += check_ruby(pipeline, plugin, ruby)
    available = available_fields | fields_written(pipeline)
    for name, line in sorted(fields_read(pipeline).items()):
        if not _provided(name, available):
            problems.append(
                f"{pipeline.where(line)}: reads field `{name}`, which no bot or sidecar log line carries "
                f"and neither Filebeat nor the pipeline adds"
            )
    return problems
