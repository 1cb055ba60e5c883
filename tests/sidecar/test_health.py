"""Active health probing against a real bot: a dead bot is answered 503 fast, a restarted one recovers."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.sidecar.conftest import Running, fetch, metric
from tests.support.ports import free_port
from tests.support.processes import Process

INTERVAL = 0.2
FAILURES = 3
SUCCESSES = 2


def probe_env(**extra: str) -> dict[str, str]:
    return {
        "SIDECAR_PROBE_INTERVAL": str(INTERVAL),
        "SIDECAR_PROBE_FAILURES": str(FAILURES),
        "SIDECAR_PROBE_SUCCESSES": str(SUCCESSES),
        "SIDECAR_PROBE_TIMEOUT": "0.2",
        **extra,
    }


def wait_for(predicate: Callable[[], bool], timeout: float) -> float:
    """Seconds until `predicate` holds; fails the test past `timeout`."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not true within {timeout}s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_killed_bot_is_answered_503_fast_and_a_restarted_one_recovers(
    start_bot: Callable[..., tuple], bot_on_port: Callable[[int], Process], start_sidecar: Callable[..., Running]
) -> None:
    bot, bot_url = start_bot()
    sidecar = start_sidecar(bot_url, probe_env())
    assert fetch(sidecar.url + "/health").status == 200
    assert fetch(sidecar.admin + "/sidecar/ready").status == 200

    bot.kill()
    # No traffic: only the probes notice, so within interval x threshold (plus one probe timeout).
    took = wait_for(lambda: fetch(sidecar.admin + "/sidecar/ready").status == 503, timeout=5)
    assert took <= INTERVAL * FAILURES + 0.2 + 0.5

    for _ in range(5):
        started = time.monotonic()
        answer = fetch(sidecar.url + "/api/v1/chat", method="POST", body=b'{"message": "hi"}',
                       headers={"Content-Type": "application/json"})
        assert time.monotonic() - started < 0.25, "refused at once, not after a connect attempt"
        assert answer.status == 503
        assert answer.json()["error"]["code"] == "upstream_unavailable"
        assert int(answer.headers["retry-after"]) >= 1
    assert metric(sidecar.admin, "sidecar_upstream_up", upstream="stable") == 0
    assert metric(sidecar.admin, "sidecar_shed_total", reason="upstream_down") >= 5
    assert metric(sidecar.admin, "sidecar_requests_total", route="/api/v1/chat", status="503", upstream="stable") >= 5
    assert metric(sidecar.admin, "sidecar_probes_total", upstream="stable", result="refused") >= FAILURES

    bot_on_port(int(bot_url.rsplit(":", 1)[1]))
    wait_for(lambda: fetch(sidecar.url + "/health").status == 200, timeout=5)
    assert fetch(sidecar.admin + "/sidecar/ready").json()["upstreams"] == {"stable": "up"}
    assert metric(sidecar.admin, "sidecar_upstream_up", upstream="stable") == 1


def test_refused_live_requests_mark_the_upstream_down_before_any_probe(
    start_bot: Callable[..., tuple], start_sidecar: Callable[..., Running]
) -> None:
    bot, bot_url = start_bot()
    # Probes far apart: only live traffic can notice the death in this test.
    sidecar = start_sidecar(bot_url, probe_env(SIDECAR_PROBE_INTERVAL="30"))
    assert fetch(sidecar.url + "/health").status == 200
    bot.kill()
    statuses = [fetch(sidecar.url + "/health").status for _ in range(FAILURES + 2)]
    # Each refused connection is a 502 and a failure; after the threshold the sidecar stops trying.
    assert statuses[:FAILURES] == [502] * FAILURES
    assert statuses[FAILURES:] == [503, 503]
    assert metric(sidecar.admin, "sidecar_upstream_errors_total", upstream="stable", kind="connect_refused") == FAILURES


def test_a_sidecar_started_before_its_bot_is_not_ready_until_the_bot_answers(
    bot_on_port: Callable[[int], Process], start_sidecar: Callable[..., Running]
) -> None:
    port = free_port()
    sidecar = start_sidecar(f"http://127.0.0.1:{port}", probe_env())
    ready = fetch(sidecar.admin + "/sidecar/ready")
    assert ready.status == 503 and ready.json()["upstreams"] == {"stable": "down"}
    assert fetch(sidecar.admin + "/sidecar/health").status == 200, "liveness does not depend on the bot"
    assert fetch(sidecar.url + "/health").status == 503
    bot_on_port(port)
    wait_for(lambda: fetch(sidecar.admin + "/sidecar/ready").status == 200, timeout=5)
    assert fetch(sidecar.url + "/health").body == b"OK"
