"""QQ's access token (cached, refreshed inside the platform's last minute) and how API answers are read."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.platforms.base import DeliveryFailed
from bot.platforms.qq import plugin
from bot.platforms.qq.api import QQApi
from bot.platforms.qq.settings import QQSettings
from tests.bot.platforms.qq.fake_qq import SECRET, TOKEN_PATH, QQOpenPlatform, event, reply_path

GROUP = event("group_at_message_create.json")
REPLY = {"content": "hi", "msg_type": 0, "msg_id": GROUP["d"]["id"], "msg_seq": 1}


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Api:
    client: QQApi
    platform: QQOpenPlatform
    clock: Clock


@contextlib.asynccontextmanager
async def make_api(aiohttp_server: Any, platform: QQOpenPlatform, **env: str) -> AsyncIterator[Api]:
    server = await aiohttp_server(platform.api.app())
    base = str(server.make_url("")).rstrip("/")
    settings = plugin.load_settings(platform.env(base, **env))
    assert isinstance(settings, QQSettings)
    clock = Clock()
    async with aiohttp.ClientSession() as http:
        yield Api(QQApi(http, settings, clock=clock), platform, clock)


@pytest.fixture
async def api(aiohttp_server: Any) -> AsyncIterator[Api]:
    platform = QQOpenPlatform()
    platform.accept_replies_for(GROUP)
    async with make_api(aiohttp_server, platform) as made:
        yield made


async def test_the_token_is_fetched_once_and_reused_while_valid(api: Api) -> None:
    results = await asyncio.gather(*(api.client.authorization() for _ in range(5)))
    assert set(results) == {"QQBot access-1"}
    api.clock.now += 7200 - 51  # still outside the last 50 s
    assert await api.client.authorization() == "QQBot access-1"
    assert api.platform.tokens_issued == 1


async def test_the_token_is_renewed_inside_the_window_where_the_platform_issues_a_new_one(api: Api) -> None:
    assert await api.client.authorization() == "QQBot access-1"
    api.clock.now += 7200 - 49  # the platform hands out a new token only in the last 60 s
    assert await api.client.authorization() == "QQBot access-2"
    assert api.platform.tokens_issued == 2


async def test_a_token_lifetime_given_as_a_number_is_read_too(aiohttp_server: Any) -> None:
    platform = QQOpenPlatform(expires_in=7200)  # type: ignore[arg-type]
    async with make_api(aiohttp_server, platform) as made:
        assert await made.client.authorization() == "QQBot access-1"
        made.clock.now += 7000
        assert await made.client.authorization() == "QQBot access-1"


async def test_a_refused_token_request_fails_without_retry_and_without_the_secret(aiohttp_server: Any) -> None:
    platform = QQOpenPlatform()
    async with make_api(aiohttp_server, platform, QQ_APP_SECRET="not-the-secret") as made:
        with pytest.raises(DeliveryFailed) as refused:
            await made.client.authorization()
        assert not refused.value.retryable
        assert "100016" in refused.value.reason
        assert "not-the-secret" not in refused.value.reason and SECRET not in refused.value.reason


async def test_a_reply_is_posted_with_the_token_and_app_id(api: Api) -> None:
    assert await api.client.post_message(reply_path(GROUP), REPLY) == "sent"
    [sent] = api.platform.api.calls(reply_path(GROUP))
    assert sent.headers["Authorization"] == "QQBot access-1"
    assert sent.json() == REPLY


async def test_a_repeated_msg_id_and_msg_seq_is_reported_as_already_sent(api: Api) -> None:
    assert await api.client.post_message(reply_path(GROUP), REPLY) == "sent"
    assert await api.client.post_message(reply_path(GROUP), REPLY) == "already_sent"
    assert await api.client.post_message(reply_path(GROUP), {**REPLY, "msg_seq": 2}) == "sent"
    assert len(api.platform.accepted) == 2


async def test_a_refused_token_on_a_reply_is_dropped_and_the_retry_uses_a_new_one(api: Api) -> None:
    api.platform.api.faults[reply_path(GROUP)] = [401]

    with pytest.raises(DeliveryFailed) as refused:
        await api.client.post_message(reply_path(GROUP), REPLY)
    assert refused.value.retryable
    assert await api.client.post_message(reply_path(GROUP), REPLY) == "sent"

    first, second = api.platform.api.calls(reply_path(GROUP))
    assert (first.headers["Authorization"], second.headers["Authorization"]) == ("QQBot access-1", "QQBot access-2")


async def test_an_overloaded_api_is_retried_later(api: Api) -> None:
    api.platform.api.on("POST", reply_path(GROUP), lambda _r: web.json_response(
        {"code": 22009, "message": "msg limit exceed"}, status=429, headers={"Retry-After": "3"}))
    with pytest.raises(DeliveryFailed) as limited:
        await api.client.post_message(reply_path(GROUP), REPLY)
    assert limited.value.retryable
    assert limited.value.retry_after == 3


async def test_the_gateway_address_comes_from_gateway_bot_with_the_token(api: Api) -> None:
    api.platform.serve_gateway("wss://gateway.invalid/websocket")
    assert await api.client.gateway_url() == "wss://gateway.invalid/websocket"
    [call] = api.platform.api.calls("/gateway/bot")
    assert call.headers["Authorization"] == "QQBot access-1"
    assert api.platform.api.calls(TOKEN_PATH)
