"""WeCom API client: group-robot webhooks and the shared access token, against a fake qyapi."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.platforms.base import DeliveryFailed
from bot.platforms.wecom.api import ROBOT_MARKDOWN_MAX_BYTES, WeComAPI, post_group_robot
from tests.bot.platforms.harness import Script
from tests.bot.platforms.wecom.conftest import CORP_ID, SECRET
from tests.support.fake_platform import FakePlatformAPI
from tests.support.ports import free_port

ROBOT_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
ROBOT_PATH = "/cgi-bin/webhook/send"


@pytest.fixture
async def base(aiohttp_server: Any, api: FakePlatformAPI) -> str:
    server = await aiohttp_server(api.app(), access_log=None)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_markdown_alert_reaches_the_group_robot(
    http: aiohttp.ClientSession, api: FakePlatformAPI, base: str
) -> None:
    api.on("POST", ROBOT_PATH, {"errcode": 0, "errmsg": "ok"})
    await post_group_robot(http, f"{base}{ROBOT_PATH}?key={ROBOT_KEY}", "**FIRING** ack latency")
    [call] = api.calls(ROBOT_PATH)
    assert call.query == {"key": ROBOT_KEY}
    assert call.json() == {"msgtype": "markdown", "markdown": {"content": "**FIRING** ack latency"}}


async def test_plain_text_is_sent_as_a_text_message(
    http: aiohttp.ClientSession, api: FakePlatformAPI, base: str
) -> None:
    api.on("POST", ROBOT_PATH, {"errcode": 0, "errmsg": "ok"})
    await post_group_robot(http, f"{base}{ROBOT_PATH}?key={ROBOT_KEY}", "disk full", markdown=False)
    assert api.calls(ROBOT_PATH)[0].json() == {"msgtype": "text", "text": {"content": "disk full"}}


async def test_content_over_the_robot_limit_is_cut_at_a_character_boundary(
    http: aiohttp.ClientSession, api: FakePlatformAPI, base: str
) -> None:
    api.on("POST", ROBOT_PATH, {"errcode": 0, "errmsg": "ok"})
    await post_group_robot(http, f"{base}{ROBOT_PATH}?key={ROBOT_KEY}", "告警" * 2000)
    content = api.calls(ROBOT_PATH)[0].json()["markdown"]["content"]
    assert len(content.encode()) <= ROBOT_MARKDOWN_MAX_BYTES
    assert content.startswith("告警告警") and content.endswith("…")


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [({"errcode": 45009, "errmsg": "api freq out of limit"}, True),
     ({"errcode": 93000, "errmsg": "invalid webhook url"}, False)],
)
async def test_robot_errors_become_delivery_failures_without_the_key(
    http: aiohttp.ClientSession, api: FakePlatformAPI, base: str, answer: dict[str, Any], retryable: bool
) -> None:
    api.on("POST", ROBOT_PATH, answer)
    with pytest.raises(DeliveryFailed) as failure:
        await post_group_robot(http, f"{base}{ROBOT_PATH}?key={ROBOT_KEY}", "x")
    assert failure.value.retryable is retryable
    assert str(answer["errcode"]) in failure.value.reason
    assert ROBOT_KEY not in failure.value.reason


async def test_an_unreachable_robot_is_retryable_and_the_key_stays_out_of_the_reason(
    http: aiohttp.ClientSession,
) -> None:
    with pytest.raises(DeliveryFailed) as failure:
        await post_group_robot(http, f"http://127.0.0.1:{free_port()}{ROBOT_PATH}?key={ROBOT_KEY}", "x")
    assert failure.value.retryable
    assert ROBOT_KEY not in failure.value.reason


async def test_concurrent_sends_share_one_token_fetch(
    http: aiohttp.ClientSession, api: FakePlatformAPI, base: str, gettoken: Script, message_send: Script
) -> None:
    client = WeComAPI(http, base, CORP_ID, SECRET)
    await asyncio.gather(*(client.send_message({"touser": f"u{n}"}) for n in range(5)))
    assert len(api.calls("/cgi-bin/gettoken")) == 1
    assert len(api.calls("/cgi-bin/message/send")) == 5


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [({"errcode": 40013, "errmsg": "invalid corpid"}, False), ({"errcode": -1, "errmsg": "system busy"}, True),
     ({"errcode": 0, "errmsg": "ok"}, True)],
    ids=["wrong-corp", "busy", "no-token-in-answer"],
)
async def test_a_failed_token_fetch_fails_the_send_without_the_secret(
    http: aiohttp.ClientSession, api: FakePlatformAPI, base: str, gettoken: Script,
    answer: dict[str, Any], retryable: bool,
) -> None:
    gettoken.default = answer
    with pytest.raises(DeliveryFailed) as failure:
        await WeComAPI(http, base, CORP_ID, SECRET).send_message({"touser": "u"})
    assert failure.value.retryable is retryable
    assert SECRET not in failure.value.reason
    assert api.calls("/cgi-bin/message/send") == []


async def test_a_recipient_outside_the_app_is_not_retried(
    http: aiohttp.ClientSession, base: str, gettoken: Script, message_send: Script
) -> None:
    message_send.then({"errcode": 0, "errmsg": "ok", "invaliduser": "ghost"})
    with pytest.raises(DeliveryFailed) as failure:
        await WeComAPI(http, base, CORP_ID, SECRET).send_message({"touser": "ghost"})
    assert not failure.value.retryable
