"""A platform API failing with 5xx and 429: bounded retries, then a dead letter that `dlq replay` delivers."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.support.bots import (
    TELEGRAM_HEADERS,
    TELEGRAM_SEND,
    TELEGRAM_WEBHOOK,
    BotProcesses,
    eventually,
    metric,
    run_dlq,
    telegram_update,
)
from tests.support.fake_platform import FakePlatformAPI


@pytest.fixture(params=["sqlite", "redis"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {"BOT_DATA_DIR": str(tmp_path / "data")}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    return env


async def test_failed_sends_are_retried_then_buried_and_replay_delivers_them(
    bots: BotProcesses, store_env: dict[str, str], telegram_api: tuple[FakePlatformAPI, str]
) -> None:
    api, api_url = telegram_api
    api.faults[TELEGRAM_SEND] = [500, 429, 503]
    env = {
        **store_env,
        "TELEGRAM_API_BASE": api_url,
        "DELIVERY_MAX_ATTEMPTS": "3", "DELIVERY_BACKOFF_BASE": "0.05", "DELIVERY_BACKOFF_MAX": "0.2",
    }
    _, base = await bots.start(env)
    async with aiohttp.ClientSession(headers=TELEGRAM_HEADERS) as http:
        async with http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(6001, "hello")) as resp:
            assert resp.status == 200
        await api.wait_for(TELEGRAM_SEND, count=3)

        async def buried() -> bool:
            return await metric(http, base, "bot_dead_letters_total", platform="telegram") == 1

        await eventually(buried, what="a dead letter")
        assert await metric(http, base, "bot_delivery_attempts_total", platform="telegram", outcome="retry") == 2
        assert await metric(http, base, "bot_delivery_attempts_total", platform="telegram", outcome="failed") == 1

        listed = await run_dlq(env, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [dead] = orjson.loads(listed.stdout)["dead_letters"]
        assert (dead["message_id"], dead["attempts"], dead["reason"]) == (
            "6001", 3, "gave up after 3 attempts (DELIVERY_MAX_ATTEMPTS); last error: platform API answered HTTP 503",
        )

        replayed = await run_dlq(env, "replay", dead["id"])
        assert (replayed.returncode, replayed.stdout.strip()) == (0, "replayed 1 dead letter")
        fourth = (await api.wait_for(TELEGRAM_SEND, count=4))[3]
        assert fourth.json()["reply_parameters"]["message_id"] == 6001

        async def delivered() -> bool:
            return await metric(http, base, "bot_delivery_attempts_total", outcome="delivered") == 1

        await eventually(delivered, what="the replayed reply delivered")
    assert orjson.loads((await run_dlq(env, "list", "--json")).stdout)["total"] == 0
