"""Reply capacity as shipped: model calls run as concurrently as MODEL_MAX_CONCURRENCY allows, not as a worker count.

Real processes: the bot, an OpenAI-compatible stand-in with a fixed latency and a Telegram API
stand-in that notes when each reply arrives. The load is CI-sized; `python -m bench replies` runs
the full acceptance loads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.bots import metric
from tests.support.ports import free_port
from tests.support.processes import Process, python_module
from tests.support.reply_load import collect, post_updates

SECRET = "capacity_test_secret"
MODEL_LATENCY = 1.0


class Stack:
    def __init__(self, workdir: Path, model_capacity: int | None = None) -> None:
        self.workdir = workdir
        ports = {name: free_port() for name in ("model", "telegram")}
        self.model = f"http://127.0.0.1:{ports['model']}"
        self.telegram = f"http://127.0.0.1:{ports['telegram']}"
        model_args = ["model", str(ports["model"]), str(MODEL_LATENCY)]
        if model_capacity is not None:
            model_args.append(str(model_capacity))
        self.started = [
            Process("model", python_module("tests.support.reply_load", *model_args), {}, workdir),
            Process("telegram", python_module("tests.support.reply_load", "telegram", str(ports["telegram"])), {},
                    workdir),
        ]
        try:
            self.started[0].wait_http(self.model + "/stats")
            self.started[1].wait_http(self.telegram + "/health")
        except BaseException:
            self.stop()  # a stand-in that failed to start must not leave the other running
            raise

    def start_bot(self, env: dict[str, str]) -> tuple[Process, str]:
        port = free_port()
        bot = Process("bot", python_module("bot"), {
            "BOT_PORT": str(port), "BOT_DATA_DIR": str(self.workdir / "data"), "MODEL_ENDPOINT": self.model + "/v1",
            "TELEGRAM_BOT_TOKEN": "123456:capacity", "TELEGRAM_SECRET_TOKEN": SECRET,
            "TELEGRAM_API_BASE": self.telegram, **env,
        }, self.workdir)
        self.started.append(bot)
        base = f"http://127.0.0.1:{port}"
        bot.wait_http(base + "/ready")
        return bot, base

    def stop(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


@pytest.fixture
def limited_model(tmp_path: Path) -> Iterator[Stack]:
    """A model that answers 429 (Retry-After: 1) to a sixth concurrent call."""
    s = Stack(tmp_path, model_capacity=5)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.stop()


async def test_replies_keep_pace_with_the_load_under_default_settings(stack: Stack) -> None:
    # 60 updates in 1.5 s against a 1 s model: eight workers would need 8 s for the last reply.
    bot, base = stack.start_bot({})
    run = await post_updates(base, SECRET, rate=40, seconds=1.5)
    await collect(run, stack.telegram, stack.model, timeout=30)
    assert (run.rejected, run.answered, run.duplicates) == (0, 60, 0)
    assert run.p99 <= MODEL_LATENCY + 1.0, f"reply p99 {run.p99:.2f}s"
    assert run.max_in_flight > 8 * 2, "model calls were capped by something like a worker count"
    async with aiohttp.ClientSession() as http:
        assert await metric(http, base, "bot_reply_duration_seconds_count", platform="telegram") == 60
        assert await metric(http, base, "bot_model_requests_in_flight", backend="openai_compat") == 0


async def test_model_max_concurrency_bounds_model_calls_and_the_backlog_waits_in_the_queue(stack: Stack) -> None:
    bot, base = stack.start_bot({"MODEL_MAX_CONCURRENCY": "4"})
    run = await post_updates(base, SECRET, rate=40, seconds=0.5)  # 20 updates: five rounds of four
    ages: list[float] = []
    in_flight: list[float] = []
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            ages.append(await metric(http, base, "bot_queue_oldest_age_seconds", queue="inbound") or 0.0)
            in_flight.append(await metric(http, base, "bot_model_requests_in_flight", backend="openai_compat") or 0)
            await asyncio.sleep(0.25)
        await collect(run, stack.telegram, stack.model, timeout=30)
        assert run.answered == 20
        assert run.max_in_flight == 4
        assert max(in_flight) == 4
        # The last of five rounds waits about four model latencies; the gauge, refreshed each second, shows it.
        assert max(ages) >= 1.5
        await asyncio.sleep(1.5)
        assert await metric(http, base, "bot_queue_oldest_age_seconds", queue="inbound") == 0


async def test_a_model_that_answers_429_past_its_limit_gets_the_burst_from_the_queue_not_the_fallback(
    limited_model: Stack,
) -> None:
    bot, base = limited_model.start_bot({"MODEL_MAX_RETRIES": "0"})
    run = await post_updates(base, SECRET, rate=40, seconds=0.5)  # 20 at once against room for 5
    await collect(run, limited_model.telegram, limited_model.model, timeout=60)
    assert (run.answered, run.duplicates, run.fallbacks) == (20, 0, 0)
    assert run.model_refused > 0 and run.max_in_flight <= 5
    async with aiohttp.ClientSession() as http:
        # Refusals did not open the circuit: the model is up, it only asked for patience.
        assert await metric(http, base, "bot_model_circuit_open", backend="openai_compat") == 0
        assert await metric(http, base, "bot_model_requests_total", outcome="success") == 20
        assert await metric(http, base, "bot_model_requests_total", outcome="model_unavailable") == run.model_refused
    assert "model rate limited, job" in bot.output()


def test_bot_workers_still_works_and_says_it_is_deprecated(stack: Stack) -> None:
    bot, base = stack.start_bot({"BOT_WORKERS": "3"})
    run = asyncio.run(post_updates(base, SECRET, rate=20, seconds=0.5))
    asyncio.run(collect(run, stack.telegram, stack.model, timeout=30))
    assert run.answered == 10
    assert run.max_in_flight == 3
    assert "BOT_WORKERS is deprecated: read as MODEL_MAX_CONCURRENCY=3" in bot.output()
