"""The Alertmanager receiver: closed to callers without its token whenever the bot is reachable from
other hosts, and never repeating a robot's credentials in its answers or logs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bot.app import create_app
from bot.http.alerts import listens_on_loopback
from bot.settings import load_settings
from tests.support.fake_platform import FakePlatformAPI

ALERT = {"alerts": [{"status": "firing", "labels": {"alertname": "BotDown", "severity": "page"}}]}


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("::1", True), ("localhost", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("bot.internal", False),
])
def test_what_counts_as_listening_on_loopback_only(host: str, loopback: bool) -> None:
    assert listens_on_loopback(host) is loopback


async def robot_client(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, answer: dict[str, Any], **env: str) -> tuple[Any, FakePlatformAPI]:
    api = FakePlatformAPI()
    api.on("POST", "/robot/send", answer)
    server = await aiohttp_server(api.app())
    settings = load_settings({
        "ALERTS_PLATFORM": "dingtalk", "ALERTS_WEBHOOK_URL": str(server.make_url("/robot/send")) + "?access_token=robot-tok-5f1e",
        "BOT_DATA_DIR": str(tmp_path), **env,
    })
    return await aiohttp_client(create_app(settings, registry=CollectorRegistry())), api


async def test_without_a_token_a_bot_listening_beyond_loopback_refuses_every_alert(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    client, api = await robot_client(aiohttp_server, aiohttp_client, tmp_path, {"errcode": 0, "errmsg": "ok"}, BOT_HOST="0.0.0.0")
    resp = await client.post("/alerts/alertmanager", json=ALERT)
    assert resp.status == 401
    assert "ALERTS_RECEIVER_TOKEN" in (await resp.json())["error"]["message"]
    assert api.calls("/robot/send") == []


async def test_without_a_token_a_loopback_bot_takes_alerts(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> None:
    client, api = await robot_client(aiohttp_server, aiohttp_client, tmp_path, {"errcode": 0, "errmsg": "ok"}, BOT_HOST="127.0.0.1")
    resp = await client.post("/alerts/alertmanager", json=ALERT)
    assert resp.status == 200
    assert len(api.calls("/robot/send")) == 1


async def test_with_a_token_a_bot_listening_beyond_loopback_takes_alerts_that_carry_it(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    client, _ = await robot_client(
        aiohttp_server, aiohttp_client, tmp_path, {"errcode": 0, "errmsg": "ok"}, BOT_HOST="0.0.0.0", ALERTS_RECEIVER_TOKEN="am-tok",
    )
    assert (await client.post("/alerts/alertmanager", json=ALERT)).status == 401
    ok = await client.post("/alerts/alertmanager", json=ALERT, headers={"Authorization": "Bearer am-tok"})
    assert ok.status == 200


async def test_a_robot_echoing_its_url_never_puts_the_access_token_in_the_answer_or_the_log(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    echo = {"errcode": 300001, "errmsg": "token is not exist: https://oapi.dingtalk.com/robot/send?access_token=robot-tok-5f1e"}
    client, _ = await robot_client(aiohttp_server, aiohttp_client, tmp_path, echo)
    with caplog.at_level(logging.INFO):
        resp = await client.post("/alerts/alertmanager", json=ALERT)
    body = await resp.text()
    assert resp.status == 502
    assert "token is not exist" in body, "the robot's reason is still reported"
    assert "robot-tok-5f1e" not in body
    # (The stand-in robot runs in this process too; its own access log is not the bot's.)
    bot_lines = [record.getMessage() for record in caplog.records if record.name.startswith("bot")]
    assert any("token is not exist" in line for line in bot_lines)
    assert not [line for line in bot_lines if "robot-tok-5f1e" in line]
