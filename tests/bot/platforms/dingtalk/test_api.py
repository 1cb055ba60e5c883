"""DingTalk calls: access-token lifetime, OpenAPI refusals, and custom robot (group) webhooks."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

import pytest
from aiohttp import web

from bot.platforms.base import DeliveryFailed
from bot.platforms.dingtalk import plugin
from bot.platforms.dingtalk.adapter import DingTalkAdapter
from bot.platforms.dingtalk.api import DingTalkAPI, post_robot_markdown
from tests.bot.platforms.dingtalk.conftest import APP_KEY, APP_SECRET, TOKEN_PATH, USER_PATH, env
from tests.bot.platforms.dingtalk.conftest import DingTalkAPI as FakeDingTalk
from tests.bot.platforms.dingtalk.test_crypto import reference_sign
from tests.bot.platforms.harness import MakeAdapter, make_adapter  # noqa: F401  (fixture)
from tests.support.fake_platform import FakePlatformAPI

ROBOT = "/robot/send"
ROBOT_TOKEN = "c4b7e2a9d1f0"
ROBOT_SECRET = "SECd41d8cd98f00b204e9800998ecf8427e"


async def adapter_for(make_adapter: MakeAdapter, api: FakePlatformAPI) -> DingTalkAdapter:
    adapter = await make_adapter(plugin, env, api)
    assert isinstance(adapter, DingTalkAdapter)
    return adapter


def robot_url(adapter: DingTalkAdapter) -> str:
    return f"{adapter.settings.api_base}{ROBOT}?access_token={ROBOT_TOKEN}"


async def test_the_access_token_is_reused_until_five_minutes_before_it_expires(make_adapter: MakeAdapter) -> None:
    fake = FakeDingTalk()
    adapter = await adapter_for(make_adapter, fake)
    now = [5000.0]
    api = DingTalkAPI(adapter.deps.http, adapter.settings.api_base, APP_KEY, APP_SECRET, lambda: now[0])
    await api.send_to_user("robot", "user0442", "one")
    now[0] += 7200 - 301
    await api.send_to_user("robot", "user0442", "two")
    assert len(fake.calls(TOKEN_PATH)) == 1
    now[0] += 2
    await api.send_to_user("robot", "user0442", "three")
    assert len(fake.calls(TOKEN_PATH)) == 2


@pytest.mark.parametrize(("status", "answer", "retryable"), [
    (400, {"code": "invalidParameter.robotCode", "message": "robot not found"}, False),
    (403, {"code": "Forbidden.AccessDenied.QpsLimitForApi", "message": "qps limit"}, True),
    (200, {"processQueryKey": "q", "invalidStaffIdList": ["user0442"], "flowControlledStaffIdList": []}, False),
])
async def test_openapi_refusals_are_retryable_only_when_throttled(
    make_adapter: MakeAdapter, status: int, answer: dict[str, Any], retryable: bool
) -> None:
    fake = FakePlatformAPI()
    fake.on("POST", TOKEN_PATH, {"accessToken": "tok", "expireIn": 7200})
    fake.on("POST", USER_PATH, lambda _req: web.json_response(answer, status=status))
    adapter = await adapter_for(make_adapter, fake)
    with pytest.raises(DeliveryFailed) as caught:
        await adapter.api.send_to_user("robot", "user0442", "hi")
    assert caught.value.retryable is retryable


async def test_a_refused_token_request_is_not_retried_and_names_no_secret(make_adapter: MakeAdapter) -> None:
    fake = FakePlatformAPI()
    fake.on("POST", TOKEN_PATH, lambda _req: web.json_response(
        {"code": "invalidClientSecret", "message": "appSecret is wrong"}, status=400))
    adapter = await adapter_for(make_adapter, fake)
    with pytest.raises(DeliveryFailed) as caught:
        await adapter.api.send_to_user("robot", "user0442", "hi")
    assert not caught.value.retryable
    assert APP_SECRET not in caught.value.reason
    assert fake.calls(USER_PATH) == []


async def test_a_signed_robot_markdown_carries_dingtalkchatbots_signature(make_adapter: MakeAdapter) -> None:
    fake = FakePlatformAPI()
    fake.on("POST", ROBOT, {"errcode": 0, "errmsg": "ok"})
    adapter = await adapter_for(make_adapter, fake)
    await post_robot_markdown(adapter.deps.http, robot_url(adapter), "Disk", "**95 %** used", secret=ROBOT_SECRET,
                              clock=lambda: 1700000000.123)
    [sent] = fake.calls(ROBOT)
    assert sent.query["access_token"] == ROBOT_TOKEN
    assert sent.query["timestamp"] == "1700000000123"
    assert quote_plus(sent.query["sign"]) == reference_sign(ROBOT_SECRET, 1700000000123)
    assert sent.json() == {"msgtype": "markdown", "markdown": {"title": "Disk", "text": "**95 %** used"}}


async def test_an_unsigned_robot_markdown_keeps_the_url_as_given(make_adapter: MakeAdapter) -> None:
    fake = FakePlatformAPI()
    fake.on("POST", ROBOT, {"errcode": 0, "errmsg": "ok"})
    adapter = await adapter_for(make_adapter, fake)
    await post_robot_markdown(adapter.deps.http, robot_url(adapter), "t", "x")
    assert fake.calls(ROBOT)[0].query == {"access_token": ROBOT_TOKEN}


@pytest.mark.parametrize(("errcode", "retryable"), [(310000, False), (130101, True), (300001, False)])
async def test_a_robot_refusal_raises_delivery_failed_without_the_credential(
    make_adapter: MakeAdapter, errcode: int, retryable: bool
) -> None:
    fake = FakePlatformAPI()
    fake.on("POST", ROBOT, {"errcode": errcode, "errmsg": "refused"})
    adapter = await adapter_for(make_adapter, fake)
    with pytest.raises(DeliveryFailed) as caught:
        await post_robot_markdown(adapter.deps.http, robot_url(adapter), "t", "x", secret=ROBOT_SECRET)
    assert caught.value.retryable is retryable
    assert str(errcode) in caught.value.reason
    assert ROBOT_TOKEN not in caught.value.reason and ROBOT_SECRET not in caught.value.reason
