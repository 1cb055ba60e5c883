"""The connection signals on a real Prometheus that scraped a real bot in DingTalk Stream mode: every
dashboard and alert expression over them holds data, and each shows the value its cause makes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from monitoring.expressions import all_expressions, expand_variables
from tests.bot.platforms.dingtalk.stream_gateway import DingTalkStreamGateway
from tests.bot.platforms.dingtalk.test_stream import stream_env
from tests.monitoring.test_panels_and_rules_on_live_prometheus import _needs_long_connection
from tests.support.bots import BotProcesses, eventually
from tests.support.prometheus_server import PrometheusServer
from tests.support.services import require_binary


@pytest.fixture
async def bots(tmp_path: Path) -> AsyncIterator[BotProcesses]:
    processes = BotProcesses(tmp_path, env={})
    yield processes
    await asyncio.to_thread(processes.stop_all)


async def _values(prometheus: PrometheusServer, expr: str) -> list[float]:
    result = await asyncio.to_thread(prometheus.series, expr)
    return [float(series["value"][1]) for series in result]


async def _equals(prometheus: PrometheusServer, expr: str, expected: list[float]) -> bool:
    return await _values(prometheus, expr) == expected


async def test_connection_panels_and_alerts_read_what_the_connection_does(
    aiohttp_server: Any, bots: BotProcesses, tmp_path: Path
) -> None:
    binary = require_binary("prometheus")
    gateway = DingTalkStreamGateway()
    gateway.port = (await aiohttp_server(gateway.app())).port
    # Refused credentials keep the connection down for the rest of the test once they start.
    _, base = await bots.start(stream_env(gateway, DINGTALK_SILENCE_SECONDS="1", DINGTALK_BREAKER_SECONDS="600"))
    prometheus = PrometheusServer(binary, tmp_path / "prometheus", {"bot": [base.removeprefix("http://")]})
    await asyncio.to_thread(prometheus.start)
    try:
        await eventually(lambda: _equals(prometheus, 'bot_platform_connection_up{platform="dingtalk"}', [1.0]),
                         timeout=30, what="the connection up in Prometheus")
        [age] = await _values(prometheus, 'time() - bot_platform_last_frame_timestamp_seconds{platform="dingtalk"}')
        assert age < 5

        # Silent: the watchdog reconnects, and the reconnects panel shows it under its reason.
        gateway.current().silent = True

        async def silent_counted() -> bool:
            return await _values(
                prometheus, 'sum by (platform, reason) (increase(bot_platform_reconnects_total{reason="silent"}[1m]))'
            ) not in ([], [0.0])

        await eventually(silent_counted, timeout=20, what="a silent reconnect in Prometheus")

        # Every expression over the connection metrics now holds data (a reconnect starts its counter).
        queries = [(item, expand_variables(item.expr)) for item in all_expressions()
                   if _needs_long_connection(item.expr)]
        assert {item.kind for item, _ in queries} == {"dashboard", "alert"}

        async def all_filled() -> bool:
            return all([await _values(prometheus, query) for _, query in queries])

        await eventually(all_filled, timeout=30, what="data for every connection expression")

        # Down: the gateway drops the connection and refuses the credentials from now on.
        gateway.refuse_credentials = True
        dropped_at = time.time()
        await gateway.close_all()

        async def down_alert_pending() -> bool:
            alerts = (await asyncio.to_thread(prometheus.api, "/api/v1/alerts"))["data"]["alerts"]
            return any(a["labels"]["alertname"] == "PlatformConnectionDown" and a["labels"]["platform"] == "dingtalk"
                       and a["state"] in ("pending", "firing") for a in alerts)

        await eventually(down_alert_pending, timeout=20, what="PlatformConnectionDown pending")
        assert await _values(prometheus, 'bot_platform_connection_up{platform="dingtalk"}') == [0.0]
        # The breaker opens on the refused reconnect, which follows the drop by a backoff step: it may
        # reach Prometheus a scrape later than the drop itself.

        async def breaker_open() -> bool:
            return await _values(prometheus, 'bot_platform_connection_breaker_open{platform="dingtalk"}') == [1.0]

        await eventually(breaker_open, timeout=20, what="the breaker open in Prometheus")
        [age] = await _values(prometheus, 'time() - bot_platform_last_frame_timestamp_seconds{platform="dingtalk"}')
        assert age >= time.time() - dropped_at - 1.5
        alerts = (await asyncio.to_thread(prometheus.api, "/api/v1/alerts"))["data"]["alerts"]
        assert not [a for a in alerts if a["labels"]["alertname"] == "PlatformConnectionSilent"]
    finally:
        await asyncio.to_thread(prometheus.stop)
