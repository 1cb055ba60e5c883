"""Streamed answers end to end with real processes: the chat API through `python -m sidecar`, Telegram replies
edited as the model writes, and a crash mid-stream that ends with one complete reply (Telegram, Feishu and
DingTalk cards)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.bot.platforms.dingtalk.cards import CREATE_AND_DELIVER_PATH
from tests.bot.platforms.dingtalk.conftest import (
    CARD_TEMPLATE,
    SESSION_PATH,
    DingTalkAPI,
    callback,
    live_session,
    payload,
)
from tests.bot.platforms.dingtalk.conftest import env as dingtalk_env
from tests.bot.platforms.feishu import conftest as feishu
from tests.support.bots import (
    TELEGRAM_HEADERS,
    TELEGRAM_SEND,
    TELEGRAM_WEBHOOK,
    BotProcesses,
    eventually,
    metric,
    telegram_update,
)
from tests.support.fake_model import FakeModel
from tests.support.fake_platform import FakePlatformAPI, Recorded
from tests.support.ports import free_port
from tests.support.processes import Process, python_module
from tests.support.sse import events


@pytest.fixture
async def through_sidecar(
    bots: BotProcesses, aiohttp_server: Any, tmp_path: Path
) -> AsyncIterator[tuple[FakeModel, str, str, str]]:
    """A gated streaming model, a bot using it, and a sidecar in front: (model, sidecar, admin, bot) URLs."""
    model = FakeModel(gate=asyncio.Event())
    model_server = await aiohttp_server(model.app())
    _, bot = await bots.start({"MODEL_ENDPOINT": str(model_server.make_url("/v1")), "MODEL_MAX_RETRIES": "0"})
    port, admin = free_port(), free_port()
    sidecar = Process("sidecar", python_module("sidecar"), {
        "SIDECAR_PORT": str(port), "SIDECAR_ADMIN_PORT": str(admin), "SIDECAR_UPSTREAM": bot,
        "SIDECAR_RATE_LIMITS": "",
    }, tmp_path)
    try:
        await asyncio.to_thread(sidecar.wait_http, f"http://127.0.0.1:{admin}/sidecar/ready")
        yield model, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", bot
    finally:
        await asyncio.to_thread(sidecar.stop)
    assert "Traceback" not in sidecar.output()


async def test_the_first_event_passes_the_sidecar_before_the_model_has_finished(
    through_sidecar: tuple[FakeModel, str, str, str]
) -> None:
    model, sidecar, admin, bot = through_sidecar
    assert model.gate is not None
    async with aiohttp.ClientSession() as http:
        resp = await http.post(sidecar + "/api/v1/chat", json={"message": "streams well", "stream": True})
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        stream = events(resp)
        first = await asyncio.wait_for(anext(stream), 10)
        # The model is held after its first chunk: this event cannot have waited for the whole answer.
        assert first == ("delta", {"text": "model"})
        assert model.streams_finished == 0
        model.gate.set()
        rest = [event async for event in stream]
        resp.release()
        assert rest[-1][0] == "done"
        reply = rest[-1][1]["reply"]
        assert reply == "model reply 1: streams well" == "model" + "".join(d["text"] for n, d in rest if n == "delta")
        assert rest[-1][1]["request_id"] == resp.headers["X-Request-ID"]
        assert model.streams_finished == 1

        # Counted once on each side, as one successful request.
        async def counted() -> bool:
            return await metric(http, admin, "sidecar_requests_total", route="/api/v1/chat") == 1

        await eventually(counted, what="the sidecar counting the streamed response")
        assert await metric(http, admin, "sidecar_requests_total", route="/api/v1/chat", status="200") == 1
        assert await metric(http, bot, "bot_requests_total", route="/api/v1/chat", status="200") == 1
        assert await metric(http, bot, "bot_first_token_seconds_count", platform="api") == 1
        assert await metric(http, bot, "bot_model_first_token_seconds_count", backend="openai_compat") == 1


async def test_a_model_failing_mid_answer_reaches_the_client_as_an_error_event(
    through_sidecar: tuple[FakeModel, str, str, str]
) -> None:
    model, sidecar, _, _ = through_sidecar
    assert model.gate is not None
    model.gate.set()
    model.stream_faults = ["cut"]
    async with aiohttp.ClientSession() as http:
        resp = await http.post(sidecar + "/api/v1/chat", json={"message": "x", "stream": True})
        received = [event async for event in events(resp)]
    assert received[0] == ("delta", {"text": "model"})
    assert received[-1][0] == "error" and received[-1][1]["error"]["code"] == "model_unavailable"


TELEGRAM_EDIT = TELEGRAM_SEND.replace("sendMessage", "editMessageText")


async def telegram_with_edits(aiohttp_server: Any) -> tuple[FakePlatformAPI, str]:
    """A Telegram Bot API stand-in: sendMessage answers message_id 77, editMessageText succeeds."""
    api = FakePlatformAPI()
    api.on("POST", TELEGRAM_SEND, {"ok": True, "result": {"message_id": 77, "chat": {"id": 9}}})
    api.on("POST", TELEGRAM_EDIT, {"ok": True, "result": True})
    server = await aiohttp_server(api.app())
    return api, str(server.make_url("")).rstrip("/")


async def final_edit(api: FakePlatformAPI, text: str) -> Recorded:
    for _ in range(200):
        done = [call for call in api.calls(TELEGRAM_EDIT) if call.json()["text"] == text]
        if done:
            return done[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no edit to {text!r}; edits: {[c.json()['text'] for c in api.calls(TELEGRAM_EDIT)]}")


async def test_a_telegram_reply_is_sent_early_and_edited_into_the_whole_answer(
    bots: BotProcesses, aiohttp_server: Any
) -> None:
    api, api_url = await telegram_with_edits(aiohttp_server)
    model = FakeModel(gate=asyncio.Event())
    model_server = await aiohttp_server(model.app())
    _, base = await bots.start({
        "TELEGRAM_API_BASE": api_url, "MODEL_ENDPOINT": str(model_server.make_url("/v1")),
        "TELEGRAM_STREAM_REPLIES": "true",
    })
    async with aiohttp.ClientSession(headers=TELEGRAM_HEADERS) as http:
        async with http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(9001, "tell me more", 9)) as resp:
            assert resp.status == 200
        first = (await api.wait_for(TELEGRAM_SEND))[0].json()
        # The first words are on the user's screen while the model is still held mid-answer.
        assert first["text"] == "model …" and first["chat_id"] == 9
        assert model.streams_finished == 0
        assert model.gate is not None
        model.gate.set()
        last = (await final_edit(api, "model reply 1: tell me more")).json()
        assert (last["chat_id"], last["message_id"]) == (9, 77)
        assert len(api.calls(TELEGRAM_SEND)) == 1, "one message, edited; never a second one"

        async def delivered() -> bool:
            return await metric(http, base, "bot_delivery_attempts_total", outcome="delivered") == 1

        await eventually(delivered, what="the reply counted as delivered")
        assert await metric(http, base, "bot_first_token_seconds_count", platform="telegram") == 1
        assert await metric(http, base, "bot_reply_duration_seconds_count", platform="telegram") == 1


async def test_with_streaming_off_telegram_gets_the_whole_reply_in_one_message(
    bots: BotProcesses, aiohttp_server: Any
) -> None:
    api, api_url = await telegram_with_edits(aiohttp_server)
    model = FakeModel()
    model_server = await aiohttp_server(model.app())
    _, base = await bots.start({"TELEGRAM_API_BASE": api_url, "MODEL_ENDPOINT": str(model_server.make_url("/v1"))})
    async with aiohttp.ClientSession(headers=TELEGRAM_HEADERS) as http:
        async with http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(9002, "all at once", 9)) as resp:
            assert resp.status == 200
        sent = await api.wait_for(TELEGRAM_SEND)
    assert sent[0].json()["text"] == "model reply 1: all at once"
    assert api.calls(TELEGRAM_EDIT) == [] and "stream" not in model.requests[0]


@dataclass
class StreamedPlatform:
    """One platform's streamed replies against its stand-in, as the crash test drives and reads them."""

    env: dict[str, str]
    ask: Callable[[aiohttp.ClientSession, str, str], Awaitable[None]]  # (http, bot base, text)
    first_text: Callable[[], Awaitable[str]]  # what the user sees first, once it is there
    finished: Callable[[str], Awaitable[None]]  # until the one message reads `text`, finished
    messages: Callable[[], int]  # messages (or cards) the user got


async def telegram_streaming(aiohttp_server: Any) -> StreamedPlatform:
    api, api_url = await telegram_with_edits(aiohttp_server)

    async def ask(http: aiohttp.ClientSession, base: str, text: str) -> None:
        async with http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(9003, text, 9),
                             headers=TELEGRAM_HEADERS) as resp:
            assert resp.status == 200

    async def first_text() -> str:
        return str((await api.wait_for(TELEGRAM_SEND))[0].json()["text"])

    async def finished(text: str) -> None:
        assert (await final_edit(api, text)).json()["message_id"] == 77

    return StreamedPlatform({"TELEGRAM_API_BASE": api_url, "TELEGRAM_STREAM_REPLIES": "true"}, ask, first_text,
                            finished, lambda: len(api.calls(TELEGRAM_SEND)))


async def dingtalk_streaming(aiohttp_server: Any) -> StreamedPlatform:
    api = DingTalkAPI()
    api_url = str((await aiohttp_server(api.app())).make_url("")).rstrip("/")

    async def ask(http: aiohttp.ClientSession, base: str, text: str) -> None:
        body, headers = callback(payload("text_group", **live_session(api_url), text={"content": text}))
        async with http.post(base + "/dingtalk/callback", data=body, headers=headers) as resp:
            assert resp.status == 200

    async def first_text() -> str:
        return str((await api.wait_for(CREATE_AND_DELIVER_PATH))[0].json()["cardData"]["cardParamMap"]["content"])

    async def finished(text: str) -> None:
        async def done() -> bool:
            return bool(api.cards.cards) and api.cards.only().finalized

        await eventually(done, timeout=15, what="the card finalized")
        assert api.cards.only().params["content"] == text

    return StreamedPlatform(
        dingtalk_env(api_url) | {"DINGTALK_STREAM_REPLIES": "true", "DINGTALK_CARD_TEMPLATE_ID": CARD_TEMPLATE},
        ask, first_text, finished,
        lambda: len(api.calls(CREATE_AND_DELIVER_PATH)) + len(api.calls(SESSION_PATH)),
    )


async def feishu_streaming(aiohttp_server: Any) -> StreamedPlatform:
    """Feishu's Open Platform stand-in: the reply with a card, and card updates (PATCH) checked as Feishu does."""
    api = feishu.FeishuAPI()
    api.expect_reply("om_question")
    api_url = str((await aiohttp_server(api.app(), access_log=None)).make_url("")).rstrip("/")
    replies = feishu.reply_path("om_question")

    async def ask(http: aiohttp.ClientSession, base: str, text: str) -> None:
        body, headers = feishu.encrypted_callback(feishu.text_event("ev-crash", text, message_id="om_question"))
        async with http.post(base + "/feishu/event", data=body, headers=headers) as resp:
            assert resp.status == 200

    async def first_text() -> str:
        return feishu.card_text((await api.wait_for(replies))[0].json()["content"])

    async def finished(text: str) -> None:
        async def done() -> bool:
            return any(feishu.card_text(sent.content) == text for sent in api.sent.values())

        await eventually(done, timeout=15, what="the card reading the whole answer")
        assert {call.path for call in api.requests if call.method == "PATCH"} == set(map(feishu.message_path, api.sent))

    return StreamedPlatform(feishu.env(api_url) | {"FEISHU_STREAM_REPLIES": "true"}, ask, first_text, finished,
                            lambda: len(api.sent))


@pytest.mark.parametrize("platform", [telegram_streaming, feishu_streaming, dingtalk_streaming])
async def test_a_crash_mid_stream_ends_with_one_complete_reply_not_two(
    bots: BotProcesses, aiohttp_server: Any, platform: Callable[[Any], Awaitable[StreamedPlatform]]
) -> None:
    streamed = await platform(aiohttp_server)
    model = FakeModel(gate=asyncio.Event())
    model_server = await aiohttp_server(model.app())
    env = {**streamed.env, "MODEL_ENDPOINT": str(model_server.make_url("/v1")), "MODEL_MAX_RETRIES": "0"}
    first_bot, base = await bots.start(env, name="crashing")
    async with aiohttp.ClientSession() as http:
        await streamed.ask(http, base, "survive this")
        assert await streamed.first_text() == "model …"

        async def recorded() -> bool:  # the first words are counted once the queue holds their message's id
            return await metric(http, base, "bot_first_token_seconds_count") >= 1

        await eventually(recorded, what="the streamed message recorded with its job")
    # Killed mid-answer: the message on the user's screen is half written, the job still queued.
    await asyncio.to_thread(first_bot.kill)
    assert model.gate is not None
    model.gate.set()
    await bots.start(env, name="crashing")  # the same queue file: the restarted process takes the job over
    await streamed.finished("model reply 1: survive this")
    assert streamed.messages() == 1, "the retry finished the streamed message instead of sending another"
