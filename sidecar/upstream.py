"""Upstream side of the proxy: keep-alive connections that parse responses and relay them to the client."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpResponseParser

if TYPE_CHECKING:
    from sidecar.exchange import Exchange

# Response fields that describe one connection, not the message (RFC 9110 7.6.1); framing is redone.
_HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"))
# One pass over a response head finds every field the relay has to act on.
_FIELDS = re.compile(
    rb"\r\n(connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade|content-length|x-request-id)"
    rb"[ \t]*:[ \t]*([^\r\n]*)",
    re.IGNORECASE,
)


class UpstreamConnection(asyncio.Protocol):
    """One pooled connection; while it serves an exchange it relays the upstream's response.

    The common response (a length, an X-Request-ID, no hop-by-hop field) is relayed as the
    bytes that arrived, exactly as long as its framing says: no header is parsed in Python.
    Anything else gets its head rebuilt. Either way a response that arrives in one read
    leaves in one write.
    """

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
        self._raw: list[bytes] = []
        self._passthrough = False
        self._left = 0
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
        relaying = self._passthrough
        if not self.started:
            self._raw.append(data)
        try:
            self.parser.feed_data(data)
        except HttpParserError:
            self.reusable = False
            if not self.done:
                if self._out:
                    exchange.relay(self._out)
                self.exchange = None
                self.close()
                exchange.upstream_broken("the upstream sent an invalid response", started=self.started)
                return
            # Garbage after a complete response: the response stands, the connection does not.
        if relaying:
            self._relay_raw(data)
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

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        assert exchange is not None
        raw = self._raw[0] if len(self._raw) == 1 else b"".join(self._raw)
        end = raw.find(b"\r\n\r\n") + 4
        if end < 4:
            raise HttpParserError("response head not ended by CRLF CRLF")
        status = self.parser.get_status_code()
        if status < 200:
            # An interim response (103 Early Hints...) is not relayed; the final one follows it.
            self._interim = True
            self._raw = [raw[end:]]
            return
        self.status = status
        self.started = True
        self._raw = []
        self.keep_alive = self.parser.should_keep_alive()
        fields: dict[bytes, bytes] = {}
        for name, value in _FIELDS.findall(raw, 0, end):
            name = name.lower()
            fields[name] = fields[name] + b"," + value if name in fields else value
        length = fields.get(b"content-length")
        if (
            length is not None and b"x-request-id" in fields and len(fields) == 2 and exchange.keep_alive
            and not (exchange.is_head or exchange.http10 or exchange.close_connection or exchange.proxy.draining)
        ):
            self._passthrough = True
            self._left = end + int(length)
            self._relay_raw(raw)
        else:
            self._out.append(self._rebuilt_head(raw[:end], status, fields, exchange))
        exchange.status = status
        exchange.response_begun = True
        if exchange.is_head:
            # httptools cannot be told the request was HEAD, so it would wait for a body; end here.
            self.done = True
            self.reusable = False

    def _relay_raw(self, data: bytes) -> None:
        """Pass response bytes on as they are, up to the end its Content-Length sets."""
        left = self._left
        if left >= len(data):
            self._out.append(data)
            self._left = left - len(data)
        elif left:
            self._out.append(data[:left])
            self._left = 0
            self.reusable = False  # bytes past the response: the upstream is out of step

    def _rebuilt_head(self, head: bytes, status: int, fields: dict[bytes, bytes], exchange: Exchange) -> bytes:
        """The head for the client: hop-by-hop fields dropped, framing and connection redone."""
        lines = head[:-4].split(b"\r\n")
        reason = lines[0].split(b" ", 2)[2] if lines[0].count(b" ") >= 2 else b""
        dropped = set(_HOP_BY_HOP)
        dropped.update(token.strip().lower() for token in fields.get(b"connection", b"").split(b","))
        # A Connection header never removes the length the body is framed by (one response in, one out).
        dropped.discard(b"content-length")
        out = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for line in lines[1:]:
            name = line.partition(b":")[0].strip()
            if name.lower() not in dropped:
                out.append(line + b"\r\n")
        if b"x-request-id" not in fields:
            out.append(b"X-Request-ID: %s\r\n" % exchange.request_id.encode())
        no_body = exchange.is_head or status in (204, 304)
        if not no_body and b"content-length" not in fields:
            if exchange.http10:
                exchange.close_connection = True
            else:
                out.append(b"Transfer-Encoding: chunked\r\n")
                self._chunked_out = True
            # Without a length or chunking, the end of the connection ends the body.
            self._until_close = b"chunked" not in fields.get(b"transfer-encoding", b"").lower()
        if exchange.close_connection or not exchange.keep_alive or exchange.proxy.draining:
            exchange.close_connection = True
            out.append(b"Connection: close\r\n")
        elif exchange.http10:
            out.append(b"Connection: keep-alive\r\n")
        out.append(b"\r\n")
        return b"".join(out)

    def on_body(self, body: bytes) -> None:
        if self._passthrough:
            return
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
        self.authority = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode()
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
            # While the client is still sending, its own timeout applies: a silent upstream is waiting for it.
            if exchange is not None and exchange.request_complete and now - conn.last_activity > read_timeout:
                conn.exchange = None
                conn.close()
                exchange.upstream_timed_out(started=conn.started)

    def close(self) -> None:
        for conn in [*self.idle, *self.busy]:
            conn.close()
        self.idle.clear()
