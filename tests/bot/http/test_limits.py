"""The bot's limits against slow and greedy clients, each tried on a real bot process over raw sockets."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.ports import free_port
from tests.support.processes import Process, http_ok, python_module

LIMITS = {
    "BOT_KEEPALIVE_TIMEOUT": "1", "BOT_READ_TIMEOUT": "1", "BOT_MAX_LINE_SIZE": "1024",
    "BOT_MAX_FIELD_SIZE": "1024", "BOT_MAX_HEADERS": "32", "BOT_MAX_BODY_BYTES": "4096",
}


def start(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> tuple[Process, int]:
    workdir = tmp_path_factory.mktemp("limits")
    port = free_port()
    proc = Process(f"bot-{port}", python_module("bot"),
                   {"BOT_PORT": str(port), "BOT_DATA_DIR": str(workdir / "data"), **env}, workdir)
    proc.wait_http(f"http://127.0.0.1:{port}/health")
    return proc, port


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Process, int]]:
    proc, port = start(tmp_path_factory, LIMITS)
    yield proc, port
    proc.stop()
    assert "Traceback" not in proc.output()


@pytest.fixture(scope="module")
def capped_bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Process, int]]:
    proc, port = start(tmp_path_factory, {"BOT_MAX_CONNECTIONS": "4"})
    yield proc, port
    proc.stop()
    assert "Traceback" not in proc.output()


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one response whose body has a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(port) as sock:
        sock.sendall(raw)
        return read_response(sock)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def test_a_client_trickling_its_headers_is_cut_off(bot: tuple[Process, int]) -> None:
    proc, port = bot
    with connect(port, timeout=0.2) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /api/v1/chat HTTP/1.1\r\nHost: bot\r\n")
        cut = False
        while time.monotonic() - started < 8 and not cut:
            try:
                sock.sendall(b"X-Slow: y\r\n")
            except ConnectionError:
                cut = True
                break
            cut = closed_by_server(sock)
        elapsed = time.monotonic() - started
    assert cut, "the trickling client was never cut off"
    assert 0.9 <= elapsed < 5, elapsed
    assert http_ok(f"http://127.0.0.1:{port}/health", timeout=2)


def test_an_idle_connection_is_closed_after_the_keepalive_timeout(bot: tuple[Process, int]) -> None:
    _, port = bot
    with connect(port, timeout=8) as sock:
        started = time.monotonic()
        assert closed_by_server(sock)
        assert 0.9 <= time.monotonic() - started < 5


def test_a_body_slower_than_the_read_timeout_gets_a_json_408(bot: tuple[Process, int]) -> None:
    _, port = bot
    with connect(port, timeout=0.2) as sock:
        sock.sendall(b"POST /api/v1/chat HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200\r\n\r\n{\"message\": \"")
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < 8 and b"\r\n\r\n" not in answer:
            with contextlib.suppress(ConnectionError):
                sock.sendall(b"x")
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(4096)
        elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert 0.9 <= elapsed < 5, elapsed
    assert json.loads(body)["error"]["code"] == "request_timeout"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /health?" + b"a" * 2000 + b" HTTP/1.1\r\nHost: bot\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: bot\r\nX-Big: " + b"b" * 2000 + b"\r\n\r\n",
    ],
    ids=["request line", "header field"],
)
def test_an_oversized_request_line_or_header_is_a_json_431(bot: tuple[Process, int], raw: bytes) -> None:
    status, headers, body = exchange(bot[1], raw)
    assert (status, headers["content-type"]) == (431, "application/json")
    assert json.loads(body)["error"]["code"] == "headers_too_large"
    assert b"bbbb" not in body and b"aaaa" not in body


def test_too_many_headers_or_garbage_is_a_json_400(bot: tuple[Process, int]) -> None:
    many = b"GET /health HTTP/1.1\r\nHost: bot\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(40)) + b"\r\n"
    for raw in (many, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not http at all\r\n\r\n"):
        status, headers, body = exchange(bot[1], raw)
        assert (status, headers["content-type"]) == (400, "application/json")
        assert json.loads(body)["error"]["code"] == "bad_request"


def test_a_body_over_the_size_limit_is_a_json_413(bot: tuple[Process, int]) -> None:
    body = json.dumps({"message": "x" * 5000}).encode()
    status, _, answer = exchange(bot[1], b"POST /api/v1/chat HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert status == 413
    assert json.loads(answer)["error"]["code"] == "payload_too_large"


def test_connections_over_the_cap_get_a_json_503_until_one_closes(capped_bot: tuple[Process, int]) -> None:
    proc, port = capped_bot
    held = []
    try:
        for _ in range(4):
            sock = connect(port)
            # A full keep-alive exchange proves the server holds this connection.
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: bot\r\n\r\n")
            assert read_response(sock)[0] == 200
            held.append(sock)
        status, headers, body = exchange(port, b"GET /health HTTP/1.1\r\nHost: bot\r\n\r\n")
        assert (status, headers["retry-after"]) == (503, "1")
        assert json.loads(body)["error"]["code"] == "too_many_connections"
    finally:
        for sock in held:
            sock.close()
    proc.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout=5, what="taking connections again")
    proc.wait_until(lambda: "connection cap reached" in proc.output(), timeout=5, what="logging the cap")
