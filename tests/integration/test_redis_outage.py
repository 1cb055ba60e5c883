"""Redis down: the bot stays up, says why on /ready, and refuses callbacks with 503 so the platform retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.bots import (
    TELEGRAM_HEADERS,
    TELEGRAM_SEND,
    TELEGRAM_WEBHOOK,
    BotProcesses,
    eventually,
    telegram_update,
)
from tests.support.fake_platform import FakePlatformAPI
from tests.support.redis_server import RedisServer
from tests.support.services import require_binary


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server this test may stop and start again on the same port."""
    server = RedisServer(require_binary("redis-server"), tmp_path / "redis")
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


BEFORE, DURING = 9001, 9002


def event(update_id: int) -> bytes:
    return telegram_update(update_id, f"text of {update_id}")


async def test_while_redis_is_down_callbacks_get_503_and_work_resumes_when_it_is_back(
    bots: BotProcesses, own_redis: RedisServer, telegram_api: tuple[FakePlatformAPI, str]
) -> None:
    api, api_url = telegram_api
    proc, base = await bots.start({"REDIS_URL": own_redis.url, "TELEGRAM_API_BASE": api_url})
    async with aiohttp.ClientSession(headers=TELEGRAM_HEADERS) as http:
        async with http.post(base + TELEGRAM_WEBHOOK, data=event(BEFORE)) as resp:
            assert resp.status == 200
        await api.wait_for(TELEGRAM_SEND, count=1)

        await asyncio.to_thread(own_redis.stop)
        async with http.get(base + "/ready") as resp:
            assert resp.status == 503
            assert {"redis", "queue"} <= set((await resp.json())["failing"])
        async with http.post(base + TELEGRAM_WEBHOOK, data=event(DURING)) as resp:
            # No ACK without a durable enqueue: the platform will deliver this event again.
            assert resp.status == 503
            assert resp.headers["Retry-After"]
            body = await resp.json()
            assert body["error"]["code"] == "dependency_unavailable"
            assert own_redis.url not in await resp.text()
        async with http.get(base + "/health") as resp:
            assert resp.status == 200
        assert proc.alive()

        await asyncio.to_thread(own_redis.start)

        async def ready() -> bool:
            async with http.get(base + "/ready") as resp:
                return resp.status == 200

        await eventually(ready, what="/ready answering 200 once Redis is back")
        async with http.post(base + TELEGRAM_WEBHOOK, data=event(DURING)) as resp:
            assert resp.status == 200
        [_, after] = await api.wait_for(TELEGRAM_SEND, count=2)
        assert after.json()["reply_parameters"]["message_id"] == DURING
    assert "Traceback" not in proc.output()
