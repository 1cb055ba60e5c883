"""What the upstream sees per request: one write holding the whole request, on a pooled connection.

A request's head and body leaving in separate writes would cost the upstream a second wake-up
(and, with Nagle's algorithm anywhere on the path, a delayed-ACK wait); a pooled connection that
had to be checked before use would cost a round trip. The recording upstream notes each recv(),
so both show up as facts about the bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.sidecar.conftest import Running, launch_sidecar
from tests.sidecar.recording_upstream import RecordingUpstream
from tests.sidecar.wire import client, marker, read_replies


@pytest.fixture(scope="module")
def sidecar(recorder: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch_sidecar(tmp_path_factory.mktemp("upstream-writes"), recorder.url)
    yield running
    running.process.stop()


def send_in_pieces(sidecar: Running, pieces: list[bytes]) -> int:
    """Send a request a piece at a time, pausing between pieces; returns the reply's status."""
    with client(sidecar.port) as sock:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.05)
        got = read_replies(sock, 1)
    assert len(got.replies) == 1, got
    return got.replies[0].status


def test_a_get_reaches_the_upstream_in_one_write(sidecar: Running, recorder: RecordingUpstream) -> None:
    case = marker()
    assert send_in_pieces(sidecar, [b"GET /echo?case=%s HTTP/1.1\r\nHost: x\r\n\r\n" % case.encode()]) == 200

    [read] = recorder.reads_holding(case)
    assert read.startswith(b"GET /echo?case=%s HTTP/1.1\r\n" % case.encode())
    assert read.endswith(b"\r\n\r\n")


def test_a_body_sent_in_pieces_reaches_the_upstream_with_its_head_in_one_write(
    sidecar: Running, recorder: RecordingUpstream
) -> None:
    case = marker()
    body = b'{"message": "%s"}' % (b"x" * 300)
    head = b"POST /echo?case=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (case.encode(), len(body))

    assert send_in_pieces(sidecar, [head, body[:100], body[100:]]) == 200

    [read] = recorder.reads_holding(case)
    assert read.startswith(b"POST /echo?case=%s HTTP/1.1\r\n" % case.encode())
    assert read.endswith(b"\r\n\r\n" + body), "the head waited for the body and left with it"
    assert [r.body for r in recorder.received(case)] == [body]


def test_a_chunked_body_sent_in_pieces_reaches_the_upstream_in_one_write(
    sidecar: Running, recorder: RecordingUpstream
) -> None:
    case = marker()
    head = b"POST /echo?case=%s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" % case.encode()

    assert send_in_pieces(sidecar, [head, b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"]) == 200

    [read] = recorder.reads_holding(case)
    assert b"\r\ncontent-length: 11\r\n" in read.lower()
    assert read.endswith(b"\r\n\r\nhello world")


def test_requests_from_new_clients_reuse_one_upstream_connection_without_checking_it(
    sidecar: Running, recorder: RecordingUpstream
) -> None:
    case = marker()
    for n in range(5):
        assert send_in_pieces(sidecar, [b"GET /echo?case=%s&n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (case.encode(), n)]) == 200

    arrived = recorder.received(case)
    assert len(arrived) == 5
    assert len({r.connection for r in arrived}) == 1, "each request after the first took a pooled connection"
    connection = arrived[0].connection
    requests_on_it = [r for r in recorder.requests if r.connection == connection]
    # Nothing but requests was written on that connection: no probe or check before reuse.
    assert bytes(recorder.raw[connection]).count(b" HTTP/1.1\r\n") == len(requests_on_it)
