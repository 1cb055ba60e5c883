"""Two bot replicas on one Redis draw on one DingTalk robot budget: together they keep to its rate."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.bot.platforms.dingtalk.conftest import SESSION_PATH, DingTalkAPI, callback, env, live_session, payload
from tests.support.bots import BotProcesses, eventually, metric

RATE, WINDOW = 10, 2.0  # DingTalk's 20 a minute, scaled down so the test takes seconds


async def test_replicas_sharing_redis_share_the_robots_budget_and_deliver_everything(
    bots: BotProcesses, redis_url: str, aiohttp_server: Any
) -> None:
    api = DingTalkAPI()
    api_base = str((await aiohttp_server(api.app(), access_log=None)).make_url("")).rstrip("/")
    bot_env = env(api_base) | {"REDIS_URL": redis_url, "DINGTALK_OUTBOUND_LIMIT": f"{RATE}/{WINDOW:g} seconds"}
    (_, first), (_, second) = await asyncio.gather(bots.start(bot_env, "replica-a"), bots.start(bot_env, "replica-b"))
    session = live_session(api_base, "shared-group")
    async with aiohttp.ClientSession() as http:

        async def post(base: str, n: int) -> int:
            body, headers = callback(payload("text_group", msgId=f"shared-{n}", **session))
            async with http.post(base + "/dingtalk/callback", data=body, headers=headers) as resp:
                return resp.status

        began = time.monotonic()
        # Each replica alone has room for all it receives; only a shared budget holds them back.
        statuses = await asyncio.gather(*(post(first if n % 2 else second, n) for n in range(2 * RATE)))
        assert statuses == [200] * (2 * RATE)

        async def delivered() -> bool:
            counts = [await metric(http, base, "bot_delivery_attempts_total", outcome="delivered")
                      for base in (first, second)]
            return sum(counts) == 2 * RATE

        await eventually(delivered, timeout=15, what="every reply delivered")
        shaped = [await metric(http, base, "bot_outbound_shaped_total", platform="dingtalk") for base in (first, second)]
        retried = [await metric(http, base, "bot_delivery_attempts_total", outcome="retry") for base in (first, second)]
    sent = api.calls(SESSION_PATH)
    assert len(sent) == 2 * RATE
    assert sum(1 for call in sent if call.at < began + WINDOW) <= RATE
    assert sum(shaped) >= RATE
    assert sum(retried) == 0
