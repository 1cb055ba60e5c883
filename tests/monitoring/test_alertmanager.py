"""The Alertmanager configuration: valid for amtool, pages and tickets routed to the bot's receiver."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.support.processes import ROOT
from tests.support.services import require_binary

CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
RECEIVER_URL = "http://bot:18789/alerts/alertmanager"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("amtool"), *args], capture_output=True, text=True, timeout=30)


def test_amtool_accepts_the_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "alertname=BotDown"], "page"),
        (["severity=ticket", "alertname=CpuOverTarget"], "ticket"),
        (["alertname=SomethingNew"], "ticket"),
    ],
)
def test_alerts_route_by_severity(labels: list[str], receiver: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def test_both_receivers_post_to_the_bot_with_resolved_notices() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    receivers = {r["name"]: r["webhook_configs"] for r in config["receivers"]}
    assert set(receivers) == {"page", "ticket"}
    for hooks in receivers.values():
        assert [hook["url"] for hook in hooks] == [RECEIVER_URL]
        assert all(hook["send_resolved"] for hook in hooks)


def test_every_severity_the_rules_use_has_a_route() -> None:
    rules = yaml.safe_load((ROOT / "prometheus" / "rules" / "alerts.rules.yml").read_text(encoding="utf-8"))
    severities = {rule["labels"]["severity"] for group in rules["groups"] for rule in group["rules"]}
    for severity in severities:
        result = amtool("config", "routes", "test", f"--config.file={CONFIG}", f"severity={severity}")
        assert result.stdout.strip() == severity
