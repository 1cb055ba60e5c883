"""Streamed DingTalk replies: an AI card created early (createAndDeliver), streamed into as the model writes
(card/streaming), its last write the whole answer that finalizes it; off, one reply as before."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import dingtalk_stream.card_replier as sdk_cards
import pytest
from dingtalk_stream import AICardReplier, ChatbotMessage

from bot.messages import Reply
from bot.platforms.base import DeliveryFailed, StreamedReplies
from bot.platforms.dingtalk import plugin
from bot.platforms.dingtalk.adapter import DingTalkAdapter, card_track_id, decode_message
from tests.bot.conftest import sample
from tests.bot.platforms.dingtalk.cards import CREATE_AND_DELIVER_PATH, STREAMING_PATH, Card
from tests.bot.platforms.dingtalk.conftest import (
    ACCESS_TOKEN,
    APP_KEY,
    CARD_TEMPLATE,
    GROUP_PATH,
    SESSION_PATH,
    TOKEN_PATH,
    USER_PATH,
    DingTalkAPI,
    api_base,
    callback,
    env,
    live_session,
    payload,
    streaming_env,
)
from tests.bot.platforms.harness import MakeAdapter, PlatformLoop, StartPlatform, make_adapter, until  # noqa: F401
from tests.support.fake_model import FakeModel

GROUP_TEXT = "model reply 1: 你好"
STILL_WRITING = " …"


async def model_url(aiohttp_server: Any, model: FakeModel) -> str:
    return str((await aiohttp_server(model.app())).make_url("/v1"))


async def ask(loop: PlatformLoop, api: DingTalkAPI, name: str = "text_group", **fields: Any) -> None:
    data, headers = callback(payload(name, **live_session(api_base(loop), "grp"), **fields))
    resp = await loop.client.post("/dingtalk/callback", data=data, headers=headers)
    assert resp.status == 200


async def finished(api: DingTalkAPI) -> Card:
    await until(lambda: len(api.cards.cards) == 1 and api.cards.only().finalized, timeout=15)
    return api.cards.only()


async def test_with_streaming_off_the_reply_is_one_message_as_today(
    start_platform: StartPlatform, api: DingTalkAPI, aiohttp_server: Any
) -> None:
    model = FakeModel()
    url = await model_url(aiohttp_server, model)
    # A template alone does not turn streaming on.
    loop = await start_platform("dingtalk", lambda base: env(base) | {
        "MODEL_ENDPOINT": url, "DINGTALK_CARD_TEMPLATE_ID": CARD_TEMPLATE}, api)
    await ask(loop, api)
    [sent] = await api.wait_for(SESSION_PATH)
    assert sent.json()["text"]["content"] == GROUP_TEXT
    assert api.calls(CREATE_AND_DELIVER_PATH) == api.calls(STREAMING_PATH) == []
    assert "stream" not in model.requests[0]


async def test_a_streamed_reply_is_a_card_created_early_updated_and_finalized_with_the_whole_answer(
    start_platform: StartPlatform, api: DingTalkAPI, aiohttp_server: Any
) -> None:
    # One word every 1.1 s: longer than the worker's pause between updates, so every word can show.
    model = FakeModel(chunk_delay=1.1)
    url = await model_url(aiohttp_server, model)
    loop = await start_platform("dingtalk", lambda base: streaming_env(base) | {"MODEL_ENDPOINT": url}, api)
    await ask(loop, api)
    [create] = await api.wait_for(CREATE_AND_DELIVER_PATH)
    # The card is on the user's screen with the first word while the model is still writing.
    assert model.streams_finished == 0
    assert create.headers["x-acs-dingtalk-access-token"] == ACCESS_TOKEN
    assert create.json()["cardData"] == {"cardParamMap": {"content": "model" + STILL_WRITING}}
    assert create.json()["openSpaceId"] == "dtv1.card//IM_GROUP.cidqO7Ne7e+myoRu67AguW9HQ=="

    card = await finished(api)
    assert card.template_id == CARD_TEMPLATE and card.params["content"] == GROUP_TEXT
    *updates, last = card.writes
    assert updates, "the card grew while the model wrote"
    assert all(w["content"].endswith(STILL_WRITING) and w["isFinalize"] is False for w in updates)
    assert GROUP_TEXT.startswith(updates[-1]["content"].removesuffix(STILL_WRITING))
    assert (last["content"], last["isFull"], last["isFinalize"], last["isError"]) == (GROUP_TEXT, True, True, False)
    # One card and nothing else: no robot message, no session-webhook reply.
    assert api.calls(SESSION_PATH) == api.calls(USER_PATH) == api.calls(GROUP_PATH) == []
    assert api.cards.refusals == []
    await until(lambda: sample(loop.registry, "bot_delivery_attempts_total", platform="dingtalk",
                               outcome="delivered") == 1)
    assert sample(loop.registry, "bot_first_token_seconds_count", platform="dingtalk") == 1


@pytest.mark.parametrize("budget", [
    {"DINGTALK_STREAM_UPDATE_LIMIT": "1/hour"},  # the conversation's card budget: room for the card only
    {"DINGTALK_STREAM_UPDATE_QUOTA": "1/hour"},  # the app's OpenAPI budget (per second, per month) alike
])
async def test_updates_without_room_in_their_budget_are_skipped_and_the_finished_text_still_goes(
    start_platform: StartPlatform, api: DingTalkAPI, aiohttp_server: Any, budget: dict[str, str]
) -> None:
    model = FakeModel(chunk_delay=1.1)
    url = await model_url(aiohttp_server, model)
    loop = await start_platform("dingtalk", lambda base: streaming_env(base) | {"MODEL_ENDPOINT": url, **budget}, api)
    await ask(loop, api)
    card = await finished(api)
    # The budget's one slot made the card; every update until the answer was done was skipped.
    assert [w["content"] for w in card.writes] == [GROUP_TEXT] and card.writes[0]["isFinalize"] is True
    assert len(api.calls(CREATE_AND_DELIVER_PATH)) == 1
    assert api.calls(SESSION_PATH) == []


async def test_with_no_room_for_the_card_itself_the_reply_goes_whole_as_today(
    start_platform: StartPlatform, api: DingTalkAPI, aiohttp_server: Any
) -> None:
    model = FakeModel()
    url = await model_url(aiohttp_server, model)
    loop = await start_platform("dingtalk", lambda base: streaming_env(base) | {
        "MODEL_ENDPOINT": url, "DINGTALK_STREAM_UPDATE_QUOTA": "1/hour"}, api)
    await ask(loop, api, msgId="msg-first")
    await finished(api)
    await ask(loop, api, msgId="msg-second")  # the hour's one call is spent
    [sent] = await api.wait_for(SESSION_PATH)
    assert sent.json()["text"]["content"] == "model reply 2: 你好"
    assert len(api.cards.cards) == 1


async def test_a_card_dingtalk_refuses_to_create_leaves_the_reply_to_go_whole_as_today(
    start_platform: StartPlatform, api: DingTalkAPI, aiohttp_server: Any
) -> None:
    model = FakeModel()
    url = await model_url(aiohttp_server, model)
    loop = await start_platform("dingtalk", lambda base: streaming_env(base) | {"MODEL_ENDPOINT": url}, api)
    # The app lacks the card permission: DingTalk refuses the card, the user still gets the answer.
    api.cards.scripted.append((403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
                                     "message": "no permission: Card.Instance.Write"}))
    await ask(loop, api)
    [sent] = await api.wait_for(SESSION_PATH)
    assert sent.json()["text"]["content"] == GROUP_TEXT
    assert api.cards.cards == {} and api.calls(STREAMING_PATH) == []


# The adapter alone: request shapes against dingtalk_stream's own AICardReplier, retries, failures.

class _SDKClient:
    """What AICardReplier asks of a DingTalkStreamClient: an access token and the robot's client id."""

    def __init__(self, robot_code: str) -> None:
        self.credential = SimpleNamespace(client_id=robot_code)

    def get_access_token(self) -> str:
        return ACCESS_TOKEN


async def card_adapter(make_adapter: MakeAdapter, api: DingTalkAPI, **extra: str) -> DingTalkAdapter:
    adapter = await make_adapter(plugin, lambda base: streaming_env(base) | extra, api)
    assert isinstance(adapter, DingTalkAdapter) and isinstance(adapter, StreamedReplies)
    return adapter


@pytest.mark.parametrize("name", ["text_group", "text_single"])
async def test_request_bodies_are_the_ones_dingtalk_streams_ai_card_replier_builds(
    make_adapter: MakeAdapter, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    api = DingTalkAPI()
    adapter = await card_adapter(make_adapter, api)
    body = payload(name)
    [message] = decode_message(body, 0.0).messages
    # The SDK, pointed at the same stand-in, answering the same message.
    monkeypatch.setattr(sdk_cards, "DINGTALK_OPENAPI_ENDPOINT", adapter.settings.api_base)
    replier = AICardReplier(_SDKClient(adapter._robot_code(message.reply_handle)), ChatbotMessage.from_dict(body))
    sdk_track_id = await replier.async_create_and_deliver_card(CARD_TEMPLATE, {"content": "hel …"})
    await replier.async_streaming(sdk_track_id, "content", "hello", append=False, finished=True, failed=False)

    handle = await adapter.begin_reply(Reply(message, "hel …", partial=True))
    await adapter.update_reply(Reply(message, "hello"), handle)

    assert api.cards.refusals == [] and len(api.cards.cards) == 2
    sdk_create, our_create = (c.json() for c in api.calls(CREATE_AND_DELIVER_PATH))
    assert our_create == sdk_create | {"outTrackId": handle}
    assert re.fullmatch(r"[0-9a-f]{64}", handle)  # opaque, the SDK's own form
    sdk_write, our_write = (c.json() for c in api.calls(STREAMING_PATH))
    assert our_write == sdk_write | {"outTrackId": handle, "guid": our_write["guid"]}
    assert our_write["guid"] != sdk_write["guid"]
    assert [c.headers["x-acs-dingtalk-access-token"] for c in api.calls(STREAMING_PATH)] == [ACCESS_TOKEN] * 2
    assert api.cards.cards[handle].params == {"content": "hello"} and api.cards.cards[handle].finalized


async def test_a_retried_reply_finishes_the_same_card_and_sending_its_text_again_is_done(
    make_adapter: MakeAdapter
) -> None:
    api = DingTalkAPI()
    adapter = await card_adapter(make_adapter, api)
    [message] = decode_message(payload("text_group"), 0.0).messages
    handle = await adapter.begin_reply(Reply(message, "hel …", partial=True))
    # The card is named by the message: a begin repeated after a crash could only name this card.
    assert handle == card_track_id(APP_KEY, message.message_id)
    await adapter.update_reply(Reply(message, "hello"), handle)
    await adapter.update_reply(Reply(message, "hello"), handle)  # the retry after a crash
    card = api.cards.only()
    assert card.params["content"] == "hello" and card.finalized and len(api.calls(CREATE_AND_DELIVER_PATH)) == 1
    assert len(api.calls(TOKEN_PATH)) == 1


async def test_a_one_to_one_card_needs_the_users_staff_id(make_adapter: MakeAdapter) -> None:
    api = DingTalkAPI()
    adapter = await card_adapter(make_adapter, api)
    [message] = decode_message(payload("text_single", senderStaffId=None, senderId="$:LWCP_v1:$x"), 0.0).messages
    with pytest.raises(DeliveryFailed) as failure:
        await adapter.begin_reply(Reply(message, "hel …", partial=True))
    assert failure.value.retryable is False and api.calls(CREATE_AND_DELIVER_PATH) == []


@pytest.mark.parametrize(("status", "answer", "retryable"), [
    (403, {"code": "Forbidden.AccessDenied.QpsLimitForApi", "message": "qps limit"}, True),
    (400, {"code": "param.invalid", "message": f"bad access_token={ACCESS_TOKEN}"}, False),
    (200, {"success": False}, False),
])
async def test_card_refusals_fail_retryable_only_when_throttled_and_name_no_credential(
    make_adapter: MakeAdapter, status: int, answer: dict[str, Any], retryable: bool
) -> None:
    api = DingTalkAPI()
    adapter = await card_adapter(make_adapter, api)
    [message] = decode_message(payload("text_group"), 0.0).messages
    api.cards.scripted.append((status, answer))
    with pytest.raises(DeliveryFailed) as failure:
        await adapter.update_reply(Reply(message, "hello"), "track-1")
    assert failure.value.retryable is retryable
    assert ACCESS_TOKEN not in failure.value.reason


async def test_a_card_created_but_not_delivered_fails_for_good(make_adapter: MakeAdapter) -> None:
    api = DingTalkAPI()
    adapter = await card_adapter(make_adapter, api)
    [message] = decode_message(payload("text_group"), 0.0).messages
    api.cards.scripted.append((200, {"success": True, "result": {"outTrackId": "x", "deliverResults": [
        {"spaceType": "IM_GROUP", "spaceId": "cid", "success": False, "errorMsg": "robot not in group"}]}}))
    with pytest.raises(DeliveryFailed) as failure:
        await adapter.begin_reply(Reply(message, "hel …", partial=True))
    assert failure.value.retryable is False and "robot not in group" in failure.value.reason


async def test_a_refused_access_token_is_fetched_again(make_adapter: MakeAdapter) -> None:
    api = DingTalkAPI()
    adapter = await card_adapter(make_adapter, api)
    [message] = decode_message(payload("text_group"), 0.0).messages
    api.cards.scripted.append((401, {"code": "InvalidAuthentication", "message": "token invalid"}))
    with pytest.raises(DeliveryFailed) as failure:
        await adapter.begin_reply(Reply(message, "hel …", partial=True))
    assert failure.value.retryable is True
    await adapter.begin_reply(Reply(message, "hel …", partial=True))
    assert len(api.calls(TOKEN_PATH)) == 2 and len(api.cards.cards) == 1


async def test_streaming_budgets_are_the_cards_per_conversation_and_the_apps_openapi(
    make_adapter: MakeAdapter
) -> None:
    [message] = decode_message(payload("text_group"), 0.0).messages
    off = await make_adapter(plugin, env, None)
    assert isinstance(off, StreamedReplies) and off.update_limits(message) is None
    on = await make_adapter(plugin, streaming_env, None)
    assert isinstance(on, StreamedReplies)
    limits = on.update_limits(message)
    assert limits is not None
    robot = payload("text_group")["robotCode"]
    assert [(key, rate) for key, rate in limits] == [
        (f"dingtalk:{robot}:cidqO7Ne7e+myoRu67AguW9HQ==:card", "20/minute"),
        (f"dingtalk:{APP_KEY}:openapi", "20/second;5000/month"),
    ]
    # Never the robot's message budget: the finished reply must not wait behind its own updates.
    assert all(key not in {k for k, _ in on.outbound_limits(Reply(message, "x"))} for key, _ in limits)


async def test_the_card_endpoints_refuse_what_dingtalk_refuses(make_adapter: MakeAdapter) -> None:
    """The stand-in itself: a wrong token and a body missing what the API requires are refused."""
    api = DingTalkAPI()
    adapter = await card_adapter(make_adapter, api)
    http, base = adapter.deps.http, adapter.settings.api_base
    cases = [
        ("POST", CREATE_AND_DELIVER_PATH, "wrong-token", {"cardTemplateId": "t", "outTrackId": "o"}, 401),
        ("POST", CREATE_AND_DELIVER_PATH, ACCESS_TOKEN, {"outTrackId": "o"}, 400),
        ("POST", CREATE_AND_DELIVER_PATH, ACCESS_TOKEN, {"cardTemplateId": "t", "outTrackId": "o",
                                                         "cardData": {"cardParamMap": {"content": 1}},
                                                         "openSpaceId": "dtv1.card//IM_GROUP.c"}, 400),
        ("POST", CREATE_AND_DELIVER_PATH, ACCESS_TOKEN, {"cardTemplateId": "t", "outTrackId": "o",
                                                         "cardData": {"cardParamMap": {}},
                                                         "openSpaceId": "dtv1.card//IM_GROUP.c",
                                                         "imGroupOpenSpaceModel": {}}, 400),  # no robotCode
        ("PUT", STREAMING_PATH, ACCESS_TOKEN, {"outTrackId": "o", "key": "content", "content": "x"}, 400),  # guid
    ]
    for method, path, token, body, status in cases:
        async with http.request(method, base + path, json=body,
                                headers={"x-acs-dingtalk-access-token": token}) as resp:
            assert resp.status == status, (path, body, await resp.text())
    assert api.cards.cards == {}
