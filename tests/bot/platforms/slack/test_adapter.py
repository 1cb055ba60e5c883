"""Slack end to end: slack-sdk-signed events in, a 200 ACK out, the reply through chat.postMessage."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import orjson
import pytest
from aiohttp import web

from bot.messages import InboundMessage, Reply
from bot.platforms.base import DeliveryFailed
from bot.platforms.slack import plugin
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
from tests.bot.platforms.slack.conftest import BOT_TOKEN, POST_MESSAGE, SECRETS, env, recorded, signed
from tests.support.fake_platform import FakePlatformAPI

ANSWER = "[built-in responder] turn 1: you said: "


async def post(slack: PlatformLoop, body: bytes, **headers: str) -> Any:
    return await slack.client.post("/slack/events", data=body, headers={**signed(body), **headers})


def delivered(slack: PlatformLoop) -> float:
    return sample(slack.registry, "bot_delivery_attempts_total", platform="slack", outcome="delivered")


async def test_url_verification_echoes_the_challenge(slack: PlatformLoop) -> None:
    resp = await post(slack, recorded("url_verification.json"))
    assert resp.status == 200
    assert await resp.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert slack.api.requests == []


async def test_a_direct_message_is_acked_and_answered_with_the_bot_token(
    slack: PlatformLoop, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    started = time.perf_counter()
    resp = await post(slack, recorded("message_im.json"))
    assert resp.status == 200 and await resp.read() == b""
    assert time.perf_counter() - started < 3.0  # Slack's ACK deadline
    [sent] = await slack.api.wait_for(POST_MESSAGE)
    assert sent.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    # A top-level direct message is answered in the conversation, not in a thread.
    assert sent.json() == {"channel": "D024BE91L", "text": ANSWER + "hello"}
    await until(lambda: delivered(slack) == 1)
    assert_nothing_leaks(SECRETS, caplog, slack.metrics_text())


async def test_a_mention_is_answered_in_its_thread_without_the_mention(slack: PlatformLoop) -> None:
    await post(slack, recorded("app_mention.json"))
    [sent] = await slack.api.wait_for(POST_MESSAGE)
    assert sent.json() == {
        "channel": "C0LAN2Q65", "thread_ts": "1515449522.000016",
        "text": ANSWER + "is it everything a river should be?",
    }


async def test_a_reply_inside_a_thread_stays_in_that_thread(slack: PlatformLoop) -> None:
    await post(slack, recorded("message_im.json", ts="1355517600.000001", thread_ts="1355517523.000005"))
    [sent] = await slack.api.wait_for(POST_MESSAGE)
    assert sent.json()["thread_ts"] == "1355517523.000005"


async def test_a_mention_delivered_as_app_mention_and_as_message_is_answered_once(slack: PlatformLoop) -> None:
    # Subscribed to both, Slack sends one channel message twice, under two event ids.
    first, second = await asyncio.gather(post(slack, recorded("app_mention.json")),
                                         post(slack, recorded("message_channel_mention.json")))
    assert first.status == second.status == 200
    await post(slack, recorded("message_im.json"))
    await slack.api.wait_for(POST_MESSAGE, count=2)
    await until(lambda: slack.duplicates() == 1)
    assert [c.json()["channel"] for c in slack.api.calls(POST_MESSAGE)] == ["C0LAN2Q65", "D024BE91L"]


async def test_the_same_event_three_times_two_concurrently_is_answered_once(slack: PlatformLoop) -> None:
    body = recorded("message_im.json", text="dup")

    async def retry() -> Any:  # Slack's retries are re-signed and say which retry they are
        return await post(slack, body, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})

    async def other() -> Any:
        return await post(slack, recorded("message_im.json", text="other", ts="1355517999.000001",
                                          event_id="Ev0OTHER"))

    replies = await assert_answered_once(slack, POST_MESSAGE, retry, other)
    assert [r["text"].rsplit(": ", 1)[1] for r in replies] == ["dup", "other"]


@pytest.mark.parametrize("name", ["bot_message.json", "message_changed.json", "reaction_added.json"])
async def test_our_own_messages_edits_and_other_events_are_acked_and_ignored(slack: PlatformLoop, name: str) -> None:
    resp = await post(slack, recorded(name))
    assert resp.status == 200
    await post(slack, recorded("message_im.json", text="after"))
    [sent] = await slack.api.wait_for(POST_MESSAGE)
    assert sent.json()["text"] == ANSWER + "after"


@pytest.mark.parametrize("event_type", [{"a": 1}, ["message"], None, 7])
async def test_an_event_whose_type_is_not_a_string_is_acked_and_ignored(slack: PlatformLoop, event_type: Any) -> None:
    resp = await post(slack, recorded("message_im.json", type=event_type))
    assert resp.status == 200
    await post(slack, recorded("message_im.json", text="after", event_id="Ev0AFTER", ts="1355517999.000002"))
    [sent] = await slack.api.wait_for(POST_MESSAGE)
    assert sent.json()["text"] == ANSWER + "after"


@pytest.mark.parametrize(
    ("answer", "status"),
    [({"ok": False, "error": "ratelimited"}, 200), ({"ok": False, "error": "ratelimited"}, 429),
     ({"ok": False, "error": "service_unavailable"}, 200)],
    ids=["ratelimited-in-body", "http-429", "service-unavailable"],
)
async def test_try_later_answers_are_retried(
    slack: PlatformLoop, post_message: Script, answer: dict[str, Any], status: int
) -> None:
    post_message.then(answer, status)
    await post(slack, recorded("message_im.json"))
    await slack.api.wait_for(POST_MESSAGE, count=2)
    await until(lambda: delivered(slack) == 1)


@pytest.mark.parametrize("error", ["channel_not_found", "invalid_auth"])
async def test_other_errors_go_to_the_dead_letters_at_once(
    slack: PlatformLoop, post_message: Script, caplog: pytest.LogCaptureFixture, error: str
) -> None:
    capture_everything(caplog)
    post_message.default = {"ok": False, "error": error}
    await post(slack, recorded("message_im.json"))
    await until(lambda: sample(slack.registry, "bot_dead_letters_total", platform="slack") == 1)
    assert len(slack.api.calls(POST_MESSAGE)) == 1
    assert any(error in r.getMessage() for r in caplog.records)
    assert_nothing_leaks(SECRETS, caplog, slack.metrics_text())


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


GOOD = recorded("message_im.json")


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (GOOD, lambda b: {**signed(b), "X-Slack-Signature": "v0=" + "0" * 64}, 401, "bad_signature"),
        (GOOD, lambda b: _without(signed(b), "X-Slack-Signature"), 401, "bad_signature"),
        (GOOD, lambda b: {**signed(GOOD), "X-Slack-Request-Timestamp": str(int(time.time()) - 1)}, 401,
         "bad_signature"),
        (GOOD, lambda b: signed(b, timestamp=int(time.time()) - 301), 401, "stale_timestamp"),
        (GOOD, lambda b: signed(b, timestamp=int(time.time()) + 400), 401, "stale_timestamp"),
        (GOOD, lambda b: _without(signed(b), "X-Slack-Request-Timestamp"), 401, "stale_timestamp"),
        (b"{not json", signed, 400, "malformed"),
        (b"[1, 2]", signed, 400, "malformed"),
        (b'{"type": "event_callback", "event_id": "Ev1"}', signed, 400, "malformed"),
        (recorded("message_im.json", channel=None), signed, 400, "malformed"),
        (b'{"type": "url_verification"}', signed, 400, "malformed"),
    ],
    ids=["bad-signature", "no-signature", "timestamp-swapped", "stale", "future", "no-timestamp", "not-json",
         "not-an-object", "no-event", "no-channel", "no-challenge"],
)
async def test_bad_requests_are_refused_with_a_reason_and_nothing_leaks(
    slack: PlatformLoop, caplog: pytest.LogCaptureFixture, body: bytes, headers: Any, status: int, reason: str
) -> None:
    capture_everything(caplog)
    resp = await slack.client.post("/slack/events", data=body, headers=headers(body))
    await assert_rejected(slack, resp, status, reason)
    assert_nothing_leaks(SECRETS, caplog, await resp.text())
    assert slack.api.requests == []


async def test_an_oversized_body_is_refused(slack: PlatformLoop) -> None:
    body = orjson.dumps({"type": "event_callback", "padding": "x" * (1024 * 1024)})
    resp = await slack.client.post("/slack/events", data=io.BytesIO(body), headers=signed(body))
    await assert_rejected(slack, resp, 413, "too_large")


REPLY = Reply(InboundMessage("slack", "D1:1.0", "D1", "U1", "hi", 0.0, {"channel": "D1", "thread_ts": None}), "hello")


async def test_slacks_retry_after_is_honoured_and_the_token_stays_out_of_reasons(make_adapter: MakeAdapter) -> None:
    api = FakePlatformAPI()
    api.on("POST", POST_MESSAGE, lambda _request: web.json_response(
        {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "30"}))
    with pytest.raises(DeliveryFailed) as failure:
        await (await make_adapter(plugin, env, api)).send(REPLY)
    assert (failure.value.retryable, failure.value.retry_after) == (True, 30.0)
    with pytest.raises(DeliveryFailed) as unreachable:
        await (await make_adapter(plugin, env, None)).send(REPLY)
    assert unreachable.value.retryable and BOT_TOKEN not in unreachable.value.reason


# Streamed replies: posted early, chat.update as the model writes, one message in the end.

UPDATE = "/api/chat.update"


async def test_a_streamed_reply_is_posted_early_and_updated_into_the_whole_answer(
    start_platform: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.fake_model import FakeModel

    capture_everything(caplog)
    model = FakeModel(gate=asyncio.Event())
    model_url = str((await aiohttp_server(model.app())).make_url("/v1"))
    api = FakePlatformAPI()
    Script(api, "POST", POST_MESSAGE, {"ok": True, "channel": "D024BE91L", "ts": "1355517524.000007"})
    Script(api, "POST", UPDATE, {"ok": True, "channel": "D024BE91L", "ts": "1355517524.000007"})
    slack = await start_platform(
        "slack", lambda base: {**env(base), "SLACK_STREAM_REPLIES": "true", "MODEL_ENDPOINT": model_url}, api,
    )
    await post(slack, recorded("message_im.json"))
    [first] = await api.wait_for(POST_MESSAGE)
    assert first.json() == {"channel": "D024BE91L", "text": "model …"}
    assert model.streams_finished == 0
    assert model.gate is not None
    model.gate.set()
    await until(lambda: delivered(slack) == 1)
    final = api.calls(UPDATE)[-1]
    assert final.json() == {"channel": "D024BE91L", "ts": "1355517524.000007", "text": "model reply 1: hello"}
    assert final.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert len(api.calls(POST_MESSAGE)) == 1
    assert sample(slack.registry, "bot_first_token_seconds_count", platform="slack") == 1
    assert_nothing_leaks(SECRETS, caplog, slack.metrics_text())


async def test_streaming_stays_off_unless_asked_and_its_budgets_never_name_the_token(make_adapter: MakeAdapter) -> None:
    from bot.platforms.base import StreamedReplies

    message = InboundMessage("slack", "C:1", "C1", "U1", "hi", 0.0, {"channel": "C1", "thread_ts": None})
    off = await make_adapter(plugin, env, None)
    assert isinstance(off, StreamedReplies) and off.update_limits(message) is None
    on = await make_adapter(plugin, lambda base: {**env(base), "SLACK_STREAM_REPLIES": "true"}, None)
    assert isinstance(on, StreamedReplies)
    limits = on.update_limits(message)
    assert limits is not None and [rate for _, rate in limits] == ["1/second", "50/minute"]
    assert all(BOT_TOKEN not in key for key, _ in limits)


async def test_a_refused_update_is_a_failure_naming_slacks_error(make_adapter: MakeAdapter) -> None:
    from bot.platforms.base import StreamedReplies

    api = FakePlatformAPI()
    Script(api, "POST", UPDATE, {"ok": False, "error": "message_not_found"})
    adapter = await make_adapter(plugin, env, api)
    assert isinstance(adapter, StreamedReplies)
    reply = Reply(InboundMessage("slack", "C:1", "C1", "U1", "hi", 0.0, {"channel": "C1"}), "done")
    with pytest.raises(DeliveryFailed) as failure:
        await adapter.update_reply(reply, "1.2")
    assert failure.value.reason == "Slack chat.update failed: message_not_found" and not failure.value.retryable
