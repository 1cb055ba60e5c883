"""In-memory rate limiting: exact budgets, RateLimit headers, shadow rules, keys that never hold a secret."""

from __future__ import annotations

import http.client
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sidecar.credentials import ApiKeys, key_digest
from sidecar.metrics import SidecarMetrics
from sidecar.ratelimit import RateLimiter
from sidecar.routes import resolve
from sidecar.rules import parse_rules
from tests.sidecar.conftest import Running, fetch, metric
from tests.support.ports import free_port
from tests.support.raw_http import Answer

CHAT = resolve(b"/api/v1/chat")[0]  # type: ignore[index]
HEALTH = resolve(b"/health")[0]  # type: ignore[index]


def make(rules_yaml: str, api_keys: ApiKeys | None = None) -> tuple[RateLimiter, CollectorRegistry]:
    rules = parse_rules(rules_yaml)
    registry = CollectorRegistry()
    metrics = SidecarMetrics(registry, rules=tuple(r.name for r in rules), default_collectors=False)
    return RateLimiter(rules, metrics, api_keys=api_keys), registry


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


VALID = ApiKeys.from_settings(("key-one",), (key_digest("key-two"),))


def test_valid_api_keys_are_counted_apart_and_stored_only_as_digests() -> None:
    limiter, _ = make("rules: [{name: per_key, key: api_key, limits: [2/minute]}]", VALID)
    for key in (b"Bearer key-one", b"bearer  key-two "):
        assert limiter.check(CHAT, "10.0.0.1", key, "stable") is None
        assert limiter.check(CHAT, "10.0.0.1", key, "stable") is None
        assert limiter.check(CHAT, "10.0.0.1", key, "stable") is not None
    # Without a key, the client address stands in.
    assert limiter.check(CHAT, "10.0.0.1", None, "stable") is None
    stored = repr(limiter._storage.events) + repr(limiter._storage.storage)
    assert "key-one" not in stored and key_digest("key-one") not in stored
    assert VALID.identify(b"Bearer key-one") in stored


@pytest.mark.parametrize("keys", [VALID, None], ids=["keys configured", "no keys"])
def test_a_made_up_credential_draws_on_the_address_budget(keys: ApiKeys | None) -> None:
    limiter, _ = make("rules: [{name: per_key, key: api_key, limits: [3/minute]}]", keys)
    presented = [b"Bearer junk-1", b"Bearer junk-2", b"Basic a2V5LW9uZQ==", None, b"Bearer junk-3"]
    assert [limiter.check(CHAT, "10.0.0.1", p, "stable") is None for p in presented] == [True, True, True, False, False]
    assert limiter.check(CHAT, "10.0.0.2", b"Bearer junk-4", "stable") is None, "another address has its own budget"


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


def test_random_bearer_values_from_one_address_get_no_more_than_its_budget(
    start_upstream: Callable[..., Running], start_sidecar: Callable[..., Running]
) -> None:
    """1,000 chat calls in 5 s, each with a new made-up key (as a bearer token or in X-API-Key, both of
    which the bot reads): the shipped chat_client rule holds (20/s)."""
    upstream = start_upstream()
    rules = (Path(__file__).parents[2] / "sidecar" / "ratelimits.yaml").read_text()
    sidecar = start_sidecar(upstream.url, {"BOT_API_KEY": "the-real-key"}, rules=rules)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    started = time.monotonic()

    def caller(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=10)
        for i in range(250):
            time.sleep(max(0.0, started + (i * 4 + offset) * 0.005 - time.monotonic()))
            junk = f"junk-{uuid.uuid4().hex}"
            made_up = {"Authorization": f"Bearer {junk}"} if i % 2 else {"X-API-Key": junk}
            conn.request("POST", "/api/v1/chat", body=CHAT_BODY, headers={**JSON, **made_up})
            response = conn.getresponse()
            response.read()
            with lock:
                statuses[response.status] += 1
        conn.close()

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert sum(statuses.values()) == 1000
    # A moving window of 20 per second: at most 20 in each second the run touched.
    assert statuses[200] <= 20 * math.ceil(elapsed), (statuses, elapsed)
    assert statuses[429] >= 1000 - 20 * math.ceil(elapsed)
    # The real key still has a budget of its own, however it is presented.
    assert chat(sidecar, Authorization="Bearer the-real-key").status == 200
    assert chat(sidecar, **{"X-API-Key": "the-real-key"}).status == 200


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
