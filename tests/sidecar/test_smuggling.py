"""Request smuggling through the sidecar: the upstream parses exactly the requests the sidecar admitted.

Every case here was once seen to work against the public port. The upstream is a raw server
that parses what arrives with h11, so a request the sidecar let split, merge or lose its framing
shows up as an extra, missing or unparseable upstream request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.sidecar.conftest import Running, launch_sidecar
from tests.sidecar.recording_upstream import RecordingUpstream
from tests.sidecar.wire import converse, marker


@pytest.fixture(scope="module")
def sidecar(recorder: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch_sidecar(tmp_path_factory.mktemp("smuggling"), recorder.url, {"SIDECAR_BODY_TIMEOUT": "2"})
    yield running
    running.process.stop()


def smuggling(case: str, connection: str, inner: bytes) -> bytes:
    """`POST /api/health` whose body is another request, with `Connection` naming a framing field."""
    return (
        b"POST /api/health?case=%s HTTP/1.1\r\nHost: sidecar\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n%s"
        % (case.encode(), len(inner), connection.encode(), inner)
    )


@pytest.mark.parametrize("connection", ["Content-Length", "content-length, keep-alive", "X-Other, Content-Length"])
def test_content_length_named_in_connection_does_not_split_the_request(
    sidecar: Running, recorder: RecordingUpstream, connection: str
) -> None:
    case = marker()
    inner = b"GET /metrics?case=%s HTTP/1.1\r\nHost: x\r\n\r\n" % case.encode()
    errors = len(recorder.errors)

    got = converse(sidecar.port, smuggling(case, connection, inner), 2, timeout=1.5)

    arrived = recorder.received(case)
    assert [(r.method, r.body) for r in arrived] == [(b"POST", inner)]
    assert arrived[0].header(b"content-length") == [str(len(inner)).encode()]
    assert [reply.upstream_seq for reply in got.replies] == [arrived[0].seq]
    assert recorder.errors_since(errors) == []


def test_a_smuggled_slow_request_cannot_answer_the_next_client(sidecar: Running, recorder: RecordingUpstream) -> None:
    case = marker()
    attack = smuggling(case, "Content-Length", b"GET /slow?case=%s HTTP/1.1\r\nHost: x\r\n\r\n" % case.encode())
    assert converse(sidecar.port, attack, 1).replies[0].status == 200

    victim = converse(sidecar.port, b"GET /victim?case=%s HTTP/1.1\r\nHost: sidecar\r\n\r\n" % case.encode(), 1)

    assert victim.replies[0].json()["target"] == f"/victim?case={case}"
    assert [r.target for r in recorder.received(case)] == [f"/api/health?case={case}".encode(), f"/victim?case={case}".encode()]


def test_a_smuggled_long_body_cannot_swallow_the_next_clients_request(sidecar: Running, recorder: RecordingUpstream) -> None:
    case = marker()
    inner = b"POST /swallow?case=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n" % case.encode()
    assert converse(sidecar.port, smuggling(case, "Content-Length", inner), 1).replies[0].status == 200

    victim = converse(
        sidecar.port,
        b"GET /victim?case=%s HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer victim-secret\r\n\r\n" % case.encode(), 1,
    )

    assert victim.replies[0].json()["target"] == f"/victim?case={case}"
    assert not [r for r in recorder.requests if b"victim-secret" in r.body]
    assert [r.method for r in recorder.received(case)] == [b"POST", b"GET"]


def test_a_smuggled_forwarded_for_never_reaches_the_upstream(sidecar: Running, recorder: RecordingUpstream) -> None:
    case = marker()
    inner = b"GET /telegram/webhook?case=%s HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 149.154.160.1\r\n\r\n" % case.encode()

    converse(sidecar.port, smuggling(case, "Content-Length", inner), 2, timeout=1.5)

    arrived = recorder.received(case)
    assert len(arrived) == 1
    assert arrived[0].header(b"x-forwarded-for") == [b"127.0.0.1"]


@pytest.mark.parametrize("connection", ["host", "Host, close"])
def test_host_named_in_connection_still_reaches_the_upstream(sidecar: Running, recorder: RecordingUpstream, connection: str) -> None:
    case = marker()
    errors = len(recorder.errors)

    got = converse(sidecar.port, b"GET /h?case=%s HTTP/1.1\r\nHost: sidecar\r\nConnection: %s\r\n\r\n" % (case.encode(), connection.encode()), 1)

    assert got.replies[0].status == 200
    assert [r.header(b"host") for r in recorder.received(case)] == [[b"sidecar"]]
    assert recorder.errors_since(errors) == []


def test_transfer_encoding_named_in_connection_keeps_the_body_framed(sidecar: Running, recorder: RecordingUpstream) -> None:
    case = marker()
    inner = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    request = (
        b"POST /te?case=%s HTTP/1.1\r\nHost: sidecar\r\nTransfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (case.encode(), len(inner), inner)
    )

    got = converse(sidecar.port, request, 2, timeout=1.5)

    assert [(r.method, r.body) for r in recorder.received(case)] == [(b"POST", inner)]
    assert len(got.replies) == 1


def test_other_fields_named_in_connection_stay_on_their_hop(sidecar: Running, recorder: RecordingUpstream) -> None:
    case = marker()
    request = b"GET /hop?case=%s HTTP/1.1\r\nHost: sidecar\r\nConnection: X-Hop, Keep-Alive\r\nX-Hop: 1\r\nX-End: 2\r\n\r\n" % case.encode()

    converse(sidecar.port, request, 1)

    (arrived,) = recorder.received(case)
    assert arrived.header(b"x-hop") == [] and arrived.header(b"x-end") == [b"2"]


def test_an_unsolicited_upstream_response_closes_that_upstream_connection(sidecar: Running, recorder: RecordingUpstream) -> None:
    case = marker()
    first = converse(sidecar.port, b"GET /unsolicited?case=%s HTTP/1.1\r\nHost: sidecar\r\n\r\n" % case.encode(), 1)
    assert first.replies[0].status == 200
    (sent,) = recorder.received(case)
    deadline = threading.Event()
    for _ in range(40):
        if sent.connection in recorder.closed:
            break
        deadline.wait(0.05)
    assert sent.connection in recorder.closed

    after = converse(sidecar.port, b"GET /after?case=%s HTTP/1.1\r\nHost: sidecar\r\n\r\n" % case.encode(), 1)

    assert after.replies[0].json()["target"] == f"/after?case={case}"
    assert recorder.received(case)[-1].connection != sent.connection
