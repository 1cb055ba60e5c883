"""POST /qq/callback end to end: genuine signed callbacks in, op 12 back, one passive reply through the API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.bot.conftest import sample
from tests.bot.platforms.harness import (
    PlatformLoop,
    StartPlatform,
    assert_answered_once,
    assert_nothing_leaks,
    assert_rejected,
    capture_everything,
    until,
)
from tests.bot.platforms.qq.fake_qq import (
    APP_ID,
    SECRET,
    TOKEN_PATH,
    QQOpenPlatform,
    encode,
    event,
    load,
    reply_path,
    signed_headers,
)

CALLBACK = "/qq/callback"
BUILT_IN = "[built-in responder] turn 1: you said: "
GROUP = "group_at_message_create.json"
C2C = "c2c_message_create.json"
GUILD = "at_message_create.json"


async def deliver(qq: PlatformLoop, payload: dict[str, Any], **sign: Any) -> Any:
    body = encode(payload)
    return await qq.client.post(CALLBACK, data=body, headers=signed_headers(body, **sign))


async def test_the_callback_url_validation_answers_with_the_official_vector(qq: PlatformLoop) -> None:
    vector = load("callback_validation.json")
    assert vector["secret"] == SECRET

    resp = await deliver(qq, vector["payload"])

    assert resp.status == 200
    assert await resp.json() == {"plain_token": vector["payload"]["d"]["plain_token"], "signature": vector["signature"]}
    assert qq.api.requests == []  # nothing queued, no token fetched


async def test_an_unsigned_validation_is_refused_so_the_bot_never_signs_for_strangers(qq: PlatformLoop) -> None:
    # Answering op 13 unchecked would sign any `event_ts + plain_token`, i.e. any timestamp + body.
    payload = {"op": 13, "d": {"plain_token": encode({"op": 0}).decode(), "event_ts": str(int(time.time()))}}
    resp = await qq.client.post(CALLBACK, data=encode(payload), headers={"Content-Type": "application/json"})
    await assert_rejected(qq, resp, 401, "bad_signature")


@pytest.mark.parametrize(
    ("name", "expected_text", "guild"),
    [
        (GROUP, "今天天气怎么样", False),
        (C2C, "hello bot", False),
        # The bot's own mention is removed; a mention of a person stays for the model to see.
        (GUILD, "ask <@!9744032156209467999> about lunch", True),
    ],
)
async def test_a_message_is_acknowledged_with_op_12_and_answered_passively_with_a_qqbot_token(
    qq: PlatformLoop, qq_platform: QQOpenPlatform, registry: CollectorRegistry,
    name: str, expected_text: str, guild: bool,
) -> None:
    payload = event(name)

    resp = await deliver(qq, payload)

    assert resp.status == 200
    assert await resp.json() == {"op": 12}
    [token_call] = await qq.api.wait_for(TOKEN_PATH)
    assert token_call.json() == {"appId": APP_ID, "clientSecret": SECRET}
    [sent] = await qq.api.wait_for(reply_path(payload))
    assert sent.headers["Authorization"] == "QQBot access-1"
    assert sent.headers["X-Union-Appid"] == APP_ID
    if guild:
        assert sent.json() == {"content": BUILT_IN + expected_text, "msg_id": payload["d"]["id"]}
    else:
        assert sent.json() == {
            "content": BUILT_IN + expected_text, "msg_type": 0, "msg_id": payload["d"]["id"], "msg_seq": 1,
        }
    assert sample(registry, "bot_requests_total", platform="qq", route=CALLBACK, method="POST", status="200") == 1
    assert sample(registry, "bot_ack_duration_seconds_count", platform="qq") == 1
    await until(lambda: sample(registry, "bot_reply_duration_seconds_count", platform="qq") == 1)


async def test_one_token_serves_several_replies(qq: PlatformLoop, qq_platform: QQOpenPlatform) -> None:
    payloads = [event(GROUP, message_id=f"ROBOT1.0_many-{i}") for i in range(3)] + [event(C2C)]
    for resp in await asyncio.gather(*(deliver(qq, p) for p in payloads)):
        assert resp.status == 200

    await qq.api.wait_for(reply_path(payloads[0]), count=3)
    await qq.api.wait_for(reply_path(payloads[-1]))
    assert qq_platform.tokens_issued == 1
    assert {r.headers["Authorization"] for r in qq_platform.accepted} == {"QQBot access-1"}


async def test_the_same_event_three_times_two_concurrently_is_answered_once(qq: PlatformLoop) -> None:
    duplicate, other = event(GROUP), event(GROUP, message_id="ROBOT1.0_another-message")

    replies = await assert_answered_once(
        qq, reply_path(duplicate), lambda: deliver(qq, duplicate), lambda: deliver(qq, other)
    )

    assert [r["msg_id"] for r in replies] == [duplicate["d"]["id"], other["d"]["id"]]


async def test_events_the_bot_does_not_answer_are_acknowledged_and_dropped(qq: PlatformLoop) -> None:
    added = {"op": 0, "id": "GROUP_ADD_ROBOT:1", "s": 4, "t": "GROUP_ADD_ROBOT",
             "d": {"group_openid": "C9F778FE6ADF9D1D1DBE395BF744A33A", "op_member_openid": "E4F4", "timestamp": 1}}
    image_only = event(GROUP, message_id="ROBOT1.0_image-only", content=" ")
    bare_mention = event(GUILD, content="<@!11586990140073229091>")

    for payload in (added, image_only, bare_mention):
        resp = await deliver(qq, payload)
        assert resp.status == 200
        assert await resp.json() == {"op": 12}
    # A message that is answered afterwards proves the earlier ones were not merely slow.
    answered = event(C2C)
    await deliver(qq, answered)
    await qq.api.wait_for(reply_path(answered))
    assert [r.path for r in qq.api.requests if r.path != TOKEN_PATH] == [reply_path(answered)]


async def test_an_http_heartbeat_is_answered_with_its_seq(qq: PlatformLoop) -> None:
    resp = await deliver(qq, {"op": 1, "d": 41})
    assert await resp.json() == {"op": 11, "d": 41}


def _stale() -> tuple[bytes, dict[str, str]]:
    body = encode(event(GROUP))
    return body, signed_headers(body, timestamp=str(int(time.time()) - 301))


def _future() -> tuple[bytes, dict[str, str]]:
    body = encode(event(GROUP))
    return body, signed_headers(body, timestamp=str(int(time.time()) + 301))


def _other_secret() -> tuple[bytes, dict[str, str]]:
    body = encode(event(GROUP))
    return body, signed_headers(body, secret="another-bots-secret")


def _tampered() -> tuple[bytes, dict[str, str]]:
    body = encode(event(GROUP))
    return body.replace("今天".encode(), "明天".encode()), signed_headers(body)


def _without(header: str) -> Callable[[], tuple[bytes, dict[str, str]]]:
    def build() -> tuple[bytes, dict[str, str]]:
        body = encode(event(GROUP))
        headers = signed_headers(body)
        del headers[header]
        return body, headers
    return build


def _signature(mutate: Callable[[bytes], str]) -> Callable[[], tuple[bytes, dict[str, str]]]:
    def build() -> tuple[bytes, dict[str, str]]:
        body = encode(event(GROUP))
        headers = signed_headers(body)
        headers["X-Signature-Ed25519"] = mutate(bytes.fromhex(headers["X-Signature-Ed25519"]))
        return body, headers
    return build


def _signed(body: bytes, **sign: Any) -> Callable[[], tuple[bytes, dict[str, str]]]:
    return lambda: (body, signed_headers(body, **sign))


@pytest.mark.parametrize(
    ("build", "status", "reason"),
    [
        pytest.param(_stale, 401, "stale_timestamp", id="timestamp-too-old"),
        pytest.param(_future, 401, "stale_timestamp", id="timestamp-too-new"),
        pytest.param(_other_secret, 401, "bad_signature", id="another-secret"),
        pytest.param(_tampered, 401, "bad_signature", id="body-changed"),
        pytest.param(_without("X-Signature-Ed25519"), 401, "bad_signature", id="no-signature"),
        pytest.param(_without("X-Signature-Timestamp"), 401, "bad_signature", id="no-timestamp"),
        pytest.param(_signature(lambda s: s.hex()[:-2]), 401, "bad_signature", id="63-bytes"),
        pytest.param(_signature(lambda s: (s[:63] + bytes([s[63] | 0xE0])).hex()), 401, "bad_signature",
                     id="high-bits-set"),
        pytest.param(_signature(lambda s: "not hex"), 401, "bad_signature", id="not-hex"),
        pytest.param(_signed(encode(event(GROUP)), app_id="999999"), 401, "bad_token", id="other-app-id"),
        pytest.param(_signed(b"{not json"), 400, "malformed", id="not-json"),
        pytest.param(_signed(b"[1, 2]"), 400, "malformed", id="not-an-object"),
        pytest.param(_signed(encode({"d": {}})), 400, "malformed", id="no-op"),
        pytest.param(_signed(encode({"op": 13, "d": {"event_ts": "1725442341"}})), 400, "malformed",
                     id="validation-without-token"),
        pytest.param(_signed(encode({**event(GROUP), "d": {**event(GROUP)["d"], "group_openid": None}})), 400,
                     "malformed", id="group-event-without-group"),
        pytest.param(_signed(encode({**event(C2C), "d": {"id": "x", "content": "hi"}})), 400, "malformed",
                     id="c2c-event-without-author"),
        pytest.param(_signed(encode({**event(GUILD), "d": "text"})), 400, "malformed", id="d-not-an-object"),
    ],
)
async def test_a_refused_callback_is_a_4xx_json_error_counted_by_reason_and_never_answered(
    qq: PlatformLoop, caplog: pytest.LogCaptureFixture,
    build: Callable[[], tuple[bytes, dict[str, str]]], status: int, reason: str,
) -> None:
    capture_everything(caplog)
    body, headers = build()

    resp = await qq.client.post(CALLBACK, data=body, headers=headers)

    await assert_rejected(qq, resp, status, reason)
    assert sum(1 for line in qq.metrics_text().splitlines()
               if line.startswith("bot_webhook_rejected_total{") and 'platform="qq"' in line) == 1
    assert_nothing_leaks([SECRET], caplog, await resp.text())
    # A genuine event afterwards is answered, and it is the only thing sent.
    answered = event(C2C)
    await deliver(qq, answered)
    await qq.api.wait_for(reply_path(answered))
    assert [r.path for r in qq.api.requests if r.path != TOKEN_PATH] == [reply_path(answered)]


async def test_sources_outside_the_allow_list_are_refused(
    start_platform: StartPlatform, qq_platform: QQOpenPlatform
) -> None:
    qq = await start_platform("qq", lambda base: qq_platform.env(base, QQ_ALLOWED_IPS="203.0.113.0/24"),
                              qq_platform.api)
    refused = await deliver(qq, event(GROUP))
    await assert_rejected(qq, refused, 403, "ip_denied")
    # Behind the trusted proxy (loopback), the forwarded client address is the one checked.
    body = encode(event(GROUP))
    forwarded = {**signed_headers(body), "X-Forwarded-For": "203.0.113.7"}
    allowed = await qq.client.post(CALLBACK, data=body, headers=forwarded)
    assert allowed.status == 200


async def test_an_oversized_callback_is_refused(start_platform: StartPlatform, qq_platform: QQOpenPlatform) -> None:
    qq = await start_platform("qq", lambda base: qq_platform.env(base, BOT_MAX_BODY_BYTES="1024"), qq_platform.api)
    resp = await deliver(qq, event(GROUP, content=" " + "长" * 2000))
    await assert_rejected(qq, resp, 413, "too_large")


async def test_no_secret_or_token_reaches_the_logs_of_a_full_exchange(
    qq: PlatformLoop, qq_platform: QQOpenPlatform, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    texts = []
    for payload in (load("callback_validation.json")["payload"], event(GROUP)):
        texts.append(await (await deliver(qq, payload)).text())
    texts.append(await (await deliver(qq, event(C2C), secret="wrong-secret")).text())
    await qq.api.wait_for(reply_path(event(GROUP)))
    await until(lambda: any("reply delivered" in r.getMessage() for r in caplog.records))

    assert_nothing_leaks([SECRET, "access-1"], caplog, *texts)
