"""Streamed answers end to end with real processes: the chat API through `python -m sidecar`, and Telegram and
Feishu replies edited as the model writes, a crash mid-stream included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

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
class EditablePlatform:
    """A platform whose messages can be edited, stood in for: how to ask the bot, and what it sent."""

    env: dict[str, str]
    ask: Callable[[str, str], Awaitable[None]]  # (bot base URL, text): the user's message, posted as the platform does
    sent: Callable[[], list[str]]  # texts of the new messages, in order
    edits: Callable[[], list[tuple[str, str]]]  # (message id, text) of every edit, in order


async def telegram_platform(aiohttp_server: Any) -> EditablePlatform:
    api, api_url = await telegram_with_edits(aiohttp_server)

    async def ask(base: str, text: str) -> None:
        async with aiohttp.ClientSession(headers=TELEGRAM_HEADERS) as http, \
                http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(9003, text, 9)) as resp:
            assert resp.status == 200

    return EditablePlatform(
        {"TELEGRAM_API_BASE": api_url, "TELEGRAM_STREAM_REPLIES": "true"}, ask,
        lambda: [call.json()["text"] for call in api.calls(TELEGRAM_SEND)],
        lambda: [(str(call.json()["message_id"]), call.json()["text"]) for call in api.calls(TELEGRAM_EDIT)],
    )


async def feishu_platform(aiohttp_server: Any) -> EditablePlatform:
    """Feishu's Open Platform stand-in: the reply with a card, and card updates (PATCH) checked as Feishu does."""
    api = feishu.FeishuAPI()
    api.expect_reply("om_question")
    api_url = str((await aiohttp_server(api.app(), access_log=None)).make_url("")).rstrip("/")

    async def ask(base: str, text: str) -> None:
        body, headers = feishu.encrypted_callback(feishu.text_event("ev-crash", text, message_id="om_question"))
        async with aiohttp.ClientSession() as http, http.post(base + "/feishu/event", data=body,
                                                              headers=headers) as resp:
            assert resp.status == 200

    return EditablePlatform(
        feishu.env(api_url) | {"FEISHU_STREAM_REPLIES": "true"}, ask,
        lambda: [feishu.card_text(call.json()["content"]) for call in api.calls(feishu.reply_path("om_question"))],
        lambda: [(call.path.rsplit("/", 1)[1], feishu.card_text(call.json()["content"]))
                 for call in api.requests if call.method == "PATCH"],
    )


async def finished(platform: EditablePlatform, text: str) -> str:
    """The id of the message edited into `text`, once it is."""
    for _ in range(200):
        done = [message for message, edited in platform.edits() if edited == text]
        if done:
            return done[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no edit to {text!r}; edits: {platform.edits()}")


@pytest.mark.parametrize("make_platform", [telegram_platform, feishu_platform], ids=["telegram", "feishu"])
async def test_a_crash_mid_stream_ends_with_one_complete_reply_not_two(
    bots: BotProcesses, aiohttp_server: Any,
    make_platform: Callable[[Any], Awaitable[EditablePlatform]],
) -> None:
    platform = await make_platform(aiohttp_server)
    model = FakeModel(gate=asyncio.Event())
    model_server = await aiohttp_server(model.app())
    env = {**platform.env, "MODEL_ENDPOINT": str(model_server.make_url("/v1")), "MODEL_MAX_RETRIES": "0"}
    first_bot, base = await bots.start(env, name="crashing")
    await platform.ask(base, "survive this")
    for _ in range(200):
        if platform.sent():
            break
        await asyncio.sleep(0.05)
    assert platform.sent() == ["model …"]
    # Killed mid-answer: the message on the user's screen is half written, the job still queued.
    await asyncio.to_thread(first_bot.kill)
    assert model.gate is not None
    model.gate.set()
    await bots.start(env, name="crashing")  # the same queue file: the restarted process takes the job over
    message = await finished(platform, "model reply 1: survive this")
    assert {edited for edited, _ in platform.edits()} == {message}
    assert len(platform.sent()) == 1, "the retry finished the streamed message instead of sending another"
