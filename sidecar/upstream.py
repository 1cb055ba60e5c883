"""Upstream side of the proxy: keep-alive connections that parse responses and relay them to the client."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpResponseParser

if TYPE_CHECKING:
    from sidecar.exchange import Exchange

# Response fields that describe one connection, not the message (RFC 9110 7.6.1); framing is redone.
_HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"))
_REQUEST_ID = b"x-request-id"


class UpstreamConnection(asyncio.Protocol):
    """One pooled connection; while it serves an exchange it turns the upstream's response into
    bytes for the client, written once per read so a small response costs one write."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.parser = HttpResponseParser(self)
        self.last_activity = 0.0
        self.reused = False
        self.reusable = True
        self.reading_paused = False
        self._out: list[bytes] = []
        self._reset_response()

    def _reset_response(self) -> None:
        self.status = 0
        self.started = False
        self.done = False
        self.keep_alive = True
        self._reason = b""
        self._head: list[bytes] = [b""]
        self._has_request_id = False
        self._connection_tokens = b""
        self._has_length = False
        self._chunked_in = False
        self._chunked_out = False
        self._until_close = False
        self._interim = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.pool.loop.time()
        exchange = self.exchange
        if exchange is None:
            # Bytes with no request outstanding: the connection is out of sync, never reuse it.
            self.reusable = False
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except HttpParserError:
            self.reusable = False
            if self._out:
                exchange.relay(self._out)
            self.exchange = None
            self.close()
            exchange.upstream_broken("the upstream sent an invalid response", started=self.started)
            return
        if self._out:
            exchange.relay(self._out)
        if self.done:
            self.exchange = None
            if self.reusable and self.keep_alive and exchange.request_complete:
                self.pool.release(self)
            else:
                self.close()
            exchange.response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        self.transport = None
        exchange = self.exchange
        if exchange is None:
            return
        self.exchange = None
        if self._until_close and self.started:
            # A response framed by the end of the connection is complete exactly now.
            if self._chunked_out:
                self._out.append(b"0\r\n\r\n")
            if self._out:
                exchange.relay(self._out)
            exchange.response_complete()
        else:
            exchange.upstream_broken("the upstream closed the connection", started=self.started, reused=self.reused)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.conn.pause_reading()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.conn.resume_reading()

    # Called by the exchange

    def begin(self, exchange: Exchange, payload: bytes) -> None:
        """Send one request; the response is relayed to `exchange`."""
        self.exchange = exchange
        self._reset_response()
        self.last_activity = self.pool.loop.time()
        assert self.transport is not None
        self.transport.write(payload)

    def send_body(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    # httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.started:
            return  # trailer fields: dropped, as the framing is redone
        low = name.lower()
        if low in _HOP_BY_HOP:
            if low == b"transfer-encoding":
                self._chunked_in = b"chunked" in value.lower()
            elif low == b"connection":
                self._connection_tokens += b"," + value
            return
        if low == b"content-length":
            self._has_length = True
        elif low == _REQUEST_ID:
            self._has_request_id = True
        self._head += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        exchange = self.exchange
        assert exchange is not None
        if status < 200:
            # An interim response (103 Early Hints...) is not relayed; the final one follows.
            self._interim = True
            self._head = [b""]
            self._reason = b""
            return
        self.status = status
        self.started = True
        self.keep_alive = self.parser.should_keep_alive()
        head = self._head
        if self._connection_tokens:
            head = without_listed(head, self._connection_tokens)
        head[0] = b"HTTP/1.1 %d %s\r\n" % (status, self._reason)
        if not self._has_request_id:
            head.append(b"X-Request-ID: %s\r\n" % exchange.request_id.encode())
        no_body = exchange.is_head or status in (204, 304)
        if not no_body and not self._has_length:
            if exchange.http10:
                exchange.close_connection = True
            else:
                head.append(b"Transfer-Encoding: chunked\r\n")
                self._chunked_out = True
            # Without a length or chunking, the end of the connection ends the body.
            self._until_close = not self._chunked_in
        if exchange.close_connection or not exchange.keep_alive:
            exchange.close_connection = True
            head.append(b"Connection: close\r\n")
        elif exchange.http10:
            head.append(b"Connection: keep-alive\r\n")
        head.append(b"\r\n")
        self._out.append(b"".join(head))
        exchange.response_started(status)
        if exchange.is_head:
            # httptools cannot be told the request was HEAD, so it would wait for a body; end here.
            self.done = True
            self.reusable = False

    def on_body(self, body: bytes) -> None:
        if self._chunked_out:
            self._out.append(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self._out.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._chunked_out:
            self._out.append(b"0\r\n\r\n")
        self.done = True


def without_listed(parts: list[bytes], tokens: bytes) -> list[bytes]:
    """Drop the fields a Connection header named: they were meant for one hop only (RFC 9110 7.6.1).

    `parts` is a head as built here: a start line, then (name, ": ", value, CRLF) per field.
    """
    names = {token.strip().lower() for token in tokens.split(b",")} - {b"", b"close", b"keep-alive"}
    if not names:
        return parts
    kept: list[bytes] = [parts[0]]
    for i in range(1, len(parts) - 3, 4):
        if parts[i].lower() not in names:
            kept.extend(parts[i:i + 4])
    return kept


class UpstreamPool:
    """Idle keep-alive connections to one upstream, newest first, closed after `idle_timeout`."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        max_idle: int,
        idle_timeout: float,
        connect_timeout: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.loop = loop
        self.idle: list[UpstreamConnection] = []
        self.busy: set[UpstreamConnection] = set()

    def take(self) -> UpstreamConnection | None:
        """An idle open connection, or None when a new one must be opened."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                self.busy.add(conn)
                return conn
        return None

    async def connect(self) -> UpstreamConnection:
        """Open a new connection; raises OSError (refused) or TimeoutError (connect timeout)."""
        _, conn = await asyncio.wait_for(
            self.loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port),
            self.connect_timeout,
        )
        self.busy.add(conn)
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        self.busy.discard(conn)
        conn.resume_reading()
        if len(self.idle) < self.max_idle:
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        self.busy.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def sweep(self, now: float, read_timeout: float) -> None:
        """Close idle connections past their idle timeout; time out busy ones that went silent."""
        stale = [conn for conn in self.idle if now - conn.last_activity > self.idle_timeout]
        for conn in stale:
            self.idle.remove(conn)
            conn.close()
        for conn in list(self.busy):
            exchange = conn.exchange
            if exchange is not None and now - conn.last_activity > read_timeout:
                conn.exchange = None
                conn.close()
                exchange.upstream_timed_out(started=conn.started)

    def close(self) -> None:
        for conn in [*self.idle, *self.busy]:
            conn.close()
        self.idle.clear()
