"""Client side of the wire-level tests: raw bytes out, responses read back with h11 (strict)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import h11


def marker() -> str:
    """A short unique string to find one request among the bytes an upstream recorded."""
    return uuid.uuid4().hex[:12]


@dataclass
class Reply:
    """One response as h11 parsed it off the client connection."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes

    @property
    def upstream_seq(self) -> int | None:
        """The recording upstream's sequence number, when the response came from it (None: answered locally)."""
        value = self.headers.get(b"x-upstream-seq")
        return int(value) if value is not None else None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Conversation:
    """What a client connection got back: the responses in order, and whether the server closed it."""

    replies: list[Reply]
    closed: bool
    error: str | None = None


@contextmanager
def client(port: int, *, source: str = "127.0.0.1", timeout: float = 5.0) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    try:
        yield sock
    finally:
        sock.close()


def read_replies(sock: socket.socket, expected: int, *, timeout: float = 3.0) -> Conversation:
    """Read up to `expected` responses (fewer if the server closes first, or stays silent past `timeout`)."""
    buffer = b""
    replies: list[Reply] = []
    closed = False
    deadline = time.monotonic() + timeout
    while len(replies) < expected:
        parser = h11.Connection(h11.CLIENT)
        parser.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        parser.send(h11.EndOfMessage())
        if buffer:
            parser.receive_data(buffer)  # (an empty one would mean end of stream to h11)
        status, headers, body = 0, {}, bytearray()
        try:
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    if closed:
                        return Conversation(replies, True, "closed mid-response" if buffer else None)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return Conversation(replies, False)
                    sock.settimeout(remaining)
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        return Conversation(replies, False)
                    except ConnectionResetError:
                        data = b""
                    buffer += data
                    if not data:
                        closed = True
                        if not buffer:
                            return Conversation(replies, True)  # closed between responses
                    parser.receive_data(data)
                elif isinstance(event, h11.InformationalResponse):
                    continue
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {name: value for name, value in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return Conversation(replies, True)
        except h11.RemoteProtocolError as exc:
            return Conversation(replies, closed, f"invalid response: {exc}")
        replies.append(Reply(status, headers, bytes(body)))
        buffer = parser.trailing_data[0]
    if not closed and not buffer:
        sock.settimeout(0.05)
        try:
            closed = sock.recv(1, socket.MSG_PEEK) == b""
        except (TimeoutError, BlockingIOError):
            pass
        except ConnectionResetError:
            closed = True
    return Conversation(replies, closed)


def converse(port: int, data: bytes | list[bytes], expected: int, *, source: str = "127.0.0.1",
             timeout: float = 3.0, half_close: bool = False) -> Conversation:
    """Send `data` (pieces are sent one by one), then read up to `expected` responses."""
    with client(port, source=source) as sock:
        try:
            for piece in data if isinstance(data, list) else [data]:
                sock.sendall(piece)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed early (a refusal); what it answered is still to be read
        return read_replies(sock, expected, timeout=timeout)
