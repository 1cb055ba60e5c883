"""The OpenAI-compatible backend against a local chat-completions server with scripted faults."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from bot.backends.circuit import CircuitBreaker
from bot.backends.openai_compat import OpenAICompatBackend, estimate_tokens, fit_history, loggable_url
from bot.errors import BackendBadResponse, BackendTimeout, BackendUnavailable
from bot.messages import Turn

SECRET = "sk-test-very-secret-key"


def backend_for(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> OpenAICompatBackend:
    kwargs.setdefault("retry_max_delay", 0.2)
    return OpenAICompatBackend(http, url, SECRET, "fake-model", **kwargs)


async def test_sends_the_conversation_with_the_key_and_parses_the_answer(model, http) -> None:  # type: ignore[no-untyped-def]
    fake, url = model
    completion = await backend_for(http, url).complete([Turn("user", "hi"), Turn("assistant", "yo"), Turn("user", "again")])
    assert completion.text == "model reply 2: again"
    assert (completion.prompt_tokens, completion.completion_tokens) == (7, 5)
    assert fake.auth_headers == [f"Bearer {SECRET}"]
    assert fake.requests[0]["model"] == "fake-model"
    assert [m["content"] for m in fake.requests[0]["messages"]] == ["hi", "yo", "again"]
    assert fake.requests[0]["max_tokens"] == 2048 // 4


async def test_retries_5xx_and_429_then_succeeds(model, http) -> None:  # type: ignore[no-untyped-def]
    fake, url = model
    fake.faults = [503, 429]
    completion = await backend_for(http, url, max_retries=2).complete([Turn("user", "x")])
    assert completion.text.endswith("x")
    assert len(fake.requests) == 3


async def test_gives_up_after_bounded_retries_with_a_503(model, http) -> None:  # type: ignore[no-untyped-def]
    fake, url = model
    fake.faults = [500, 502, 503, 504]
    with pytest.raises(BackendUnavailable) as caught:
        await backend_for(http, url, max_retries=2).complete([Turn("user", "x")])
    assert len(fake.requests) == 3
    assert SECRET not in str(caught.value)


async def test_a_client_error_from_the_endpoint_is_a_502_without_retry(model, http) -> None:  # type: ignore[no-untyped-def]
    fake, url = model
    fake.faults = [401]
    with pytest.raises(BackendBadResponse) as caught:
        await backend_for(http, url).complete([Turn("user", "x")])
    assert caught.value.status == 502
    assert len(fake.requests) == 1


async def test_retry_after_is_honoured_and_a_long_one_fails_fast(model, http) -> None:  # type: ignore[no-untyped-def]
    fake, url = model
    fake.faults, fake.retry_after = [429], "0.3"
    started = time.monotonic()
    await backend_for(http, url, retry_max_delay=1.0).complete([Turn("user", "x")])
    assert time.monotonic() - started >= 0.3
    fake.faults, fake.retry_after = [429], "120"
    with pytest.raises(BackendUnavailable) as caught:
        await backend_for(http, url, retry_max_delay=1.0).complete([Turn("user", "x")])
    assert caught.value.retry_after == 120


async def test_a_slow_endpoint_times_out_as_504(model, http) -> None:  # type: ignore[no-untyped-def]
    fake, url = model
    fake.faults = ["timeout", "timeout"]
    with pytest.raises(BackendTimeout) as caught:
        await backend_for(http, url, timeout=0.2, max_retries=1).complete([Turn("user", "x")])
    assert caught.value.status == 504


async def test_an_unreachable_endpoint_is_503(http) -> None:  # type: ignore[no-untyped-def]
    from tests.support.ports import free_port

    backend = backend_for(http, f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    with pytest.raises(BackendUnavailable):
        await backend.complete([Turn("user", "x")])
    with pytest.raises(BackendUnavailable):
        await backend.check()


async def test_garbage_from_the_endpoint_is_a_502(aiohttp_server, http) -> None:  # type: ignore[no-untyped-def]
    from aiohttp import web

    async def garbage(_request: web.Request) -> web.Response:
        return web.Response(text="<html>oops</html>")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", garbage)
    server = await aiohttp_server(app)
    with pytest.raises(BackendBadResponse):
        await backend_for(http, str(server.make_url("/v1"))).complete([Turn("user", "x")])


async def test_the_circuit_opens_after_consecutive_failures_and_fails_fast(model, http) -> None:  # type: ignore[no-untyped-def]
    fake, url = model
    fake.faults = [500] * 10
    breaker = CircuitBreaker(threshold=2, reset_after=60)
    backend = backend_for(http, url, max_retries=0, breaker=breaker)
    for _ in range(2):
        with pytest.raises(BackendBadResponse):
            await backend.complete([Turn("user", "x")])
    calls = len(fake.requests)
    with pytest.raises(BackendUnavailable, match="circuit is open") as caught:
        await backend.complete([Turn("user", "x")])
    assert len(fake.requests) == calls
    assert caught.value.retry_after and caught.value.retry_after > 50


def test_the_circuit_lets_one_trial_through_after_the_reset_time() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, reset_after=10, clock=lambda: now[0])
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 11
    assert breaker.allow()
    assert not breaker.allow()  # only one trial while half-open
    breaker.record_success()
    assert breaker.allow()


def test_history_is_trimmed_oldest_first_to_fit_the_token_limit() -> None:
    turns = [Turn("system", "be brief")] + [Turn("user" if i % 2 == 0 else "assistant", "word " * 100) for i in range(10)]
    turns.append(Turn("user", "last question"))
    kept = fit_history(turns, budget=400)
    assert kept[0].role == "system"
    assert kept[-1].content == "last question"
    assert sum(estimate_tokens(t.content) for t in kept) <= 400
    assert len(kept) < len(turns)


def test_max_token_limit_bounds_max_tokens_and_the_prompt(http) -> None:  # type: ignore[no-untyped-def]
    backend = OpenAICompatBackend(http, "http://x/v1", None, "m", max_token_limit=256)
    payload = backend.build_payload([Turn("user", "y " * 2000), Turn("user", "z")])
    assert payload["max_tokens"] == 64
    assert [m["content"] for m in payload["messages"]] == ["z"]



async def test_a_404_names_the_url_it_called_so_a_wrong_api_base_is_obvious(  # type: ignore[no-untyped-def]
    model, http, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = model
    fake.faults = [404]
    backend = backend_for(http, url)
    with caplog.at_level("WARNING", logger="bot.backends"), pytest.raises(BackendBadResponse):
        await backend.complete([Turn("user", "x")])
    assert f"{url}/chat/completions" in caplog.text
    assert "MODEL_ENDPOINT" in caplog.text and "API base" in caplog.text
    assert loggable_url(f"https://user:{SECRET}@[::1]:8443/v1/chat/completions?key={SECRET}") == (
        "https://[::1]:8443/v1/chat/completions"
    )
