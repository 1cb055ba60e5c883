"""The numeric truth test: a known number of 5xx, 4xx, 429s, refused callbacks and duplicates goes
through real sidecars to real bots; each panel and recording rule a real Prometheus computes must
show exactly those numbers (within what scraping and rate() extrapolation allow).

A panel that counted 4xx as errors, or the bot's own health checks as users' requests, reads a
different number here and fails, where a "returns data" check would pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from monitoring.expressions import dashboard_expressions, expand_variables
from monitoring.rules import sli_name
from monitoring.slo import load_slo
from tests.support.ports import free_port
from tests.support.processes import Process, python_module
from tests.support.prometheus_server import PrometheusServer
from tests.support.services import require_binary

pytestmark = pytest.mark.slow

TELEGRAM = {"TELEGRAM_BOT_TOKEN": "123456:numbers", "TELEGRAM_SECRET_TOKEN": "numbers_secret"}
# Every request but the greedy caller's has its own valid key (the sidecar knows their digests, as it
# would know a deployment's keys), so only the greedy one is refused.
RATE_LIMITS = """
rules:
  - {name: greedy_client, routes: [/api/v1/chat], key: api_key, limits: [2/minute]}
  - {name: callbacks_watch, platforms: [telegram], key: platform, limits: [1/hour], shadow: true}
"""
# Panels read over a window longer than the whole test, so each rate is (count / window).
WINDOW = "10m"
WINDOW_SECONDS = 600.0
# rate() scales a series' increase by (window covered / time sampled): the error is about one
# scrape interval over the time a series has been sampled, so scrape often and sample long.
SCRAPE = "250ms"
SAMPLED_SECONDS = 15.0
RELATIVE_TOLERANCE = 0.05

OK, MISTAKES, FAILURES, GREEDY, CALLBACKS = 240, 24, 20, 14, 8
# The connection drill: one address holds the most connections it may (the traffic above never
# comes near), a few more are refused, and every held one and a few half-sent heads time out.
PER_CLIENT, OVER_CAP, HALF_HEADS, HEAD_TIMEOUT = 60, 7, 3, 3.0
ROUNDS = (1000, 5000)  # the first update id of each traffic() round (births, then the counted load)


def chat_keys(first_update: int) -> list[str]:
    """The API keys one traffic() round presents: one per call, and the greedy caller's."""
    return ([f"k{first_update}-{i}" for i in range(OK)] + [f"m{first_update}-{i}" for i in range(MISTAKES)]
            + [f"f{first_update}-{i}" for i in range(FAILURES)] + ["greedy"])


def key_digests() -> str:
    keys = {key for first in ROUNDS for key in chat_keys(first)}
    return ",".join(sorted(hashlib.sha256(key.encode()).hexdigest() for key in keys))


@dataclass
class Stack:
    prometheus: PrometheusServer
    healthy: str  # sidecar -> bot with the built-in model and Telegram on
    broken: str  # sidecar -> bot whose model endpoint is down: every chat is a 503
    healthy_port: int


@dataclass
class Seen:
    """What the clients saw, by (sidecar, platform, status)."""

    counts: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def add(self, other: Seen) -> None:
        self.counts.update(other.counts)

    def total(self, match: Callable[[str, str, int], bool] = lambda *_: True) -> int:
        return sum(n for key, n in self.counts.items() if match(*key))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require_binary("prometheus")
    logs = tmp_path_factory.mktemp("numbers")
    rules = logs / "ratelimits.yaml"
    rules.write_text(RATE_LIMITS, encoding="utf-8")
    ports = {name: free_port() for name in ("bot", "broken", "sc", "sc_admin", "edge", "edge_admin", "tg")}
    started: list[tuple[Process, str]] = []
    prometheus: PrometheusServer | None = None

    def start(name: str, module: str, env: dict[str, str], ready: str, *args: str) -> None:
        started.append((Process(name, python_module(module, *args), env, logs), ready))

    def sidecar(port: str, admin: str, upstream: str) -> dict[str, str]:
        return {"SIDECAR_PORT": str(ports[port]), "SIDECAR_ADMIN_PORT": str(ports[admin]),
                "SIDECAR_UPSTREAM": upstream, "SIDECAR_RATE_LIMITS": str(rules), "SIDECAR_PROBE_INTERVAL": "0.2",
                "SIDECAR_API_KEY_HASHES": key_digests(), "SIDECAR_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
                "SIDECAR_HEADER_TIMEOUT": str(HEAD_TIMEOUT)}

    try:
        telegram_api = f"http://127.0.0.1:{ports['tg']}"
        bot, broken = f"http://127.0.0.1:{ports['bot']}", f"http://127.0.0.1:{ports['broken']}"
        start("telegram-api", "tests.support.telegram_api", {}, telegram_api + "/health", str(ports["tg"]))
        start("bot", "bot", {"BOT_PORT": str(ports["bot"]), "BOT_DATA_DIR": str(logs / "bot"), **TELEGRAM,
                             "TELEGRAM_API_BASE": telegram_api}, bot + "/health")
        start("bot-broken", "bot", {"BOT_PORT": str(ports["broken"]), "BOT_DATA_DIR": str(logs / "broken"),
                                    "MODEL_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1", "MODEL_MAX_RETRIES": "0"},
              broken + "/health")
        start("sidecar", "sidecar", sidecar("sc", "sc_admin", bot), f"http://127.0.0.1:{ports['sc_admin']}/sidecar/ready")
        start("sidecar-broken", "sidecar", sidecar("edge", "edge_admin", broken),
              f"http://127.0.0.1:{ports['edge_admin']}/sidecar/ready")
        for proc, ready in started:
            proc.wait_http(ready)
        targets = {
            "bot": [f"127.0.0.1:{ports['bot']}", f"127.0.0.1:{ports['broken']}"],
            "sidecar": [f"127.0.0.1:{ports['sc_admin']}", f"127.0.0.1:{ports['edge_admin']}"],
        }
        prometheus = PrometheusServer(binary, logs / "prometheus", targets, interval=SCRAPE)
        prometheus.start()
        yield Stack(prometheus, f"http://127.0.0.1:{ports['sc']}", f"http://127.0.0.1:{ports['edge']}", ports["sc"])
    finally:
        if prometheus is not None:
            prometheus.stop()
        for proc, _ in started:
            proc.stop()


def telegram_update(update_id: int) -> dict[str, object]:
    return {"update_id": update_id, "message": {"message_id": update_id, "date": 1_700_000_000, "text": "hi",
            "chat": {"id": 42, "type": "private"}, "from": {"id": 42, "is_bot": False, "first_name": "T"}}}


async def traffic(stack: Stack, scale: int, first_update: int) -> Seen:
    """`scale` rounds of: good chats, client mistakes, 5xx, a greedy caller, Telegram callbacks."""
    seen = Seen()
    async with aiohttp.ClientSession() as session:

        async def call(where: str, platform: str, method: str, path: str, **kwargs: object) -> None:
            base = stack.healthy if where == "healthy" else stack.broken
            async with session.request(method, base + path, **kwargs) as resp:  # type: ignore[arg-type]
                await resp.read()
                seen.counts[(where, platform, resp.status)] += 1

        def chat(i: int, key: str, where: str = "healthy", **kwargs: object):  # type: ignore[no-untyped-def]
            kwargs.setdefault("json", {"message": f"hello {i}", "user_id": f"u{i % 40}"})
            headers = {"X-API-Key": key, "Content-Type": "application/json"}
            return call(where, "api", "POST", "/api/v1/chat", headers=headers, **kwargs)

        calls = [chat(i, f"k{first_update}-{i}") for i in range(OK * scale)]
        calls += [chat(i, f"m{first_update}-{i}", data=b"{", json=None) for i in range(MISTAKES * scale)]
        calls += [chat(i, f"f{first_update}-{i}", "broken") for i in range(FAILURES * scale)]
        for i in range(CALLBACKS * scale):
            update, good = telegram_update(first_update + i), {"X-Telegram-Bot-Api-Secret-Token": "numbers_secret"}
            calls.append(call("healthy", "telegram", "POST", "/telegram/webhook", json=update, headers=good))
            calls.append(call("healthy", "telegram-duplicate", "POST", "/telegram/webhook", json=update, headers=good))
            calls.append(call("healthy", "telegram-refused", "POST", "/telegram/webhook", json=update,
                              headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}))
        for start in range(0, len(calls), 40):
            await asyncio.gather(*calls[start : start + 40])
        # After the others, so the duplicates above are known to follow their originals.
        for i in range(GREEDY * scale):
            await chat(i, "greedy")
    return seen


def settle(prometheus: PrometheusServer, seen: Seen) -> None:
    """Wait until Prometheus has scraped every request the clients saw, and the rules ran on it."""
    want = seen.total()
    deadline = time.monotonic() + 30
    while True:
        result = prometheus.series('sum(sidecar_requests_total{route!~"/health|/api/health|/ready"})')
        if result and float(result[0]["value"][1]) >= want:
            break
        assert time.monotonic() < deadline, f"Prometheus saw {result}, clients {want}"
        time.sleep(0.5)
    time.sleep(2)  # a few scrapes and rule evaluations on the settled counts


def panel(board: str, title: str, ref: str = "A") -> str:
    """A committed panel's expression, variables set to All and the rate window to WINDOW."""
    for item in dashboard_expressions():
        if item.source == f"{board}.json: {title} [{ref}]":
            return expand_variables(item.expr, WINDOW)
    raise AssertionError(f"no panel {title!r} [{ref}] in {board}")


def value(prometheus: PrometheusServer, expr: str, **labels: str) -> float:
    """The one series of `expr` whose labels include `labels`."""
    matching = [s for s in prometheus.series(expr) if all(s["metric"].get(k) == v for k, v in labels.items())]
    assert len(matching) == 1, f"{expr} {labels}: {json.dumps(matching)}"
    return float(matching[0]["value"][1])


def close(actual: float, expected: float) -> bool:
    return abs(actual - expected) <= RELATIVE_TOLERANCE * abs(expected) + 1e-9


@pytest.fixture(scope="module")
def measured(stack: Stack) -> Seen:
    """Births first (a counter's first sample only starts its series), then the counted load."""
    births = asyncio.run(traffic(stack, 1, ROUNDS[0]))
    settle(stack.prometheus, births)
    born = time.monotonic()
    load = asyncio.run(traffic(stack, 1, ROUNDS[1]))
    total = Seen()
    total.add(births)
    total.add(load)
    settle(stack.prometheus, total)
    time.sleep(max(0.0, born + SAMPLED_SECONDS - time.monotonic()))
    return load


def test_the_clients_saw_what_the_test_meant_to_cause(measured: Seen) -> None:
    assert measured.counts[("healthy", "api", 200)] == OK
    assert measured.counts[("healthy", "api", 400)] == MISTAKES
    assert measured.counts[("broken", "api", 503)] == FAILURES
    assert measured.counts[("healthy", "api", 429)] == GREEDY
    assert measured.counts[("healthy", "telegram", 200)] == CALLBACKS
    assert measured.counts[("healthy", "telegram-duplicate", 200)] == CALLBACKS
    assert measured.counts[("healthy", "telegram-refused", 401)] == CALLBACKS


def reached_bot(seen: Seen) -> int:
    """Users' requests that reached a bot: everything but the sidecar's own 429s."""
    return seen.total(lambda where, platform, status: status != 429)


def test_bot_red_panels_count_users_requests_and_only_5xx_as_errors(stack: Stack, measured: Seen) -> None:
    prometheus = stack.prometheus
    users = reached_bot(measured)
    api = measured.total(lambda w, platform, status: platform == "api" and status != 429)
    telegram = measured.total(lambda w, platform, s: platform.startswith("telegram"))
    checks = {
        "Requests per second": (value(prometheus, panel("bot-red", "Requests per second")), users / WINDOW_SECONDS),
        "Error ratio (5xx)": (value(prometheus, panel("bot-red", "Error ratio (5xx)")), FAILURES / users),
        "QPS by platform: api": (value(prometheus, panel("bot-red", "QPS by platform"), platform="api"), api / WINDOW_SECONDS),
        "QPS by platform: telegram": (
            value(prometheus, panel("bot-red", "QPS by platform"), platform="telegram"), telegram / WINDOW_SECONDS),
        "Error ratio by platform: api": (
            value(prometheus, panel("bot-red", "Error ratio by platform"), platform="api"), FAILURES / api),
        "Error ratio by platform: telegram": (
            value(prometheus, panel("bot-red", "Error ratio by platform"), platform="telegram"), 0.0),
        "Responses by status: 503": (
            value(prometheus, panel("bot-red", "Responses by status"), status="503"), FAILURES / WINDOW_SECONDS),
        "Responses by status: 400": (
            value(prometheus, panel("bot-red", "Responses by status"), status="400"), MISTAKES / WINDOW_SECONDS),
        "Responses by status: 401": (
            value(prometheus, panel("bot-red", "Responses by status"), status="401"), CALLBACKS / WINDOW_SECONDS),
        "Webhook rejections": (
            value(prometheus, panel("bot-red", "Webhook rejections by reason"), platform="telegram", reason="bad_token"),
            CALLBACKS / WINDOW_SECONDS),
        "Duplicate callbacks": (
            value(prometheus, panel("bot-red", "Duplicate callbacks"), platform="telegram"), CALLBACKS / WINDOW_SECONDS),
    }
    wrong = {name: got for name, got in checks.items() if not close(*got)}
    assert not wrong, "panel (shown, expected): " + json.dumps(wrong, indent=1)
    platforms = {s["metric"]["platform"] for s in prometheus.series(panel("bot-red", "QPS by platform"))}
    assert platforms == {"api", "telegram"}


def test_sidecar_panels_count_429s_apart_from_errors(stack: Stack, measured: Seen) -> None:
    prometheus = stack.prometheus
    answered = measured.total()
    checks = {
        "Requests per second": (value(prometheus, panel("sidecar", "Requests per second")), answered / WINDOW_SECONDS),
        "Rate limited per second": (value(prometheus, panel("sidecar", "Rate limited per second")), GREEDY / WINDOW_SECONDS),
        "Rate limited by rule": (
            value(prometheus, panel("sidecar", "Rate limited by rule"), rule="greedy_client"), GREEDY / WINDOW_SECONDS),
        # The births round spent the shadow rule's hour: every counted callback is a shadow hit, none refused.
        "Rate limited by rule: shadow": (
            value(prometheus, panel("sidecar", "Rate limited by rule", "B"), rule="callbacks_watch"),
            3 * CALLBACKS / WINDOW_SECONDS),
        "Error ratio: stable": (
            value(prometheus, panel("sidecar", "Error ratio: canary vs stable"), upstream="stable"), FAILURES / answered),
        "Requests by upstream: stable": (
            value(prometheus, panel("sidecar", "Requests by upstream"), upstream="stable"), answered / WINDOW_SECONDS),
        "Responses by status and upstream: 429": (
            value(prometheus, panel("sidecar", "Responses by status and upstream"), upstream="stable", status="429"),
            GREEDY / WINDOW_SECONDS),
        "Responses by status and upstream: 503": (
            value(prometheus, panel("sidecar", "Responses by status and upstream"), upstream="stable", status="503"),
            FAILURES / WINDOW_SECONDS),
        "Responses by status and upstream: 400": (
            value(prometheus, panel("sidecar", "Responses by status and upstream"), upstream="stable", status="400"),
            MISTAKES / WINDOW_SECONDS),
    }
    wrong = {name: got for name, got in checks.items() if not close(*got)}
    assert not wrong, "panel (shown, expected): " + json.dumps(wrong, indent=1)


def test_availability_rules_and_slo_panels_read_the_5xx_share_at_the_edge(stack: Stack, measured: Seen) -> None:
    """Every window covers the whole run, so every availability SLI is the same known share."""
    prometheus = stack.prometheus
    slo = load_slo()
    share = FAILURES / measured.total()  # 429s are answers, not errors: they stay in the denominator
    checks = {}
    for window in (*slo.windows, slo.period):
        checks[sli_name("availability", window)] = (value(prometheus, sli_name("availability", window)), share)
    checks["budget left"] = (
        value(prometheus, "botwatch:availability_budget_remaining:ratio"), 1 - share / slo.availability.budget)
    checks["Availability now (5m)"] = (value(prometheus, panel("slo", "Availability now (5m)")), 1 - share)
    for ref in "ABC":  # 5m, 1h and the period
        checks[f"Availability SLI [{ref}]"] = (value(prometheus, panel("slo", "Availability SLI", ref)), 1 - share)
    for ref, window in zip("ABCDEFG", slo.windows):
        checks[f"burn rate {window}"] = (
            value(prometheus, panel("slo", "Availability burn rate per window", ref)), share / slo.availability.budget)
    wrong = {name: got for name, got in checks.items() if not close(*got)}
    assert not wrong, "(shown, expected): " + json.dumps(wrong, indent=1)


@dataclass
class Drill:
    held_panel: float  # "Open client connections" while the drill held its connections


@pytest.fixture(scope="module")
def drilled(stack: Stack, measured: Seen) -> Drill:
    """After the counted load: hold, overrun and time out connections from addresses of their own."""

    async def drill() -> float:
        async def connect(source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection("127.0.0.1", stack.healthy_port, local_addr=(source, 0))

        held = [await connect("127.0.0.2") for _ in range(PER_CLIENT)]
        over = [await connect("127.0.0.2") for _ in range(OVER_CAP)]
        for reader, _ in over:  # refused at once: a 503, then the close
            assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 503 ")
        shown = wait_for_value(stack.prometheus, panel("sidecar", "Open client connections"), PER_CLIENT)
        halves = [await connect("127.0.0.3") for _ in range(HALF_HEADS)]
        for _, writer in halves:
            writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        for reader, _ in halves:  # a half-sent head is answered 408 at its deadline; a silent one just closed
            assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 408 ")
        for reader, _ in held:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        for _, writer in held + over + halves:
            writer.close()
        return shown

    shown = asyncio.run(drill())
    wait_for_value(stack.prometheus, 'sum(sidecar_client_timeouts_total{phase="head"})', PER_CLIENT + HALF_HEADS)
    time.sleep(1)  # the refusals were counted before the timeouts; a rule evaluation on the settled counts
    return Drill(shown)


def wait_for_value(prometheus: PrometheusServer, expr: str, want: float) -> float:
    """Poll `expr` (one series) until it shows `want`; return what it showed last."""
    deadline, shown = time.monotonic() + 20, None
    while time.monotonic() < deadline:
        result = prometheus.series(expr)
        shown = float(result[0]["value"][1]) if len(result) == 1 else None
        if shown is not None and shown >= want:
            return shown
        time.sleep(0.25)
    raise AssertionError(f"{expr} showed {shown}, want {want}")


def test_sidecar_panels_show_connections_held_refused_and_timed_out(stack: Stack, drilled: Drill) -> None:
    prometheus = stack.prometheus
    cut_off = panel("sidecar", "Connections refused and requests cut off", "B")
    checks = {
        "Open client connections": (drilled.held_panel, PER_CLIENT),
        "refused: per_client": (
            value(prometheus, panel("sidecar", "Connections refused and requests cut off"), reason="per_client"),
            OVER_CAP / WINDOW_SECONDS),
        "refused: max_connections": (
            value(prometheus, panel("sidecar", "Connections refused and requests cut off"), reason="max_connections"), 0.0),
        "timed out: head": (value(prometheus, cut_off, phase="head"), (PER_CLIENT + HALF_HEADS) / WINDOW_SECONDS),
        "timed out: body": (value(prometheus, cut_off, phase="body"), 0.0),
    }
    wrong = {name: got for name, got in checks.items() if not close(*got)}
    assert not wrong, "panel (shown, expected): " + json.dumps(wrong, indent=1)
    assert value(prometheus, panel("sidecar", "Open client connections")) == 0  # all closed again
