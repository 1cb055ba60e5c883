"""A failing model: the circuit opens, users get the fallback reply at once, failures are counted, nothing piles up."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.delivery.worker import FALLBACK_REPLY
from tests.support.bots import (
    TELEGRAM_HEADERS,
    TELEGRAM_SEND,
    TELEGRAM_WEBHOOK,
    BotProcesses,
    eventually,
    metric,
    telegram_update,
)
from tests.support.fake_model import FakeModel
from tests.support.fake_platform import FakePlatformAPI


async def test_a_failing_model_opens_the_circuit_and_every_user_gets_the_fallback_reply(
    bots: BotProcesses, telegram_api: tuple[FakePlatformAPI, str], aiohttp_server: Any
) -> None:
    api, api_url = telegram_api
    model = FakeModel(faults=[500] * 50)
    model_server = await aiohttp_server(model.app())
    _, base = await bots.start({
        "TELEGRAM_API_BASE": api_url,
        "MODEL_ENDPOINT": str(model_server.make_url("/v1")),
        "MODEL_MAX_RETRIES": "0", "MODEL_BREAKER_FAILURES": "2", "MODEL_BREAKER_RESET": "600",
    })
    users = 5
    async with aiohttp.ClientSession(headers=TELEGRAM_HEADERS) as http:
        for i in range(users):
            async with http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(5000 + i, "hello?", 100 + i)) as resp:
                assert resp.status == 200
            await api.wait_for(TELEGRAM_SEND, count=i + 1)
        assert [r.json()["text"] for r in api.calls(TELEGRAM_SEND)] == [FALLBACK_REPLY] * users
        # Two failures opened the circuit; the other users were answered without calling the model.
        assert len(model.requests) == 2
        assert await metric(http, base, "bot_model_requests_total", outcome="model_bad_response") == 2
        assert await metric(http, base, "bot_model_requests_total", outcome="model_unavailable") == users - 2
        assert await metric(http, base, "bot_model_requests_total", outcome="success") == 0

        async def drained() -> bool:
            return (await metric(http, base, "bot_delivery_attempts_total", outcome="delivered") == users
                    and await metric(http, base, "bot_queue_depth", queue="inbound") == 0)

        await eventually(drained, what="every fallback delivered and an empty queue")
        assert await metric(http, base, "bot_dead_letters_total") == 0
