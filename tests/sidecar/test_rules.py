"""Rate-limit rule files: the shipped defaults load; every mistake fails at start-up, naming itself."""

from __future__ import annotations

import pytest

from servicekit.errors import ConfigError
from sidecar.routes import OTHER, resolve
from sidecar.rules import load_rules, parse_rules
from sidecar.settings import DEFAULT_RULES


def test_shipped_defaults_load_and_cover_chat_and_callbacks() -> None:
    rules = {rule.name: rule for rule in load_rules(str(DEFAULT_RULES))}
    chat = resolve(b"/api/v1/chat")[0]  # type: ignore[index]
    feishu = resolve(b"/feishu/event")[0]  # type: ignore[index]
    health = resolve(b"/health")[0]  # type: ignore[index]
    assert {name for name, rule in rules.items() if rule.applies_to(chat)} == {"chat_client", "chat_total"}
    assert {name for name, rule in rules.items() if rule.applies_to(feishu)} == {"platform_callbacks"}
    assert not [name for name, rule in rules.items() if rule.applies_to(health)], "health checks are never limited"
    assert [rule.name for rule in rules.values() if rule.applies_to(OTHER)] == ["unknown_paths"]
    # A burst cap beside a per-minute budget.
    assert [(item.amount, item.GRANULARITY.name) for item in rules["chat_client"].items] == [(20, "second"), (600, "minute")]


def test_a_rule_accepts_one_rate_as_a_string() -> None:
    (rule,) = parse_rules("rules: [{name: r, key: client_ip, limits: '5 per minute; 1/second'}]")
    assert [item.amount for item in rule.items] == [5, 1]
    assert rule.strategy == "moving-window" and not rule.shadow


def test_no_file_means_no_rules() -> None:
    assert load_rules(None) == ()
    assert parse_rules("") == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [{name: r, key: client_ip, limits: [lots/second]}]", "not a rate"),
        ("rules: [{name: r, key: user_agent, limits: [1/second]}]", "key"),
        ("rules: [{name: r, key: route, routes: [/nope], limits: [1/second]}]", "unknown routes"),
        ("rules: [{name: r, key: platform, platforms: [myspace], limits: [1/second]}]", "unknown platforms"),
        ("rules: [{name: r, key: route, limits: []}]", "limits"),
        ("rules: [{name: Bad Name, key: route, limits: [1/second]}]", "name"),
        ("rules: [{name: r, key: route, limits: [1/second], strategy: leaky}]", "strategy"),
        ("rules: [{name: r, key: route, limits: [1/second], burst: 3}]", "burst"),
        ("rules: [{name: r, key: route, limits: [1/second]}, {name: r, key: route, limits: [2/second]}]", "unique"),
        ("rules: [unclosed", "not valid YAML"),
    ],
)
def test_mistakes_are_config_errors_naming_the_file(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules(text, "limits.yaml")
    assert "limits.yaml" in caught.value.message
    assert expected in caught.value.message


def test_unreadable_file_names_the_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="SIDECAR_RATE_LIMITS"):
        load_rules(str(tmp_path / "missing.yaml"))
