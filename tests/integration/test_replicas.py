"""Two bot replicas sharing one Redis behave as one service: a platform's re-delivery to both is answered once.

Both run as `python -m bot` with Telegram on, answering through a stand-in Bot API.
"""

from __future__ import annotations

import asyncio

import aiohttp
import redis

from tests.support.bots import (
    TELEGRAM_HEADERS,
    TELEGRAM_SEND,
    TELEGRAM_WEBHOOK,
    BotProcesses,
    eventually,
    metric,
    telegram_update,
)
from tests.support.fake_platform import FakePlatformAPI


async def test_the_same_events_sent_to_both_replicas_at_once_are_answered_once_each(
    bots: BotProcesses, redis_url: str, telegram_api: tuple[FakePlatformAPI, str]
) -> None:
    api, api_url = telegram_api
    env = {"REDIS_URL": redis_url, "TELEGRAM_API_BASE": api_url}
    (_, first), (_, second) = await asyncio.gather(bots.start(env, "a"), bots.start(env, "b"))
    events = [8000 + i for i in range(6)]
    async with aiohttp.ClientSession(headers=TELEGRAM_HEADERS) as http:

        async def deliver(base: str, event: int) -> int:
            async with http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(event, "hi", chat_id=event)) as resp:
                return resp.status

        statuses = await asyncio.gather(*(deliver(base, e) for e in events for base in (first, second)))
        # Both replicas acknowledge: the platform stops re-delivering either way.
        assert statuses == [200] * 2 * len(events)
        sent = await api.wait_for(TELEGRAM_SEND, count=len(events))
        assert sorted(r.json()["reply_parameters"]["message_id"] for r in sent) == events
        # Each event was admitted by exactly one replica; the other saw a duplicate, so no second reply can come.
        duplicates = [await metric(http, base, "bot_duplicates_total", platform="telegram") for base in (first, second)]
        assert sum(duplicates) == len(events)

        async def all_delivered() -> bool:
            counts = [await metric(http, base, "bot_delivery_attempts_total", outcome="delivered")
                      for base in (first, second)]
            return sum(counts) == len(events)

        await eventually(all_delivered, what="every reply counted as delivered")

    shared = redis.Redis.from_url(redis_url)

    async def drained() -> bool:
        return shared.xlen("botwatch:{queue}:stream") + shared.zcard("botwatch:{queue}:scheduled") == 0

    await eventually(drained, what="an empty shared queue")
    assert len(api.calls(TELEGRAM_SEND)) == len(events)
    shared.close()
