"""The latency SLI sees what clients see: a bot that cannot take requests off its socket for stretches,
as a saturated event loop cannot, makes clients wait while the bot's own histogram (which starts
when its handler runs) stays fast. The SLI, read from the sidecar's histogram by a real Prometheus,
must agree with the client's measurements within one bucket; the bot's histogram must not.

The stretches are made with SIGSTOP/SIGCONT rather than by load, so the wait is the same on a
busy shared machine and the run is short: the bot is held for HOLD seconds, then runs for RUN.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from monitoring.rules import sli_name
from monitoring.slo import load_slo
from servicekit.latency import LATENCY_BUCKETS
from tests.support.ports import free_port
from tests.support.processes import Process, python_module
from tests.support.prometheus_server import PrometheusServer
from tests.support.services import require_binary

pytestmark = pytest.mark.slow

HOLD, RUN = 0.9, 0.3
RATE = 40.0  # requests per second, steady, whatever the bot does
DURATION = 10.0


@dataclass
class Stack:
    prometheus: PrometheusServer
    entry: str
    bot: Process


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require_binary("prometheus")
    logs = tmp_path_factory.mktemp("latency-sli")
    ports = {name: free_port() for name in ("bot", "sidecar", "admin")}
    bot_url = f"http://127.0.0.1:{ports['bot']}"
    bot = Process("bot", python_module("bot"), {"BOT_PORT": str(ports["bot"]), "BOT_DATA_DIR": str(logs / "bot")}, logs)
    # Probes patient enough not to call a held bot down (the sidecar would then refuse with 503s).
    sidecar = Process("sidecar", python_module("sidecar"), {
        "SIDECAR_PORT": str(ports["sidecar"]), "SIDECAR_ADMIN_PORT": str(ports["admin"]), "SIDECAR_UPSTREAM": bot_url,
        "SIDECAR_RATE_LIMITS": "", "SIDECAR_PROBE_TIMEOUT": "3", "SIDECAR_PROBE_FAILURES": "10",
    }, logs)
    prometheus: PrometheusServer | None = None
    try:
        bot.wait_http(bot_url + "/health")
        sidecar.wait_http(f"http://127.0.0.1:{ports['admin']}/sidecar/ready")
        prometheus = PrometheusServer(binary, logs / "prometheus", {
            "bot": [f"127.0.0.1:{ports['bot']}"], "sidecar": [f"127.0.0.1:{ports['admin']}"],
        })
        prometheus.start()
        yield Stack(prometheus, f"http://127.0.0.1:{ports['sidecar']}", bot)
    finally:
        if prometheus is not None:
            prometheus.stop()
        bot.signal(signal.SIGCONT)
        sidecar.stop()
        bot.stop()


async def steady_load(entry: str, seconds: float, rate: float) -> list[float]:
    """Chat requests started at a fixed rate (not waiting for answers); each one's latency in seconds."""
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> None:
            started = time.perf_counter()
            async with session.post(f"{entry}/api/v1/chat", json={"message": f"m{i}", "user_id": f"u{i % 30}"}) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            latencies.append(time.perf_counter() - started)

        tasks, begin = [], time.perf_counter()
        for i in range(int(seconds * rate)):
            await asyncio.sleep(max(0.0, begin + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return latencies


def hold_and_release(pid: int, until: threading.Event) -> None:
    while not until.is_set():
        os.kill(pid, signal.SIGSTOP)
        until.wait(HOLD)
        os.kill(pid, signal.SIGCONT)
        until.wait(RUN)
    os.kill(pid, signal.SIGCONT)


def bucket_of(seconds: float) -> int:
    return next((i for i, bound in enumerate(LATENCY_BUCKETS) if seconds <= bound), len(LATENCY_BUCKETS))


def quantile_from(prometheus: PrometheusServer, histogram: str, window: str) -> float:
    expr = f'histogram_quantile(0.99, sum by (le) (rate({histogram}{{route="/api/v1/chat"}}[{window}])))'
    result = prometheus.series(expr)
    return float(result[0]["value"][1]) if result else math.nan


def test_under_saturation_the_latency_sli_agrees_with_the_client_and_the_bot_histogram_does_not(
    stack: Stack,
) -> None:
    threshold = load_slo().latency.threshold_seconds
    # Histogram series are born on their first observation, which rate() cannot count: births first.
    asyncio.run(steady_load(stack.entry, 1.0, 10))
    deadline = time.monotonic() + 20
    while not stack.prometheus.series('sidecar_request_duration_seconds_count{route="/api/v1/chat"}'):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(2)

    until = threading.Event()
    holder = threading.Thread(target=hold_and_release, args=(stack.bot.pid, until))
    holder.start()
    try:
        latencies = asyncio.run(steady_load(stack.entry, DURATION, RATE))
    finally:
        until.set()
        holder.join()
    latencies.sort()
    client_slow = sum(1 for latency in latencies if latency > threshold) / len(latencies)
    client_p99 = latencies[math.ceil(0.99 * len(latencies)) - 1]
    assert client_slow > 0.1 and client_p99 > threshold, (client_slow, client_p99)

    sli = sli_name("latency", "5m")
    deadline = time.monotonic() + 30
    while True:
        total = stack.prometheus.series('sum(sidecar_request_duration_seconds_count{route="/api/v1/chat"})')
        if total and float(total[0]["value"][1]) >= len(latencies) + 10:
            break
        assert time.monotonic() < deadline, total
        time.sleep(0.5)
    time.sleep(3)  # a few rule evaluations on the settled counts
    measured_slow = float(stack.prometheus.series(sli)[0]["value"][1])
    # The births (10 fast requests) are outside rate()'s reach; the rest is what the client saw.
    assert abs(measured_slow - client_slow) <= 0.05, (measured_slow, client_slow)

    edge_p99 = quantile_from(stack.prometheus, "sidecar_request_duration_seconds_bucket", "5m")
    handler_p99 = quantile_from(stack.prometheus, "bot_request_duration_seconds_bucket", "5m")
    assert abs(bucket_of(edge_p99) - bucket_of(client_p99)) <= 1, (edge_p99, client_p99)
    # What the old SLI read: the handler saw almost none of the wait.
    assert bucket_of(client_p99) - bucket_of(handler_p99) > 1, (handler_p99, client_p99)
