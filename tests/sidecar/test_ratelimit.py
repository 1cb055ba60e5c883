"""In-memory rate limiting: exact budgets, RateLimit headers, shadow rules, keys that never hold a secret."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from sidecar.metrics import SidecarMetrics
from sidecar.ratelimit import RateLimiter, credential_key
from sidecar.routes import resolve
from sidecar.rules import parse_rules
from tests.sidecar.conftest import Running, fetch, metric
from tests.support.ports import free_port
from tests.support.raw_http import Answer

CHAT = resolve(b"/api/v1/chat")[0]  # type: ignore[index]
HEALTH = resolve(b"/health")[0]  # type: ignore[index]


def make(rules_yaml: str) -> tuple[RateLimiter, CollectorRegistry]:
    rules = parse_rules(rules_yaml)
    registry = CollectorRegistry()
    metrics = SidecarMetrics(registry, rules=tuple(r.name for r in rules), default_collectors=False)
    return RateLimiter(rules, metrics), registry


@pytest.mark.parametrize("strategy", ["moving-window", "fixed-window"])
def test_a_rule_allows_exactly_its_budget(strategy: str) -> None:
    limiter, registry = make(f"rules: [{{name: chat, routes: [/api/v1/chat], key: client_ip, limits: [5/minute], strategy: {strategy}}}]")
    assert [limiter.check(CHAT, "10.0.0.1", None, "stable") for _ in range(5)] == [None] * 5
    rejection = limiter.check(CHAT, "10.0.0.1", None, "stable")
    assert rejection is not None
    assert (rejection.rule, rejection.limit, rejection.remaining) == ("chat", 5, 0)
    assert 1 <= rejection.reset <= 60
    assert dict(rejection.headers()) == {
        b"Retry-After": str(rejection.reset).encode(),
        b"RateLimit-Limit": b"5",
        b"RateLimit-Remaining": b"0",
        b"RateLimit-Reset": str(rejection.reset).encode(),
    }
    assert registry.get_sample_value("sidecar_ratelimited_total", {"rule": "chat", "upstream": "stable"}) == 1
    # Another client has its own budget; another route is not counted at all.
    assert limiter.check(CHAT, "10.0.0.2", None, "stable") is None
    assert limiter.check(HEALTH, "10.0.0.1", None, "stable") is None


def test_the_burst_cap_and_the_budget_both_hold() -> None:
    limiter, _ = make("rules: [{name: chat, key: route, limits: [3/second, 4/minute]}]")
    outcomes = [limiter.check(CHAT, "ip", None, "stable") for _ in range(5)]
    assert [o is None for o in outcomes] == [True, True, True, False, False]
    assert outcomes[3].limit == 3  # type: ignore[union-attr]  # the burst cap refused first


def test_a_shadow_rule_counts_but_never_refuses() -> None:
    limiter, registry = make("rules: [{name: watch, key: client_ip, limits: [2/minute], shadow: true}]")
    assert all(limiter.check(CHAT, "10.0.0.1", None, "stable") is None for _ in range(5))
    assert registry.get_sample_value("sidecar_ratelimit_shadow_total", {"rule": "watch", "upstream": "stable"}) == 3
    assert registry.get_sample_value("sidecar_ratelimited_total", {"rule": "watch", "upstream": "stable"}) == 0


def test_api_keys_are_counted_apart_and_stored_only_as_digests() -> None:
    limiter, _ = make("rules: [{name: per_key, key: api_key, limits: [2/minute]}]")
    for key in (b"Bearer key-one", b"Bearer key-two"):
        assert limiter.check(CHAT, "10.0.0.1", key, "stable") is None
        assert limiter.check(CHAT, "10.0.0.1", key, "stable") is None
        assert limiter.check(CHAT, "10.0.0.1", key, "stable") is not None
    # Without a key, the client address stands in.
    assert limiter.check(CHAT, "10.0.0.1", None, "stable") is None
    stored = repr(limiter._storage.events) + repr(limiter._storage.storage)
    assert "key-one" not in stored and credential_key(b"Bearer key-one") in stored


def test_memory_limits_start_no_threads_and_expire_on_request() -> None:
    limiter, _ = make("rules: [{name: r, key: client_ip, limits: [1000/second]}]")
    before = threading.active_count()
    for i in range(200):
        limiter.check(CHAT, f"10.0.0.{i % 50}", None, "stable")
    assert threading.active_count() <= before
    limiter.expire()  # trims expired entries; live ones stay
    assert limiter.check(CHAT, "10.0.0.1", None, "stable") is None


# Against real processes: the bot behind one sidecar, and two sidecars sharing Redis.

CHAT_BODY = b'{"message": "hello"}'
JSON = {"Content-Type": "application/json"}


def chat(sidecar: Running, **headers: str) -> Answer:
    return fetch(sidecar.url + "/api/v1/chat", method="POST", body=CHAT_BODY, headers={**JSON, **headers})


def test_the_budget_is_served_then_429_with_ratelimit_headers(
    start_bot: Callable[..., tuple], start_sidecar: Callable[..., Running]
) -> None:
    _, bot_url = start_bot()
    sidecar = start_sidecar(bot_url, rules="rules: [{name: chat_budget, routes: [/api/v1/chat], key: client_ip, limits: [5/minute]}]")
    assert [chat(sidecar).status for _ in range(5)] == [200] * 5
    refused = chat(sidecar)
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["ratelimit-limit"] == "5"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["ratelimit-reset"]) <= 60
    assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
    assert fetch(sidecar.url + "/health").status == 200, "other routes are not limited"
    assert metric(sidecar.admin, "sidecar_ratelimited_total", rule="chat_budget") == 1
    assert metric(sidecar.admin, "sidecar_requests_total", route="/api/v1/chat", status="429", upstream="stable") == 1
    # The refused request never reached the bot.
    assert metric(bot_url, "bot_requests_total", route="/api/v1/chat", status="200") == 5
    assert metric(bot_url, "bot_requests_total", route="/api/v1/chat", status="429") == 0


def test_a_shadow_rule_lets_everything_through_and_counts_what_it_would_refuse(
    start_bot: Callable[..., tuple], start_sidecar: Callable[..., Running]
) -> None:
    _, bot_url = start_bot()
    sidecar = start_sidecar(bot_url, rules="rules: [{name: trial, key: route, limits: [3/minute], shadow: true}]")
    assert [chat(sidecar).status for _ in range(7)] == [200] * 7
    assert metric(sidecar.admin, "sidecar_ratelimit_shadow_total", rule="trial") == 4
    assert metric(sidecar.admin, "sidecar_ratelimited_total", rule="trial") == 0


def test_two_sidecars_share_one_limit_through_redis(
    start_bot: Callable[..., tuple], start_sidecar: Callable[..., Running], redis_url: str
) -> None:
    _, bot_url = start_bot()
    rules = "rules: [{name: shared, routes: [/api/v1/chat], key: route, limits: [6/minute]}]"
    first = start_sidecar(bot_url, {"SIDECAR_REDIS_URL": redis_url}, rules=rules, name="first")
    second = start_sidecar(bot_url, {"SIDECAR_REDIS_URL": redis_url}, rules=rules, name="second")
    statuses = [chat(sidecar).status for sidecar in [first, second] * 5]
    assert statuses == [200] * 6 + [429] * 4
    assert metric(first.admin, "sidecar_ratelimited_total", rule="shared") == 2
    assert metric(second.admin, "sidecar_ratelimited_total", rule="shared") == 2


def test_an_unreachable_redis_fails_open(start_bot: Callable[..., tuple], start_sidecar: Callable[..., Running]) -> None:
    _, bot_url = start_bot()
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    sidecar = start_sidecar(
        bot_url, {"SIDECAR_REDIS_URL": dead_redis}, rules="rules: [{name: shared, key: route, limits: [1/minute]}]"
    )
    started = time.monotonic()
    assert [chat(sidecar).status for _ in range(3)] == [200] * 3
    assert time.monotonic() - started < 3
    assert metric(sidecar.admin, "sidecar_ratelimit_errors_total") >= 1
    assert "dead_redis" not in sidecar.process.output() and dead_redis not in sidecar.process.output()
