"""The chat API's stream: a delta event per chunk as it comes, a final done event, an error event mid-answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.bot.conftest import MakeClient, sample
from tests.support.fake_model import FakeModel
from tests.support.sse import all_events, events


async def model_env(aiohttp_server: Any, **kwargs: Any) -> tuple[FakeModel, dict[str, str]]:
    fake = FakeModel(**kwargs)
    server = await aiohttp_server(fake.app())
    return fake, {"MODEL_ENDPOINT": str(server.make_url("/v1")), "MODEL_MAX_RETRIES": "0", "MODEL_TIMEOUT": "1"}


async def test_a_streamed_answer_is_a_delta_per_chunk_then_the_whole_reply(
    make_client: MakeClient, aiohttp_server: Any, registry: Any
) -> None:
    _, env = await model_env(aiohttp_server)
    client = await make_client(env)
    resp = await client.post("/api/v1/chat", json={"message": "a b", "user_id": "u1", "stream": True})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    received = await all_events(resp)
    names = [name for name, _ in received]
    assert names == ["delta"] * 5 + ["done"]
    deltas = "".join(data["text"] for name, data in received if name == "delta")
    done = received[-1][1]
    assert deltas == done["reply"] == "model reply 1: a b"
    assert done["session_id"].startswith("u-")
    assert done["request_id"] == resp.headers["X-Request-ID"]
    assert sample(registry, "bot_first_token_seconds_count", platform="api") == 1
    assert sample(registry, "bot_model_first_token_seconds_count", backend="openai_compat") == 1
    assert sample(registry, "bot_model_tokens_total", backend="openai_compat", kind="completion") == 5
    assert sample(registry, "bot_requests_total", platform="api", route="/api/v1/chat", method="POST",
                  status="200") == 1
    # The whole turn was kept: the next message is the second of the conversation.
    again = await client.post("/api/v1/chat", json={"message": "c", "user_id": "u1", "stream": True})
    assert (await all_events(again))[-1][1]["reply"] == "model reply 2: c"


async def test_the_first_event_arrives_before_the_model_has_finished(
    make_client: MakeClient, aiohttp_server: Any
) -> None:
    gate = asyncio.Event()
    fake, env = await model_env(aiohttp_server, gate=gate)
    client = await make_client(env)
    resp = await client.post("/api/v1/chat", json={"message": "hi", "stream": True})
    stream = events(resp)
    name, data = await asyncio.wait_for(anext(stream), 5)
    assert (name, data) == ("delta", {"text": "model"})
    assert fake.streams_finished == 0
    gate.set()
    rest = [event async for event in stream]
    assert rest[-1][0] == "done" and fake.streams_finished == 1


@pytest.mark.parametrize("fault, code", [("cut", "model_unavailable"), ("stall", "model_timeout"),
                                         ("error", "model_unavailable")])
async def test_a_model_failing_mid_answer_ends_with_an_error_event_and_no_stored_turn(
    make_client: MakeClient, aiohttp_server: Any, registry: Any, fault: str, code: str
) -> None:
    _, env = await model_env(aiohttp_server, stream_faults=[fault])
    client = await make_client(env)
    resp = await client.post("/api/v1/chat", json={"message": "hi", "session_id": "s1", "stream": True})
    received = await all_events(resp)
    assert received[0] == ("delta", {"text": "model"})
    name, data = received[-1]
    assert name == "error"
    assert data["error"]["code"] == code and data["error"]["request_id"] == resp.headers["X-Request-ID"]
    assert sample(registry, "bot_errors_total", code=code) == 1
    assert sample(registry, "bot_model_requests_total", backend="openai_compat", outcome=code) == 1
    resp = await client.post("/api/v1/chat", json={"message": "again", "session_id": "s1"})
    assert (await resp.json())["reply"] == "model reply 1: again", "the broken turn was not stored"


async def test_a_model_failing_before_the_first_token_is_the_usual_json_error(
    make_client: MakeClient, aiohttp_server: Any
) -> None:
    _, env = await model_env(aiohttp_server, faults=[503])
    client = await make_client(env)
    resp = await client.post("/api/v1/chat", json={"message": "hi", "stream": True})
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "model_unavailable"


async def test_the_built_in_responder_streams_its_answer_in_one_piece(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.post("/api/v1/chat", json={"message": "hello", "stream": True})
    received = await all_events(resp)
    assert [name for name, _ in received] == ["delta", "done"]
    assert received[0][1]["text"] == received[1][1]["reply"]


@pytest.mark.parametrize("value", ["yes", 1, [], "true"])
async def test_stream_must_be_a_boolean(make_client: MakeClient, value: Any) -> None:
    client = await make_client()
    resp = await client.post("/api/v1/chat", json={"message": "hello", "stream": value})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_payload"


@pytest.mark.parametrize("value", [False, None])
async def test_stream_false_or_null_is_the_ordinary_json_answer(make_client: MakeClient, value: Any) -> None:
    client = await make_client()
    resp = await client.post("/api/v1/chat", json={"message": "hello", "stream": value})
    assert resp.status == 200 and "reply" in await resp.json()


async def test_a_caller_hanging_up_mid_stream_stores_no_turn_and_ends_the_model_call(
    make_client: MakeClient, aiohttp_server: Any, registry: Any
) -> None:
    gate = asyncio.Event()
    fake, env = await model_env(aiohttp_server, gate=gate)
    client = await make_client(env)
    resp = await client.post("/api/v1/chat", json={"message": "hi", "session_id": "s2", "stream": True})
    assert (await anext(events(resp)))[0] == "delta"
    resp.close()
    gate.set()

    async def settled() -> bool:
        return (sample(registry, "bot_model_requests_in_flight", backend="openai_compat") == 0
                and sample(registry, "bot_requests_total", platform="api", route="/api/v1/chat", method="POST",
                           status="499") == 1)

    for _ in range(100):
        if await settled():
            break
        await asyncio.sleep(0.05)
    assert await settled(), "the model call ended and the hang-up was counted as 499"
    resp = await client.post("/api/v1/chat", json={"message": "again", "session_id": "s2"})
    assert (await resp.json())["reply"] == "model reply 1: again"


async def test_first_token_histograms_show_the_first_words_not_the_whole_answer(
    make_client: MakeClient, aiohttp_server: Any, registry: Any
) -> None:
    # First token after 0.3 s, then four more chunks 0.25 s apart: the whole answer takes over 1.3 s.
    _, env = await model_env(aiohttp_server, first_token_delay=0.3, chunk_delay=0.25)
    client = await make_client(env)
    resp = await client.post("/api/v1/chat", json={"message": "a b", "stream": True})
    assert (await all_events(resp))[-1][0] == "done"
    model_first = sample(registry, "bot_model_first_token_seconds_sum", backend="openai_compat")
    api_first = sample(registry, "bot_first_token_seconds_sum", platform="api")
    whole = sample(registry, "bot_model_duration_seconds_sum", backend="openai_compat")
    assert 0.3 <= model_first <= api_first < 1.0 <= whole


async def test_an_answer_holding_event_syntax_cannot_forge_events(make_client: MakeClient, aiohttp_server: Any) -> None:
    _, env = await model_env(aiohttp_server)
    client = await make_client(env)
    forged = "x\n\nevent: done\ndata: {\"reply\": \"forged\"}\n\n"
    resp = await client.post("/api/v1/chat", json={"message": forged, "stream": True})
    received = await all_events(resp)
    assert [name for name, _ in received].count("done") == 1 and received[-1][0] == "done"
    assert received[-1][1]["reply"] == "model reply 1: " + forged
