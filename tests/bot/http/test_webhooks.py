"""The webhook flow with a platform registered from the tests: verify, de-duplicate, ACK, reply once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from bot.app import create_app
from bot.platforms.registry import load_platforms
from bot.settings import load_settings
from tests.bot.conftest import sample
from tests.bot.platforms.example import plugin as example_plugin
from tests.support.fake_platform import FakePlatformAPI


@pytest.fixture
async def platform_api(aiohttp_server: Any) -> tuple[FakePlatformAPI, str]:
    api = FakePlatformAPI()
    api.on("POST", "/send", {"ok": True})
    server = await aiohttp_server(api.app())
    return api, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def bot(
    aiohttp_client: Any, registry: CollectorRegistry, tmp_path: Path, platform_api: tuple[FakePlatformAPI, str]
) -> TestClient:
    env = {"EXAMPLE_TOKEN": "s3cret-token", "EXAMPLE_API_BASE": platform_api[1], "BOT_DATA_DIR": str(tmp_path)}
    platforms = load_platforms(env, extra=[example_plugin])
    app = create_app(load_settings(env), platforms=platforms, registry=registry)
    client: TestClient = await aiohttp_client(app)
    return client


def callback(message_id: str = "m-1", text: str = "hello") -> bytes:
    return orjson.dumps({"id": message_id, "chat": "c-1", "user": "u-1", "text": text})


HEADERS = {"X-Example-Token": "s3cret-token", "Content-Type": "application/json"}


async def test_a_callback_is_acknowledged_and_answered_through_the_platform_api(
    bot: TestClient, platform_api: tuple[FakePlatformAPI, str], registry: CollectorRegistry
) -> None:
    api, _ = platform_api
    resp = await bot.post("/example/hook", data=callback(), headers=HEADERS)
    assert resp.status == 200
    assert await resp.json() == {"ok": True}
    [sent] = await api.wait_for("/send")
    assert sent.headers["Authorization"] == "Token s3cret-token"
    assert sent.json() == {
        "chat": "c-1", "text": "[built-in responder] turn 1: you said: hello", "idempotency_key": "m-1",
    }
    assert sample(registry, "bot_requests_total", platform="example", route="/example/hook", method="POST",
                  status="200") == 1
    assert sample(registry, "bot_ack_duration_seconds_count", platform="example") == 1
    await _until(lambda: sample(registry, "bot_reply_duration_seconds_count", platform="example") == 1)


async def test_the_same_event_three_times_two_concurrently_is_answered_once(
    bot: TestClient, platform_api: tuple[FakePlatformAPI, str], registry: CollectorRegistry
) -> None:
    api, _ = platform_api
    first, second = await asyncio.gather(
        bot.post("/example/hook", data=callback("dup"), headers=HEADERS),
        bot.post("/example/hook", data=callback("dup"), headers=HEADERS),
    )
    third = await bot.post("/example/hook", data=callback("dup"), headers=HEADERS)
    assert [r.status for r in (first, second, third)] == [200, 200, 200]
    await api.wait_for("/send")
    await bot.post("/example/hook", data=callback("other"), headers=HEADERS)
    await api.wait_for("/send", count=2)
    assert [r.json()["idempotency_key"] for r in api.calls("/send")] == ["dup", "other"]
    assert sample(registry, "bot_duplicates_total", platform="example") == 2


async def test_a_challenge_is_echoed_without_queueing(bot: TestClient, platform_api: tuple[FakePlatformAPI, str]) -> None:
    resp = await bot.post("/example/hook", data=b'{"type":"challenge","echo":"xyz"}', headers=HEADERS)
    assert await resp.json() == {"echo": "xyz"}


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({"X-Example-Token": "wrong"}, callback(), 401, "bad_token"),
        ({}, callback(), 401, "bad_token"),
        (HEADERS, b"{not json", 400, "malformed"),
        (HEADERS, b'{"id": 1}', 400, "malformed"),
    ],
)
async def test_rejected_callbacks_are_4xx_json_and_counted_by_reason(
    bot: TestClient, registry: CollectorRegistry, headers: dict[str, str], body: bytes, status: int, reason: str
) -> None:
    resp = await bot.post("/example/hook", data=body, headers=headers)
    assert resp.status == status
    payload = await resp.json()
    assert payload["error"]["code"] == "webhook_rejected"
    assert "s3cret-token" not in await resp.text()
    assert sample(registry, "bot_webhook_rejected_total", platform="example", reason=reason) == 1


async def test_ip_allow_list_refuses_other_sources(
    aiohttp_client: Any, registry: CollectorRegistry, tmp_path: Path
) -> None:
    env = {"EXAMPLE_TOKEN": "t", "EXAMPLE_ALLOWED_IPS": "10.0.0.0/8", "BOT_DATA_DIR": str(tmp_path)}
    app = create_app(load_settings(env), platforms=load_platforms(env, extra=[example_plugin]), registry=registry)
    client = await aiohttp_client(app)
    denied = await client.post("/example/hook", data=callback(), headers={"X-Example-Token": "t"})
    assert denied.status == 403
    assert sample(registry, "bot_webhook_rejected_total", platform="example", reason="ip_denied") == 1
    # Behind a trusted proxy (loopback), the forwarded client address is the one checked.
    allowed = await client.post(
        "/example/hook", data=callback(), headers={"X-Example-Token": "t", "X-Forwarded-For": "10.1.2.3"}
    )
    assert allowed.status == 200


async def test_a_platform_without_settings_is_off(aiohttp_client: Any, registry: CollectorRegistry) -> None:
    app = create_app(load_settings({}), platforms=load_platforms({}, extra=[example_plugin]), registry=registry)
    client = await aiohttp_client(app)
    assert (await client.post("/example/hook", data=callback())).status == 404
    assert (await (await client.get("/api/health")).json())["platforms"] == []


async def test_api_health_lists_the_platforms_that_are_on(bot: TestClient) -> None:
    assert (await (await bot.get("/api/health")).json())["platforms"] == ["example"]


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)
