"""POST /feishu/event end to end: genuine callbacks in, the ACK Feishu expects, one reply through the Open Platform."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from multidict import CIMultiDict

from bot.keys import adapters_key
from bot.messages import InboundMessage, Reply
from bot.platforms.base import WebhookRequest
from tests.bot.conftest import sample
from tests.bot.platforms.feishu.conftest import (
    APP_ID,
    APP_SECRET,
    ENCRYPT_KEY,
    SECRETS,
    TENANT_TOKEN,
    TOKEN,
    TOKEN_PATH,
    FeishuAPI,
    encrypt,
    encrypted_callback,
    env,
    env_without_encrypt_key,
    event,
    lark_status,
    reply_path,
    sign,
    text_event,
)
from tests.bot.platforms.harness import (
    PlatformLoop,
    StartPlatform,
    assert_answered_once,
    assert_nothing_leaks,
    assert_rejected,
    capture_everything,
    until,
)

BUILT_IN = "[built-in responder] turn 1: you said: "


async def post(loop: PlatformLoop, body: bytes, headers: dict[str, str]) -> ClientResponse:
    return await loop.client.post("/feishu/event", data=body, headers=headers)


async def answer(loop: PlatformLoop, event_id: str, text: str, message_id: str) -> ClientResponse:
    """Send a text message and expect its reply to `message_id`."""
    assert isinstance(loop.api, FeishuAPI)
    loop.api.expect_reply(message_id)
    return await post(loop, *encrypted_callback(text_event(event_id, text, message_id=message_id)))


async def test_an_encrypted_signed_message_is_acknowledged_and_answered_with_a_tenant_token(
    feishu: PlatformLoop, api: FeishuAPI
) -> None:
    api.expect_reply("om_5ce6d572455d361153b7cb51da133945")
    body, headers = encrypted_callback(event("im_message_receive_v1"))
    assert lark_status(body, headers) == 200

    resp = await post(feishu, body, headers)

    assert resp.status == 200
    assert await resp.json() == {"msg": "success"}
    [sent] = await api.wait_for(reply_path("om_5ce6d572455d361153b7cb51da133945"))
    assert api.calls(TOKEN_PATH)[0].json() == {"app_id": APP_ID, "app_secret": APP_SECRET}
    assert sent.headers["Authorization"] == f"Bearer {TENANT_TOKEN}"
    payload = sent.json()
    assert payload["msg_type"] == "text"
    # The @-mention placeholder is gone and the spacing is normalised before the model sees the text.
    assert json.loads(payload["content"]) == {"text": BUILT_IN + "hello there"}
    assert isinstance(payload["uuid"], str) and 0 < len(payload["uuid"]) <= 50


def test_a_message_is_keyed_by_its_event_id_and_remembers_the_message_to_answer(feishu: PlatformLoop) -> None:
    adapter = feishu.client.app[adapters_key]["feishu"]
    body = orjson.dumps(event("im_message_receive_v1"))
    request = WebhookRequest("POST", "/feishu/event", "", {}, CIMultiDict(sign(body)), body, "127.0.0.1", 1.0)
    [message] = adapter.decode(request).messages
    # Feishu re-pushes with the same event_id: that is what the core de-duplicates on.
    assert message.message_id == "5e3702a84e847582be8db7fb73283c02"
    assert message.reply_handle["message_id"] == "om_5ce6d572455d361153b7cb51da133945"
    assert (message.user_id, message.chat_id) == ("ou_84aad35d084aa403a838cf73ee18467",
                                                  "oc_5ce6d572455d361153b7xx51da133945")
    assert orjson.loads(orjson.dumps(message.reply_handle)) == message.reply_handle  # stored as JSON


def test_the_reply_idempotency_key_depends_only_on_the_event_id(feishu: PlatformLoop) -> None:
    adapter = feishu.client.app[adapters_key]["feishu"]

    def uuid_of(event_id: str, text: str) -> str:
        inbound = InboundMessage("feishu", event_id, "oc_1", "ou_1", "hi", time.time(), {"message_id": "om_1"})
        return str(adapter.format(Reply(inbound, text))["uuid"])

    assert uuid_of("ev-1", "a") == uuid_of("ev-1", "b")
    assert uuid_of("ev-1", "a") != uuid_of("ev-2", "a")


async def test_url_verification_encrypted_and_unsigned_is_answered_with_the_challenge(
    feishu: PlatformLoop, api: FeishuAPI
) -> None:
    body = orjson.dumps({"encrypt": encrypt(orjson.dumps(event("url_verification")))})
    assert lark_status(body, {}) == 200
    started = time.perf_counter()
    resp = await post(feishu, body, {"Content-Type": "application/json"})
    assert time.perf_counter() - started < 1.0  # Feishu's deadline for the challenge
    assert resp.status == 200
    assert await resp.json() == {"challenge": "ajls384kdjx98XX"}
    assert api.requests == []


async def test_without_an_encrypt_key_plain_callbacks_are_checked_by_token(
    start_platform: StartPlatform, api: FeishuAPI
) -> None:
    plain = await start_platform("feishu", env_without_encrypt_key, api)
    challenge = orjson.dumps(event("url_verification"))
    assert lark_status(challenge, {}, encrypt_key="") == 200
    assert await (await post(plain, challenge, {})).json() == {"challenge": "ajls384kdjx98XX"}

    api.expect_reply("om_plain")
    message = orjson.dumps(text_event("ev-plain", "plain text", message_id="om_plain"))
    assert lark_status(message, {}, encrypt_key="") == 200
    assert (await post(plain, message, {})).status == 200
    [sent] = await api.wait_for(reply_path("om_plain"))
    assert json.loads(sent.json()["content"]) == {"text": BUILT_IN + "plain text"}


async def test_a_v1_message_event_is_answered_and_deduplicated_by_its_uuid(
    feishu: PlatformLoop, api: FeishuAPI
) -> None:
    api.expect_reply("om_dc13264520392913993dd051dba21dcf")
    body, headers = encrypted_callback(event("message_v1"))
    assert lark_status(body, headers) == 200
    assert (await post(feishu, body, headers)).status == 200
    assert (await post(feishu, body, headers)).status == 200
    [sent] = await api.wait_for(reply_path("om_dc13264520392913993dd051dba21dcf"))
    assert json.loads(sent.json()["content"]) == {"text": BUILT_IN + "hello from v1"}
    assert feishu.duplicates() == 1


def _image_message() -> dict[str, Any]:
    payload = text_event("ev-image")
    payload["event"]["message"].update(message_type="image", content='{"image_key":"img_v2_041b"}')
    return payload


def _from_an_app() -> dict[str, Any]:
    payload = text_event("ev-app")
    payload["event"]["sender"]["sender_type"] = "app"
    return payload


@pytest.mark.parametrize("payload", [
    event("chat_member_user_added_v1"), _image_message(), _from_an_app(), text_event("ev-only-mention", "@_user_1"),
], ids=["other event type", "image", "sent by an app", "only a mention"])
async def test_events_we_do_not_answer_are_acknowledged_and_left_alone(
    feishu: PlatformLoop, api: FeishuAPI, payload: dict[str, Any]
) -> None:
    body, headers = encrypted_callback(payload)
    assert lark_status(body, headers) == 200
    resp = await post(feishu, body, headers)
    assert resp.status == 200
    assert await resp.json() == {"msg": "success"}
    # A message sent afterwards is answered first and alone: nothing was queued for the ignored one.
    await answer(feishu, "ev-after", "after", "om_after")
    await api.wait_for(reply_path("om_after"))
    assert [r.path for r in api.requests] == [TOKEN_PATH, reply_path("om_after")]


async def test_the_same_event_three_times_two_concurrently_is_answered_once(
    feishu: PlatformLoop, api: FeishuAPI
) -> None:
    api.expect_reply("om_dup")
    api.expect_reply("om_next")

    async def duplicate() -> ClientResponse:
        # Feishu re-pushes the same event (same event_id) in a freshly encrypted envelope each time.
        return await post(feishu, *encrypted_callback(text_event("ev-dup", "once", message_id="om_dup")))

    async def other() -> ClientResponse:
        return await post(feishu, *encrypted_callback(text_event("ev-next", "next", message_id="om_dup")))

    first, second = await assert_answered_once(feishu, reply_path("om_dup"), duplicate, other)
    assert json.loads(first["content"]) == {"text": BUILT_IN + "once"}
    assert first["uuid"] != second["uuid"]


def attempts(loop: PlatformLoop, outcome: str) -> float:
    return sample(loop.registry, "bot_delivery_attempts_total", platform=loop.platform, outcome=outcome)


def _signed(body: bytes, **sign_args: Any) -> tuple[bytes, dict[str, str]]:
    return body, sign(body, **sign_args)


def _rejects() -> list[Any]:
    message = orjson.dumps(text_event("ev-bad"))
    envelope = orjson.dumps({"encrypt": encrypt(message)})
    tampered = dict(sign(envelope))
    tampered["X-Lark-Signature"] = tampered["X-Lark-Signature"][::-1]
    wrong_token = text_event("ev-bad")
    wrong_token["header"]["token"] = "not-the-token"
    truncated = orjson.dumps({"encrypt": encrypt(message)[:-8]})
    return [
        pytest.param(envelope, tampered, 401, "bad_signature", True, id="signature does not match"),
        pytest.param(envelope, {}, 401, "bad_signature", True, id="unsigned event"),
        pytest.param(*_signed(envelope, timestamp=int(time.time()) - 3600), 401, "stale_timestamp", False,
                     id="timestamp an hour old"),
        pytest.param(envelope, {**sign(envelope), "X-Lark-Request-Timestamp": "soon"}, 401, "stale_timestamp",
                     False, id="timestamp not a number"),
        pytest.param(*encrypted_callback(wrong_token), 401, "bad_token", True, id="wrong verification token"),
        pytest.param(*encrypted_callback(event("url_verification") | {"token": "guess"}), 401, "bad_token", True,
                     id="challenge with a wrong token"),
        pytest.param(*_signed(orjson.dumps({"encrypt": encrypt(message, key="another key")})), 400,
                     "decrypt_failed", True, id="encrypted with another key"),
        pytest.param(*_signed(truncated), 400, "decrypt_failed", True, id="truncated ciphertext"),
        # What a wrong key yields when its padding happens to check out (about 1 in 256): noise.
        pytest.param(*_signed(orjson.dumps({"encrypt": encrypt(b"\xfc\x83 noise")})), 400, "decrypt_failed", True,
                     id="decrypts to noise"),
        pytest.param(*_signed(b'{"encrypt": 42}'), 400, "decrypt_failed", True, id="encrypt is not a string"),
        pytest.param(*_signed(b"{not json"), 400, "malformed", True, id="not JSON"),
        pytest.param(*_signed(b"[1, 2]"), 400, "malformed", True, id="not an object"),
        pytest.param(*encrypted_callback({"schema": "2.0", "header": {"token": TOKEN}}), 400, "malformed", True,
                     id="header without event_id"),
        pytest.param(*encrypted_callback({"type": "event_callback", "event": {}}), 400, "malformed", True,
                     id="neither v2 nor v1"),
    ]


@pytest.mark.parametrize(("body", "headers", "status", "reason", "lark_refuses"), _rejects())
async def test_rejected_callbacks_are_4xx_json_counted_by_reason_and_leak_nothing(
    feishu: PlatformLoop, api: FeishuAPI, caplog: pytest.LogCaptureFixture, body: bytes, headers: dict[str, str],
    status: int, reason: str, lark_refuses: bool,
) -> None:
    if lark_refuses:
        # The reference dispatcher refuses the same bytes (it has no timestamp window of its own).
        assert lark_status(body, headers) == 500
    capture_everything(caplog)
    resp = await post(feishu, body, headers)
    await assert_rejected(feishu, resp, status, reason)
    assert f"webhook rejected: {reason}" in caplog.text
    assert_nothing_leaks(SECRETS, caplog, await resp.text())
    assert api.requests == []


async def test_an_encrypted_callback_without_an_encrypt_key_configured_is_refused(
    start_platform: StartPlatform, api: FeishuAPI
) -> None:
    plain = await start_platform("feishu", env_without_encrypt_key, api)
    resp = await post(plain, *encrypted_callback(text_event("ev-enc")))
    await assert_rejected(plain, resp, 400, "decrypt_failed")
    assert ENCRYPT_KEY not in await resp.text()


async def test_one_token_serves_several_replies(feishu: PlatformLoop, api: FeishuAPI) -> None:
    for n in range(3):
        await answer(feishu, f"ev-{n}", f"number {n}", f"om_{n}")
        await api.wait_for(reply_path(f"om_{n}"))
    assert len(api.calls(TOKEN_PATH)) == 1
    assert {r.headers["Authorization"] for r in api.requests if "/reply" in r.path} == {f"Bearer {TENANT_TOKEN}"}


async def test_a_token_within_ten_minutes_of_expiry_is_refreshed_before_use(
    feishu: PlatformLoop, api: FeishuAPI
) -> None:
    api.expire = 600  # Feishu hands out the old token again in its last 30 minutes; lark refreshes at 10.
    for n in range(2):
        await answer(feishu, f"ev-{n}", "hi", f"om_{n}")
        await api.wait_for(reply_path(f"om_{n}"))
    assert len(api.calls(TOKEN_PATH)) == 2


@pytest.mark.parametrize(("code", "token_fetches"), [(99991663, 2), (99991400, 1)],
                         ids=["token invalid", "rate limited"])
async def test_a_refused_reply_that_may_succeed_later_is_retried(
    feishu: PlatformLoop, api: FeishuAPI, code: int, token_fetches: int
) -> None:
    api.reply_codes = [code]
    await answer(feishu, "ev-retry", "again", "om_retry")
    first, second = await api.wait_for(reply_path("om_retry"), count=2)
    assert first.json()["uuid"] == second.json()["uuid"]
    assert len(api.calls(TOKEN_PATH)) == token_fetches
    await until(lambda: attempts(feishu, "delivered") == 1)
    assert attempts(feishu, "retry") == 1


async def test_a_reply_feishu_refuses_for_good_goes_to_the_dead_letters(feishu: PlatformLoop, api: FeishuAPI) -> None:
    api.reply_codes = [230002]  # the bot is not in the chat
    await answer(feishu, "ev-gone", "hi", "om_gone")
    await until(lambda: sample(feishu.registry, "bot_dead_letters_total", platform="feishu") == 1)
    assert len(api.calls(reply_path("om_gone"))) == 1


async def test_replies_into_one_chat_keep_to_five_a_second_while_other_chats_go_at_once(
    feishu: PlatformLoop, api: FeishuAPI
) -> None:
    def in_chat(chat_id: str, n: int) -> tuple[bytes, dict[str, str]]:
        payload = text_event(f"ev-{chat_id}-{n}", message_id=f"om_{chat_id}_{n}")
        payload["event"]["message"]["chat_id"] = chat_id
        api.expect_reply(f"om_{chat_id}_{n}")
        return encrypted_callback(payload)

    began = time.monotonic()
    answers = await asyncio.gather(*(post(feishu, *in_chat("oc_busy", n)) for n in range(8)),
                                   *(post(feishu, *in_chat("oc_quiet", n)) for n in range(2)))
    assert [answer.status for answer in answers] == [200] * 10
    await until(lambda: attempts(feishu, "delivered") == 10, timeout=10)
    busy = sorted(call.at for call in api.requests if "/om_oc_busy_" in call.path)
    quiet = [call.at for call in api.requests if "/om_oc_quiet_" in call.path]
    assert len(busy) == 8 and len(quiet) == 2
    assert sum(1 for at in busy if at < began + 1.0) <= 5
    # The quiet chat is not held behind the busy one's budget.
    assert max(quiet) < busy[5]
    assert sample(feishu.registry, "bot_outbound_shaped_total", platform="feishu") >= 3
    assert attempts(feishu, "retry") == 0


async def test_every_chat_of_the_app_draws_on_the_apps_budget(start_platform: StartPlatform, api: FeishuAPI) -> None:
    loop = await start_platform("feishu", lambda base: env(base) | {"FEISHU_OUTBOUND_APP_LIMIT": "2/minute"}, api)
    for n in range(3):
        payload = text_event(f"ev-app-{n}", message_id=f"om_app_{n}")
        payload["event"]["message"]["chat_id"] = f"oc_chat_{n}"
        api.expect_reply(f"om_app_{n}")
        assert (await post(loop, *encrypted_callback(payload))).status == 200
    await until(lambda: sample(loop.registry, "bot_outbound_shaped_total", platform="feishu") >= 1
                and attempts(loop, "delivered") == 2)
    assert len([call for call in api.requests if "/om_app_" in call.path]) == 2
