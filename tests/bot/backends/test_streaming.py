"""Streamed completions: chunks as they come, timeouts on the first token and between chunks, retries only before it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from bot.backends.base import stream_answer
from bot.backends.builtin import BuiltinBackend
from bot.backends.circuit import CircuitBreaker
from bot.backends.failover import FailoverBackend
from bot.backends.openai_compat import OpenAICompatBackend
from bot.errors import BackendBadResponse, BackendError, BackendTimeout, BackendUnavailable
from bot.messages import Completion, Turn
from tests.bot.backends.conftest import model_at
from tests.support.ports import free_port

PROMPT = [Turn("user", "one two three")]
ANSWER = "model reply 1: one two three"


def backend_for(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> OpenAICompatBackend:
    kwargs.setdefault("retry_max_delay", 0.05)
    return OpenAICompatBackend(http, url, "sk-x", "m", **kwargs)


async def collect(stream: Any) -> tuple[list[str], Completion]:
    pieces: list[str] = []
    async for item in stream:
        if isinstance(item, Completion):
            return pieces, item
        pieces.append(item)
    raise AssertionError("the stream ended without a completion")


async def test_asks_for_a_stream_with_usage_and_yields_each_chunk_then_the_whole_answer(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    fake, url = await model_at(aiohttp_server)
    pieces, completion = await collect(backend_for(http, url).stream(PROMPT))
    assert fake.requests[0]["stream"] is True
    assert fake.requests[0]["stream_options"] == {"include_usage": True}
    assert pieces == ["model", " reply", " 1:", " one", " two", " three"]
    assert completion.text == ANSWER
    assert (completion.prompt_tokens, completion.completion_tokens) == (7, 6)


async def test_the_first_chunk_is_handed_out_before_the_model_has_finished(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    gate = asyncio.Event()
    fake, url = await model_at(aiohttp_server, gate=gate)
    stream = backend_for(http, url).stream(PROMPT)
    assert await anext(stream) == "model"
    assert fake.streams_finished == 0
    gate.set()
    pieces, completion = await collect(stream)
    assert completion.text == ANSWER and fake.streams_finished == 1


async def test_a_connection_is_reused_after_a_finished_stream(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    _, url = await model_at(aiohttp_server)
    backend = backend_for(http, url)
    for _ in range(3):
        await collect(backend.stream(PROMPT))
    assert http.connector is not None
    assert sum(len(conns) for conns in http.connector._conns.values()) == 1  # type: ignore[attr-defined]


async def test_errors_before_the_first_token_are_retried(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    fake, url = await model_at(aiohttp_server, faults=[503, 429])
    _, completion = await collect(backend_for(http, url, max_retries=2).stream(PROMPT))
    assert completion.text == ANSWER
    assert len(fake.requests) == 3


async def test_a_slow_first_token_times_out_and_is_retried(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    fake, url = await model_at(aiohttp_server, first_token_delay=5.0)
    started = time.monotonic()
    with pytest.raises(BackendTimeout):
        await collect(backend_for(http, url, timeout=0.2, max_retries=1).stream(PROMPT))
    assert len(fake.requests) == 2
    # Two attempts cut at 0.2 s each, far from the 5 s the model would have taken for one.
    assert time.monotonic() - started < 3.0


async def test_a_long_answer_that_keeps_coming_is_not_cut_by_the_timeout(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    # Six chunks 0.15 s apart: 0.9 s in all, over the 0.6 s timeout, no gap near it.
    _, url = await model_at(aiohttp_server, chunk_delay=0.15)
    _, completion = await collect(backend_for(http, url, timeout=0.6).stream(PROMPT))
    assert completion.text == ANSWER


@pytest.mark.parametrize("fault, error", [("stall", BackendTimeout), ("cut", BackendUnavailable),
                                          ("error", BackendUnavailable)])
async def test_a_failure_after_the_first_token_is_raised_not_retried(http, aiohttp_server, fault: str, error: type) -> None:  # type: ignore[no-untyped-def]
    fake, url = await model_at(aiohttp_server, stream_faults=[fault])
    breaker = CircuitBreaker(threshold=1, reset_after=600)
    pieces: list[str] = []
    with pytest.raises(error):
        async for item in backend_for(http, url, timeout=0.3, max_retries=2, breaker=breaker).stream(PROMPT):
            assert isinstance(item, str)
            pieces.append(item)
    assert pieces == ["model"]
    assert len(fake.requests) == 1
    assert breaker.is_open, "a stream that broke off counts against the endpoint"


async def test_an_open_breaker_refuses_the_stream_at_once(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    fake, url = await model_at(aiohttp_server)
    breaker = CircuitBreaker(threshold=1, reset_after=600)
    breaker.record_failure()
    with pytest.raises(BackendUnavailable):
        await collect(backend_for(http, url, breaker=breaker).stream(PROMPT))
    assert fake.requests == []


async def test_an_endpoint_that_ignores_stream_answers_in_one_piece(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    from aiohttp import web

    async def plain(request: web.Request) -> web.Response:
        return web.json_response({"choices": [{"message": {"content": "all at once"}}],
                                  "usage": {"prompt_tokens": 3, "completion_tokens": 2}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", plain)
    server = await aiohttp_server(app)
    pieces, completion = await collect(backend_for(http, str(server.make_url("/v1"))).stream(PROMPT))
    assert pieces == ["all at once"]
    assert (completion.text, completion.completion_tokens) == ("all at once", 2)


async def test_a_garbled_chunk_is_a_bad_response(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    from aiohttp import web

    async def garbled(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: {not json\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", garbled)
    server = await aiohttp_server(app)
    with pytest.raises(BackendBadResponse):
        await collect(backend_for(http, str(server.make_url("/v1")), max_retries=0).stream(PROMPT))


async def test_a_backend_that_cannot_stream_yields_its_answer_as_one_piece() -> None:
    pieces, completion = await collect(stream_answer(BuiltinBackend(), PROMPT))
    assert pieces == [completion.text] and "one two three" in completion.text


async def test_failover_streams_from_the_fallback_when_the_primary_is_dead(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    _, url = await model_at(aiohttp_server)
    passed: list[str] = []
    chain = FailoverBackend(
        [backend_for(http, f"http://127.0.0.1:{free_port()}/v1", name="primary", max_retries=0),
         backend_for(http, url, name="fallback_1")],
        on_failover=lambda name, exc: passed.append(name),
    )
    pieces, completion = await collect(chain.stream(PROMPT))
    assert "".join(pieces) == ANSWER and completion.backend == "fallback_1"
    assert passed == ["primary"]


async def test_failover_never_switches_models_in_the_middle_of_an_answer(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    primary, primary_url = await model_at(aiohttp_server, stream_faults=["cut"])
    fallback, url = await model_at(aiohttp_server)
    chain = FailoverBackend([backend_for(http, primary_url, name="primary", max_retries=0),
                             backend_for(http, url, name="fallback_1")])
    with pytest.raises(BackendError) as caught:
        await collect(chain.stream(PROMPT))
    assert caught.value.backend == "primary"
    assert fallback.requests == []
    assert chain.cooling("primary")
