"""Behind a trusted proxy (the sidecar), the real client's address is the one logged, traced and checked."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import bot.app
from bot.app import create_app
from bot.platforms.registry import load_platforms
from bot.settings import load_settings
from tests.bot.conftest import sample
from tests.bot.platforms.example import plugin as example_plugin

CLIENT = "198.51.100.23"
HEADERS = {"X-Example-Token": "t", "X-Forwarded-For": f"6.6.6.6, {CLIENT}"}


async def start_bot(aiohttp_client: Any, registry: CollectorRegistry, env: dict[str, str]) -> Any:
    app = create_app(load_settings(env), platforms=load_platforms(env, extra=[example_plugin]), registry=registry)
    return await aiohttp_client(app)


def callback() -> bytes:
    return orjson.dumps({"id": "m-1", "chat": "c-1", "user": "u-1", "text": "hi"})


def access_ips(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.__dict__["ecs"]["client"]["ip"] for r in caplog.records if r.name == "bot.access"]


async def test_the_access_log_names_the_forwarded_client(
    aiohttp_client: Any, registry: CollectorRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bot.access")
    client = await start_bot(aiohttp_client, registry, {"BOT_DATA_DIR": str(tmp_path)})
    # The chat API, not /health: successful health checks are sampled to one access line a minute.
    chat = {"message": "hi"}
    assert (await client.post("/api/v1/chat", json=chat, headers={"X-Forwarded-For": CLIENT})).status == 200
    assert (await client.post("/api/v1/chat", json=chat)).status == 200
    assert access_ips(caplog) == [CLIENT, "127.0.0.1"]


async def test_an_untrusted_peer_cannot_choose_the_logged_address(
    aiohttp_client: Any, registry: CollectorRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bot.access")
    env = {"BOT_DATA_DIR": str(tmp_path), "BOT_TRUSTED_PROXIES": "10.0.0.0/8"}
    client = await start_bot(aiohttp_client, registry, env)
    assert (await client.get("/health", headers={"X-Forwarded-For": CLIENT})).status == 200
    assert access_ips(caplog) == ["127.0.0.1"]


async def test_ip_denied_logs_the_address_the_allow_list_checked(
    aiohttp_client: Any, registry: CollectorRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    env = {"EXAMPLE_TOKEN": "t", "EXAMPLE_ALLOWED_IPS": "10.0.0.0/8", "BOT_DATA_DIR": str(tmp_path)}
    client = await start_bot(aiohttp_client, registry, env)
    denied = await client.post("/example/hook", data=callback(), headers=HEADERS)
    assert denied.status == 403
    assert sample(registry, "bot_webhook_rejected_total", platform="example", reason="ip_denied") == 1
    warnings = [r for r in caplog.records if r.getMessage() == "webhook rejected: ip_denied"]
    assert [r.__dict__["client.ip"] for r in warnings] == [CLIENT]
    assert access_ips(caplog) == [CLIENT]


async def test_the_server_span_carries_the_client_address(
    aiohttp_client: Any, registry: CollectorRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()

    def recording_provider(*_: Any) -> TracerProvider:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return provider

    monkeypatch.setattr(bot.app, "create_tracer_provider", recording_provider)
    client = await start_bot(aiohttp_client, registry, {"BOT_DATA_DIR": str(tmp_path)})
    assert (await client.get("/health", headers={"X-Forwarded-For": CLIENT})).status == 200
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["client.address"] == CLIENT
