"""Alertmanager payloads become one readable group message: firing first, resolved after, bounded."""

from __future__ import annotations

from typing import Any

import pytest

from bot.alerts.format import MAX_ALERTS_SHOWN, digest
from bot.errors import PayloadInvalid


def alert(name: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status, "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} summary"}, "startsAt": "2026-11-21T10:00:00.000Z",
    }


def test_firing_and_resolved_alerts_are_grouped_with_counts() -> None:
    payload = {
        "receiver": "page", "status": "firing", "groupLabels": {"alertname": "BotDown"},
        "commonLabels": {"alertname": "BotDown", "severity": "page"},
        "alerts": [alert("BotDown", instance="bot:18789"), alert("BotDown", "resolved", instance="bot-2:18789")],
        "externalURL": "http://alertmanager:9093",
    }
    result = digest(payload)
    assert result.title == "[FIRING:1] BotDown (page)"
    assert (result.firing, result.resolved) == (1, 1)
    firing_at = result.markdown.index("**Firing**")
    resolved_at = result.markdown.index("**Resolved**")
    assert firing_at < result.markdown.index("instance=bot:18789") < resolved_at
    assert "BotDown summary" in result.markdown
    assert "since 2026-11-21 10:00 UTC" in result.markdown


def test_a_resolved_only_group_says_resolved() -> None:
    result = digest({"alerts": [alert("SidecarDown", "resolved")], "commonLabels": {"severity": "ticket"}})
    assert result.title == "[RESOLVED:1] SidecarDown (ticket)"


def test_a_long_group_is_cut_with_the_rest_counted() -> None:
    result = digest({"alerts": [alert(f"A{i}") for i in range(MAX_ALERTS_SHOWN + 3)]})
    assert "… and 3 more" in result.markdown
    assert result.markdown.count("- **A") == MAX_ALERTS_SHOWN


@pytest.mark.parametrize("payload", [{}, {"alerts": []}, {"alerts": "x"}, {"alerts": [1]}])
def test_a_payload_without_alerts_is_invalid(payload: dict[str, Any]) -> None:
    with pytest.raises(PayloadInvalid):
        digest(payload)


def test_every_platform_with_a_group_robot_is_offered_for_alerts() -> None:
    from bot.platforms.registry import discover_plugins

    robots = {name for name, plugin in discover_plugins().items() if plugin.group_robot is not None}
    assert robots >= {"dingtalk", "feishu", "wecom"}
