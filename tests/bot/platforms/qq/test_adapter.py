"""The QQ adapter's payloads against qq-botpy's own message classes and API calls, and idempotent re-sends."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from botpy.api import BotAPI
from botpy.message import C2CMessage, GroupMessage, Message

from bot.keys import adapters_key
from bot.messages import InboundMessage, Reply
from bot.platforms.base import Decoded, DeliveryFailed, PlatformDeps, WebhookRequest
from bot.platforms.qq import plugin
from bot.platforms.qq.adapter import QQAdapter, strip_bot_mentions
from tests.bot.platforms.harness import PlatformLoop
from tests.bot.platforms.qq.fake_qq import APP_ID, SECRET, QQOpenPlatform, encode, event, reply_path, signed_headers


class RecordingHttp:
    """Stands in for botpy's HTTP client: keeps the route and JSON botpy would send."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def request(self, route: Any, **kwargs: Any) -> dict[str, Any]:
        # botpy's body is its call's locals: drop the unset ones and those that went into the path.
        payload = {k: v for k, v in kwargs["json"].items() if v is not None and k not in route.parameters}
        self.calls.append((route.method, urlsplit(route.url).path, payload))
        return {}


@pytest.fixture
async def adapter() -> AsyncIterator[QQAdapter]:
    settings = plugin.load_settings({"QQ_APP_ID": APP_ID, "QQ_APP_SECRET": SECRET})

    async def submit(platform: str, messages: Any) -> int:
        return len(messages)

    async with aiohttp.ClientSession() as http:
        yield QQAdapter(settings, PlatformDeps(http=http, max_skew_seconds=300, clock=time.time, submit=submit))


def decode(adapter: QQAdapter, payload: dict[str, Any]) -> Decoded:
    body = encode(payload)
    request = WebhookRequest("POST", "/qq/callback", "", {}, signed_headers(body), body, "127.0.0.1", time.time())
    adapter.verify(request)
    return adapter.decode(request)


def only_message(decoded: Decoded) -> InboundMessage:
    assert decoded.kind == "message"
    [message] = decoded.messages
    return message


def test_a_group_message_reads_as_botpy_reads_it(adapter: QQAdapter) -> None:
    payload = event("group_at_message_create.json")
    oracle = GroupMessage(None, payload["id"], payload["d"])  # type: ignore[arg-type]

    message = only_message(decode(adapter, payload))

    assert message.message_id == oracle.id
    assert message.chat_id == oracle.group_openid
    assert message.user_id == oracle.author.member_openid
    assert message.text == oracle.content.strip()


def test_a_c2c_message_reads_as_botpy_reads_it(adapter: QQAdapter) -> None:
    payload = event("c2c_message_create.json")
    oracle = C2CMessage(None, payload["id"], payload["d"])  # type: ignore[arg-type]

    message = only_message(decode(adapter, payload))

    assert message.message_id == oracle.id
    assert message.chat_id == message.user_id == oracle.author.user_openid
    assert message.text == oracle.content.strip()


def test_a_guild_at_message_reads_as_botpy_reads_it_without_the_bot_mention(adapter: QQAdapter) -> None:
    payload = event("at_message_create.json")
    oracle = Message(None, payload["id"], payload["d"])  # type: ignore[arg-type]
    [bot] = [m for m in oracle.mentions if m.bot]

    message = only_message(decode(adapter, payload))

    assert message.message_id == oracle.id
    assert message.chat_id == oracle.channel_id
    assert message.user_id == oracle.author.id
    assert message.text == oracle.content.replace(f"<@!{bot.id}>", "").strip()


@pytest.mark.parametrize(
    ("content", "mentions", "expected"),
    [
        ("<@!42> hi <@!7>", [{"id": "42", "bot": True}, {"id": "7", "bot": False}], " hi <@!7>"),
        ("<@42> hi", [{"id": "42", "bot": True}], " hi"),
        (" <@!42> hi <@!7>", None, " hi <@!7>"),
        ("hi <@!7>", None, "hi <@!7>"),
    ],
)
def test_only_the_bots_mention_is_removed(content: str, mentions: Any, expected: str) -> None:
    assert strip_bot_mentions(content, mentions) == expected


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("group_at_message_create.json",
         lambda api, d, text: api.post_group_message(group_openid=d["group_openid"], msg_type=0, content=text,
                                                     msg_id=d["id"], msg_seq=1)),
        ("c2c_message_create.json",
         lambda api, d, text: api.post_c2c_message(openid=d["author"]["user_openid"], msg_type=0, content=text,
                                                   msg_id=d["id"], msg_seq=1)),
        ("at_message_create.json",
         lambda api, d, text: api.post_message(channel_id=d["channel_id"], content=text, msg_id=d["id"])),
    ],
)
async def test_a_reply_goes_where_and_as_botpy_would_send_it(adapter: QQAdapter, name: str, call: Any) -> None:
    payload = event(name)
    reply = Reply(only_message(decode(adapter, payload)), "the answer")
    recorder = RecordingHttp()

    await call(BotAPI(recorder), payload["d"], "the answer")  # type: ignore[arg-type]

    [(method, path, body)] = recorder.calls
    assert method == "POST"
    assert path == reply_path(payload)
    assert adapter.format(reply) == body


async def test_a_resend_after_a_crash_reuses_msg_seq_and_counts_the_platforms_refusal_as_delivered(
    qq: PlatformLoop, qq_platform: QQOpenPlatform
) -> None:
    adapter = qq.client.app[adapters_key]["qq"]
    payload = event("group_at_message_create.json")
    reply = Reply(only_message(decode(adapter, payload)), "the answer")

    await adapter.send(reply)
    # The process died before recording the delivery: the worker sends the same reply again.
    await adapter.send(reply)

    first, second = qq.api.calls(reply_path(payload))
    assert first.json() == second.json()
    assert first.json()["msg_seq"] == 1
    assert len(qq_platform.accepted) == 1


async def test_a_reply_the_platform_refuses_for_another_reason_is_not_retried(qq: PlatformLoop) -> None:
    adapter = qq.client.app[adapters_key]["qq"]
    payload = event("c2c_message_create.json")
    qq.api.on("POST", reply_path(payload), lambda _r: web.json_response(
        {"message": "passive reply window has passed", "code": 40034024}, status=400))

    with pytest.raises(DeliveryFailed) as refused:
        await adapter.send(Reply(only_message(decode(adapter, payload)), "late"))

    assert not refused.value.retryable
    assert "40034024" in refused.value.reason


async def test_a_reply_without_a_usable_handle_is_refused_without_a_request(adapter: QQAdapter) -> None:
    message = InboundMessage("qq", "m-1", "c", "u", "text", time.time(), reply_handle={"kind": "fax", "target": "x"})
    with pytest.raises(DeliveryFailed) as refused:
        await adapter.send(Reply(message, "answer"))
    assert not refused.value.retryable
