"""Every PromQL expression the stack sends, read from the committed rules and dashboards."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from monitoring.generate import DASHBOARDS_JSON_DIR, RULES_DIR

# The deployment guides tell operators to run this one as written.
GUIDE_QUERIES = ("sum(rate(bot_requests_total[1m])) by (platform)",)

_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPERATORS = re.compile(r"\s(and|or|unless)\s")
_OPENERS, _CLOSERS = "([{", ")]}"


@dataclass(frozen=True)
class Expression:
    """One expression and where it comes from (`kind` is dashboard, record, alert or guide)."""

    kind: str
    source: str
    expr: str


def _top_level(expr: str) -> Iterator[tuple[int, str]]:
    """(index, character) for characters outside brackets and quoted strings."""
    depth, quote, escaped = 0, "", False
    for i, ch in enumerate(expr):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
        elif depth == 0:
            yield i, ch


def split_set_operations(expr: str) -> list[str]:
    """The operands of top-level `and` / `or` / `unless`."""
    top = {i for i, _ in _top_level(expr)}
    parts, start = [], 0
    for match in _SET_OPERATORS.finditer(expr):
        if match.start() in top and match.end() - 1 in top:
            parts.append(expr[start : match.start()].strip())
            start = match.end()
    parts.append(expr[start:].strip())
    return parts


def strip_comparison(expr: str) -> str:
    """The expression before its last top-level comparison (`x > 0.5` gives `x`)."""
    top = dict(_top_level(expr))
    cut, skip = None, -1
    for i in sorted(top):
        if i == skip:
            continue
        if expr[i : i + 2] in _COMPARISONS and i + 1 in top:
            cut, skip = i, i + 1
        elif top[i] in "<>":
            cut = i
    return expr if cut is None else expr[:cut].strip()


def alert_signals(expr: str) -> list[str]:
    """What an alert compares, without the thresholds: each operand of its `and`s, uncompared."""
    return [strip_comparison(part) for part in split_set_operations(expr)]


def _rules(rules_dir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                yield f"{path.name}/{group['name']}", rule


def rule_expressions(rules_dir: Path = RULES_DIR) -> list[Expression]:
    """Each recording rule's expression, and each alert's signals."""
    found = []
    for where, rule in _rules(rules_dir):
        if "record" in rule:
            found.append(Expression("record", f"{where}: {rule['record']}", rule["expr"]))
        else:
            for n, signal in enumerate(alert_signals(rule["expr"]), 1):
                found.append(Expression("alert", f"{where}: {rule['alert']} signal {n}", signal))
    return found


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions(json_dir: Path = DASHBOARDS_JSON_DIR) -> list[Expression]:
    """Each panel target's expression, as committed (template variables unexpanded)."""
    found = []
    for path in sorted(json_dir.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                source = f"{path.name}: {panel['title']} [{target.get('refId', '?')}]"
                found.append(Expression("dashboard", source, target["expr"]))
    return found


def all_expressions(rules_dir: Path = RULES_DIR, json_dir: Path = DASHBOARDS_JSON_DIR) -> list[Expression]:
    guides = [Expression("guide", "deployment guides", query) for query in GUIDE_QUERIES]
    return [*rule_expressions(rules_dir), *dashboard_expressions(json_dir), *guides]


def expand_variables(expr: str, rate_interval: str = "1m") -> str:
    """What Grafana sends with every variable set to All."""
    expanded = expr.replace("$__rate_interval", rate_interval)
    return re.sub(r"\$\{?(platform|instance)\}?", ".*", expanded)


def main() -> int:
    """Print every expression with its source, for pasting into Prometheus."""
    for item in all_expressions():
        print(f"# {item.kind}: {item.source}\n{item.expr}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
