"""The Feishu Open Platform client: token lifetime, error codes, and custom-bot (group robot) webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from aiohttp import web

from bot.platforms.base import DeliveryFailed
from bot.platforms.feishu import plugin
from bot.platforms.feishu.adapter import FeishuAdapter
from bot.platforms.feishu.api import FeishuAPI, post_group_webhook
from tests.bot.platforms.feishu.conftest import APP_ID, APP_SECRET, TOKEN_PATH, env, reply_path
from tests.bot.platforms.feishu.conftest import FeishuAPI as FakeFeishu
from tests.bot.platforms.harness import MakeAdapter, make_adapter  # noqa: F401  (fixture)
from tests.support.fake_platform import FakePlatformAPI

HOOK = "/open-apis/bot/v2/hook/2d5b1c3e-7f0a-4b8e-9c6d-1a2b3c4d5e6f"
HOOK_SECRET = "custom-bot-signing-secret"


async def adapter_for(make_adapter: MakeAdapter, api: FakePlatformAPI) -> FeishuAdapter:
    adapter = await make_adapter(plugin, env, api)
    assert isinstance(adapter, FeishuAdapter)
    return adapter


async def first_reply_refused(make_adapter: MakeAdapter, code: int) -> tuple[FakeFeishu, FeishuAdapter, DeliveryFailed]:
    """An adapter whose first reply Feishu answers with `code`, and the failure it raised."""
    fake = FakeFeishu()
    fake.reply_codes = [code]
    fake.expect_reply("om_1")
    adapter = await adapter_for(make_adapter, fake)
    with pytest.raises(DeliveryFailed) as caught:
        await adapter.api.reply("om_1", {})
    return fake, adapter, caught.value


async def test_the_tenant_token_is_reused_until_ten_minutes_before_it_expires(make_adapter: MakeAdapter) -> None:
    fake = FakeFeishu(expire=7200)
    fake.expect_reply("om_1")
    adapter = await adapter_for(make_adapter, fake)
    now = [1000.0]
    api = FeishuAPI(adapter.deps.http, adapter.settings.api_base, APP_ID, APP_SECRET, lambda: now[0])
    await api.reply("om_1", {"msg_type": "text"})
    now[0] += 7200 - 601
    await api.reply("om_1", {"msg_type": "text"})
    assert len(fake.calls(TOKEN_PATH)) == 1
    now[0] += 2
    await api.reply("om_1", {"msg_type": "text"})
    assert len(fake.calls(TOKEN_PATH)) == 2


@pytest.mark.parametrize(("code", "retryable"), [
    (99991400, True), (230020, True), (11232, True), (230002, False), (230011, False),
])
async def test_error_codes_are_retryable_only_when_feishu_says_try_later(
    make_adapter: MakeAdapter, code: int, retryable: bool
) -> None:
    _, _, failure = await first_reply_refused(make_adapter, code)
    assert failure.retryable is retryable
    assert str(code) in failure.reason


@pytest.mark.parametrize("code", [99991661, 99991663, 99991668])
async def test_an_invalid_token_is_forgotten_and_the_next_reply_fetches_a_new_one(
    make_adapter: MakeAdapter, code: int
) -> None:
    fake, adapter, failure = await first_reply_refused(make_adapter, code)
    assert failure.retryable
    await adapter.api.reply("om_1", {})
    assert len(fake.calls(TOKEN_PATH)) == 2


async def test_a_refused_token_request_is_not_retried_and_names_no_secret(make_adapter: MakeAdapter) -> None:
    fake = FakePlatformAPI()
    fake.on("POST", TOKEN_PATH, {"code": 10014, "msg": "app secret invalid"})
    adapter = await adapter_for(make_adapter, fake)
    with pytest.raises(DeliveryFailed) as caught:
        await adapter.api.reply("om_1", {})
    assert not caught.value.retryable
    assert APP_SECRET not in caught.value.reason
    assert fake.calls(reply_path("om_1")) == []


async def test_a_group_webhook_message_is_posted_as_text(make_adapter: MakeAdapter) -> None:
    fake = FakePlatformAPI()
    fake.on("POST", HOOK, {"code": 0, "data": {}, "msg": "success"})
    adapter = await adapter_for(make_adapter, fake)
    await post_group_webhook(adapter.deps.http, adapter.settings.api_base + HOOK, "disk almost full")
    [sent] = fake.calls(HOOK)
    assert sent.json() == {"msg_type": "text", "content": {"text": "disk almost full"}}


async def test_a_signed_group_webhook_carries_timestamp_and_sign(make_adapter: MakeAdapter) -> None:
    fake = FakePlatformAPI()
    fake.on("POST", HOOK, {"StatusCode": 0, "StatusMessage": "success"})  # the older answer form
    adapter = await adapter_for(make_adapter, fake)
    await post_group_webhook(adapter.deps.http, adapter.settings.api_base + HOOK, "alert", secret=HOOK_SECRET,
                             clock=lambda: 1599360473.9)
    body = fake.calls(HOOK)[0].json()
    assert body["timestamp"] == "1599360473"
    # Feishu's documented recipe: HMAC-SHA256 keyed with "timestamp\nsecret" over nothing, base64.
    key = f"{body['timestamp']}\n{HOOK_SECRET}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, digestmod=hashlib.sha256).digest()).decode()


@pytest.mark.parametrize(("answer", "status", "retryable"), [
    ({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}, 200, False),
    ({"code": 11232, "msg": "frequency limited"}, 200, True),
    ({"code": 9499, "msg": "Bad Request"}, 400, False),
    ({"error": "overloaded"}, 503, True),
])
async def test_a_group_webhook_refusal_raises_delivery_failed_without_the_url(
    make_adapter: MakeAdapter, answer: dict[str, Any], status: int, retryable: bool
) -> None:
    fake = FakePlatformAPI()
    fake.on("POST", HOOK, lambda _req: web.json_response(answer, status=status))
    adapter = await adapter_for(make_adapter, fake)
    with pytest.raises(DeliveryFailed) as caught:
        await post_group_webhook(adapter.deps.http, adapter.settings.api_base + HOOK, "alert", secret=HOOK_SECRET)
    assert caught.value.retryable is retryable
    assert HOOK.rsplit("/", 1)[-1] not in caught.value.reason
    assert HOOK_SECRET not in caught.value.reason
