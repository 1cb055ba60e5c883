"""POST /dingtalk/callback end to end: signed callbacks in, `{}` back, one reply by session webhook or OpenAPI."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse

from tests.bot.conftest import sample
from tests.bot.platforms.dingtalk.conftest import (
    ACCESS_TOKEN,
    APP_KEY,
    APP_SECRET,
    GROUP_PATH,
    SECRETS,
    SESSION_PATH,
    TOKEN_PATH,
    USER_PATH,
    DingTalkAPI,
    api_base,
    callback,
    env,
    live_session,
    payload,
    signed_headers,
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
EXPIRED = {"sessionWebhookExpiredTime": 1613633271357}


async def post(loop: PlatformLoop, body: bytes, headers: dict[str, str]) -> ClientResponse:
    return await loop.client.post("/dingtalk/callback", data=body, headers=headers)


def attempts(loop: PlatformLoop, outcome: str) -> float:
    return sample(loop.registry, "bot_delivery_attempts_total", platform=loop.platform, outcome=outcome)


async def test_a_group_message_is_acknowledged_and_answered_through_its_session_webhook(
    dingtalk: PlatformLoop, api: DingTalkAPI
) -> None:
    resp = await post(dingtalk, *callback(payload("text_group", **live_session(api_base(dingtalk), "grp"))))
    assert resp.status == 200
    assert await resp.json() == {}
    [sent] = await api.wait_for(SESSION_PATH)
    assert sent.query == {"session": "grp"}
    # The session webhook URL is its own credential: no token is fetched or sent.
    assert "x-acs-dingtalk-access-token" not in {header.lower() for header in sent.headers}
    assert sent.json() == {"msgtype": "text", "text": {"content": BUILT_IN + "你好"},
                           "at": {"atUserIds": ["manager7675"]}}
    assert api.calls(TOKEN_PATH) == []


async def test_a_one_to_one_message_without_a_live_session_goes_through_the_openapi(
    dingtalk: PlatformLoop, api: DingTalkAPI
) -> None:
    assert (await post(dingtalk, *callback(payload("text_single") | EXPIRED))).status == 200
    [sent] = await api.wait_for(USER_PATH)
    assert api.calls(TOKEN_PATH)[0].json() == {"appKey": APP_KEY, "appSecret": APP_SECRET}
    assert sent.headers["x-acs-dingtalk-access-token"] == ACCESS_TOKEN
    message = sent.json()
    assert json.loads(message.pop("msgParam")) == {"content": BUILT_IN + "what is the status?"}
    assert message == {"robotCode": "dingxtszvqlgcb7f5ylh", "userIds": ["user0442"], "msgKey": "sampleText"}
    assert api.calls(SESSION_PATH) == []


async def test_a_group_message_without_a_live_session_goes_to_the_conversation_with_the_configured_robot(
    start_platform: StartPlatform, api: DingTalkAPI
) -> None:
    loop = await start_platform("dingtalk", lambda base: env(base) | {"DINGTALK_ROBOT_CODE": "ding-robot"}, api)
    await post(loop, *callback(payload("text_group") | EXPIRED))
    [sent] = await api.wait_for(GROUP_PATH)
    assert sent.headers["x-acs-dingtalk-access-token"] == ACCESS_TOKEN
    message = sent.json()
    assert json.loads(message.pop("msgParam")) == {"content": BUILT_IN + "你好"}
    assert message == {"robotCode": "ding-robot", "openConversationId": "cidqO7Ne7e+myoRu67AguW9HQ==",
                       "msgKey": "sampleText"}


async def test_a_session_webhook_that_is_gone_falls_back_to_the_openapi(
    dingtalk: PlatformLoop, api: DingTalkAPI
) -> None:
    api.session_codes = [300001]
    await post(dingtalk, *callback(payload("text_single", **live_session(api_base(dingtalk)))))
    await api.wait_for(USER_PATH)
    assert len(api.calls(SESSION_PATH)) == 1


async def test_a_session_webhook_on_a_host_not_allowed_is_never_called(
    dingtalk: PlatformLoop, api: DingTalkAPI, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    # The same fake server under another name: reachable, but not an allowed host.
    elsewhere = api_base(dingtalk).replace("127.0.0.1", "localhost") + "/collect?session=stolen"
    body = payload("text_single", sessionWebhook=elsewhere,
                   sessionWebhookExpiredTime=int(time.time() * 1000) + 600_000)
    await post(dingtalk, *callback(body))
    await api.wait_for(USER_PATH)
    assert api.calls("/collect") == []
    assert_nothing_leaks(["session=stolen"], caplog)


async def test_the_timestamp_window_is_dingtalks_hour_not_the_five_minute_default(
    dingtalk: PlatformLoop, api: DingTalkAPI
) -> None:
    fifty_nine_minutes_ago = int((time.time() - 59 * 60) * 1000)
    body = payload("text_group", **live_session(api_base(dingtalk)))
    assert (await post(dingtalk, *callback(body, timestamp_ms=fifty_nine_minutes_ago))).status == 200
    await api.wait_for(SESSION_PATH)


@pytest.mark.parametrize("body", [
    payload("picture_single"),
    payload("text_single", text={"content": "   "}),
], ids=["picture", "blank text"])
async def test_messages_we_do_not_answer_are_acknowledged_and_left_alone(
    dingtalk: PlatformLoop, api: DingTalkAPI, body: dict[str, Any]
) -> None:
    base = api_base(dingtalk)
    resp = await post(dingtalk, *callback(body | live_session(base, "ignored")))
    assert resp.status == 200
    assert await resp.json() == {}
    await post(dingtalk, *callback(payload("text_group", msgId="after", **live_session(base, "after"))))
    await api.wait_for(SESSION_PATH)
    assert [r.query["session"] for r in api.requests] == ["after"]


async def test_the_same_message_three_times_two_concurrently_is_answered_once(
    dingtalk: PlatformLoop, api: DingTalkAPI
) -> None:
    base = api_base(dingtalk)

    async def duplicate() -> ClientResponse:
        return await post(dingtalk, *callback(payload("text_group", msgId="msg-dup", **live_session(base, "dup"))))

    async def other() -> ClientResponse:
        return await post(dingtalk, *callback(payload("text_group", msgId="msg-next", **live_session(base, "next"))))

    await assert_answered_once(dingtalk, SESSION_PATH, duplicate, other)
    assert [r.query["session"] for r in api.calls(SESSION_PATH)] == ["dup", "next"]


def _rejects() -> list[Any]:
    body = orjson.dumps(payload("text_group"))
    now_ms = int(time.time() * 1000)
    good = signed_headers()
    return [
        pytest.param(body, signed_headers(secret="SECanother-app-secret"), 401, "bad_signature", id="other secret"),
        pytest.param(body, {**good, "sign": good["sign"][:-4] + "AAA="}, 401, "bad_signature", id="sign altered"),
        pytest.param(body, {"timestamp": good["timestamp"]}, 401, "bad_signature", id="sign missing"),
        pytest.param(body, {"sign": good["sign"]}, 401, "bad_signature", id="timestamp missing"),
        # Correctly signed, but outside DingTalk's one-hour window: a replay.
        pytest.param(body, signed_headers(now_ms - 3_700_000), 401, "stale_timestamp", id="an hour and more old"),
        pytest.param(body, signed_headers(now_ms + 3_700_000), 401, "stale_timestamp", id="an hour ahead"),
        pytest.param(body, {**good, "timestamp": "yesterday"}, 401, "stale_timestamp", id="timestamp not a number"),
        pytest.param(b"{not json", good, 400, "malformed", id="not JSON"),
        pytest.param(b'"text"', good, 400, "malformed", id="not an object"),
        pytest.param(orjson.dumps({"msgtype": "text", "text": {"content": "hi"}}), good, 400, "malformed",
                     id="no msgId"),
        pytest.param(orjson.dumps(payload("text_group") | {"text": {"content": 7}}), good, 400, "malformed",
                     id="content not a string"),
        pytest.param(orjson.dumps(payload("text_group") | {"text": "hi"}), good, 400, "malformed",
                     id="text not an object"),
    ]


# Signed when the test runs, not when the suite was collected: a signature minutes old is another case.
@pytest.mark.parametrize("case", [param.id for param in _rejects()])
async def test_rejected_callbacks_are_4xx_json_counted_by_reason_and_leak_nothing(
    dingtalk: PlatformLoop, api: DingTalkAPI, caplog: pytest.LogCaptureFixture, case: str,
) -> None:
    body, headers, status, reason = next(param.values for param in _rejects() if param.id == case)
    capture_everything(caplog)
    resp = await post(dingtalk, body, headers)
    await assert_rejected(dingtalk, resp, status, reason)
    assert f"webhook rejected: {reason}" in caplog.text
    assert_nothing_leaks(SECRETS, caplog, await resp.text())
    assert api.requests == []


async def test_one_access_token_serves_several_openapi_replies(dingtalk: PlatformLoop, api: DingTalkAPI) -> None:
    for n in range(3):
        await post(dingtalk, *callback(payload("text_single", msgId=f"m-{n}") | EXPIRED))
        await api.wait_for(USER_PATH, count=n + 1)
    assert len(api.calls(TOKEN_PATH)) == 1


async def test_a_refused_access_token_is_fetched_again_and_the_reply_retried(
    dingtalk: PlatformLoop, api: DingTalkAPI
) -> None:
    api.openapi_statuses = [401]
    await post(dingtalk, *callback(payload("text_single") | EXPIRED))
    await api.wait_for(USER_PATH, count=2)
    assert len(api.calls(TOKEN_PATH)) == 2
    await until(lambda: attempts(dingtalk, "delivered") == 1)
    assert attempts(dingtalk, "retry") == 1


@pytest.mark.parametrize("throttled", ["session webhook", "openapi"])
async def test_a_throttled_reply_is_retried(dingtalk: PlatformLoop, api: DingTalkAPI, throttled: str) -> None:
    if throttled == "session webhook":
        api.session_codes = [130101]
        body, path = payload("text_group", **live_session(api_base(dingtalk))), SESSION_PATH
    else:
        api.flow_controlled = [True]
        body, path = payload("text_single") | EXPIRED, USER_PATH
    await post(dingtalk, *callback(body))
    await api.wait_for(path, count=2)
    await until(lambda: attempts(dingtalk, "delivered") == 1)


async def test_a_reply_dingtalk_refuses_for_good_goes_to_the_dead_letters(
    dingtalk: PlatformLoop, api: DingTalkAPI
) -> None:
    api.session_codes = [400013]  # the group no longer exists
    await post(dingtalk, *callback(payload("text_group", **live_session(api_base(dingtalk)))))
    await until(lambda: sample(dingtalk.registry, "bot_dead_letters_total", platform="dingtalk") == 1)
    assert len(api.calls(SESSION_PATH)) == 1
    assert api.calls(GROUP_PATH) == []


async def test_replies_past_the_robots_rate_wait_in_the_queue_for_the_window_and_none_is_lost(
    start_platform: StartPlatform, api: DingTalkAPI
) -> None:
    # DingTalk's 20 a minute, with a 2 s window so the test does not take a minute.
    loop = await start_platform("dingtalk", lambda base: env(base) | {"DINGTALK_OUTBOUND_LIMIT": "20/2 seconds"}, api)
    session = live_session(api_base(loop), "busy-group")
    began = time.monotonic()
    answers = await asyncio.gather(*(
        post(loop, *callback(payload("text_group", msgId=f"burst-{n}", **session))) for n in range(25)
    ))
    assert [answer.status for answer in answers] == [200] * 25
    await until(lambda: attempts(loop, "delivered") == 25, timeout=10)
    sent = api.calls(SESSION_PATH)
    assert len(sent) == 25
    assert sum(1 for call in sent if call.at < began + 2.0) <= 20
    assert sample(loop.registry, "bot_outbound_shaped_total", platform="dingtalk") >= 5
    # Held back is not failed: no attempt spent, nothing buried.
    assert attempts(loop, "retry") == attempts(loop, "failed") == 0
    assert sample(loop.registry, "bot_dead_letters_total", platform="dingtalk") == 0


async def test_each_conversation_of_the_robot_has_its_own_budget(
    start_platform: StartPlatform, api: DingTalkAPI
) -> None:
    loop = await start_platform("dingtalk", lambda base: env(base) | {"DINGTALK_OUTBOUND_LIMIT": "1/minute"}, api)

    async def say(message_id: str, conversation: str) -> None:
        body = payload("text_group", msgId=message_id, conversationId=conversation,
                       **live_session(api_base(loop), conversation))
        assert (await post(loop, *callback(body))).status == 200

    await say("first-in-a", "cid-a")
    await say("first-in-b", "cid-b")
    await until(lambda: attempts(loop, "delivered") == 2)
    assert sample(loop.registry, "bot_outbound_shaped_total", platform="dingtalk") == 0
    await say("second-in-a", "cid-a")
    await until(lambda: sample(loop.registry, "bot_outbound_shaped_total", platform="dingtalk") >= 1)
    assert attempts(loop, "delivered") == 2
    assert len(api.calls(SESSION_PATH)) == 2
