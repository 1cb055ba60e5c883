"""Liveness, the guides' health summary, readiness of configured dependencies, and /metrics."""

from __future__ import annotations

from tests.bot.conftest import MakeClient
from tests.support.ports import free_port


async def test_health_is_200_for_get_and_head(make_client: MakeClient) -> None:
    client = await make_client({"BOT_API_KEY": "k"})
    assert (await client.get("/health")).status == 200
    assert (await client.head("/health")).status == 200


async def test_api_health_has_the_guides_shape_for_get_and_post(make_client: MakeClient) -> None:
    client = await make_client()
    for method in ("GET", "POST"):
        body = await (await client.request(method, "/api/health")).json()
        assert body["status"] == "healthy"
        assert isinstance(body["uptime"], int)
        assert body["version"]


async def test_ready_with_embedded_defaults(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/ready")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ready"


async def test_ready_names_the_dependency_that_does_not_answer(make_client: MakeClient) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = await make_client({"MODEL_ENDPOINT": dead + "/v1", "MODEL_API_KEY": "sk-hidden"})
    resp = await client.get("/ready")
    assert resp.status == 503
    body = await resp.json()
    assert set(body["failing"]) == {"model"}
    assert "sk-hidden" not in await resp.text()


async def test_metrics_exposes_the_required_families(make_client: MakeClient) -> None:
    client = await make_client()
    await client.post("/api/v1/chat", json={"message": "hello"})
    text = await (await client.get("/metrics")).text()
    for family in (
        'bot_requests_total{method="POST",platform="api",route="/api/v1/chat",status="200"} 1.0',
        "bot_request_duration_seconds_bucket",
        'le="0.5"',
        "bot_requests_in_flight",
        'bot_model_requests_total{backend="builtin",outcome="success"} 1.0',
        "bot_model_duration_seconds_bucket",
        'bot_model_tokens_total{backend="builtin",kind="prompt"}',
        "bot_build_info{version=",
    ):
        assert family in text, family


async def test_metrics_speaks_openmetrics_when_asked(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).rstrip().endswith("# EOF")


async def test_the_model_circuit_state_is_exported(make_client: MakeClient) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    client = await make_client({"MODEL_ENDPOINT": dead, "MODEL_MAX_RETRIES": "0", "MODEL_BREAKER_FAILURES": "1"})
    text = await (await client.get("/metrics")).text()
    assert 'bot_model_circuit_open{backend="openai_compat"} 0.0' in text
    await client.post("/api/v1/chat", json={"message": "x"})
    text = await (await client.get("/metrics")).text()
    assert 'bot_model_circuit_open{backend="openai_compat"} 1.0' in text
