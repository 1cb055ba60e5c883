"""A real Alertmanager notifies the bot, and the alert arrives formatted at a WeCom group robot."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.fake_platform import FakePlatformAPI
from tests.support.ports import free_port
from tests.support.processes import Process, http_ok, python_module
from tests.support.services import require_binary

ROBOT_KEY = "robot-key-7f3a"
RECEIVER_TOKEN = "am-token-91c2"


def start_alertmanager(tmp_path: Path, bot_port: int) -> tuple[Process, str]:
    port = free_port()
    config = {
        "route": {"receiver": "bot", "group_by": ["alertname"], "group_wait": "0s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "bot", "webhook_configs": [{
            "url": f"http://127.0.0.1:{bot_port}/alerts/alertmanager", "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer", "credentials": RECEIVER_TOKEN}},
        }]}],
    }
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config))
    argv = [
        require_binary("prometheus-alertmanager"), f"--config.file={config_path}",
        f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    proc = Process("alertmanager", argv, {}, tmp_path)
    base = f"http://127.0.0.1:{port}"
    proc.wait_until(lambda: http_ok(base + "/-/ready"), timeout=30, what="ready")
    return proc, base


def post_alert(base: str, *, resolved: bool) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    alert: dict[str, Any] = {
        "labels": {"alertname": "BotDown", "severity": "page", "instance": "bot:18789"},
        "annotations": {"summary": "The bot is not answering scrapes"},
        "startsAt": (now - dt.timedelta(minutes=5)).isoformat(),
    }
    if resolved:
        alert["endsAt"] = (now - dt.timedelta(seconds=1)).isoformat()
    request = urllib.request.Request(
        base + "/api/v2/alerts", data=json.dumps([alert]).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture
async def robot(aiohttp_server: Any) -> tuple[FakePlatformAPI, str]:
    api = FakePlatformAPI()
    api.on("POST", "/cgi-bin/webhook/send", {"errcode": 0, "errmsg": "ok"})
    server = await aiohttp_server(api.app())
    return api, str(server.make_url("/cgi-bin/webhook/send")) + f"?key={ROBOT_KEY}"


async def test_firing_then_resolved_alerts_reach_the_group_formatted(
    robot: tuple[FakePlatformAPI, str], tmp_path: Path
) -> None:
    api, webhook_url = robot
    bot_port = free_port()
    bot = Process("bot", python_module("bot"), {
        "BOT_PORT": str(bot_port), "BOT_DATA_DIR": str(tmp_path / "data"), "ALERTS_PLATFORM": "wecom",
        "ALERTS_WEBHOOK_URL": webhook_url, "ALERTS_RECEIVER_TOKEN": RECEIVER_TOKEN,
    }, tmp_path)
    alertmanager: Process | None = None
    try:
        bot.wait_http(f"http://127.0.0.1:{bot_port}/health")
        alertmanager, am_base = start_alertmanager(tmp_path, bot_port)
        post_alert(am_base, resolved=False)
        [firing] = await api.wait_for("/cgi-bin/webhook/send", timeout=20)
        assert firing.query == {"key": ROBOT_KEY}
        body = firing.json()
        assert body["msgtype"] == "markdown"
        assert body["markdown"]["content"].startswith("### [FIRING:1] BotDown (page)")
        assert "The bot is not answering scrapes" in body["markdown"]["content"]
        post_alert(am_base, resolved=True)
        sent = await api.wait_for("/cgi-bin/webhook/send", count=2, timeout=20)
        assert sent[1].json()["markdown"]["content"].startswith("### [RESOLVED:1] BotDown")
        with urllib.request.urlopen(f"http://127.0.0.1:{bot_port}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        assert 'bot_alerts_forwarded_total{outcome="sent",platform="wecom"} 2.0' in metrics
        assert ROBOT_KEY not in metrics and ROBOT_KEY not in bot.output()
    finally:
        if alertmanager is not None:
            alertmanager.stop()
        bot.stop()


async def test_the_receiver_refuses_callers_without_the_token(aiohttp_client: Any, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from bot.app import create_app
    from bot.settings import load_settings

    env = {"ALERTS_PLATFORM": "wecom", "ALERTS_WEBHOOK_URL": "http://127.0.0.1:9/x?key=k",
           "ALERTS_RECEIVER_TOKEN": RECEIVER_TOKEN, "BOT_DATA_DIR": str(tmp_path)}
    client = await aiohttp_client(create_app(load_settings(env), registry=CollectorRegistry()))
    resp = await client.post("/alerts/alertmanager", json={"alerts": []})
    assert resp.status == 401
    bad = await client.post("/alerts/alertmanager", json={"alerts": []},
                            headers={"Authorization": f"Bearer {RECEIVER_TOKEN}"})
    assert bad.status == 400
    down = await client.post(
        "/alerts/alertmanager", json={"alerts": [{"status": "firing", "labels": {"alertname": "X"}}]},
        headers={"Authorization": f"Bearer {RECEIVER_TOKEN}"},
    )
    assert down.status == 502
    assert (await down.json())["error"]["code"] == "alert_forward_failed"
    assert "key=k" not in await down.text()




@pytest.mark.parametrize(
    ("platform", "path", "answer"),
    [
        ("dingtalk", "/robot/send", {"errcode": 0, "errmsg": "ok"}),
        ("feishu", "/open-apis/bot/v2/hook/abc", {"code": 0, "msg": "success"}),
    ],
)
async def test_dingtalk_and_feishu_group_robots_get_signed_alerts(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, platform: str, path: str, answer: dict[str, Any]
) -> None:
    from prometheus_client import CollectorRegistry

    from bot.app import create_app
    from bot.settings import load_settings

    api = FakePlatformAPI()
    api.on("POST", path, answer)
    server = await aiohttp_server(api.app())
    env = {"ALERTS_PLATFORM": platform, "ALERTS_WEBHOOK_URL": str(server.make_url(path)) + "?access_token=t0k",
           "ALERTS_SECRET": "SECabc123", "BOT_DATA_DIR": str(tmp_path)}
    client = await aiohttp_client(create_app(load_settings(env), registry=CollectorRegistry()))
    payload = {"alerts": [{"status": "firing", "labels": {"alertname": "SidecarDown", "severity": "page"},
                           "annotations": {"summary": "sidecar gone"}}]}
    resp = await client.post("/alerts/alertmanager", json=payload)
    assert resp.status == 200, await resp.text()
    [sent] = api.calls(path)
    assert "SidecarDown" in sent.body.decode()
    signed = sent.query.get("sign") or sent.json().get("sign")
    assert signed, "the robot's secret must sign the request"
