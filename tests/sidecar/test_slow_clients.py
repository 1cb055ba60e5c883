"""Slow and greedy clients cost the client, not the service: buffering, deadlines and connection caps."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.sidecar.conftest import Running, launch_sidecar, metric
from tests.sidecar.recording_upstream import RecordingUpstream
from tests.sidecar.wire import client, read_replies
from tests.support.slow_clients import ATTACKER, NORMAL, SlowClients, normal_client

HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def sidecar(recorder: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch_sidecar(
        tmp_path_factory.mktemp("slow"), recorder.url,
        {
            "SIDECAR_HEADER_TIMEOUT": str(HEAD_TIMEOUT), "SIDECAR_BODY_TIMEOUT": str(BODY_TIMEOUT),
            "SIDECAR_CLIENT_TIMEOUT": "30", "SIDECAR_MAX_CONNECTIONS_PER_CLIENT": "4", "SIDECAR_MAX_CONNECTIONS": "12",
            # Only 127.0.0.1 speaks for others here; the attacker and the normal client are 127.0.0.3 and .2.
            "SIDECAR_TRUSTED_PROXIES": "127.0.0.1/32",
        },
    )
    yield running
    running.process.stop()


def trickle(sock: socket.socket, data: bytes, every: float, until: float) -> None:
    """Send `data` a byte at a time, `every` seconds apart, until `until` or until the server closes."""
    for byte in data:
        if time.monotonic() >= until:
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return
        time.sleep(every)


def test_a_head_trickled_a_byte_at_a_time_is_cut_off_at_its_total_deadline(sidecar: Running) -> None:
    before = metric(sidecar.admin, "sidecar_client_timeouts_total", phase="head")
    with client(sidecar.port, source=NORMAL) as sock:
        started = time.monotonic()
        trickle(sock, b"GET /slow-head HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 100, 0.2, started + HEAD_TIMEOUT + 3)
        got = read_replies(sock, 1, timeout=3)
        elapsed = time.monotonic() - started
    assert [reply.status for reply in got.replies] == [408] and got.closed
    assert HEAD_TIMEOUT <= elapsed < HEAD_TIMEOUT + 1.5
    assert metric(sidecar.admin, "sidecar_client_timeouts_total", phase="head") == before + 1


def test_a_body_trickled_a_byte_at_a_time_gets_408_at_its_total_deadline(sidecar: Running) -> None:
    before = metric(sidecar.admin, "sidecar_client_timeouts_total", phase="body")
    with client(sidecar.port, source=NORMAL) as sock:
        sock.sendall(b"POST /slow-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        started = time.monotonic()
        trickle(sock, b"b" * 100, 0.2, started + BODY_TIMEOUT + 3)
        got = read_replies(sock, 1, timeout=3)
        elapsed = time.monotonic() - started
    assert [reply.status for reply in got.replies] == [408] and got.closed
    assert got.replies[0].json()["error"]["code"] == "request_timeout"
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 1.5
    assert metric(sidecar.admin, "sidecar_client_timeouts_total", phase="body") == before + 1


def test_a_body_is_read_whole_before_the_upstream_sees_anything(sidecar: Running, recorder: RecordingUpstream) -> None:
    case = uuid.uuid4().hex[:12]
    with client(sidecar.port, source=NORMAL) as sock:
        sock.sendall(b"POST /buffered?case=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf." % case.encode())
        time.sleep(0.5)
        assert recorder.received(case) == [], "a partial body must not open an upstream exchange"
        sock.sendall(b"done.")
        got = read_replies(sock, 1)
    assert got.replies[0].status == 200
    assert [r.body for r in recorder.received(case)] == [b"half.done."]


def test_one_address_gets_at_most_its_connection_cap_and_others_still_get_in(sidecar: Running) -> None:
    before = metric(sidecar.admin, "sidecar_connections_refused_total", reason="per_client")
    held = [socket.create_connection(("127.0.0.1", sidecar.port), source_address=(ATTACKER, 0)) for _ in range(4)]
    try:
        with client(sidecar.port, source=ATTACKER) as extra:
            refused = read_replies(extra, 1)
        with client(sidecar.port, source=NORMAL) as sock:
            sock.sendall(b"GET /still-served HTTP/1.1\r\nHost: x\r\n\r\n")
            served = read_replies(sock, 1)
    finally:
        for sock in held:
            sock.close()
    assert [r.status for r in refused.replies] == [503] and refused.closed
    assert refused.replies[0].json()["error"]["code"] == "too_many_connections"
    assert refused.replies[0].headers[b"retry-after"] == b"1"
    assert [r.status for r in served.replies] == [200]
    assert metric(sidecar.admin, "sidecar_connections_refused_total", reason="per_client") == before + 1


def test_the_global_connection_cap_refuses_past_it(sidecar: Running) -> None:
    before = metric(sidecar.admin, "sidecar_connections_refused_total", reason="max_connections")
    # 127.0.0.1 is a trusted proxy here, so only the global cap applies to it.
    held = [socket.create_connection(("127.0.0.1", sidecar.port)) for _ in range(12)]
    try:
        time.sleep(0.2)
        with client(sidecar.port) as extra:
            refused = read_replies(extra, 1)
    finally:
        for sock in held:
            sock.close()
    assert [r.status for r in refused.replies] == [503]
    assert metric(sidecar.admin, "sidecar_connections_refused_total", reason="max_connections") == before + 1


ATTACK_CONNECTIONS = 1100
ATTACK_SECONDS = 6.0


@pytest.mark.parametrize("mode", ["body", "head"])
def test_one_address_holding_1100_slow_connections_does_not_take_the_service_away(
    mode: str, start_bot: Callable[..., tuple], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The shortened acceptance run; `python -m bench slowclients` holds the attack 15 s and measures nginx beside it."""
    _, bot_url = start_bot()
    sidecar = launch_sidecar(tmp_path_factory.mktemp(f"attack-{mode}"), bot_url)
    attack = SlowClients(sidecar.port, ATTACK_CONNECTIONS, mode)
    try:
        attack.start()
        statuses = normal_client(sidecar.port, ATTACK_SECONDS)
        refused = metric(sidecar.admin, "sidecar_connections_refused_total", reason="per_client")
    finally:
        attack.stop()
        sidecar.process.stop()
    total = sum(statuses.values())
    assert total >= ATTACK_SECONDS * 5
    assert statuses[200] / total >= 0.95, statuses
    assert refused >= ATTACK_CONNECTIONS - 256, "the attacker's connections past the per-address cap are refused"
    assert attack.peak_open >= 250, "the attacker held its share of connections throughout"


def test_bodies_being_read_share_a_memory_budget_and_past_it_are_shed(
    recorder: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sidecar = launch_sidecar(tmp_path_factory.mktemp("buffer"), recorder.url, {"SIDECAR_MAX_BUFFERED_BYTES": "1000"})
    case = uuid.uuid4().hex[:12]
    try:
        with client(sidecar.port, source=NORMAL) as first, client(sidecar.port, source=NORMAL) as second:
            first.sendall(b"POST /first?case=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\n%s" % (case.encode(), b"a" * 700))
            time.sleep(0.3)
            assert metric(sidecar.admin, "sidecar_buffered_body_bytes") == 700
            second.sendall(b"POST /second?case=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\n%s" % (case.encode(), b"b" * 400))
            shed = read_replies(second, 1)
            first.sendall(b"a" * 100)
            served = read_replies(first, 1)
        assert [r.status for r in shed.replies] == [503]
        assert shed.replies[0].json()["error"]["code"] == "overloaded"
        assert [r.status for r in served.replies] == [200]
        assert [r.target for r in recorder.received(case)] == [f"/first?case={case}".encode()]
        assert metric(sidecar.admin, "sidecar_shed_total", reason="body_buffer") == 1
        assert metric(sidecar.admin, "sidecar_buffered_body_bytes") == 0, "every buffered byte is handed back"
    finally:
        sidecar.process.stop()


def test_a_connection_that_sends_nothing_is_closed_silently_at_the_head_deadline(sidecar: Running) -> None:
    before = metric(sidecar.admin, "sidecar_client_timeouts_total", phase="head")
    with client(sidecar.port, source=NORMAL) as sock:
        started = time.monotonic()
        sock.settimeout(HEAD_TIMEOUT + 3)
        assert sock.recv(100) == b""
        elapsed = time.monotonic() - started
    assert HEAD_TIMEOUT <= elapsed < HEAD_TIMEOUT + 1.5
    assert metric(sidecar.admin, "sidecar_client_timeouts_total", phase="head") == before + 1
