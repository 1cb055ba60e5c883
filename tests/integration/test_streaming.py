"""A streamed answer end to end: client -> `python -m sidecar` -> `python -m bot` -> a streaming model stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.bots import BotProcesses, eventually, metric
from tests.support.fake_model import FakeModel
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
