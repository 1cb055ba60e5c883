"""The proxy path, against a real sidecar process and a real upstream: what arrives, what comes back."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.sidecar.conftest import Running, fetch, launch_sidecar, launch_upstream, raw_exchange

MAX_BODY = 4096
READ_TIMEOUT = 1.0
CLIENT_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Running]]:
    """One upstream and one sidecar in front of it, shared by the tests of this module."""
    workdir = tmp_path_factory.mktemp("proxy")
    upstream = launch_upstream(workdir)
    try:
        sidecar = launch_sidecar(
            workdir, upstream.url,
            {
                "SIDECAR_MAX_BODY_BYTES": str(MAX_BODY), "SIDECAR_READ_TIMEOUT": str(READ_TIMEOUT),
                "SIDECAR_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT),
            },
        )
    except Exception:
        upstream.process.stop()
        raise
    yield sidecar, upstream
    sidecar.process.stop()
    upstream.process.stop()


@pytest.fixture
def sidecar(stack: tuple[Running, Running]) -> Running:
    return stack[0]


@pytest.fixture
def connection(sidecar: Running) -> Iterator[Callable[[], http.client.HTTPConnection]]:
    """Open keep-alive connections to the sidecar; all closed after the test."""
    opened: list[http.client.HTTPConnection] = []

    def open_one() -> http.client.HTTPConnection:
        opened.append(http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=10))
        return opened[-1]

    yield open_one
    for conn in opened:
        conn.close()


def echoed(response: http.client.HTTPResponse) -> dict[str, Any]:
    data = json.loads(response.read())
    data["header_map"] = {}
    for name, value in data["headers"]:
        data["header_map"].setdefault(name.lower(), value)
    return data


def assert_json_error(status: int, body: bytes, code: str) -> None:
    error = json.loads(body)["error"]
    assert error["code"] == code, (status, body)
    assert error["message"]


def test_method_path_query_body_and_headers_arrive_unchanged(sidecar: Running, connection: Callable[[], http.client.HTTPConnection]) -> None:
    conn = connection()
    conn.request("PUT", "/some/path?a=1&b=%20x&a=2", body=b'{"k": "v"}', headers={"X-Custom": "value", "Content-Type": "application/json"})
    response = conn.getresponse()
    echo = echoed(response)
    assert response.status == 200
    assert echo["method"] == "PUT"
    assert echo["path"] == "/some/path?a=1&b=%20x&a=2"
    assert echo["body"] == '{"k": "v"}'
    assert echo["header_map"]["x-custom"] == "value"
    assert echo["header_map"]["content-type"] == "application/json"
    assert echo["header_map"]["host"] == f"127.0.0.1:{sidecar.port}"


def test_forwarding_headers_request_id_and_traceparent_are_added(sidecar: Running, connection: Callable[[], http.client.HTTPConnection]) -> None:
    conn = connection()
    conn.request("GET", "/anything")
    response = conn.getresponse()
    echo = echoed(response)
    sent = echo["header_map"]
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert re.fullmatch(r"[0-9a-f]{32}", sent["x-request-id"])
    assert response.getheader("X-Request-ID") == sent["x-request-id"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", sent["traceparent"])


def test_an_incoming_request_id_and_trace_are_continued(sidecar: Running, connection: Callable[[], http.client.HTTPConnection]) -> None:
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    conn = connection()
    conn.request("GET", "/anything", headers={
        "X-Request-ID": "req-42.abc", "traceparent": f"00-{trace_id}-{parent}-01",
        "X-Forwarded-For": "203.0.113.9",
    })
    response = conn.getresponse()
    sent = echoed(response)["header_map"]
    assert sent["x-request-id"] == "req-42.abc" == response.getheader("X-Request-ID")
    version, trace, span, flags = sent["traceparent"].split("-")
    assert (version, trace, flags) == ("00", trace_id, "01")
    assert span != parent, "the sidecar's own span becomes the parent"
    assert sent["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"


def test_an_unusable_request_id_is_replaced(sidecar: Running, connection: Callable[[], http.client.HTTPConnection]) -> None:
    conn = connection()
    conn.request("GET", "/anything", headers={"X-Request-ID": "has spaces and {braces}"})
    sent = echoed(conn.getresponse())["header_map"]
    assert re.fullmatch(r"[0-9a-f]{32}", sent["x-request-id"])


def test_hop_by_hop_request_headers_stay_on_this_hop(sidecar: Running, connection: Callable[[], http.client.HTTPConnection]) -> None:
    conn = connection()
    conn.request("GET", "/anything", headers={
        "Connection": "keep-alive, X-Hop-Only", "X-Hop-Only": "1", "Keep-Alive": "timeout=5",
        "TE": "trailers", "Proxy-Authorization": "Basic c2VjcmV0", "X-End-To-End": "kept",
    })
    sent = echoed(conn.getresponse())["header_map"]
    for name in ("x-hop-only", "keep-alive", "te", "proxy-authorization"):
        assert name not in sent, name
    assert sent["x-end-to-end"] == "kept"
    assert sent.get("connection", "keep-alive").lower() == "keep-alive"


def test_hop_by_hop_response_headers_stay_on_the_upstream_hop(sidecar: Running, connection: Callable[[], http.client.HTTPConnection]) -> None:
    conn = connection()
    conn.request("GET", "/hop")
    response = conn.getresponse()
    assert response.read() == b"ok"
    assert response.getheader("X-End-To-End") == "kept"
    assert response.getheader("X-Hop-Only") is None
    assert response.getheader("Keep-Alive") is None


def test_a_response_like_the_bots_is_relayed_byte_for_byte(
    stack: tuple[Running, Running], connection: Callable[[], http.client.HTTPConnection]
) -> None:
    sidecar, upstream = stack
    direct = fetch(upstream.url + "/like-the-bot", headers={"X-Request-ID": "same-id"})
    conn = connection()
    conn.request("GET", "/like-the-bot", headers={"X-Request-ID": "same-id"})
    response = conn.getresponse()
    assert response.read() == direct.body == b"relayed"
    relayed = {k.lower(): v for k, v in response.getheaders()}
    assert relayed.keys() == direct.headers.keys()
    assert relayed["x-request-id"] == "same-id"
    assert relayed["server"] == direct.headers["server"]


def test_bytes_past_the_declared_length_are_not_relayed(
    sidecar: Running, connection: Callable[[], http.client.HTTPConnection]
) -> None:
    conn = connection()
    conn.request("GET", "/overlong")
    assert conn.getresponse().read() == b"ok"
    conn.request("GET", "/after-overlong")
    assert echoed(conn.getresponse())["path"] == "/after-overlong"


def test_an_interim_response_is_not_relayed(sidecar: Running) -> None:
    answer = raw_exchange(sidecar.port, b"GET /early-hints HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"103" not in answer and answer.endswith(b"\r\n\r\nfinal")


def test_a_chunked_request_body_arrives_whole_and_framed_by_its_length(
    sidecar: Running, connection: Callable[[], http.client.HTTPConnection]
) -> None:
    parts = [b"first,", b"second,", b"third"]
    conn = connection()
    conn.request("POST", "/upload", body=iter(parts), encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    echo = echoed(conn.getresponse())
    assert echo["body"] == "first,second,third"
    assert echo["header_map"]["content-length"] == "18"
    assert "transfer-encoding" not in echo["header_map"]


def test_chunked_and_close_delimited_responses_arrive_whole(sidecar: Running) -> None:
    answer = fetch(sidecar.url + "/chunked?parts=40")
    assert answer.body == b"".join(f"part {i}\n".encode() for i in range(40))
    assert fetch(sidecar.url + "/until-close").body == b"body until close"


def test_a_large_response_is_streamed_intact(sidecar: Running) -> None:
    size = 4 * 1024 * 1024
    answer = fetch(sidecar.url + f"/big?bytes={size}")
    assert len(answer.body) == size
    assert hashlib.sha256(answer.body).digest() == hashlib.sha256(bytes(range(256)) * (size // 256)).digest()


def test_http10_clients_get_responses_they_can_frame(sidecar: Running) -> None:
    # A chunked upstream response cannot go to an HTTP/1.0 client: it is sent raw and the connection closes.
    answer = raw_exchange(sidecar.port, b"GET /chunked?parts=3 HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
    assert body == b"part 0\npart 1\npart 2\n"
    # An HTTP/1.0 client asking for keep-alive keeps its connection when the response has a length.
    import socket

    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as sock:
        for path in (b"/one", b"/two"):
            sock.sendall(b"GET " + path + b" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            reply = b""
            while b'"body_length"' not in reply:
                reply += sock.recv(65536)
            assert b"Connection: keep-alive" in reply and b'"path": "' + path + b'"' in reply


def test_one_keep_alive_connection_serves_many_requests(sidecar: Running, connection: Callable[[], http.client.HTTPConnection]) -> None:
    conn = connection()
    for i in range(30):
        conn.request("GET", f"/seq/{i}")
        assert echoed(conn.getresponse())["path"] == f"/seq/{i}"


def test_pipelined_requests_are_answered_in_order(sidecar: Running) -> None:
    requests = b"".join(f"GET /pipe/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5))
    requests += b"GET /pipe/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    data = raw_exchange(sidecar.port, requests)
    assert data.count(b"HTTP/1.1 200 OK") == 6
    paths = re.findall(rb'"path": "(/pipe/[^"]+)"', data)
    assert paths == [f"/pipe/{i}".encode() for i in range(5)] + [b"/pipe/last"]


def test_head_requests_get_headers_only_and_the_connection_stays_usable(sidecar: Running, connection: Callable[[], http.client.HTTPConnection]) -> None:
    conn = connection()
    conn.request("HEAD", "/anything")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b""
    assert int(response.getheader("Content-Length")) > 0
    conn.request("GET", "/after-head")
    assert echoed(conn.getresponse())["path"] == "/after-head"


def test_expect_100_continue_is_answered_before_the_body(sidecar: Running) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as sock:
        sock.sendall(b"POST /continued HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        reply = b""
        while b'"body_length"' not in reply:
            reply += sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200 OK")
    assert b'"body": "hello"' in reply and b"expect" not in reply.lower().split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize(
    "path",
    ["/metrics", "/%6Detrics", "/sidecar/health", "/sidecar/ready", "/x/../metrics", "/alerts/alertmanager", "/%61lerts/alertmanager"],
)
def test_the_public_port_never_serves_metrics_admin_or_alert_routes(sidecar: Running, path: str) -> None:
    answer = raw_exchange(sidecar.port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404")
    assert_json_error(404, body, "not_found")
    assert b"_total" not in body


def test_absolute_form_targets_are_checked_like_paths(sidecar: Running) -> None:
    answer = raw_exchange(sidecar.port, b"GET http://example.test/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404")
    answer = raw_exchange(sidecar.port, b"GET http://example.test/fine?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and b'"path": "/fine?q=1"' in answer


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
    ],
)
def test_malformed_requests_get_a_400_json_error_and_a_closed_connection(sidecar: Running, request_bytes: bytes) -> None:
    answer = raw_exchange(sidecar.port, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert b"Connection: close" in head
    assert_json_error(400, body, "bad_request")


def test_connect_and_upgrade_requests_are_not_tunnelled(sidecar: Running) -> None:
    answer = raw_exchange(sidecar.port, b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405")
    assert_json_error(405, body, "method_not_allowed")


def test_a_declared_body_over_the_limit_gets_413(sidecar: Running) -> None:
    answer = fetch(sidecar.url + "/upload", method="POST", body=b"x" * (MAX_BODY + 1))
    assert answer.status == 413
    assert_json_error(413, answer.body, "payload_too_large")


def test_a_chunked_body_growing_over_the_limit_gets_413(sidecar: Running) -> None:
    chunk = b"y" * 1000
    data = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    data += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    answer = raw_exchange(sidecar.port, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert_json_error(413, body, "payload_too_large")


def test_an_oversized_head_gets_431(sidecar: Running) -> None:
    headers = "".join(f"X-Filler-{i}: {'z' * 1000}\r\n" for i in range(80))
    answer = raw_exchange(sidecar.port, f"GET /anything HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431")
    assert_json_error(431, body, "headers_too_large")


def test_a_silent_upstream_gives_504_after_the_read_timeout(sidecar: Running) -> None:
    started = time.monotonic()
    answer = fetch(sidecar.url + "/silent")
    elapsed = time.monotonic() - started
    assert answer.status == 504
    assert_json_error(504, answer.body, "gateway_timeout")
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 1.5


def test_a_stalled_request_body_gets_408_and_an_idle_connection_is_closed(sidecar: Running) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert CLIENT_TIMEOUT <= time.monotonic() - started < CLIENT_TIMEOUT + 1.5
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"Connection: close" in head
    assert_json_error(408, body, "request_timeout")

    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as sock:
        sock.sendall(b"GET /before-idle HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        assert b"/before-idle" in received
        assert CLIENT_TIMEOUT <= time.monotonic() - started < CLIENT_TIMEOUT + 1.5, "closed once idle past the timeout"


@pytest.mark.parametrize("path", ["/reset", "/garbage"])
def test_a_reset_or_invalid_upstream_response_gives_502(sidecar: Running, path: str) -> None:
    answer = fetch(sidecar.url + path)
    assert answer.status == 502
    assert_json_error(502, answer.body, "bad_gateway")


def test_an_upstream_dying_mid_response_closes_the_client_connection(sidecar: Running, connection: Callable[[], http.client.HTTPConnection]) -> None:
    conn = connection()
    conn.request("GET", "/truncated")
    response = conn.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead):
        response.read()


def test_the_sidecar_keeps_working_after_every_failure(sidecar: Running) -> None:
    assert fetch(sidecar.url + "/still-alive").status == 200
