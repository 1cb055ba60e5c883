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


async def test_a_dead_primary_model_is_replaced_by_the_fallback_for_platform_replies(
    bots: BotProcesses, telegram_api: tuple[FakePlatformAPI, str], aiohttp_server: Any
) -> None:
    from tests.support.ports import free_port

    api, api_url = telegram_api
    fallback = FakeModel()
    fallback_server = await aiohttp_server(fallback.app())
    _, base = await bots.start({
        "TELEGRAM_API_BASE": api_url,
        "MODEL_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1",
        "MODEL_FALLBACK_ENDPOINT": str(fallback_server.make_url("/v1")),
        "MODEL_MAX_RETRIES": "0", "MODEL_CONNECT_TIMEOUT": "1",
    })
    async with aiohttp.ClientSession(headers=TELEGRAM_HEADERS) as http:
        for i in range(3):
            async with http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(7000 + i, f"q{i}", 300)) as resp:
                assert resp.status == 200
            await api.wait_for(TELEGRAM_SEND, count=i + 1)
        assert [r.json()["text"] for r in api.calls(TELEGRAM_SEND)] == [
            "model reply 1: q0", "model reply 2: q1", "model reply 3: q2"
        ]
        assert await metric(http, base, "bot_model_requests_total", backend="fallback_1", outcome="success") == 3
        # One refused connection, then the primary cools down and is not asked again.
        assert await metric(http, base, "bot_model_failovers_total", backend="openai_compat") == 1
        assert await metric(http, base, "bot_model_requests_total", backend="openai_compat",
                            outcome="model_unavailable") == 1
