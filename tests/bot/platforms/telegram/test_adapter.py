"""Telegram end to end: updates with the secret-token header in, `{}` out, the reply through sendMessage."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from telegram import Update

from bot.messages import InboundMessage, Reply
from bot.platforms.base import DeliveryFailed, StreamedReplies
from bot.platforms.telegram import plugin
from bot.platforms.telegram.adapter import fit_utf16
from tests.bot.conftest import sample
from tests.bot.platforms.harness import (
    MakeAdapter,
    PlatformLoop,
    Script,
    assert_answered_once,
    assert_nothing_leaks,
    assert_rejected,
    capture_everything,
    until,
)
from tests.bot.platforms.telegram.conftest import (
    BOT_TOKEN,
    HEADERS,
    SECRET_TOKEN,
    SECRETS,
    SEND_MESSAGE,
    env,
    recorded,
)
from tests.support.fake_platform import FakePlatformAPI


async def post(telegram: PlatformLoop, update: dict[str, Any]) -> Any:
    return await telegram.client.post("/telegram/webhook", data=orjson.dumps(update), headers=HEADERS)


def delivered(telegram: PlatformLoop) -> float:
    return sample(telegram.registry, "bot_delivery_attempts_total", platform="telegram", outcome="delivered")


async def test_a_private_message_is_acked_and_answered_as_a_reply(
    telegram: PlatformLoop, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    update = recorded("private_text.json")
    resp = await post(telegram, update)
    assert resp.status == 200 and await resp.json() == {}
    [sent] = await telegram.api.wait_for(SEND_MESSAGE)
    genuine = Update.de_json(update, bot=None)
    assert sent.json() == {
        "chat_id": genuine.effective_chat.id,
        "text": "[built-in responder] turn 1: you said: hello",
        "reply_parameters": {"message_id": genuine.message.message_id, "allow_sending_without_reply": True},
    }
    await until(lambda: delivered(telegram) == 1)
    assert_nothing_leaks(SECRETS, caplog, telegram.metrics_text())


async def test_a_forum_topic_message_is_answered_in_its_topic(telegram: PlatformLoop) -> None:
    update = recorded("group_topic_text.json")
    await post(telegram, update)
    [sent] = await telegram.api.wait_for(SEND_MESSAGE)
    genuine = Update.de_json(update, bot=None)
    assert sent.json()["chat_id"] == genuine.effective_chat.id == -1001234567890
    assert sent.json()["message_thread_id"] == genuine.message.message_thread_id


@pytest.mark.parametrize("name", ["edited_message.json", "photo.json", "from_bot.json"])
async def test_edits_non_text_and_other_bots_are_acked_and_ignored(telegram: PlatformLoop, name: str) -> None:
    resp = await post(telegram, recorded(name))
    assert resp.status == 200 and await resp.json() == {}
    await post(telegram, recorded("private_text.json", update_id=20000, text="after"))
    [sent] = await telegram.api.wait_for(SEND_MESSAGE)
    assert sent.json()["text"].endswith("you said: after")


async def test_the_same_update_three_times_two_concurrently_is_answered_once(telegram: PlatformLoop) -> None:
    async def duplicate() -> Any:
        return await post(telegram, recorded("private_text.json", update_id=30000, text="dup"))

    async def other() -> Any:
        return await post(telegram, recorded("private_text.json", update_id=30001, message_id=1366, text="other"))

    replies = await assert_answered_once(telegram, SEND_MESSAGE, duplicate, other)
    assert [r["text"].rsplit(": ", 1)[1] for r in replies] == ["dup", "other"]


async def test_flood_control_is_retried(telegram: PlatformLoop, send_message: Script) -> None:
    send_message.then({"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                       "parameters": {"retry_after": 1}}, status=429)
    await post(telegram, recorded("private_text.json"))
    await telegram.api.wait_for(SEND_MESSAGE, count=2)
    await until(lambda: delivered(telegram) == 1)


async def test_a_refusal_goes_to_the_dead_letters_at_once(
    telegram: PlatformLoop, send_message: Script, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    send_message.default = {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
    await post(telegram, recorded("private_text.json"))
    await until(lambda: sample(telegram.registry, "bot_dead_letters_total", platform="telegram") == 1)
    assert len(telegram.api.calls(SEND_MESSAGE)) == 1
    assert any("bot was blocked" in r.getMessage() for r in caplog.records)
    assert_nothing_leaks(SECRETS, caplog, telegram.metrics_text())


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({"Content-Type": "application/json"}, orjson.dumps(recorded("private_text.json")), 401, "bad_token"),
        ({"X-Telegram-Bot-Api-Secret-Token": SECRET_TOKEN + "x"}, orjson.dumps(recorded("private_text.json")), 401,
         "bad_token"),
        ({"X-Telegram-Bot-Api-Secret-Token": "ünïcode"}, orjson.dumps(recorded("private_text.json")), 401,
         "bad_token"),
        (HEADERS, b"{not json", 400, "malformed"),
        (HEADERS, b'{"message": {"text": "no update id"}}', 400, "malformed"),
        (HEADERS, b'{"update_id": "1", "message": {}}', 400, "malformed"),
        (HEADERS, b'{"update_id": 1, "message": "text"}', 400, "malformed"),
        (HEADERS, b'{"update_id": 1, "message": {"message_id": 1, "text": "no chat"}}', 400, "malformed"),
    ],
    ids=["no-secret", "wrong-secret", "non-ascii-secret", "not-json", "no-update-id", "update-id-not-int",
         "message-not-object", "no-chat"],
)
async def test_bad_updates_are_refused_with_a_reason_and_nothing_leaks(
    telegram: PlatformLoop, caplog: pytest.LogCaptureFixture, headers: dict[str, str], body: bytes, status: int,
    reason: str,
) -> None:
    capture_everything(caplog)
    resp = await telegram.client.post("/telegram/webhook", data=body, headers=headers)
    await assert_rejected(telegram, resp, status, reason)
    assert_nothing_leaks(SECRETS, caplog, await resp.text())
    assert telegram.api.requests == []


async def test_an_oversized_body_is_refused(telegram: PlatformLoop) -> None:
    body = orjson.dumps({"update_id": 1, "padding": "x" * (1024 * 1024)})
    resp = await telegram.client.post("/telegram/webhook", data=io.BytesIO(body), headers=HEADERS)
    await assert_rejected(telegram, resp, 413, "too_large")


# The adapter on its own, for what the worker hides: the retry hint and the failure reasons.

REPLY = Reply(InboundMessage("telegram", "1", "5", "5", "hi", 0.0, {"chat_id": 5, "message_id": 9}), "hello")


async def test_the_retry_after_in_the_body_is_honoured(make_adapter: MakeAdapter) -> None:
    api = FakePlatformAPI()
    Script(api, "POST", SEND_MESSAGE, {}).then(
        {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
         "parameters": {"retry_after": 7}}, status=429)
    with pytest.raises(DeliveryFailed) as failure:
        await (await make_adapter(plugin, env, api)).send(REPLY)
    assert (failure.value.retryable, failure.value.retry_after) == (True, 7.0)


@pytest.mark.parametrize("echoing", [True, False], ids=["api-echoes-the-path", "unreachable"])
async def test_the_bot_token_never_reaches_a_failure_reason(make_adapter: MakeAdapter, echoing: bool) -> None:
    api = FakePlatformAPI()
    Script(api, "POST", SEND_MESSAGE, {"ok": False, "error_code": 404, "description": f"Not Found: {SEND_MESSAGE}"})
    with pytest.raises(DeliveryFailed) as failure:
        await (await make_adapter(plugin, env, api if echoing else None)).send(REPLY)
    assert BOT_TOKEN not in failure.value.reason
    assert failure.value.retryable is not echoing


def test_long_answers_are_cut_to_telegrams_limit_in_utf16_units() -> None:
    cut = fit_utf16("😀" * 3000, 4096)  # each emoji is two UTF-16 units
    assert len(cut.encode("utf-16-le")) // 2 <= 4096 and cut.endswith("…")
    assert fit_utf16("short", 4096) == "short"


# Streamed replies: the first message's id, edits, and the setting.

EDIT_MESSAGE = SEND_MESSAGE.replace("sendMessage", "editMessageText")


async def test_a_streamed_reply_begins_as_a_message_and_is_finished_by_editing_it(make_adapter: MakeAdapter) -> None:
    api = FakePlatformAPI()
    Script(api, "POST", SEND_MESSAGE, {"ok": True, "result": {"message_id": 4242}})
    Script(api, "POST", EDIT_MESSAGE, {"ok": True, "result": True})
    adapter = await make_adapter(plugin, lambda base: {**env(base), "TELEGRAM_STREAM_REPLIES": "true"}, api)
    assert isinstance(adapter, StreamedReplies)
    handle = await adapter.begin_reply(Reply(REPLY.inbound, "hel …"))
    await adapter.update_reply(REPLY, handle)
    assert handle == "4242"
    assert api.calls(EDIT_MESSAGE)[0].json() == {"chat_id": 5, "message_id": 4242, "text": "hello"}


async def test_editing_a_message_to_the_text_it_already_has_is_done(make_adapter: MakeAdapter) -> None:
    api = FakePlatformAPI()
    Script(api, "POST", EDIT_MESSAGE, {}).then({
        "ok": False, "error_code": 400,
        "description": "Bad Request: message is not modified: specified new message content and reply markup are "
                       "exactly the same as a current content and reply markup of the message"}, status=400)
    adapter = await make_adapter(plugin, env, api)
    assert isinstance(adapter, StreamedReplies)
    await adapter.update_reply(REPLY, "4242")  # a retry after a crash sends the finished text again


async def test_a_refused_edit_fails_without_the_token(make_adapter: MakeAdapter) -> None:
    api = FakePlatformAPI()
    Script(api, "POST", EDIT_MESSAGE, {}).then(
        {"ok": False, "error_code": 400, "description": f"Bad Request: message to edit not found {BOT_TOKEN}"},
        status=400)
    adapter = await make_adapter(plugin, env, api)
    assert isinstance(adapter, StreamedReplies)
    with pytest.raises(DeliveryFailed) as failure:
        await adapter.update_reply(REPLY, "4242")
    assert failure.value.retryable is False and BOT_TOKEN not in failure.value.reason


async def test_streaming_is_off_unless_turned_on_and_its_budgets_are_per_chat_and_per_bot(
    make_adapter: MakeAdapter
) -> None:
    off = await make_adapter(plugin, env, None)
    assert isinstance(off, StreamedReplies) and off.update_limits(REPLY.inbound) is None
    on = await make_adapter(plugin, lambda base: {**env(base), "TELEGRAM_STREAM_REPLIES": "true"}, None)
    assert isinstance(on, StreamedReplies)
    limits = on.update_limits(REPLY.inbound)
    assert limits is not None
    assert [(key, rate) for key, rate in limits] == [
        ("telegram:123456789:chat:5", "1/second;20/minute"), ("telegram:123456789", "30/second"),
    ]
    assert all(BOT_TOKEN not in key for key, _ in limits)
