"""Admission: past SIDECAR_MAX_IN_FLIGHT requests are shed at once (503), never queued behind slow ones."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.sidecar.conftest import Running, fetch, metric

SLOW = 1.5


def test_a_burst_past_max_in_flight_is_shed_not_queued(
    start_upstream: Callable[..., Running], start_sidecar: Callable[..., Running]
) -> None:
    upstream = start_upstream()
    sidecar = start_sidecar(upstream.url, {"SIDECAR_MAX_IN_FLIGHT": "2"})
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = [pool.submit(fetch, sidecar.url + f"/slow?seconds={SLOW}") for _ in range(2)]
        deadline = time.monotonic() + 5
        while metric(sidecar.admin, "sidecar_requests_in_flight") < 2:
            assert time.monotonic() < deadline, "the slow requests never got in flight"
            time.sleep(0.02)

        for _ in range(5):
            started = time.monotonic()
            shed = fetch(sidecar.url + "/echo")
            assert time.monotonic() - started < 0.3, "shed at once, not after waiting for a slot"
            assert shed.status == 503
            assert shed.json()["error"]["code"] == "overloaded"
            assert shed.headers["retry-after"] == "1"
        assert [future.result().status for future in slow] == [200, 200]

    assert fetch(sidecar.url + "/echo").status == 200, "capacity is back once the slow requests are done"
    assert metric(sidecar.admin, "sidecar_shed_total", reason="max_in_flight") == 5
    assert metric(sidecar.admin, "sidecar_requests_total", route="other", status="503", upstream="stable") == 5
    assert metric(sidecar.admin, "sidecar_requests_in_flight") == 0


# Who the client is: the peer, or what a trusted proxy in front says it saw.

PER_CLIENT = "rules: [{name: per_client, key: client_ip, limits: [2/minute]}]"


def statuses_for(sidecar: Running, addresses: list[str], proto: str = "https") -> list[tuple[int, str]]:
    answers = [
        fetch(sidecar.url + "/echo", headers={"X-Forwarded-For": address, "X-Forwarded-Proto": proto})
        for address in addresses
    ]
    protos = [dict((k.lower(), v) for k, v in a.json()["headers"])["x-forwarded-proto"] if a.status == 200 else "" for a in answers]
    return [(a.status, p) for a, p in zip(answers, protos)]


def test_behind_a_trusted_proxy_each_forwarded_address_is_its_own_client(
    start_upstream: Callable[..., Running], start_sidecar: Callable[..., Running]
) -> None:
    sidecar = start_sidecar(start_upstream().url, rules=PER_CLIENT)  # loopback is trusted by default
    results = statuses_for(sidecar, ["198.18.0.1", "198.18.0.2", "198.18.0.1", "198.18.0.2", "198.18.0.1"])
    assert [status for status, _ in results] == [200, 200, 200, 200, 429]
    assert {proto for status, proto in results if status == 200} == {"https"}, "the proxy's scheme is kept"


def test_an_untrusted_peer_cannot_pick_its_address_or_scheme(
    start_upstream: Callable[..., Running], start_sidecar: Callable[..., Running]
) -> None:
    sidecar = start_sidecar(start_upstream().url, {"SIDECAR_TRUSTED_PROXIES": "10.0.0.0/8"}, rules=PER_CLIENT)
    results = statuses_for(sidecar, ["198.18.0.1", "198.18.0.2", "198.18.0.3"])
    assert [status for status, _ in results] == [200, 200, 429], "all one client: the peer"
    assert {proto for status, proto in results if status == 200} == {"http"}
