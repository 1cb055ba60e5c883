"""Model failover: a dead, failing or rate-limiting primary hands the answer to the next endpoint."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bot.backends.circuit import CircuitBreaker
from bot.backends.failover import FailoverBackend
from bot.backends.openai_compat import OpenAICompatBackend
from bot.errors import BackendBadResponse, BackendError, BackendUnavailable
from bot.messages import Turn
from tests.bot.backends.conftest import model_at
from tests.bot.conftest import sample
from tests.support.ports import free_port

PROMPT = [Turn("user", "hello")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def endpoint(http: aiohttp.ClientSession, url: str, name: str, **kwargs: Any) -> OpenAICompatBackend:
    kwargs.setdefault("retry_max_delay", 0.05)
    kwargs.setdefault("max_retries", 0)
    return OpenAICompatBackend(http, url, "sk-x", "m", name=name, connect_timeout=1.0, **kwargs)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


async def test_a_refused_connection_at_the_primary_is_answered_by_the_fallback(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    fallback, url = await model_at(aiohttp_server)
    passed: list[tuple[str, str]] = []
    chain = FailoverBackend(
        [endpoint(http, dead_url(), "primary"), endpoint(http, url, "fallback_1")],
        on_failover=lambda name, exc: passed.append((name, exc.code)),
    )
    completion = await chain.complete(PROMPT)
    assert completion.text == "model reply 1: hello"
    assert completion.backend == "fallback_1"
    assert passed == [("primary", "model_unavailable")]
    assert len(fallback.requests) == 1


@pytest.mark.parametrize("fault", [500, 502, 503, 504])
async def test_a_5xx_primary_is_answered_by_the_fallback(http, aiohttp_server, fault: int) -> None:  # type: ignore[no-untyped-def]
    primary, primary_url = await model_at(aiohttp_server, faults=[fault])
    _, url = await model_at(aiohttp_server)
    chain = FailoverBackend([endpoint(http, primary_url, "primary"), endpoint(http, url, "fallback_1")])
    assert (await chain.complete(PROMPT)).backend == "fallback_1"
    assert len(primary.requests) == 1


async def test_a_429_passes_to_the_fallback_only_after_the_primarys_own_retries(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    primary, primary_url = await model_at(aiohttp_server, faults=[429, 429, 429])
    fallback, url = await model_at(aiohttp_server)
    chain = FailoverBackend([endpoint(http, primary_url, "primary", max_retries=2), endpoint(http, url, "fallback_1")])
    assert (await chain.complete(PROMPT)).backend == "fallback_1"
    assert len(primary.requests) == 3
    assert len(fallback.requests) == 1


async def test_a_429_retried_into_success_stays_with_the_primary(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    primary, primary_url = await model_at(aiohttp_server, faults=[429])
    fallback, url = await model_at(aiohttp_server)
    chain = FailoverBackend([endpoint(http, primary_url, "primary", max_retries=1), endpoint(http, url, "fallback_1")])
    assert (await chain.complete(PROMPT)).backend == "primary"
    assert fallback.requests == []


async def test_an_open_breaker_at_the_primary_goes_straight_to_the_fallback(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    primary, primary_url = await model_at(aiohttp_server)
    _, url = await model_at(aiohttp_server)
    breaker = CircuitBreaker(threshold=1, reset_after=600)
    breaker.record_failure()
    chain = FailoverBackend(
        [endpoint(http, primary_url, "primary", breaker=breaker), endpoint(http, url, "fallback_1")]
    )
    assert (await chain.complete(PROMPT)).backend == "fallback_1"
    assert primary.requests == []


async def test_a_failed_primary_cools_down_then_is_asked_again(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    primary, primary_url = await model_at(aiohttp_server, faults=[503])
    fallback, url = await model_at(aiohttp_server)
    clock = Clock()
    chain = FailoverBackend(
        [endpoint(http, primary_url, "primary"), endpoint(http, url, "fallback_1")], cooldown=30.0, clock=clock,
    )
    assert (await chain.complete(PROMPT)).backend == "fallback_1"
    clock.now += 29.0
    assert (await chain.complete(PROMPT)).backend == "fallback_1"
    assert len(primary.requests) == 1, "the primary is left alone during its cool-down"
    clock.now += 1.5
    assert (await chain.complete(PROMPT)).backend == "primary"
    assert (len(primary.requests), len(fallback.requests)) == (2, 2)
    assert not chain.cooling("primary")


async def test_a_cooling_primary_is_still_asked_when_the_fallback_fails_too(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    primary, primary_url = await model_at(aiohttp_server, faults=[503])
    fallback, url = await model_at(aiohttp_server, faults=[503])
    chain = FailoverBackend([endpoint(http, primary_url, "primary"), endpoint(http, url, "fallback_1")])
    with pytest.raises(BackendUnavailable):
        await chain.complete(PROMPT)
    # Both cool down now; the fallback failed last, so the primary is asked first again.
    completion = await chain.complete(PROMPT)
    assert completion.backend == "primary"
    assert (len(primary.requests), len(fallback.requests)) == (2, 1)


async def test_when_every_endpoint_fails_the_primarys_error_is_raised_and_the_rest_reported(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    _, url_1 = await model_at(aiohttp_server, faults=[503])
    _, url_2 = await model_at(aiohttp_server, faults=[500])
    passed: list[tuple[str, str]] = []
    chain = FailoverBackend(
        [endpoint(http, dead_url(), "primary"), endpoint(http, url_1, "fallback_1"),
         endpoint(http, url_2, "fallback_2")],
        on_failover=lambda name, exc: passed.append((name, exc.code)),
    )
    with pytest.raises(BackendError) as caught:
        await chain.complete(PROMPT)
    assert (caught.value.backend, caught.value.code) == ("primary", "model_unavailable")
    assert passed == [("fallback_1", "model_unavailable"), ("fallback_2", "model_bad_response")]


async def test_a_rate_limited_endpoint_is_the_error_raised_so_the_queue_can_wait_for_it(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    _, url = await model_at(aiohttp_server, faults=[429])
    chain = FailoverBackend([endpoint(http, dead_url(), "primary"), endpoint(http, url, "fallback_1")])
    with pytest.raises(BackendUnavailable) as caught:
        await chain.complete(PROMPT)
    assert caught.value.rate_limited and caught.value.backend == "fallback_1"


async def test_a_request_the_model_refuses_is_not_sent_elsewhere_and_cools_nothing(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    primary, primary_url = await model_at(aiohttp_server, faults=[400])
    fallback, url = await model_at(aiohttp_server)
    chain = FailoverBackend([endpoint(http, primary_url, "primary"), endpoint(http, url, "fallback_1")])
    with pytest.raises(BackendBadResponse):
        await chain.complete(PROMPT)
    assert fallback.requests == []
    assert not chain.cooling("primary")


async def test_ready_while_any_endpoint_can_serve(http, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    _, url = await model_at(aiohttp_server)
    await FailoverBackend([endpoint(http, dead_url(), "primary"), endpoint(http, url, "fallback_1")]).check()
    with pytest.raises(BackendUnavailable):
        await FailoverBackend([endpoint(http, dead_url(), "primary"), endpoint(http, dead_url(), "fallback_1")]).check()


async def test_the_chat_api_answers_from_the_fallback_and_the_metrics_name_who_answered(  # type: ignore[no-untyped-def]
    aiohttp_server, make_client, registry
) -> None:
    _, url = await model_at(aiohttp_server)
    client = await make_client({
        "MODEL_ENDPOINT": dead_url(), "MODEL_FALLBACK_ENDPOINT": url, "MODEL_FALLBACK_API_KEY": "sk-fallback",
        "MODEL_FALLBACK_NAME": "small-model", "MODEL_MAX_RETRIES": "0", "MODEL_CONNECT_TIMEOUT": "1",
    })
    resp = await client.post("/api/v1/chat", json={"message": "hello", "user_id": "u1"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["reply"] == "model reply 1: hello"
    assert sample(registry, "bot_model_requests_total", backend="fallback_1", outcome="success") == 1
    assert sample(registry, "bot_model_requests_total", backend="openai_compat", outcome="model_unavailable") == 1
    assert sample(registry, "bot_model_failovers_total", backend="openai_compat") == 1
    assert sample(registry, "bot_model_tokens_total", backend="fallback_1", kind="completion") == 5
    assert sample(registry, "bot_model_duration_seconds_count", backend="fallback_1") == 1
    # The primary cools down: the next message goes to the fallback without knocking first.
    resp = await client.post("/api/v1/chat", json={"message": "again", "user_id": "u1"})
    assert (await resp.json())["reply"] == "model reply 2: again"
    assert sample(registry, "bot_model_failovers_total", backend="openai_compat") == 1
    assert sample(registry, "bot_model_circuit_open", backend="fallback_1") == 0


async def test_a_dead_chain_answers_503_with_the_primarys_error(aiohttp_server, make_client, registry) -> None:  # type: ignore[no-untyped-def]
    client = await make_client({
        "MODEL_ENDPOINT": dead_url(), "MODEL_FALLBACK_ENDPOINT": f"{dead_url()},{dead_url()}",
        "MODEL_MAX_RETRIES": "0", "MODEL_CONNECT_TIMEOUT": "1",
    })
    resp = await client.post("/api/v1/chat", json={"message": "hello"})
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "model_unavailable"
    for backend in ("openai_compat", "fallback_1", "fallback_2"):
        assert sample(registry, "bot_model_requests_total", backend=backend, outcome="model_unavailable") == 1
