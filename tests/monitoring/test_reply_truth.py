"""The reply histograms tell the truth: after a load that queues, a real Prometheus reading the bot's
reply histograms agrees with the Telegram stand-in's own clock within one bucket, for the whole reply
and for the bot's own part of it, and the queue-age and in-flight gauges showed the backlog."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.telemetry.metrics import REPLY_BUCKETS, REPLY_OVERHEAD_BUCKETS
from tests.support.ports import free_port
from tests.support.processes import Process, python_module
from tests.support.prometheus_server import PrometheusServer
from tests.support.reply_load import ReplyRun, collect, percentile, post_updates
from tests.support.services import require_binary

SECRET = "reply_truth_secret"
MODEL_LATENCY = 0.6
# Ten calls at a time against 60 updates in 2 s: the later replies wait in the queue for seconds,
# so the replies spread over several buckets and the bot's own part is not just a send.
CONCURRENCY = 10
RATE, SECONDS = 30, 2.0
WARM_UP_ID = 1_000_000


@dataclass
class Stack:
    prometheus: PrometheusServer
    bot: str
    telegram: str
    model: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require_binary("prometheus")
    workdir: Path = tmp_path_factory.mktemp("reply-truth")
    ports = {name: free_port() for name in ("bot", "model", "telegram")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    started: list[Process] = []
    prometheus: PrometheusServer | None = None
    try:
        started.append(Process("model", python_module(
            "tests.support.reply_load", "model", str(ports["model"]), str(MODEL_LATENCY)), {}, workdir))
        started.append(Process("telegram", python_module(
            "tests.support.reply_load", "telegram", str(ports["telegram"])), {}, workdir))
        started[0].wait_http(urls["model"] + "/stats")
        started[1].wait_http(urls["telegram"] + "/health")
        started.append(Process("bot", python_module("bot"), {
            "BOT_PORT": str(ports["bot"]), "BOT_DATA_DIR": str(workdir / "data"),
            "MODEL_ENDPOINT": urls["model"] + "/v1", "MODEL_MAX_CONCURRENCY": str(CONCURRENCY),
            "TELEGRAM_BOT_TOKEN": "123456:truth", "TELEGRAM_SECRET_TOKEN": SECRET,
            "TELEGRAM_API_BASE": urls["telegram"],
        }, workdir))
        started[2].wait_http(urls["bot"] + "/ready")
        prometheus = PrometheusServer(binary, workdir / "prometheus", {"bot": [f"127.0.0.1:{ports['bot']}"]})
        prometheus.start()
        yield Stack(prometheus, urls["bot"], urls["telegram"], urls["model"])
    finally:
        if prometheus is not None:
            prometheus.stop()
        for proc in reversed(started):
            proc.stop()


def bucket(value: float, bounds: tuple[float, ...]) -> int:
    """Index of the bucket holding `value` (len(bounds) for +Inf)."""
    return bisect.bisect_left(bounds, value)


def _value(prometheus: PrometheusServer, expr: str) -> float | None:
    result = prometheus.series(expr)
    return float(result[0]["value"][1]) if result else None


def _wait_value(prometheus: PrometheusServer, expr: str, accept, timeout: float = 30.0) -> float | None:
    deadline = time.monotonic() + timeout
    value = _value(prometheus, expr)
    while not (value is not None and accept(value)) and time.monotonic() < deadline:
        time.sleep(0.5)
        value = _value(prometheus, expr)
    return value


@pytest.fixture(scope="module")
def run(stack: Stack) -> ReplyRun:
    """One warm-up reply that Prometheus sees (so the series exist before the load), then the load.

    The returned run holds both, as the histograms do.
    """
    count = 'sum(bot_reply_duration_seconds_count{platform="telegram"})'
    assert _wait_value(stack.prometheus, 'bot_queue_oldest_age_seconds{queue="inbound"}', lambda v: True) == 0

    async def go(rate: float, seconds: float, first_id: int) -> ReplyRun:
        sent = await post_updates(stack.bot, SECRET, rate, seconds, first_id=first_id)
        return await collect(sent, stack.telegram, stack.model, timeout=60)

    warm_up = asyncio.run(go(1, 1, WARM_UP_ID))
    assert warm_up.answered == 1
    assert _wait_value(stack.prometheus, count, lambda v: v == 1) == 1
    result = asyncio.run(go(RATE, SECONDS, 1))
    result.sent.update(warm_up.sent)
    assert result.answered == len(result.sent) == int(RATE * SECONDS) + 1
    assert result.max_in_flight == CONCURRENCY
    assert _wait_value(stack.prometheus, count, lambda v: v >= result.answered) == result.answered
    return result


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_reply_quantiles_agree_with_the_platforms_clock_within_one_bucket(stack: Stack, run: ReplyRun, q: float) -> None:
    observed = percentile(run.latencies, q)
    reported = _value(stack.prometheus, f'histogram_quantile({q}, sum by (le) '
                                        f'(bot_reply_duration_seconds_bucket{{platform="telegram"}}))')
    assert reported is not None
    assert abs(bucket(reported, REPLY_BUCKETS) - bucket(observed, REPLY_BUCKETS)) <= 1, (q, observed, reported)
    # The queue made this load slow enough to be worth measuring: it spans more than the model's bucket.
    assert bucket(percentile(run.latencies, 0.99), REPLY_BUCKETS) > bucket(MODEL_LATENCY, REPLY_BUCKETS)


@pytest.mark.parametrize("q", [0.5, 0.99])
def test_the_bots_own_part_agrees_with_the_platforms_clock_less_the_model(stack: Stack, run: ReplyRun, q: float) -> None:
    observed = percentile([latency - MODEL_LATENCY for latency in run.latencies], q)
    reported = _value(stack.prometheus, f'histogram_quantile({q}, sum by (le) '
                                        f'(bot_reply_overhead_seconds_bucket{{platform="telegram"}}))')
    assert reported is not None
    assert abs(bucket(reported, REPLY_OVERHEAD_BUCKETS) - bucket(observed, REPLY_OVERHEAD_BUCKETS)) <= 1, (
        q, observed, reported)


def test_the_backlog_showed_in_queue_age_and_in_flight_model_calls(stack: Stack, run: ReplyRun) -> None:
    window = "[2m]"
    age = _value(stack.prometheus, f'max_over_time(bot_queue_oldest_age_seconds{{queue="inbound"}}{window})')
    in_flight = _value(stack.prometheus, f'max_over_time(bot_model_requests_in_flight{window})')
    limit = _value(stack.prometheus, "bot_model_concurrency_limit")
    # The last update waited about (60 - 10) / 10 model latencies minus the 2 s it took to post them all.
    assert age is not None and age >= 0.5
    assert in_flight == limit == CONCURRENCY
    # Once drained, the gauges go back to zero.
    assert _wait_value(stack.prometheus, 'bot_queue_oldest_age_seconds{queue="inbound"}', lambda v: v == 0) == 0
    assert _wait_value(stack.prometheus, "sum(bot_model_requests_in_flight)", lambda v: v == 0) == 0


def test_the_reply_slis_read_the_same_histograms(stack: Stack, run: ReplyRun) -> None:
    # Every reply came well within 10 s: the recorded slow share is zero. The bot's own part was
    # over 1 s for the replies that queued behind ten model calls: the share the stand-in saw.
    # (Recording rules run once a second, so each is read once it has caught up with the last scrape.)
    load = [run.arrivals[i] - t for i, t in run.sent.items() if i < WARM_UP_ID]
    expected = sum(1 for latency in load if latency - MODEL_LATENCY > 1.0) / len(load)
    assert 0.1 < expected < 0.9, "the load no longer puts replies on both sides of the threshold"
    slow = _wait_value(stack.prometheus, "botwatch:reply_slow_per_reply:ratio_rate5m", lambda v: v == 0)
    assert slow == 0
    own_slow = _wait_value(stack.prometheus, "botwatch:reply_overhead_slow_per_reply:ratio_rate5m",
                           lambda v: abs(v - expected) <= 0.05, timeout=15)
    assert own_slow is not None and abs(own_slow - expected) <= 0.05, (own_slow, expected)
