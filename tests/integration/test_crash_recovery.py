"""`kill -9` between the ACK and the reply: the restarted bot delivers the reply, once, without asking the model again.

The bot runs as operators run it (`python -m bot`), answering Telegram through a stand-in Bot API.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

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
from tests.support.fake_platform import FakePlatformAPI, Recorded


@pytest.fixture(params=["sqlite", "redis"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    # A short lease: the restarted process is a new consumer and takes the job over once it runs out.
    return {"REDIS_URL": request.getfixturevalue("redis_url"), "DELIVERY_LEASE_SECONDS": "1"}


async def test_a_reply_in_flight_when_the_bot_is_killed_is_delivered_after_restart(
    bots: BotProcesses, store_env: dict[str, str], telegram_api: tuple[FakePlatformAPI, str], aiohttp_server: Any
) -> None:
    model = FakeModel()
    model_server = await aiohttp_server(model.app())
    api, api_url = telegram_api
    released = asyncio.Event()

    async def first_send_hangs(recorded: Recorded) -> web.Response:
        # The platform got the reply, but its answer never reaches the bot: the crash window.
        if len(api.calls(TELEGRAM_SEND)) == 1:
            await released.wait()
        return web.json_response({"ok": True})

    api.on("POST", TELEGRAM_SEND, first_send_hangs)
    env = {
        **store_env,
        "TELEGRAM_API_BASE": api_url,
        "MODEL_ENDPOINT": str(model_server.make_url("/v1")),
    }
    first, base = await bots.start(env, "bot")
    async with aiohttp.ClientSession(headers=TELEGRAM_HEADERS) as http:
        async with http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(7001, "are you there?")) as resp:
            assert resp.status == 200
        await api.wait_for(TELEGRAM_SEND, count=1)
        await asyncio.to_thread(first.kill)

        _, base = await bots.start(env, "bot")
        [lost, delivered] = await api.wait_for(TELEGRAM_SEND, count=2, timeout=15)
        # The same saved reply to the same message: no second model call, nothing different sent.
        assert delivered.json() == lost.json()
        assert delivered.json() == {
            "chat_id": 42, "text": "model reply 1: are you there?",
            "reply_parameters": {"message_id": 7001, "allow_sending_without_reply": True},
        }
        assert len(model.requests) == 1

        async def settled() -> bool:
            return (await metric(http, base, "bot_delivery_attempts_total", outcome="delivered") == 1
                    and await metric(http, base, "bot_queue_depth", queue="inbound") == 0)

        await eventually(settled, what="one delivery and an empty queue")
    assert len(api.calls(TELEGRAM_SEND)) == 2
    released.set()
