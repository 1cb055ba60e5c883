"""The truth test: every dashboard panel, recording rule and alert signal returns data from a real
Prometheus (1 s scrape) that scraped a real bot and sidecar after a short load."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from monitoring.expressions import Expression, all_expressions, expand_variables
from tests.support.ports import free_port
from tests.support.processes import Process, python_module
from tests.support.prometheus_server import PrometheusServer
from tests.support.services import require_binary

# Expressions over these metrics are rightly empty in a run with no platform traffic; each must
# still parse, and test_platform_expressions_fill_when_callbacks_arrive causes every one of them.
NEEDS_PLATFORM_TRAFFIC: dict[str, str] = {
    "bot_webhook_rejected_total": "only a refused platform callback creates a series",
    "bot_duplicates_total": "only a platform re-delivering a callback creates a series",
    "bot_ack_duration_seconds": "observed only when a platform callback is acknowledged",
    "bot_reply_duration_seconds": "observed only when a reply reaches a platform",
    "bot_delivery_attempts_total": "counted only when a reply is sent to a platform",
    "bot_dead_letters_total": "counted only when delivery to a platform gives up",
    "bot_reply_overhead_seconds": "observed only when a reply reaches a platform",
    "botwatch:reply": "the reply objectives are computed from replies delivered to a platform",
}
# Series of connections the bot holds itself (DingTalk Stream, Feishu long connection) exist only in
# those modes; tests/monitoring/test_connection_truth.py fills every expression over them.
NEEDS_LONG_CONNECTION = ("bot_platform_connection_", "bot_platform_last_frame_", "bot_platform_reconnects_")
TELEGRAM = {"TELEGRAM_BOT_TOKEN": "123456:truth-test", "TELEGRAM_SECRET_TOKEN": "truth_test_secret"}
# In a healthy run these read 0 (their error side is filled with zeros); once the bot answers 5xx
# they must show it.
SHOWS_5XX = re.compile(r'status=~"5\.\."|availability_errors')

LOAD_REQUESTS = 300
RATE_INTERVAL = "1m"


# Generous for the load; tight on /ready, which only the rate-limit test calls through the sidecar.
RATE_LIMITS = """
rules:
  - {name: chat_client, routes: [/api/v1/chat], key: api_key, limits: [10000/second]}
  - {name: readiness_callers, routes: [/ready], key: client_ip, limits: [2/minute]}
"""


@dataclass
class Stack:
    prometheus: PrometheusServer
    entry: str  # the sidecar users reach; stable and canary are the same healthy bot
    broken_entry: str  # a second sidecar, in front of a bot whose model endpoint is down


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require_binary("prometheus")
    logs = tmp_path_factory.mktemp("truth")
    rules = logs / "ratelimits.yaml"
    rules.write_text(RATE_LIMITS, encoding="utf-8")
    ports = {name: free_port() for name in ("bot", "broken", "sidecar", "sidecar_admin", "edge", "edge_admin", "tg")}
    bot, broken = (f"http://127.0.0.1:{ports[name]}" for name in ("bot", "broken"))
    started: list[tuple[Process, str]] = []
    prometheus: PrometheusServer | None = None

    def start(name: str, module: str, env: dict[str, str], ready: str, *args: str) -> None:
        started.append((Process(name, python_module(module, *args), env, logs), ready))

    def sidecar_env(port: str, admin: str, upstream: str) -> dict[str, str]:
        return {
            "SIDECAR_PORT": str(ports[port]), "SIDECAR_ADMIN_PORT": str(ports[admin]), "SIDECAR_UPSTREAM": upstream,
            "SIDECAR_RATE_LIMITS": str(rules), "SIDECAR_PROBE_INTERVAL": "0.2",
        }

    try:
        telegram_api = f"http://127.0.0.1:{ports['tg']}"
        start("telegram-api", "tests.support.telegram_api", {}, telegram_api + "/health", str(ports["tg"]))
        start(
            "bot", "bot",
            {"BOT_PORT": str(ports["bot"]), "BOT_DATA_DIR": str(logs / "bot"), **TELEGRAM,
             "TELEGRAM_API_BASE": telegram_api, "DELIVERY_MAX_ATTEMPTS": "1"},
            bot + "/health",
        )
        start(
            "bot-broken", "bot",
            {"BOT_PORT": str(ports["broken"]), "BOT_DATA_DIR": str(logs / "broken"),
             "MODEL_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1", "MODEL_MAX_RETRIES": "0"},
            broken + "/health",
        )
        # Half the users go to the canary, so both upstream label values carry traffic.
        start(
            "sidecar", "sidecar",
            {**sidecar_env("sidecar", "sidecar_admin", bot), "SIDECAR_CANARY_UPSTREAM": bot,
             "SIDECAR_CANARY_PERCENT": "50"},
            f"http://127.0.0.1:{ports['sidecar_admin']}/sidecar/ready",
        )
        start("sidecar-broken", "sidecar", sidecar_env("edge", "edge_admin", broken),
              f"http://127.0.0.1:{ports['edge_admin']}/sidecar/ready")
        for proc, ready in started:
            proc.wait_http(ready)
        targets = {
            "bot": [f"127.0.0.1:{ports['bot']}", f"127.0.0.1:{ports['broken']}"],
            "sidecar": [f"127.0.0.1:{ports['sidecar_admin']}", f"127.0.0.1:{ports['edge_admin']}"],
        }
        prometheus = PrometheusServer(binary, logs / "prometheus", targets)
        prometheus.start()
        yield Stack(prometheus, f"http://127.0.0.1:{ports['sidecar']}", f"http://127.0.0.1:{ports['edge']}")
    finally:
        if prometheus is not None:
            prometheus.stop()
        for proc, _ in started:
            proc.stop()


async def _send(base: str, ok: int, user_prefix: str = "user") -> Counter[int]:
    """`ok` chat requests spread over many users, plus one of each client mistake."""
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession() as session:

        async def chat(i: int) -> None:
            body = {"message": f"hello {i}", "user_id": f"{user_prefix}-{i % 50}"}
            async with session.post(f"{base}/api/v1/chat", json=body) as resp:
                statuses[resp.status] += 1

        async def mistake(method: str, path: str, **kwargs: object) -> None:
            async with session.request(method, f"{base}{path}", **kwargs) as resp:  # type: ignore[arg-type]
                statuses[resp.status] += 1

        for start in range(0, ok, 50):
            await asyncio.gather(*(chat(i) for i in range(start, min(ok, start + 50))))
        await asyncio.gather(
            mistake("POST", "/api/v1/chat", data=b"{not json", headers={"Content-Type": "application/json"}),
            mistake("POST", "/api/v1/chat", data=b"hello", headers={"Content-Type": "text/plain"}),
            mistake("POST", "/api/v1/chat", json={"message": ""}),
            mistake("GET", "/api/v1/chat"),
            mistake("GET", "/no/such/route"),
        )
    return statuses


async def _send_streamed(base: str, count: int) -> Counter[int]:
    """Chat requests answered as event streams, read to their end (they fill the first-token histograms)."""
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            body = {"message": f"stream {i}", "user_id": f"streamer-{i}", "stream": True}
            async with session.post(f"{base}/api/v1/chat", json=body) as resp:
                assert b"event: done" in await resp.read()
                statuses[resp.status] += 1
    return statuses


def _queries() -> list[tuple[Expression, str]]:
    return [(item, expand_variables(item.expr, RATE_INTERVAL)) for item in all_expressions()]


def _needs_platform_traffic(expr: str) -> bool:
    return any(metric in expr for metric in NEEDS_PLATFORM_TRAFFIC)


def _needs_long_connection(expr: str) -> bool:
    return any(prefix in expr for prefix in NEEDS_LONG_CONNECTION)


def _poll(prometheus: PrometheusServer, queries: list[tuple[Expression, str]], accept, timeout: float = 30.0):
    """Query until `accept(result)` holds for every expression or time runs out; return the failures."""
    waiting = dict((query, item) for item, query in queries)
    deadline = time.monotonic() + timeout
    while True:
        for query in list(waiting):
            if accept(prometheus.series(query)):
                del waiting[query]
        if not waiting or time.monotonic() > deadline:
            return waiting
        time.sleep(0.5)


def test_every_dashboard_rule_and_alert_expression_returns_data_after_a_healthy_load(stack: Stack) -> None:
    statuses = asyncio.run(_send(stack.entry, LOAD_REQUESTS))
    assert statuses[200] == LOAD_REQUESTS, statuses
    assert {400, 404, 405, 415} <= set(statuses), statuses
    assert asyncio.run(_send_streamed(stack.entry, 5))[200] == 5

    queries = _queries()
    checked = [(item, query) for item, query in queries
               if not _needs_platform_traffic(query) and not _needs_long_connection(query)]
    # The others must still be valid PromQL: a typo would otherwise hide until the traffic comes.
    for _, query in queries:
        stack.prometheus.series(query)

    empty = _poll(stack.prometheus, checked, lambda result: len(result) > 0)
    assert not empty, "no data for:\n" + "\n".join(f"  {item.kind} {item.source}: {q}" for q, item in empty.items())
    assert {item.kind for item, _ in checked} == {"dashboard", "record", "alert", "guide"}


def test_the_guides_query_counts_requests_by_platform(stack: Stack) -> None:
    statuses = asyncio.run(_send(stack.entry, 60, user_prefix="guide"))
    assert statuses[200] == 60

    def has_api_and_system(result: list[dict]) -> bool:
        platforms = {series["metric"].get("platform") for series in result}
        return {"api", "system"} <= platforms and all(float(s["value"][1]) > 0 for s in result)

    assert not _poll(stack.prometheus, [(None, "sum(rate(bot_requests_total[1m])) by (platform)")], has_api_and_system)


def test_error_expressions_show_5xx_when_the_model_endpoint_is_down(stack: Stack) -> None:
    # rate() sees an increase only between two samples of a series, and a counter child is born on
    # its first 5xx: let Prometheus scrape the first one before the rest arrive.
    first = asyncio.run(_send(stack.broken_entry, 1, user_prefix="broken"))
    assert first[503] == 1, first
    born = [(None, 'bot_requests_total{status="503"}'), (None, 'sidecar_requests_total{status="503"}')]
    assert not _poll(stack.prometheus, born, lambda result: len(result) > 0)
    statuses = asyncio.run(_send(stack.broken_entry, 40, user_prefix="broken"))
    assert statuses[503] == 40, statuses

    showing = [(item, query) for item, query in _queries() if SHOWS_5XX.search(query)]
    assert len(showing) > 10

    def above_zero(result: list[dict]) -> bool:
        return any(float(series["value"][1]) > 0 for series in result)

    still_zero = _poll(stack.prometheus, showing, above_zero)
    assert not still_zero, "5xx not visible in:\n" + "\n".join(f"  {i.source}: {q}" for q, i in still_zero.items())
    outcomes = {s["metric"]["outcome"] for s in stack.prometheus.series("sum by (outcome) (bot_model_requests_total)")}
    assert "model_unavailable" in outcomes


def test_rate_limit_panels_show_429s_under_the_rule_that_refused_them(stack: Stack) -> None:
    async def call_ready(times: int) -> Counter[int]:
        statuses: Counter[int] = Counter()
        async with aiohttp.ClientSession() as session:
            for _ in range(times):
                async with session.get(f"{stack.entry}/ready") as resp:
                    statuses[resp.status] += 1
        return statuses

    statuses = asyncio.run(call_ready(10))
    assert statuses[429] == 8, statuses

    limited = [(item, query) for item, query in _queries() if "sidecar_ratelimited_total" in query]
    assert limited

    def rule_counted(result: list[dict]) -> bool:
        return any(float(series["value"][1]) > 0 for series in result)

    assert not _poll(stack.prometheus, limited, rule_counted)
    by_rule = stack.prometheus.series("sum by (rule) (increase(sidecar_ratelimited_total[1m]))")
    assert {s["metric"]["rule"] for s in by_rule if float(s["value"][1]) > 0} == {"readiness_callers"}


def _telegram_update(update_id: int, chat_id: int) -> dict[str, object]:
    return {"update_id": update_id, "message": {"message_id": update_id, "date": 1_700_000_000, "text": "hello",
            "chat": {"id": chat_id, "type": "private"}, "from": {"id": chat_id, "is_bot": False, "first_name": "T"}}}


async def _callbacks(base: str, first_id: int, count: int) -> Counter[str]:
    """Telegram callbacks through the sidecar: accepted, re-delivered, refused, undeliverable."""
    outcomes: Counter[str] = Counter()
    url = f"{base}/telegram/webhook"
    good = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM["TELEGRAM_SECRET_TOKEN"]}
    async with aiohttp.ClientSession() as session:
        for update_id in range(first_id, first_id + count):
            for kind, chat, headers in (("accepted", 42, good), ("duplicate", 42, good),
                                        ("refused", 42, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}),
                                        ("undeliverable", 666, good)):
                body = _telegram_update(update_id * 10 + (kind == "undeliverable"), chat)
                async with session.post(url, json=body, headers=headers) as resp:
                    outcomes[f"{kind} {resp.status}"] += 1
    return outcomes


def test_platform_expressions_fill_when_callbacks_arrive(stack: Stack) -> None:
    """Callbacks accepted, re-delivered and refused, replies delivered and dead-lettered: every
    expression over platform metrics then holds a number (a counter's first sample only starts
    its series, so a second round follows once Prometheus has seen the first)."""
    platform_queries = [(item, query) for item, query in _queries()
                        if _needs_platform_traffic(query) and not _needs_long_connection(query)]
    assert len(platform_queries) >= 10
    first = asyncio.run(_callbacks(stack.entry, 1000, 1))
    assert first == Counter({"accepted 200": 1, "duplicate 200": 1, "refused 401": 1, "undeliverable 200": 1})
    born = [(None, metric) for metric in (
        "bot_webhook_rejected_total", "bot_duplicates_total", "bot_dead_letters_total",
        'bot_delivery_attempts_total{outcome="delivered"}', "bot_reply_duration_seconds_count",
        "bot_ack_duration_seconds_count",
    )]
    assert not _poll(stack.prometheus, born, lambda result: len(result) > 0)
    asyncio.run(_callbacks(stack.entry, 2000, 5))

    def a_number(result: list[dict]) -> bool:
        return any(series["value"][1] not in ("NaN", "+Inf", "-Inf") for series in result)

    empty = _poll(stack.prometheus, platform_queries, a_number)
    assert not empty, "no data for:\n" + "\n".join(f"  {item.kind} {item.source}: {q}" for q, item in empty.items())
