"""POST /feishu/event end to end: genuine callbacks in, the ACK Feishu expects, one reply through the Open Platform."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse, web
from lark_oapi.api.im.v1 import (
    PatchMessageRequest,
    PatchMessageRequestBody,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)
from lark_oapi.core.http.transport import _build_url
from lark_oapi.core.json import JSON as LarkJSON
from multidict import CIMultiDict

from bot.delivery.worker import STREAM_UPDATE_INTERVAL
from bot.keys import adapters_key
from bot.messages import InboundMessage, Reply
from bot.platforms.base import DeliveryFailed, StreamedReplies, WebhookRequest
from bot.platforms.feishu import plugin
from bot.platforms.feishu.adapter import FeishuAdapter, card_content
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
    card_text,
    encrypt,
    encrypted_callback,
    env,
    env_without_encrypt_key,
    event,
    lark_status,
    message_path,
    reply_path,
    sign,
    text_event,
)
from tests.bot.platforms.harness import (
    MakeAdapter,
    PlatformLoop,
    StartPlatform,
    assert_answered_once,
    assert_nothing_leaks,
    assert_rejected,
    capture_everything,
    make_adapter,  # noqa: F401  (fixture)
    until,
)
from tests.support.fake_model import FakeModel
from tests.support.fake_platform import FakePlatformAPI

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


# Signed when the test runs, not when the suite was collected: a signature minutes old is another case.
@pytest.mark.parametrize("case", [param.id for param in _rejects()])
async def test_rejected_callbacks_are_4xx_json_counted_by_reason_and_leak_nothing(
    feishu: PlatformLoop, api: FeishuAPI, caplog: pytest.LogCaptureFixture, case: str,
) -> None:
    body, headers, status, reason, lark_refuses = next(param.values for param in _rejects() if param.id == case)
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


# Streamed replies (FEISHU_STREAM_REPLIES): a card replying to the message at the first words, then
# updated (PATCH im/v1/messages/{id}) as the model writes; the finished answer is the last update.

HELD = "model …"  # the model's first word, shown while it is held before the rest
WHOLE = "model reply 1: hello"


async def model_at(aiohttp_server: Any, *, gated: bool) -> tuple[FakeModel, str]:
    model = FakeModel(gate=asyncio.Event() if gated else None)
    return model, str((await aiohttp_server(model.app())).make_url("/v1"))


def streaming(model_url: str, **more: str) -> Callable[[str], dict[str, str]]:
    return lambda base: env(base) | {"FEISHU_STREAM_REPLIES": "true", "MODEL_ENDPOINT": model_url, **more}


def lark_reply(target: str, body: dict[str, Any]) -> tuple[str, str, Any]:
    """The method, path and JSON body lark-oapi sends for this reply."""
    request = ReplyMessageRequest.builder().message_id(target).request_body(
        ReplyMessageRequestBody.builder().msg_type(body["msg_type"]).content(body["content"]).uuid(body["uuid"])
        .build()).build()
    return request.http_method.name, _build_url("", request.uri, request.paths), json.loads(
        LarkJSON.marshal(request.body))


def lark_update(message_id: str, content: str) -> tuple[str, str, Any]:
    """The method, path and JSON body lark-oapi sends for this card update."""
    request = PatchMessageRequest.builder().message_id(message_id).request_body(
        PatchMessageRequestBody.builder().content(content).build()).build()
    return request.http_method.name, _build_url("", request.uri, request.paths), json.loads(
        LarkJSON.marshal(request.body))


def as_sent(call: Any) -> tuple[str, str, Any]:
    return call.method, call.path, call.json()


async def test_with_streaming_off_the_answer_is_one_text_reply_as_before(
    start_platform: StartPlatform, api: FeishuAPI, aiohttp_server: Any
) -> None:
    model, model_url = await model_at(aiohttp_server, gated=False)
    loop = await start_platform("feishu", lambda base: env(base) | {"MODEL_ENDPOINT": model_url}, api)
    await answer(loop, "ev-whole", "hello", "om_whole")
    await until(lambda: attempts(loop, "delivered") == 1)
    [sent] = api.calls(reply_path("om_whole"))
    assert sent.json()["msg_type"] == "text" and json.loads(sent.json()["content"]) == {"text": WHOLE}
    assert [call for call in api.requests if call.method == "PATCH"] == []
    assert "stream" not in model.requests[0]
    adapter = loop.client.app[adapters_key]["feishu"]
    assert isinstance(adapter, StreamedReplies) and adapter.update_limits(REPLY.inbound) is None


async def test_a_streamed_reply_is_a_card_at_the_first_words_then_updated_into_the_whole_answer(
    start_platform: StartPlatform, api: FeishuAPI, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    model, model_url = await model_at(aiohttp_server, gated=True)
    loop = await start_platform("feishu", streaming(model_url), api)
    await answer(loop, "ev-stream", "hello", "om_question")
    [first] = await api.wait_for(reply_path("om_question"))
    # On the user's screen while the model is still held after its first word.
    assert first.json()["msg_type"] == "interactive" and card_text(first.json()["content"]) == HELD
    assert model.streams_finished == 0
    assert as_sent(first) == lark_reply("om_question", first.json())
    [card] = api.sent
    # The next words come after an update is due (one a second at most): the card shows them before the end.
    await asyncio.sleep(STREAM_UPDATE_INTERVAL + 0.2)
    assert model.gate is not None
    model.gate.set()
    await until(lambda: attempts(loop, "delivered") == 1)
    updates = api.calls(message_path(card))
    assert len(updates) >= 2
    assert card_text(updates[0].json()["content"]).endswith(" …") and card_text(updates[0].json()["content"]) != HELD
    assert card_text(updates[-1].json()["content"]) == card_text(api.sent[card].content) == WHOLE
    assert all(as_sent(update) == lark_update(card, update.json()["content"]) for update in updates)
    assert {update.headers["Authorization"] for update in updates} == {f"Bearer {TENANT_TOKEN}"}
    assert len(api.calls(reply_path("om_question"))) == 1, "one message, updated; never a second one"
    assert sample(loop.registry, "bot_first_token_seconds_count", platform="feishu") == 1
    assert_nothing_leaks(SECRETS, caplog, loop.metrics_text())


async def test_an_update_without_room_in_the_budgets_is_skipped_and_the_whole_answer_still_arrives(
    start_platform: StartPlatform, api: FeishuAPI, aiohttp_server: Any
) -> None:
    model, model_url = await model_at(aiohttp_server, gated=True)
    # The card spends the chat's budget; the update due a second later finds no room in it.
    loop = await start_platform("feishu", streaming(model_url, FEISHU_OUTBOUND_CHAT_LIMIT="1/3second"), api)
    await answer(loop, "ev-tight", "hello", "om_tight")
    await api.wait_for(reply_path("om_tight"))
    [card] = api.sent
    await asyncio.sleep(STREAM_UPDATE_INTERVAL + 0.2)
    assert model.gate is not None
    model.gate.set()
    await until(lambda: attempts(loop, "delivered") == 1, timeout=10)
    [final] = api.calls(message_path(card))  # the skipped update left no call behind; the finished text did
    assert card_text(final.json()["content"]) == WHOLE
    assert sample(loop.registry, "bot_outbound_shaped_total", platform="feishu") >= 1
    assert attempts(loop, "retry") == 0


# The adapter on its own: budgets, what an update may meet, errors.

REPLY = Reply(InboundMessage("feishu", "ev-9", "oc_9", "ou_9", "hi", 0.0, {"message_id": "om_9", "chat_id": "oc_9"}),
              "the whole answer")


async def streaming_adapter(make_adapter: MakeAdapter, api: FeishuAPI | None) -> FeishuAdapter:
    adapter = await make_adapter(plugin, lambda base: env(base) | {"FEISHU_STREAM_REPLIES": "true"}, api)
    assert isinstance(adapter, FeishuAdapter) and isinstance(adapter, StreamedReplies)
    return adapter


async def test_updates_draw_on_the_chat_and_app_budgets_and_feishus_five_a_second_per_message(
    make_adapter: MakeAdapter
) -> None:
    adapter = await streaming_adapter(make_adapter, None)
    limits = adapter.update_limits(REPLY.inbound)
    assert limits is not None
    assert [(key, rate) for key, rate in limits] == [
        (f"feishu:{APP_ID}:chat:oc_9", "5/second"), (f"feishu:{APP_ID}", "50/second;1000/minute"),
        (f"feishu:{APP_ID}:reply:ev-9", "5/second"),
    ]
    assert all(APP_SECRET not in key for key, _ in limits)


async def test_updating_a_card_to_the_text_it_already_shows_succeeds(make_adapter: MakeAdapter) -> None:
    api = FeishuAPI()
    api.expect_reply("om_9")
    adapter = await streaming_adapter(make_adapter, api)
    handle = await adapter.begin_reply(Reply(REPLY.inbound, "the whole …"))
    await adapter.update_reply(REPLY, handle)
    await adapter.update_reply(REPLY, handle)  # a retry after a crash sends the finished text again
    assert card_text(api.sent[handle].content) == "the whole answer"
    assert len(api.calls(reply_path("om_9"))) == 1


async def test_the_card_has_a_uuid_of_its_own_kept_across_a_crash(make_adapter: MakeAdapter) -> None:
    api = FeishuAPI()
    api.expect_reply("om_9")
    adapter = await streaming_adapter(make_adapter, api)
    # Sent, then the process died before keeping the handle: the card is sent again with the same uuid,
    # which Feishu sends at most once within an hour.
    await adapter.begin_reply(Reply(REPLY.inbound, "the …"))
    await adapter.begin_reply(Reply(REPLY.inbound, "the whole …"))
    # The plain reply sent when streaming broke off has another: it is never dropped as the card's copy.
    await adapter.send(REPLY)
    first, again, plain = (call.json()["uuid"] for call in api.calls(reply_path("om_9")))
    assert first == again != plain
    assert plain == adapter.format(REPLY)["uuid"]


@pytest.mark.parametrize("text", ["长" * 20_000, '"quoted" \\ ' * 4000, "😀" * 9000], ids=["cjk", "escapes", "emoji"])
async def test_an_answer_too_long_for_a_card_is_cut_to_feishus_30_kb(make_adapter: MakeAdapter, text: str) -> None:
    api = FeishuAPI()
    api.expect_reply("om_9")
    adapter = await streaming_adapter(make_adapter, api)
    handle = await adapter.begin_reply(Reply(REPLY.inbound, text))
    await adapter.update_reply(Reply(REPLY.inbound, text + "!"), handle)
    shown = card_text(api.sent[handle].content)
    assert shown.endswith("…") and text.startswith(shown[:-1])
    assert len(shown) > len(text) // 3  # cut near the limit, not far below it


@pytest.mark.parametrize(("code", "retryable"), [
    (230020, True),  # five updates a second on one message, or the chat's limit
    (99991400, True),  # the app's request limit
    (230031, False),  # more than 14 days after the message was sent
    (230011, False),  # the message was recalled
    (230025, False),  # too long
])
async def test_a_refused_update_fails_retryable_only_when_feishu_says_try_later(
    make_adapter: MakeAdapter, code: int, retryable: bool
) -> None:
    api = FeishuAPI()
    api.expect_reply("om_9")
    adapter = await streaming_adapter(make_adapter, api)
    handle = await adapter.begin_reply(REPLY)
    api.update_codes = [code]
    with pytest.raises(DeliveryFailed) as failure:
        await adapter.update_reply(REPLY, handle)
    assert failure.value.retryable is retryable and str(code) in failure.value.reason


async def test_the_stand_in_holds_the_rules_feishu_documents_for_updates(make_adapter: MakeAdapter) -> None:
    api = FeishuAPI()
    api.expect_reply("om_9")
    adapter = await streaming_adapter(make_adapter, api)
    text_message = await adapter.api.reply("om_9", {"msg_type": "text", "content": '{"text": "x"}', "uuid": "u-1"})
    assert text_message is not None
    card = await adapter.begin_reply(REPLY)
    for refused in (
        adapter.api.update_card(text_message, card_content("not a card")),  # only cards are updated
        adapter.api.update_card(card, '{"elements": []}'),  # the new card must keep update_multi
    ):
        with pytest.raises(DeliveryFailed, match="230001"):
            await refused
    for _ in range(5):
        await adapter.update_reply(REPLY, card)
    with pytest.raises(DeliveryFailed, match="230020") as sixth:
        await adapter.update_reply(REPLY, card)  # a sixth update within the second
    assert sixth.value.retryable
    api.sent[card].sent_at -= 15 * 86400
    api.sent[card].updates.clear()
    with pytest.raises(DeliveryFailed, match="230031"):
        await adapter.update_reply(REPLY, card)


async def test_a_token_echoed_in_a_refusal_never_reaches_the_failure(make_adapter: MakeAdapter) -> None:
    api = FakePlatformAPI()
    api.on("POST", TOKEN_PATH, {"code": 0, "tenant_access_token": TENANT_TOKEN, "expire": 7200})
    api.on("PATCH", message_path("om_card"), lambda _req: web.json_response(
        {"code": 230001, "msg": f"invalid request: token {TENANT_TOKEN} header Bearer {TENANT_TOKEN}"}, status=400))
    adapter = await make_adapter(plugin, env, api)
    assert isinstance(adapter, FeishuAdapter)
    with pytest.raises(DeliveryFailed) as failure:
        await adapter.update_reply(REPLY, "om_card")
    assert TENANT_TOKEN not in failure.value.reason and not failure.value.retryable
